"""Cost of server-side staff sessions per request, and of unlocking a passphrase box.

Per staff request the portal resumes the session: one query for session and account, and a
`last_seen` write at most every 30 s. Measured here: that lookup, the account lookup the
signed-cookie design did per request (for comparison), the occasional touch write (a durable
SQLite commit), and one unlock attempt (scrypt, as /unlock does per passphrase tried).
Last line: one JSON object.

    python benchmarks/staff_sessions.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance import staff_sessions  # noqa: E402
from appliance.accounts import create_user  # noqa: E402
from appliance.config import Settings  # noqa: E402
from appliance.store import open_store  # noqa: E402
from appliance.store.keyring import Keyring  # noqa: E402


def _per_call_us(fn, calls: int, rounds: int) -> float:  # noqa: ANN001
    """Median over `rounds` of the mean microseconds per call."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args()
    calls, rounds = (300, 3) if args.quick else (2000, 5)

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Settings(data_dir=Path(tmp), hostname="bench"))
        user = create_user(store, "dr.ada", "correct horse battery", "clinician")
        token = staff_sessions.start(store, user)
        limits = staff_sessions.SessionLimits(idle_s=900, absolute_s=12 * 3600)
        S = store.StaffSession  # noqa: N806
        User = store.User  # noqa: N806
        resume_us = _per_call_us(lambda: staff_sessions.resume(store, token, limits), calls, rounds)
        old_lookup_us = _per_call_us(lambda: User.get_or_none(User.id == user.id), calls, rounds)
        stamp = [time.time()]

        def touch() -> None:
            stamp[0] += 31
            S.update(last_seen=stamp[0]).execute()

        touch_us = _per_call_us(touch, max(50, calls // 10), rounds)
        store.close()

        secrets_dir = Path(tmp) / "locked"
        secrets_dir.mkdir()
        Keyring.open(secrets_dir, "a long clinic passphrase")
        start = time.perf_counter()
        for _ in range(3):
            Keyring.open(secrets_dir, "a long clinic passphrase")
        unlock_ms = (time.perf_counter() - start) / 3 * 1e3

    print(f"session resume (session + account, one query): {resume_us:.0f} us per request")
    print(f"account lookup of the signed-cookie design:   {old_lookup_us:.0f} us per request")
    print(f"last_seen write (at most every 30 s):          {touch_us / 1000:.2f} ms")
    print(f"unlock attempt (scrypt, N=2^15):               {unlock_ms:.0f} ms")
    print(
        json.dumps(
            {
                "benchmark": "staff_sessions",
                "resume_us": round(resume_us),
                "signed_cookie_lookup_us": round(old_lookup_us),
                "touch_ms": round(touch_us / 1000, 2),
                "unlock_ms": round(unlock_ms),
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
