"""Least privilege in the clinic: every route x every kind of visitor, and the team controls.

The matrix itself (routes, visitors, expected answers) is in tests/web/authz_matrix.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from appliance.accounts import create_user
from appliance.box import Box
from appliance.clinical.session_codes import assign_codes, join_code_of
from appliance.media.join_token import issue
from appliance.store import audit
from tests.web import authz_matrix
from tests.web.conftest import PASSWORD, csrf_from, sign_in
from web import create_app


def test_every_route_has_an_entry_and_every_entry_a_route(app: Flask) -> None:
    missing, stale = authz_matrix.coverage_gaps(app)
    assert missing == set(), "add these routes to tests/web/authz_matrix.py"
    assert stale == set(), "these matrix entries name no route"
    assert all(len(row) == len(authz_matrix.ACTORS) for row in authz_matrix.EXPECTED.values())


def test_a_new_route_without_an_entry_is_caught(box: Box) -> None:
    app = create_app(box, {"TESTING": True})

    @app.get("/sessions/<session_id>/export")
    def export(session_id: str) -> str:
        return session_id

    missing, _stale = authz_matrix.coverage_gaps(app)
    assert missing == {"GET /sessions/<session_id>/export"}


def test_route_walk_matches_the_matrix(tmp_path: Path) -> None:
    cells, failures = authz_matrix.run_walk(tmp_path / "box")
    assert failures == []
    assert cells == len(authz_matrix.EXPECTED) * len(authz_matrix.ACTORS)


def _session(box: Box, app: Flask, owner_id: int, title: str) -> str:
    group = box.store.GroupSession(
        title=title,
        starts_at=datetime.now() + timedelta(minutes=10),  # inside the join window
        facilitator=owner_id,
        capacity=6,
    )
    assign_codes(group, app.config["SECRET_KEY"])
    group.save()
    return group.id


def _offer(client: FlaskClient, token: str) -> int:
    """Offer as `client` (a staff seat needs its clinician's own signed-in session)."""
    body = {"token": token, "sdp": "v=0", "type": "answer"}
    return client.post("/api/media/offer", json=body).status_code


def test_owner_adds_and_removes_a_co_facilitator(app: Flask, box: Box) -> None:
    colleague = create_user(box.store, "dr.bea", PASSWORD, "clinician")
    session_id = _session(box, app, 1, "Thursday carers group")
    url = f"/sessions/{session_id}"
    owner = app.test_client()
    sign_in(owner, "dr.ada")
    bea = app.test_client()
    sign_in(bea, "dr.bea")
    assert bea.get(url).status_code == 404
    assert "Thursday carers group" not in bea.get("/dashboard").get_data(as_text=True)

    token = csrf_from(owner, url)
    missing_token = owner.post(url + "/team", data={"action": "add", "user": colleague.id})
    assert missing_token.status_code == 400
    assert box.store.CoFacilitator.select().count() == 0
    owner.post(url + "/team", data={"csrf_token": token, "action": "add", "user": colleague.id})
    assert "Thursday carers group" in bea.get("/dashboard").get_data(as_text=True)
    page = bea.get(url).get_data(as_text=True)
    assert "dr.bea</span> (co-facilitator)" in page
    # A co-facilitator runs the session but does not choose who else does.
    assert "Add a co-facilitator" not in page
    bea_token = csrf_from(bea, url + "/notes")
    refused = bea.post(
        url + "/team", data={"csrf_token": bea_token, "action": "remove", "user": colleague.id}
    )
    assert refused.status_code == 403
    seat = issue(box, session_id=session_id, participant=f"user:{colleague.id}", role="facilitator")
    assert _offer(bea, seat) == 400  # past the seat check: only the SDP is wrong

    owner.post(url + "/team", data={"csrf_token": token, "action": "remove", "user": colleague.id})
    assert bea.get(url).status_code == 404
    # The join token issued while on the team no longer opens the call.
    assert _offer(bea, seat) == 403
    actions = [(e.action, e.target) for e in box.store.AuditLog.select()]
    assert ("team.add", f"group_session/{session_id}/user:{colleague.id}") in actions
    assert ("team.remove", f"group_session/{session_id}/user:{colleague.id}") in actions
    assert ("access.denied", f"group_session/{session_id}") in actions


def test_team_form_refuses_bad_choices(app: Flask, box: Box) -> None:
    create_user(box.store, "dr.bea", PASSWORD, "clinician")
    tech = box.store.User.get(box.store.User.username == "tech.tom")
    session_id = _session(box, app, 1, "Friday group")
    url = f"/sessions/{session_id}"
    owner = app.test_client()
    sign_in(owner)
    token = csrf_from(owner, url)
    for form, message in (
        ({"action": "add", "user": tech.id}, "Choose an active clinician"),
        ({"action": "add", "user": 1}, "Choose an active clinician"),
        ({"action": "add", "user": "x"}, "Choose a clinician"),
        ({"action": "remove", "user": 999}, "not a co-facilitator"),
    ):
        reply = owner.post(url + "/team", data={"csrf_token": token, **form})
        assert reply.status_code == 400
        assert message in reply.get_data(as_text=True)
    assert box.store.CoFacilitator.select().count() == 0


def test_scheduling_for_a_colleague_keeps_the_scheduler_on_the_team(app: Flask, box: Box) -> None:
    colleague = create_user(box.store, "dr.bea", PASSWORD, "clinician")
    client = app.test_client()
    sign_in(client)
    token = csrf_from(client, "/sessions/new")
    reply = client.post(
        "/sessions/new",
        data={
            "csrf_token": token,
            "title": "Bea's Monday group",
            "starts_at": "2031-12-14T10:00",
            "facilitator": str(colleague.id),
            "capacity": "6",
        },
    )
    assert reply.status_code == 302
    assert client.get(reply.headers["Location"]).status_code == 200
    group = box.store.GroupSession.get()
    assert group.facilitator_id == colleague.id
    assert [c.user_id for c in box.store.CoFacilitator.select()] == [1]


def test_admin_sees_every_session_with_an_audit_entry(app: Flask, box: Box) -> None:
    admin = create_user(box.store, "admin.ann", PASSWORD, "admin")
    session_id = _session(box, app, 1, "Wednesday mothers group")
    client = app.test_client()
    sign_in(client, "admin.ann")
    assert "Wednesday mothers group" not in client.get("/dashboard").get_data(as_text=True)
    assert "Wednesday mothers group" in client.get("/sessions").get_data(as_text=True)
    assert client.get(f"/sessions/{session_id}/notes").status_code == 200
    entries = [(e.actor, e.action, e.target) for e in box.store.AuditLog.select()]
    actor = f"user:{admin.id}"
    assert (actor, "access.cross_team", "group_session/all") in entries
    assert (actor, "access.cross_team", f"group_session/{session_id}") in entries
    assert audit.verify(box.store.db).ok


def _join_and_admit(app: Flask, box: Box, session_id: str, name: str) -> str:
    code = join_code_of(box.store.GroupSession.get_by_id(session_id), app.config["SECRET_KEY"])
    patient = app.test_client()
    token = csrf_from(patient, "/join")
    patient.post(
        "/join/consent", data={"csrf_token": token, "code": code, "name": name, "agree": "yes"}
    )
    seat = box.store.Attendance.get(box.store.Attendance.session == session_id)
    seat.status = "admitted"
    seat.save()
    return seat.patient_id


def test_match_offers_only_records_in_the_clinicians_care(app: Flask, box: Box) -> None:
    create_user(box.store, "dr.bea", PASSWORD, "clinician")
    bea_id = box.store.User.get(box.store.User.username == "dr.bea").id
    create_user(box.store, "admin.ann", PASSWORD, "admin")
    theirs = _session(box, app, bea_id, "Bea's group")
    mine = _session(box, app, 1, "Ada's group")
    earlier = _join_and_admit(app, box, theirs, "Rowan Ash")
    _join_and_admit(app, box, mine, "Rowan Ash")
    earlier_code = box.store.Patient.get_by_id(earlier).code
    url = f"/sessions/{mine}"
    ada = app.test_client()
    sign_in(ada)
    page = ada.get(url).get_data(as_text=True)
    assert earlier_code not in page
    attendance = re.search(r'name="attendance" value="([0-9a-f-]+)"', page).group(1)
    token = csrf_from(ada, url)
    reply = ada.post(
        url + "/match", data={"csrf_token": token, "attendance": attendance, "patient": earlier}
    )
    assert reply.status_code == 400
    assert box.store.Attendance.get_by_id(attendance).patient_id != earlier
    assert ada.get(f"/patients/{earlier}").status_code == 404
    # An admin is offered the match (and the sight of that record is audited).
    admin = app.test_client()
    sign_in(admin, "admin.ann")
    assert f"Same person as {earlier_code}" in admin.get(url).get_data(as_text=True)
    targets = [
        e.target
        for e in box.store.AuditLog.select().where(box.store.AuditLog.action == "access.cross_team")
    ]
    assert f"patient/{earlier}" in targets


def test_an_admin_who_co_facilitates_still_manages_the_team(app: Flask, box: Box) -> None:
    admin = create_user(box.store, "admin.ann", PASSWORD, "admin")
    bea = create_user(box.store, "dr.bea", PASSWORD, "clinician")
    session_id = _session(box, app, 1, "Saturday group")
    box.store.CoFacilitator.create(session=session_id, user=admin.id)
    url = f"/sessions/{session_id}"
    client = app.test_client()
    sign_in(client, "admin.ann")
    page = client.get(url).get_data(as_text=True)
    assert "Add a co-facilitator" in page
    token = csrf_from(client, url)
    for _twice in range(2):
        reply = client.post(
            url + "/team", data={"csrf_token": token, "action": "add", "user": bea.id}
        )
    assert reply.status_code == 400  # already running it the second time
    co = box.store.CoFacilitator
    assert co.select().where((co.session == session_id) & (co.user == bea.id)).count() == 1
    # On the team, the admin's visits are not cross-team.
    cross = box.store.AuditLog.select().where(box.store.AuditLog.action == "access.cross_team")
    assert cross.count() == 0
