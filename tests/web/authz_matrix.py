"""Who may reach what: every portal route walked as every kind of visitor.

`ROUTES` says how to call each rule of the Flask url_map (one entry per rule and method);
`EXPECTED` says what each visitor in `ACTORS` must get. `walk` builds a small clinic on a
fresh box (two sessions run by different clinicians, one patient in each), sends every
request as every visitor and compares; it also fails a cell whose page shows a name, title,
note or patient code the visitor has no business seeing, and an admin's cross-team view that
left no audit entry. `run_walk` does all of it in a temporary directory for
benchmarks/hostile_inputs.py (`authz_matrix_cells`, `authz_failures`).

A route added without an entry here fails tests/web/test_authorization_matrix.py.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from appliance.accounts import create_user
from appliance.box import Box
from appliance.clinical.access_cards import issue_card
from appliance.clinical.lesson_assignments import assign as assign_lesson
from appliance.clinical.lesson_library import load_library
from appliance.clinical.measures_between import schedule as schedule_measure
from appliance.clinical.messages import send as send_message
from appliance.clinical.safety_plan import save_plan
from appliance.clinical.session_codes import assign_codes, derive_invite_token, join_code_of
from appliance.config import Settings
from appliance.media.join_token import issue
from appliance.media_loop import MediaLoop
from appliance.setup_code import SetupCode
from appliance.store import open_store
from appliance.tls import ensure_tls
from web import create_app
from web.join_throttle import JoinThrottle

PASSWORD = "correct horse battery"
LOGIN = "login"  # sent to sign in: a redirect to /login?... for pages, 401 for the API

ACTORS = (
    "owner",  # dr.owner runs session S
    "co_facilitator",  # dr.co helps run S
    "other_clinician",  # dr.other runs session T, nothing to do with S
    "admin",  # admin.ann: on no team, sees all (audited)
    "technician",  # tech.tina: the box, never clinical content
    "patient_here",  # Marigold, admitted to S
    "patient_elsewhere",  # Bartholomew, admitted to T
    "anonymous",
)

# What each visitor must never see on any page: the other team's titles, names, notes, codes.
S_TITLE, T_TITLE = "Saturn grief circle", "Neptune anxiety group"
P1_NAME, P2_NAME = "Marigold Quince", "Bartholomew Zest"
S_NOTE, T_NOTE = "spoke about the lighthouse keeper", "spoke about the orchard ladder"
# What each patient wrote to their care team from their own space (their access card).
S_MESSAGE, T_MESSAGE = "the heron came back to the pond", "the kettle whistles all night"
# Their diary notes and safety plans, written between sessions.
S_DIARY, T_DIARY = "walked to the weir at dawn", "burnt the toast twice"
S_PLAN, T_PLAN = "call my cousin Ilse on the ferry", "sit under the walnut tree"
S_HOMEWORK, T_HOMEWORK = "count the swallows on the wire", "water the basil every morning"

Outcome = int | str


@dataclass(frozen=True)
class Probe:
    """How to call one route: the path (with {session}, {patient}, {invite}, {flag} and {staff},
    a staff account's id), a form that reaches the view without changing anything that matters
    (most POSTs are refused by the view's own validation, 400, once access is granted), or a
    JSON body per visitor.

    `target`: the record the route shows (an admin's view of it must be audited).
    `signs_out`: the request ends the visitor's sign-in, so it is walked last."""

    path: str
    form: dict[str, str] | None = None
    json: Callable[[World, str], dict[str, Any]] | None = None
    target: str | None = None
    signs_out: bool = False


def _offer(world: World, actor: str) -> dict[str, Any]:
    """An offer as each visitor could make it: a join token naming themselves for session S
    (as if the box had issued it), with an SDP answer where an offer belongs. Past the seat
    check that is a 400; a seat the visitor may not take is a 403."""
    seat = world.seats.get(actor)
    token = ""
    if seat is not None:
        participant, role = seat
        token = issue(world.box, session_id=world.session_s, participant=participant, role=role)
    return {"token": token, "sdp": "v=0", "type": "answer"}


ROUTES: dict[str, Probe] = {
    "GET /": Probe("/"),
    "GET /static/<path:filename>": Probe("/static/call.js"),
    "GET /healthz": Probe("/healthz"),
    "GET /ca.pem": Probe("/ca.pem"),
    # The updater's loopback-call probe: the probe secret, not a sign-in, opens it.
    "POST /healthz/loopback-call": Probe("/healthz/loopback-call", form={}),
    "GET /setup": Probe("/setup"),
    "POST /setup": Probe("/setup", form={"code": ""}),
    "GET /setup/wizard": Probe("/setup/wizard"),
    "POST /setup/wizard": Probe("/setup/wizard", form={}),
    "GET /technician": Probe("/technician"),
    "POST /technician/self-test": Probe("/technician/self-test", form={}),
    "POST /technician/claim": Probe("/technician/claim", form={}),
    "POST /technician/rotate-keys": Probe("/technician/rotate-keys", form={"confirm": "no"}),
    "POST /technician/factory-reset": Probe("/technician/factory-reset", form={"confirm": "no"}),
    "POST /technician/update/from-stick": Probe("/technician/update/from-stick", form={"path": ""}),
    "POST /technician/update/upload": Probe("/technician/update/upload", form={}),
    "GET /login": Probe("/login"),
    "POST /login": Probe("/login", form={"username": "", "password": ""}),
    "POST /logout": Probe("/logout", form={}, signs_out=True),
    "GET /dashboard": Probe("/dashboard"),
    "GET /sessions": Probe("/sessions", target="session"),
    "GET /sessions/new": Probe("/sessions/new"),
    "POST /sessions/new": Probe("/sessions/new", form={"title": ""}),
    "GET /sessions/<session_id>": Probe("/sessions/{session}", target="session"),
    "GET /sessions/<session_id>/waiting": Probe("/sessions/{session}/waiting", target="session"),
    "POST /sessions/<session_id>/state": Probe(
        "/sessions/{session}/state", form={"action": "bogus"}, target="session"
    ),
    "POST /sessions/<session_id>/admit": Probe(
        "/sessions/{session}/admit", form={"action": "bogus"}, target="session"
    ),
    "POST /sessions/<session_id>/ask": Probe(
        "/sessions/{session}/ask", form={"instrument": "bogus"}, target="session"
    ),
    "POST /sessions/<session_id>/broadcast": Probe(
        "/sessions/{session}/broadcast", form={"message": "x" * 300}, target="session"
    ),
    "POST /sessions/<session_id>/poll": Probe(
        "/sessions/{session}/poll", form={"question": ""}, target="session"
    ),
    "POST /sessions/<session_id>/breakout": Probe(
        "/sessions/{session}/breakout", form={"rooms": "99"}, target="session"
    ),
    "POST /sessions/<session_id>/match": Probe(
        "/sessions/{session}/match", form={"attendance": "", "patient": ""}, target="session"
    ),
    "POST /sessions/<session_id>/team": Probe(
        "/sessions/{session}/team", form={"action": "bogus"}, target="session"
    ),
    "GET /sessions/<session_id>/notes": Probe("/sessions/{session}/notes", target="session"),
    "POST /sessions/<session_id>/notes": Probe(
        "/sessions/{session}/notes", form={"body": ""}, target="session"
    ),
    "GET /sessions/<session_id>/call": Probe("/sessions/{session}/call", target="session"),
    "GET /sessions/<session_id>/panel": Probe("/sessions/{session}/panel", target="session"),
    "GET /patients/<patient_id>": Probe("/patients/{patient}", target="patient"),
    "GET /follow-up": Probe("/follow-up", target="patient"),
    "GET /patients": Probe("/patients", target="patient"),
    "POST /follow-up/<flag_id>": Probe(
        "/follow-up/{flag}", form={"outcome": "bogus"}, target="patient"
    ),
    "GET /sessions/<session_id>/risk": Probe("/sessions/{session}/risk", target="session"),
    "GET /patients/<patient_id>/questionnaire/<code>": Probe(
        "/patients/{patient}/questionnaire/phq9", target="patient"
    ),
    "POST /patients/<patient_id>/questionnaire/<code>": Probe(
        "/patients/{patient}/questionnaire/phq9", form={}, target="patient"
    ),
    "GET /join": Probe("/join"),
    "POST /join": Probe("/join", form={"code": "", "name": ""}),
    "GET /i/<token>": Probe("/i/{invite}"),
    "POST /join/consent": Probe("/join/consent", form={"code": "", "name": ""}),
    "GET /join/wait": Probe("/join/wait"),
    "GET /join/state": Probe("/join/state"),
    "GET /join/ping": Probe("/join/ping"),
    "POST /join/poll": Probe("/join/poll", form={"choice": "9"}),
    "POST /join/leave": Probe("/join/leave", form={}),
    "POST /join/rejoin": Probe("/join/rejoin", form={}),
    "GET /join/questionnaire/<code>": Probe("/join/questionnaire/phq9"),
    "POST /join/questionnaire/<code>": Probe("/join/questionnaire/phq9", form={}),
    "GET /call": Probe("/call"),
    # Staff accounts: usernames and roles, no clinical record.
    "GET /staff": Probe("/staff"),
    "POST /staff": Probe("/staff", form={"username": "", "role": "bogus"}),
    "POST /staff/<int:user_id>": Probe("/staff/{staff}", form={"action": "bogus"}),
    "POST /api/media/offer": Probe("/api/media/offer", json=_offer),
    "POST /language": Probe("/language", form={"lang": "xx"}),
    # A patient's own space: the card in the cookie decides whose; no patient id in the URL.
    "GET /card": Probe("/card"),
    "POST /card": Probe("/card", form={"code": ""}),
    "GET /me": Probe("/me"),
    "GET /me/messages": Probe("/me/messages"),
    "POST /me/messages": Probe("/me/messages", form={"body": ""}),
    "POST /me/sign-out": Probe("/me/sign-out", form={}, signs_out=True),
    "GET /me/measures/<code>": Probe("/me/measures/phq9"),
    "POST /me/measures/<code>": Probe("/me/measures/phq9", form={}),
    "GET /me/mood": Probe("/me/mood"),
    "POST /me/mood": Probe("/me/mood", form={"mood": "9"}),
    "GET /me/plan": Probe("/me/plan"),
    "GET /me/crisis": Probe("/me/crisis"),
    "GET /me/offline.js": Probe("/me/offline.js"),
    "GET /lessons": Probe("/lessons"),
    "GET /lessons/<lesson_id>": Probe("/lessons/sleep"),
    "POST /patients/<patient_id>/lessons": Probe(
        "/patients/{patient}/lessons", form={"lesson": "bogus"}, target="patient"
    ),
    "POST /sessions/<session_id>/lessons": Probe(
        "/sessions/{session}/lessons", form={"lesson": "bogus"}, target="session"
    ),
    "GET /me/lessons": Probe("/me/lessons"),
    # The lesson given to the patient of S: an assignment id, never a lesson name.
    "GET /me/lessons/<assignment_id>": Probe("/me/lessons/{lesson}"),
    "POST /me/lessons/<assignment_id>/done": Probe("/me/lessons/{lesson}/done", form={}),
    "POST /patients/<patient_id>/schedule": Probe(
        "/patients/{patient}/schedule", form={"action": "bogus"}, target="patient"
    ),
    "GET /patients/<patient_id>/safety-plan": Probe(
        "/patients/{patient}/safety-plan", target="patient"
    ),
    "POST /patients/<patient_id>/safety-plan": Probe(
        "/patients/{patient}/safety-plan", form={}, target="patient"
    ),
    "GET /patients/<patient_id>/card": Probe("/patients/{patient}/card", target="patient"),
    "POST /patients/<patient_id>/card": Probe(
        "/patients/{patient}/card", form={"action": "bogus"}, target="patient"
    ),
    "GET /patients/<patient_id>/messages": Probe("/patients/{patient}/messages", target="patient"),
    "POST /patients/<patient_id>/messages": Probe(
        "/patients/{patient}/messages", form={"body": ""}, target="patient"
    ),
    "GET /admin/emergency-contact": Probe("/admin/emergency-contact"),
    "POST /admin/emergency-contact": Probe("/admin/emergency-contact", form={"contact": ""}),
}

L = LOGIN
# Columns: owner, co-facilitator, other clinician, admin, technician, patient of S,
# patient of T, anonymous. 404 (not 403) for a session or patient outside the visitor's
# care: the same answer as for an id that does not exist. 403 where the role alone decides.
EXPECTED: dict[str, tuple[Outcome, ...]] = {
    "GET /": (200, 200, 200, 200, 200, 200, 200, 200),
    "GET /static/<path:filename>": (200, 200, 200, 200, 200, 200, 200, 200),
    "GET /healthz": (200, 200, 200, 200, 200, 200, 200, 200),
    "GET /ca.pem": (200, 200, 200, 200, 200, 200, 200, 200),
    "POST /healthz/loopback-call": (403, 403, 403, 403, 403, 403, 403, 403),
    "GET /setup": (200, 200, 200, 200, 200, 200, 200, 200),
    "POST /setup": (400, 400, 400, 400, 400, 400, 400, 400),
    "GET /setup/wizard": (403, 403, 403, 403, 403, 403, 403, 403),
    "POST /setup/wizard": (403, 403, 403, 403, 403, 403, 403, 403),
    "GET /technician": (403, 403, 403, 403, 200, L, L, L),
    "POST /technician/self-test": (403, 403, 403, 403, 302, L, L, L),
    "POST /technician/claim": (403, 403, 403, 403, 400, L, L, L),
    "POST /technician/rotate-keys": (403, 403, 403, 403, 400, L, L, L),
    "POST /technician/factory-reset": (403, 403, 403, 403, 400, L, L, L),
    "POST /technician/update/from-stick": (403, 403, 403, 403, 400, L, L, L),
    "POST /technician/update/upload": (403, 403, 403, 403, 400, L, L, L),
    "GET /login": (200, 200, 200, 200, 200, 200, 200, 200),
    "POST /login": (400, 400, 400, 400, 400, 400, 400, 400),
    "POST /logout": (302, 302, 302, 302, 302, 302, 302, 302),
    "GET /dashboard": (200, 200, 200, 200, 200, L, L, L),
    "GET /sessions": (403, 403, 403, 200, 403, L, L, L),
    "GET /sessions/new": (200, 200, 200, 200, 403, L, L, L),
    "POST /sessions/new": (400, 400, 400, 400, 403, L, L, L),
    "GET /sessions/<session_id>": (200, 200, 404, 200, 403, L, L, L),
    "GET /sessions/<session_id>/waiting": (200, 200, 404, 200, 403, L, L, L),
    "POST /sessions/<session_id>/state": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/admit": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/ask": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/broadcast": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/poll": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/breakout": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/match": (400, 400, 404, 400, 403, L, L, L),
    # Only the owner (or an admin) changes who runs the session.
    "POST /sessions/<session_id>/team": (400, 403, 404, 400, 403, L, L, L),
    "GET /sessions/<session_id>/notes": (200, 200, 404, 200, 403, L, L, L),
    "POST /sessions/<session_id>/notes": (400, 400, 404, 400, 403, L, L, L),
    "GET /sessions/<session_id>/call": (200, 200, 404, 200, 403, L, L, L),
    # The call view's facilitator panel (JSON): the session's team, admins audited.
    "GET /sessions/<session_id>/panel": (200, 200, 404, 200, 403, L, L, L),
    "GET /patients/<patient_id>": (200, 200, 404, 200, 403, L, L, L),
    # Each sees the flags of their own care (dr.other: T's patient only); admins all, audited.
    "GET /follow-up": (200, 200, 200, 200, 403, L, L, L),
    "GET /patients": (200, 200, 200, 200, 403, L, L, L),
    "POST /follow-up/<flag_id>": (400, 400, 404, 400, 403, L, L, L),
    "GET /sessions/<session_id>/risk": (200, 200, 404, 200, 403, L, L, L),
    "GET /patients/<patient_id>/questionnaire/<code>": (200, 200, 404, 200, 403, L, L, L),
    "POST /patients/<patient_id>/questionnaire/<code>": (400, 400, 404, 400, 403, L, L, L),
    "GET /join": (200, 200, 200, 200, 200, 200, 200, 200),
    "POST /join": (400, 400, 400, 400, 400, 400, 400, 400),
    "GET /i/<token>": (200, 200, 200, 200, 200, 200, 200, 200),
    "POST /join/consent": (400, 400, 400, 400, 400, 400, 400, 400),
    # Patient pages act on the visitor's own seat only (admitted: on to the call).
    "GET /join/wait": (403, 403, 403, 403, 403, 302, 302, 403),
    "GET /join/state": (403, 403, 403, 403, 403, 200, 200, 403),
    "GET /join/ping": (204, 204, 204, 204, 204, 204, 204, 204),
    "POST /join/poll": (403, 403, 403, 403, 403, 400, 400, 403),
    "POST /join/leave": (403, 403, 403, 403, 403, 302, 302, 403),
    "POST /join/rejoin": (403, 403, 403, 403, 403, 302, 302, 403),
    "GET /join/questionnaire/<code>": (403, 403, 403, 403, 403, 200, 200, 403),
    "POST /join/questionnaire/<code>": (403, 403, 403, 403, 403, 400, 400, 403),
    "GET /call": (302, 302, 302, 302, 302, 200, 200, 302),
    # A facilitator seat in S's call for its team and admins; a patient only in their own.
    "POST /api/media/offer": (400, 400, 403, 400, 403, 400, 403, 403),
    # Only admins manage staff accounts.
    "GET /staff": (403, 403, 403, 200, 403, L, L, L),
    "POST /staff": (403, 403, 403, 400, 403, L, L, L),
    "POST /staff/<int:user_id>": (403, 403, 403, 400, 403, L, L, L),
    "POST /language": (400, 400, 400, 400, 400, 400, 400, 400),
    "GET /card": (200, 200, 200, 200, 200, 200, 200, 200),
    "POST /card": (400, 400, 400, 400, 400, 400, 400, 400),
    # Each patient's card opens their own space only (another's messages are a leak, checked
    # by the markers); without a card, to the card page.
    "GET /me": (302, 302, 302, 302, 302, 200, 200, 302),
    "GET /me/messages": (302, 302, 302, 302, 302, 200, 200, 302),
    "POST /me/messages": (302, 302, 302, 302, 302, 400, 400, 302),
    "POST /me/sign-out": (302, 302, 302, 302, 302, 302, 302, 302),
    # Each patient has a PHQ-9 due; their plan and diary are theirs alone (markers).
    "GET /me/measures/<code>": (302, 302, 302, 302, 302, 200, 200, 302),
    "POST /me/measures/<code>": (302, 302, 302, 302, 302, 400, 400, 302),
    "GET /me/mood": (302, 302, 302, 302, 302, 200, 200, 302),
    "POST /me/mood": (302, 302, 302, 302, 302, 400, 400, 302),
    "GET /me/plan": (302, 302, 302, 302, 302, 200, 200, 302),
    "GET /me/crisis": (302, 302, 302, 302, 302, 200, 200, 302),
    "GET /me/offline.js": (200, 200, 200, 200, 200, 200, 200, 200),
    "GET /lessons": (200, 200, 200, 200, 403, L, L, L),
    "GET /lessons/<lesson_id>": (200, 200, 200, 200, 403, L, L, L),
    "POST /patients/<patient_id>/lessons": (400, 400, 404, 400, 403, L, L, L),
    "POST /sessions/<session_id>/lessons": (400, 400, 404, 400, 403, L, L, L),
    "GET /me/lessons": (302, 302, 302, 302, 302, 200, 200, 302),
    # Another patient's card gets "no such lesson", as for an id that does not exist.
    "GET /me/lessons/<assignment_id>": (302, 302, 302, 302, 302, 200, 404, 302),
    "POST /me/lessons/<assignment_id>/done": (302, 302, 302, 302, 302, 302, 404, 302),
    "POST /patients/<patient_id>/schedule": (400, 400, 404, 400, 403, L, L, L),
    "GET /patients/<patient_id>/safety-plan": (200, 200, 404, 200, 403, L, L, L),
    "POST /patients/<patient_id>/safety-plan": (400, 400, 404, 400, 403, L, L, L),
    "GET /patients/<patient_id>/card": (200, 200, 404, 200, 403, L, L, L),
    "POST /patients/<patient_id>/card": (400, 400, 404, 400, 403, L, L, L),
    "GET /patients/<patient_id>/messages": (200, 200, 404, 200, 403, L, L, L),
    "POST /patients/<patient_id>/messages": (400, 400, 404, 400, 403, L, L, L),
    # Public clinic information, set by admins only.
    "GET /admin/emergency-contact": (403, 403, 403, 200, 403, L, L, L),
    "POST /admin/emergency-contact": (403, 403, 403, 400, 403, L, L, L),
}
del L

ALLOWED = frozenset({200, 202, 302, 400})


def route_keys(app: Flask) -> set[str]:
    """The "METHOD rule" text of every rule and method of the app's url_map (not HEAD/OPTIONS)."""
    keys = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                keys.add(f"{method} {rule.rule}")
    return keys


def coverage_gaps(app: Flask) -> tuple[set[str], set[str]]:
    """(routes with no entry in ROUTES/EXPECTED, entries naming no route)."""
    keys = route_keys(app)
    entries = set(ROUTES) & set(EXPECTED)
    stale = (set(ROUTES) | set(EXPECTED)) - keys
    return keys - entries, stale | (set(ROUTES) ^ set(EXPECTED))


@dataclass
class World:
    """The clinic the walk runs in: its box, app, records and one client per visitor."""

    box: Box
    app: Flask
    session_s: str = ""
    session_t: str = ""
    patient_p1: str = ""
    flag_p1: str = ""
    lesson_p1: str = ""
    invite_s: str = ""
    user_ids: dict[str, int] = field(default_factory=dict)
    clients: dict[str, FlaskClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)
    seats: dict[str, tuple[str, str]] = field(default_factory=dict)
    forbidden: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def restore(self) -> None:
        """Put back what a cell may change: seats admitted, sessions open, S's team, PHQ-9 asked."""
        store = self.box.store
        store.Attendance.update(status="admitted", left_at=None).execute()
        store.GroupSession.update(state="scheduled", locked=False).execute()
        store.Patient.update(active=True).execute()
        store.RiskFlag.update(state="open", follow_up=None, followed_up_at=None).execute()
        store.LessonAssignment.update(done_at=None).execute()
        co = store.CoFacilitator
        co.delete().where(
            (co.session != self.session_s) | (co.user != self.user_ids["co_facilitator"])
        ).execute()
        if not co.select().exists():
            co.create(session=self.session_s, user=self.user_ids["co_facilitator"])
        # Each cell starts with a fresh code throttle: the walk checks who may reach what, and
        # its many wrong codes from one address would otherwise trip the limit (tested alone).
        self.app.extensions["clinicbox.join_throttle"] = JoinThrottle()
        # A patient may answer only a questionnaire their clinician asked for.
        live = self.app.extensions["clinicbox.live"]
        for session_id in (self.session_s, self.session_t):
            if session_id:
                live.ask(session_id, "phq9")


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf_of(client: FlaskClient) -> str:
    page = client.get("/join").get_data(as_text=True)
    match = _CSRF.search(page)
    if match is None:
        raise RuntimeError("the join page carries no CSRF field")
    return match.group(1)


def _sign_in(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    token = _csrf_of(client)
    reply = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    if reply.status_code != 302:
        raise RuntimeError(f"{username} could not sign in ({reply.status_code})")
    return client


def _join(app: Flask, code: str, name: str) -> FlaskClient:
    client = app.test_client()
    token = _csrf_of(client)
    reply = client.post(
        "/join/consent", data={"csrf_token": token, "code": code, "name": name, "agree": "yes"}
    )
    if reply.status_code != 302:
        raise RuntimeError(f"a patient could not join ({reply.status_code})")
    return client


def build_world(box: Box, app: Flask) -> World:
    """Two sessions and their people, each visitor signed in (or joined) over HTTP."""
    store = box.store
    world = World(box=box, app=app)
    users = {
        "owner": ("dr.owner", "clinician"),
        "co_facilitator": ("dr.co", "clinician"),
        "other_clinician": ("dr.other", "clinician"),
        "admin": ("admin.ann", "admin"),
        "technician": ("tech.tina", "technician"),
    }
    for actor, (username, role) in users.items():
        world.user_ids[actor] = create_user(store, username, PASSWORD, role).id
    secret = app.config["SECRET_KEY"]
    sessions = {}
    for name, title, owner, note in (
        ("S", S_TITLE, "owner", S_NOTE),
        ("T", T_TITLE, "other_clinician", T_NOTE),
    ):
        group = store.GroupSession(
            title=title,
            # Ten minutes from now: inside the join window, so patients can join over HTTP.
            starts_at=(datetime.now() + timedelta(minutes=10)).replace(second=0, microsecond=0),
            facilitator=world.user_ids[owner],
            capacity=8,
        )
        assign_codes(group, secret)
        group.save()
        store.SessionNote.create(session=group, author=world.user_ids[owner], text=note)
        sessions[name] = group
    world.session_s, world.session_t = sessions["S"].id, sessions["T"].id
    world.invite_s = derive_invite_token(secret, world.session_s)
    store.CoFacilitator.create(session=world.session_s, user=world.user_ids["co_facilitator"])

    for actor, (username, _role) in users.items():
        world.clients[actor] = _sign_in(app, username)
    for actor, group, name in (
        ("patient_here", sessions["S"], P1_NAME),
        ("patient_elsewhere", sessions["T"], P2_NAME),
    ):
        world.clients[actor] = _join(app, join_code_of(group, secret) or "", name)
    world.clients["anonymous"] = app.test_client()
    world.restore()  # both patients admitted

    attendance = store.Attendance
    seat_p1 = attendance.get(attendance.session == world.session_s)
    seat_p2 = attendance.get(attendance.session == world.session_t)
    world.patient_p1 = seat_p1.patient_id
    # Both patients answered PHQ-9 item 9 above zero: each flag is for its own care team only.
    for seat in (seat_p1, seat_p2):
        flag = store.RiskFlag.create(patient=seat.patient_id, reason="PHQ9 item 9 answered 1")
        if seat is seat_p1:
            world.flag_p1 = flag.id
    codes = {seat_p1.patient_id: seat_p1.patient.code, seat_p2.patient_id: seat_p2.patient.code}
    # Each patient holds an access card to their own space and wrote to their care team.
    for actor, seat, text in (
        ("patient_here", seat_p1, S_MESSAGE),
        ("patient_elsewhere", seat_p2, T_MESSAGE),
    ):
        card_code = issue_card(store, seat.patient, None)
        client = world.clients[actor]
        reply = client.post("/card", data={"csrf_token": _csrf_of(client), "code": card_code})
        if reply.status_code != 302:
            raise RuntimeError(f"a patient's card did not open their space ({reply.status_code})")
        send_message(store, seat.patient, text)
    owner = store.User.get_by_id(world.user_ids["owner"])
    for seat, diary, plan in ((seat_p1, S_DIARY, S_PLAN), (seat_p2, T_DIARY, T_PLAN)):
        schedule_measure(store, seat.patient, "PHQ9", 7, owner)
        store.MoodEntry.create(patient=seat.patient_id, score=3, note=diary)
        save_plan(store, seat.patient, {"help": plan}, owner)
    library = load_library(box.settings.data_dir)
    for seat, homework in ((seat_p1, S_HOMEWORK), (seat_p2, T_HOMEWORK)):
        (given,) = assign_lesson(store, library, [seat.patient_id], "sleep", homework, owner)
        if seat is seat_p1:
            world.lesson_p1 = given.id
    for actor in ACTORS:
        world.csrf[actor] = _csrf_of(world.clients[actor])
    for actor in users:
        world.seats[actor] = (f"user:{world.user_ids[actor]}", "facilitator")
    world.seats["patient_here"] = (f"attendance/{seat_p1.id}", "patient")
    world.seats["patient_elsewhere"] = (f"attendance/{seat_p2.id}", "patient")

    s_side = (
        S_TITLE,
        P1_NAME,
        S_NOTE,
        codes[seat_p1.patient_id],
        S_MESSAGE,
        S_DIARY,
        S_PLAN,
        S_HOMEWORK,
    )
    t_side = (
        T_TITLE,
        P2_NAME,
        T_NOTE,
        codes[seat_p2.patient_id],
        T_MESSAGE,
        T_DIARY,
        T_PLAN,
        T_HOMEWORK,
    )
    world.forbidden = {
        "owner": t_side,
        "co_facilitator": t_side,
        "other_clinician": s_side,
        "admin": (),
        "technician": s_side + t_side,
        # A patient sees their own session's title and their own name, never staff notes.
        "patient_here": (S_NOTE, *t_side),
        "patient_elsewhere": (T_NOTE, *s_side),
        "anonymous": s_side + t_side,
    }
    return world


def _send(world: World, actor: str, key: str, probe: Probe) -> TestResponse:
    method, _rule = key.split(" ", 1)
    path = probe.path.format(
        session=world.session_s,
        patient=world.patient_p1,
        invite=world.invite_s,
        flag=world.flag_p1,
        staff=world.user_ids["other_clinician"],
        lesson=world.lesson_p1,
    )
    client = world.clients[actor]
    if probe.json is not None:
        return client.open(path, method=method, json=probe.json(world, actor))
    if method == "GET":
        return client.get(path)
    form = dict(probe.form or {})
    form["csrf_token"] = world.csrf[actor]
    return client.open(path, method=method, data=form)


def outcome(response: TestResponse) -> Outcome:
    """The status, or LOGIN for "sign in first" (401, or a redirect to the login page)."""
    if response.status_code == 401:
        return LOGIN
    location = response.headers.get("Location", "")
    if response.status_code == 302 and location.startswith("/login?"):
        return LOGIN
    return response.status_code


def _cross_team_entries(world: World) -> int:
    log = world.box.store.AuditLog
    return log.select().where(log.action == "access.cross_team").count()


def walk(world: World) -> tuple[int, list[str]]:
    """Every route as every visitor: (cells checked, one line per failed cell)."""
    failures: list[str] = []
    cells = 0
    # /logout clears the whole cookie (the CSRF token too), so it goes last of all.
    order = sorted(ROUTES, key=lambda k: (ROUTES[k].signs_out, k == "POST /logout"))
    for key in order:
        probe = ROUTES[key]
        for actor, want in zip(ACTORS, EXPECTED[key], strict=True):
            cells += 1
            audited_before = _cross_team_entries(world)
            response = _send(world, actor, key, probe)
            got = outcome(response)
            if got != want:
                failures.append(f"{key} as {actor}: expected {want}, got {got}")
            shown = response.get_data(as_text=True) + response.headers.get("Location", "")
            leaked = [marker for marker in world.forbidden[actor] if marker in shown]
            if leaked:
                failures.append(f"{key} as {actor}: shows {', '.join(leaked)}")
            if (
                actor == "admin"
                and probe.target
                and got == want
                and want in ALLOWED
                and _cross_team_entries(world) == audited_before
            ):
                failures.append(f"{key} as admin: cross-team view not audited")
            world.restore()
    return cells, failures


@contextmanager
def matrix_box(data_dir: Path) -> Iterator[Box]:
    """A box on `data_dir` with its TLS material, record store and running media loop."""
    settings = Settings(data_dir=data_dir, hostname="matrixbox")
    store = open_store(settings)
    media = MediaLoop()
    box = Box(
        settings=settings,
        tls=ensure_tls(settings.tls_dir, settings.hostname, store.keyring),
        db=store.db,
        media=media,
        setup_code=SetupCode(settings.secrets_dir / "setup-code.json"),
        store=store,
    )
    media.start()
    media.on_shutdown(box.rooms.close_all)
    try:
        yield box
    finally:
        media.stop(timeout=5)
        store.close()


def run_walk(data_dir: Path | None = None) -> tuple[int, list[str]]:
    """Build a box and its clinic (in a temporary directory unless given) and walk it.

    Returns (cells checked, failures): failures is a list with one line per failed cell
    (empty when every cell matches), routes with no entry and entries with no route included.
    """
    with tempfile.TemporaryDirectory(prefix="clinicbox-authz-") as scratch:
        with matrix_box(data_dir or Path(scratch)) as box:
            app = create_app(box, {"TESTING": True})
            missing, stale = coverage_gaps(app)
            cells, failures = walk(build_world(box, app))
            failures += [f"{key}: no entry in the matrix" for key in sorted(missing)]
            failures += [f"{key}: entry for no route" for key in sorted(stale)]
            return cells, failures
