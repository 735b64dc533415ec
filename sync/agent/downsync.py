"""Down-sync: apply the centre's signed changes through a small registry of appliers.

Each change is verified with the centre's signing key before anything is applied; an
unsigned or foreign-signed change stops the pull without moving the cursor. Appliers are
idempotent: applying the same change twice leaves the same state. The built-in appliers keep
the latest body per (type, key) in `state/central/<type>.json`, where the portal reads
schedules, questionnaire definitions and config, and account provisioning picks up accounts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.files import write_private
from sync.protocol import ProtocolError
from sync.protocol.signing import verify_document

Applier = Callable[[Path, dict[str, Any]], None]


def _keep_latest(data_dir: Path, change: dict[str, Any]) -> None:
    directory = data_dir / "state" / "central"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{change['type']}.json"
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    entry = current.get(change["key"])
    if entry is not None and entry["seq"] >= change["seq"]:
        return  # already applied (or a newer one is)
    current[change["key"]] = {"seq": change["seq"], "body": change["body"]}
    write_private(path, json.dumps(current, sort_keys=True).encode())


APPLIERS: dict[str, Applier] = {
    "account": _keep_latest,
    "schedule": _keep_latest,
    "questionnaire": _keep_latest,
    "config": _keep_latest,
    # The centre's TURN relay (URLs and coturn's secret): read by appliance.media.turn.
    "turn": _keep_latest,
}


def verify_changes(centre_key: Any, answer: Any, device_id: str) -> list[dict[str, Any]]:
    """The verified change documents of a /v1/changes answer, or ProtocolError."""
    if not isinstance(answer, dict) or not isinstance(answer.get("changes"), list):
        raise ProtocolError("changes answer is malformed")
    out = []
    for envelope in answer["changes"]:
        doc = verify_document(centre_key, envelope)
        if doc.get("kind") != "change" or doc.get("device_id") not in (None, device_id):
            raise ProtocolError("change is not for this device")
        if doc.get("type") not in APPLIERS or not isinstance(doc.get("seq"), int):
            raise ProtocolError(f"unknown change type {str(doc.get('type'))[:40]!r}")
        out.append(doc)
    return out


def apply_change(data_dir: Path, change: dict[str, Any]) -> None:
    APPLIERS[change["type"]](data_dir, change)
