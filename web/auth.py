"""Staff sign-in: /login, /logout, idle auto-logoff, login rate limiting and `role_required`.

The session cookie (signed by Flask) holds a random session token and the CSRF token; nothing
clinical and no user id. The session itself lives in the record store
(`appliance.staff_sessions`): logout, `clinicbox user disable` and the idle
(`idle_logoff_minutes`) and absolute (`session_max_hours`) limits end it for every copy of
the cookie.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from appliance import staff_sessions
from appliance.accounts import authenticate, normalise_username
from appliance.store.models import User
from web.app_state import current_box

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

# Failed sign-ins allowed per (username, address) within the window before refusing.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 15 * 60
MAX_TRACKED = 10_000


class LoginThrottle:
    """Counts recent failed sign-ins per (username, client address), in memory."""

    def __init__(self, limit: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def blocked_for(self, key: tuple[str, str]) -> float:
        """Seconds until this key may try again; 0 when it may try now."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(key, now)
            if len(times) < self.limit:
                return 0.0
            return max(0.0, self.window_s - (now - times[0]))

    def failed(self, key: tuple[str, str]) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)
            if len(self._failures) > MAX_TRACKED:
                # Guessing many usernames must not grow memory without end: drop stale keys.
                for stale in [k for k, t in self._failures.items()
                              if not t or now - t[-1] > self.window_s]:
                    del self._failures[stale]

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)


def idle_limit_s() -> float:
    """Idle seconds before logoff; tests may shorten it with the IDLE_LOGOFF_SECONDS config."""
    configured = current_app.config.get("IDLE_LOGOFF_SECONDS")
    if configured is not None:
        return float(configured)
    return current_box().settings.idle_logoff_minutes * 60.0


def session_limits() -> staff_sessions.SessionLimits:
    """The idle and absolute limits; tests may shorten them with IDLE_LOGOFF_SECONDS and
    SESSION_MAX_SECONDS."""
    absolute = current_app.config.get("SESSION_MAX_SECONDS")
    if absolute is None:
        absolute = current_box().settings.session_max_hours * 3600.0
    return staff_sessions.SessionLimits(idle_limit_s(), float(absolute))


def _resume() -> staff_sessions.Resumed:
    """The session behind this request's cookie, looked up once per request."""
    if "staff_session" not in g:
        token = session.get("sid")
        if not isinstance(token, str):
            g.staff_session = staff_sessions.Resumed(None)
        else:
            g.staff_session = staff_sessions.resume(current_box().store, token, session_limits())
    return g.staff_session


def current_user() -> User | None:
    """The signed-in, active staff `User` for this request, or None."""
    return _resume().user


def staff_user() -> User:
    """The signed-in staff `User` of a view behind `role_required` (which makes sure of one)."""
    user = current_user()
    if user is None:
        abort(401, description="Sign in first.")
    return user


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def role_required(*roles: str) -> Callable[[F], F]:
    """Allow the view only to signed-in staff with one of `roles`.

    Not signed in: a redirect to the login page (HTML) or 401 (JSON/API). Wrong role: 403.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                if _wants_json():
                    response = jsonify(error="Unauthorized", message="Sign in first.")
                    response.status_code = 401
                    return response
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if user.role not in roles:
                abort(403, description="Your account is not allowed to open this page.")
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect after login would help phishing.
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("portal.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    reason = request.args.get("reason")
    notice = "You were signed out after a period of inactivity." if reason == "idle" else None
    if request.method == "GET":
        return render_template("login.html", error=None, notice=notice, username="")
    username = normalise_username(request.form.get("username", ""))
    password = request.form.get("password", "")
    if not username or not password:
        return render_template(
            "login.html", error="Enter your username and password.", notice=None,
            username=username,
        ), 400
    throttle: LoginThrottle = current_app.extensions["clinicbox.login_throttle"]
    key = (username, request.remote_addr or "")
    wait = throttle.blocked_for(key)
    if wait > 0:
        minutes = max(1, round(wait / 60))
        message = f"Too many failed attempts. Try again in about {minutes} minute(s)."
        return render_template("login.html", error=message, notice=None, username=username), 429
    user = authenticate(current_box().store, username, password)
    if user is None:
        throttle.failed(key)
        current_app.logger.info("failed sign-in from %s", request.remote_addr)
        return render_template(
            "login.html", error="That username and password do not match.", notice=None,
            username=username,
        ), 401
    throttle.succeeded(key)
    store = current_box().store
    staff_sessions.purge_expired(store, session_limits())
    old = session.get("sid")
    if isinstance(old, str):
        staff_sessions.end(store, old)
    # A fresh session on sign-in: nothing from before (e.g. a planted CSRF token) carries over.
    session.clear()
    session.permanent = True
    session["sid"] = staff_sessions.start(store, user)
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    token = session.get("sid")
    if isinstance(token, str):
        # Ends the session itself, not just this browser's cookie: a copy stops working too.
        staff_sessions.end(current_box().store, token)
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    """Install the idle-logoff check and the login throttle."""
    app.extensions["clinicbox.login_throttle"] = LoginThrottle()
    app.jinja_env.globals["current_user"] = current_user

    @app.before_request
    def _ended_session() -> Any:
        # Static files and health never read the session: their answers must not vary by cookie.
        if request.endpoint in ("static", "health.healthz") or "sid" not in session:
            return None
        resumed = _resume()
        if resumed.user is not None:
            return None
        session.clear()
        if resumed.ended != "idle" or request.endpoint == "auth.login":
            return None  # views that need a user redirect to the login page themselves
        if _wants_json():
            response = jsonify(error="Unauthorized", message="Signed out after inactivity.")
            response.status_code = 401
            return response
        return redirect(url_for("auth.login", reason="idle"))
