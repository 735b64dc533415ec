"""The agent's persistent status (`state/sync-status.json`): last success and error, bytes
used today, down-sync cursor. Written atomically; read by `clinicbox sync status`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


@dataclass
class SyncStatus:
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    bytes_day: str = ""
    bytes_today: int = 0
    records_sent: int = 0
    changes_cursor: int = 0
    paused: str | None = None

    def add_bytes(self, n: int) -> None:
        if self.bytes_day != today():
            self.bytes_day, self.bytes_today = today(), 0
        self.bytes_today += n

    def used_today(self) -> int:
        return self.bytes_today if self.bytes_day == today() else 0

    def failed(self, error: str) -> None:
        self.last_error, self.last_error_at = error[:200], time.time()

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / "state" / "sync-status.json"

    @classmethod
    def load(cls, data_dir: Path) -> SyncStatus:
        try:
            data = json.loads(cls.path(data_dir).read_text())
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, data_dir: Path) -> None:
        path = self.path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)
