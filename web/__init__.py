"""The clinic portal: a Flask app factory and its blueprints."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext
from werkzeug.exceptions import Conflict, HTTPException, default_exceptions

from appliance.box import Box
from appliance.clinical.errors import ClinicError
from appliance.store import IntegrityError
from appliance.store.keyring import shred_file
from appliance.translatable import translatable as T

COOKIE_KEY_SECRET = "portal-cookie-key"
# Before the cookie key was wrapped by the store's KEK it was this plaintext file.
LEGACY_COOKIE_KEY_FILE = "flask-secret"


def _secret_key(box: Box) -> bytes:
    """The cookie-signing key, kept wrapped in the store's keyring (not readable off the card
    in passphrase mode); the plaintext file of older releases is shredded."""
    shred_file(box.settings.secrets_dir / LEGACY_COOKIE_KEY_FILE)
    return box.store.keyring.box_secret(COOKIE_KEY_SECRET, lambda: secrets.token_bytes(32))


def create_app(box: Box, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the portal for a running `Box`."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(box),
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=box.settings.idle_logoff_minutes),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    if overrides:
        app.config.update(overrides)
    app.extensions["clinicbox"] = box

    from web import compression, csrf, relay, static_files
    from web.health import bp as health_bp
    from web.setup import bp as setup_bp

    relay.init_app(app)  # first: a relayed request for a staff page is a 404, nothing else
    from web import update_import

    update_import.init_app(app)  # before the CSRF check reads a (big) uploaded form
    csrf.init_app(app)
    compression.init_app(app)
    static_files.init_app(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(setup_bp)
    from web.technician import bp as technician_bp

    app.register_blueprint(technician_bp)
    from web.update_pages import bp as update_bp

    app.register_blueprint(update_bp)
    app.register_blueprint(update_import.bp)

    from web import (
        auth,
        call,
        call_panel,
        care_space,
        follow_up,
        join,
        join_throttle,
        languages,
        lessons,
        live,
        media_api,
        patient_space,
        patients,
        portal,
        rejoin,
        space_measures,
        staff_admin,
    )

    auth.init_app(app)
    live.init_app(app)
    join_throttle.init_app(app)
    join.init_app(app)
    languages.init_app(app)
    patient_space.init_app(app)
    blueprints = (
        auth.bp,
        portal.bp,
        follow_up.bp,
        patients.bp,
        care_space.bp,
        space_measures.bp,
        lessons.bp,
        join.bp,
        rejoin.bp,
        call.bp,
        call_panel.bp,
        media_api.bp,
        staff_admin.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    @app.after_request
    def _security_headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
            "connect-src 'self'; frame-ancestors 'none'",
        )
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        # JSON for API callers, a plain page for people; never a traceback.
        if _wants_json():
            return jsonify(error=exc.name, message=exc.description), exc.code
        return render_template("error.html", error=exc, message=error_sentence(exc)), exc.code

    @app.errorhandler(ClinicError)
    def _refused(exc: ClinicError) -> Any:
        # The one place a refusal becomes a response: its class carries the status
        # (appliance/clinical/errors.py); a topic names the API that refused (e.g. "media").
        if exc.topic and _wants_json():
            return jsonify(error=exc.topic, message=exc.message), exc.status
        return _http_error(default_exceptions[exc.status](description=exc.message))

    @app.errorhandler(IntegrityError)
    def _damaged_record(exc: IntegrityError) -> Any:
        # A tampered/damaged record (already quarantined and audited): say which, keep serving.
        return _http_error(Conflict(str(exc)))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        app.logger.error(
            "unhandled %s on %s %s", type(exc).__name__, request.method, request.endpoint
        )
        return render_template("error.html", error=None), 500

    return app


def _wants_json() -> bool:
    """JSON for API callers, a plain page for people."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


# Werkzeug's own descriptions speak of servers and URLs; a person gets these instead. A view
# that aborts with its own description (what to fix) keeps it.
_PLAIN_ERRORS = {
    400: T(
        "Something in that request was not right. Go back, check what you entered and try again."
    ),
    403: T(
        "This page is not open to you. If you are a patient, join with your session code; "
        "staff, sign in with your own account."
    ),
    404: T("There is no such page here. Check the address, or start again from the links below."),
    405: T("That page cannot be used like this. Go back and use the page's own buttons."),
    413: T("That was too large to send. Send something shorter."),
    500: T("The box could not finish this request. Try again."),
}


def error_sentence(exc: HTTPException) -> str:
    """What went wrong and what to do next, in a sentence a person can act on."""
    description = exc.description or ""
    if description and description != type(exc).description:
        return description
    return gettext(_PLAIN_ERRORS.get(exc.code or 500, _PLAIN_ERRORS[500]))
