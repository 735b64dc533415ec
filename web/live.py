"""The portal's one `LiveSessions` (appliance/clinical/live_sessions.py), made with the app."""

from __future__ import annotations

from flask import Flask, current_app

from appliance.clinical.live_sessions import LiveSessions


def init_app(app: Flask) -> None:
    app.extensions["clinicbox.live"] = LiveSessions(app.extensions["clinicbox"].store)


def live_sessions() -> LiveSessions:
    """The app's `LiveSessions`."""
    return current_app.extensions["clinicbox.live"]
