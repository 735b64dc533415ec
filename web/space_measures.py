"""The patient's side of the measures a clinician scheduled, the daily mood check, the safety
plan and the crisis page, all in the space an access card opens (web/patient_space.py).

A PHQ-9 whose item 9 is above zero raises the urgent risk flag to the care team (the same
`save_response` as in a session) and takes the patient straight to the crisis page: their
safety plan and the clinic's emergency contact. The plan page is kept by a small service
worker (`/me/offline.js`), so once loaded it opens without a connection; signing out clears
it (Clear-Site-Data).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from appliance.clinical import measures_between, messages
from appliance.clinical.questionnaires import get_instrument
from appliance.clinical.safety_plan import SECTIONS, plan_of
from appliance.store.store import Store
from web.app_state import current_box
from web.patient_space import card_required, space_patient
from web.questionnaire_form import questionnaire_view

bp = Blueprint("diary", __name__)

# The "is it due" check and the save must not interleave (two tabs sending at once).
_ANSWERS = threading.Lock()
_OFFLINE_JS = Path(__file__).with_name("static") / "offline.js"


def _store() -> Store:
    return current_box().store


def _actor() -> str:
    return f"patient/{space_patient().id}"


@bp.route("/me/measures/<code>", methods=["GET", "POST"])
@card_required
def measure(code: str) -> ResponseReturnValue:
    """A PHQ-9 or GAD-7 the care team scheduled, when it is due."""
    if code not in ("phq9", "gad7"):
        abort(404, description=_("There is no such questionnaire."))
    store = _store()
    person = space_patient()
    with _ANSWERS:
        item = measures_between.due_schedule(store, person, code.upper())
        if item is None:
            abort(404, description=_("Nothing is due here now. Thank you."))
        page, saved = questionnaire_view(
            store, code, url_for("diary.measure", code=code), person, None, _actor()
        )
        if saved is not None:
            measures_between.mark_answered(store, item)
    if page is not None:
        return page
    assert saved is not None  # questionnaire_view gives a page to show or the saved response
    if get_instrument(code).risk_item is not None and saved.items[8] > 0:
        return redirect(url_for("diary.crisis"))
    return render_template("space_done.html")


@bp.route("/me/mood", methods=["GET", "POST"])
@card_required
def mood() -> ResponseReturnValue:
    """The one-tap daily mood check: 1 to 5 and an optional note."""
    error = None
    if request.method == "POST":
        try:
            entry = measures_between.record_mood(
                _store(), space_patient(), request.form.get("mood") or "", request.form.get("note")
            )
        except measures_between.ScheduleError:
            error = _("Choose how you feel today, from 1 to 5 (a note of up to 500 characters).")
        else:
            _store().audit(_actor(), "record.create", f"mood_entry/{entry.id}")
            return render_template("space_done.html")
    page = render_template("space_mood.html", error=error, form=request.form)
    return page, 400 if error else 200


def _plan_page(crisis: bool) -> Any:
    store = _store()
    person = space_patient()
    plan = plan_of(store, person)
    store.audit(_actor(), "record.read", f"patient/{person.id}/safety_plan")
    page = render_template(
        "space_plan.html",
        plan=plan.sections if plan is not None else None,
        sections=SECTIONS,
        crisis=crisis,
        emergency=messages.emergency_contact(store),
    )
    # The service worker may keep it on the phone; no shared cache may.
    return page, 200, {"Cache-Control": "private, no-cache"}


@bp.get("/me/plan")
@card_required
def plan() -> ResponseReturnValue:
    return _plan_page(crisis=False)


@bp.get("/me/crisis")
@card_required
def crisis() -> ResponseReturnValue:
    """Where a PHQ-9 with item 9 above zero lands: help now, then the plan."""
    return _plan_page(crisis=True)


@bp.get("/me/offline.js")
def offline_worker() -> Response:
    """The service worker that keeps the safety plan readable offline; served under /me/ so
    its scope is the patient's space."""
    response = Response(_OFFLINE_JS.read_bytes(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response
