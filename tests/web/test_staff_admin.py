"""The staff admin page: admins add, disable, enable, re-role and reset staff accounts; every
change is audited, ends the account's sessions where it must, and cannot lock the portal out."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from appliance.accounts import authenticate, create_user
from appliance.box import Box
from tests.web.conftest import PASSWORD, csrf_from, sign_in

NEW_PASSWORD = "lantern orchard pebble"


def _admin(app: Flask, box: Box) -> tuple[FlaskClient, str]:
    create_user(box.store, "admin.ann", PASSWORD, "admin")
    client = app.test_client()
    sign_in(client, "admin.ann")
    return client, csrf_from(client, "/staff")


def _user(box: Box, username: str) -> Any:
    return box.store.User.get(box.store.User.username == username)


def _audited(box: Box, action: str) -> list[tuple[str, str]]:
    log = box.store.AuditLog
    return [(e.actor, e.target) for e in log.select().where(log.action == action)]


def test_admin_adds_an_account_that_can_sign_in(app: Flask, box: Box) -> None:
    client, token = _admin(app, box)
    reply = client.post(
        "/staff",
        data={
            "csrf_token": token,
            "username": " Dr.Bea ",
            "role": "clinician",
            "password": NEW_PASSWORD,
        },
    )
    assert reply.status_code == 302
    page = client.get("/staff").get_data(as_text=True)
    assert "Added dr.bea (clinician)." in page
    bea = _user(box, "dr.bea")
    assert bea.role == "clinician" and bea.active
    assert authenticate(box.store, "dr.bea", NEW_PASSWORD) is not None
    admin_id = _user(box, "admin.ann").id
    assert _audited(box, "user.add") == [(f"user:{admin_id}", f"users/{bea.id}")]
    # The password never reaches the audit log or the page.
    assert all(NEW_PASSWORD not in e.target for e in box.store.AuditLog.select())
    assert NEW_PASSWORD not in page


def test_bad_input_says_which_field_and_keeps_what_was_typed(app: Flask, box: Box) -> None:
    client, token = _admin(app, box)
    reply = client.post(
        "/staff",
        data={"csrf_token": token, "username": "dr.cal", "role": "clinician", "password": "short"},
    )
    page = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "Password: Password must be at least 12 characters long" in page
    assert 'value="dr.cal"' in page and 'value="short"' not in page
    reply = client.post(
        "/staff",
        data={
            "csrf_token": token,
            "username": "dr.ada",
            "role": "clinician",
            "password": NEW_PASSWORD,
        },
    )
    assert reply.status_code == 400
    assert "Username: Username &#39;dr.ada&#39; is already taken." in reply.get_data(as_text=True)
    reply = client.post(
        "/staff",
        data={
            "csrf_token": token,
            "username": "dr.cal",
            "role": "superuser",
            "password": NEW_PASSWORD,
        },
    )
    assert reply.status_code == 400
    assert "Choose a role" in reply.get_data(as_text=True)
    assert _user_count(box) == 3


def _user_count(box: Box) -> int:
    return box.store.User.select().count()


def test_disabling_ends_every_session_and_enabling_lets_them_back(app: Flask, box: Box) -> None:
    ada = app.test_client()
    sign_in(ada, "dr.ada")
    assert ada.get("/dashboard").status_code == 200
    client, token = _admin(app, box)
    ada_id = _user(box, "dr.ada").id
    reply = client.post(f"/staff/{ada_id}", data={"csrf_token": token, "action": "disable"})
    assert reply.status_code == 302
    assert "Signed out of 1 open session(s)." in client.get("/staff").get_data(as_text=True)
    assert ada.get("/dashboard").status_code == 302  # to the login page
    assert authenticate(box.store, "dr.ada", PASSWORD) is None
    client.post(f"/staff/{ada_id}", data={"csrf_token": token, "action": "enable"})
    assert authenticate(box.store, "dr.ada", PASSWORD) is not None
    assert [t for _a, t in _audited(box, "user.disable")] == [f"users/{ada_id}"]
    assert [t for _a, t in _audited(box, "user.enable")] == [f"users/{ada_id}"]


def test_role_change_and_password_reset_apply_at_once(app: Flask, box: Box) -> None:
    ada = app.test_client()
    sign_in(ada, "dr.ada")
    client, token = _admin(app, box)
    ada_id = _user(box, "dr.ada").id
    client.post(
        f"/staff/{ada_id}", data={"csrf_token": token, "action": "role", "role": "technician"}
    )
    assert _user(box, "dr.ada").role == "technician"
    assert ada.get("/dashboard").status_code == 302  # signed out: signs in again as technician
    sign_in(ada, "dr.ada")
    assert ada.get("/patients").status_code == 403
    reply = client.post(
        f"/staff/{ada_id}", data={"csrf_token": token, "action": "password", "password": "abc"}
    )
    assert reply.status_code == 400
    assert "New password for dr.ada: Password must be" in reply.get_data(as_text=True)
    assert authenticate(box.store, "dr.ada", PASSWORD) is not None
    client.post(
        f"/staff/{ada_id}",
        data={"csrf_token": token, "action": "password", "password": NEW_PASSWORD},
    )
    assert authenticate(box.store, "dr.ada", NEW_PASSWORD) is not None
    assert ada.get("/dashboard").status_code == 302
    assert [t for _a, t in _audited(box, "user.role")] == [f"users/{ada_id}"]
    assert [t for _a, t in _audited(box, "user.password")] == [f"users/{ada_id}"]


def test_an_admin_cannot_lock_themselves_out(app: Flask, box: Box) -> None:
    client, token = _admin(app, box)
    ann_id = _user(box, "admin.ann").id
    for form in ({"action": "disable"}, {"action": "role", "role": "clinician"}):
        reply = client.post(f"/staff/{ann_id}", data={"csrf_token": token, **form})
        assert reply.status_code == 400
        assert "your own account" in reply.get_data(as_text=True)
    ann = _user(box, "admin.ann")
    assert ann.active and ann.role == "admin"
    # Another admin's account is theirs to change.
    bob = create_user(box.store, "admin.bob", PASSWORD, "admin")
    reply = client.post(f"/staff/{bob.id}", data={"csrf_token": token, "action": "disable"})
    assert reply.status_code == 302
    assert not _user(box, "admin.bob").active


def test_staff_page_is_for_admins_only_and_needs_the_form_token(app: Flask, box: Box) -> None:
    ada = app.test_client()
    sign_in(ada, "dr.ada")
    assert ada.get("/staff").status_code == 403
    tech = app.test_client()
    sign_in(tech, "tech.tom")
    assert tech.get("/staff").status_code == 403
    assert app.test_client().get("/staff").status_code == 302
    client, _token = _admin(app, box)
    reply = client.post(
        "/staff", data={"username": "dr.eve", "role": "admin", "password": NEW_PASSWORD}
    )
    assert reply.status_code == 400  # no CSRF token
    assert box.store.User.get_or_none(box.store.User.username == "dr.eve") is None
    assert (
        client.post("/staff/999", data={"csrf_token": _token, "action": "disable"}).status_code
        == 404
    )
