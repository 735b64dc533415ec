"""Marking text that patient pages show translated, where it is defined rather than shown."""

from __future__ import annotations


def translatable(text: str) -> str:
    """Return `text` unchanged; the gettext catalogs' extraction (keyword `translatable`,
    docs/languages.md) collects it, and the page that shows it passes it through `_()`."""
    return text
