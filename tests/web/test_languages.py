"""Patient pages in English, Spanish and Arabic: the catalogs are complete and compiled, every
patient page renders each language with no English left, Arabic right to left, and the
patient's choice sticks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_between_measures import PHQ9_ITEM9, _schedule, _set_up
from tests.web.test_portal import _ask, _join
from tests.web.test_portal import _schedule as _schedule_group
from web.languages import LANGUAGES

REPO = Path(__file__).resolve().parents[2]
TRANSLATIONS = REPO / "web" / "translations"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "translatable": None, "T": None}


def _source_messages() -> set[str | tuple[str, ...]]:
    """Every marked string in the code and templates now, as extraction finds it."""
    with open(TRANSLATIONS / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def _catalog(lang: str, suffix: str) -> object:
    path = TRANSLATIONS / lang / "LC_MESSAGES" / f"messages.{suffix}"
    with open(path, "rb") as handle:
        return read_po(handle) if suffix == "po" else read_mo(handle)


@pytest.mark.parametrize("lang", [code for code in LANGUAGES if code != "en"])
def test_catalog_is_complete_and_compiled(lang: str) -> None:
    wanted = _source_messages()
    assert len(wanted) > 100
    po = _catalog(lang, "po")
    have = {m.id: m for m in po if m.id}
    missing = sorted(map(str, wanted - set(have)))
    assert missing == [], f"{lang}: add translations for {missing}"
    for message in have.values():
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(forms) and not message.fuzzy, f"{lang}: untranslated {message.id!r}"
    assert [(m.id, e) for m, e in po.check()] == []
    mo = {_key(m.id): _key(m.string) for m in _catalog(lang, "mo") if m.id}
    stale = [m.id for m in have.values() if mo.get(_key(m.id)) != _key(m.string)]
    assert stale == [], f"{lang}: messages.mo is older than messages.po; run pybabel compile"


def _key(value: object) -> object:
    """Plural ids and strings come back as lists from .mo and tuples from .po."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _english_sentences() -> list[str]:
    """Marked English text long enough that finding it on a page means it was not
    translated (short words like "Open" also occur in names and codes)."""
    texts = []
    for message in _source_messages():
        for text in (message,) if isinstance(message, str) else message:
            plain = re.sub(r"%\(\w+\)[sd]", "", text)
            if len(plain) >= 14:
                texts.append(re.split(r"[%{]", plain)[0].strip())
    return texts


def _patient_pages(app: Flask, box: Box) -> tuple[FlaskClient, list[str]]:
    doctor, patient, patient_id = _set_up(app, box)
    _schedule(doctor, patient_id, "PHQ9")
    _schedule(doctor, patient_id, "MOOD", "1")
    token = csrf_from(doctor, f"/patients/{patient_id}")
    doctor.post(
        f"/patients/{patient_id}/lessons",
        data={"csrf_token": token, "lesson": "sleep", "homework": "Up at 7"},
    )
    assignment = box.store.LessonAssignment.get().id
    token = csrf_from(patient, "/me/messages")
    patient.post("/me/messages", data={"csrf_token": token, "body": "hola"})
    pages = [
        "/join",
        "/card",
        "/me",
        "/me/messages",
        "/me/mood",
        "/me/plan",
        "/me/crisis",
        "/me/lessons",
        f"/me/lessons/{assignment}",
        "/me/measures/phq9",
        "/me/measures/gad7",  # not due: the error page
    ]
    return patient, pages


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_every_patient_page_renders_in_the_language(app: Flask, box: Box, lang: str) -> None:
    patient, pages = _patient_pages(app, box)
    patient.set_cookie("lang", lang)
    english = _english_sentences()
    direction = LANGUAGES[lang][1]
    for path in pages:
        page = patient.get(path).get_data(as_text=True)
        assert f'<html lang="{lang}" dir="{direction}">' in page, path
        if lang != "en":
            left = [text for text in english if text in page]
            assert left == [], f"{path} in {lang} still shows {left}"
    token = csrf_from(patient, "/me/measures/phq9")
    missing = patient.post("/me/measures/phq9", data={"csrf_token": token, "q1": "0"})
    assert missing.status_code == 400
    if lang == "es":
        assert "Por favor, responda las preguntas 2, 3" in missing.get_data(as_text=True)
    sent = patient.post("/me/measures/phq9", data={"csrf_token": token, **PHQ9_ITEM9})
    crisis = patient.get(sent.headers["Location"]).get_data(as_text=True)
    if lang == "ar":
        assert 'dir="rtl"' in crisis and "لست وحدك" in crisis


# call.js asks for each of its words as tr("key", "English fallback"[, values]).
_CALL_JS_WORD = re.compile(r'\btr\("(\w+)", "([^"]*)"')
_CALL_STRINGS = re.compile(
    r'<script type="application/json" id="call-strings">(.*?)</script>', re.DOTALL
)


def _admitted_patient(app: Flask) -> FlaskClient:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule_group(clinician)
    patient = _join(app, code, "Ana")
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    _ask(clinician, session_url, "phq9")  # the call page links to it by its title
    return patient


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_the_call_page_renders_in_the_language(app: Flask, lang: str) -> None:
    patient = _admitted_patient(app)
    patient.set_cookie("lang", lang)
    page = patient.get("/call").get_data(as_text=True)
    direction = LANGUAGES[lang][1]
    assert f'<html lang="{lang}" dir="{direction}">' in page
    script = (REPO / "web" / "static" / "call.js").read_text(encoding="utf-8")
    english = dict(_CALL_JS_WORD.findall(script))
    assert len(english) > 30, "call.js no longer asks for its words with tr()"
    found = _CALL_STRINGS.search(page)
    assert found, "the call page carries no call-strings object"
    words = json.loads(found.group(1))
    assert sorted(words) == sorted(english), "call-strings and call.js disagree on the keys"
    if lang == "en":
        assert words == english, "call.js's English fallbacks differ from the catalog's"
        return
    same = [key for key in english if words[key] == english[key]]
    assert same == [], f"call.js words still English in {lang}: {same}"
    for key, text in english.items():
        wanted = sorted(re.findall(r"\{\w+\}", text))
        assert sorted(re.findall(r"\{\w+\}", words[key])) == wanted, f"{lang}: {key}"
    left = [text for text in _english_sentences() if text in page]
    assert left == [], f"/call in {lang} still shows {left}"
    assert {"es": "PHQ-9 (estado de ánimo)", "ar": "PHQ-9 (المزاج)"}[lang] in page
    for word in ("Mute", "Camera off", "Raise hand", "Join the call", "Write a message"):
        assert f">{word}<" not in page and f'"{word}"' not in page, f"{lang}: {word}"


def test_the_chosen_language_sticks(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client, "/join")
    bad = client.post("/language", data={"csrf_token": token, "lang": "xx"})
    assert bad.status_code == 400
    chosen = client.post(
        "/language", data={"csrf_token": token, "lang": "es", "next": "https://evil.example/"}
    )
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/join"
    assert "Max-Age" in chosen.headers["Set-Cookie"]
    assert "Entrar a una sesión de grupo" in client.get("/join").get_data(as_text=True)
    assert "Abra su espacio" in client.get("/card").get_data(as_text=True)
