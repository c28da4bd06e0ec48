"""The console's templates and static files ship in the package, and its pages load only them."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from api import create_app
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
ASSETS = [ROOT / "api" / "templates" / "console", ROOT / "api" / "static" / "console"]
PAGES = ("/console/login", "/console/sessions", "/console/sessions/x", "/console/new",
         "/console/fleet")


def package_data_globs() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["options.package_data"]["api"].split()


def test_every_console_file_is_package_data():
    globs = package_data_globs()
    files = [path for folder in ASSETS for path in folder.rglob("*") if path.is_file()]
    assert files
    for path in files:
        relative = path.relative_to(ROOT / "api")
        assert any(relative.match(pattern) for pattern in globs), f"{relative} is not shipped"


@pytest.fixture(scope="module")
def client():
    return create_app(load_settings({"ENVIRONMENT": "test", "API_KEY": "a-key"})).test_client()


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_public_shells_that_load_only_their_own_files(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.get_data(as_text=True))
    for source in sources:
        if source.startswith("/console/static/"):
            with client.get(source) as asset:
                assert asset.status_code == 200, source
        else:
            assert source.startswith("/console/") or source == "data:,", source
