"""`clinicbox user add|disable|password`: manage staff accounts from the box's shell."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from appliance import staff_sessions
from appliance.accounts import ROLES, create_user, normalise_username, set_password
from appliance.errors import OperatorError


@click.group("user")
def user_group() -> None:
    """Manage staff accounts."""


@contextmanager
def _open_store(ctx: click.Context) -> Iterator[Any]:
    from appliance.cli import settings_from
    from appliance.store import open_store
    from appliance.store.store import passphrase_from_env

    store = open_store(settings_from(ctx), passphrase_from_env())
    try:
        yield store
    finally:
        store.close()


def _new_password() -> str:
    return os.environ.get("CLINICBOX_NEW_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.pass_context
def user_add(ctx: click.Context, username: str, role: str) -> None:
    """Create USERNAME; the password comes from $CLINICBOX_NEW_PASSWORD or a prompt."""
    password = _new_password()
    with _open_store(ctx) as store:
        try:
            user = create_user(store, username, password, role)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
    click.echo(f"created {role} {user.username} (id {user.id})")


@user_group.command("disable")
@click.argument("username")
@click.pass_context
def user_disable(ctx: click.Context, username: str) -> None:
    """Disable USERNAME: no more sign-ins, and every open session ends at once."""
    name = normalise_username(username)
    with _open_store(ctx) as store:
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
@click.pass_context
def user_password(ctx: click.Context, username: str) -> None:
    """Set USERNAME's password ($CLINICBOX_NEW_PASSWORD or a prompt); ends their sessions."""
    password = _new_password()
    with _open_store(ctx) as store:
        with store.transaction():
            try:
                user = set_password(store, username, password)
            except ValueError as exc:
                raise OperatorError(str(exc)) from None
            ended = staff_sessions.end_all_for(store, user.id)
            store.audit("cli", "user.password", f"users/{user.id}")
    click.echo(f"password changed for {user.username}; ended {ended} open session(s)")
