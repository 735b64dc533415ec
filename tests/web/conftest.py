"""A portal app on a real SQLite file, driven with Flask's test client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.accounts import create_user
from appliance.box import Box
from appliance.config import Settings
from appliance.media_loop import MediaLoop
from appliance.setup_code import SetupCode
from appliance.store import open_store
from web import create_app

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    settings = Settings(data_dir=tmp_path, hostname="testbox")
    store = open_store(settings)
    # A running media loop with the real rooms: breakout and remove actions reach the SFU.
    media = MediaLoop()
    box = Box(
        settings=settings, tls=None, db=store.db, media=media,  # type: ignore[arg-type]
        setup_code=SetupCode(settings.secrets_dir / "setup-code.json"), store=store,
    )
    media.start()
    media.on_shutdown(box.rooms.close_all)
    yield box
    media.stop(timeout=5)
    store.close()


@pytest.fixture
def app(box: Box) -> Flask:
    app = create_app(box, {"TESTING": True})
    create_user(box.store, "dr.ada", PASSWORD, "clinician")
    create_user(box.store, "tech.tom", PASSWORD, "technician")
    return app


def csrf_from(client: FlaskClient, path: str) -> str:
    """The CSRF token from a form on `path`."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, username: str = "dr.ada") -> None:
    token = csrf_from(client, "/login")
    reply = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert reply.status_code == 302, reply.get_data(as_text=True)
