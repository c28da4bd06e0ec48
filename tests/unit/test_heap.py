"""The collector tuning a service process applies once it has built what it keeps."""

from __future__ import annotations

import gc

from shared.heap import YOUNG_THRESHOLD, tune_collector


def test_tuning_exempts_what_is_alive_and_collects_young_objects_less_often():
    thresholds = gc.get_threshold()
    kept = ["built at startup"]  # lists are always tracked
    try:
        exempt = tune_collector()
        made_after = ["built while serving"]
        assert 0 < gc.get_freeze_count() <= exempt  # frozen objects may die since, none join
        tracked = gc.get_objects()  # the frozen generation is not listed
        assert not any(obj is kept for obj in tracked)
        assert any(obj is made_after for obj in tracked)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
