"""Patient pages: join by code or invite link, consent, waiting room, questionnaires.

Patients have no account. After consent their Flask session holds only the ids of their
attendance and patient record; the display name lives encrypted in the store, never in the
cookie or a URL.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from appliance.clinical.questionnaires import get_instrument
from appliance.clinical.session_codes import (
    clean_code,
    derive_invite_token,
    find_open_session,
    join_code_of,
)
from appliance.store.models import utcnow
from web import current_box
from web.auth import LoginThrottle
from web.live import live_sessions
from web.portal import code_secret
from web.questionnaire_form import questionnaire_view

bp = Blueprint("join", __name__)

CONSENT_VERSION = "2026-11"
MAX_NAME = 40


def _store() -> Any:
    return current_box().store


def _find_by_code(code: str) -> Any | None:
    return find_open_session(_store().GroupSession, code)


def _join_form(error: str | None, code: str = "", name: str = "", status: int = 200) -> Any:
    return render_template("join.html", error=error, code=code, name=name), status


# Session codes are 6 digits: wrong guesses per client address are limited (remote patients
# through the relay are counted by the address the centre saw).
CODE_GUESSES = 10
CODE_GUESS_WINDOW_S = 600.0


def _code_throttle() -> LoginThrottle:
    return current_app.extensions.setdefault(
        "clinicbox.code_throttle", LoginThrottle(limit=CODE_GUESSES, window_s=CODE_GUESS_WINDOW_S))


def _guess_key() -> tuple[str, str]:
    return ("session-code", request.remote_addr or "")


@bp.get("/join")
def enter_code() -> Any:
    return _join_form(None)


@bp.get("/join/ping")
def ping() -> Any:
    """An empty answer the call page times to estimate the patient's connection."""
    return "", 204, {"Cache-Control": "no-store"}


@bp.get("/i/<token>")
def invite(token: str) -> Any:
    group = _store().GroupSession.find_by_invite_token(token)
    # The token is re-derived from the id, so a forged or stale index cannot match by chance.
    if (group is None or group.state not in ("scheduled", "live")
            or derive_invite_token(code_secret(), group.id) != token):
        return _join_form("This invite link has expired. Ask your clinic for the session code.",
                          status=404)
    return _join_form(None, code=join_code_of(group, code_secret()) or "")


@bp.post("/join")
def check_code() -> Any:
    code = clean_code(request.form.get("code", ""))
    name = " ".join((request.form.get("name") or "").split())
    if code is None:
        return _join_form("The session code is 6 digits. Check it and try again.",
                          name=name, status=400)
    if not name or len(name) > MAX_NAME:
        return _join_form(f"Enter the name others will see (1 to {MAX_NAME} characters).",
                          code=code, status=400)
    wait = _code_throttle().blocked_for(_guess_key())
    if wait > 0:
        minutes = max(1, round(wait / 60))
        return _join_form(f"Too many wrong codes. Try again in about {minutes} minute(s), or "
                          "ask your clinic for the code.", name=name, status=429)
    group = _find_by_code(code)
    if group is None:
        _code_throttle().failed(_guess_key())
        return _join_form("No session is open with that code. Check it with your clinic.",
                          name=name, status=404)
    return render_template("consent.html", group=group, code=code, name=name, error=None)


@bp.post("/join/consent")
def consent() -> Any:
    code = clean_code(request.form.get("code", ""))
    name = " ".join((request.form.get("name") or "").split())[:MAX_NAME]
    group = _find_by_code(code) if code else None
    if group is None or not name:
        return _join_form("Your join details expired. Enter the session code again.", status=400)
    if request.form.get("agree") != "yes":
        return render_template(
            "consent.html", group=group, code=code, name=name,
            error="To join you need to tick the box to agree. You can also leave now.",
        ), 400
    store = _store()
    Attendance = store.Attendance  # noqa: N806
    taken = Attendance.select().where(
        (Attendance.session == group) & (Attendance.status << ("waiting", "admitted"))
    ).count()
    if taken >= group.capacity - 1:  # the facilitator holds one place
        return _join_form("This session is full. Please contact your clinic.", status=409)
    if group.locked:
        return _join_form("The facilitator has locked this session. Please contact your clinic.",
                          status=409)
    with store.transaction():
        person = store.Patient.create(display_name=name)
        store.Consent.create(
            patient=person, session=group, scope={"terms": CONSENT_VERSION}, granted=True
        )
        attendance = Attendance.create(
            session=group, patient=person, display_name=name, status="waiting"
        )
    store.audit(f"patient/{person.id}", "consent.granted", f"group_session/{group.id}")
    session.clear()
    session.permanent = False
    session["attendance"] = attendance.id
    session["patient"] = person.id
    return redirect(url_for("join.waiting"))


def _my_attendance() -> Any:
    Attendance = _store().Attendance  # noqa: N806
    attendance_id = session.get("attendance")
    found = Attendance.get_or_none(Attendance.id == attendance_id) if attendance_id else None
    if found is None:
        abort(403, description="Join the session with its code first.")
    return found


@bp.get("/join/wait")
def waiting() -> Any:
    attendance = _my_attendance()
    if attendance.status == "admitted":
        return redirect(url_for("call.patient_call"))
    live = live_sessions().for_patient(attendance.session_id, attendance.id)
    return render_template("waiting.html", attendance=attendance, live=live)


@bp.get("/join/state")
def state() -> Any:
    """The patient's status and what the facilitator pushed, for the call page (JSON)."""
    attendance = _my_attendance()
    live = live_sessions().for_patient(attendance.session_id, attendance.id)
    response = jsonify(status=attendance.status, session=attendance.session.state, **live)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/join/poll")
def vote() -> Any:
    """Answer the open poll: from a plain form (redirect) or the call page (JSON)."""
    attendance = _my_attendance()
    try:
        choice = int(request.form.get("choice") or "")
    except ValueError:
        choice = -1
    ok = live_sessions().vote(attendance.session_id, attendance.id, choice)
    if request.accept_mimetypes.best == "application/json":
        if not ok:
            return jsonify(error="Bad Request", message="Choose one of the answers."), 400
        return jsonify(ok=True)
    if not ok:
        abort(400, description="Choose one of the answers, or the poll has closed.")
    return redirect(url_for("join.waiting"))


@bp.post("/join/leave")
def leave() -> Any:
    """The patient leaves the call; their page then offers any questionnaires asked for."""
    attendance = _my_attendance()
    if attendance.status == "admitted":
        attendance.status = "left"
        attendance.left_at = utcnow()
        attendance.save()
    return redirect(url_for("join.waiting"))


@bp.route("/join/questionnaire/<code>", methods=["GET", "POST"])
def questionnaire(code: str) -> Any:
    attendance = _my_attendance()
    page, _saved = questionnaire_view(
        _store(), code, url_for("join.questionnaire", code=code), attendance.patient,
        attendance.session, f"patient/{attendance.patient_id}",
    )
    if page is not None:
        return page
    return render_template("questionnaire_done.html", instrument=get_instrument(code))
