"""Where a remote browser patient's audio play-out delay comes from: packet timing of the
facilitator's voice at each hop of a real call, against the browser's own jitter buffer.

    python benchmarks/audio_timing.py [--profile unconstrained|3g|edge|gprs] [--seconds 20]

Needs root (the weak-link lab). One call (harness.browsercall): the facilitator in headless
Chromium on the LAN and one remote patient in headless Chromium behind the profile. The
lab's kernel stamps every RTP packet (harness.rtp_capture: SRTP leaves the RTP header in the
clear) in the box's namespace (the facilitator's voice coming in, the patient's slot going
out) and in the patient's (the same slot arriving). Per hop and stream it reports RFC 3550
interarrival jitter (its end and peak in the window), the spread of transit times (99th
minus 1st percentile: what a jitter buffer must cover) and packets over 60 ms later than
the stream's earliest; beside them the patient's Chromium: its `jitter` (the same RFC 3550
figure, measured by its own network thread), jitter buffer and target. If the kernel at the
patient sees little jitter and Chromium much, the browser's own scheduling adds it; if the
box's output is already jittery and its input is not, the box does. It also reads the
patient's own voice at the box (`p1_uplink_audio`): the packet time (RTP timestamp step)
and rate its browser really sends, against what the box's answer asked of a thin link (60
ms, 12 kbps Opus). `--keep DIR` keeps the captures there. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Lab, LabUnavailable, profiles  # noqa: E402
from harness.browsercall import BrowserSeat, run_browser_call  # noqa: E402
from harness.host_load import HostLoadSampler  # noqa: E402
from harness.rtp_capture import audio_streams, packet_time_and_rate, streams  # noqa: E402

PROFILES = {
    "unconstrained": profiles.UNSHAPED,
    "3g": profiles.THREE_G,
    "edge": profiles.EDGE,
    "gprs": profiles.GPRS,
}
CAPTURE_S = 400.0  # longer than any call: stopped when the call ends


def hop_figures(path: Path, window: tuple[float, float], direction: str, peer: str) -> list[Any]:
    return [
        {
            "ssrc": s.ssrc,
            "packets": s.packets,
            "jitter_ms": s.jitter_ms,
            "max_jitter_ms": s.max_jitter_ms,
            "spread_ms": s.spread_ms,
            "late_over_60ms": s.late_over_60ms,
        }
        for s in audio_streams(path, window)
        if s.direction == direction and s.peer == peer
    ]


def uplink_audio(path: Path, window: tuple[float, float], peer: str) -> list[Any]:
    """The patient's own voice as it reaches the box: packet time and rate per stream."""
    rows = streams(path)
    out = []
    for s in audio_streams(path, window):
        if s.direction == "in" and s.peer == peer:
            ptime, kbps = packet_time_and_rate(rows[("in", peer, s.ssrc)], window)
            out.append({"ssrc": s.ssrc, "ptime_ms": ptime, "rtp_kbps": kbps})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--profile", default="unconstrained", choices=sorted(PROFILES))
    parser.add_argument("--seconds", type=float, default=20.0, help="window measured (s)")
    parser.add_argument("--keep", type=Path, help="a directory to keep the captures in")
    args = parser.parse_args()
    link = PROFILES[args.profile]
    seats = [BrowserSeat("nurse", role="facilitator"), BrowserSeat("p1", link=profiles.UNSHAPED)]
    with tempfile.TemporaryDirectory(prefix="audio-timing-") as tmp:
        try:
            lab = Lab()
            lab.start()
        except LabUnavailable as exc:
            parser.exit(2, f"audio_timing: the lab is unavailable: {exc}\n")
        with lab, HostLoadSampler() as load:
            box = lab.host("box")
            hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
            box_cap, p1_cap = Path(tmp) / "box.jsonl", Path(tmp) / "p1.jsonl"
            captures = [
                lab.python_module(host, "harness.rtp_capture", str(path), str(CAPTURE_S))
                for host, path in ((box, box_cap), (hosts["p1"], p1_cap))
            ]
            run = run_browser_call(
                lab,
                box,
                hosts,
                seats,
                seconds=args.seconds,
                workdir=Path(tmp),
                on_start=lambda: lab.set_profile(hosts["p1"], link),
            )
            for proc in captures:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            steal, pressure = load.per_second(run.window[0])
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in (box_cap, p1_cap):
                    shutil.copy(path, args.keep / path.name)
                (args.keep / "window.json").write_text(json.dumps(run.window))
        nurse_ip, p1_ip = hosts["nurse"].ip, hosts["p1"].ip
        heard = run.audio("p1", ["nurse"])
        row = {
            "profile": args.profile,
            "box_in_from_nurse": hop_figures(box_cap, run.window, "in", nurse_ip),
            "box_out_to_p1": hop_figures(box_cap, run.window, "out", p1_ip),
            "p1_in_from_box": hop_figures(p1_cap, run.window, "in", box.ip),
            "p1_uplink_audio": uplink_audio(box_cap, run.window, p1_ip),
            "p1_asked_thin": run.participants["p1"].audio_only_start,
            "p1_hears": sorted(
                {
                    r.get("who") or "-"
                    for s in run.participants["p1"].samples[-3:]
                    for r in s["rows"]
                    if r.get("kind") == "audio"
                }
            ),
            "p1_chromium_jitter_ms": heard.arrival_jitter_ms,
            "p1_jitter_buffer_ms": heard.jitter_buffer_ms,
            "p1_jitter_target_ms": heard.jitter_target_ms,
            "p1_concealed_pct": heard.concealed_pct,
            "worst_steal_pct": max(steal[: int(args.seconds)], default=0.0),
            "worst_cpu_pressure_pct": max(pressure[: int(args.seconds)], default=0.0),
            "load_average": os.getloadavg()[0],
        }
    for key in ("box_in_from_nurse", "box_out_to_p1", "p1_in_from_box", "p1_uplink_audio"):
        print(f"{key:18s}: {row[key]}")
    print(
        f"p1's Chromium     : jitter {row['p1_chromium_jitter_ms']} ms, buffer "
        f"{row['p1_jitter_buffer_ms']} ms (target {row['p1_jitter_target_ms']} ms), concealed "
        f"{row['p1_concealed_pct']}%; load {row['load_average']:.1f}"
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
