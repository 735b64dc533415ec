"""The lesson library: self-paced psychoeducation lessons read from Markdown files.

A lesson is one Markdown file with front matter between `---` lines:

    ---
    title: Sleeping better
    summary: Small changes that help most people sleep
    minutes: 8
    source: Edinger JD et al. ... (one line per source; at least one)
    ---
    The lesson's text, in Markdown.

The starter lessons ship in appliance/clinical/lessons/; an admin adds more by copying files
into `<data dir>/lessons/` (docs/lessons.md). The file name without `.md` is the lesson's id
(lower-case letters, digits and dashes); a lesson in the data dir replaces a starter lesson
of the same id. Raw HTML in a lesson is shown as text, never run: a lesson file cannot put
a script on a patient's phone. A file that breaks these rules is left out and named in the
log, so one bad file never hides the others.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

log = logging.getLogger(__name__)

STARTER_DIR = Path(__file__).with_name("lessons")
LESSON_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_LESSON_BYTES = 200_000
REQUIRED = ("title", "summary", "source")

# CommonMark with raw HTML off: tags in a lesson are escaped, not rendered.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False})


class LessonError(ValueError):
    """A lesson file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Lesson:
    """One lesson: id, title, summary, reading time, sources and its text as safe HTML."""

    id: str
    title: str
    summary: str
    minutes: int
    sources: tuple[str, ...]
    html: str


def parse_lesson(lesson_id: str, text: str) -> Lesson:
    """A `Lesson` from the text of its file, or LessonError naming what is wrong."""
    if not LESSON_ID.match(lesson_id):
        raise LessonError(
            f"lesson file name {lesson_id!r}: use lower-case letters, digits and dashes"
        )
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip() != "---":
        raise LessonError(f"lesson {lesson_id}: the file must start with a --- line")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise LessonError(f"lesson {lesson_id}: the front matter has no closing ---") from None
    meta: dict[str, list[str]] = {}
    for number, line in enumerate(lines[1:end], start=2):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip().isidentifier():
            raise LessonError(f"lesson {lesson_id}: line {number} is not 'key: value'")
        meta.setdefault(key.strip().lower(), []).append(value.strip())
    missing = [key for key in REQUIRED if not any(meta.get(key, []))]
    if missing:
        raise LessonError(f"lesson {lesson_id}: front matter needs {', '.join(missing)}")
    try:
        minutes = int((meta.get("minutes") or ["5"])[0])
    except ValueError:
        raise LessonError(f"lesson {lesson_id}: minutes must be a whole number") from None
    body = "\n".join(lines[end + 1 :]).strip()
    if not body:
        raise LessonError(f"lesson {lesson_id}: the lesson has no text after the front matter")
    return Lesson(
        id=lesson_id,
        title=meta["title"][0],
        summary=meta["summary"][0],
        minutes=minutes,
        sources=tuple(s for s in meta["source"] if s),
        html=_MARKDOWN.render(body),
    )


def _read_dir(folder: Path) -> dict[str, Lesson]:
    found: dict[str, Lesson] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.md")):
        try:
            if path.stat().st_size > MAX_LESSON_BYTES:
                raise LessonError(f"lesson {path.stem}: larger than {MAX_LESSON_BYTES} bytes")
            found[path.stem] = parse_lesson(path.stem, path.read_text(encoding="utf-8"))
        except (LessonError, UnicodeDecodeError, OSError) as exc:
            log.warning("lesson file %s left out: %s", path.name, exc)
    return found


def load_library(data_dir: Path) -> dict[str, Lesson]:
    """Every usable lesson by id: the starter lessons, then `<data_dir>/lessons` over them.

    Read on each call (a few small files): a lesson an admin copies in appears at once.
    """
    library = _read_dir(STARTER_DIR)
    library.update(_read_dir(data_dir / "lessons"))
    return dict(sorted(library.items(), key=lambda item: item[1].title.casefold()))
