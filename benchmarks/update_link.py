"""Updates over the sync link: a one-line change's delta bundle downloaded from the centre
through the weak-link lab (EDGE by default), with the link cut for 5 s once a third has
arrived and the agent killed (-9) and restarted at two thirds.

    python benchmarks/update_link.py [--profile edge|3g|gprs] [--cut-s 5]

Builds 1.0.0 (full) and 1.0.1 (a one-line change, delta) for x86_64 from this checkout in a
temp dir. Needs root (network namespaces). Ends with one JSON line: bundle_bytes,
link_bytes (what the agent counted against its daily budget: bodies, headers, TLS),
overhead (link_bytes / bundle_bytes - 1), download_s, cuts, restarts, complete.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.update.conftest import CENTRAL, _build, _source_copy  # noqa: E402
from tests.update.link_lab import download_over_lab  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="edge", choices=["edge", "3g", "gprs"])
    parser.add_argument("--cut-s", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinicbox-update-link-") as tmp:
        work = Path(tmp)
        key = work / "release.key"
        public = subprocess.run(
            [CENTRAL, "bundle", "keygen", str(key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        keys = work / "trusted"
        keys.mkdir()
        (keys / "release.pub").write_text(public + "\n")
        base, update = work / "clinicbox-1.0.0.cbup", work / "clinicbox-1.0.1.cbup"
        _build(_source_copy(work / "s100"), "1.0.0", key, base)
        # Whole changed wheels (~580 KB): the patched delta (~40 KB) is one range.
        _build(
            _source_copy(work / "s101", "one line"), "1.0.1", key, update, base, whole_wheels=True
        )
        (work / "run").mkdir()
        result = download_over_lab(
            work / "run", base, update, keys, profile=args.profile, cut_s=args.cut_s
        )
    overhead = result.link_bytes / result.bundle_bytes - 1
    print(
        f"{args.profile}: delta bundle {result.bundle_bytes:,} bytes, counted on the link "
        f"{result.link_bytes:,} bytes ({100 * overhead:+.1f}%),"
        f" {result.download_s} s with {result.cuts} cut of {args.cut_s:g} s and "
        f"{result.restarts} kill -9 of the agent; complete: {result.complete}, "
        f"sha256 ok: {result.sha256_ok}"
    )
    doc = asdict(result)
    doc["overhead"] = round(overhead, 4)
    doc["profile"] = args.profile
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
