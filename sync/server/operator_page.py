"""The centre's operator page: devices, last contact, backlog, records stored - behind a login.

Operators are made with `clinicbox-central operator add` (there is no default account). The
session cookie is signed with a per-centre secret (0600 in the data dir), Secure, HttpOnly and
SameSite=Strict; every form carries a per-session CSRF token. The page shows no clinical
content, only device fingerprints and counts.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template_string, request, session

from appliance.files import write_private
from sync.server.centre import Centre
from sync.server.operators import check_operator
from sync.server.update_bundles import releases_by_device

SECRET_FILE = "operator-session-secret"
SESSION_S = 8 * 3600
_CSRF = "csrf_token"


LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>ClinicBox centre: sign in</title>
<h1>ClinicBox centre</h1>{% if error %}<p role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/login"><input type="hidden" name="csrf_token" value="{{ csrf }}">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
required></label><button>Sign in</button></form>"""

DEVICES_PAGE = """<!doctype html><meta charset="utf-8"><title>ClinicBox centre</title>
<h1>ClinicBox centre: devices</h1>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf }}">
Signed in as {{ operator }} <button>Sign out</button></form>
<table border="1" cellpadding="4"><tr><th>device</th><th>last seen (UTC)</th>
<th>backlog per lane</th><th>records stored</th><th>release</th><th>last update</th></tr>
{% for d in devices %}<tr><td><code>{{ d.device_id }}</code></td><td>{{ d.last_seen_text }}</td>
<td>{{ d.backlog_text }}</td><td>{{ d.records }}</td><td>{{ d.release_text }}</td>
<td>{{ d.update_text }}</td></tr>{% endfor %}</table>"""


def session_secret(data_dir: Path) -> bytes:
    """The key that signs operator session cookies, made once (0600).

    Every worker must hold the same key (a cookie from one worker is read by another), so
    the first maker wins: the new key is linked into place only if none exists yet, and
    everyone then reads what is there. `serve` also makes it before forking.
    """
    path = data_dir / SECRET_FILE
    if not path.exists():
        tmp = path.with_name(f".{SECRET_FILE}.tmp-{os.getpid()}")
        write_private(tmp, secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_bytes()
    if len(secret) < 32:
        raise ValueError(f"{path} is damaged (shorter than 32 bytes); delete it and restart")
    return secret


def _csrf_token() -> str:
    if _CSRF not in session:
        session[_CSRF] = secrets.token_urlsafe(32)
    return session[_CSRF]


def _check_csrf() -> None:
    # Read the whole body first (MAX_CONTENT_LENGTH bounds it), whatever its type: answering
    # over an unread body closes the connection with a reset, which the sender sees as no
    # answer at all rather than this 400.
    request.get_data(cache=True)
    sent, expected = request.form.get(_CSRF, ""), session.get(_CSRF, "")
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="the form expired or was not sent from this page; reload it")


def _signed_in() -> str | None:
    if float(session.get("until", 0)) < time.time():
        return None
    return session.get("operator")


def init_operator_page(app: Flask, centre: Centre) -> None:
    """Register the login, logout and devices pages on the centre's app."""
    app.secret_key = session_secret(centre.data_dir)
    app.config.update(
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="cbc_session",
    )
    bp = Blueprint("operator", __name__)

    @bp.get("/login")
    def login_form() -> str:
        return render_template_string(LOGIN_PAGE, csrf=_csrf_token(), error=None)

    @bp.post("/login")
    def login() -> Any:
        _check_csrf()
        name = check_operator(
            request.form.get("username", "")[:64], request.form.get("password", "")[:1024]
        )
        if name is None:
            return render_template_string(
                LOGIN_PAGE, csrf=_csrf_token(), error="Wrong username or password."
            ), 401
        session.clear()  # a fresh session (and CSRF token) after sign-in
        session.update(operator=name, until=time.time() + SESSION_S)
        return redirect("/")

    @bp.post("/logout")
    def logout() -> Any:
        _check_csrf()
        session.clear()
        return redirect("/login")

    @bp.get("/")
    def devices_page() -> Any:
        operator = _signed_in()
        if operator is None:
            return redirect("/login")
        devices: list[dict[str, Any]] = []
        releases = releases_by_device(centre)
        for d in centre.devices():
            d["release_text"], d["update_text"] = _release_texts(releases.get(d["device_id"]))
            seen = d["last_seen"]
            d["last_seen_text"] = (
                "never" if seen is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seen))
            )
            d["backlog_text"] = (
                ", ".join(f"{k} {v}" for k, v in (d["backlog"] or {}).get("lanes", {}).items())
                or "-"
            )
            devices.append(d)
        return render_template_string(
            DEVICES_PAGE, devices=devices, operator=operator, csrf=_csrf_token()
        )

    app.register_blueprint(bp)


def _release_texts(release: dict[str, Any] | None) -> tuple[str, str]:
    """The release cell (running, previous, trial, download) and the last update's cell."""
    if release is None:
        return "not reported", "-"
    parts = [release["current"] or "unknown"]
    if release["previous"]:
        parts.append(f"(previous {release['previous']})")
    if release["trial"]:
        parts.append(f"trial of {release['trial']}")
    if release["downloading"]:
        parts.append(f"downloading {release['downloading']}")
    last = release["last"]
    if last is None:
        return " ".join(parts), "-"
    when = "" if last["at"] is None else time.strftime(" %Y-%m-%d %H:%M", time.gmtime(last["at"]))
    reason = f": {last['reason']}" if last["reason"] else ""
    return " ".join(parts), f"{last['version']} {last['outcome']}{when}{reason}"
