"""Whether a call is live on this box, for processes other than the server (the updater).

The server keeps `<data dir>/run/live-call.json`: how many participants are in calls now
(connected seats plus seats held for someone reconnecting), the server's pid and when it last
wrote. Nothing else: no names, rooms or session ids. The updater runs as its own process (as
root, from the CLI or a timer) and reads it before it installs, since a restart ends calls.

A crashed server must never block updates: a file whose pid is gone, or that was not
refreshed for `STALE_S` (a server whose media loop stalled that long has no working call, and
the watchdog restarts it), counts as no call.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

RUN_DIR = "run"
FILE_NAME = "live-call.json"
# The server looks at its rooms this often, and writes when the count changed...
POLL_S = 1.0
# ...or when its last write is this old, so a reader can tell a live server from a hung one.
REFRESH_S = 5.0
STALE_S = 30.0


def live_call_path(data_dir: Path) -> Path:
    return data_dir / RUN_DIR / FILE_NAME


def write_live_call(path: Path, participants: int) -> None:
    """Write the count atomically (readers never see half a file); 0600 in a 0700 dir (the
    updater that reads it is root)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    doc = {"participants": participants, "pid": os.getpid(), "at": time.time()}
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(doc))
    os.replace(tmp, path)


def participants_in_calls(rooms: Any) -> int:
    """Participants in every room of the SFU, held seats included (they are coming back).
    The update probe's loopback call uses a private room, not counted here."""
    return sum(len(room.participants) + len(room.held) for room in list(rooms.rooms.values()))


class LiveCallFile:
    """The server's side: a task on the media loop keeping the file up to date."""

    def __init__(self, rooms: Any, data_dir: Path) -> None:
        self.rooms = rooms
        self.path = live_call_path(data_dir)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Write the count now (0 at start-up), then keep it current; run on the media loop."""
        write_live_call(self.path, participants_in_calls(self.rooms))
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        written, at = participants_in_calls(self.rooms), time.monotonic()
        while True:
            await asyncio.sleep(POLL_S)
            count = participants_in_calls(self.rooms)
            if count != written or time.monotonic() - at >= REFRESH_S:
                try:
                    write_live_call(self.path, count)
                except OSError:
                    continue  # a full disk must not stop the media loop; tried again next tick
                written, at = count, time.monotonic()

    async def stop(self) -> None:
        """Shutdown: no calls once the server has gone; the file goes with it."""
        if self._task is not None:
            self._task.cancel()
        self.path.unlink(missing_ok=True)


def live_participants(data_dir: Path, now: float | None = None) -> int:
    """Participants in a call on this box now, as its server last wrote; 0 when no server
    runs (no file, or its pid is gone) or the file is stale or unreadable."""
    try:
        doc = json.loads(live_call_path(data_dir).read_text())
        count, pid, at = int(doc["participants"]), int(doc["pid"]), float(doc["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    if count <= 0 or not pid_alive(pid):
        return 0
    if abs((now if now is not None else time.time()) - at) > STALE_S:
        return 0
    return count


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (as any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (the updater not running as root)
    return True
