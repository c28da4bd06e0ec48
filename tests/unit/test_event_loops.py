"""Our asyncio processes run on uvloop's event loop unless asyncio's is asked for."""
from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from shared.event_loops import ASYNCIO, UVLOOP, loop_kind, new_event_loop
from shared.settings import SettingsError, load_settings


def test_the_loop_is_uvloops_unless_asyncios_is_asked_for():
    fast, standard = new_event_loop(UVLOOP), new_event_loop(ASYNCIO)
    try:
        assert isinstance(fast, uvloop.Loop) and loop_kind(fast) == UVLOOP
        assert not isinstance(standard, uvloop.Loop) and loop_kind(standard) == ASYNCIO
        assert fast.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        fast.close()
        standard.close()


def test_without_uvloop_installed_it_says_so_and_returns_asyncios(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes ``import uvloop`` fail
    loop = new_event_loop(UVLOOP)
    loop.close()
    assert loop_kind(loop) == ASYNCIO
    assert "uvloop is not installed" in caplog.text


def test_the_worker_loop_setting_takes_a_known_kind_only():
    assert load_settings({}).worker_event_loop == UVLOOP
    assert load_settings({"WORKER_EVENT_LOOP": "Asyncio"}).worker_event_loop == ASYNCIO
    with pytest.raises(SettingsError, match="WORKER_EVENT_LOOP"):
        load_settings({"WORKER_EVENT_LOOP": "trio"})
