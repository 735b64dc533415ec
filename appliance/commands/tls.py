"""`clinicbox tls new-ca`: a new local CA when the box has moved to another network."""

from __future__ import annotations

import click

from appliance.tls import ensure_tls


@click.group("tls")
def tls_group() -> None:
    """The box's local certificate authority and server certificate."""


@tls_group.command("new-ca")
@click.option("--yes", is_flag=True, help="Confirm: every tablet must install the new CA.")
@click.pass_context
def tls_new_ca(ctx: click.Context, yes: bool) -> None:
    """Make a new local CA for this box's current names and networks, and a new certificate."""
    from appliance.cli import settings_from
    from appliance.errors import OperatorError
    from appliance.store import open_store
    from appliance.store.store import passphrase_from_env

    if not yes:
        raise OperatorError(
            "a new CA means every tablet must install it again from /ca.pem; add --yes"
        )
    settings = settings_from(ctx)
    store = open_store(settings, passphrase_from_env())
    try:
        material = ensure_tls(settings.tls_dir, settings.hostname, store.keyring, new_ca=True)
    finally:
        store.close()
    click.echo(
        f"new local CA made, certificate valid until {material.not_after().date()}; restart "
        "clinicbox and install /ca.pem on every tablet again"
    )
