"""Server-side staff sessions: logout, disabling and expiry end a session for every copy of
its cookie, and the cookie-signing key alone cannot make a working cookie."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

from tests.conftest import CLINICBOX
from tests.web.conftest import csrf_from, sign_in


def _clinicbox(data_dir, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `clinicbox` command on the box's data dir (as a technician would run it)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    environ.update(CLINICBOX_DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [CLINICBOX, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def _copy_of(client, app):
    """A second browser holding a copy of `client`'s session cookie."""
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie(cookie.key, cookie.value, domain=cookie.domain)
    return thief


def test_logout_ends_the_session_for_a_copied_cookie(app):
    client = app.test_client()
    sign_in(client)
    thief = _copy_of(client, app)
    assert thief.get("/dashboard").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_from(client, "/dashboard")})
    assert client.get("/dashboard").status_code == 302
    reply = thief.get("/dashboard")
    assert reply.status_code == 302
    assert reply.headers["Location"].startswith("/login")


def test_only_a_hash_of_the_token_is_stored(box, app):
    client = app.test_client()
    sign_in(client)
    with client.session_transaction() as cookie_session:
        token = cookie_session["sid"]
        assert "uid" not in cookie_session and "role" not in cookie_session
    hashes = [row.token_hash for row in box.store.StaffSession.select()]
    assert hashes == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in hashes


def test_cookie_forged_with_the_signing_key_gets_nothing(box, app):
    # What a thief holding the SD card could sign: the old cookie layout (user id and role),
    # and the stored session hash in place of the token.
    client = app.test_client()
    sign_in(client)
    admin = box.store.User.get(box.store.User.username == "dr.ada")
    stored = box.store.StaffSession.get().token_hash
    signer = app.session_interface.get_signing_serializer(app)
    for forged in ({"uid": admin.id, "role": admin.role, "seen": time.time()}, {"sid": stored}):
        thief = app.test_client()
        thief.set_cookie("session", signer.dumps(forged), domain="localhost")
        reply = thief.get("/dashboard")
        assert reply.status_code == 302, forged
        assert reply.headers["Location"].startswith("/login")


def test_a_deactivated_account_loses_its_open_sessions(box, app):
    client = app.test_client()
    sign_in(client)
    assert client.get("/dashboard").status_code == 200
    User = box.store.User  # noqa: N806
    User.update(active=False).where(User.username == "dr.ada").execute()
    assert client.get("/dashboard").status_code == 302
    assert box.store.StaffSession.select().count() == 0


def test_user_disable_ends_sessions_and_says_so(box, app, tmp_path):
    client = app.test_client()
    sign_in(client)
    second = app.test_client()
    sign_in(second)
    result = _clinicbox(tmp_path, "user", "disable", "DR.ADA")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "disabled dr.ada; ended 2 open session(s)\n"
    for browser in (client, second):
        assert browser.get("/dashboard").status_code == 302
    # Disabled: signing in again is refused too.
    token = csrf_from(client, "/login")
    reply = client.post(
        "/login",
        data={"username": "dr.ada", "password": "correct horse battery", "csrf_token": token},
    )
    assert reply.status_code == 401


def test_user_disable_unknown_name_is_one_line_and_exit_2(box, app, tmp_path):
    result = _clinicbox(tmp_path, "user", "disable", "nobody")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["clinicbox: error: no staff account named 'nobody'; check the spelling"]


def test_user_password_applies_the_policy_and_ends_sessions(box, app, tmp_path):
    client = app.test_client()
    sign_in(client)
    weak = _clinicbox(tmp_path, "user", "password", "dr.ada", CLINICBOX_NEW_PASSWORD="1234567890")
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    assert client.get("/dashboard").status_code == 200
    changed = _clinicbox(
        tmp_path, "user", "password", "dr.ada", CLINICBOX_NEW_PASSWORD="a new phrase for ada"
    )
    assert changed.returncode == 0, changed.stderr
    assert client.get("/dashboard").status_code == 302


def test_session_ends_at_the_absolute_limit_however_active(app):
    app.config["SESSION_MAX_SECONDS"] = 1.5
    client = app.test_client()
    sign_in(client)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert client.get("/dashboard").status_code == 200
        time.sleep(0.2)
    time.sleep(0.8)
    assert client.get("/dashboard").status_code == 302
