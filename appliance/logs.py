"""Logging: one line per event on stderr, journald-friendly, no clinical content.

Log calls carry identifiers (room ids, pseudonymous codes, counts), never names, notes or
answers; `OneLineFormatter` keeps an event on one line even if a message has a newline.
"""

from __future__ import annotations

import logging
import sys


class OneLineFormatter(logging.Formatter):
    """`LEVEL logger: message` with newlines escaped so journald sees one event per line."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def formatException(self, ei: object) -> str:  # noqa: N802 - logging API name
        # Keep only the exception type and message: tracebacks may quote local values.
        exc = ei[1] if isinstance(ei, tuple) else None
        return f"[{type(exc).__name__}: {exc}]" if exc is not None else ""


def configure_logging(level: str = "INFO") -> None:
    """Send all logs to stderr as one line per event."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO about every packet or request.
    for noisy in ("aioice", "aiortc", "cheroot", "zeroconf", "peewee", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
