"""Which claimed boxes the centre relays patient pages for, and under which public name.

The operator names a box's clinic (`clinicbox-central relay add DEVICE SLUG`); patients then
reach its patient pages at `https://<centre>/c/<slug>/join`. A box without a name gets no
tunnel, and `relay remove` revokes one (an open tunnel is closed within a second).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from peewee import IntegrityError

from sync.server.centre import Centre, Refused
from sync.server.models import ClinicRelay, Device

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise Refused(
            400,
            "a clinic name for the relay is 1-40 characters: lower-case letters, "
            "digits and inner hyphens (e.g. 'hill-clinic')",
        )
    return slug


def add_relay(centre: Centre, device_id: str, slug: str) -> None:
    """Relay patient pages of a claimed box at /c/SLUG/ (renames it if it had another)."""
    check_slug(slug)
    with centre.db.connection_context(), centre.db.atomic():
        if Device.get_or_none(Device.device_id == device_id) is None:
            raise Refused(404, f"no claimed box with device id {device_id[:32]!r}")
        try:
            ClinicRelay.insert(device_id=device_id, slug=slug).on_conflict(
                conflict_target=[ClinicRelay.device_id], update={ClinicRelay.slug: slug}
            ).execute()
        except IntegrityError:
            raise Refused(409, f"the name {slug!r} is taken by another box") from None


def remove_relay(centre: Centre, device_id: str) -> bool:
    """Stop relaying for a box; True if it was relayed."""
    with centre.db.connection_context():
        removed = ClinicRelay.delete().where(ClinicRelay.device_id == device_id).execute()
    return bool(removed)


def list_relays(centre: Centre) -> list[dict[str, str]]:
    with centre.db.connection_context():
        return [
            {"device_id": r.device_id, "slug": r.slug}
            for r in ClinicRelay.select().order_by(ClinicRelay.slug)
        ]


def slug_of(device_id: str) -> str | None:
    """The box's relay name, or None (needs an open database connection)."""
    row = ClinicRelay.get_or_none(ClinicRelay.device_id == device_id)
    return row.slug if row is not None else None


def device_of(slug: str) -> str | None:
    """The box relayed under `slug`, or None (needs an open database connection)."""
    row = ClinicRelay.get_or_none(ClinicRelay.slug == slug)
    return row.device_id if row is not None else None


def tunnel_socket_dir(data_dir: Path) -> Path:
    """Where each open tunnel listens for relayed requests from any worker (0700)."""
    return data_dir / "run" / "t"


def tunnel_socket(data_dir: Path, device_id: str) -> Path:
    """The unix socket of a box's open tunnel. Named by a short hash of the device id: a
    unix socket path has at most 107 bytes."""
    name = hashlib.sha256(device_id.encode()).hexdigest()[:16]
    path = tunnel_socket_dir(data_dir).absolute() / f"{name}.sock"
    if len(str(path).encode()) > 107:
        raise ValueError(f"the data dir path is too long for the relay's sockets ({path})")
    return path
