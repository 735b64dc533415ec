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
from markupsafe import Markup

from appliance.clinical import messages
from appliance.clinical.access_cards import (
    format_card_code,
    issue_card,
    live_card,
    revoke_cards,
)
from web import current_box
from web.access import care_patient, clinical_required
from web.auth import current_user, role_required

bp = Blueprint("care_space", __name__)


def _store() -> Any:
    return current_box().store


def _actor() -> str:
    return f"user:{current_user().id}"


def card_link(code: str) -> str:
    """The card's link: the code rides in the fragment, which browsers never send."""
    return current_box().settings.portal_url + url_for("space.card_form") + "#" + code


def qr_svg(text: str) -> Markup:
    """`text` as an inline SVG QR code (error correction M survives a creased card)."""
    svg = segno.make(text, error="m").svg_inline(scale=4, border=2, title="QR code")
    return Markup(svg)


@bp.get("/patients/<patient_id>/card")
@clinical_required
def card(patient_id: str) -> Any:
    """Whether the patient has a live card, with the buttons to issue and revoke."""
    person, _grant = care_patient(patient_id)
    current = live_card(_store(), person)
    return render_template("care_card.html", person=person, card=current)


@bp.post("/patients/<patient_id>/card")
@clinical_required
def change_card(patient_id: str) -> Any:
    """`action=issue`: a new card (the old one stops working), shown once to print;
    `action=revoke`: no card opens the space any more (a lost card or phone)."""
    person, _grant = care_patient(patient_id)
    store = _store()
    action = request.form.get("action")
    if action == "issue":
        code = issue_card(store, person, current_user())
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


def _thread_page(person: Any, error: str | None = None, draft: str = "", status: int = 200) -> Any:
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
def thread(patient_id: str) -> Any:
    person, _grant = care_patient(patient_id)
    return _thread_page(person)


@bp.post("/patients/<patient_id>/messages")
@clinical_required
def reply(patient_id: str) -> Any:
    person, _grant = care_patient(patient_id)
    draft = request.form.get("body") or ""
    try:
        sent = messages.send(_store(), person, draft, author=current_user())
    except messages.MessageError as exc:
        return _thread_page(person, str(exc), draft[: messages.MAX_MESSAGE], 400)
    _store().audit(_actor(), "record.create", f"secure_message/{sent.id}")
    return redirect(url_for("care_space.thread", patient_id=person.id))


@bp.route("/admin/emergency-contact", methods=["GET", "POST"])
@role_required("admin")
def emergency_contact() -> Any:
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
