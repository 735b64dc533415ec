"""Patient pages: join by code or invite link, consent, waiting room, questionnaires.

Patients have no account. After consent their Flask session holds only the ids of their
attendance and patient record; the display name lives encrypted in the store, never in the
cookie or a URL.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from appliance.clinical.display_names import MAX_NAME, BadDisplayName, clean_display_name
from appliance.clinical.join_window import JoinWindow
from appliance.clinical.questionnaires import get_instrument
from appliance.clinical.reminders import reminders_for
from appliance.clinical.session_codes import (
    CODE_DIGITS,
    clean_code,
    derive_invite_token,
    find_open_session,
    format_code,
    join_code_of,
    reissue_short_codes,
)
from appliance.store import IntegrityError
from appliance.store.models import GroupSession, utcnow
from appliance.store.store import Store
from web.app_state import code_secret, current_box
from web.join_throttle import join_throttle
from web.live import live_sessions
from web.questionnaire_form import questionnaire_view

bp = Blueprint("join", __name__)

CONSENT_VERSION = "2026-11"
MAX_INVITE_TOKEN = 64
# Statuses whose holder may still read what the facilitator pushed and answer questionnaires
# asked for (a patient who left may fill them in afterwards); "removed" (denied or removed)
# may see only that they were not let in.
PUSHED_TO = ("waiting", "admitted", "left")
POLL_VOTERS = ("waiting", "admitted")
_QUESTIONNAIRE_SAVES = threading.Lock()


def _store() -> Store:
    return current_box().store


def init_app(app: Flask) -> None:
    """Codes are shown in groups of three; sessions still holding a 6-digit code get a new one."""
    app.jinja_env.globals["format_code"] = format_code
    box = app.extensions["clinicbox"]
    try:
        changed = reissue_short_codes(box.store.GroupSession, app.config["SECRET_KEY"])
    except IntegrityError as exc:  # a damaged session record must not stop the portal
        app.logger.warning("join codes not checked: %s", type(exc).__name__)
        return
    if changed:
        app.logger.warning("%d open session(s) got a new 9-digit join code", changed)


def _window() -> JoinWindow:
    settings = current_box().settings
    return JoinWindow(settings.join_opens_minutes_before, settings.join_closes_minutes_after)


def invite_url(group: GroupSession) -> str:
    """The invite link for `group`, on the configured public URL (never the request's Host)."""
    token = derive_invite_token(code_secret(), group.id)
    return current_box().settings.portal_url + url_for("join.invite", token=token)


def _join_form(error: str | None, code: str = "", name: str = "", status: int = 200) -> Any:
    return render_template(
        "join.html",
        error=error,
        code=code,
        name=name,
        digits=CODE_DIGITS,
    ), status


def _too_many(wait_s: int, name: str = "") -> Any:
    minutes = max(1, (wait_s + 59) // 60)
    page, _status = _join_form(
        ngettext(
            "Too many tries with a wrong code. Wait %(num)d minute and try again, or use "
            "the invite link from your clinic.",
            "Too many tries with a wrong code. Wait %(num)d minutes and try again, or use "
            "the invite link from your clinic.",
            minutes,
        ),
        name=name,
        status=429,
    )
    return page, 429, {"Retry-After": str(wait_s)}


def _open_session(code: str | None, name: str = "") -> tuple[Any, Any]:
    """The session `code` opens now, or (None, the page to answer with).

    Every wrong code counts against the client; a client over its budget is not even told
    whether its code was right.
    """
    client = request.remote_addr or "unknown"
    wait = join_throttle().refusal(client)
    if wait is not None:
        return None, _too_many(wait, name)
    if code is None:
        join_throttle().wrong_code(client)
        return None, _join_form(
            _("The session code is %(digits)d digits. Check it and try again.", digits=CODE_DIGITS),
            name=name,
            status=400,
        )
    group = find_open_session(_store().GroupSession, code)
    if group is None:
        join_throttle().wrong_code(client)
        return None, _join_form(
            _("No session is open with that code. Check it with your clinic."),
            name=name,
            status=404,
        )
    too_early_or_late = _window().refusal(group.starts_at, group.state)
    if too_early_or_late is not None:
        return None, _join_form(too_early_or_late, code=code, name=name, status=403)
    wait = join_throttle().use(group.id)
    if wait is not None:
        return None, _join_form(
            _("Many people are joining this session right now. Wait a minute and try again."),
            code=code,
            name=name,
            status=429,
        )
    return group, None


@bp.get("/join")
def enter_code() -> ResponseReturnValue:
    return _join_form(None)


@bp.get("/join/ping")
def ping() -> ResponseReturnValue:
    """An empty answer the call page times to estimate the patient's connection."""
    return "", 204, {"Cache-Control": "no-store"}


@bp.get("/i/<token>")
def invite(token: str) -> ResponseReturnValue:
    group = None
    if len(token) <= MAX_INVITE_TOKEN and token.isascii():
        group = _store().GroupSession.find_by_invite_token(token)
    # The token is re-derived from the id, so a forged or stale index cannot match by chance.
    if (
        group is None
        or group.state not in ("scheduled", "live")
        or derive_invite_token(code_secret(), group.id) != token
    ):
        return _join_form(
            _("This invite link has expired. Ask your clinic for the session code."), status=404
        )
    return _join_form(None, code=join_code_of(group, code_secret()) or "")


def _name_or_error() -> tuple[str, str | None]:
    raw = request.form.get("name") or ""
    try:
        return clean_display_name(raw), None
    except BadDisplayName as exc:
        return " ".join(raw.split())[:MAX_NAME] if raw.isprintable() else "", str(exc)


@bp.post("/join")
def check_code() -> ResponseReturnValue:
    code = clean_code(request.form.get("code", ""))
    name, name_error = _name_or_error()
    if code is not None and name_error is not None:
        return _join_form(name_error, code=code, name=name, status=400)
    group, refused = _open_session(code, name)
    if refused is not None:
        return refused
    return render_template("consent.html", group=group, code=code, name=name, error=None)


@bp.post("/join/consent")
def consent() -> ResponseReturnValue:
    code = clean_code(request.form.get("code", ""))
    name, name_error = _name_or_error()
    if code is None:
        return _join_form(_("Your join details expired. Enter the session code again."), status=400)
    if name_error is not None:
        return _join_form(name_error, code=code, name=name, status=400)
    group, refused = _open_session(code, name)
    if refused is not None:
        return refused
    if request.form.get("agree") != "yes":
        return render_template(
            "consent.html",
            group=group,
            code=code,
            name=name,
            error=_("To join you need to tick the box to agree. You can also leave now."),
        ), 400
    store = _store()
    Attendance = store.Attendance  # noqa: N806
    taken = (
        Attendance.select()
        .where((Attendance.session == group) & (Attendance.status << ("waiting", "admitted")))
        .count()
    )
    if taken >= group.capacity - 1:  # the facilitator holds one place
        return _join_form(_("This session is full. Please contact your clinic."), status=409)
    if group.locked:
        return _join_form(
            _("The facilitator has locked this session. Please contact your clinic."), status=409
        )
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


def _my_attendance(allowed: tuple[str, ...] = PUSHED_TO) -> Any:
    """The attendance in this browser's cookie, refused (403) unless its status is `allowed`.

    The status is read from the store on every request, so a patient denied or removed a
    moment ago is refused at once.
    """
    Attendance = _store().Attendance  # noqa: N806
    attendance_id = session.get("attendance")
    found = (
        Attendance.get_or_none(Attendance.id == attendance_id)
        if isinstance(attendance_id, str)
        else None
    )
    if found is None:
        abort(403, description=_("Join the session with its code first."))
    if found.status not in allowed:
        abort(
            403,
            description=_(
                "The facilitator did not admit you, or removed you from the "
                "session. Please contact your clinic if this was a mistake."
            ),
        )
    return found


@bp.get("/join/wait")
def waiting() -> ResponseReturnValue:
    attendance = _my_attendance(allowed=(*PUSHED_TO, "removed", "absent"))
    if attendance.status == "admitted":
        return redirect(url_for("call.patient_call"))
    live: dict[str, Any] = {}
    if attendance.status in PUSHED_TO:
        live = live_sessions().for_patient(attendance.session_id, attendance.id)
    reminders = reminders_for(_store(), attendance.patient)
    return render_template("waiting.html", attendance=attendance, live=live, reminders=reminders)


@bp.get("/join/state")
def state() -> ResponseReturnValue:
    """The patient's status and what the facilitator pushed, for the call page (JSON).

    A denied or removed patient gets 403 with only their status, so the call page ends.
    """
    Attendance = _store().Attendance  # noqa: N806
    attendance_id = session.get("attendance")
    found = (
        Attendance.get_or_none(Attendance.id == attendance_id)
        if isinstance(attendance_id, str)
        else None
    )
    if found is not None and found.status not in PUSHED_TO:
        response = jsonify(
            error="Forbidden", status=found.status, message="You are no longer in this session."
        )
        response.status_code = 403
        response.headers["Cache-Control"] = "no-store"
        return response
    attendance = _my_attendance()
    live = live_sessions().for_patient(attendance.session_id, attendance.id)
    response = jsonify(status=attendance.status, session=attendance.session.state, **live)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/join/poll")
def vote() -> ResponseReturnValue:
    """Answer the open poll: from a plain form (redirect) or the call page (JSON)."""
    attendance = _my_attendance(allowed=POLL_VOTERS)
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
def leave() -> ResponseReturnValue:
    """The patient leaves the call; their page then offers any questionnaires asked for."""
    attendance = _my_attendance()
    if attendance.status == "admitted":
        attendance.status = "left"
        attendance.left_at = utcnow()
        attendance.save()
    return redirect(url_for("join.waiting"))


def _already_sent(attendance: Any, code: str) -> bool:
    Response_ = _store().QuestionnaireResponse  # noqa: N806
    return bool(
        Response_.select()
        .where(
            (Response_.patient == attendance.patient_id)
            & (Response_.session == attendance.session_id)
            & (Response_.kind == code.upper())
        )
        .exists()
    )


@bp.route("/join/questionnaire/<code>", methods=["GET", "POST"])
def questionnaire(code: str) -> ResponseReturnValue:
    """A questionnaire the clinician asked this session for, answered once per patient."""
    attendance = _my_attendance()
    asked = [i.code for i in live_sessions().asked(attendance.session_id)]
    if code not in asked:
        abort(404, description=_("Your clinician has not asked for this questionnaire."))
    # One at a time: the "already sent" check and the save must not interleave, or tabs
    # sending at once each store a response (and a risk flag).
    with _QUESTIONNAIRE_SAVES:
        if _already_sent(attendance, code):
            abort(409, description=_("You have already sent this questionnaire. Thank you."))
        page, _saved = questionnaire_view(
            _store(),
            code,
            url_for("join.questionnaire", code=code),
            attendance.patient,
            attendance.session,
            f"patient/{attendance.patient_id}",
            watch_url=url_for("join.state"),
        )
    if page is not None:
        return page
    # Let in while answering (the status is read afresh on every request): the thank-you
    # page leads to the call.
    return render_template(
        "questionnaire_done.html",
        instrument=get_instrument(code),
        in_call=attendance.status == "admitted" and attendance.session.state != "ended",
    )
