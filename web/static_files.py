"""Static files a slow link fetches once per release: versioned URLs, cached for a year.

Every `url_for("static", ...)` carries `v`, a digest of the file's content. A request whose
`v` matches the file is answered `Cache-Control: public, max-age=31536000, immutable`, so a
patient's phone loads call.js once per release instead of revalidating each file on every
page (a round trip each: 650 ms on EDGE). Any other request (no `v`, or one from an older
release) keeps `no-cache`. Static answers never read the session, so they do not vary by
cookie: a patient who is given a seat cookie halfway through joining keeps the copies the
browser fetched before it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from werkzeug.security import safe_join

YEAR_S = 365 * 24 * 3600


@functools.lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    # Keyed by mtime and size too, so a file replaced under a running portal gets a new one.
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:12]


def file_version(static_folder: str, filename: str) -> str | None:
    """The version `v` of a static file, or None when there is no such file."""
    path = safe_join(static_folder, filename)
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _digest(path, stat.st_mtime_ns, stat.st_size)


class PageSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a static file's answer never re-sends the
    cookie. A staff session is permanent and its cookie slides forward with each request; the
    page that loaded a file already slid it, and a `Set-Cookie` on the file would make its
    answer vary by cookie."""

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        if request.endpoint == "static":
            return False
        return super().should_set_cookie(app, session)


def init_app(app: Flask) -> None:
    """Version the static URLs `app` makes, and let browsers keep the matching answers."""
    app.session_interface = PageSessions()
    folder = app.static_folder
    if folder is None:
        return

    @app.url_defaults
    def _versioned(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = file_version(folder, values["filename"])
            if version is not None:
                values["v"] = version

    @app.after_request
    def _kept(response: Any) -> Any:
        if request.endpoint != "static" or response.status_code not in (200, 304):
            return response
        filename = (request.view_args or {}).get("filename", "")
        if request.args.get("v") and request.args.get("v") == file_version(folder, filename):
            response.cache_control.no_cache = None
            response.cache_control.public = True
            response.cache_control.max_age = YEAR_S
            response.cache_control.immutable = True
        return response
