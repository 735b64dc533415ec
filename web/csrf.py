"""CSRF protection for every state-changing request: a per-session token in forms and headers."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, request, session

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


F = TypeVar("F", bound=Callable[..., Any])


def token() -> str:
    """The session's CSRF token, made on first use."""
    if FIELD not in session:
        session[FIELD] = secrets.token_urlsafe(32)
    return session[FIELD]


def exempt(view: F) -> F:
    """Mark a view that authenticates by other means (signed requests, join tokens)."""
    view._csrf_exempt = True  # type: ignore[attr-defined]
    return view


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csrf_token"] = token

    @app.before_request
    def _check() -> None:
        if request.method in SAFE_METHODS:
            return
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, "_csrf_exempt", False):
            return
        sent = request.form.get(FIELD) or request.headers.get(HEADER) or ""
        expected = session.get(FIELD, "")
        if not expected or not hmac.compare_digest(sent, expected):
            abort(400, description="The form expired or was not sent from this portal. "
                  "Reload the page and try again.")
