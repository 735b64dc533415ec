"""First-boot provisioning: clinic name, the first two accounts, device identity, claiming.

State lives in `data_dir/state/` as small files the service and the CLI share:
`clinic.json` (the clinic's display name), `provisioned` (marker: no more setup codes) and
`claim.json` (0600: which centre the box belongs to). Nothing here is clinical content.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from appliance.accounts import create_user, normalise_username
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
from appliance.tls import ensure_tls
from sync.agent.claim import (
    MAX_VOUCHER,
    ClaimError,
    central_file,
    check_central_url,
    claim_box,
    read_voucher,
)

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


@dataclass(frozen=True)
class ProvisioningState:
    """What the box knows about its own setup, read from `data_dir/state/`."""

    clinic_name: str | None
    provisioned: bool
    claimed: bool
    central_url: str | None

    @property
    def advert_state(self) -> str:
        """The mDNS `state` TXT value."""
        return "claimed" if self.claimed else "unclaimed"


def state_dir(settings: Settings) -> Path:
    return settings.data_dir / "state"


def read_state(settings: Settings) -> ProvisioningState:
    """The current provisioning state (cheap: a few stat calls and two small reads)."""
    directory = state_dir(settings)
    clinic = _read_json(directory / "clinic.json")
    claim = _read_json(directory / "claim.json")
    central = central_file(settings.data_dir)
    return ProvisioningState(
        clinic_name=clinic.get("name") if clinic else None,
        provisioned=(directory / "provisioned").exists(),
        claimed=bool(claim) or central.exists(),
        central_url=claim.get("central_url") if claim else _central_url(central),
    )


def _central_url(path: Path) -> str | None:
    data = _read_json(path)
    url = data.get("central_url") if data else None
    return url if isinstance(url, str) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def claim_result(box: Any, central_url: str, token: str, voucher: str) -> dict[str, str] | None:
    """Claim by token or voucher for the web pages: {"ok", "message"}, or None if neither.

    A failed claim leaves the box as it was (provisioned, unclaimed) and says why.
    """
    if not (token or voucher):
        return None
    try:
        if token:
            claim(box.settings, central_url, token)
            message = f"Claimed for {central_url}."
        else:
            accept_voucher(box.settings, central_url, voucher)
            message = f"Voucher stored; {central_url} checks it on first contact."
    except (OperatorError, OSError, ValueError) as exc:
        # One sentence that ends like one: what failed and what to check (sync.agent.claim).
        return {"ok": "", "message": f"Claim failed: {str(exc).rstrip('.')}."}
    box.store.audit("setup", "claim", "centre")
    return {"ok": "yes", "message": message}


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


def _read_secret_file(path: Path, what: str) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ProvisioningError(f"cannot read the {what} file {path} ({exc.strerror})") from None


@click.command("provision")
@click.option("--clinic-name", required=True, help="The clinic's display name.")
@click.option("--admin-user", required=True, help="Username of the first clinician-admin.")
@click.option("--admin-password-file", required=True, type=click.Path(path_type=Path),
              help="File holding that account's password.")
@click.option("--tech-user", required=True, help="Username of the first technician.")
@click.option("--tech-password-file", required=True, type=click.Path(path_type=Path),
              help="File holding that account's password.")
@click.option("--central-url", default="", help="Central server to claim the box for (https://).")
@click.option("--claim-token", default="",
              help="One-time claim token from the centre (SECRET.TLS_PIN.KEY_PIN).")
@click.option("--voucher-file", type=click.Path(path_type=Path),
              help="Offline claim voucher (when the box has no link to the centre).")
@click.pass_context
def provision_command(
    ctx: click.Context, clinic_name: str, admin_user: str, admin_password_file: Path,
    tech_user: str, tech_password_file: Path, central_url: str, claim_token: str,
    voucher_file: Path | None,
) -> None:
    """First-boot setup without the web wizard (the service may be running)."""
    from appliance.cli import settings_from
    from appliance.store import open_store
    from appliance.store.store import passphrase_from_env

    settings = settings_from(ctx)
    if claim_token and voucher_file:
        raise ProvisioningError("give either --claim-token or --voucher-file, not both")
    if (claim_token or voucher_file) and not central_url:
        raise ProvisioningError("claiming needs --central-url")
    admin = Account(admin_user, _read_secret_file(admin_password_file, "password"), "admin")
    tech = Account(tech_user, _read_secret_file(tech_password_file, "password"), "technician")
    store = open_store(settings, passphrase_from_env())
    try:
        if read_state(settings).provisioned:
            raise ProvisioningError("this box is already provisioned; factory reset it first")
        identity = provision(settings, store, clinic_name, admin, tech)
    finally:
        store.close()
    click.echo(f"provisioned: device {identity.fingerprint}, accounts {admin.username!r} "
               f"and {tech.username!r}")
    if claim_token:
        claim(settings, central_url, claim_token)
        click.echo(f"claimed for {central_url}")
    elif voucher_file is not None:
        accept_voucher(settings, central_url, _read_secret_file(voucher_file, "voucher"))
        click.echo(f"offline voucher stored; {central_url} checks it on first contact")


@click.command("claim")
@click.option("--central-url", required=True, help="Central server to claim the box for (https://).")
@click.option("--claim-token", default="",
              help="One-time claim token from the centre (SECRET.TLS_PIN.KEY_PIN).")
@click.option("--voucher-file", type=click.Path(path_type=Path),
              help="Offline claim voucher (when the box has no link to the centre).")
@click.pass_context
def claim_command(
    ctx: click.Context, central_url: str, claim_token: str, voucher_file: Path | None
) -> None:
    """Claim a provisioned, unclaimed box for a centre (a claimed box refuses)."""
    from appliance.cli import settings_from

    settings = settings_from(ctx)
    if bool(claim_token) == bool(voucher_file):
        raise ProvisioningError("give either --claim-token or --voucher-file")
    if not read_state(settings).provisioned:
        raise ProvisioningError("provision the box first (clinicbox provision or the wizard)")
    if claim_token:
        claim(settings, central_url, claim_token)
        click.echo(f"claimed for {central_url}")
    else:
        accept_voucher(settings, central_url, _read_secret_file(voucher_file, "voucher"))
        click.echo(f"offline voucher stored; {central_url} checks it on first contact")


@click.command("factory-reset")
@click.option("--yes", is_flag=True, help="Confirm: destroy records, accounts, keys and claim.")
@click.pass_context
def factory_reset_command(ctx: click.Context, yes: bool) -> None:
    """Crypto-shred the records and return the box to unclaimed. Stop `clinicbox serve` first."""
    from appliance.cli import settings_from

    if not yes:
        raise ProvisioningError(
            "factory reset destroys every record, account and key on this box; add --yes"
        )
    refused: list[str] = []
    removed = factory_reset(settings_from(ctx), refused)
    for line in refused:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"factory reset done: store keys shredded, {removed} store files removed; "
               "the box is unclaimed and prints a new setup code on its next start")
