"""Data-key rotation: a new active key, then every row re-encrypted in small batches.

Runs beside a serving box: each batch is one short IMMEDIATE transaction (the box's writes wait
at most one batch), and each row is updated only if its ciphertext is still the one that was
read, so a concurrent edit is never overwritten. Progress needs no bookkeeping: a ciphertext
names its key id, so the rows still to do are exactly those whose key id is not the active one.
An interrupted rotation resumes on the next run. Only when no row uses an old key any more are
the old keys removed from the keys file, under the write lock so no writer can slip one in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import OperatorError
from appliance.store.fields import EncryptedField
from appliance.store.keyring import HEADER, DecryptionFailed
from appliance.store.models import CLINICAL_MODELS, ClinicalModel
from appliance.store.store import Store

# Passes over all tables before giving up; a pass only repeats when the box wrote with an old
# key during the previous one, which its keyring refresh makes rare.
MAX_PASSES = 20


@dataclass(frozen=True)
class RotationReport:
    """What a `rotate` call did."""

    key_id: int
    resumed: bool
    rows: int
    retired: tuple[int, ...]


def _encrypted_columns(model: type[ClinicalModel]) -> list[str]:
    return [f.column_name for f in model._meta.sorted_fields if isinstance(f, EncryptedField)]


def _stale_condition(model: type[ClinicalModel]) -> str:
    """SQL: some encrypted column of the row is sealed under a key other than the active one."""
    parts = [f'("{c}" IS NOT NULL AND substr("{c}", 2, 4) != ?)' for c in
             _encrypted_columns(model)]
    table = model._meta.table_name
    return (
        f"({' OR '.join(parts)}) AND id NOT IN "
        f"(SELECT record_id FROM quarantine WHERE record_type = '{table}')"
    )


def _key_id_bytes(key_id: int) -> bytes:
    return HEADER.pack(0, key_id)[1:]


def _reencrypt_batch(store: Store, model: type[ClinicalModel], batch_size: int) -> int:
    """Re-seal up to `batch_size` stale rows of `model`; return how many rows were done."""
    keyring = store.keyring
    table = model._meta.table_name
    columns = _encrypted_columns(model)
    with store.transaction():
        keyring.refresh()
        active = _key_id_bytes(keyring.active_id)
        sql = (
            f'SELECT id, {", ".join(chr(34) + c + chr(34) for c in columns)} FROM "{table}" '
            f"WHERE {_stale_condition(model)} LIMIT ?"
        )
        rows = store.db.execute_sql(sql, [active] * len(columns) + [batch_size]).fetchall()
        for pk, *blobs in rows:
            for column, blob in zip(columns, blobs, strict=True):
                if blob is None or bytes(blob)[1:5] == active:
                    continue
                try:
                    plain = keyring.open_sealed(bytes(blob), table, pk, column)
                except DecryptionFailed:
                    store.db.integrity_failure(table, pk, column)
                    break
                store.db.execute_sql(
                    f'UPDATE "{table}" SET "{column}" = ? WHERE id = ? AND "{column}" = ?',
                    [keyring.seal(plain, table, pk, column), pk, blob],
                )
    return len(rows)


def _sealed_models() -> list[type[ClinicalModel]]:
    """The clinical models with encrypted columns (a schedule, say, has none to rotate)."""
    return [model for model in CLINICAL_MODELS if _encrypted_columns(model)]


def stale_rows(store: Store) -> int:
    """Rows (outside quarantine) that still use a data key other than the active one."""
    active = _key_id_bytes(store.keyring.active_id)
    total = 0
    for model in _sealed_models():
        columns = _encrypted_columns(model)
        sql = f'SELECT count(*) FROM "{model._meta.table_name}" WHERE {_stale_condition(model)}'
        total += store.db.execute_sql(sql, [active] * len(columns)).fetchone()[0]
    return total


def rotate(
    store: Store,
    batch_size: int = 200,
    pause_s: float = 0.02,
    progress: Callable[[int], None] | None = None,
) -> RotationReport:
    """Rotate to a new data key (or finish an interrupted rotation) and retire the old keys."""
    keyring = store.keyring
    keyring.refresh()
    resumed = len(keyring.key_ids) > 1
    if not resumed:
        new_id = keyring.add_data_key()
        store.audit("system", "keys.rotate.start", f"key/{new_id}")
    done = 0
    for _pass in range(MAX_PASSES):
        for model in _sealed_models():
            while True:
                count = _reencrypt_batch(store, model, batch_size)
                done += count
                if count and progress is not None:
                    progress(done)
                if count < batch_size:
                    break
                # Let the box's own writes in between batches.
                time.sleep(pause_s)
        with store.transaction():
            keyring.refresh()
            if stale_rows(store):
                continue  # the box wrote with an old key meanwhile: another pass
            old = [k for k in keyring.key_ids if k != keyring.active_id]
            if old:
                keyring.retire(old)
            store.audit("system", "keys.rotate.done", f"key/{keyring.active_id}")
            return RotationReport(keyring.active_id, resumed, done, tuple(old))
    raise OperatorError(
        "rows kept appearing under an old key; run `clinicbox keys rotate` again to finish"
    )

