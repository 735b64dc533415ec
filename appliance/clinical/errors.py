"""Why the clinic refuses a request, as exceptions that carry their HTTP status.

The clinic's rules (appliance/clinical/, appliance/provisioning.py) raise these; the portal
turns every one into a response in one place (`web/errors.py`): JSON `{"error", "message"}`
for API callers, the error page for people. The message says what to fix and is shown as it
is, so it names no patient and quotes no clinical content. A caller never chooses a status
by comparing message text: the class (or the `status` given) says it.
"""

from __future__ import annotations


class ClinicError(Exception):
    """A refusal with a message a person can act on and the HTTP status that fits it."""

    status: int = 400
    # The JSON answer's "error" field; empty: the status's own name (e.g. "Not Found").
    topic: str = ""

    def __init__(self, message: str, *, status: int | None = None, topic: str | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        if topic is not None:
            self.topic = topic

    @property
    def message(self) -> str:
        return str(self)


class Invalid(ClinicError):
    """The request asks for something that makes no sense here (400)."""

    status = 400


class NotAllowed(ClinicError):
    """The request is understood but this person may not do it (403)."""

    status = 403


class NotFound(ClinicError):
    """What the request names is not there, or not there for this person (404)."""

    status = 404


class Conflict(ClinicError):
    """The request clashes with the record's current state (409)."""

    status = 409


class Unavailable(ClinicError):
    """A part of the box did not answer in time; trying again may work (503)."""

    status = 503
