"""The patient list: a care team's patients only, search by part of a name or the code."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from appliance.accounts import create_user
from appliance.box import Box
from appliance.clinical.seats import seat_status
from tests.web.conftest import PASSWORD, sign_in


def _seat(box: Box, owner_id: int, title: str, name: str, status: str = "admitted") -> str:
    store = box.store
    group = store.GroupSession.create(
        title=title, starts_at=datetime(2031, 1, 9, 10), facilitator=owner_id
    )
    person = store.Patient.create(display_name=name)
    store.Attendance.create(session=group, patient=person, display_name=name, status=status)
    return person.code


def test_search_by_part_of_a_name_or_code_within_ones_care(app: Flask, box: Box) -> None:
    bea = create_user(box.store, "dr.bea", PASSWORD, "clinician")
    admin = create_user(box.store, "admin.ann", PASSWORD, "admin")
    code = _seat(box, 1, "Ada's group", "Rowan Ash", status="removed")
    _seat(box, 1, "Ada's second group", "Iris Oak")
    _seat(box, bea.id, "Bea's group", "Rowena Birch")
    ada = app.test_client()
    sign_in(ada)
    page = ada.get("/patients?q=ROW").get_data(as_text=True)
    assert "Rowan Ash" in page and "Rowena Birch" not in page and "Iris Oak" not in page
    assert "Rowan Ash" in ada.get(f"/patients?q={code.lower()}").get_data(as_text=True)
    assert "Bea&#39;s group" not in ada.get("/patients").get_data(as_text=True)
    too_long = ada.get("/patients?q=" + "x" * 101)
    assert too_long.status_code == 400
    assert "fewer than 100 characters" in too_long.get_data(as_text=True)
    ann = app.test_client()
    sign_in(ann, "admin.ann")
    assert "Rowena Birch" in ann.get("/patients?q=row").get_data(as_text=True)
    audit = [(e.actor, e.action, e.target) for e in box.store.AuditLog.select()]
    assert (f"user:{admin.id}", "access.cross_team", "patient/all") in audit


def test_seat_status_tells_denied_from_removed() -> None:
    class Seat:
        def __init__(self, status: str, left_at: datetime | None) -> None:
            self.status, self.left_at = status, left_at

    assert seat_status(Seat("removed", None)) == "denied"
    assert seat_status(Seat("removed", datetime(2031, 1, 9, 11))) == "removed"
    assert seat_status(Seat("left", datetime(2031, 1, 9, 11))) == "left"
    assert seat_status(Seat("admitted", None)) == "admitted"
