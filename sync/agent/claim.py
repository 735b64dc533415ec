"""Claiming a box for a centre, and where the box keeps the centre's URL, keys and pin.

A claim token (`SECRET.TLS_PIN.KEY_PIN`) or an offline voucher (signed by the centre, carrying
its keys and TLS pin) tells the box who its centre is before the box talks to it. The claim
goes over HTTPS to a server that must hold the pinned TLS key, and the centre's answer must be
signed with the pinned signing key and name this box's key and challenge: nobody on the path
can substitute their own sealing key, and a centre the token does not name cannot answer.

After a claim, `data_dir/state/central.json` holds the centre's URL, the device id the centre
knows the box by, the centre's public signing and sealing keys and the pinned TLS key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.files import write_private
from appliance.identity import DeviceIdentity
from sync.agent.transport import HttpClient, PinMismatch, Rejected, TransportError
from sync.protocol import ProtocolError
from sync.protocol.canonical import b64d, canonical_json
from sync.protocol.pinning import check_pin, key_pin
from sync.protocol.sealing import load_sealing_key
from sync.protocol.signing import load_public_key, verify_document

PROTOCOL_VERSION = 1
MAX_VOUCHER = 4096


class ClaimError(Exception):
    """The claim did not happen; the message says why (one line)."""


@dataclass(frozen=True)
class CentralLink:
    """The centre this box is claimed for."""

    central_url: str
    device_id: str
    centre_signing_key: str
    centre_sealing_key: str
    tls_pin: str

    @property
    def signing_key(self) -> Any:
        return load_public_key(self.centre_signing_key)

    @property
    def sealing_key(self) -> Any:
        return load_sealing_key(self.centre_sealing_key)


class ClaimResult(dict):
    """The centre's checked answer: device_id, centre_signing_key, centre_sealing_key and
    the tls_pin the box used (all str). A dict so that callers can store it as it is."""

    @property
    def device_id(self) -> str:
        return self["device_id"]

    def link(self, central_url: str) -> CentralLink:
        """The link to save for syncing with the centre at `central_url`."""
        return CentralLink(central_url, self["device_id"], self["centre_signing_key"],
                           self["centre_sealing_key"], self["tls_pin"])


def central_file(data_dir: Path) -> Path:
    return data_dir / "state" / "central.json"


def save_link(data_dir: Path, link: CentralLink) -> None:
    (data_dir / "state").mkdir(parents=True, exist_ok=True)
    write_private(central_file(data_dir), json.dumps(asdict(link)).encode())


def load_link(data_dir: Path) -> CentralLink | None:
    """The saved link: `central.json`, else the `centre` part of a token claim in claim.json.

    A link without a pinned TLS key (made before pinning) is not used: such a box must be
    claimed again after a factory reset.
    """
    for path in (central_file(data_dir), data_dir / "state" / "claim.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        centre = data.get("centre")
        source = centre if isinstance(centre, dict) else data
        try:
            return CentralLink(
                central_url=data["central_url"], device_id=source["device_id"],
                centre_signing_key=source["centre_signing_key"],
                centre_sealing_key=source["centre_sealing_key"],
                tls_pin=check_pin(source["tls_pin"]),
            )
        except (KeyError, TypeError, ProtocolError):
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


def check_central_url(url: str) -> str:
    """`url` if it is an https:// URL with a host; ClaimError otherwise (no plain http)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ClaimError(f"not a valid central URL: {url!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ClaimError(f"the central URL must start with https:// (claims and sync never "
                         f"travel over plain http), got {url!r}")
    return url


def parse_token(token: str) -> tuple[str, str, str]:
    """(secret, tls_pin, key_pin) of a claim token, or ClaimError."""
    parts = token.strip().split(".")
    try:
        if len(parts) != 3 or not 16 <= len(parts[0]) <= 64:
            raise ProtocolError("shape")
        return parts[0], check_pin(parts[1]), check_pin(parts[2])
    except ProtocolError:
        raise ClaimError("not a ClinicBox claim token (SECRET.TLS_PIN.KEY_PIN from "
                         "`clinicbox-central claim-token`); copy it again") from None


def read_voucher(voucher: str) -> dict[str, Any]:
    """A voucher's document, checked against the centre key it carries (catches typos/edits)."""
    if len(voucher) > MAX_VOUCHER:
        raise ClaimError("the claim voucher is too long")
    try:
        envelope = json.loads(b64d(voucher.strip()))
        doc = envelope["document"]
        doc = verify_document(load_public_key(doc["centre_signing_key"]), envelope)
        load_sealing_key(doc["centre_sealing_key"])
        check_pin(doc["tls_pin"])
        if doc.get("kind") != "voucher" or not isinstance(doc.get("token"), str):
            raise ProtocolError("kind")
        return doc
    except (ValueError, KeyError, TypeError, RecursionError, ProtocolError):
        raise ClaimError("not a valid ClinicBox claim voucher (damaged or edited, or from a "
                         "centre without TLS pinning)") from None


# Why a claim could not reach the centre, as the technician can act on it: the transport
# names only the exception class ("POST /v1/claim failed: gaierror").
_UNREACHABLE = (
    ("gaierror", "no computer has that name. Check the centre's address for typos and that "
     "the box is connected to the internet"),
    ("ConnectionRefused", "nothing answers on that port. Check the port in the address and "
     "that the centre is running"),
    ("timed out", "it did not answer in time. Check the box's internet connection"),
    ("SSL", "its secure connection failed. Check that the address is the centre's, with "
     "https:// and the right port"),
)


def unreachable(central_url: str, exc: Exception) -> str:
    """A sentence saying why the centre at `central_url` was not reached and what to check."""
    text = str(exc)
    advice = next((why for key, why in _UNREACHABLE if key in text),
                  "the connection failed. Check the centre's address and the box's internet "
                  "connection")
    return f"the box cannot reach the centre at {central_url}: {advice}, then try again"


def _post_claim(central_url: str, body: dict[str, Any], tls_pin: str, identity: DeviceIdentity,
                signing_key: str | None, signing_key_pin: str | None) -> ClaimResult:
    """Post a claim and check the signed answer; the centre's signing key must be
    `signing_key`, or hash to `signing_key_pin`."""
    check_central_url(central_url)
    challenge = os.urandom(16).hex()
    body = {**body, "device_public_key": identity.public_key_b64, "challenge": challenge,
            "version": PROTOCOL_VERSION}
    client = HttpClient(central_url, connect_timeout=10, read_timeout=30, tls_pin=tls_pin)
    try:
        answer = client.request("POST", "/v1/claim", canonical_json(body),
                                {"Content-Type": "application/json"}).json()
    except PinMismatch as exc:
        raise ClaimError(f"refused to claim: {exc}; check the central URL, or ask the centre "
                         "for a new token") from None
    except Rejected as exc:
        raise ClaimError(f"the centre refused the claim ({exc})") from None
    except TransportError as exc:
        raise ClaimError(unreachable(central_url, exc)) from None
    try:
        doc = answer["document"]
        offered = doc["centre_signing_key"]
        if signing_key is not None and offered != signing_key:
            raise ClaimError("the centre's signing key differs from the voucher's: wrong centre?")
        if signing_key_pin is not None and key_pin(offered) != signing_key_pin:
            raise ClaimError("the centre's signing key is not the one the token names: "
                             "wrong centre?")
        doc = verify_document(load_public_key(offered), answer)
        load_sealing_key(doc["centre_sealing_key"])
        if (doc.get("kind"), doc.get("challenge"), doc.get("device_public_key")) != (
            "claim-answer", challenge, identity.public_key_b64
        ):
            raise ClaimError("the centre's claim answer is not for this box or this claim")
        return ClaimResult(
            device_id=str(doc["device_id"]), centre_signing_key=offered,
            centre_sealing_key=doc["centre_sealing_key"], tls_pin=tls_pin,
        )
    except (KeyError, TypeError, ProtocolError):
        raise ClaimError("the centre's claim answer is malformed or not signed by the "
                         "centre") from None


def claim_box(central_url: str, token: str, identity: DeviceIdentity) -> ClaimResult:
    """Claim this box at `central_url` with a one-time token; ClaimError on refusal."""
    secret, tls_pin, signing_key_pin = parse_token(token)
    return _post_claim(central_url, {"token": secret}, tls_pin, identity, None, signing_key_pin)


def claim_with_voucher(central_url: str, voucher: str,
                       identity: DeviceIdentity) -> ClaimResult:
    """Present an offline voucher on first contact; the centre's keys must match the voucher's."""
    doc = read_voucher(voucher)
    result = _post_claim(central_url or doc.get("central_url", ""), {"voucher": voucher.strip()},
                         doc["tls_pin"], identity, doc["centre_signing_key"], None)
    if result["centre_sealing_key"] != doc["centre_sealing_key"]:
        raise ClaimError("the centre's keys differ from the voucher's: wrong centre?")
    return result
