"""Score history as a small server-rendered SVG: severity bands behind a line of scores.

No JavaScript and no chart library: a few hundred bytes of SVG that any browser draws, with a
<title> and <desc> for screen readers and a table beside it on the page for exact values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from xml.sax.saxutils import escape

from appliance.clinical.measures_between import MoodScale
from appliance.clinical.questionnaires import Instrument

# Anything with a code, title, max_score, bands and band(): a questionnaire or the mood check.
Scale = Instrument | MoodScale

WIDTH = 340
HEIGHT = 180
_PAD_LEFT = 28
# Room on the right for the band names, so they never sit under a score label and the
# longest ("moderately severe", ~85 px at 9 px sans-serif) is not cut at the edge.
_PAD_RIGHT = 98
_INSET = 12
_PAD_TOP = 8
_PAD_BOTTOM = 22
# Light fills from calm to alarming; text never relies on colour alone (bands are labelled).
_BAND_FILLS = ("#e6f4ea", "#fdf6d8", "#fde9cf", "#fbd9c9", "#f6c6c6")


def score_chart(instrument: Scale, points: Sequence[tuple[datetime, int]]) -> str:
    """An SVG document of `points` (time, score) over `instrument`'s severity bands."""
    plot_w = WIDTH - _PAD_LEFT - _PAD_RIGHT
    plot_h = HEIGHT - _PAD_TOP - _PAD_BOTTOM
    top = instrument.max_score

    def y_of(score: float) -> float:
        return _PAD_TOP + plot_h * (1 - score / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-labelledby="chart-title chart-desc" '
        f'font-family="sans-serif" font-size="9">',
        f'<title id="chart-title">{escape(instrument.title)} scores over time</title>',
        f'<desc id="chart-desc">{escape(_describe(instrument, points))}</desc>',
    ]
    for i, band in enumerate(instrument.bands):
        y_top = y_of(band.high + (1 if band.high < top else 0))
        y_bottom = y_of(band.low)
        fill = _BAND_FILLS[min(i, len(_BAND_FILLS) - 1)]
        parts.append(
            f'<rect x="{_PAD_LEFT}" y="{y_top:.1f}" width="{plot_w}" '
            f'height="{y_bottom - y_top:.1f}" fill="{fill}"/>'
        )
        parts.append(
            f'<text x="{WIDTH - _PAD_RIGHT + 4}" y="{(y_top + y_bottom) / 2 + 3:.1f}" '
            f'fill="#444">{escape(band.name)}</text>'
        )
        parts.append(
            f'<text x="{_PAD_LEFT - 4}" y="{y_bottom:.1f}" text-anchor="end" '
            f'fill="#333">{band.low}</text>'
        )
    parts.append(
        f'<text x="{_PAD_LEFT - 4}" y="{y_of(top) + 7:.1f}" text-anchor="end" '
        f'fill="#333">{top}</text>'
    )
    if points:
        n = len(points)
        # Points are inset from the plot's edges so their labels are not clipped.
        step = (plot_w - 2 * _INSET) / max(1, n - 1)
        coords = [
            (_PAD_LEFT + (_INSET + step * i if n > 1 else plot_w / 2), y_of(score))
            for i, (_, score) in enumerate(points)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#20506b" stroke-width="2"/>')
        for (x, y), (_when, score) in zip(coords, points, strict=True):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#20506b"/>')
            parts.append(
                f'<text x="{x:.1f}" y="{y - 6:.1f}" text-anchor="middle" fill="#111">{score}</text>'
            )
        first, last = points[0][0], points[-1][0]
        # Scores of one day are told apart by their time.
        shown = "%d %b %H:%M" if first.date() == last.date() else "%d %b %Y"
        parts.append(f'<text x="{_PAD_LEFT}" y="{HEIGHT - 6}" fill="#333">{first:{shown}}</text>')
        if n > 1:
            parts.append(
                f'<text x="{WIDTH - _PAD_RIGHT}" y="{HEIGHT - 6}" text-anchor="end" '
                f'fill="#333">{last:{shown}}</text>'
            )
    else:
        parts.append(
            f'<text x="{_PAD_LEFT + plot_w / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
            'fill="#333">No scores yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _describe(instrument: Scale, points: Sequence[tuple[datetime, int]]) -> str:
    if not points:
        return "No scores recorded yet."
    latest_when, latest = points[-1]
    band = instrument.band(latest).name
    return (
        f"{len(points)} score(s). Latest {latest} of {instrument.max_score} ({band}) "
        f"on {latest_when:%d %b %Y}."
    )
