"""PHQ-9 and GAD-7: items, answer scale, validation, total score and severity band.

Both instruments ask about the last two weeks and share one 0-3 answer scale. Scoring is the
sum of the item answers; the bands are the published cut-offs (Kroenke 2001, Spitzer 2006).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance.translatable import translatable as T

ANSWER_SCALE: tuple[tuple[int, str], ...] = (
    (0, T("Not at all")),
    (1, T("Several days")),
    (2, T("More than half the days")),
    (3, T("Nearly every day")),
)


@dataclass(frozen=True)
class Band:
    """A severity band: inclusive score range and its plain name."""

    low: int
    high: int
    name: str


@dataclass(frozen=True)
class Instrument:
    """A questionnaire: its code, title, stem, items and severity bands."""

    code: str
    title: str
    stem: str
    items: tuple[str, ...]
    bands: tuple[Band, ...]
    # Index (0-based) of an item whose any non-zero answer is a risk flag, if any.
    risk_item: int | None = None

    @property
    def max_score(self) -> int:
        return 3 * len(self.items)

    def band(self, score: int) -> Band:
        """The severity band holding `score`."""
        for band in self.bands:
            if band.low <= score <= band.high:
                return band
        raise ValueError(f"{self.code} score {score} is outside 0-{self.max_score}")


@dataclass(frozen=True)
class Result:
    """A scored, validated set of answers."""

    instrument: str
    answers: tuple[int, ...]
    score: int
    severity: str
    risk_flag: bool


class IncompleteAnswers(ValueError):
    """Some items are unanswered or invalid; `missing` holds their 1-based numbers."""

    def __init__(self, missing: list[int]) -> None:
        self.missing = missing
        items = ", ".join(str(n) for n in missing)
        super().__init__(f"Please answer question{'s' if len(missing) > 1 else ''} {items}.")


_STEM = T(
    "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
)

PHQ9 = Instrument(
    code="phq9",
    title=T("PHQ-9 (mood)"),
    stem=_STEM,
    items=(
        T("Little interest or pleasure in doing things"),
        T("Feeling down, depressed, or hopeless"),
        T("Trouble falling or staying asleep, or sleeping too much"),
        T("Feeling tired or having little energy"),
        T("Poor appetite or overeating"),
        T(
            "Feeling bad about yourself, or that you are a failure or have let yourself or your "
            "family down"
        ),
        T("Trouble concentrating on things, such as reading the newspaper or watching television"),
        T(
            "Moving or speaking so slowly that other people could have noticed, or the opposite: "
            "being so fidgety or restless that you have been moving around a lot more than usual"
        ),
        T("Thoughts that you would be better off dead, or of hurting yourself in some way"),
    ),
    bands=(
        Band(0, 4, "minimal"),
        Band(5, 9, "mild"),
        Band(10, 14, "moderate"),
        Band(15, 19, "moderately severe"),
        Band(20, 27, "severe"),
    ),
    risk_item=8,
)

GAD7 = Instrument(
    code="gad7",
    title=T("GAD-7 (anxiety)"),
    stem=_STEM,
    items=(
        T("Feeling nervous, anxious, or on edge"),
        T("Not being able to stop or control worrying"),
        T("Worrying too much about different things"),
        T("Trouble relaxing"),
        T("Being so restless that it is hard to sit still"),
        T("Becoming easily annoyed or irritable"),
        T("Feeling afraid, as if something awful might happen"),
    ),
    bands=(
        Band(0, 4, "minimal"),
        Band(5, 9, "mild"),
        Band(10, 14, "moderate"),
        Band(15, 21, "severe"),
    ),
)

INSTRUMENTS: dict[str, Instrument] = {PHQ9.code: PHQ9, GAD7.code: GAD7}


def get_instrument(code: str) -> Instrument:
    """The instrument named `code`, or ValueError naming the known ones."""
    try:
        return INSTRUMENTS[code]
    except KeyError:
        raise ValueError(f"unknown questionnaire {code!r}; known: phq9, gad7") from None


def score(instrument: Instrument, form: Mapping[str, str]) -> Result:
    """Validate answers given as form fields `q1`..`qN` (strings "0".."3") and score them.

    Raises `IncompleteAnswers` listing every missing or invalid item; nothing is partially
    scored, so a caller that catches it stores nothing.
    """
    answers: list[int] = []
    missing: list[int] = []
    for number in range(1, len(instrument.items) + 1):
        raw = (form.get(f"q{number}") or "").strip()
        if raw not in ("0", "1", "2", "3"):
            missing.append(number)
            continue
        answers.append(int(raw))
    if missing:
        raise IncompleteAnswers(missing)
    total = sum(answers)
    risk = instrument.risk_item is not None and answers[instrument.risk_item] > 0
    return Result(
        instrument=instrument.code,
        answers=tuple(answers),
        score=total,
        severity=instrument.band(total).name,
        risk_flag=risk,
    )
