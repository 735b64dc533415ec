"""Signalling: a participant's SDP offer in, the box's answer out (`POST /api/media/offer`).

The join token (from the portal, once someone is admitted) says which room and seat; after
the answer, in-call events travel on the data channel the client opened (`docs/media.md`).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

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
# The same bound holds for a gzipped offer once inflated.
MAX_OFFER_BYTES = 128 * 1024
# A call page sends its offer gzipped where the browser can (CompressionStream): SDP repeats
# itself m-line after m-line, so a thin offer of ~6-14 KB becomes ~1-1.5 KB, and on a 20 kbps
# GPRS uplink that upload was most of the join. Recognised by gzip's magic bytes as well as
# by Content-Encoding, because the centre's relay forwards only a list of request headers.
GZIP_MAGIC = b"\x1f\x8b"


class _OfferTooLarge(Exception):
    """The offer inflates past MAX_OFFER_BYTES."""


def _inflate(data: bytes) -> bytes | None:
    """A gzip body inflated, at most MAX_OFFER_BYTES (else _OfferTooLarge); None if broken."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_OFFER_BYTES + 1)
    except zlib.error:
        return None
    if len(out) > MAX_OFFER_BYTES:
        raise _OfferTooLarge
    if not inflater.eof or inflater.unused_data:
        return None
    return out


def _offer_body() -> Any:
    """The offer's JSON object (plain or gzipped body); None if it is not one."""
    data = request.get_data(cache=False)
    gzipped = request.headers.get("Content-Encoding", "").strip().lower() == "gzip"
    if gzipped or data.startswith(GZIP_MAGIC):
        inflated = _inflate(data)
        if inflated is None:
            return None
        data = inflated
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nesting that exhausts the parser
        return None


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
        body = _offer_body()
    except _OfferTooLarge:
        raise _refused(413, "the offer is too large") from None
    if not isinstance(body, dict):
        raise _refused(400, "send JSON with token, sdp and type (plain or gzipped)")
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
