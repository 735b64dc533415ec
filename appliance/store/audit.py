"""The append-only audit log: who did what to which record, as a keyed hash chain.

Each entry's `hash` is HMAC-SHA256 (the store's MAC key) over the previous entry's hash and this
entry's id, time, actor, action and target. Editing, deleting, inserting or reordering an entry
breaks the chain at that point, and without the MAC key the chain cannot be recomputed.
Actors and targets are ids (`user:3`, `patient/<uuid>`), never names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.store.database import RecordDatabase
from appliance.store.models import AuditLog, utcnow

GENESIS = "0" * 64
# Ids only: no spaces, so a person's name cannot slip in as an actor or target.
_ID = re.compile(r"^[A-Za-z0-9:_./@#-]{1,120}$")
_ACTION = re.compile(r"^[a-z0-9_.-]{1,60}$")


def _entry_hash(db: RecordDatabase, prev: str, entry: AuditLog) -> str:
    message = "|".join(
        (prev, str(entry.id), entry.at.isoformat(), entry.actor, entry.action, entry.target)
    )
    return db.keyring.mac("audit", message.encode())


def append(db: RecordDatabase, actor: str, action: str, target: str) -> AuditLog:
    """Add one entry at the end of the chain."""
    if not _ID.match(actor or "") or not _ID.match(target or ""):
        raise ValueError("audit actor and target must be ids (no spaces), not names")
    if not _ACTION.match(action or ""):
        raise ValueError("audit action must be a short lower-case word like 'record.read'")
    txn = db.atomic("IMMEDIATE") if db.transaction_depth() == 0 else db.atomic()
    with txn:
        last = AuditLog.select().order_by(AuditLog.id.desc()).first()
        prev = last.hash if last else GENESIS
        entry = AuditLog(
            id=(last.id + 1) if last else 1,
            at=utcnow(),
            actor=actor,
            action=action,
            target=target,
            prev_hash=prev,
        )
        entry.hash = _entry_hash(db, prev, entry)
        entry.save(force_insert=True)
    return entry


@dataclass(frozen=True)
class ChainReport:
    """Result of `verify`: entries checked and the first broken link, if any."""

    checked: int
    broken_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def verify(db: RecordDatabase, batch: int = 1000) -> ChainReport:
    """Walk the chain from the first entry; stop at the first entry that does not link."""
    prev = GENESIS
    expected_id = 1
    checked = 0
    last_id = 0
    while True:
        rows = list(
            AuditLog.select().where(AuditLog.id > last_id).order_by(AuditLog.id).limit(batch)
        )
        if not rows:
            return ChainReport(checked)
        for entry in rows:
            if entry.id != expected_id:
                return ChainReport(checked, entry.id, f"entry {expected_id} is missing")
            if entry.prev_hash != prev:
                return ChainReport(checked, entry.id, "does not link to the previous entry")
            if entry.hash != _entry_hash(db, prev, entry):
                return ChainReport(checked, entry.id, "its contents were altered")
            prev = entry.hash
            expected_id += 1
            checked += 1
            last_id = entry.id
