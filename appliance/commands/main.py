"""The `clinicbox` command: serve the appliance and the operator's tools."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance import __version__
from appliance.config import Settings, load_settings
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


def settings_from(ctx: click.Context) -> Settings:
    """The settings for this invocation, loaded once."""
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(config_path=obj.get("config_path"))
    return obj["settings"]


pass_settings: Callable[..., Any] = click.make_pass_decorator(Settings)


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
    ctx.ensure_object(dict)["config_path"] = config_path


@main.command()
def version() -> None:
    """Print the ClinicBox version."""
    click.echo(f"clinicbox {__version__}")


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML-like lines.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings (defaults, file, then CLINICBOX_* variables)."""
    values = settings_from(ctx).as_dict()
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    for key, value in values.items():
        click.echo(f"{key} = {json.dumps(value)}")


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the appliance: portal over HTTPS, media, discovery and sync, until SIGTERM."""
    from appliance.server import serve as run_server

    settings = settings_from(ctx)
    configure_logging(settings.log_level)
    sys.exit(run_server(settings))

from appliance.accounts_cli import user_group  # noqa: E402

main.add_command(user_group)

from appliance.store.commands import audit_group, keys_group, wipe_command  # noqa: E402

main.add_command(keys_group)
main.add_command(wipe_command)
main.add_command(audit_group)

from appliance.tls_cli import tls_group  # noqa: E402

main.add_command(tls_group)

from appliance.discovery.cli import discover_command  # noqa: E402
from appliance.provisioning import (  # noqa: E402
    claim_command,
    factory_reset_command,
    provision_command,
)

main.add_command(discover_command)
main.add_command(claim_command)
main.add_command(provision_command)
main.add_command(factory_reset_command)

from sync.agent.commands import (  # noqa: E402
    export_bundle_command,
    import_receipts_command,
    sync_group,
)

main.add_command(sync_group)
main.add_command(export_bundle_command)
main.add_command(import_receipts_command)

from appliance.update.commands import update_group  # noqa: E402

main.add_command(update_group)
