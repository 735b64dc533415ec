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
    from appliance.clinical.records import open_records
    from appliance.store.database import flush, open_database

    password = os.environ.get("CLINICBOX_NEW_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    settings = settings_from(ctx)
    db = open_database(settings.database_path)
    try:
        user = create_user(open_records(db, settings.secrets_dir), username, password, role)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    finally:
        flush(db)
    click.echo(f"created {role} {user.username} (id {user.id})")
