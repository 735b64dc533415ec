"""`clinicbox update import|confirm|status` on the box, `clinicbox-central bundle ...` for
whoever cuts releases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from appliance.commands.context import CommandContext, pass_command_context
from appliance.files import write_private
from appliance.update.releases import DEFAULT_TRIAL_S
from appliance.update.status import update_status


def _target(command: CommandContext, restart: str | None = None) -> Any:
    from appliance.update.apply import Target

    settings = command.settings
    return Target.from_env(settings.data_dir, settings.port, restart, settings.host)


@click.group("update")
def update_group() -> None:
    """Install signed update bundles and see how the last one went."""


@update_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--trial-s",
    default=DEFAULT_TRIAL_S,
    show_default=True,
    help="Seconds the new release has to prove healthy before it is rolled back.",
)
@click.option(
    "--restart",
    type=click.Choice(["systemd", "pidfile", "none"]),
    default=None,
    help="How to restart the service (default $CLINICBOX_UPDATE_RESTART or systemd).",
)
@click.option(
    "--no-confirm",
    is_flag=True,
    help="Switch and restart, but leave the health check to `update confirm`.",
)
@click.option(
    "--during-call",
    is_flag=True,
    help="Install even while a call is live on this box (the restart ends it).",
)
@click.pass_context
def import_command(
    ctx: click.Context,
    path: Path,
    trial_s: float,
    restart: str | None,
    no_confirm: bool,
    during_call: bool,
) -> None:
    """Verify and install a bundle (USB stick or download), then health-check it. Refused
    while a call is live, unless --during-call."""
    from appliance.update.apply import import_bundle

    target = _target(ctx.ensure_object(CommandContext), restart)
    result = import_bundle(
        path, target, trial_s=trial_s, confirm=not no_confirm, during_call=during_call
    )
    click.echo(json.dumps(result, sort_keys=True))
    if result.get("outcome") == "rolled back":
        ctx.exit(1)


@update_group.command("import-downloaded")
@click.option("--restart", type=click.Choice(["systemd", "pidfile", "none"]), default=None)
@click.pass_context
def import_downloaded_command(ctx: click.Context, restart: str | None) -> None:
    """Install the newest bundle the sync agent downloaded, if any (run by a timer after
    hours); health-checked and rolled back as `import` does. While a call is live it installs
    nothing: the status says "deferred: call live" and the timer's next run tries again."""
    from appliance.update.downloaded import import_downloaded

    result = import_downloaded(_target(ctx.ensure_object(CommandContext), restart))
    click.echo(json.dumps(result, sort_keys=True))
    if result.get("outcome") == "rolled back":
        ctx.exit(1)


@update_group.command("import-spool")
@click.option("--restart", type=click.Choice(["systemd", "pidfile", "none"]), default=None)
@pass_command_context
def import_spool_command(command: CommandContext, restart: str | None) -> None:
    """Install what the technician page queued (run as root by clinicbox-update-import.path):
    the same checks, trial and rollback as `import`; each outcome goes to the page's status."""
    from appliance.update.import_spool import run_spool

    for result in run_spool(_target(command, restart)):
        click.echo(json.dumps(result, sort_keys=True))


@update_group.command("confirm")
@click.option("--restart", type=click.Choice(["systemd", "pidfile", "none"]), default=None)
@pass_command_context
def confirm_command(command: CommandContext, restart: str | None) -> None:
    """Commit the release on trial if it is healthy, else roll it back (run by a timer)."""
    from appliance.update.apply import confirm_trial

    click.echo(json.dumps(confirm_trial(_target(command, restart)), sort_keys=True))


@update_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_command_context
def status_command(command: CommandContext, as_json: bool) -> None:
    """Show the running release, the previous one, any trial and the last outcome."""
    from appliance.update.downloaded import download_summary

    target = _target(command)
    doc = update_status(target.root)
    doc["download"] = download_summary(target.data_dir)
    if as_json:
        click.echo(json.dumps(doc, sort_keys=True))
        return
    click.echo(f"current:  {doc['current'] or 'none'}")
    click.echo(f"previous: {doc['previous'] or 'none'}")
    trial = doc["trial"]
    click.echo(
        "trial:    "
        + (
            "none"
            if not trial
            else f"{trial['version']} from {trial['from']}, boots {trial['boots']}, "
            f"until {trial['deadline']}"
            + (f", failed: {trial['failed']}" if trial["failed"] else "")
        )
    )
    last = doc["last"]
    click.echo(
        "last:     "
        + (
            "none"
            if not last
            else f"{last['version']} {last['outcome']} at {last['at']}"
            + (f" ({last['reason']})" if last["reason"] else "")
        )
    )
    click.echo("download: " + _download_text(doc["download"]))


def _download_text(download: dict[str, Any] | None) -> str:
    if not download:
        return "none"
    refused = "; ".join(f"{v} refused: {why}" for v, why in download["refused"].items())
    if not download.get("version"):
        return refused
    size = download["size"] or 0
    text = f"{download['version']} {100 * download['have'] // max(1, size)}% of {size:,} bytes"
    if download["ready"]:
        text += ", ready: installed after hours (or `clinicbox update import-downloaded`)"
    return text + (f"; {refused}" if refused else "")


@click.group("bundle")
def bundle_group() -> None:
    """Cut signed update bundles for boxes."""


@bundle_group.command("keygen")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
def keygen_command(out: Path) -> None:
    """Make a release key (0600) and print its public half for boxes' trusted set."""
    from appliance.update.manifest import public_key_hex

    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    write_private(out, raw.hex().encode() + b"\n")
    click.echo(public_key_hex(key))


@bundle_group.command("build")
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False),
    default=".",
    show_default=True,
    help="The checkout to build from.",
)
@click.option("--version", "version", required=True, help="Release version, e.g. 1.4.2.")
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option(
    "--platform", type=click.Choice(["x86_64", "aarch64"]), default="aarch64", show_default=True
)
@click.option(
    "--wheel-cache",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/var/tmp/clinicbox-wheels"),
    show_default=True,
)
@click.option(
    "--min-from", default="0.0", show_default=True, help="Oldest release this bundle may update."
)
@click.option("--rollback", is_flag=True, help="Sign as a rollback release (may downgrade).")
@click.option(
    "--delta-from",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="An earlier bundle: carry only the wheels it lacks (changed ones as binary patches "
    "where the earlier bundle carries their previous version whole).",
)
@click.option(
    "--whole-wheels",
    is_flag=True,
    help="With --delta-from: send changed wheels whole, never as binary patches.",
)
@click.option(
    "--no-system-files",
    is_flag=True,
    help="Leave the units and firewall script out: with --whole-wheels (or no --delta-from) "
    "the bundle is format 1, which releases from before system files can install.",
)
def build_command(
    source: Path,
    version: str,
    key: Path,
    out: Path,
    platform: str,
    wheel_cache: Path,
    min_from: str,
    rollback: bool,
    delta_from: Path | None,
    whole_wheels: bool,
    no_system_files: bool,
) -> None:
    """Build one signed bundle for a target platform."""
    from appliance.update.build import build_bundle
    from appliance.update.manifest import version_key

    version_key(version)
    report = build_bundle(
        source.resolve(),
        version,
        key,
        out,
        platform,
        wheel_cache,
        min_from=min_from,
        rollback=rollback,
        delta_from=delta_from,
        binary_deltas=not whole_wheels,
        with_system_files=not no_system_files,
    )
    click.echo(json.dumps(report, sort_keys=True))
