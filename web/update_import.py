"""Import an update bundle from the technician page: one found on a mounted stick, or an
uploaded file. Technicians only, CSRF-checked.

The portal only queues the choice (appliance.update.import_spool): the root path unit
verifies and installs it, and the page shows the outcome it records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from appliance.update.import_spool import (
    ImportQueueRefused,
    bundles_on_media,
    import_in_progress,
    queue_stick_bundle,
    queue_upload,
    read_status,
    upload_max_bytes,
)
from appliance.update.releases import DEFAULT_ROOT, ReleaseRoot
from web.app_state import current_box
from web.auth import current_user, role_required, staff_user

bp = Blueprint("update_import", __name__)

UPLOAD_ENDPOINT = "update_import.upload"
# A technician's upload this many times over the limit is still read (and dropped) so the page
# can say why; anything bigger, or from anyone else, just gets the 413.
DRAIN_FACTOR = 4


def init_app(app: Flask) -> None:
    """Raise the body limit for the upload alone (the portal's is 2 MiB), before the CSRF
    check reads the form: registered ahead of it, so a file too big is refused by its
    Content-Length before a byte of it is parsed."""

    @app.before_request
    def _upload_limit() -> None:
        if request.endpoint != UPLOAD_ENDPOINT:
            return
        limit = upload_max_bytes()
        length = request.content_length or 0
        if length > limit + 2**20:  # the form's other fields
            user = current_user()
            if user is not None and user.role == "technician" and length <= DRAIN_FACTOR * limit:
                # Read it to nowhere: a server that answers before the body is in resets the
                # connection under a browser still sending, and the technician sees no reason.
                raw = request.environ["wsgi.input"]
                left = length
                while left > 0 and (chunk := raw.read(min(2**20, left))):
                    left -= len(chunk)
            abort(
                413,
                description=f"That file is larger than the {limit // 2**20} MiB a bundle may "
                "be here: it is not an update bundle.",
            )
        request.max_content_length = limit + 2**20


class InsufficientStorage(HTTPException):
    """507: the box has no room for the upload (werkzeug has no class for it)."""

    code = 507
    description = "There is not enough disk space on the box for this."


def _refuse(exc: ImportQueueRefused) -> HTTPException:
    if exc.status == 507:
        return InsufficientStorage(description=str(exc))
    try:
        abort(exc.status, description=str(exc))
    except HTTPException as made:
        return made
    raise AssertionError("abort returned")  # pragma: no cover


def _root() -> ReleaseRoot:
    return ReleaseRoot(Path(os.environ.get("CLINICBOX_RELEASE_ROOT", str(DEFAULT_ROOT))))


@bp.app_context_processor
def import_context() -> dict[str, Any]:
    """`update_import()` for the technician page: bundles on sticks, the last page import."""

    def update_import() -> dict[str, Any]:
        root = _root()
        return {
            "found": bundles_on_media(),
            "status": read_status(root),
            "busy": import_in_progress(current_box().settings.data_dir, root),
            "max_mib": upload_max_bytes() // 2**20,
        }

    return {"update_import": update_import}


def _queued(request_id: str, what: str) -> ResponseReturnValue:
    box = current_box()
    # Which bundle is no PHI; the audit trail says who started an update.
    box.store.audit(staff_user().username, "technician.update-import", f"update/{request_id}")
    flash(f"{what} is queued: the box verifies it, then installs it. The outcome shows below.")
    return redirect(url_for("technician.page") + "#updates")


@bp.post("/technician/update/from-stick")
@role_required("technician")
def from_stick() -> ResponseReturnValue:
    chosen = request.form.get("path", "")
    if not chosen:
        abort(400, description="Choose a bundle found on the stick.")
    try:
        request_id = queue_stick_bundle(current_box().settings.data_dir, _root(), chosen)
    except ImportQueueRefused as exc:
        raise _refuse(exc) from None
    return _queued(request_id, Path(chosen).name)


@bp.post("/technician/update/upload")
@role_required("technician")
def upload() -> ResponseReturnValue:
    sent = request.files.get("bundle")
    if sent is None or not sent.filename:
        abort(400, description="Choose a bundle file (.cbup) to upload.")
    try:
        request_id = queue_upload(
            current_box().settings.data_dir,
            _root(),
            sent.stream,
            sent.filename,
            request.content_length,
        )
    except ImportQueueRefused as exc:
        raise _refuse(exc) from None
    return _queued(request_id, Path(sent.filename).name)
