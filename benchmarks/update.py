"""Updates: bundle sizes, time to apply a release, time to roll back a bad one, and power
cuts during an update (kill -9 of the updater and the service at random moments).

    python benchmarks/update.py [--quick] [--cuts N]

Builds 1.0.0 (full), 1.0.1 (a one-line change, delta: the app wheel as a binary patch; and
once more with whole changed wheels, for comparison) and 1.0.2 (forwards no video, delta)
from this checkout for x86_64 in a temp dir, installs 1.0.0 under a supervisor (what systemd
does), then measures. Each power cut kills (-9) the updater, its children and the service at
a random moment of the update. Ends with one JSON line: full_bundle_bytes, delta_bytes and
delta_pct (binary patches), delta_whole_wheels_bytes and delta_whole_wheels_pct, apply_s,
rollback_s, bricked (cuts that left a box not serving or with a broken audit chain), cuts.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.update.conftest import (  # noqa: E402
    CENTRAL,
    Supervisor,
    _build,
    _source_copy,
    make_box,
    wait_serving,
)
from tests.update.conftest import Bundles as BundleSet  # noqa: E402
from tests.update.power_cut import cut_once, reset_root  # noqa: E402


def build(work: Path) -> BundleSet:
    key = work / "release.key"
    public = subprocess.run(
        [CENTRAL, "bundle", "keygen", str(key)], check=True, capture_output=True, text=True
    ).stdout.strip()
    keys = work / "trusted"
    keys.mkdir()
    (keys / "release.pub").write_text(public + "\n")
    b100, b101, b102 = (work / f"clinicbox-1.0.{n}.cbup" for n in range(3))
    _build(_source_copy(work / "s100"), "1.0.0", key, b100)
    _build(_source_copy(work / "s101", "one line"), "1.0.1", key, b101, b100)
    whole = work / "clinicbox-1.0.1-whole-wheels.cbup"
    _build(work / "s101", "1.0.1", key, whole, b100, whole_wheels=True)
    _build(_source_copy(work / "s102", "broken", break_video=True), "1.0.2", key, b102, b101)
    return BundleSet(work, key, keys, b100, b101, b102)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 power cuts instead of 50")
    parser.add_argument("--cuts", type=int, default=None)
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    cuts = args.cuts if args.cuts is not None else (5 if args.quick else 50)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="clinicbox-update-bench-") as tmp:
        work = Path(tmp)
        (work / "b").mkdir()
        bundles = build(work / "b")
        full, delta = bundles.v100.stat().st_size, bundles.v101.stat().st_size
        whole = (bundles.dir / "clinicbox-1.0.1-whole-wheels.cbup").stat().st_size
        print(
            f"full bundle {full:,} bytes; delta for a one-line change {delta:,} bytes "
            f"({100 * delta / full:.2f}%) with binary patches, {whole:,} bytes "
            f"({100 * whole / full:.2f}%) with whole changed wheels"
        )

        box = make_box(work / "box", bundles)
        done = box.update("import", str(bundles.v100))
        assert done.returncode == 0, done.stderr
        supervisor = Supervisor(box, work / "serve.log").start()
        try:
            wait_serving(box, "1.0.0")
            pristine = work / "pristine"
            subprocess.run(["cp", "-a", str(box.root), str(pristine)], check=True)

            # How long an update takes, then power cuts spread over that time, each from the
            # same starting point.
            started = time.monotonic()
            done = box.update("import", str(bundles.v101))
            apply_s = time.monotonic() - started
            assert json.loads(done.stdout)["outcome"] == "committed", done.stdout + done.stderr
            print(f"apply 1.0.0 -> 1.0.1 (delta, install, switch, restart, check): {apply_s:.1f} s")
            supervisor = reset_root(box, supervisor, pristine)
            wait_serving(box, "1.0.0")

            bricked = 0
            for n in range(cuts):
                at_s = rng.uniform(0.05, apply_s * 1.05)
                result = cut_once(box, supervisor, bundles.v101, at_s, ("1.0.0", "1.0.1"))
                bricked += result.bricked
                print(
                    f"cut {n + 1}/{cuts} at {at_s:5.1f} s: up on {result.came_up_on}, "
                    f"{result.settled}, records {'ok' if result.records_ok else 'BROKEN'}; "
                    f"last: {result.last}"
                )
                supervisor = reset_root(box, supervisor, pristine)
                wait_serving(box, "1.0.0")

            done = box.update("import", str(bundles.v101))
            assert json.loads(done.stdout)["outcome"] == "committed", done.stdout + done.stderr
            started = time.monotonic()
            done = box.update("import", str(bundles.v102_broken))
            failed_at = time.monotonic()
            wait_serving(box, "1.0.1", timeout=300)
            rollback_s = time.monotonic() - failed_at
            print(
                f"bad release 1.0.2: {json.loads(done.stdout).get('reason')}; judged after "
                f"{failed_at - started:.1f} s, serving 1.0.1 again {rollback_s:.1f} s later"
            )
        finally:
            supervisor.stop()

    print(
        json.dumps(
            {
                "full_bundle_bytes": full,
                "delta_bytes": delta,
                "delta_pct": round(100 * delta / full, 3),
                "delta_whole_wheels_bytes": whole,
                "delta_whole_wheels_pct": round(100 * whole / full, 3),
                "apply_s": round(apply_s, 1),
                "rollback_s": round(rollback_s, 1),
                "bricked": bricked,
                "cuts": cuts,
            }
        )
    )


if __name__ == "__main__":
    main()
