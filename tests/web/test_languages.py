"""Patient pages in English, Spanish and Arabic: the catalogs are complete and compiled, every
patient page renders each language with no English left, Arabic right to left, and the
patient's choice sticks."""

from __future__ import annotations

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
from tests.web.conftest import csrf_from
from tests.web.test_between_measures import PHQ9_ITEM9, _schedule, _set_up
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
                texts.append(plain.split("%")[0].strip())
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
