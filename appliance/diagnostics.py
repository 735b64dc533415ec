"""The box's health for the technician page: readings from /proc, /sys and the store's
bookkeeping, and the network self-test. Nothing clinical is read or shown.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.config import Settings
from appliance.discovery.advert import lan_addresses
from appliance.provisioning_state import read_state
from appliance.store.outbox import Outbox
from appliance.store.store import Store
from appliance.tls import local_ip_addresses

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
    return {
        "total_mib": info.get("MemTotal", 0) // 1024,
        "available_mib": info.get("MemAvailable", 0) // 1024,
    }


def sync_reading(store: Store) -> dict[str, Any]:
    """Outbox backlog, when something last reached the centre, and the last transport error."""
    stats = Outbox(store).stats()
    entry = store.OutboxEntry
    last = (
        entry.select(entry.delivered_at)
        .where(entry.delivered_at.is_null(False))
        .order_by(entry.delivered_at.desc())
        .scalar()
    )
    error = (
        entry.select(entry.last_error)
        .where(entry.last_error.is_null(False))
        .order_by(entry.next_attempt_at.desc())
        .scalar()
    )
    return {
        "backlog": sum(stats["lanes"].values()),
        "lanes": stats["lanes"],
        "oldest_age_s": stats["oldest_undelivered_age_s"],
        "last_sync": None if last is None else dt.datetime.fromtimestamp(last, dt.UTC),
        "last_error": error,
    }


def active_sessions(store: Store) -> dict[str, int]:
    """Live group sessions and the people admitted to them."""
    session, attendance = store.GroupSession, store.Attendance
    live = session.select().where(session.state == "live")
    people = (
        attendance.select()
        .where(attendance.session.in_(live) & (attendance.status == "admitted"))
        .count()
    )
    return {"sessions": live.count(), "participants": people}


def centre_address(settings: Settings) -> tuple[str, int] | None:
    """Host and port of the central server from the claim, else from the settings."""
    url = read_state(settings).central_url or settings.central_url
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def link_quality(
    address: tuple[str, int], probes: int = _PROBES, timeout_s: float = 1.5
) -> dict[str, Any]:
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


def self_test(settings: Settings) -> tuple[list[Check], dict[str, Any] | None]:
    """Network self-test: LAN address, default route, clock, centre name, centre link."""
    checks = []
    lan = lan_addresses(local_ip_addresses())
    checks.append(Check("LAN address", bool(lan), ", ".join(lan) or "no IPv4 LAN address"))
    routes = Path("/proc/net/route").read_text().splitlines()[1:]
    has_default = any(line.split()[1] == "00000000" for line in routes if line.split())
    checks.append(
        Check(
            "Default route",
            has_default,
            "present" if has_default else "none: the centre is unreachable",
        )
    )
    now = dt.datetime.now(dt.UTC)
    checks.append(Check("Clock", now.year >= 2025, now.strftime("%Y-%m-%d %H:%M UTC")))
    checks.append(
        Check(
            "mDNS advert",
            settings.discovery_enabled,
            "on" if settings.discovery_enabled else "discovery_enabled is off",
        )
    )
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
    detail = (
        f"{link['median_ms']} ms median, {link['lost']}/{link['probes']} lost"
        if reached
        else f"{host}:{port} refused or timed out"
    )
    checks.append(Check("Centre connection", reached, detail))
    return checks, link


def disk_reading(path: Path) -> dict[str, float]:
    """Size, free space and use of the file system holding `path` (the data dir)."""
    disk = shutil.disk_usage(path)
    return {
        "total_gib": round(disk.total / 2**30, 1),
        "free_gib": round(disk.free / 2**30, 1),
        "used_pct": round(100 * disk.used / disk.total, 1),
    }


def uptime_s() -> float:
    """Seconds since the machine booted."""
    return float(Path("/proc/uptime").read_text().split()[0])
