"""The care team's side of a patient's space: the access card, messages, and the clinic's
emergency contact (admins).

Every patient view loads the patient through `care_patient` (404 outside one's care, an
admin's cross-team view audited). Issuing a card shows its code and QR code once, on a
printable page: only the code's hash is kept, so a lost card is revoked and a new one issued.
"""

from __future__ import annotations

from typing import Any

import segno
from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from appliance.clinical import measures_between, messages
from appliance.clinical.access_cards import (
    format_card_code,
    issue_card,
    live_card,
    revoke_cards,
)
from appliance.clinical.safety_plan import (
    MAX_SECTION,
    SECTIONS,
    SafetyPlanError,
    clean_sections,
    plan_of,
    save_plan,
)
from appliance.store.models import Patient
from appliance.store.store import Store
from web.access import care_patient, clinical_required
from web.app_state import current_box
from web.auth import role_required, staff_user

bp = Blueprint("care_space", __name__)


def _store() -> Store:
    return current_box().store


def _actor() -> str:
    return f"user:{staff_user().id}"


def card_link(code: str) -> str:
    """The card's link: the code rides in the fragment, which browsers never send."""
    return current_box().settings.portal_url + url_for("space.card_form") + "#" + code


def qr_svg(text: str) -> Markup:
    """`text` as an inline SVG QR code (error correction M survives a creased card)."""
    svg = segno.make(text, error="m").svg_inline(scale=4, border=2, title="QR code")
    return Markup(svg)


@bp.get("/patients/<patient_id>/card")
@clinical_required
def card(patient_id: str) -> ResponseReturnValue:
    """Whether the patient has a live card, with the buttons to issue and revoke."""
    person, _grant = care_patient(patient_id)
    current = live_card(_store(), person)
    return render_template("care_card.html", person=person, card=current)


@bp.post("/patients/<patient_id>/card")
@clinical_required
def change_card(patient_id: str) -> ResponseReturnValue:
    """`action=issue`: a new card (the old one stops working), shown once to print;
    `action=revoke`: no card opens the space any more (a lost card or phone)."""
    person, _grant = care_patient(patient_id)
    store = _store()
    action = request.form.get("action")
    if action == "issue":
        code = issue_card(store, person, staff_user())
        store.audit(_actor(), "card.issue", f"patient/{person.id}")
        link = card_link(code)
        return render_template(
            "care_card_print.html",
            person=person,
            code=format_card_code(code),
            link_base=current_box().settings.portal_url + url_for("space.card_form"),
            qr=qr_svg(link),
        )
    if action == "revoke":
        revoked = revoke_cards(store, person)
        store.audit(_actor(), "card.revoke", f"patient/{person.id}")
        if not revoked:
            abort(409, description="This patient has no card to revoke.")
        return redirect(url_for("care_space.card", patient_id=person.id))
    abort(400, description="Choose to issue a new card or to revoke the card.")


def _thread_page(
    person: Patient, error: str | None = None, draft: str = "", status: int = 200
) -> Any:
    store = _store()
    items = messages.thread(store, person)
    messages.mark_read(store, person, by_patient=False)
    store.audit(_actor(), "record.read", f"patient/{person.id}/messages")
    page = render_template(
        "care_messages.html",
        person=person,
        items=items,
        error=error,
        draft=draft,
        max_message=messages.MAX_MESSAGE,
        has_card=live_card(store, person) is not None,
    )
    return page, status


@bp.get("/patients/<patient_id>/messages")
@clinical_required
def thread(patient_id: str) -> ResponseReturnValue:
    person, _grant = care_patient(patient_id)
    return _thread_page(person)


@bp.post("/patients/<patient_id>/messages")
@clinical_required
def reply(patient_id: str) -> ResponseReturnValue:
    person, _grant = care_patient(patient_id)
    draft = request.form.get("body") or ""
    try:
        sent = messages.send(_store(), person, draft, author=staff_user())
    except messages.MessageError as exc:
        return _thread_page(person, str(exc), draft[: messages.MAX_MESSAGE], 400)
    _store().audit(_actor(), "record.create", f"secure_message/{sent.id}")
    return redirect(url_for("care_space.thread", patient_id=person.id))


@bp.post("/patients/<patient_id>/schedule")
@clinical_required
def change_schedule(patient_id: str) -> ResponseReturnValue:
    """`action=add` with `kind` and `every_days`: ask the patient for a measure between
    sessions (due from now); `action=stop` with `schedule`: stop asking."""
    person, _grant = care_patient(patient_id)
    store = _store()
    action = request.form.get("action")
    if action == "add":
        try:
            every = int(request.form.get("every_days") or "")
        except ValueError:
            every = 0
        try:
            item = measures_between.schedule(
                store, person, request.form.get("kind") or "", every, staff_user()
            )
        except measures_between.ScheduleError as exc:
            abort(400, description=str(exc))
        store.audit(_actor(), "record.create", f"measure_schedule/{item.id}")
    elif action == "stop":
        schedule_id = request.form.get("schedule") or ""
        if not measures_between.stop(store, person, schedule_id):
            abort(400, description="That schedule is not running.")
        store.audit(_actor(), "record.update", f"measure_schedule/{schedule_id}")
    else:
        abort(400, description="Choose to add a measure or to stop one.")
    return redirect(url_for("portal.patient", patient_id=person.id))


@bp.route("/patients/<patient_id>/safety-plan", methods=["GET", "POST"])
@clinical_required
def safety_plan(patient_id: str) -> ResponseReturnValue:
    """Write or update the patient's safety plan with them (Stanley-Brown sections)."""
    person, _grant = care_patient(patient_id)
    store = _store()
    error = None
    plan = plan_of(store, person)
    values = dict(plan.sections) if plan is not None else {}
    if request.method == "POST":
        values = {key: request.form.get(key) or "" for key, _h, _p in SECTIONS}
        try:
            saved = save_plan(store, person, clean_sections(request.form), staff_user())
        except SafetyPlanError as exc:
            error = str(exc)
        else:
            store.audit(_actor(), "record.update", f"safety_plan/{saved.id}")
            return redirect(url_for("portal.patient", patient_id=person.id))
    else:
        store.audit(_actor(), "record.read", f"patient/{person.id}/safety_plan")
    page = render_template(
        "care_safety_plan.html",
        person=person,
        sections=SECTIONS,
        values=values,
        error=error,
        max_section=MAX_SECTION,
        plan=plan,
    )
    return page, 400 if error else 200


@bp.route("/admin/emergency-contact", methods=["GET", "POST"])
@role_required("admin")
def emergency_contact() -> ResponseReturnValue:
    """The clinic's emergency contact, shown to patients beside messages and on the crisis
    page (public clinic information: a number or a service, never a person's record)."""
    store = _store()
    error = None
    value = messages.emergency_contact(store)
    if request.method == "POST":
        value = request.form.get("contact") or ""
        try:
            messages.set_emergency_contact(store, value)
        except messages.MessageError as exc:
            error = str(exc)
        else:
            store.audit(_actor(), "setting.update", "clinic_setting/emergency_contact")
            return redirect(url_for("care_space.emergency_contact"))
    page = render_template(
        "emergency_contact.html",
        value=value,
        error=error,
        max_len=messages.MAX_EMERGENCY_CONTACT,
    )
    return page, 400 if error else 200
