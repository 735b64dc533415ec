"""Encrypted peewee fields: plaintext in memory, AES-256-GCM ciphertext in every SQL statement.

A model instance holds plaintext values for the code that uses it. `ClinicalModel.save()` seals
each encrypted value for its table/pk/column just before the SQL is built, and rows read back
hold `Sealed` bytes that are decrypted on first attribute access. `EncryptedField.db_value`
refuses anything that is not sealed, so plaintext cannot reach the database by another path
(`Model.update(...)`, `insert_many`): those raise `TypeError`.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import BlobField, FieldAccessor, Model


class IntegrityError(Exception):
    """A stored record failed its integrity check (tampered, moved or damaged ciphertext).

    The record is quarantined and the failure written to the audit log; the message names the
    record by table and id only.
    """

    def __init__(self, table: str, pk: str, column: str) -> None:
        self.table = table
        self.pk = pk
        self.column = column
        super().__init__(
            f"record {table}/{pk} failed its integrity check in column {column!r} "
            "(quarantined; restore it from the centre or a backup)"
        )


class Sealed(bytes):
    """Ciphertext as read from or written to the database; never plaintext."""


class EncryptedAccessor(FieldAccessor):
    """Decrypts a `Sealed` value on first access and caches the plaintext on the instance."""

    def __get__(self, instance: Model | None, instance_type: type | None = None) -> Any:
        if instance is None:
            return self.field
        value = instance.__data__.get(self.name)
        if isinstance(value, Sealed):
            value = self.field.unseal(instance, value)
            # Cached plaintext is not a change: the row's ciphertext stays valid.
            instance.__data__[self.name] = value
        return value


class EncryptedField(BlobField):
    """A JSON-serialisable value (text, number, list, dict) stored as AES-256-GCM ciphertext."""

    accessor_class = EncryptedAccessor

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, Sealed):
            raise TypeError(
                f"{self.model.__name__}.{self.name} is encrypted: write it with instance.save(), "
                "not a bulk insert/update query"
            )
        return bytes(value)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return Sealed(value)

    @staticmethod
    def encode(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def unseal(self, instance: Model, blob: Sealed) -> Any:
        """Plaintext of `blob` for this instance's row, or IntegrityError (quarantined)."""
        db = instance._meta.database
        table = instance._meta.table_name
        pk = str(instance.get_id())
        try:
            plain = db.keyring.open_sealed(bytes(blob), table, pk, self.column_name)
            return json.loads(plain)
        except Exception:
            # DecryptionFailed, or a tag that verified over bytes that are not our JSON.
            db.integrity_failure(table, pk, self.column_name)
            raise IntegrityError(table, pk, self.column_name) from None
