"""What a remote patient may reach through the centre's relay (`https://<centre>/c/<slug>/`).

Requests that came through the box's tunnel carry `RELAYED` in their environ (set only by
`sync.agent.relayed_requests`, never by a direct request). For those, every endpoint that is
not a patient's is a 404, as if it did not exist: staff, setup and technician pages stay on
the clinic's LAN. Their client address is the one the centre saw (its X-Forwarded-For),
so per-address limits (sign-in, session codes) count each remote patient separately.
"""

from __future__ import annotations

from flask import Flask, abort, request

from appliance.box import Box
from sync.agent.relayed_requests import RELAYED
from sync.agent.tunnel import saved_public_url

# Join by code or invite, consent, waiting room, questionnaires, the call page, its files and
# signalling. Nothing here shows a staff view or PHI beyond the patient's own.
PATIENT_ENDPOINTS = frozenset(
    {
        "join.enter_code",
        "join.invite",
        "join.check_code",
        "join.consent",
        "join.waiting",
        "join.state",
        "join.vote",
        "join.leave",
        "join.questionnaire",
        "join.ping",
        "call.patient_call",
        "media_api.offer",
        "languages.choose",
        "space.card_form",
        "space.card_sign_in",
        "space.sign_out",
        "space.home",
        "space.my_messages",
        "space.send_message",
        "diary.measure",
        "diary.mood",
        "diary.plan",
        "diary.crisis",
        "diary.offline_worker",
        "lessons.my_lessons",
        "lessons.my_lesson",
        "lessons.done",
        "static",
    }
)


def public_url(box: Box) -> str | None:
    """Where remote patients reach this box's patient pages, once a relay gave it a name."""
    if box.tunnel is not None:
        return box.tunnel.state.public_url
    return saved_public_url(box.settings.data_dir)


def is_relayed() -> bool:
    return bool(request.environ.get(RELAYED))


def init_app(app: Flask) -> None:
    """Install the relay's allow-list; it must run before every other request hook."""

    @app.before_request
    def _patient_routes_only() -> None:
        if is_relayed() and request.endpoint not in PATIENT_ENDPOINTS:
            abort(404)
