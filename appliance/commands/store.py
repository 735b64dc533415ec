"""Operator commands for the record store: `keys rotate|status`, `wipe`, `audit verify`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.commands.context import CommandContext, pass_command_context
from appliance.errors import OperatorError
from appliance.store.keyring import StoreLockedError
from appliance.store.store import Store

_PASSPHRASE_FILE = click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the store passphrase (default: $CLINICBOX_STORE_PASSPHRASE_FILE, "
    "$CLINICBOX_STORE_PASSPHRASE, else device-secret mode).",
)


def _read_passphrase(path: Path) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise StoreLockedError(f"cannot read passphrase file {path} ({exc.strerror})") from None


def _open(command: CommandContext, passphrase_file: Path | None) -> Store:
    if passphrase_file is not None:
        return command.open_store(_read_passphrase(passphrase_file))
    return command.open_store()


@click.group("keys")
def keys_group() -> None:
    """Manage the record store's encryption keys."""


@keys_group.command("status")
@_PASSPHRASE_FILE
@pass_command_context
def keys_status(command: CommandContext, passphrase_file: Path | None) -> None:
    """Show the key mode, the active data key and rows still under older keys."""
    from appliance.store.rotation import stale_rows

    store = _open(command, passphrase_file)
    try:
        keyring = store.keyring
        click.echo(f"mode: {keyring.mode}")
        click.echo(f"active data key: {keyring.active_id}")
        click.echo(f"data keys in keys file: {', '.join(map(str, keyring.key_ids))}")
        stale = stale_rows(store)
        click.echo(f"rows under older keys: {stale}")
        if len(keyring.key_ids) > 1:
            click.echo("a rotation is unfinished: run `clinicbox keys rotate` to finish it")
    finally:
        store.close()


@keys_group.command("rotate")
@_PASSPHRASE_FILE
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Rows re-encrypted per transaction.")
@click.option("--pause-ms", type=click.IntRange(0, 10_000), default=20, show_default=True,
              help="Pause between batches, letting the serving box write.")
@pass_command_context
def keys_rotate(
    command: CommandContext, passphrase_file: Path | None, batch_size: int, pause_ms: int
) -> None:
    """Make a new data key and re-encrypt every record with it (safe while serving).

    An interrupted rotation resumes where it stopped when run again.
    """
    from appliance.store.rotation import rotate

    store = _open(command, passphrase_file)
    try:
        if len(store.keyring.key_ids) > 1:
            click.echo(f"resuming the unfinished rotation to key {store.keyring.active_id}")

        def _progress(done: int) -> None:
            click.echo(f"re-encrypted {done} rows")

        report = rotate(store, batch_size=batch_size, pause_s=pause_ms / 1000,
                        progress=_progress)
    finally:
        store.close()
    retired = ", ".join(map(str, report.retired)) or "none"
    click.echo(
        f"rotation complete: active data key {report.key_id}, {report.rows} rows "
        f"re-encrypted, retired keys: {retired}"
    )


@keys_group.command("passphrase")
@_PASSPHRASE_FILE
@click.option("--new-passphrase-file", type=click.Path(path_type=Path, dir_okay=False),
              help="File holding the new passphrase (at least 12 characters).")
@click.option("--device", "to_device", is_flag=True,
              help="Drop the passphrase: protect the keys with the device secret again.")
@pass_command_context
def keys_passphrase(
    command: CommandContext, passphrase_file: Path | None, new_passphrase_file: Path | None,
    to_device: bool,
) -> None:
    """Set, change or remove the store passphrase (re-wraps the keys; records untouched).

    Stop `clinicbox serve` first.
    """
    if to_device == (new_passphrase_file is not None):
        raise OperatorError("give exactly one of --new-passphrase-file or --device")
    new = None if new_passphrase_file is None else _read_passphrase(new_passphrase_file)
    store = _open(command, passphrase_file)
    try:
        store.lock_exclusive()
        store.keyring.rewrap(new)
        store.audit("system", "keys.rewrap", f"mode/{store.keyring.mode}")
    finally:
        store.close()
    click.echo(f"store keys re-wrapped: {store.keyring.mode} mode")


@click.command("wipe")
@click.option("--yes", is_flag=True, help="Confirm: destroy every record on this box.")
@pass_command_context
def wipe_command(command: CommandContext, yes: bool) -> None:
    """Crypto-shred the record store: destroy its keys, then delete the database.

    Records not yet delivered to the centre are lost. Stop `clinicbox serve` first.
    """
    from appliance.store.wipe import wipe

    if not yes:
        raise OperatorError("wipe destroys every record on this box; add --yes to confirm")
    refused: list[str] = []
    removed = wipe(command.settings, refused)
    for line in refused:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"record store wiped: keys destroyed, {len(removed)} files removed")


@click.group("audit")
def audit_group() -> None:
    """Check the audit log."""


@audit_group.command("verify")
@_PASSPHRASE_FILE
@pass_command_context
def audit_verify(command: CommandContext, passphrase_file: Path | None) -> None:
    """Verify the audit log's hash chain; exit 1 naming the first broken link."""
    from appliance.store.audit import verify

    store = _open(command, passphrase_file)
    try:
        report = verify(store.db)
        quarantined = [f"{q.record_type}/{q.record_id}" for q in store.Quarantine.select()]
    finally:
        store.close()
    if quarantined:
        # Records that failed their integrity check; ids only.
        click.echo(f"quarantined records ({len(quarantined)}): {', '.join(quarantined[:20])}")
    if report.ok:
        click.echo(f"audit log intact: {report.checked} entries verified")
        return
    click.echo(
        f"audit log broken at entry {report.broken_id}: {report.reason} "
        f"({report.checked} entries before it verified)"
    )
    sys.exit(1)
