"""Sign-in, CSRF, roles, rate limiting and idle logoff, through Flask's test client."""

from __future__ import annotations

import time

import pytest

from appliance.accounts import authenticate, create_user
from tests.web.conftest import PASSWORD, csrf_from, sign_in


def test_passwords_are_hashed_and_checked(box, app):
    user = box.store.User.get(box.store.User.username == "dr.ada")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert authenticate(box.store, "DR.ADA ", PASSWORD).id == user.id
    assert authenticate(box.store, "dr.ada", PASSWORD + "x") is None
    assert authenticate(box.store, "nobody", PASSWORD) is None


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("dr.ada", PASSWORD, "clinician", "already taken"),
        ("bo", PASSWORD, "clinician", "3-32 characters"),
        ("new.user", "short", "clinician", "at least 12"),
        # NIST SP 800-63B: length first; then common, sequential or repetitive passwords.
        ("new.user", "1234567890", "clinician", "at least 12"),
        ("new.user", "1QAZ2WSX3EDC", "clinician", "commonly used"),
        ("new.user", "Qwerty123456", "clinician", "commonly used"),
        ("new.user", "123456789012", "clinician", "commonly used"),
        ("new.user", "aaaaaaaaaaaa", "clinician", "easy to guess"),
        ("clinicbox.adm", "ClinicBox", "admin", "at least 12"),
        ("new.user", PASSWORD, "patient", "role must be"),
    ],
)
def test_create_user_refuses_bad_input(box, app, username, password, role, message):
    with pytest.raises(ValueError, match=message):
        create_user(box.store, username, password, role)


def test_password_policy_has_no_composition_rules(box, app):
    # Lower-case words only, no digits or symbols: long and uncommon is what counts.
    assert create_user(box.store, "new.user", "my cat likes tea", "clinician").active


def test_unauthenticated_clinical_page_redirects_to_login(app):
    client = app.test_client()
    reply = client.get("/patients/1")
    assert reply.status_code == 302
    assert reply.headers["Location"].startswith("/login?next=/patients/1")
    api = client.get("/dashboard", headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert api.get_json()["message"] == "Sign in first."


def test_login_then_next_and_logout(app):
    client = app.test_client()
    token = csrf_from(client, "/login?next=/sessions/new")
    reply = client.post(
        "/login?next=/sessions/new",
        data={"username": "dr.ada", "password": PASSWORD, "csrf_token": token},
    )
    assert reply.headers["Location"] == "/sessions/new"
    assert client.get("/sessions/new").status_code == 200
    token = csrf_from(client, "/dashboard")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_login_refuses_offsite_next(app):
    client = app.test_client()
    token = csrf_from(client, "/login")
    reply = client.post(
        "/login?next=//evil.example/x",
        data={"username": "dr.ada", "password": PASSWORD, "csrf_token": token},
    )
    assert reply.headers["Location"] == "/dashboard"


def test_post_without_csrf_is_refused(app):
    client = app.test_client()
    reply = client.post("/login", data={"username": "dr.ada", "password": PASSWORD})
    assert reply.status_code == 400
    assert "Reload the page" in reply.get_data(as_text=True)
    sign_in(client)
    before = app.extensions["clinicbox"].store.GroupSession.select().count()
    reply = client.post("/sessions/new", data={"title": "x", "capacity": "4"})
    assert reply.status_code == 400
    assert app.extensions["clinicbox"].store.GroupSession.select().count() == before


def test_wrong_role_is_forbidden(app):
    client = app.test_client()
    sign_in(client, "tech.tom")
    assert client.get("/dashboard").status_code == 200
    assert client.get("/sessions/new").status_code == 403
    assert client.get("/patients/1").status_code == 403


def test_login_rate_limited_per_username_and_address(app):
    client = app.test_client()
    token = csrf_from(client, "/login")
    for _ in range(5):
        bad = client.post(
            "/login", data={"username": "dr.ada", "password": "wrong-password", "csrf_token": token}
        )
        assert bad.status_code == 401
    blocked = client.post(
        "/login", data={"username": "dr.ada", "password": PASSWORD, "csrf_token": token}
    )
    assert blocked.status_code == 429
    assert "Too many failed attempts" in blocked.get_data(as_text=True)
    # Another username from the same address is not locked out by someone else's failures.
    sign_in(client, "tech.tom")


def test_idle_session_is_logged_out(app):
    app.config["IDLE_LOGOFF_SECONDS"] = 1
    client = app.test_client()
    sign_in(client)
    assert client.get("/dashboard").status_code == 200
    time.sleep(1.3)
    reply = client.get("/dashboard")
    assert reply.status_code == 302
    assert reply.headers["Location"] == "/login?reason=idle"
    assert "inactivity" in client.get("/login?reason=idle").get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_throttle_forgets_stale_keys(monkeypatch):
    from web import auth

    monkeypatch.setattr(auth, "MAX_TRACKED", 3)
    throttle = auth.LoginThrottle(limit=2, window_s=0.05)
    for i in range(10):
        throttle.blocked_for((f"user{i}", "10.0.0.1"))
        throttle.failed((f"user{i}", "10.0.0.1"))
        time.sleep(0.06)
    assert len(throttle._failures) <= 4
    throttle.failed(("dr.ada", "10.0.0.1"))
    throttle.failed(("dr.ada", "10.0.0.1"))
    assert throttle.blocked_for(("dr.ada", "10.0.0.1")) > 0
