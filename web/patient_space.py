"""The patient's own space, opened with their access card: messages with their care team.

Sign-in: the card's code, typed on /card or read from the card link's fragment
(`/card#CODE`: a fragment never reaches the server, so the code is in no request line, log
or Referer). Wrong codes count against the portal's session-code throttle. The cookie then
holds only the card's id and two times; every request checks that the card is still live
(revoking ends every session opened with it at once), an idle limit and an absolute limit.
No patient id and nothing clinical is ever in a URL here: the card says whose space it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from appliance.clinical import messages
from appliance.clinical.access_cards import card_is_live, clean_card_code, find_card
from appliance.clinical.reminders import reminders_for
from appliance.store.models import Patient
from web.app_state import current_box
from web.join_throttle import WindowCounter, join_throttle

bp = Blueprint("space", __name__)

F = TypeVar("F", bound=Callable[..., Any])

IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600
# Messages a patient may send per window: a stolen card cannot flood the care team.
MESSAGES_PER_WINDOW = 20
MESSAGE_WINDOW_S = 600.0
_CARD_KEYS = ("card", "card_since", "card_seen")


def _limits() -> tuple[float, float]:
    config = current_app.config
    return (
        float(config.get("CARD_IDLE_SECONDS", IDLE_S)),
        float(config.get("CARD_MAX_SECONDS", ABSOLUTE_S)),
    )


def _end_card_session() -> None:
    for key in _CARD_KEYS:
        session.pop(key, None)


def space_patient() -> Patient:
    """The card's patient in a view behind `card_required` (which makes sure of one)."""
    person = card_patient()
    if person is None:
        abort(403, description="Open your space with your card first.")
    return person


def card_patient() -> Patient | None:
    """The patient whose card opened this browser's space, or None (no card, revoked,
    idle or too old: the card keys are then dropped from the cookie)."""
    if "card_patient" in g:
        return g.card_patient
    g.card_patient = None
    card_id, since, seen = (session.get(k) for k in _CARD_KEYS)
    if not isinstance(card_id, int) or not isinstance(since, float | int):
        return None
    idle, absolute = _limits()
    now = time.time()
    card = card_is_live(current_box().store, card_id)
    if card is None or now - float(seen or 0) > idle or now - float(since) > absolute:
        _end_card_session()
        return None
    session["card_seen"] = now
    g.card_patient = card.patient
    return g.card_patient


def card_required(view: F) -> F:
    """Only with a live card session; otherwise to the card page (a saved link lands there)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if card_patient() is None:
            return redirect(url_for("space.card_form"))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _actor() -> str:
    return f"patient/{space_patient().id}"


def _card_page(error: str | None, status: int = 200) -> Any:
    return render_template("card_signin.html", error=error), status


@bp.get("/card")
def card_form() -> ResponseReturnValue:
    """Where a card's link lands: its code is read from the fragment by card.js, or typed."""
    return _card_page(None)


@bp.post("/card")
def card_sign_in() -> ResponseReturnValue:
    client = request.remote_addr or "unknown"
    wait = join_throttle().refusal(client)
    if wait is not None:
        minutes = max(1, (wait + 59) // 60)
        page, _status = _card_page(
            ngettext(
                "Too many tries with a wrong code. Wait %(num)d minute and try again.",
                "Too many tries with a wrong code. Wait %(num)d minutes and try again.",
                minutes,
            ),
            429,
        )
        return page, 429, {"Retry-After": str(wait)}
    code = clean_card_code(request.form.get("code", ""))
    store = current_box().store
    card = find_card(store, code) if code is not None else None
    if card is None:
        join_throttle().wrong_code(client)
        current_app.logger.info("wrong card code from %s", client)
        return _card_page(
            _("That card code does not open a space. Check it, or ask your clinic for a new card."),
            404 if code is not None else 400,
        )
    _end_card_session()
    now = time.time()
    session["card"], session["card_since"], session["card_seen"] = card.id, now, now
    store.audit(f"patient/{card.patient_id}", "card.sign_in", f"patient_card/{card.id}")
    return redirect(url_for("space.home"))


@bp.post("/me/sign-out")
def sign_out() -> ResponseReturnValue:
    _end_card_session()
    response = redirect(url_for("space.card_form"))
    # The offline copy of the safety plan goes too: the phone may be shared.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


@bp.get("/me")
@card_required
def home() -> ResponseReturnValue:
    store = current_box().store
    person = space_patient()
    store.audit(_actor(), "record.read", f"patient/{person.id}/space")
    return render_template(
        "space.html",
        person=person,
        unread=messages.unread_for_patient(store, person),
        reminders=reminders_for(store, person),
    )


def _message_page(error: str | None = None, draft: str = "", status: int = 200) -> Any:
    store = current_box().store
    person = space_patient()
    items = messages.thread(store, person)
    messages.mark_read(store, person, by_patient=True)
    store.audit(_actor(), "record.read", f"patient/{person.id}/messages")
    page = render_template(
        "space_messages.html",
        items=items,
        error=error,
        draft=draft,
        max_message=messages.MAX_MESSAGE,
        emergency=messages.emergency_contact(store),
    )
    return page, status


@bp.get("/me/messages")
@card_required
def my_messages() -> ResponseReturnValue:
    return _message_page()


class MessageRate:
    """Messages per patient per window, shared by the WSGI threads."""

    def __init__(self) -> None:
        self._counter = WindowCounter(MESSAGE_WINDOW_S)
        self._lock = threading.Lock()

    def allow(self, patient_id: str) -> bool:
        with self._lock:
            if self._counter.count(patient_id) >= MESSAGES_PER_WINDOW:
                return False
            self._counter.add(patient_id)
            return True


@bp.post("/me/messages")
@card_required
def send_message() -> ResponseReturnValue:
    store = current_box().store
    person = space_patient()
    draft = request.form.get("body") or ""
    try:
        messages.clean_body(draft)
    except messages.MessageError:
        return _message_page(
            _("Write a message of up to %(max)d characters.", max=messages.MAX_MESSAGE),
            draft[: messages.MAX_MESSAGE],
            400,
        )
    rate: MessageRate = current_app.extensions["clinicbox.message_rate"]
    if not rate.allow(person.id):
        return _message_page(
            _("You have sent many messages in a short time. Wait a few minutes."), draft, 429
        )
    sent = messages.send(store, person, draft)
    store.audit(_actor(), "record.create", f"secure_message/{sent.id}")
    return redirect(url_for("space.my_messages"))


def init_app(app: Flask) -> None:
    app.extensions["clinicbox.message_rate"] = MessageRate()
    app.jinja_env.globals["card_patient"] = card_patient
    app.register_blueprint(bp)
