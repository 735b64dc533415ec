"""Clinician pages: dashboard, scheduling, a session's waiting room, patients' scores, notes.

Every view or change of clinical data writes an audit entry (`Store.audit`). Pages are plain
server-rendered forms: they work without JavaScript.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from appliance.clinical import measures_between
from appliance.clinical.access import own_sessions
from appliance.clinical.follow_up import open_flags_of_session
from appliance.clinical.lesson_assignments import assignments_of
from appliance.clinical.live_sessions import MAX_MESSAGE, MAX_OPTIONS, MAX_ROOMS
from appliance.clinical.measures_between import MOOD
from appliance.clinical.messages import unread_by_patient
from appliance.clinical.questionnaires import (
    ANSWER_SCALE,
    INSTRUMENTS,
    get_instrument,
)
from appliance.clinical.record_matching import file_under_earlier, match_candidates
from appliance.clinical.safety_plan import plan_of
from appliance.clinical.seats import seat_status
from appliance.clinical.session_codes import (
    assign_codes,
    derive_invite_token,
    join_code_of,
)
from appliance.clinical.session_lifecycle import change_state, check_change
from appliance.clinical.waiting_room import change_seats
from appliance.media.rooms import Rooms
from appliance.store.models import GroupSession, User, utcnow
from appliance.store.store import Store
from web.access import (
    care_patient,
    clinical_required,
    team_session,
    visible_patient,
)
from web.app_state import code_secret, current_box
from web.auth import current_user, role_required, staff_user
from web.chart import score_chart
from web.follow_up import flags_for_banner
from web.lessons import library
from web.live import live_sessions
from web.questionnaire_form import questionnaire_view
from web.relay import public_url as relay_public_url

bp = Blueprint("portal", __name__)

CLINICAL = ("clinician", "admin")
MAX_CAPACITY = 16
MEDIA_TIMEOUT_S = 5


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"scale": ANSWER_SCALE, "risk_flag": risk_flag, "seat_status": seat_status}


def _store() -> Store:
    return current_box().store


def _actor() -> str:
    user = current_user()
    return f"user:{user.id}" if user else "anonymous"


def _audit(action: str, target: str) -> None:
    _store().audit(_actor(), action, target)


def risk_flag(response: Any) -> bool:
    """PHQ-9 item 9 (thoughts of self-harm) answered above zero."""
    instrument = get_instrument(response.kind.lower())
    return instrument.risk_item is not None and response.items[instrument.risk_item] > 0


def _split_call(group_id: str) -> None:
    """Hand the session's breakout split to the SFU: each person then gets only the audio
    and video of their own room, and a `breakout` event on the data channel."""
    box = current_box()
    groups = live_sessions().snapshot(group_id).media_groups()
    try:
        box.media.call(box.rooms.set_breakouts(group_id, groups), timeout=MEDIA_TIMEOUT_S)
    except TimeoutError:
        abort(503, description="The call did not answer, so the rooms are not split yet. "
              "Try again in a moment.")


def _done(group: GroupSession) -> Response:
    """The answer to a session control: JSON for the call view's facilitator panel (which
    stays on the call), the session page for its plain forms."""
    if request.accept_mimetypes.best == "application/json":
        return jsonify(ok=True)
    return redirect(url_for("portal.session_detail", session_id=group.id))


async def _drop_from_call(rooms: Rooms, room_id: str, participant_id: str) -> None:
    """Take someone out of a running call (they are told `removed`); no-op if not in it."""
    room = rooms.rooms.get(room_id)
    if room is not None:
        await room.remove(participant_id)


@bp.get("/dashboard")
@role_required("clinician", "admin", "technician")
def dashboard() -> str:
    """The signed-in clinician's own sessions (owner or co-facilitator); none for technicians."""
    user = staff_user()
    sessions: list[Any] = []
    flags: list[Any] = []
    unread: list[tuple[Any, int]] = []
    if user.role in CLINICAL:
        GroupSession = _store().GroupSession  # noqa: N806
        sessions = list(own_sessions(_store(), user).order_by(GroupSession.starts_at.desc())
                        .limit(50))
        _audit("record.list", "group_session")
        flags = flags_for_banner()
        unread = _unread_messages(user)
    return render_template("dashboard.html", user=user, sessions=sessions, everyone=False,
                           flags=flags, unread=unread)


def _unread_messages(user: User) -> list[tuple[Any, int]]:
    """(patient, unread count) for the patients in one's care who wrote and wait for an
    answer, most waiting first."""
    counts = unread_by_patient(_store(), user)
    if not counts:
        return []
    Patient = _store().Patient  # noqa: N806
    people = Patient.select().where(Patient.id.in_(list(counts)))
    return sorted(((p, counts[p.id]) for p in people), key=lambda pair: -pair[1])


@bp.get("/sessions")
@role_required("admin")
def all_sessions() -> str:
    """Every session on the box, for an admin; the list itself is a cross-team view."""
    GroupSession = _store().GroupSession  # noqa: N806
    sessions = list(GroupSession.select().order_by(GroupSession.starts_at.desc()).limit(200))
    _audit("access.cross_team", "group_session/all")
    return render_template("dashboard.html", user=current_user(), sessions=sessions,
                           everyone=True)


def _parse_schedule(form: Any) -> tuple[dict[str, Any], list[str]]:
    errors: list[str] = []
    title = (form.get("title") or "").strip()
    if not title:
        errors.append("Give the session a title.")
    elif len(title) > 120:
        errors.append("Keep the title under 120 characters.")
    starts_at = None
    try:
        starts_at = datetime.fromisoformat((form.get("starts_at") or "").strip())
        if starts_at.tzinfo is not None:
            raise ValueError("the clinic's local time is wanted, without a zone")
    except ValueError:
        starts_at = None
        errors.append("Enter the start date and time, e.g. 2026-11-23T10:00.")
    # The clinic's local date (the box's clock): a session may be booked for later today,
    # not for a day that has gone (a mistyped year booked groups in 2020).
    if starts_at is not None and starts_at.date() < datetime.now().date():
        errors.append(f"The date {starts_at:%d %b %Y} has passed: choose today or a later day.")
    capacity = 0
    try:
        capacity = int(form.get("capacity") or "")
        if not 2 <= capacity <= MAX_CAPACITY:
            raise ValueError
    except ValueError:
        errors.append(f"Capacity must be a whole number from 2 to {MAX_CAPACITY}.")
    User = _store().User  # noqa: N806
    facilitator = None
    try:
        chosen = int(form.get("facilitator") or "0")
        if 0 < chosen < 2**63:  # SQLite integers are 64-bit; a larger one is no user
            facilitator = User.get_or_none((User.id == chosen) & (User.role << CLINICAL))
    except ValueError:
        pass
    if facilitator is None:
        errors.append("Choose the facilitator.")
    values = {
        "title": title,
        "starts_at": starts_at,
        "capacity": capacity,
        "facilitator": facilitator,
        "keep_chat": form.get("keep_chat") == "yes",
    }
    return values, errors


@bp.route("/sessions/new", methods=["GET", "POST"])
@clinical_required
def schedule() -> ResponseReturnValue:
    User = _store().User  # noqa: N806
    facilitators = list(User.select().where(User.role << CLINICAL).order_by(User.username))
    if request.method == "GET":
        return render_template(
            "schedule.html", facilitators=facilitators, errors=[], form={},
            default_facilitator=staff_user().id,
        )
    values, errors = _parse_schedule(request.form)
    if errors:
        return render_template(
            "schedule.html", facilitators=facilitators, errors=errors, form=request.form,
            default_facilitator=staff_user().id,
        ), 400
    store = _store()
    group = store.GroupSession(state="scheduled", **values)
    assign_codes(group, code_secret())
    with store.transaction():
        group.save()
        user = staff_user()
        if values["facilitator"].id != user.id and user.role != "admin":
            # Scheduling for a colleague: the clinician who made it keeps helping run it.
            store.CoFacilitator.create(session=group.id, user=user.id, added_by=user.id)
    _audit("record.create", f"group_session/{group.id}")
    return redirect(url_for("portal.session_detail", session_id=group.id))


@bp.get("/sessions/<session_id>")
@clinical_required
def session_detail(session_id: str) -> str:
    group, grant = team_session(session_id)
    Attendance = _store().Attendance  # noqa: N806
    attendees = list(
        Attendance.select().where(Attendance.session == group).order_by(Attendance.joined_at)
    )
    _audit("record.read", f"group_session/{group.id}")
    from web.join import invite_url

    invite = invite_url(group)
    relay = relay_public_url(current_box())
    remote_invite = f"{relay}/i/{derive_invite_token(code_secret(), group.id)}" if relay else None
    # Patients join without an account, so each join starts a new patient record; offer to
    # match it with an earlier record under the same name (the clinician decides). Only
    # records in the clinician's care are offered: a same-name patient of a colleague's group
    # is not theirs to see (an admin sees them, audited).
    matches = match_candidates(_store(), attendees, visible_patient)
    helpers, candidates = _team_of(group)
    flags = open_flags_of_session(_store(), group)
    return render_template(
        "session.html", group=group, attendees=attendees, invite=invite,
        remote_invite=remote_invite, matches=matches,
        code=join_code_of(group, code_secret()) or "", instruments=INSTRUMENTS.values(),
        asked=live_sessions().asked(group.id), live=live_sessions().snapshot(group.id),
        user_id=staff_user().id, helpers=helpers, candidates=candidates,
        manages_team=grant.manages_team, flags=flags, flagged={f.patient_id for f in flags},
        lessons=library().values(),
    )


def _team_of(group: GroupSession) -> tuple[list[Any], list[Any]]:
    """The session's co-facilitators, and the active clinicians who could be added."""
    store = _store()
    User, CoFacilitator = store.User, store.CoFacilitator  # noqa: N806
    helpers = list(User.select().join(CoFacilitator, on=CoFacilitator.user == User.id)
                   .where(CoFacilitator.session == group.id).order_by(User.username))
    taken = {group.facilitator_id, *(u.id for u in helpers)}
    candidates = [u for u in User.select().where((User.role << CLINICAL) & User.active)
                  .order_by(User.username) if u.id not in taken]
    return helpers, candidates


@bp.post("/sessions/<session_id>/team")
@clinical_required
def team(session_id: str) -> Response:
    """Add or remove a co-facilitator: the owner or an admin only."""
    group, grant = team_session(session_id)
    if not grant.manages_team:
        abort(403, description="Only the session's owner or an admin can change who runs it.")
    store = _store()
    action = request.form.get("action")
    if action not in ("add", "remove"):
        abort(400, description="Choose to add or remove a co-facilitator.")
    try:
        user_id = int(request.form.get("user") or "")
    except ValueError:
        abort(400, description="Choose a clinician.")
    CoFacilitator = store.CoFacilitator  # noqa: N806
    if action == "add":
        _helpers, candidates = _team_of(group)
        if user_id not in {u.id for u in candidates}:
            abort(400, description="Choose an active clinician who is not already running "
                  "this session.")
        # Idempotent: two owners' tabs adding the same colleague at once both succeed.
        CoFacilitator.insert(
            session=group.id, user=user_id, added_by=staff_user().id, added_at=utcnow()
        ).on_conflict_ignore().execute()
    else:
        removed = CoFacilitator.delete().where(
            (CoFacilitator.session == group.id) & (CoFacilitator.user == user_id)
        ).execute()
        if not removed:
            abort(400, description="That clinician is not a co-facilitator of this session.")
        # Out of the call too: their facilitator seat is no longer theirs.
        box = current_box()
        try:
            box.media.call(_drop_from_call(box.rooms, group.id, f"user:{user_id}"),
                           timeout=MEDIA_TIMEOUT_S)
        except TimeoutError:
            current_app.logger.warning("session %s: call did not answer a removal", group.id)
    _audit(f"team.{action}", f"group_session/{group.id}/user:{user_id}")
    return redirect(url_for("portal.session_detail", session_id=group.id))


@bp.get("/sessions/<session_id>/waiting")
@clinical_required
def waiting_room(session_id: str) -> str:
    """The waiting room alone, reloading itself every 5 s (no script), to keep open."""
    group, _grant = team_session(session_id)
    Attendance = _store().Attendance  # noqa: N806
    waiting = list(Attendance.select().where(
        (Attendance.session == group) & (Attendance.status == "waiting")
    ).order_by(Attendance.joined_at))
    _audit("record.read", f"group_session/{group.id}/waiting")
    return render_template("waiting_room.html", group=group, waiting=waiting)


@bp.post("/sessions/<session_id>/state")
@clinical_required
def session_state(session_id: str) -> ResponseReturnValue:
    group, _grant = team_session(session_id)
    action = request.form.get("action") or ""
    check_change(group, action)
    if action == "end" and request.form.get("confirm") != "yes":
        # One tap must not end a group by mistake: say what ending does and ask again.
        return render_template("end_session.html", group=group)
    change_state(group, action)
    if action == "end":
        # Everyone still in the call is told and disconnected; held seats and their resume
        # tokens go with the room, and join tokens are refused for an ended session.
        box = current_box()
        try:
            box.media.call(box.rooms.end(group.id), timeout=MEDIA_TIMEOUT_S)
        except TimeoutError:
            current_app.logger.warning("session %s: call did not answer the end", group.id)
    _audit(f"session.{action}", f"group_session/{group.id}")
    return redirect(url_for("portal.session_detail", session_id=group.id))


@bp.post("/sessions/<session_id>/admit")
@clinical_required
def admit(session_id: str) -> Response:
    """Admit one, admit all or deny from the waiting room; remove someone already admitted."""
    group, _grant = team_session(session_id)
    change = change_seats(_store(), group, request.form.get("action") or "",
                          request.form.get("attendance") or "", _actor())
    removed = change.removed_from_call
    if removed is not None:
        # Un-admitted first, so their join token no longer opens the call; then out of it.
        box = current_box()
        try:
            box.media.call(_drop_from_call(box.rooms, group.id, f"attendance/{removed.id}"),
                           timeout=MEDIA_TIMEOUT_S)
        except TimeoutError:
            current_app.logger.warning("session %s: call did not answer a removal", group.id)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(ok=True, status=change.status)
    if request.form.get("back") == "waiting":
        return redirect(url_for("portal.waiting_room", session_id=group.id))
    return redirect(url_for("portal.session_detail", session_id=group.id))


@bp.post("/sessions/<session_id>/ask")
@clinical_required
def ask(session_id: str) -> Response:
    """Ask everyone in the session to fill in a PHQ-9 or GAD-7 (during or after it)."""
    group, _grant = team_session(session_id)
    code = request.form.get("instrument", "")
    if code not in INSTRUMENTS:
        abort(400, description="Choose PHQ-9 or GAD-7.")
    live_sessions().ask(group.id, code)
    _audit("questionnaire.ask", f"group_session/{group.id}")
    return _done(group)


@bp.post("/sessions/<session_id>/broadcast")
@clinical_required
def broadcast(session_id: str) -> Response:
    """Show one short message to everyone in the session (an empty message clears it)."""
    group, _grant = team_session(session_id)
    message = " ".join((request.form.get("message") or "").split())
    if len(message) > MAX_MESSAGE:
        abort(400, description=f"Keep the message under {MAX_MESSAGE} characters.")
    live_sessions().broadcast(group.id, message)
    _audit("session.broadcast", f"group_session/{group.id}")
    return _done(group)


@bp.post("/sessions/<session_id>/poll")
@clinical_required
def poll(session_id: str) -> Response:
    """Start a quick poll (question + one option per line) or close the current one."""
    group, _grant = team_session(session_id)
    if request.form.get("action") == "close":
        live_sessions().close_poll(group.id)
    else:
        question = " ".join((request.form.get("question") or "").split())
        options = [" ".join(line.split()) for line in (request.form.get("options") or "")
                   .splitlines() if line.strip()]
        if not question or not 2 <= len(options) <= MAX_OPTIONS:
            abort(400, description=f"A poll needs a question and 2 to {MAX_OPTIONS} options, "
                  "one per line.")
        live_sessions().start_poll(group.id, question[:200], [o[:80] for o in options])
    _audit("session.poll", f"group_session/{group.id}")
    return _done(group)


@bp.post("/sessions/<session_id>/breakout")
@clinical_required
def breakout(session_id: str) -> Response:
    """Split the admitted patients into breakout rooms, join one as facilitator, or bring
    everyone back; the call's media follows (`_split_call`)."""
    group, _grant = team_session(session_id)
    action = request.form.get("action")
    if action == "back":
        live_sessions().bring_back(group.id)
    elif action == "visit":
        try:
            room = int(request.form.get("room") or "")
        except ValueError:
            room = -1
        if not live_sessions().visit(group.id, staff_user().id, room):
            abort(400, description="Choose one of the breakout rooms, or the main room.")
    else:
        try:
            rooms = int(request.form.get("rooms") or "")
            if not 2 <= rooms <= MAX_ROOMS:
                raise ValueError
        except ValueError:
            abort(400, description=f"Choose 2 to {MAX_ROOMS} rooms.")
        Attendance = _store().Attendance  # noqa: N806
        admitted = [a.id for a in Attendance.select().where(
            (Attendance.session == group) & (Attendance.status == "admitted")
        ).order_by(Attendance.joined_at)]
        live_sessions().split(group.id, admitted, rooms)
    _split_call(group.id)
    _audit("session.breakout", f"group_session/{group.id}")
    return _done(group)


@bp.post("/sessions/<session_id>/match")
@clinical_required
def match(session_id: str) -> Response:
    """File this join under an earlier patient record: the attendance, its consent and any
    questionnaires and risk flags from it move over; the new record is retired."""
    group, _grant = team_session(session_id)
    file_under_earlier(_store(), group, request.form.get("attendance") or "",
                       request.form.get("patient") or "", visible_patient, _actor())
    return redirect(url_for("portal.session_detail", session_id=group.id))


@bp.route("/sessions/<session_id>/notes", methods=["GET", "POST"])
@clinical_required
def notes(session_id: str) -> ResponseReturnValue:
    group, _grant = team_session(session_id)
    SessionNote = _store().SessionNote  # noqa: N806
    error = None
    if request.method == "POST":
        body = (request.form.get("body") or "").strip()
        if not body:
            error = "The note is empty."
        elif len(body) > 20_000:
            error = "Keep a note under 20,000 characters."
        else:
            note = SessionNote.create(session=group, author=current_user(), text=body)
            _audit("record.create", f"session_note/{note.id}")
            return redirect(url_for("portal.notes", session_id=group.id))
    items = list(
        SessionNote.select().where(SessionNote.session == group).order_by(SessionNote.created_at)
    )
    _audit("record.read", f"group_session/{group.id}/notes")
    return render_template("notes.html", group=group, notes=items, error=error), (
        400 if error else 200
    )


@bp.get("/patients/<patient_id>")
@clinical_required
def patient(patient_id: str) -> str:
    store = _store()
    person, _grant = care_patient(patient_id)
    Response_ = store.QuestionnaireResponse  # noqa: N806
    rows = list(
        Response_.select().where(Response_.patient == person).order_by(Response_.created_at)
    )
    charts = []
    for instrument in INSTRUMENTS.values():
        mine = [r for r in rows if r.kind == instrument.code.upper()]
        points = [(r.created_at, r.score) for r in mine]
        charts.append((instrument, score_chart(instrument, points), mine))
    mood_rows = measures_between.moods(store, person)
    mood_chart = score_chart(MOOD, [(m.created_at, m.score) for m in mood_rows])
    _audit("record.read", f"patient/{person.id}/questionnaires")
    return render_template(
        "patient.html",
        person=person,
        charts=charts,
        moods=mood_rows,
        mood_chart=mood_chart,
        schedules=measures_between.active_schedules(store, person),
        has_plan=plan_of(store, person) is not None,
        assigned=assignments_of(store, person),
        lesson_titles={lesson.id: lesson.title for lesson in library().values()},
    )


@bp.route("/patients/<patient_id>/questionnaire/<code>", methods=["GET", "POST"])
@clinical_required
def clinician_questionnaire(patient_id: str, code: str) -> ResponseReturnValue:
    """A clinician enters a questionnaire with the patient (e.g. after a session)."""
    store = _store()
    person, _grant = care_patient(patient_id)
    page, _saved = questionnaire_view(
        store, code, url_for("portal.clinician_questionnaire", patient_id=patient_id, code=code),
        person, None, f"user:{staff_user().id}",
    )
    if page is not None:
        return page
    return redirect(url_for("portal.patient", patient_id=person.id))
