"""The patient's language: gettext catalogs (Flask-Babel) and the choice that sticks.

Patient pages are written with gettext markers (`_()` in templates and views); their
catalogs live in web/translations/<lang>/LC_MESSAGES (docs/languages.md). The patient picks a
language on the join page or their card page; it is kept in a long-lived cookie that holds
only the language code, so it sticks across sessions and card sign-ins. Staff pages are
English for now but go through the same `_()`, so they can be translated later.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import Babel

# code -> (the language's own name, text direction)
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "ltr"),
    "es": ("Español", "ltr"),
    "ar": ("العربية", "rtl"),
}
DEFAULT = "en"
COOKIE = "lang"
COOKIE_MAX_AGE_S = 365 * 24 * 3600

bp = Blueprint("languages", __name__)


def current_language() -> str:
    """The language of this request: the patient's choice, else English."""
    chosen = request.cookies.get(COOKIE, "")
    return chosen if chosen in LANGUAGES else DEFAULT


def text_direction() -> str:
    """The text direction of the language: rtl for Arabic, else ltr."""
    return LANGUAGES[current_language()][1]


def _back_to() -> str:
    # Only local paths: a language switch must not become an open redirect.
    target = request.form.get("next") or "/join"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/join"
    return target


@bp.post("/language")
def choose() -> ResponseReturnValue:
    """Keep the chosen language (a plain form on the join and card pages)."""
    code = request.form.get("lang") or ""
    if code not in LANGUAGES:
        abort(400, description="Choose one of the languages offered.")
    response = redirect(_back_to())
    response.set_cookie(
        COOKIE, code, max_age=COOKIE_MAX_AGE_S, secure=True, httponly=True, samesite="Lax"
    )
    return response


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=current_language, default_translation_directories="translations")
    app.jinja_env.globals.update(
        page_language=current_language, text_direction=text_direction, languages=LANGUAGES
    )
    app.register_blueprint(bp)
