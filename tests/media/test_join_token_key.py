"""The join-token key of a fresh box: made once, the same for callers that race to make it."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from appliance.media.join_token import issue_join_token, token_secret, verify_join_token


def _race(secrets_dir: Path, threads: int) -> tuple[list[bytes], list[BaseException]]:
    keys: list[bytes] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def load() -> None:
        start.wait()
        try:
            keys.append(token_secret(secrets_dir))
        except BaseException as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(exc)

    workers = [threading.Thread(target=load) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    return keys, errors


def test_patients_entering_at_once_on_a_fresh_box_get_one_key(tmp_path: Path) -> None:
    # Two patients loading the call page at once on a fresh box: each page load reads the key.
    # Before, both threads wrote the same temporary file: one failed with FileNotFoundError
    # and the two could hold different keys (a token signed with one fails with the other).
    for trial in range(40):
        secrets_dir = tmp_path / f"fresh-{trial}"
        keys, errors = _race(secrets_dir, threads=4)
        assert errors == [], f"trial {trial}: {errors!r}"
        assert len(keys) == 4 and len(set(keys)) == 1 and len(keys[0]) == 32
        key_file = secrets_dir / "join-token.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert [p.name for p in secrets_dir.iterdir()] == ["join-token.key"]  # no temp left
        token = issue_join_token(keys[0], "7", "attendance/1", "patient")
        assert verify_join_token(token_secret(secrets_dir), token).room_id == "7"
