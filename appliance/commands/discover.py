"""`clinicbox discover`: the technician's list of boxes on the LAN."""

from __future__ import annotations

import asyncio
import json

import click

from appliance.discovery.browse import browse


@click.command("discover")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.5, 60.0), default=3.0,
              show_default=True, help="Seconds to listen for adverts.")
def discover_command(as_json: bool, timeout_s: float) -> None:
    """List every ClinicBox advertising on this LAN: address, state, version, fingerprint."""
    boxes = asyncio.run(browse(timeout_s))
    if as_json:
        click.echo(json.dumps([b.as_dict() for b in boxes], indent=2))
        return
    if not boxes:
        click.echo(f"no ClinicBox found within {timeout_s:g} s (see docs/technician-guide.md)")
        return
    click.echo(f"{'ADDRESS':<22} {'STATE':<10} {'VERSION':<9} {'FINGERPRINT':<17} NAME")
    for b in boxes:
        address = f"{b.addresses[0]}:{b.port}" if b.addresses else "?"
        click.echo(f"{address:<22} {b.state:<10} {b.version:<9} {b.fingerprint:<17} {b.name}")
