"""The `clinicbox` command: serve the appliance and the operator's tools."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from appliance import __version__
from appliance.commands.context import CommandContext, pass_command_context
from appliance.commands.discover import discover_command
from appliance.commands.provisioning import (
    claim_command,
    factory_reset_command,
    provision_command,
)
from appliance.commands.store import audit_group, keys_group, wipe_command
from appliance.commands.sync import export_bundle_command, import_receipts_command, sync_group
from appliance.commands.tls import tls_group
from appliance.commands.update import update_group
from appliance.commands.user import user_group
from appliance.errors import OperatorError
from appliance.logs import configure_logging


class OperatorErrors(click.Group):
    """A command group that turns `OperatorError` into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperatorError as exc:
            click.echo(f"clinicbox: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=OperatorErrors)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file (default: $CLINICBOX_CONFIG or /etc/clinicbox/clinicbox.toml).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """ClinicBox: group sessions, encrypted records and sync for a rural clinic."""
    # What systemd's UMask=0077 does for the service, for every command run by hand too: the
    # database, state and key files it creates are the owner's alone, whatever the shell's umask.
    os.umask(0o077)
    ctx.obj = CommandContext(config_path)


@main.command()
def version() -> None:
    """Print the ClinicBox version."""
    click.echo(f"clinicbox {__version__}")


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML-like lines.")
@pass_command_context
def config_show(command: CommandContext, as_json: bool) -> None:
    """Print the effective settings (defaults, file, then CLINICBOX_* variables)."""
    values = command.settings.as_dict()
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    for key, value in values.items():
        click.echo(f"{key} = {json.dumps(value)}")


@main.command()
@pass_command_context
def serve(command: CommandContext) -> None:
    """Run the appliance: portal over HTTPS, media, discovery and sync, until SIGTERM."""
    from appliance.server import serve as run_server

    settings = command.settings
    configure_logging(settings.log_level)
    sys.exit(run_server(settings))


for _command in (
    user_group,
    keys_group,
    wipe_command,
    audit_group,
    tls_group,
    discover_command,
    claim_command,
    provision_command,
    factory_reset_command,
    sync_group,
    export_bundle_command,
    import_receipts_command,
    update_group,
):
    main.add_command(_command)
