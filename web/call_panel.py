"""What the facilitator's side panel in the call view shows, as JSON (`call_panel.js` reads it
every few seconds): who is waiting, the pushed message, the poll with its counts, the
breakout split and the questionnaires asked for.

The panel's buttons post to the session's own controls (web/portal.py: admit, broadcast,
poll, breakout, ask), which answer JSON to it, so the rules and the audit trail are the ones
of the session page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from web.access import clinical_required, team_session
from web.app_state import current_box
from web.auth import staff_user
from web.live import live_sessions

bp = Blueprint("call_panel", __name__)


@bp.get("/sessions/<session_id>/panel")
@clinical_required
def panel_state(session_id: str) -> Response:
    group, _grant = team_session(session_id)
    store = current_box().store
    Attendance = store.Attendance  # noqa: N806
    waiting = list(
        Attendance.select()
        .where((Attendance.session == group) & (Attendance.status == "waiting"))
        .order_by(Attendance.joined_at)
    )
    if waiting:
        # Names of people waiting are read; an empty waiting room shows nobody.
        store.audit(f"user:{staff_user().id}", "record.read", f"group_session/{group.id}/waiting")
    live = live_sessions().snapshot(group.id)
    poll: dict[str, Any] | None = None
    if live.poll is not None:
        poll = {
            "id": live.poll.poll_id,
            "question": live.poll.question,
            "options": live.poll.options,
            "counts": live.poll.counts,
            "open": live.poll.open,
        }
    response = jsonify(
        state=group.state,
        waiting=[
            {"id": a.id, "name": a.display_name, "since": a.joined_at.strftime("%H:%M")}
            for a in waiting
        ],
        message=live.message,
        poll=poll,
        rooms=len(set(live.rooms.values())),
        asked=live.asked,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
