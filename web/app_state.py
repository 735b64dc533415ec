"""What a view reaches through the current Flask app: the running box and the code secret.

Its own module so that blueprints need not import the package that builds the app (and
registers them).
"""

from __future__ import annotations

from flask import current_app

from appliance.box import Box


def current_box() -> Box:
    """The running `Box` of the current app."""
    return current_app.extensions["clinicbox"]


def code_secret() -> bytes:
    """The secret session codes and invite tokens are derived from."""
    return current_app.config["SECRET_KEY"]
