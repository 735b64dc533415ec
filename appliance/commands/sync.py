"""Box-side sync commands: `clinicbox sync status|run`, `export-bundle`, `import-receipts`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import click

from appliance.commands.context import CommandContext, pass_command_context
from appliance.config import Settings
from appliance.errors import OperatorError
from appliance.identity import DeviceIdentity
from sync.agent.agent import SyncAgent
from sync.agent.claim import CentralLink, load_link
from sync.agent.status import SyncStatus
from sync.protocol import ProtocolError
from sync.protocol.messages import (
    BUNDLE_PAYLOAD_BYTES,
    MAX_RECEIPT_FILE,
    MAX_RECORDS,
    RECEIPT_FORMAT,
    encode_batch,
    make_bundle,
    verify_receipt,
)


def _linked(settings: Settings) -> CentralLink:
    link = load_link(settings.data_dir)
    if link is None:
        raise OperatorError("the box is not claimed for a centre yet (or its voucher was never "
                            "presented): claim it first")
    return link


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@click.group("sync")
def sync_group() -> None:
    """Store-and-forward sync with the central server."""


@sync_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@pass_command_context
def status_command(command: CommandContext, as_json: bool) -> None:
    """Queued records per lane, oldest undelivered age, last success/error, bytes today."""
    from appliance.store.outbox import Outbox

    settings = command.settings
    store = command.open_store()
    try:
        stats = Outbox(store).stats()
    finally:
        store.close()
    status = SyncStatus.load(settings.data_dir)
    link = load_link(settings.data_dir)
    report = {
        "central_url": link.central_url if link else None,
        "device_id": link.device_id if link else None,
        "queued": stats["lanes"],
        "oldest_undelivered_age_s": stats["oldest_undelivered_age_s"],
        "delivered": stats["delivered"],
        "last_success_at": status.last_success_at,
        "last_error": status.last_error,
        "last_error_at": status.last_error_at,
        "bytes_today": status.used_today(),
        "paused": status.paused,
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"centre: {report['central_url'] or 'not claimed'}")
    click.echo("queued: " + ", ".join(f"{k} {v}" for k, v in stats["lanes"].items()))
    oldest = stats["oldest_undelivered_age_s"]
    click.echo(f"oldest undelivered: {'none' if oldest is None else f'{oldest:.0f} s'}")
    click.echo(f"last success: {_age(status.last_success_at)}")
    click.echo(f"last error: {status.last_error or 'none'}"
               + (f" ({_age(status.last_error_at)})" if status.last_error_at else ""))
    click.echo(f"bytes today: {status.used_today()}")


@sync_group.command("run")
@pass_command_context
def run_command(command: CommandContext) -> None:
    """Run only the sync agent in the foreground until SIGTERM (`clinicbox serve` runs it too)."""
    settings = command.settings
    store = command.open_store()
    identity = DeviceIdentity.load_or_create(settings.secrets_dir)
    agent = SyncAgent(store, settings.data_dir, identity)

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        agent.start(loop)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await agent.stop()

    try:
        asyncio.run(_main())
    finally:
        agent.status.save(settings.data_dir)
        store.close()


@click.command("export-bundle")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@pass_command_context
def export_bundle_command(command: CommandContext, path: Path) -> None:
    """Write a sealed, signed courier bundle of undelivered records to PATH.

    A bundle holds at most 32 MiB of records (the centre refuses more); what does not fit
    stays queued for the next bundle, once the receipt for this one is imported.
    """
    from appliance.store.outbox import Outbox

    settings = command.settings
    link = _linked(settings)
    identity = DeviceIdentity.load_or_create(settings.secrets_dir)
    store = command.open_store()
    try:
        outbox = Outbox(store)
        items = outbox.lease(BUNDLE_PAYLOAD_BYTES, MAX_RECORDS, lease_seconds=60)
        left = sum(outbox.stats()["lanes"].values()) - len(items)
        try:
            plaintext = encode_batch(link.device_id, items, outbox.stats())
            bundle_id = os.urandom(12).hex()
            raw = make_bundle(identity.sign, link.sealing_key, link.device_id, bundle_id,
                              plaintext, len(items))
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, path)
        finally:
            # The records stay undelivered until a receipt comes back, by link or by courier.
            outbox.release([i.entry_id for i in items], None, 0.0)
    except OSError as exc:
        raise OperatorError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        store.close()
    click.echo(f"wrote {len(items)} records to {path} (bundle {bundle_id})")
    if left > 0:
        click.echo(f"{left} records did not fit: import this bundle's receipt, then export "
                   "again")


@click.command("import-receipts")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@pass_command_context
def import_receipts_command(command: CommandContext, path: Path) -> None:
    """Apply a receipt file the centre wrote for a courier bundle."""
    from appliance.store.outbox import Outbox

    settings = command.settings
    link = _linked(settings)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RECEIPT_FILE + 1)
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_RECEIPT_FILE:
        raise OperatorError(f"{path} is larger than any receipt file "
                            f"({MAX_RECEIPT_FILE // (1024 * 1024)} MiB): not a receipt")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise OperatorError(f"{path} is not a ClinicBox receipt file") from None
    if not isinstance(data, dict) or data.get("format") != RECEIPT_FORMAT:
        raise OperatorError(f"{path} is not a ClinicBox receipt file")
    envelope = data.get("receipt")
    ref = envelope.get("document", {}).get("ref", "") if isinstance(envelope, dict) else ""
    try:
        stored = verify_receipt(link.signing_key, envelope, link.device_id, ref)
    except ProtocolError as exc:
        raise OperatorError(f"receipt refused: {exc}") from None
    store = command.open_store()
    try:
        count = Outbox(store).acknowledge(stored)
    finally:
        store.close()
    click.echo(f"{count} records marked delivered ({len(stored)} listed in the receipt)")
