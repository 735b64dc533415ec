"""The documents both ends exchange: push batches, receipts, courier bundles, down-sync changes.

Push batch (sealed, request body): `{"device_id", "backlog", "records": [{"type", "id",
"version", "lane", "hash", "payload"}]}` where `payload` is the record's canonical JSON as a
string and `hash` its SHA-256. Receipt (signed by the centre): `{"kind": "receipt",
"device_id", "ref", "stored": [[record_id, version, hash], ...], "issued_at"}`; `ref` is the
request nonce or bundle id it answers, so a receipt cannot be replayed for another batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sync.protocol.canonical import b64d, b64e, canonical_json
from sync.protocol.errors import ProtocolError, TooLarge
from sync.protocol.sealing import open_sealed, seal
from sync.protocol.signing import sign_document, verify_document

BUNDLE_FORMAT = "clinicbox-bundle/1"
RECEIPT_FORMAT = "clinicbox-receipt/1"
MAX_RECORDS = 50_000
# Size bounds, checked while inflating (never after): a push batch carries at most the agent's
# max_batch_bytes (2 MB) of payload, which JSON escaping can grow by up to ~2x; a courier
# bundle carries at most BUNDLE_PAYLOAD_BYTES of payload (export-bundle stops there).
MAX_BATCH_PLAINTEXT = 8 * 1024 * 1024
BUNDLE_PAYLOAD_BYTES = 32 * 1024 * 1024
MAX_BUNDLE_PLAINTEXT = 4 * BUNDLE_PAYLOAD_BYTES
# The largest bundle or receipt file either end reads (a bundle is base64 of compressed data).
MAX_BUNDLE_FILE = MAX_BUNDLE_PLAINTEXT
MAX_RECEIPT_FILE = 16 * 1024 * 1024

Delivered = tuple[str, int, str]

# Request header with which the agent asks for a compact receipt (its only value: "digest").
# Not signed: stripping it only brings back the full list, which the agent also accepts.
H_RECEIPT = "X-CB-Receipt"
COMPACT_RECEIPT = "digest"


def batch_aad(device_id: str) -> bytes:
    return f"clinicbox/sync/batch|{device_id}".encode()


def encode_batch(device_id: str, records: Iterable[Any], backlog: dict[str, Any]) -> bytes:
    """The plaintext of a push batch from outbox items (anything with OutboxItem's fields)."""
    rows = [
        {
            "type": r.record_type, "id": r.record_id, "version": r.version, "lane": int(r.lane),
            "hash": r.content_hash, "payload": r.payload.decode(),
        }
        for r in records
    ]
    return canonical_json({"device_id": device_id, "backlog": backlog, "records": rows})


def seal_batch(centre: X25519PublicKey, device_id: str, plaintext: bytes) -> bytes:
    return seal(centre, plaintext, batch_aad(device_id))


def _parse_batch(plaintext: bytes, device_id: str) -> dict[str, Any]:
    """A batch's JSON, checked: right device, well-formed records, every hash matching."""
    try:
        batch = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("batch is not JSON (or nested too deeply)") from None
    if not isinstance(batch, dict) or batch.get("device_id") != device_id:
        raise ProtocolError("batch names another device")
    records = batch.get("records")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise ProtocolError("batch has no record list, or too many records")
    for r in records:
        if not (
            isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("type"), str)
            and isinstance(r.get("version"), int) and isinstance(r.get("payload"), str)
            and isinstance(r.get("lane"), int) and isinstance(r.get("hash"), str)
        ):
            raise ProtocolError("batch record is malformed")
        if hashlib.sha256(r["payload"].encode()).hexdigest() != r["hash"]:
            raise ProtocolError(f"record {r['id']} does not match its content hash")
    return batch


def decode_batch(private_key: X25519PrivateKey, device_id: str, blob: bytes) -> dict[str, Any]:
    """Open and check a push batch."""
    plaintext = open_sealed(private_key, blob, batch_aad(device_id), MAX_BATCH_PLAINTEXT)
    return _parse_batch(plaintext, device_id)


def delivered_digest(delivered: Iterable[Delivered]) -> str:
    """SHA-256 (hex) of the distinct (record_id, version, hash) triples, sorted, as
    canonical JSON: what a compact receipt names instead of listing them."""
    return hashlib.sha256(canonical_json(sorted({tuple(d) for d in delivered}))).hexdigest()


def make_receipt(device_id: str, ref: str, stored: list[Delivered],
                 sent: list[Delivered] | None = None) -> dict[str, Any]:
    """The receipt document for `stored`; compact (count and digest) when `sent` is given
    (the agent asked for it) and the centre holds exactly the triples that were sent."""
    doc: dict[str, Any] = {"kind": "receipt", "device_id": device_id, "ref": ref,
                           "issued_at": round(time.time(), 3)}
    held = {tuple(s) for s in stored}
    if sent is not None and held == {tuple(s) for s in sent}:
        doc["stored_count"] = len(held)
        doc["stored_digest"] = delivered_digest(stored)
    else:
        doc["stored"] = [list(s) for s in stored]
    return doc


def verify_receipt(
    centre: Ed25519PublicKey, envelope: Any, device_id: str, ref: str,
    sent: list[Delivered] | None = None,
) -> list[Delivered]:
    """The (record_id, version, hash) triples of a receipt the centre really signed for us.

    A compact receipt confirms `sent` as a whole: its count and digest must be those of the
    triples sent, else nothing is confirmed (ProtocolError)."""
    doc = verify_document(centre, envelope)
    if doc.get("kind") != "receipt" or doc.get("device_id") != device_id:
        raise ProtocolError("receipt is for another device or not a receipt")
    if doc.get("ref") != ref:
        raise ProtocolError("receipt answers another batch")
    if "stored" not in doc and "stored_digest" in doc:
        if sent is None:
            raise ProtocolError("compact receipt, but no batch to check it against")
        triples = sorted({(s[0], s[1], s[2]) for s in sent})
        if (doc.get("stored_count") != len(triples)
                or doc.get("stored_digest") != delivered_digest(triples)):
            raise ProtocolError("compact receipt does not match the batch sent")
        return triples
    stored = doc.get("stored")
    if not isinstance(stored, list):
        raise ProtocolError("receipt has no stored list")
    out: list[Delivered] = []
    for s in stored:
        if not (isinstance(s, list) and len(s) == 3 and isinstance(s[0], str)
                and isinstance(s[1], int) and isinstance(s[2], str)):
            raise ProtocolError("receipt entry is malformed")
        out.append((s[0], s[1], s[2]))
    return out


def bundle_aad(device_id: str, bundle_id: str) -> bytes:
    return f"clinicbox/sync/bundle|{device_id}|{bundle_id}".encode()


def make_bundle(
    sign: Callable[[bytes], bytes], centre: X25519PublicKey, device_id: str, bundle_id: str,
    plaintext_batch: bytes, count: int,
) -> bytes:
    """A courier bundle file: the sealed batch, signed by the device key."""
    document = {
        "format": BUNDLE_FORMAT, "device_id": device_id, "bundle_id": bundle_id,
        "created_at": round(time.time(), 3), "count": count,
        "sealed": b64e(seal(centre, plaintext_batch, bundle_aad(device_id, bundle_id))),
    }
    return canonical_json(sign_document(sign, document))


def read_bundle_header(raw: bytes) -> dict[str, Any]:
    """The unverified document of a bundle file (to find the device), or ProtocolError."""
    if len(raw) > MAX_BUNDLE_FILE:
        raise TooLarge(f"bundle file is larger than {MAX_BUNDLE_FILE // (1024 * 1024)} MiB")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("not a ClinicBox bundle (not JSON, or nested too deeply)") from None
    doc = envelope.get("document") if isinstance(envelope, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise ProtocolError("not a ClinicBox bundle (unknown format)")
    if not isinstance(doc.get("device_id"), str) or not isinstance(doc.get("bundle_id"), str):
        raise ProtocolError("bundle has no device or bundle id")
    return envelope


def open_bundle(
    device_key: Ed25519PublicKey, private_key: X25519PrivateKey, envelope: dict[str, Any]
) -> dict[str, Any]:
    """Verify the device's signature and open the sealed batch inside a bundle."""
    try:
        doc = verify_document(device_key, envelope)
    except ProtocolError:
        raise ProtocolError("bundle signature does not verify: tampered or not from this device"
                            ) from None
    device_id, bundle_id = doc["device_id"], doc["bundle_id"]
    try:
        blob = b64d(doc.get("sealed", ""))
    except ValueError:
        raise ProtocolError("bundle payload is not base64") from None
    plaintext = open_sealed(private_key, blob, bundle_aad(device_id, bundle_id),
                            MAX_BUNDLE_PLAINTEXT)
    return _parse_batch(plaintext, device_id)


def receipt_file(envelope: dict[str, Any]) -> bytes:
    return canonical_json({"format": RECEIPT_FORMAT, "receipt": envelope})
