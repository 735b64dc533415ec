"""`clinicbox tls new-ca`: a new local CA when the box has moved to another network."""

from __future__ import annotations

import click

from appliance.commands.context import CommandContext, pass_command_context
from appliance.errors import OperatorError
from appliance.tls import ensure_tls


@click.group("tls")
def tls_group() -> None:
    """The box's local certificate authority and server certificate."""


@tls_group.command("new-ca")
@click.option("--yes", is_flag=True, help="Confirm: every tablet must install the new CA.")
@pass_command_context
def tls_new_ca(command: CommandContext, yes: bool) -> None:
    """Make a new local CA for this box's current names and networks, and a new certificate."""
    if not yes:
        raise OperatorError(
            "a new CA means every tablet must install it again from /ca.pem; add --yes"
        )
    settings = command.settings
    store = command.open_store()
    try:
        material = ensure_tls(settings.tls_dir, settings.hostname, store.keyring, new_ca=True)
    finally:
        store.close()
    click.echo(
        f"new local CA made, certificate valid until {material.not_after().date()}; restart "
        "clinicbox and install /ca.pem on every tablet again"
    )
