"""What the adaptation tick costs: plans computed per tick and CPU per tick of
`SessionAdaptation.tick` for 12 subscribers over the fluid link model (harness.fluid).

    python benchmarks/adaptation_tick.py [--seconds S] [--before REF]

Cases: 12 LAN subscribers; 12 with every third one remote on a 3 Mbps link. Each publisher
sends 40 kbps of voice and 600 kbps of video. `--before REF` runs the same cases against the
adaptation code of git commit REF (extracted with `git archive`) in the same run, and checks
that both made the same decisions (a digest of every plan, estimate and notice).
Last line JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ("lan12", "mixed12")


def _measure(seconds: float) -> dict[str, dict[str, Any]]:
    """Run every case with the adaptation code on sys.path; figures per case."""
    import appliance.media.adaptation.session as session_module
    from appliance.media.adaptation import Publisher
    from harness.fluid import FluidLink, simulate

    calls = 0
    real = session_module.allocate

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    session_module.allocate = counting  # type: ignore[assignment]
    roster = [
        Publisher(
            f"p{i}",
            facilitator=i == 0,
            speaking_rank=i if i < 4 else None,
            audio_bps=40_000,
            video_bps=600_000,
        )
        for i in range(12)
    ]
    results = {}
    for case in CASES:
        links: dict[str, FluidLink | None] = {
            f"p{i}": (FluidLink(lambda t: 3e6) if case == "mixed12" and i % 3 == 0 else None)
            for i in range(12)
        }
        calls = 0
        digest = hashlib.sha256()
        ticks = 0
        tick_cpu = 0.0
        run = simulate(links, roster, seconds)
        while True:
            start = time.process_time()
            try:
                t, updates = next(run)
            except StopIteration:
                break
            tick_cpu += time.process_time() - start
            ticks += 1
            for sub in sorted(updates):
                u = updates[sub]
                digest.update(repr((t, sub, u.plan, u.estimate, u.notices)).encode())
        results[case] = {
            "plans_per_tick": round(calls / ticks, 2),
            "us_per_tick": round(1e6 * tick_cpu / ticks),
            "decisions": digest.hexdigest()[:16],
        }
    return results


def _before(ref: str, seconds: float) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="adaptation-tick-") as tree:
        archive = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "archive",
                ref,
                "appliance/media/adaptation",
                "harness/fluid.py",
            ],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            sys.exit(f"adaptation_tick: --before {ref}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        for package in ("appliance", "appliance/media", "harness"):
            (Path(tree) / package / "__init__.py").touch()
        out = subprocess.run(
            [sys.executable, __file__, "--seconds", str(seconds), "--json-only"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": tree},
        )
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per case")
    parser.add_argument("--before", help="also run the adaptation code of this git commit")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds <= 0:
        sys.exit("adaptation_tick: --seconds must be more than 0")
    if args.json_only:
        print(json.dumps(_measure(args.seconds)))
        return
    sys.path.insert(0, str(ROOT))
    before = _before(args.before, args.seconds) if args.before else None
    now = _measure(args.seconds)
    summary: dict[str, Any] = {"now": now}
    for case in CASES:
        line = (
            f"{case:8s} plans/tick {now[case]['plans_per_tick']:6.2f}  "
            f"us/tick {now[case]['us_per_tick']:6d}"
        )
        if before is not None:
            old = before[case]
            same = old["decisions"] == now[case]["decisions"]
            line += (
                f"   {args.before}: plans/tick {old['plans_per_tick']:6.2f}  "
                f"us/tick {old['us_per_tick']:6d}  cpu ratio "
                f"{now[case]['us_per_tick'] / max(1, old['us_per_tick']):.2f}x  "
                f"same decisions: {same}"
            )
        print(line)
    if before is not None:
        summary["before"] = {"ref": args.before, **before}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
