"""The technician's page: the box's health at a glance, a network self-test, key rotation
and factory reset (both behind a typed confirmation). Technicians only.

Readings come from /proc, /sys and the store's bookkeeping; nothing clinical is shown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from appliance import __version__
from appliance.discovery.advert import lan_addresses
from appliance.provisioning import claim_result, factory_reset
from appliance.provisioning_state import read_state
from appliance.store.outbox import Outbox
from appliance.tls import local_ip_addresses
from web.app_state import current_box
from web.auth import current_user, role_required

bp = Blueprint("technician", __name__)

ROTATE_PHRASE = "ROTATE KEYS"
RESET_PHRASE = "FACTORY RESET"
# systemd restarts the unit on this status (Restart=on-failure); it comes back unclaimed.
RESET_EXIT_STATUS = 75
_PROBES = 5


@dataclass(frozen=True)
class Check:
    """One line of the network self-test."""

    name: str
    ok: bool
    detail: str


def cpu_reading(sample_s: float = 0.1) -> dict[str, Any]:
    """Busy share of all CPUs over a short sample, plus the load averages."""

    def _times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    total0, idle0 = _times()
    time.sleep(sample_s)
    total1, idle1 = _times()
    busy = 0.0 if total1 == total0 else 100.0 * (1 - (idle1 - idle0) / (total1 - total0))
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"busy_pct": round(busy, 1), "cores": os.cpu_count() or 1, "load": load}


def temperature_c(root: Path = Path("/sys/class/thermal")) -> float | None:
    """The hottest thermal zone in °C, or None when the hardware reports none."""
    readings = []
    for zone in root.glob("thermal_zone*/temp"):
        try:
            readings.append(int(zone.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return round(max(readings), 1) if readings else None


def memory_reading() -> dict[str, int]:
    """Total and available memory in MiB, from /proc/meminfo."""
    info: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0]) if rest.split() else 0
    return {"total_mib": info.get("MemTotal", 0) // 1024,
            "available_mib": info.get("MemAvailable", 0) // 1024}


def sync_reading(store: Any) -> dict[str, Any]:
    """Outbox backlog, when something last reached the centre, and the last transport error."""
    stats = Outbox(store).stats()
    entry = store.OutboxEntry
    last = entry.select(entry.delivered_at).where(entry.delivered_at.is_null(False)).order_by(
        entry.delivered_at.desc()).scalar()
    error = entry.select(entry.last_error).where(entry.last_error.is_null(False)).order_by(
        entry.next_attempt_at.desc()).scalar()
    return {
        "backlog": sum(stats["lanes"].values()),
        "lanes": stats["lanes"],
        "oldest_age_s": stats["oldest_undelivered_age_s"],
        "last_sync": None if last is None else dt.datetime.fromtimestamp(last, dt.UTC),
        "last_error": error,
    }


def active_sessions(store: Any) -> dict[str, int]:
    """Live group sessions and the people admitted to them."""
    session, attendance = store.GroupSession, store.Attendance
    live = session.select().where(session.state == "live")
    people = attendance.select().where(
        attendance.session.in_(live) & (attendance.status == "admitted")).count()
    return {"sessions": live.count(), "participants": people}


def centre_address(settings: Any) -> tuple[str, int] | None:
    """Host and port of the central server from the claim, else from the settings."""
    url = read_state(settings).central_url or settings.central_url
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def link_quality(address: tuple[str, int], probes: int = _PROBES,
                 timeout_s: float = 1.5) -> dict[str, Any]:
    """TCP connect times to the centre: median and worst RTT in ms, and probes lost."""
    times: list[float] = []
    for _ in range(probes):
        started = time.perf_counter()
        try:
            with socket.create_connection(address, timeout=timeout_s):
                times.append((time.perf_counter() - started) * 1000.0)
        except OSError:
            continue
    return {
        "probes": probes,
        "lost": probes - len(times),
        "median_ms": round(statistics.median(times), 1) if times else None,
        "worst_ms": round(max(times), 1) if times else None,
    }


def self_test(settings: Any) -> tuple[list[Check], dict[str, Any] | None]:
    """Network self-test: LAN address, default route, clock, centre name, centre link."""
    checks = []
    lan = lan_addresses(local_ip_addresses())
    checks.append(Check("LAN address", bool(lan), ", ".join(lan) or "no IPv4 LAN address"))
    routes = Path("/proc/net/route").read_text().splitlines()[1:]
    has_default = any(line.split()[1] == "00000000" for line in routes if line.split())
    checks.append(Check("Default route", has_default,
                        "present" if has_default else "none: the centre is unreachable"))
    now = dt.datetime.now(dt.UTC)
    checks.append(Check("Clock", now.year >= 2025, now.strftime("%Y-%m-%d %H:%M UTC")))
    checks.append(Check("mDNS advert", settings.discovery_enabled,
                        "on" if settings.discovery_enabled else "discovery_enabled is off"))
    address = centre_address(settings)
    if address is None:
        checks.append(Check("Central server", False, "not configured (claim the box first)"))
        return checks, None
    host, port = address
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        checks.append(Check("Centre name lookup", True, host))
    except OSError as exc:
        checks.append(Check("Centre name lookup", False, f"{host}: {exc.strerror or exc}"))
        return checks, None
    link = link_quality(address)
    reached = link["lost"] < link["probes"]
    detail = (f"{link['median_ms']} ms median, {link['lost']}/{link['probes']} lost"
              if reached else f"{host}:{port} refused or timed out")
    checks.append(Check("Centre connection", reached, detail))
    return checks, link


@bp.get("/technician")
@role_required("technician")
def page(claim_error: str | None = None, claim_form: dict[str, str] | None = None) -> str:
    """The technician page; after a refused claim, with why beside the claim form (which keeps
    what was typed)."""
    box = current_box()
    settings = box.settings
    disk = shutil.disk_usage(settings.data_dir)
    not_after = box.tls.not_after()
    last = current_app.extensions.get("clinicbox.selftest")
    return render_template(
        "technician.html",
        version=__version__,
        state=read_state(settings),
        cpu=cpu_reading(),
        temperature=temperature_c(),
        memory=memory_reading(),
        disk={"total_gib": round(disk.total / 2**30, 1), "free_gib": round(disk.free / 2**30, 1),
              "used_pct": round(100 * disk.used / disk.total, 1)},
        uptime_s=float(Path("/proc/uptime").read_text().split()[0]),
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
def run_self_test() -> Any:
    checks, link = self_test(current_box().settings)
    current_app.extensions["clinicbox.selftest"] = {
        "at": dt.datetime.now(dt.UTC), "checks": checks, "link": link}
    return redirect(url_for("technician.page") + "#self-test")


@bp.post("/technician/claim")
@role_required("technician")
def claim() -> Any:
    central_url = request.form.get("central_url", "").strip()
    token = request.form.get("claim_token", "").strip()
    voucher = request.form.get("voucher", "").strip()
    typed = {"central_url": central_url, "claim_token": token, "voucher": voucher}
    if not central_url or bool(token) == bool(voucher):
        return page("Give the centre's address and either a claim token or a voucher.",
                    typed), 400
    box = current_box()
    result = claim_result(box, central_url, token, voucher)
    if not result["ok"]:
        # A refused claim on a claimed box is how a rogue re-claim would show: keep a trace.
        box.store.audit(current_user().username, "technician.claim-refused", "centre")
        return page(result["message"], typed), 400
    flash(result["message"])
    return redirect(url_for("technician.page"))


def _confirmed(phrase: str) -> bool:
    return request.form.get("confirm", "").strip() == phrase


@bp.post("/technician/rotate-keys")
@role_required("technician")
def rotate_keys() -> Any:
    from appliance.store.rotation import rotate

    if not _confirmed(ROTATE_PHRASE):
        return _refused(f"Type {ROTATE_PHRASE} exactly to rotate the keys.")
    box = current_box()
    report = rotate(box.store)
    box.store.audit(current_user().username, "technician.rotate-keys", f"key/{report.key_id}")
    flash(f"Keys rotated: data key {report.key_id} active, {report.rows} rows re-encrypted.")
    return redirect(url_for("technician.page"))


@bp.post("/technician/factory-reset")
@role_required("technician")
def reset() -> Any:
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


def _exit_for_restart(box: Any) -> None:
    box.media.stop(timeout=2.0)  # withdraws the mDNS advert
    os._exit(RESET_EXIT_STATUS)


def _refused(message: str) -> Any:
    abort(400, description=message)
