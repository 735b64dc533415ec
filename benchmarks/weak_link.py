"""Weak links: what remote patients get in a group call, measured in real browsers.

    python benchmarks/weak_link.py [--browsers] [--quick] [--profiles unconstrained,3g,...]
    python benchmarks/weak_link.py --aiortc [--quick] [--time-scale N] [--profiles 3g,...]

Needs root (the weak-link lab).

--browsers (the default): `clinicbox serve` in the lab's box host; a clinician in headless
Chromium on the LAN (the facilitator: signs in, starts the session, admits, joins the call) and
two remote patients in headless Chromium behind the link emulator, each in its own namespace,
joining the box's real call page by code with consent (harness.browsercall). Every
page's getStats() is read once a second. Per profile (unconstrained, 3g, edge, gprs; one fresh
call each, the link shaped before anyone joins) it reports, for the worse remote patient:
concealed_pct (concealedSamples / totalSamplesReceived of everything it heard),
longest_concealed_s, jitter_buffer_ms (jitterBufferDelay / jitterBufferEmittedCount),
video_fps (framesDecoded per second per picture the box showed it; none shown: 0),
frame_width, longest_freeze_s, join_s (call page opened to first audio played) and
false_reconnect_notices ("reconnecting" tiles and "Connection lost/interrupted" banners on its
page; no profile cuts the link, so every one is false); for the LAN side lan_min_fps (the
facilitator's slowest picture of a patient) and uplink_voice_concealed_pct (a remote
patient's own voice as the facilitator hears it, the worse of the two). The window starts 5 s
after the last participant first played audio and lasts 45 s (--quick: 15 s). --firefox adds
a third remote patient in Firefox ESR on the same link, reported apart (firefox_*).

--aiortc: the lab's synthetic callers (per-packet send times, which browsers do not expose).
One lab: the box, four LAN participants (one facilitator) and
two remote ones behind the link emulator. For each profile (3g, edge, gprs, rmcat-5.1 with its
40/60/80 s steps divided by --time-scale) the same call runs twice, through stock aiortc
relaying (`harness.stock_relay`: MediaRelay, decode once, one encoder per subscriber)
and through ClinicBox's SFU (`Rooms.join`, what `POST /api/media/offer` calls). Participants
are separate processes (`harness.caller`): 320x180 15 fps VP8 at ~150 kbps and 20 ms
Opus at 24 kbps, pre-encoded; they receive 5 audio and 4 video slots and count without
decoding. Remote participants publish what their uplink can carry without adapting (the
synthetic publisher has no congestion control): video and voice from 500 kbps up, voice only
from 64 kbps, nothing below (gprs: 20 kbps up).

Per remote subscriber (the worse of the two is reported): audio packets on time (arrived
within 400 ms of being sent) in %, longest gap between on-time packets, video fps over the
slots showing video, longest freeze, downlink kbit/s against the link; for rmcat the time
after the 2.5 -> 0.6 Mbps step until audio is back to 90% of its on-time share before the step
for 2 s (step_down_s; none if under 50% even before) and after
the 0.6 -> 1 Mbps step until the downlink is back to 90% of what it carried in the first
1 Mbps phase for 2 s (step_up_s); and the LAN subscribers' lowest slot fps. A run during which
the link emulator was stalled by the host, or in a second of whose window the hypervisor took
8% or more of the machine's CPU time (steal), is repeated (up to twice); `worst_steal_pct` says
how much it took in the kept run, `worst_cpu_pressure_pct` how crowded the machine's cores
were (the share of a second in which some task waited for a CPU). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Lab, LabUnavailable, profiles  # noqa: E402
from harness.browsercall import (  # noqa: E402
    BrowserCallError,
    BrowserCallRun,
    BrowserSeat,
    run_browser_call,
)
from harness.caller import BIN_S, Clip  # noqa: E402
from harness.callrun import (  # noqa: E402
    ON_TIME_S,
    CallRun,
    Seat,
    repeat_while_host_stalled,
    run_call,
)
from harness.host_load import HostLoadSampler  # noqa: E402
from harness.profiles import Profile  # noqa: E402

LAN = ["nurse", "lan2", "lan3", "lan4"]
REMOTE = ["p1", "p2"]
FACILITATOR = "nurse"
FIREFOX_PATIENT = "fay"
#: How long everyone may take from the first patient opening the join page to all hearing
#: audio: GPRS pages, the waiting page's reloads and a ~36 kB offer crawl through 80/20 kbps.
BROWSER_JOIN_TIMEOUT_S = {"gprs": 240.0}
#: --browsers profiles: "unconstrained" is the emulator copying frames without shaping.
BROWSER_PROFILES = {
    "unconstrained": profiles.UNSHAPED,
    "3g": profiles.THREE_G,
    "edge": profiles.EDGE,
    "gprs": profiles.GPRS,
}
MODES = ["stock", "clinicbox"]
#: RMCAT 5.1 step times (s, unscaled): 1 -> 2.5 Mbps, 2.5 -> 0.6 (down), 0.6 -> 1 (up).
RMCAT_UP_FIRST, RMCAT_DOWN, RMCAT_UP = 40.0, 60.0, 80.0
HOLD_S = 2.0
#: Warm-up per profile: the time a remote participant takes to join over it, plus settling.
JOIN_S = {"edge": 15.0, "gprs": 34.0}
#: The call goes on this long after the window: a packet sent at its end still arrives (on
#: EDGE 0.35 s later). Without it, the last 0.4 s of sends counted as lost (~1.3% of 30 s).
TAIL_S = 1.0


def remote_publish(link: Profile) -> tuple[str, ...]:
    up = link.steps[0].up.rate_kbps
    if up is None or up >= 500:
        return ("audio", "video")
    return ("audio",) if up >= 64 else ()


def seats_for(link: Profile) -> list[Seat]:
    # The facilitator speaks; everyone else listens (their tones 24 dB down), as in a group
    # where one person talks at a time, and so that a mix of voices can be read back.
    lan = [
        Seat(name, role="facilitator" if name == "nurse" else "patient", quiet=name != "nurse")
        for name in LAN
    ]
    return lan + [
        Seat(name, link=link, publish=remote_publish(link), quiet=True) for name in REMOTE
    ]


def on_time_series(run: CallRun, subscriber: str) -> list[float]:
    """Per half second (by send time): share of packets sent then that arrived on time."""
    report = run.reports.get(subscriber, {})
    expected = sum(1 for s in run.seats if s.name != subscriber and "audio" in s.publish)
    bins = [0] * int(run.seconds / BIN_S + 1)
    for rows in report.get("audio", {}).values():
        for arrival, delay, *mixed in rows:
            sent = arrival - delay
            if delay <= ON_TIME_S and 0 <= sent < run.seconds:
                # A part of the box's mix carries every voice (see CallRun.audio).
                bins[int(sent / BIN_S)] += expected if mixed and mixed[0] else 1
    per_bin = expected * BIN_S / 0.02
    return [min(1.0, b / per_bin) if per_bin else 0.0 for b in bins]


def first_hold(series: list[float], start_s: float, end_s: float, ok: Any) -> float | None:
    """Seconds after start_s until ok(value) holds for HOLD_S of bins in a row (None: never)."""
    hold = int(HOLD_S / BIN_S)
    first, last = int(start_s / BIN_S), min(len(series), int(end_s / BIN_S))
    for i in range(first, last - hold + 1):
        if all(ok(v) for v in series[i : i + hold]):
            return round(i * BIN_S - start_s, 1)
    return None


def step_times(run: CallRun, scale: float, warmup: float) -> tuple[float | None, float | None]:
    """Worst remote subscriber's recovery after the rmcat step down and step up."""
    down_at, up_at, first_up = RMCAT_DOWN / scale, RMCAT_UP / scale, RMCAT_UP_FIRST / scale
    downs, ups = [], []
    for sub in REMOTE:
        on_time = on_time_series(run, sub)
        before = on_time[int((first_up + HOLD_S) / BIN_S) : int(down_at / BIN_S)]
        level = 0.9 * sum(before) / len(before) if before else 0.0
        downs.append(
            first_hold(on_time, down_at, up_at, lambda v, t=level: v >= t) if level >= 0.5 else None
        )
        rates = run.rate_series(sub)
        phase = rates[int(warmup / BIN_S) : int(first_up / BIN_S)]
        target = 0.9 * sum(phase) / len(phase) if phase else 0.0
        ups.append(first_hold(rates, up_at, run.seconds, lambda v, t=target: v >= t))
    worst = [None if None in values else max(values) for values in (downs, ups)]
    return worst[0], worst[1]


def summarise(run: CallRun, link: Profile, window: tuple[float, float]) -> dict[str, Any]:
    audio = [run.audio(sub, window) for sub in REMOTE]
    video = [run.video(sub, window) for sub in REMOTE]
    lan = [run.video(sub, window) for sub in LAN]
    return {
        "audio_on_time_pct": min(a.on_time_pct for a in audio),
        "audio_delivered_pct": min(a.delivered_pct for a in audio),
        "audio_longest_gap_ms": max(a.longest_gap_ms for a in audio),
        "video_fps": min(v.fps for v in video),
        "video_slots_showing": min(v.streams for v in video),
        "longest_freeze_s": max(v.longest_freeze_s for v in video),
        "downlink_kbps": max(run.downlink_kbps(sub, window) for sub in REMOTE),
        "link_down_kbps": link.steps[0].down.rate_kbps,
        "lan_min_fps": min(v.min_fps for v in lan),
        "box_cpu_pct": run.box_cpu_pct,
        "stalled": run.stalled,
        "worst_steal_pct": run.worst_steal_pct(window),
        "worst_cpu_pressure_pct": run.worst_cpu_pressure_pct(window),
        "errors": run.errors,
    }


def measure(
    lab: Lab,
    box: Any,
    hosts: dict[str, Any],
    link: Profile,
    mode: str,
    seconds: float,
    clip: Path,
    window: tuple[float, float],
) -> tuple[CallRun, int]:
    """One call, made again while the host stalls it (three calls at most): the link emulator
    left frames late, or the hypervisor took the machine's CPUs in a second of the window."""
    return repeat_while_host_stalled(
        lambda: run_call(
            lab,
            box,
            hosts,
            seats_for(link),
            mode,
            seconds,
            clip,
            on_start=lambda: [lab.set_profile(hosts[r], link) for r in REMOTE],
        ),
        window,
        log=lambda reason: print(f"  {mode}: {reason}", flush=True),
    )


def browser_summary(run: BrowserCallRun) -> dict[str, Any]:
    """The worse remote patient's figures, and the LAN side's."""
    audio = [run.audio(name) for name in REMOTE]
    video = [run.video(name) for name in REMOTE]
    joins = [run.participants[name].join_s for name in REMOTE]
    lan = run.video(FACILITATOR, REMOTE)
    uplink = [run.audio(FACILITATOR, [name]) for name in REMOTE]
    buffers = [a.jitter_buffer_ms for a in audio if a.jitter_buffer_ms is not None]
    # The browser's own target beside the deepest buffer: the two in one run say whether
    # packet timing (buffer near target) or something else (far above it) inflates it.
    deepest = max(audio, key=lambda a: a.jitter_buffer_ms or -1)
    return {
        "concealed_pct": max(a.concealed_pct for a in audio),
        "longest_concealed_s": max(a.longest_concealed_s for a in audio),
        "jitter_buffer_ms": max(buffers) if buffers else None,
        "jitter_target_ms": deepest.jitter_target_ms,
        "arrival_jitter_ms": deepest.arrival_jitter_ms,
        "video_fps": min(v.fps for v in video),
        "frame_width": min(v.frame_width for v in video),
        "longest_freeze_s": max(v.longest_freeze_s for v in video),
        "join_s": None if None in joins else max(j for j in joins if j is not None),
        "join_timeline": slowest_join(run),
        "false_reconnect_notices": max(run.notices(name) for name in REMOTE),
        "lan_min_fps": lan.min_fps,
        "uplink_voice_concealed_pct": max(u.concealed_pct for u in uplink),
        "lan_reconnect_notices": run.notices(FACILITATOR),
        "audio_only_start": [n for n in REMOTE if run.participants[n].audio_only_start],
        "box_errors": sum(1 for line in run.box_log.splitlines() if line.startswith("ERROR")),
        "unheard": {n: unheard(run, n) for n in REMOTE if run.participants[n].join_s is None},
    }


def slowest_patient(run: BrowserCallRun) -> str:
    """The remote patient who took longest to hear audio (one who never did is slowest)."""
    return max(REMOTE, key=lambda n: run.participants[n].join_s or float("inf"))


def slowest_join(run: BrowserCallRun) -> dict[str, float]:
    """The slowest patient's join timeline (s since the call page opened)."""
    return run.participants[slowest_patient(run)].join_timeline()


def join_requests(run: BrowserCallRun) -> str:
    """The slowest patient's call-page requests: path, start-first byte-end (s), bytes, and the
    time a new connection took (TCP and TLS) where the request opened one."""
    return ", ".join(
        f"{r['path'].rsplit('/', 1)[-1] or '/'} {r['start'] / 1000:.1f}-"
        f"{r['response'] / 1000:.1f}-{r['end'] / 1000:.1f} ({r['bytes']} B"
        + (f", connecting {r['connect'] / 1000:.1f} s)" if r.get("connect") else ")")
        for r in run.participants[slowest_patient(run)].requests
    )


def unheard(run: BrowserCallRun, name: str) -> dict[str, Any]:
    """Where a patient who never played audio got to: seconds from opening the call page to
    the window's end, whether the box welcomed it (gave it an id), its connections (a
    reconnect makes another) and the audio packets and samples its slots received."""
    who = run.participants[name]
    last = who.samples[-1] if who.samples else {"rows": [], "pc": 0}
    audio = [r for r in last["rows"] if r.get("kind") == "audio"]
    return {
        "call_page_s": None if who.opened_at is None else round(run.window[1] - who.opened_at),
        "welcomed": who.me is not None,
        "connections": last["pc"],
        "audio_packets": sum(r.get("packetsReceived", 0) for r in audio),
        "audio_samples": sum(r.get("totalSamplesReceived", 0) for r in audio),
    }


def firefox_summary(run: BrowserCallRun) -> dict[str, Any]:
    """The remote Firefox patient: what it got, and its picture and voice at the LAN."""
    got, seen = run.audio(FIREFOX_PATIENT), run.video(FIREFOX_PATIENT)
    return {
        "firefox_concealed_pct": got.concealed_pct,
        "firefox_jitter_buffer_ms": got.jitter_buffer_ms,
        "firefox_jitter_target_ms": got.jitter_target_ms,
        "firefox_video_fps": seen.fps,
        "firefox_frame_width": seen.frame_width,
        "firefox_join_s": run.participants[FIREFOX_PATIENT].join_s,
        "firefox_reconnect_notices": run.notices(FIREFOX_PATIENT),
        "firefox_seen_at_lan_fps": run.video(FACILITATOR, [FIREFOX_PATIENT]).fps,
        "firefox_heard_at_lan_concealed_pct": run.audio(
            FACILITATOR, [FIREFOX_PATIENT]
        ).concealed_pct,
    }


def browsers_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    steady = 15.0 if args.quick else 45.0
    names = [n for n in (args.profiles or ",".join(BROWSER_PROFILES)).split(",") if n]
    unknown = set(names) - set(BROWSER_PROFILES)
    if unknown:
        parser.exit(
            2,
            f"weak_link: --browsers profiles are {', '.join(BROWSER_PROFILES)}, "
            f"not {', '.join(sorted(unknown))}\n",
        )
    results = []
    with tempfile.TemporaryDirectory(prefix="weak-link-") as tmp:
        try:
            lab = Lab()
            lab.start()
        except LabUnavailable as exc:
            parser.exit(2, f"weak_link: the lab is unavailable: {exc}\n")
        with lab:
            box = lab.host("box")
            seats = [BrowserSeat(FACILITATOR, role="facilitator")]
            seats += [BrowserSeat(name, link=profiles.UNSHAPED) for name in REMOTE]
            if args.firefox:
                seats.append(BrowserSeat(FIREFOX_PATIENT, profiles.UNSHAPED, "firefox"))
            remote = [s.name for s in seats if s.link is not None]
            hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
            for name in names:
                link = BROWSER_PROFILES[name]
                with HostLoadSampler() as load:
                    try:
                        run = run_browser_call(
                            lab,
                            box,
                            hosts,
                            seats,
                            seconds=steady,
                            workdir=Path(tmp),
                            join_timeout_s=BROWSER_JOIN_TIMEOUT_S.get(name, 120.0),
                            on_start=lambda link=link: [
                                lab.set_profile(hosts[r], link) for r in remote
                            ],
                        )
                    except BrowserCallError as exc:
                        # A call that could not be set up is a result too (e.g. a page that
                        # never loaded over GPRS); the other profiles still run.
                        print(f"{name:13s}: the call failed: {exc}", flush=True)
                        results.append({"profile": name, "error": str(exc)})
                        continue
                steal, pressure = load.per_second(run.window[0])
                row = {
                    "profile": name,
                    **browser_summary(run),
                    **(firefox_summary(run) if args.firefox else {}),
                    "worst_steal_pct": max(steal[: int(steady)], default=0.0),
                    "worst_cpu_pressure_pct": max(pressure[: int(steady)], default=0.0),
                }
                print(
                    f"{name:13s}: concealed {row['concealed_pct']}% (longest "
                    f"{row['longest_concealed_s']} s), jitter buffer "
                    f"{row['jitter_buffer_ms']} ms (target {row['jitter_target_ms']} ms, "
                    f"arrival jitter {row['arrival_jitter_ms']} ms), "
                    f"video {row['video_fps']} fps at "
                    f"{row['frame_width']} px, freeze {row['longest_freeze_s']} s, join "
                    f"{row['join_s']} s, false reconnect notices "
                    f"{row['false_reconnect_notices']} (LAN {row['lan_reconnect_notices']}), "
                    f"LAN min {row['lan_min_fps']} fps, uplink voice concealed "
                    f"{row['uplink_voice_concealed_pct']}%, steal {row['worst_steal_pct']}%"
                    + (f", box log errors {row['box_errors']}" if row["box_errors"] else "")
                    + (f", never heard audio: {row['unheard']}" if row["unheard"] else "")
                    + (
                        f", started audio only: {row['audio_only_start']}"
                        if row["audio_only_start"]
                        else ""
                    )
                    + (
                        f"; Firefox: video {row['firefox_video_fps']} fps at "
                        f"{row['firefox_frame_width']} px, seen at the LAN "
                        f"{row['firefox_seen_at_lan_fps']} fps, concealed "
                        f"{row['firefox_concealed_pct']}%, jitter buffer "
                        f"{row['firefox_jitter_buffer_ms']} ms (target "
                        f"{row['firefox_jitter_target_ms']} ms), join {row['firefox_join_s']} s, "
                        f"heard at the LAN {row['firefox_heard_at_lan_concealed_pct']}% "
                        f"concealed, notices "
                        f"{row['firefox_reconnect_notices']}"
                        if args.firefox
                        else ""
                    ),
                    flush=True,
                )
                print(f"{'':13s}  slowest join: {row['join_timeline']}", flush=True)
                print(f"{'':13s}  its requests: {join_requests(run)}", flush=True)
                results.append(row)
    print(
        json.dumps(
            {"clients": "browsers", "quick": args.quick, "window_s": steady, "profiles": results}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    clients = parser.add_mutually_exclusive_group()
    clients.add_argument(
        "--browsers",
        dest="aiortc",
        action="store_false",
        help="real Chromium participants (the default)",
    )
    clients.add_argument(
        "--aiortc",
        action="store_true",
        help="the lab's synthetic aiortc callers, SFU against stock relaying",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (~4 minutes)")
    parser.add_argument(
        "--firefox",
        action="store_true",
        help="--browsers: a third remote patient in Firefox ESR, reported apart",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="--aiortc: run rmcat-5.1's schedule this many times faster (default 2, quick 4)",
    )
    parser.add_argument(
        "--profiles",
        default=None,
        help="default: unconstrained,3g,edge,gprs (--aiortc: 3g,edge,gprs,rmcat-5.1)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="--aiortc: stock, clinicbox or both (default); one alone is for diagnosis",
    )
    parser.set_defaults(aiortc=False)
    args = parser.parse_args()
    if not args.aiortc:
        browsers_main(args, parser)
        return
    args.profiles = args.profiles or "3g,edge,gprs,rmcat-5.1"
    scale = args.time_scale or (4.0 if args.quick else 2.0)
    warmup_default = 6.0 if args.quick else 8.0
    steady = 10.0 if args.quick else 30.0
    names = [n for n in args.profiles.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        parser.exit(2, f"weak_link: --modes takes {' or '.join(MODES)}, comma-separated\n")
    try:
        links = [profiles.by_name(n) for n in names]
    except ValueError as exc:
        parser.exit(2, f"weak_link: {exc}\n")

    results = []
    with tempfile.TemporaryDirectory(prefix="weak-link-") as tmp:
        clip = Path(tmp) / "clip.json"
        Clip.encode().save(clip)
        try:
            lab = Lab()
            lab.start()
        except LabUnavailable as exc:
            parser.exit(2, f"weak_link: the lab is unavailable: {exc}\n")
        with lab:
            box = lab.host("box")
            hosts = {name: lab.host(name) for name in LAN}
            hosts.update({name: lab.host(name, link=profiles.UNSHAPED) for name in REMOTE})
            for link in links:
                rmcat = link.name == profiles.RMCAT_5_1.name
                if rmcat:
                    link = replace(link.time_scaled(scale), name=link.name)
                # Joining takes long on slow uplinks (the offer, ICE and DTLS cross them):
                # about 8 s on edge and 26 s on gprs. Measure from after that.
                warmup = JOIN_S.get(link.name, warmup_default)
                seconds = (RMCAT_UP / scale + 12.0) if rmcat else warmup + steady
                window = (warmup, seconds)
                row: dict[str, Any] = {"profile": link.name}
                for mode in modes:
                    run, attempts = measure(
                        lab, box, hosts, link, mode, seconds + TAIL_S, clip, window
                    )
                    summary = summarise(run, link, window)
                    if rmcat:
                        summary["step_down_s"], summary["step_up_s"] = step_times(
                            run, scale, warmup
                        )
                    summary["attempts"] = attempts
                    print(
                        f"{link.name:9s} {mode:9s}: audio on time "
                        f"{summary['audio_on_time_pct']:5.1f}% (delivered "
                        f"{summary['audio_delivered_pct']:5.1f}%), longest gap "
                        f"{summary['audio_longest_gap_ms']} ms, video "
                        f"{summary['video_fps']} fps in {summary['video_slots_showing']} "
                        f"slots, freeze {summary['longest_freeze_s']} s, down "
                        f"{summary['downlink_kbps']} kbps (link "
                        f"{summary['link_down_kbps']}), LAN min "
                        f"{summary['lan_min_fps']} fps, box CPU {summary['box_cpu_pct']}%, "
                        f"steal {summary['worst_steal_pct']}%, CPU pressure "
                        f"{summary['worst_cpu_pressure_pct']}%"
                        + (
                            f", step down {summary['step_down_s']} s, up {summary['step_up_s']} s"
                            if rmcat
                            else ""
                        )
                        + (f", errors {summary['errors']}" if summary["errors"] else ""),
                        flush=True,
                    )
                    prefix = "baseline_" if mode == "stock" else ""
                    row.update({f"{prefix}{k}": v for k, v in summary.items()})
                row.setdefault("step_down_s", None)
                row.setdefault("step_up_s", None)
                results.append(row)
    print(
        json.dumps(
            {"quick": args.quick, "time_scale": scale, "window_s": steady, "profiles": results}
        )
    )


if __name__ == "__main__":
    main()
