"""Signalling: a participant's SDP offer in, the box's answer out (`POST /api/media/offer`).

The join token (from the portal, once someone is admitted) says which room and seat; after
the answer, in-call events travel on the data channel the client opened (`docs/media.md`).
"""

from __future__ import annotations

import asyncio

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from appliance.box import Box
from appliance.clinical.call_seats import CALL_TOPIC, call_seat
from appliance.clinical.errors import ClinicError
from appliance.media.join_token import JoinTokenError, verify
from appliance.media.room import ChatSink, MediaError
from appliance.media.sdp import BadOffer
from appliance.store.models import GroupSession
from web import csrf
from web.app_state import current_box
from web.auth import current_user
from web.remote_seat import turn_grant

bp = Blueprint("media_api", __name__, url_prefix="/api/media")

JOIN_TIMEOUT_S = 20
# An SDP offer is at most 64 KiB (appliance/media/sdp.py); the JSON around it adds little.
MAX_OFFER_BYTES = 128 * 1024


def _refused(status: int, message: str) -> ClinicError:
    return ClinicError(message, status=status, topic=CALL_TOPIC)


def _chat_sink(box: Box, group: GroupSession) -> ChatSink | None:
    if not group.keep_chat:
        return None
    store = box.store
    group_id = group.id

    async def store_chat(participant_id: str, text: str) -> None:
        def write() -> None:
            store.ChatMessage.create(session=group_id, sender=participant_id, text=text)

        await asyncio.get_running_loop().run_in_executor(None, write)

    return store_chat


@bp.post("/offer")
@csrf.exempt
def offer() -> ResponseReturnValue:
    if (request.content_length or 0) > MAX_OFFER_BYTES:
        raise _refused(413, "the offer is too large")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nesting deep enough to exhaust the parser
        body = None
    if not isinstance(body, dict):
        raise _refused(400, "send JSON with token, sdp and type")
    box = current_box()
    try:
        claims = verify(box, body.get("token", ""))
    except JoinTokenError as exc:
        raise _refused(403, str(exc)) from None
    if claims.participant_id.startswith("user:"):
        # A staff seat needs that staff member's own live session as well as the token, so a
        # token alone (leaked, or minted with a join-token key copied off a card) is not enough.
        user = current_user()
        if user is None or f"user:{user.id}" != claims.participant_id:
            raise _refused(403, "sign in as this staff member to join the call as them")
    group, name = call_seat(box.store, claims.room_id, claims.participant_id)
    rooms = box.rooms
    try:
        answer = box.media.call(
            rooms.join(
                group.id,
                claims.participant_id,
                claims.role,
                name,
                body.get("sdp"),
                body.get("type"),
                capacity=group.capacity,
                on_chat=_chat_sink(box, group),
                resume=body.get("resume"),
                thin=body.get("thin") is True,
                turn=turn_grant(box, claims.participant_id, claims.expires_at),
            ),
            timeout=JOIN_TIMEOUT_S,
        )
    except BadOffer as exc:
        raise _refused(400, str(exc)) from None
    except MediaError as exc:
        raise _refused(exc.status, str(exc)) from None
    except TimeoutError:
        raise _refused(503, "the call service is busy; try again in a moment") from None
    return jsonify(sdp=answer.sdp, type=answer.type)
