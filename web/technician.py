"""The technician's page: the box's health at a glance, a network self-test, key rotation
and factory reset (both behind a typed confirmation). Technicians only.

Readings and the self-test are appliance/diagnostics.py; nothing clinical is shown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance import __version__
from appliance.box import Box
from appliance.diagnostics import (
    active_sessions,
    cpu_reading,
    disk_reading,
    memory_reading,
    self_test,
    sync_reading,
    temperature_c,
    uptime_s,
)
from appliance.provisioning import ClaimRefused, claim_for_portal, factory_reset
from appliance.provisioning_state import read_state
from web.app_state import current_box
from web.auth import role_required, staff_user

bp = Blueprint("technician", __name__)

ROTATE_PHRASE = "ROTATE KEYS"
RESET_PHRASE = "FACTORY RESET"
# systemd restarts the unit on this status (Restart=on-failure); it comes back unclaimed.
RESET_EXIT_STATUS = 75


@bp.get("/technician")
@role_required("technician")
def page(claim_error: str | None = None, claim_form: dict[str, str] | None = None) -> str:
    """The technician page; after a refused claim, with why beside the claim form (which keeps
    what was typed)."""
    box = current_box()
    settings = box.settings
    not_after = box.tls.not_after()
    last = current_app.extensions.get("clinicbox.selftest")
    return render_template(
        "technician.html",
        version=__version__,
        state=read_state(settings),
        cpu=cpu_reading(),
        temperature=temperature_c(),
        memory=memory_reading(),
        disk=disk_reading(settings.data_dir),
        uptime_s=uptime_s(),
        service_uptime_s=time.monotonic() - box.started_at,
        sessions=active_sessions(box.store),
        sync=sync_reading(box.store),
        remote=box.tunnel.state if box.tunnel is not None else None,
        tls_not_after=not_after,
        tls_days_left=(not_after - dt.datetime.now(dt.UTC)).days,
        selftest=last,
        rotate_phrase=ROTATE_PHRASE,
        reset_phrase=RESET_PHRASE,
        claim_error=claim_error,
        claim_form=claim_form or {},
    )


@bp.post("/technician/self-test")
@role_required("technician")
def run_self_test() -> ResponseReturnValue:
    checks, link = self_test(current_box().settings)
    current_app.extensions["clinicbox.selftest"] = {
        "at": dt.datetime.now(dt.UTC), "checks": checks, "link": link}
    return redirect(url_for("technician.page") + "#self-test")


@bp.post("/technician/claim")
@role_required("technician")
def claim() -> ResponseReturnValue:
    central_url = request.form.get("central_url", "").strip()
    token = request.form.get("claim_token", "").strip()
    voucher = request.form.get("voucher", "").strip()
    typed = {"central_url": central_url, "claim_token": token, "voucher": voucher}
    if not central_url or bool(token) == bool(voucher):
        return page("Give the centre's address and either a claim token or a voucher.",
                    typed), 400
    box = current_box()
    try:
        claimed = claim_for_portal(box, central_url, token, voucher)
    except ClaimRefused as exc:
        # A refused claim on a claimed box is how a rogue re-claim would show: keep a trace.
        box.store.audit(staff_user().username, "technician.claim-refused", "centre")
        return page(exc.message, typed), 400
    flash(claimed)
    return redirect(url_for("technician.page"))


def _confirmed(phrase: str) -> bool:
    return request.form.get("confirm", "").strip() == phrase


@bp.post("/technician/rotate-keys")
@role_required("technician")
def rotate_keys() -> ResponseReturnValue:
    from appliance.store.rotation import rotate

    if not _confirmed(ROTATE_PHRASE):
        return _refused(f"Type {ROTATE_PHRASE} exactly to rotate the keys.")
    box = current_box()
    report = rotate(box.store)
    box.store.audit(staff_user().username, "technician.rotate-keys", f"key/{report.key_id}")
    flash(f"Keys rotated: data key {report.key_id} active, {report.rows} rows re-encrypted.")
    return redirect(url_for("technician.page"))


@bp.post("/technician/factory-reset")
@role_required("technician")
def reset() -> ResponseReturnValue:
    if not _confirmed(RESET_PHRASE):
        return _refused(f"Type {RESET_PHRASE} exactly to reset the box.")
    box = current_box()
    # The sync agent and the tunnel write small files under state/ as they run: stop them
    # first, or the wipe races them and a state/ directory comes back.
    if box.sync_agent is not None:
        stopping = asyncio.run_coroutine_threadsafe(box.sync_agent.stop(), box.media.loop)
        stopping.result(timeout=30)
    if box.tunnel is not None:
        box.tunnel.stop()
    # No audit entry: the audit log goes with the store. The wipe needs the store closed;
    # the service then exits so systemd restarts it clean.
    box.store.close()
    factory_reset(box.settings)
    threading.Timer(1.0, _exit_for_restart, args=(box,)).start()
    return render_template("technician_reset.html"), 202


def _exit_for_restart(box: Box) -> None:
    box.media.stop(timeout=2.0)  # withdraws the mDNS advert
    os._exit(RESET_EXIT_STATUS)


def _refused(message: str) -> Any:
    abort(400, description=message)
