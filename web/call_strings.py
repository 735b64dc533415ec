"""The call page's own words for call.js, translated on the server.

call.js stays one static, cacheable file: the page it runs in carries these words as one
JSON object (`<script type="application/json" id="call-strings">`), already translated into
the patient's language, and call.js reads it once (keeping its own English as a fallback).
Placeholders are `{name}`; call.js fills them in. Facilitator-only words in call.js and
call_panel.js are still English (docs/languages.md).
"""

from __future__ import annotations

import json

from flask_babel import gettext
from markupsafe import Markup

from appliance.translatable import translatable

# key (as call.js asks for it) -> English text (the gettext msgid)
CALL_STRINGS: dict[str, str] = {
    "participant": translatable("Participant"),
    "you": translatable("You"),
    "mutedTag": translatable("(muted)"),
    "reconnectingTag": translatable("(reconnecting)"),
    "speakingTag": translatable("(speaking)"),
    "handRaised": translatable("Hand raised"),
    "working": translatable("working"),
    "notAvailable": translatable("not available"),
    "notAvailableWhy": translatable("not available ({error})"),
    "netGood": translatable("good ({ms} ms)"),
    "netFair": translatable("fair ({ms} ms)"),
    "netSlow": translatable("slow ({ms} ms): audio only is advised"),
    "netSlowEarly": translatable("slow: audio only is advised"),
    "netUnreachable": translatable("cannot reach the box"),
    "qualityGood": translatable("good"),
    "qualityFair": translatable("fair"),
    "qualityWeak": translatable("weak"),
    "checkingConnection": translatable("Checking your connection before joining…"),
    "stillConnecting": translatable("Still connecting…"),
    "couldNotJoin": translatable("Could not join the call: {error}"),
    "connectionLost": translatable("The connection was lost. Reload the page to join again."),
    "reconnecting": translatable("Connection lost. Reconnecting…"),
    "reconnected": translatable("Reconnected."),
    "mute": translatable("Mute"),
    "unmute": translatable("Unmute"),
    "cameraOff": translatable("Camera off"),
    "cameraOn": translatable("Camera on"),
    "audioOnly": translatable("Audio only"),
    "videoOn": translatable("Video on"),
    "audioOnlyNotice": translatable("Audio only: video is off to save data."),
    "raiseHand": translatable("Raise hand"),
    "lowerHand": translatable("Lower hand"),
    "speakerView": translatable("Speaker view"),
    "gridView": translatable("Grid view"),
    "mutedByFacilitator": translatable("The facilitator muted your microphone."),
    "unmutedByFacilitator": translatable("The facilitator let you speak again."),
    "inBreakout": translatable("You are in breakout room {room}."),
    "backInMain": translatable("You are back in the main room."),
    "removed": translatable("The facilitator removed you from the call."),
    "sessionEnded": translatable("The session has ended. Thank you for joining."),
    "facilitatorMessage": translatable("Message from the facilitator: {message}"),
    "poll": translatable("Poll: {question}"),
    "pollAnswered": translatable("Thank you, your answer was sent."),
    "pollClosed": translatable("The poll has closed."),
}


def call_strings_json() -> Markup:
    """The call page's words in this request's language, as JSON safe inside a <script>.

    Not ASCII-escaped (Arabic stays two bytes a letter, not six: patients load this page over
    slow links); only the characters that could end the script element are escaped.
    """
    words = {key: gettext(text) for key, text in CALL_STRINGS.items()}
    text = json.dumps(words, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return Markup(text)
