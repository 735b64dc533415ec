"""Lessons: a file an admin adds appears in the library, is given to a patient or a group,
read and marked done in the patient's space, and the clinician sees it done."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask

from appliance.box import Box
from appliance.clinical.lesson_library import STARTER_DIR, LessonError, parse_lesson
from tests.web.conftest import csrf_from
from tests.web.test_between_measures import _set_up

NEW_LESSON = """---
title: Worry time
summary: Put worries off to a set time of day
minutes: 6
source: Borkovec TD et al. Stimulus control applications to the treatment of worry. 1983.
---
Pick **fifteen minutes** a day for worrying. <script>alert(1)</script>
"""


def test_starter_lessons_are_complete_with_sources() -> None:
    files = sorted(p.stem for p in STARTER_DIR.glob("*.md"))
    assert len(files) >= 3
    for stem in files:
        lesson = parse_lesson(stem, (STARTER_DIR / f"{stem}.md").read_text(encoding="utf-8"))
        assert lesson.sources and lesson.title and "<h2>" in lesson.html


def test_bad_lesson_files_say_what_to_fix() -> None:
    for text, words in (
        ("no front matter", "must start with"),
        ("---\ntitle: x\n---\nbody", "needs summary, source"),
        ("---\ntitle: x\nsummary: y\nsource: z\nminutes: ten\n---\nbody", "whole number"),
    ):
        try:
            parse_lesson("ok", text)
        except LessonError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"accepted {text!r}")


def test_lesson_added_as_a_file_is_assigned_read_and_done(app: Flask, box: Box) -> None:
    folder: Path = box.settings.data_dir / "lessons"
    folder.mkdir()
    (folder / "worry-time.md").write_text(NEW_LESSON, encoding="utf-8")
    (folder / "Broken Name.md").write_text(NEW_LESSON, encoding="utf-8")  # left out, logged
    doctor, patient, patient_id = _set_up(app, box)
    shelf = doctor.get("/lessons").get_data(as_text=True)
    assert "Worry time" in shelf and "Sleeping better" in shelf
    assert "Broken Name" not in shelf
    preview = doctor.get("/lessons/worry-time").get_data(as_text=True)
    assert "<strong>fifteen minutes</strong>" in preview
    assert "<script>alert" not in preview and "&lt;script&gt;" in preview
    token = csrf_from(doctor, f"/patients/{patient_id}")
    bad = doctor.post(
        f"/patients/{patient_id}/lessons", data={"csrf_token": token, "lesson": "nope"}
    )
    assert bad.status_code == 400
    given = doctor.post(
        f"/patients/{patient_id}/lessons",
        data={"csrf_token": token, "lesson": "worry-time", "homework": "Worry at 6 pm only"},
    )
    assert given.status_code == 302
    mine = patient.get("/me/lessons").get_data(as_text=True)
    link = re.search(r'href="(/me/lessons/[0-9a-f-]{36})"', mine)
    assert link and "Worry time" in mine and "to do" in mine
    page = patient.get(link.group(1)).get_data(as_text=True)
    assert "Worry at 6 pm only" in page and "Borkovec" in page
    token_p = csrf_from(patient, link.group(1))
    assert patient.post(link.group(1) + "/done", data={"csrf_token": token_p}).status_code == 302
    assert "done" in patient.get("/me/lessons").get_data(as_text=True)
    assert "<strong>done" in doctor.get(f"/patients/{patient_id}").get_data(as_text=True)
    raw = box.store.db.execute_sql("SELECT lesson, homework FROM lesson_assignment").fetchone()
    assert b"worry" not in bytes(raw[0]).lower() and b"6 pm" not in bytes(raw[1])


def test_lesson_for_a_whole_group(app: Flask, box: Box) -> None:
    doctor, _patient, patient_id = _set_up(app, box)
    store = box.store
    group = store.Attendance.get(store.Attendance.patient == patient_id).session
    other = store.Patient.create(display_name="Sky Birch")
    store.Attendance.create(session=group, patient=other, display_name="Sky", status="left")
    token = csrf_from(doctor, f"/sessions/{group.id}")
    reply = doctor.post(
        f"/sessions/{group.id}/lessons", data={"csrf_token": token, "lesson": "grounding"}
    )
    assert reply.status_code == 302
    given = {a.patient_id for a in store.LessonAssignment.select()}
    assert given == {patient_id, other.id}
