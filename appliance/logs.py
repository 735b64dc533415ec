"""Logging: one line per event on stderr, journald-friendly, no clinical content.

Log calls carry identifiers (room ids, pseudonymous codes, counts), never names, notes or
answers; `OneLineFormatter` keeps an event on one line even if a message has a newline.
"""

from __future__ import annotations

import logging
import os
import sys
import time


def under_journald() -> bool:
    """Whether stderr goes to systemd's journal (which stamps each line itself).

    systemd sets JOURNAL_STREAM to the device and inode of the stream it connected; it only
    counts if stderr is still that stream (a child with redirected output inherits the
    variable but not the journal).
    """
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class OneLineFormatter(logging.Formatter):
    """`LEVEL logger: message` with newlines escaped so journald sees one event per line;
    with `timestamps`, each line starts with the UTC time (for a box run outside systemd)."""

    def __init__(self, timestamps: bool = False) -> None:
        prefix = "%(asctime)s.%(msecs)03dZ " if timestamps else ""
        super().__init__(prefix + "%(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        # UTC, like every time the box stores.
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def formatException(self, ei: object) -> str:  # noqa: N802 - logging API name
        # Keep only the exception type and message: tracebacks may quote local values.
        exc = ei[1] if isinstance(ei, tuple) else None
        return f"[{type(exc).__name__}: {exc}]" if exc is not None else ""


def configure_logging(level: str = "INFO") -> None:
    """Send all logs to stderr as one line per event, time-stamped unless journald is
    listening (it stamps lines itself)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(timestamps=not under_journald()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO about every packet or request.
    for noisy in ("aioice", "aiortc", "cheroot", "zeroconf", "peewee", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
