"""The name a patient shows the group: checked so it cannot disguise itself or others' text.

Bidirectional overrides and isolates (U+202A-202E, U+2066-2069) would let a name reverse the
text after it on clinicians' screens ("Ana" shown where "anA" was typed, or a chat line that
reads backwards); NUL and other control or format characters break storage and logs. Such
names are refused with a message saying what to change, not silently altered.
"""

from __future__ import annotations

import unicodedata

MAX_NAME = 40
# Letters in many scripts need joiners (ZWJ, ZWNJ); these format characters are allowed.
_ALLOWED_FORMAT = {"\u200c", "\u200d"}


class BadDisplayName(ValueError):
    """The name cannot be shown; the message says what to change."""


def clean_display_name(raw: object) -> str:
    """The name with runs of spaces collapsed; BadDisplayName when it cannot be used."""
    if not isinstance(raw, str):
        raise BadDisplayName(f"Enter the name others will see (1 to {MAX_NAME} characters).")
    for ch in raw:
        category = unicodedata.category(ch)
        if ch in "\t\n\r":
            continue
        if category in ("Cc", "Cs", "Co", "Cn") or (category == "Cf" and ch not in _ALLOWED_FORMAT):
            raise BadDisplayName(
                "Your name has a hidden or control character (for example a text-direction "
                "mark). Type it again using letters, numbers and spaces."
            )
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name or len(name) > MAX_NAME:
        raise BadDisplayName(f"Enter the name others will see (1 to {MAX_NAME} characters).")
    return name
