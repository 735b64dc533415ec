"""`clinicbox provision|claim|factory-reset`: first-boot setup and claiming from the shell."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.commands.context import CommandContext, pass_command_context
from appliance.provisioning import (
    Account,
    ProvisioningError,
    accept_voucher,
    claim,
    factory_reset,
    provision,
)
from appliance.provisioning_state import read_state


def _read_secret_file(path: Path, what: str) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ProvisioningError(f"cannot read the {what} file {path} ({exc.strerror})") from None


@click.command("provision")
@click.option("--clinic-name", required=True, help="The clinic's display name.")
@click.option("--admin-user", required=True, help="Username of the first clinician-admin.")
@click.option(
    "--admin-password-file",
    required=True,
    type=click.Path(path_type=Path),
    help="File holding that account's password.",
)
@click.option("--tech-user", required=True, help="Username of the first technician.")
@click.option(
    "--tech-password-file",
    required=True,
    type=click.Path(path_type=Path),
    help="File holding that account's password.",
)
@click.option("--central-url", default="", help="Central server to claim the box for (https://).")
@click.option(
    "--claim-token",
    default="",
    help="One-time claim token from the centre (SECRET.TLS_PIN.KEY_PIN).",
)
@click.option(
    "--voucher-file",
    type=click.Path(path_type=Path),
    help="Offline claim voucher (when the box has no link to the centre).",
)
@pass_command_context
def provision_command(
    command: CommandContext,
    clinic_name: str,
    admin_user: str,
    admin_password_file: Path,
    tech_user: str,
    tech_password_file: Path,
    central_url: str,
    claim_token: str,
    voucher_file: Path | None,
) -> None:
    """First-boot setup without the web wizard (the service may be running)."""
    settings = command.settings
    if claim_token and voucher_file:
        raise ProvisioningError("give either --claim-token or --voucher-file, not both")
    if (claim_token or voucher_file) and not central_url:
        raise ProvisioningError("claiming needs --central-url")
    admin = Account(admin_user, _read_secret_file(admin_password_file, "password"), "admin")
    tech = Account(tech_user, _read_secret_file(tech_password_file, "password"), "technician")
    store = command.open_store()
    try:
        if read_state(settings).provisioned:
            raise ProvisioningError("this box is already provisioned; factory reset it first")
        identity = provision(settings, store, clinic_name, admin, tech)
    finally:
        store.close()
    click.echo(
        f"provisioned: device {identity.fingerprint}, accounts {admin.username!r} "
        f"and {tech.username!r}"
    )
    if claim_token:
        claim(settings, central_url, claim_token)
        click.echo(f"claimed for {central_url}")
    elif voucher_file is not None:
        accept_voucher(settings, central_url, _read_secret_file(voucher_file, "voucher"))
        click.echo(f"offline voucher stored; {central_url} checks it on first contact")


@click.command("claim")
@click.option(
    "--central-url", required=True, help="Central server to claim the box for (https://)."
)
@click.option(
    "--claim-token",
    default="",
    help="One-time claim token from the centre (SECRET.TLS_PIN.KEY_PIN).",
)
@click.option(
    "--voucher-file",
    type=click.Path(path_type=Path),
    help="Offline claim voucher (when the box has no link to the centre).",
)
@pass_command_context
def claim_command(
    command: CommandContext, central_url: str, claim_token: str, voucher_file: Path | None
) -> None:
    """Claim a provisioned, unclaimed box for a centre (a claimed box refuses)."""
    settings = command.settings
    if bool(claim_token) == bool(voucher_file):
        raise ProvisioningError("give either --claim-token or --voucher-file")
    if not read_state(settings).provisioned:
        raise ProvisioningError("provision the box first (clinicbox provision or the wizard)")
    if claim_token:
        claim(settings, central_url, claim_token)
        click.echo(f"claimed for {central_url}")
    elif voucher_file is not None:
        accept_voucher(settings, central_url, _read_secret_file(voucher_file, "voucher"))
        click.echo(f"offline voucher stored; {central_url} checks it on first contact")


@click.command("factory-reset")
@click.option("--yes", is_flag=True, help="Confirm: destroy records, accounts, keys and claim.")
@pass_command_context
def factory_reset_command(command: CommandContext, yes: bool) -> None:
    """Crypto-shred the records and return the box to unclaimed. Stop `clinicbox serve` first."""
    if not yes:
        raise ProvisioningError(
            "factory reset destroys every record, account and key on this box; add --yes"
        )
    refused: list[str] = []
    removed = factory_reset(command.settings, refused)
    for line in refused:
        click.echo(f"warning: {line}", err=True)
    click.echo(
        f"factory reset done: store keys shredded, {removed} store files removed; "
        "the box is unclaimed and prints a new setup code on its next start"
    )
