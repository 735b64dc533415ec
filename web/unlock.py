"""The locked portal: what a passphrase-protected box serves after a restart until a staff
member enters the store passphrase at /unlock.

Nothing clinical can be shown before that (the record keys are still wrapped), so this app has
no store, no accounts and no media: an unlock form, `/healthz` saying "locked", and `/ca.pem`.
Wrong passphrases are rate-limited per client address on top of scrypt's own cost.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for

from web import csrf, languages
from web.auth import LoginThrottle


def create_unlock_app(try_passphrase: Callable[[str], bool], ca_pem: Path) -> Flask:
    """The locked portal; `try_passphrase` returns True (and starts the box) when it fits."""
    app = Flask(__name__)
    app.config.update(
        # A key for this locked phase only: nothing signed here outlives it.
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    csrf.init_app(app)
    # The shared page frame speaks the visitor's language (base.html).
    languages.init_app(app)
    app.jinja_env.globals["current_user"] = lambda: None
    throttle = LoginThrottle()

    @app.get("/")
    def index() -> Any:
        return redirect(url_for("unlock"))

    @app.route("/unlock", methods=["GET", "POST"])
    def unlock() -> Any:
        if request.method == "GET":
            return render_template("unlock.html", error=None, unlocked=False)
        key = ("unlock", request.remote_addr or "")
        if throttle.blocked_for(key) > 0:
            message = "Too many wrong passphrases. Wait 15 minutes and try again."
            return render_template("unlock.html", error=message, unlocked=False), 429
        passphrase = request.form.get("passphrase", "")
        if not passphrase:
            return render_template(
                "unlock.html", error="Enter the passphrase.", unlocked=False
            ), 400
        if not try_passphrase(passphrase):
            throttle.failed(key)
            app.logger.info("wrong store passphrase from %s", request.remote_addr)
            message = "That passphrase does not open this box's records. Check it and retry."
            return render_template("unlock.html", error=message, unlocked=False), 403
        return render_template("unlock.html", error=None, unlocked=True)

    @app.get("/healthz")
    def healthz() -> Response:
        response = jsonify(status="locked", message="Enter the store passphrase at /unlock.")
        response.status_code = 503
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/ca.pem")
    def ca_certificate() -> Response:
        return Response(
            ca_pem.read_bytes(),
            mimetype="application/x-pem-file",
            headers={"Content-Disposition": 'attachment; filename="clinicbox-ca.pem"'},
        )

    @app.errorhandler(404)
    def _elsewhere(_exc: Exception) -> Any:
        return redirect(url_for("unlock"))

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'")
        return response

    return app
