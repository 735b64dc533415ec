"""First-boot provisioning: clinic name, the first two accounts, device identity, claiming.

What it writes under `data_dir/state/` is read back by `appliance.provisioning_state`; the
commands are in `appliance.commands.provisioning`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.accounts import create_user, normalise_username
from appliance.clinical.errors import Invalid
from appliance.config import Settings
from appliance.errors import OperatorError
from appliance.files import (
    UnsafePath,
    make_private_dir,
    remove_tree_beneath,
    unlink_beneath,
    write_private,
)
from appliance.identity import KEY_FILE, DeviceIdentity
from appliance.provisioning_state import read_state, state_dir
from appliance.tls import ensure_tls
from sync.agent.claim import (
    MAX_VOUCHER,
    ClaimError,
    check_central_url,
    claim_box,
    read_voucher,
)

if TYPE_CHECKING:
    from appliance.box import Box

MAX_CLINIC_NAME = 80


class ProvisioningError(OperatorError):
    """Provisioning input or a claim was refused; the message says what to fix."""


ACCOUNT_LABELS = {"admin": "First clinician-admin", "technician": "First technician"}


class AccountRefused(ProvisioningError):
    """One of the first accounts was refused: `role` says which, `field` whether its
    `username` or its `password` (the message names both)."""

    def __init__(self, role: str, reason: str) -> None:
        # The account rules (appliance/accounts.py) start a username's reasons with its name;
        # every other reason is about the password ("that password is too commonly used").
        self.role = role
        self.field = "username" if reason.startswith("username") else "password"
        super().__init__(f"{ACCOUNT_LABELS.get(role, role)} {reason}")


@dataclass(frozen=True)
class Account:
    """A first account to create: username, password and role."""

    username: str
    password: str
    role: str


def check_clinic_name(name: str) -> str:
    """The trimmed clinic name, or ProvisioningError."""
    name = " ".join((name or "").split())
    if not name:
        raise ProvisioningError("the clinic name must not be empty")
    if len(name) > MAX_CLINIC_NAME:
        raise ProvisioningError(f"the clinic name must be at most {MAX_CLINIC_NAME} characters")
    return name


def check_accounts(store: Any, accounts: list[Account]) -> None:
    """Refuse duplicate or already existing usernames before anything is written."""
    names = [normalise_username(a.username) for a in accounts]
    if len(set(names)) != len(names):
        raise ProvisioningError("the administrator and the technician need different usernames")
    User = store.User  # noqa: N806 - the store's model class
    for name in names:
        if User.select().where(User.username == name).exists():
            raise ProvisioningError(f"username {name!r} is already taken")


def provision(
    settings: Settings, store: Any, clinic_name: str, admin: Account, technician: Account
) -> DeviceIdentity:
    """Set the clinic name, create the first accounts, make identity and TLS; mark provisioned.

    Idempotent for the identity and TLS material; refuses to create an account twice.
    """
    name = check_clinic_name(clinic_name)
    accounts = [admin, technician]
    check_accounts(store, accounts)
    with store.transaction():
        for account in accounts:
            try:
                create_user(store, account.username, account.password, account.role)
            except ValueError as exc:
                raise AccountRefused(account.role, str(exc)) from None
        store.audit("setup", "provision.accounts", f"users/{len(accounts)}")
    make_private_dir(settings.secrets_dir)
    identity = DeviceIdentity.load_or_create(settings.secrets_dir)
    ensure_tls(settings.tls_dir, settings.hostname, store.keyring)
    directory = state_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "clinic.json").write_text(json.dumps({"name": name}))
    (directory / "provisioned").write_text(_now() + "\n")
    store.audit("setup", "provision.done", f"device/{identity.fingerprint}")
    return identity


class AlreadyClaimed(ProvisioningError):
    """The box already belongs to a centre; only a factory reset frees it."""


def _refuse_if_claimed(settings: Settings) -> None:
    state = read_state(settings)
    if state.claimed:
        raise AlreadyClaimed(
            f"this box is already claimed for {state.central_url or 'a centre'}; a new claim "
            "needs a factory reset first (it destroys the records and keys on the box)"
        )


@contextlib.contextmanager
def _claim_lock(settings: Settings) -> Iterator[None]:
    """One claim at a time: two pages posting at once cannot both pass the claimed check."""
    directory = state_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "claim.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _checked_url(central_url: str) -> str:
    try:
        return check_central_url(central_url.strip())
    except ClaimError as exc:
        raise ProvisioningError(str(exc)) from None


def claim(settings: Settings, central_url: str, token: str) -> dict[str, Any]:
    """Claim the box for `central_url` with a one-time token; record the claim (0600).

    Refused (AlreadyClaimed) on a box that is claimed already, before any contact.
    """
    central_url = _checked_url(central_url)
    if not token.strip():
        raise ProvisioningError("the claim token must not be empty")
    with _claim_lock(settings):
        _refuse_if_claimed(settings)
        identity = DeviceIdentity.load_or_create(settings.secrets_dir)
        try:
            result = claim_box(central_url, token.strip(), identity)
        except ClaimError as exc:
            raise ProvisioningError(str(exc)) from None
        record = {"central_url": central_url, "mode": "token", "claimed_at": _now(),
                  "centre": dict(result)}
        _write_claim(settings, record)
    return record


def accept_voucher(settings: Settings, central_url: str, voucher: str) -> dict[str, Any]:
    """Record an offline claim voucher; the centre checks it on the box's first contact.

    Refused (AlreadyClaimed) on a box that is claimed already or holds a voucher.
    """
    central_url = _checked_url(central_url)
    voucher = voucher.strip()
    if not voucher or len(voucher) > MAX_VOUCHER:
        raise ProvisioningError("the claim voucher is empty or too long")
    try:
        read_voucher(voucher)  # signed by the centre: catches typos and edits now
    except ClaimError as exc:
        raise ProvisioningError(str(exc)) from None
    record = {
        "central_url": central_url,
        "mode": "voucher",
        "voucher": voucher,
        "verified": False,
        "claimed_at": _now(),
    }
    with _claim_lock(settings):
        _refuse_if_claimed(settings)
        _write_claim(settings, record)
    return record


class ClaimRefused(Invalid):
    """The centre, the token or the voucher did not let the box be claimed (400)."""


def claim_for_portal(box: Box, central_url: str, token: str, voucher: str) -> str:
    """Claim by token (or, without one, by voucher) for the web pages: what to tell the person.

    A failed claim raises ClaimRefused and leaves the box as it was (provisioned, unclaimed).
    """
    try:
        if token:
            claim(box.settings, central_url, token)
            message = f"Claimed for {central_url}."
        else:
            accept_voucher(box.settings, central_url, voucher)
            message = f"Voucher stored; {central_url} checks it on first contact."
    except (OperatorError, OSError, ValueError) as exc:
        # One sentence that ends like one: what failed and what to check (sync.agent.claim).
        raise ClaimRefused(f"Claim failed: {str(exc).rstrip('.')}.") from None
    box.store.audit("setup", "claim", "centre")
    return message


def _write_claim(settings: Settings, record: dict[str, Any]) -> None:
    directory = state_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / "claim.json", json.dumps(record).encode())


def factory_reset(settings: Settings, refused: list[str] | None = None) -> int:
    """Crypto-shred the store, then forget clinic, claim, device key and TLS material.

    Returns how many store files were removed. The store must not be open (StoreBusyError).
    Root may run this over the service user's data dir, so no symbolic link below it is
    followed: links are removed as links, and what was not overwritten goes to `refused`.
    """
    from appliance.store.wipe import wipe

    data = settings.data_dir
    removed = wipe(settings, refused)
    remove_tree_beneath(data, state_dir(settings).relative_to(data))
    remove_tree_beneath(data, settings.tls_dir.relative_to(data))
    for name in (KEY_FILE, "flask-secret", "setup-code.json"):
        try:
            unlink_beneath(data, (settings.secrets_dir / name).relative_to(data))
        except UnsafePath as exc:  # the secrets dir itself is a link: remove the link
            if refused is not None:
                refused.append(str(exc.strerror))
            unlink_beneath(data, settings.secrets_dir.relative_to(data))
    return len(removed)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
