"""`clinicbox user add|disable|password`: manage staff accounts from the box's shell."""

from __future__ import annotations

import os

import click

from appliance import staff_sessions
from appliance.accounts import ROLES, create_user, normalise_username, set_password
from appliance.commands.context import CommandContext, pass_command_context
from appliance.errors import OperatorError


@click.group("user")
def user_group() -> None:
    """Manage staff accounts."""


def _new_password() -> str:
    return os.environ.get("CLINICBOX_NEW_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@pass_command_context
def user_add(command: CommandContext, username: str, role: str) -> None:
    """Create USERNAME; the password comes from $CLINICBOX_NEW_PASSWORD or a prompt."""
    password = _new_password()
    with command.store() as store:
        try:
            user = create_user(store, username, password, role)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
    click.echo(f"created {role} {user.username} (id {user.id})")


@user_group.command("disable")
@click.argument("username")
@pass_command_context
def user_disable(command: CommandContext, username: str) -> None:
    """Disable USERNAME: no more sign-ins, and every open session ends at once."""
    name = normalise_username(username)
    with command.store() as store:
        User = store.User  # noqa: N806 - the store's model class
        user = User.get_or_none(User.username == name)
        if user is None:
            raise OperatorError(f"no staff account named {name!r}; check the spelling")
        with store.transaction():
            user.active = False
            user.save()
            ended = staff_sessions.end_all_for(store, user.id)
            store.audit("cli", "user.disable", f"users/{user.id}")
    click.echo(f"disabled {name}; ended {ended} open session(s)")


@user_group.command("password")
@click.argument("username")
@pass_command_context
def user_password(command: CommandContext, username: str) -> None:
    """Set USERNAME's password ($CLINICBOX_NEW_PASSWORD or a prompt); ends their sessions."""
    password = _new_password()
    with command.store() as store:
        with store.transaction():
            try:
                user = set_password(store, username, password)
            except ValueError as exc:
                raise OperatorError(str(exc)) from None
            ended = staff_sessions.end_all_for(store, user.id)
            store.audit("cli", "user.password", f"users/{user.id}")
    click.echo(f"password changed for {user.username}; ended {ended} open session(s)")
