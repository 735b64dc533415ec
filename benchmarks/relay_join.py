"""How long a Chromium patient at home takes to hear the clinic through the centre's relay.

    python benchmarks/relay_join.py [--quick] [--profile edge]

Needs root, coturn, Chromium and certutil (harness.relay_browsercall). A real
`clinicbox serve` behind the NAT lab's clinic router, the facilitator's Chromium on the clinic
LAN, the patient's Chromium behind a home NAT on the emulated profile. In the same run:
- relay: both routers do endpoint-dependent NAT, the patient's media can only go through
  coturn;
- routed: the routers only route (no NAT), the patient's media may go straight to the box.
Reported per path: the patient's join (call page opened to first audio played, seconds;
median of the rounds), the facilitator's on the LAN in the same calls (the machine's load
shows in it), the patient's offer size and the ICE pair the patient's browser selected.
`--quick`: one round per path, else three. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import LabUnavailable, profiles  # noqa: E402
from harness.browsercall import BrowserCallError  # noqa: E402
from harness.relay_browsercall import run_relay_browser_call  # noqa: E402
from harness.relay_lab import RelayLab  # noqa: E402

SECONDS = 5.0


def _round(profile: profiles.Profile, nat: bool, workdir: Path) -> dict[str, Any]:
    with RelayLab(patient_link=profile, nat=nat) as lab:
        try:
            run = run_relay_browser_call(lab, SECONDS, workdir, settle_s=1.0)
        except BrowserCallError as exc:
            return {"error": str(exc)[:200]}
    pair = run.pairs.get("patient") or {}
    return {
        "patient_join_s": run.call.participants["patient"].join_s,
        "nurse_join_s": run.call.participants["nurse"].join_s,
        "offer_bytes": pair.get("offerBytes"),
        "pair": f"{pair.get('local')}/{pair.get('remote')}",
    }


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round per path")
    parser.add_argument("--profile", default="edge", choices=sorted(profiles.NAMED))
    args = parser.parse_args()
    profile = profiles.by_name(args.profile)
    rounds = 1 if args.quick else 3
    result: dict[str, Any] = {"profile": args.profile, "rounds": rounds}
    try:
        with tempfile.TemporaryDirectory(prefix="relay-join-") as tmp:
            for path, nat in (("relay", True), ("routed", False)):
                runs = [_round(profile, nat, Path(tmp) / f"{path}{i}") for i in range(rounds)]
                for i, one in enumerate(runs):
                    print(f"{path} round {i + 1}: {one}", flush=True)
                result[f"join_s_{path}"] = _median(runs, "patient_join_s")
                result[f"nurse_join_s_{path}"] = _median(runs, "nurse_join_s")
                result[f"offer_bytes_{path}"] = _median(runs, "offer_bytes")
                result[f"pairs_{path}"] = sorted({str(r.get("pair")) for r in runs})
                result[f"failed_{path}"] = sum(1 for r in runs if "error" in r)
    except LabUnavailable as exc:
        print(f"the NAT lab is unavailable here: {exc}", file=sys.stderr)
        return 2
    relay, routed = result.get("join_s_relay"), result.get("join_s_routed")
    result["join_relay_over_routed"] = round(relay / routed, 2) if relay and routed else None
    print(
        f"patient join on {args.profile}: relay {relay} s, routed {routed} s "
        f"(ratio {result['join_relay_over_routed']}); facilitator on the LAN "
        f"{result.get('nurse_join_s_relay')} / {result.get('nurse_join_s_routed')} s"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
