"""Claiming a box for a centre, and where the box keeps the centre's URL and keys.

After a claim, `data_dir/state/central.json` holds the centre's URL, the device id the
centre knows the box by, and the centre's public signing and sealing keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.files import write_private
from appliance.identity import DeviceIdentity
from sync.agent.transport import HttpClient, Rejected, TransportError
from sync.protocol import ProtocolError
from sync.protocol.canonical import b64d, canonical_json
from sync.protocol.sealing import load_sealing_key
from sync.protocol.signing import load_public_key, verify_document

PROTOCOL_VERSION = 1


class ClaimError(Exception):
    """The claim did not happen; the message says why (one line)."""


class ClaimResult(dict):
    """The centre's answer: device_id, centre_signing_key, centre_sealing_key (all str).

    A dict so that callers can store it as it is.
    """

    @property
    def device_id(self) -> str:
        return self["device_id"]


@dataclass(frozen=True)
class CentralLink:
    """The centre this box is claimed for."""

    central_url: str
    device_id: str
    centre_signing_key: str
    centre_sealing_key: str
    ca_file: str | None = None

    @property
    def signing_key(self) -> Any:
        return load_public_key(self.centre_signing_key)

    @property
    def sealing_key(self) -> Any:
        return load_sealing_key(self.centre_sealing_key)


def central_file(data_dir: Path) -> Path:
    return data_dir / "state" / "central.json"


def save_link(data_dir: Path, link: CentralLink) -> None:
    (data_dir / "state").mkdir(parents=True, exist_ok=True)
    write_private(central_file(data_dir), json.dumps(link.__dict__).encode())


def load_link(data_dir: Path) -> CentralLink | None:
    """The saved link: `central.json`, else the `centre` part of a token claim in claim.json."""
    for path in (central_file(data_dir), data_dir / "state" / "claim.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        source = data.get("centre") if isinstance(data.get("centre"), dict) else data
        try:
            return CentralLink(
                central_url=data["central_url"], device_id=source["device_id"],
                centre_signing_key=source["centre_signing_key"],
                centre_sealing_key=source["centre_sealing_key"],
                ca_file=data.get("ca_file"),
            )
        except (KeyError, TypeError):
            continue
    return None


def pending_voucher(data_dir: Path) -> tuple[str, str] | None:
    """(central_url, voucher) when the box holds a voucher the centre has not seen yet."""
    try:
        data = json.loads((data_dir / "state" / "claim.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("mode") == "voucher" and data.get("voucher"):
        return data.get("central_url", ""), data["voucher"]
    return None


def read_voucher(voucher: str) -> dict[str, Any]:
    """A voucher's document, checked against the centre key it carries (catches typos/edits)."""
    try:
        envelope = json.loads(b64d(voucher.strip()))
        doc = envelope["document"]
        return verify_document(load_public_key(doc["centre_signing_key"]), envelope)
    except (ValueError, KeyError, TypeError, ProtocolError):
        raise ClaimError("not a valid ClinicBox claim voucher (damaged or edited)") from None


def _post_claim(central_url: str, body: dict[str, Any], ca_file: Path | None) -> ClaimResult:
    client = HttpClient(central_url, connect_timeout=10, read_timeout=30, ca_file=ca_file)
    try:
        answer = client.request("POST", "/v1/claim", canonical_json(body),
                                {"Content-Type": "application/json"}).json()
    except Rejected as exc:
        raise ClaimError(f"the centre refused the claim ({exc})") from None
    except TransportError as exc:
        raise ClaimError(f"cannot reach the centre at {central_url}: {exc}") from None
    try:
        load_public_key(answer["centre_signing_key"])
        load_sealing_key(answer["centre_sealing_key"])
        return ClaimResult(
            device_id=str(answer["device_id"]),
            centre_signing_key=answer["centre_signing_key"],
            centre_sealing_key=answer["centre_sealing_key"],
        )
    except (KeyError, TypeError, ProtocolError):
        raise ClaimError("the centre's claim answer is malformed") from None


def claim_box(central_url: str, token: str, identity: DeviceIdentity,
              ca_file: Path | None = None) -> ClaimResult:
    """Claim this box at `central_url` with a one-time token; ClaimError on refusal."""
    body = {"token": token, "device_public_key": identity.public_key_b64,
            "version": PROTOCOL_VERSION}
    return _post_claim(central_url, body, ca_file)


def claim_with_voucher(central_url: str, voucher: str, identity: DeviceIdentity,
                       ca_file: Path | None = None) -> ClaimResult:
    """Present an offline voucher on first contact; the centre's keys must match the voucher's."""
    doc = read_voucher(voucher)
    body = {"voucher": voucher.strip(), "device_public_key": identity.public_key_b64,
            "version": PROTOCOL_VERSION}
    result = _post_claim(central_url or doc.get("central_url", ""), body, ca_file)
    if (result["centre_signing_key"], result["centre_sealing_key"]) != (
        doc["centre_signing_key"], doc["centre_sealing_key"]
    ):
        raise ClaimError("the centre's keys differ from the voucher's: wrong centre?")
    return result
