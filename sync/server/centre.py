"""The centre's logic, shared by the HTTP app and the CLI: claims, ingest, receipts, changes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from peewee import Database, IntegrityError, fn
from playhouse.db_url import connect

from appliance.files import make_private_dir
from appliance.identity import fingerprint_of
from sync.protocol import ProtocolError
from sync.protocol.canonical import b64d, b64e, canonical_json
from sync.protocol.errors import TooLarge
from sync.protocol.messages import (
    Delivered,
    make_receipt,
    open_bundle,
    read_bundle_header,
    receipt_file,
)
from sync.protocol.pinning import check_pin, key_pin
from sync.protocol.signing import MAX_SKEW_S, load_public_key, sign_document, verify_document
from sync.server.keys import CentreKeys
from sync.server.models import TABLES, ChangeRow, ClaimToken, Device, Nonce, Record, database

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
CHANGE_KINDS = ("account", "schedule", "questionnaire", "config", "turn")


class Refused(Exception):
    """A request the centre refuses; `status` is the HTTP status, the text is for the box."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def open_database(url: str) -> Database:
    """Connect the models to `url` (sqlite:///path or postgresql://...) and create tables."""
    if url.startswith("sqlite"):
        db = connect(url, pragmas={"journal_mode": "wal", "busy_timeout": 10000,
                                   "synchronous": "normal"})
    else:
        db = connect(url)
    database.initialize(db)
    with db.connection_context():
        db.create_tables(TABLES, safe=True)
    return db


def _make_private_file(path: Path, create: bool = True) -> None:
    """Make `path` 0600, creating it empty if missing and `create` (never through a link)."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@dataclass
class Centre:
    """One central server: its keys, data dir and database."""

    data_dir: Path
    keys: CentreKeys
    db: Database

    @classmethod
    def open(cls, data_dir: Path, database_url: str | None = None) -> Centre:
        """Open (making if needed) the centre in `data_dir`: private to the service user.

        The data dir is 0700 and the SQLite database 0600 (SQLite gives its WAL and
        shared-memory files the database's mode): record payloads are sealed by the boxes
        but opened here, so the database holds clinical records in the clear.
        """
        make_private_dir(data_dir)
        keys = CentreKeys.load_or_create(data_dir)
        if database_url:
            return cls(data_dir, keys, open_database(database_url))
        path = (data_dir / "central.db").resolve()
        _make_private_file(path)
        for leftover in ("-wal", "-shm"):  # from a centre that ran before files were private
            _make_private_file(path.with_name(path.name + leftover), create=False)
        return cls(data_dir, keys, open_database(f"sqlite:///{path}"))

    def public_keys(self) -> dict[str, str]:
        return {
            "centre_signing_key": self.keys.signing_public_b64,
            "centre_sealing_key": self.keys.sealing_public_b64,
        }

    # Claiming ---------------------------------------------------------------------------

    def issue_token(self, ttl_hours: float, tls_pin: str, kind: str = "token") -> str:
        """A one-time claim token: `SECRET.TLS_PIN.KEY_PIN`.

        Only the secret reaches the centre again; the two pins tell the box which TLS key to
        accept and which signing key must sign the claim answer.
        """
        secret = secrets.token_urlsafe(18)
        with self.db.atomic():
            ClaimToken.create(
                token_hash=hashlib.sha256(secret.encode()).hexdigest(), kind=kind,
                expires_at=time.time() + ttl_hours * 3600,
            )
        return f"{secret}.{check_pin(tls_pin)}.{key_pin(self.keys.signing_public_b64)}"

    def issue_voucher(self, ttl_hours: float, tls_pin: str, central_url: str = "") -> str:
        """An offline voucher: token, centre keys, TLS pin and expiry, signed by the centre."""
        secret = self.issue_token(ttl_hours, tls_pin, kind="voucher").split(".", 1)[0]
        doc = {
            "kind": "voucher", "token": secret, "central_url": central_url,
            "expires_at": round(time.time() + ttl_hours * 3600), "tls_pin": tls_pin,
            **self.public_keys(),
        }
        return b64e(canonical_json(sign_document(self.keys.signing, doc)))

    def claim(self, body: Any) -> dict[str, Any]:
        """Register a device with a one-time token or a voucher; Refused otherwise.

        The answer is signed with the centre's Ed25519 key and names the device key and the
        box's challenge, so the box can check who answered and that the answer is fresh.
        """
        if not isinstance(body, dict) or not isinstance(body.get("device_public_key"), str):
            raise Refused(400, "claim needs device_public_key and a token or voucher")
        challenge = body.get("challenge")
        if not isinstance(challenge, str) or not 16 <= len(challenge) <= 64:
            raise Refused(400, "claim needs a challenge (16-64 characters); update the box")
        try:
            public_key = load_public_key(body["device_public_key"])
        except ProtocolError as exc:
            raise Refused(400, str(exc)) from None
        if isinstance(body.get("voucher"), str):
            token, kind = self._voucher_token(body["voucher"]), "voucher"
        elif isinstance(body.get("token"), str) and body["token"]:
            token, kind = body["token"], "token"
        else:
            raise Refused(400, "claim needs a token or a voucher")
        device_id = fingerprint_of(public_key)
        now = time.time()
        with self.db.atomic():
            row = ClaimToken.get_or_none(
                ClaimToken.token_hash == hashlib.sha256(token.encode()).hexdigest()
            )
            if row is None or row.kind != kind or row.expires_at < now:
                raise Refused(403, f"unknown or expired claim {kind}")
            if row.used_at is not None and row.device_id != device_id:
                raise Refused(409, f"this claim {kind} was already used by another box; "
                                   "ask the centre for a new one")
            if row.used_at is not None:
                raise Refused(409, f"this claim {kind} was already used (by this box)")
            taken = (
                ClaimToken.update(used_at=now, device_id=device_id)
                .where((ClaimToken.token_hash == row.token_hash) & ClaimToken.used_at.is_null())
                .execute()
            )
            if taken != 1:
                raise Refused(409, f"this claim {kind} was already used")
            Device.insert(
                device_id=device_id, public_key=body["device_public_key"], claimed_at=now
            ).on_conflict(
                conflict_target=[Device.device_id],
                update={Device.public_key: body["device_public_key"], Device.claimed_at: now},
            ).execute()
        log.info("device %s claimed with a %s", device_id, kind)
        answer = {
            "kind": "claim-answer", "device_id": device_id,
            "device_public_key": body["device_public_key"], "challenge": challenge,
            "issued_at": round(now, 3), **self.public_keys(),
        }
        return sign_document(self.keys.signing, answer)

    def _voucher_token(self, voucher: str) -> str:
        try:
            envelope = json.loads(b64d(voucher.strip()))
        except ValueError:
            raise Refused(400, "the voucher is not a ClinicBox voucher") from None
        try:
            doc = verify_document(self.keys.signing.public_key(), envelope)
        except ProtocolError:
            raise Refused(403, "the voucher was not signed by this centre") from None
        if doc.get("kind") != "voucher" or not isinstance(doc.get("token"), str):
            raise Refused(400, "the voucher is not a ClinicBox voucher")
        return doc["token"]

    # Authentication ---------------------------------------------------------------------

    def device_key(self, device_id: str) -> Any:
        device = Device.get_or_none(Device.device_id == device_id)
        if device is None:
            raise Refused(403, f"unknown device {device_id[:32]!r}: claim the box first")
        return load_public_key(device.public_key)

    def remember_nonce(self, device_id: str, nonce: str, ts: float) -> None:
        """Record a request nonce; Refused(409) if seen before (a replay)."""
        now = time.time()
        try:
            with self.db.atomic():
                Nonce.create(device_id=device_id, nonce=nonce, seen_at=now)
        except IntegrityError:
            raise Refused(409, "replayed request (nonce already used)") from None
        if secrets.randbelow(200) == 0:
            Nonce.delete().where(Nonce.seen_at < now - 2 * MAX_SKEW_S).execute()
        Device.update(last_seen=now).where(Device.device_id == device_id).execute()

    # Ingest -----------------------------------------------------------------------------

    def store(self, device_id: str, batch: dict[str, Any]) -> list[Delivered]:
        """Store a checked batch idempotently; return exactly what the centre now holds of it."""
        records = batch["records"]
        now = time.time()
        with self.db.atomic():
            if records:
                rows = [
                    {
                        "device_id": device_id, "record_id": r["id"], "version": r["version"],
                        "content_hash": r["hash"], "record_type": r["type"][:32],
                        "lane": r["lane"], "payload": r["payload"], "received_at": now,
                    }
                    for r in records
                ]
                for start in range(0, len(rows), 500):
                    Record.insert_many(rows[start:start + 500]).on_conflict_ignore().execute()
            if isinstance(batch.get("backlog"), dict):
                Device.update(backlog=json.dumps(batch["backlog"])).where(
                    Device.device_id == device_id
                ).execute()
        wanted = {(r["id"], r["hash"]) for r in records}
        stored: list[Delivered] = []
        hashes = [h for _, h in wanted]
        for start in range(0, len(hashes), 500):
            query = (
                Record.select(Record.record_id, Record.version, Record.content_hash)
                .where((Record.device_id == device_id)
                       & Record.content_hash.in_(hashes[start:start + 500]))
                .tuples()
            )
            # `.tuples()` yields tuples; peewee's stubs say records.
            found = cast(Iterable[Delivered], query)
            stored.extend(t for t in found if (t[0], t[2]) in wanted)
        return stored

    def receipt(self, device_id: str, ref: str, stored: list[Delivered],
                sent: list[Delivered] | None = None) -> dict[str, Any]:
        """The signed receipt; compact when `sent` is given and all of it is held."""
        return sign_document(self.keys.signing, make_receipt(device_id, ref, stored, sent))

    def import_bundle(self, raw: bytes) -> tuple[bytes, int]:
        """Ingest a courier bundle; return the signed receipt file and how many it holds."""
        try:
            envelope = read_bundle_header(raw)
            device_id = envelope["document"]["device_id"]
            device_key = self.device_key(device_id)
            batch = open_bundle(device_key, self.keys.sealing, envelope)
        except TooLarge as exc:
            raise Refused(413, str(exc)) from None
        except ProtocolError as exc:
            raise Refused(400, str(exc)) from None
        stored = self.store(device_id, batch)
        Device.update(last_seen=time.time()).where(Device.device_id == device_id).execute()
        receipt = self.receipt(device_id, envelope["document"]["bundle_id"], stored)
        return receipt_file(receipt), len(stored)

    # Down-sync --------------------------------------------------------------------------

    def publish(self, kind: str, key: str, body: Any, device_id: str | None = None) -> int:
        """Sign and queue a change for one device (or all); return its sequence number."""
        if kind not in CHANGE_KINDS:
            raise Refused(400, f"change kind must be one of {', '.join(CHANGE_KINDS)}")
        with self.db.atomic():
            row = ChangeRow.create(device_id=device_id, envelope="")
            doc = {"kind": "change", "seq": row.seq, "type": kind, "key": key,
                   "body": body, "device_id": device_id}
            row.envelope = json.dumps(sign_document(self.keys.signing, doc))
            row.save()
        return row.seq

    def changes(self, device_id: str, after: int, limit: int = 200) -> dict[str, Any]:
        rows = (
            ChangeRow.select()
            .where((ChangeRow.seq > after)
                   & (ChangeRow.device_id.is_null() | (ChangeRow.device_id == device_id)))
            .order_by(ChangeRow.seq)
            .limit(limit)
        )
        changes = [json.loads(r.envelope) for r in rows]
        cursor = changes[-1]["document"]["seq"] if changes else after
        return {"changes": changes, "cursor": cursor}

    def devices(self) -> list[dict[str, Any]]:
        """The registry with each device's last contact, reported backlog and stored count."""
        counts: dict[str, int] = dict(cast(Iterable[tuple[str, int]], (
            Record.select(Record.device_id, fn.COUNT(Record.id)).group_by(Record.device_id).tuples()
        )))
        out = []
        for d in Device.select().order_by(Device.device_id):
            out.append({
                "device_id": d.device_id, "claimed_at": d.claimed_at, "last_seen": d.last_seen,
                "backlog": json.loads(d.backlog) if d.backlog else None,
                "records": counts.get(d.device_id, 0),
            })
        return out


def default_data_dir() -> Path:
    return Path(os.environ.get("CLINICBOX_CENTRAL_DATA_DIR", "./central-data"))
