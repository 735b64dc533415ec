"""The centre's tables (peewee; SQLite by default, PostgreSQL in production).

Nothing here is keyed by clinical content: devices by key fingerprint, records by the box's
random record id and content hash.
"""

from __future__ import annotations

import time

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
)

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database


class Device(BaseModel):
    """A claimed box."""

    device_id = CharField(primary_key=True, max_length=32)
    public_key = CharField(max_length=64)
    claimed_at = FloatField(default=time.time)
    last_seen = FloatField(null=True)
    # The box's own count of undelivered records per lane, as last reported (JSON).
    backlog = TextField(null=True)


class ClaimToken(BaseModel):
    """A one-time claim token or offline voucher, kept only as its SHA-256."""

    token_hash = CharField(primary_key=True, max_length=64)
    kind = CharField(max_length=16)
    expires_at = FloatField()
    used_at = FloatField(null=True)
    device_id = CharField(null=True, max_length=32)


class Nonce(BaseModel):
    """Request nonces seen within the freshness window: a second use is a replay."""

    device_id = CharField(max_length=32)
    nonce = CharField(max_length=64)
    seen_at = FloatField(index=True)

    class Meta:
        indexes = ((("device_id", "nonce"), True),)


class Record(BaseModel):
    """One version of one record of one box, stored once (unique device, record, hash)."""

    id = AutoField()
    device_id = CharField(max_length=32)
    record_id = CharField(max_length=64)
    version = IntegerField()
    content_hash = CharField(max_length=64)
    record_type = CharField(max_length=32)
    lane = IntegerField()
    payload = TextField()
    received_at = FloatField(default=time.time)

    class Meta:
        indexes = ((("device_id", "record_id", "content_hash"), True),)


class ChangeRow(BaseModel):
    """A signed down-sync change (accounts, schedules, questionnaires, config) for boxes."""

    seq = AutoField()
    device_id = CharField(null=True, max_length=32, index=True)
    envelope = TextField()
    created_at = BigIntegerField(default=lambda: int(time.time()))


class Operator(BaseModel):
    """A person who may open the centre's operator page (Argon2id password hash)."""

    username = CharField(primary_key=True, max_length=32)
    password_hash = CharField(max_length=200)
    created_at = FloatField(default=time.time)


class ClinicRelay(BaseModel):
    """A box whose patient pages the centre relays at /c/<slug>/ (set by the operator).

    A claimed box without a row here gets no tunnel; removing the row revokes it.
    """

    device_id = CharField(primary_key=True, max_length=32)
    slug = CharField(unique=True, max_length=40)
    created_at = FloatField(default=time.time)


class UpdateBundle(BaseModel):
    """A signed update bundle the centre serves to boxes (the file lives in the data dir).

    `needs` lists (JSON) the sha256 of the release's wheels this bundle does not carry: a
    box takes the bundle only if it holds all of them (a delta), else a fuller one.
    """

    sha256 = CharField(primary_key=True, max_length=64)
    version = CharField(max_length=32)
    platform = CharField(max_length=16)
    python = CharField(max_length=8)
    size = BigIntegerField()
    needs = TextField(default="[]")
    rollback = IntegerField(default=0)
    published_at = FloatField(default=time.time)


class DeviceRelease(BaseModel):
    """What a box last reported of its software: release, slot, trial, last update."""

    device_id = CharField(primary_key=True, max_length=32)
    current = CharField(null=True, max_length=32)
    previous = CharField(null=True, max_length=32)
    trial = CharField(null=True, max_length=32)
    last_version = CharField(null=True, max_length=32)
    last_outcome = CharField(null=True, max_length=32)
    last_reason = CharField(null=True, max_length=200)
    last_at = FloatField(null=True)
    downloading = CharField(null=True, max_length=80)
    reported_at = FloatField(default=time.time)


TABLES = [
    Device,
    ClaimToken,
    Nonce,
    Record,
    ChangeRow,
    Operator,
    ClinicRelay,
    UpdateBundle,
    DeviceRelease,
]
