"""Updates on the portal: the health probe the updater calls on a release under trial, and
what the technician page's update section reads (current/previous release, trial, outcome).

The probe runs a loopback call through the SFU. It is no page for people: it answers only a
caller holding the probe secret (a 0600 file in the data dir that root's updater can read),
so no visitor can make the box place calls.
"""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request

from appliance.update.probe_secret import PROBE_HEADER, probe_secret
from web import csrf
from web.app_state import current_box

bp = Blueprint("update", __name__)

# One probe call at a time: each costs two peer connections on the media loop.
_probing = threading.Lock()


@bp.app_context_processor
def update_context() -> dict[str, Any]:
    """`update_status()` for the technician page's update section."""

    def update_status() -> dict[str, Any]:
        from appliance.update.releases import DEFAULT_ROOT, ReleaseRoot
        from appliance.update.status import update_status as read_status

        root = Path(os.environ.get("CLINICBOX_RELEASE_ROOT", str(DEFAULT_ROOT)))
        return read_status(ReleaseRoot(root))

    return {"update_status": update_status}


@bp.post("/healthz/loopback-call")
@csrf.exempt
def loopback_call() -> Response:
    from appliance.update.media_probe import loopback_call as run_call

    box = current_box()
    given = request.headers.get(PROBE_HEADER, "")
    if not given or not hmac.compare_digest(given, probe_secret(box.settings.data_dir)):
        abort(403, description="probe secret missing or wrong")
    if not _probing.acquire(blocking=False):
        abort(409, description="a probe call is already running")
    try:
        result: dict[str, Any] = box.media.call(run_call(), timeout=30)
    finally:
        _probing.release()
    response = jsonify(result)
    response.status_code = 200 if result["ok"] else 503
    response.headers["Cache-Control"] = "no-store"
    return response
