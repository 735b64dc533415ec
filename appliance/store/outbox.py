"""The outbox: what must reach the centre, leased to the sync agent by priority lane.

Entries are written by `ClinicalModel.save()` in the record's own transaction. Payloads are
built at lease time from the decrypted record and exist only in memory: the database holds
the ciphertext and the entry's bookkeeping (lane, version, state, attempts, times).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from appliance.store.fields import IntegrityError
from appliance.store.models import MODELS_BY_TYPE, ClinicalModel, Lane, OutboxEntry

if TYPE_CHECKING:
    from appliance.store.store import Store

__all__ = ["Lane", "Outbox", "OutboxItem"]

log = logging.getLogger(__name__)

_UNDELIVERED = ("pending", "leased")
# Ids per IN (...) query: well under SQLite's variable limit.
_CHUNK = 256


@dataclass(frozen=True)
class OutboxItem:
    """One record, as leased to the sync agent."""

    entry_id: int
    record_type: str
    record_id: str
    version: int
    lane: Lane
    payload: bytes
    content_hash: str
    attempts: int


class Outbox:
    """Lease, acknowledge and release outbox entries for the sync agent."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def _record(self, entry: OutboxEntry) -> ClinicalModel | None:
        model = MODELS_BY_TYPE.get(entry.record_type)
        return model.get_or_none(model.id == entry.record_id) if model else None

    def _payload(self, entry: OutboxEntry) -> bytes | None:
        """The record's canonical JSON, or None (entry quarantined) when it cannot be read."""
        try:
            record = self._record(entry)
            if record is not None:
                return record.to_payload()
        except IntegrityError:
            pass
        OutboxEntry.update(state="quarantined", leased_until=None).where(
            OutboxEntry.id == entry.id
        ).execute()
        log.warning("outbox entry %s quarantined: its record is missing or damaged", entry.id)
        return None

    def lease(
        self, byte_budget: int, max_items: int, lease_seconds: float = 60.0
    ) -> list[OutboxItem]:
        """The next due entries by lane then age, within `byte_budget` payload bytes.

        Entries leased by an earlier call (until their lease expires) or waiting for their
        next attempt are skipped. At least one item is returned whenever one is due, even
        if it alone exceeds the budget, so a large record cannot block its lane forever.
        """
        now = time.time()
        items: list[OutboxItem] = []
        used = 0
        with self.db.atomic("IMMEDIATE"):
            self.db.keyring.refresh()
            due = (
                OutboxEntry.select()
                .where(
                    (OutboxEntry.next_attempt_at <= now)
                    & (
                        (OutboxEntry.state == "pending")
                        | ((OutboxEntry.state == "leased") & (OutboxEntry.leased_until < now))
                    )
                )
                .order_by(OutboxEntry.lane, OutboxEntry.enqueued_at, OutboxEntry.id)
            )
            for entry in due.iterator():
                if len(items) >= max_items:
                    break
                payload = self._payload(entry)
                if payload is None:
                    continue
                if items and used + len(payload) > byte_budget:
                    break
                used += len(payload)
                items.append(
                    OutboxItem(
                        entry_id=entry.id,
                        record_type=entry.record_type,
                        record_id=entry.record_id,
                        version=entry.version,
                        lane=Lane(entry.lane),
                        payload=payload,
                        content_hash=hashlib.sha256(payload).hexdigest(),
                        attempts=entry.attempts,
                    )
                )
            if items:
                OutboxEntry.update(state="leased", leased_until=now + lease_seconds).where(
                    OutboxEntry.id.in_([i.entry_id for i in items])
                ).execute()
        return items

    def acknowledge(self, delivered: Iterable[tuple[str, int, str]]) -> int:
        """Mark records the centre's verified receipt names as delivered; return how many.

        A receipt counts only when its version and content hash match the record as it is
        now: a record changed since it was leased stays pending as its new version.
        Entries and records are read in chunks (a receipt lists up to 512 records; one query
        per record made this the agent's slowest step, 3 s for 1,024 records on x86).
        """
        wanted = {(record_id, version): content_hash
                  for record_id, version, content_hash in delivered}
        count = 0
        now = time.time()
        with self.db.atomic("IMMEDIATE"):
            keys = list(wanted)
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                entries = [
                    e for e in OutboxEntry.select().where(
                        OutboxEntry.record_id.in_([r for r, _v in chunk])
                        & OutboxEntry.state.in_(_UNDELIVERED))
                    if (e.record_id, e.version) in wanted
                ]
                matching = [e.id for e in entries
                            if self._hash_now(e) == wanted[(e.record_id, e.version)]]
                if matching:
                    count += (
                        OutboxEntry.update(state="delivered", delivered_at=now,
                                           leased_until=None)
                        .where(OutboxEntry.id.in_(matching)
                               & OutboxEntry.state.in_(_UNDELIVERED))
                        .execute()
                    )
        return count

    def _hash_now(self, entry: OutboxEntry) -> str | None:
        """SHA-256 of the entry's record as it is now (None when missing or damaged)."""
        try:
            record = self._record(entry)
            payload = record.to_payload() if record is not None else None
        except IntegrityError:
            payload = None
        return hashlib.sha256(payload).hexdigest() if payload is not None else None

    def release(self, entry_ids: Iterable[int], error: str | None, retry_after_s: float) -> None:
        """Give leased entries back after a failed send: one more attempt, retry later."""
        ids = list(entry_ids)
        if not ids:
            return
        with self.db.atomic("IMMEDIATE"):
            OutboxEntry.update(
                state="pending",
                attempts=OutboxEntry.attempts + 1,
                next_attempt_at=time.time() + max(0.0, retry_after_s),
                leased_until=None,
                last_error=(error or None) and error[:200],
            ).where(OutboxEntry.id.in_(ids) & (OutboxEntry.state == "leased")).execute()

    def stats(self) -> dict:
        """Undelivered entries per lane, the oldest one's age, and the delivered count."""
        lanes = {lane.name.lower(): 0 for lane in Lane}
        # `.tuples()` yields (lane, state) tuples; peewee's stubs say records.
        rows = cast(Iterable[tuple[int, str]], (
            OutboxEntry.select(OutboxEntry.lane, OutboxEntry.state)
            .where(OutboxEntry.state.in_(_UNDELIVERED))
            .tuples()
        ))
        for lane, _state in rows:
            lanes[Lane(lane).name.lower()] += 1
        oldest = (
            OutboxEntry.select(OutboxEntry.enqueued_at)
            .where(OutboxEntry.state.in_(_UNDELIVERED))
            .order_by(OutboxEntry.enqueued_at)
            .scalar()
        )
        delivered = OutboxEntry.select().where(OutboxEntry.state == "delivered").count()
        quarantined = OutboxEntry.select().where(OutboxEntry.state == "quarantined").count()
        return {
            "lanes": lanes,
            "oldest_undelivered_age_s": None if oldest is None else max(0.0, time.time() - oldest),
            "delivered": delivered,
            "quarantined": quarantined,
        }

    def purge_delivered(self, older_than_s: float) -> int:
        """Drop bookkeeping for records delivered more than `older_than_s` ago.

        The records stay; a later edit of one creates a fresh entry.
        """
        cutoff = time.time() - older_than_s
        with self.db.atomic("IMMEDIATE"):
            return (
                OutboxEntry.delete()
                .where((OutboxEntry.state == "delivered") & (OutboxEntry.delivered_at < cutoff))
                .execute()
            )
