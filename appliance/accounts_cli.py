"""`clinicbox user add`: make a staff account from the box's shell."""

from __future__ import annotations

import os

import click

from appliance.accounts import ROLES, create_user
from appliance.errors import OperatorError


@click.group("user")
def user_group() -> None:
    """Manage staff accounts."""


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.pass_context
def user_add(ctx: click.Context, username: str, role: str) -> None:
    """Create USERNAME; the password comes from $CLINICBOX_NEW_PASSWORD or a prompt."""
    from appliance.cli import settings_from
    from appliance.store import open_store
    from appliance.store.store import passphrase_from_env

    password = os.environ.get("CLINICBOX_NEW_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    settings = settings_from(ctx)
    store = open_store(settings, passphrase_from_env())
    try:
        user = create_user(store, username, password, role)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    finally:
        store.close()
    click.echo(f"created {role} {user.username} (id {user.id})")
