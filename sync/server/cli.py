"""`clinicbox-central`: run and administer the central server."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from appliance.commands.update import bundle_group
from appliance.errors import OperatorError
from sync.server.centre import CHANGE_KINDS, Centre, Refused, default_data_dir

log = logging.getLogger(__name__)


class _OneLineErrors(click.Group):
    """Operator mistakes and refusals end with one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        # Keys, database and session secret are the service user's alone.
        os.umask(0o077)
        try:
            return super().invoke(ctx)
        except (OperatorError, Refused) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_OneLineErrors)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Keys and the SQLite database (env CLINICBOX_CENTRAL_DATA_DIR).")
@click.option("--database", "database_url", default=None,
              help="Database URL, e.g. postgresql+pool://user@/db?host=/run/postgresql "
                   "(env CLINICBOX_CENTRAL_DATABASE; default SQLite in the data dir).")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, database_url: str | None) -> None:
    """ClinicBox central server."""
    ctx.obj = {
        "data_dir": data_dir or default_data_dir(),
        "database": database_url or os.environ.get("CLINICBOX_CENTRAL_DATABASE") or None,
    }


def _centre(ctx: click.Context) -> Centre:
    try:
        return Centre.open(ctx.obj["data_dir"], ctx.obj["database"])
    except Exception as exc:  # noqa: BLE001 - any connect failure is one line for the operator
        raise OperatorError(f"cannot open the centre database: {exc}".splitlines()[0]) from None


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Make the centre's keys and tables (idempotent); print the public keys."""
    centre = _centre(ctx)
    click.echo(json.dumps(centre.public_keys()))


_TLS_CERT_HELP = ("The certificate boxes see when they connect (default: the centre's own, "
                  "made in the data dir; give your TLS proxy's if one terminates TLS).")


def _tls_pin(ctx: click.Context, tls_cert: Path | None) -> str:
    from sync.protocol.pinning import tls_pin_of_pem
    from sync.server.certificate import ensure_centre_certificate

    if tls_cert is None:
        return ensure_centre_certificate(ctx.obj["data_dir"]).pin
    try:
        return tls_pin_of_pem(tls_cert.read_bytes())
    except OSError as exc:
        raise OperatorError(f"cannot read {tls_cert}: {exc.strerror}") from None
    except ValueError:
        raise OperatorError(f"{tls_cert} is not a PEM certificate") from None


@main.command("claim-token")
@click.option("--ttl-hours", type=click.FloatRange(0.01, 24 * 90), default=72.0)
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help=_TLS_CERT_HELP)
@click.pass_context
def claim_token(ctx: click.Context, ttl_hours: float, tls_cert: Path | None) -> None:
    """Print a one-time claim token (SECRET.TLS_PIN.KEY_PIN)."""
    centre = _centre(ctx)  # first: it makes the data dir private
    click.echo(centre.issue_token(ttl_hours, _tls_pin(ctx, tls_cert)))


@main.command("claim-voucher")
@click.option("--ttl-hours", type=click.FloatRange(0.01, 24 * 365), default=24 * 30.0)
@click.option("--central-url", default="", help="https:// URL the box should sync with.")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help=_TLS_CERT_HELP)
@click.pass_context
def claim_voucher(ctx: click.Context, ttl_hours: float, central_url: str,
                  tls_cert: Path | None) -> None:
    """Print an offline claim voucher (token, centre keys, TLS pin, expiry; signed)."""
    if central_url and not central_url.startswith("https://"):
        raise OperatorError("--central-url must start with https:// (boxes refuse plain http)")
    centre = _centre(ctx)  # first: it makes the data dir private
    click.echo(centre.issue_voucher(ttl_hours, _tls_pin(ctx, tls_cert), central_url))


@main.group()
def operator() -> None:
    """Accounts for the operator page (there is no default account)."""


@operator.command("add")
@click.argument("username")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="File holding the password (default: ask twice).")
@click.pass_context
def operator_add(ctx: click.Context, username: str, password_file: Path | None) -> None:
    """Create an operator, or set a new password for an existing one."""
    from sync.server.operators import add_operator

    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise OperatorError(f"cannot read {password_file}: {exc.strerror}") from None
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    centre = _centre(ctx)
    try:
        with centre.db.connection_context():
            name = add_operator(username, password)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    click.echo(f"operator {name!r} can now sign in to the operator page")


@main.group()
def relay() -> None:
    """Which boxes' patient pages the centre relays at https://CENTRE/c/NAME/join."""


@relay.command("add")
@click.argument("device_id")
@click.argument("name")
@click.pass_context
def relay_add(ctx: click.Context, device_id: str, name: str) -> None:
    """Relay a claimed box's patient pages under NAME (its tunnel is then accepted)."""
    from sync.server.clinic_relays import add_relay

    add_relay(_centre(ctx), device_id, name)
    click.echo(f"patients reach this box at /c/{name}/join once its tunnel is up")


@relay.command("remove")
@click.argument("device_id")
@click.pass_context
def relay_remove(ctx: click.Context, device_id: str) -> None:
    """Stop relaying for a box: its tunnel is refused, an open one closes within seconds."""
    from sync.server.clinic_relays import remove_relay

    if not remove_relay(_centre(ctx), device_id):
        raise OperatorError(f"device {device_id[:32]!r} is not relayed")
    click.echo("relay removed")


@relay.command("list")
@click.pass_context
def relay_list(ctx: click.Context) -> None:
    """Relayed boxes, one JSON object a line."""
    from sync.server.clinic_relays import list_relays

    for row in list_relays(_centre(ctx)):
        click.echo(json.dumps(row))


@main.command("import-bundle")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--receipt", "receipt_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Where to write the signed receipt (default PATH.receipt).")
@click.pass_context
def import_bundle(ctx: click.Context, path: Path, receipt_path: Path | None) -> None:
    """Ingest a courier bundle idempotently and write a signed receipt file for the box."""
    from sync.protocol.messages import MAX_BUNDLE_FILE

    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BUNDLE_FILE + 1)
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror}") from None
    receipt, count = _centre(ctx).import_bundle(raw)
    out = receipt_path or path.with_name(path.name + ".receipt")
    out.write_bytes(receipt)
    click.echo(f"stored {count} records; receipt written to {out}")


@main.command()
@click.pass_context
def devices(ctx: click.Context) -> None:
    """List devices: last seen, reported backlog, records stored and the software each last
    reported (one JSON object a line)."""
    from sync.server.update_bundles import releases_by_device

    centre = _centre(ctx)
    releases = releases_by_device(centre)
    for d in centre.devices():
        click.echo(json.dumps({**d, "release": releases.get(d["device_id"])}))


@main.command()
@click.argument("kind", type=click.Choice(CHANGE_KINDS))
@click.argument("key")
@click.argument("body")
@click.option("--device", default=None, help="Only for this device (default: every device).")
@click.pass_context
def publish(ctx: click.Context, kind: str, key: str, body: str, device: str | None) -> None:
    """Sign and publish a down-sync change; BODY is JSON."""
    try:
        value = json.loads(body)
    except ValueError:
        raise OperatorError("BODY must be JSON") from None
    click.echo(_centre(ctx).publish(kind, key, value, device))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8600, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--certfile", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="TLS certificate (default: the centre's own, in the data dir).")
@click.option("--keyfile", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="Its private key.")
@click.option("--public-url", default="",
              help="https:// address patients use for this centre (boxes put it in invite "
                   "links, e.g. https://clinics.example.org).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int, threads: int,
          certfile: Path | None, keyfile: Path | None, public_url: str) -> None:
    """Serve the API over HTTPS: WORKERS forked cheroot processes sharing the port."""
    from sync.server.certificate import ensure_centre_certificate
    from sync.server.workers import PortBusy, serve_forked

    if (certfile is None) != (keyfile is None):
        raise OperatorError("give both --certfile and --keyfile, or neither")
    if public_url and not public_url.startswith("https://"):
        raise OperatorError("--public-url must start with https://")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from sync.server.operator_page import session_secret

    centre = _centre(ctx)  # makes keys, tables and the session key once, before forking
    centre.db.close()
    session_secret(ctx.obj["data_dir"])
    if certfile is None or keyfile is None:
        own = ensure_centre_certificate(ctx.obj["data_dir"])
        certfile, keyfile = own.cert, own.key
    try:
        code = serve_forked(ctx.obj["data_dir"], ctx.obj["database"], host, port, workers,
                            threads, certfile, keyfile, public_url)
    except PortBusy as exc:
        raise OperatorError(str(exc)) from None
    sys.exit(code)



@main.command("turn-config")
@click.option("--public-host", required=True,
              help="Name or address boxes and browsers dial for TURN (the centre's).")
@click.option("--realm", default=None, help="TURN realm (default: the public host).")
@click.option("--port", type=click.IntRange(1, 65535), default=3478, show_default=True,
              help="TURN over UDP and TCP.")
@click.option("--tls-port", type=click.IntRange(1, 65535), default=443, show_default=True,
              help="TURN over TLS (443 passes firewalls that allow only HTTPS).")
@click.option("--listening-ip", default=None, help="Address coturn listens on (default: all).")
@click.option("--min-port", type=click.IntRange(1024, 65535), default=49152, show_default=True)
@click.option("--max-port", type=click.IntRange(1024, 65535), default=65535, show_default=True)
@click.option("--cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="TLS certificate for TURN/TLS (browsers refuse an untrusted "
              "one: use a public CA's, e.g. the centre's Let's Encrypt certificate).")
@click.option("--pkey", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="Its private key.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Where to write turnserver.conf (0600; it holds the secret).")
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Send the relay's URLs and secret to every box (signed down-sync).")
@click.pass_context
def turn_config(ctx: click.Context, public_host: str, realm: str | None, port: int,
                tls_port: int, listening_ip: str | None, min_port: int, max_port: int,
                cert: Path, pkey: Path, output: Path, publish: bool) -> None:
    """Write coturn's config for the centre's TURN relay and tell every box about it."""
    from sync.server.turn_config import (
        CHANGE_KEY,
        CHANGE_KIND,
        TurnListen,
        render_config,
        turn_secret,
        write_config,
    )

    listen = TurnListen(public_host, port, tls_port, listening_ip, min_port, max_port)
    centre = _centre(ctx)
    secret = turn_secret(ctx.obj["data_dir"])
    text = render_config(listen, secret, realm or public_host, cert.resolve(), pkey.resolve())
    try:
        write_config(output, text)
    except OSError as exc:
        raise OperatorError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output}")
    if publish:
        seq = centre.publish(CHANGE_KIND, CHANGE_KEY, {"urls": listen.urls(), "secret": secret})
        click.echo(f"published to every box as change {seq}: {' '.join(listen.urls())}")


@bundle_group.command("publish")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def bundle_publish(ctx: click.Context, path: Path) -> None:
    """Serve a bundle to boxes over sync (boxes check its signature; publish the full bundle
    and deltas of a release: each box downloads the smallest it can use)."""
    from sync.server.update_bundles import publish_bundle

    click.echo(json.dumps(publish_bundle(_centre(ctx), path), sort_keys=True))


@bundle_group.command("published")
@click.pass_context
def bundle_published(ctx: click.Context) -> None:
    """List the bundles the centre serves (one JSON object a line)."""
    from sync.server.update_bundles import published

    for row in published(_centre(ctx)):
        click.echo(json.dumps(row, sort_keys=True))


main.add_command(bundle_group)
