"""The centre's HTTP API (Flask) and operator page.

- `GET /v1/ping`: unauthenticated link probe.
- `POST /v1/claim`: JSON claim with a one-time token or an offline voucher.
- `POST /v1/records`: signed request, sealed batch body; answers a signed receipt.
- `GET /v1/changes?after=N`: signed request; signed down-sync changes after cursor N.
- `GET /`: operator page: devices, last seen, backlog, records stored.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, jsonify, render_template_string, request

from sync.protocol import ProtocolError
from sync.protocol.messages import decode_batch
from sync.protocol.signing import H_DEVICE, verify_request
from sync.server.centre import PROTOCOL_VERSION, Centre, Refused

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024

OPERATOR_PAGE = """<!doctype html><meta charset="utf-8"><title>ClinicBox centre</title>
<h1>ClinicBox centre: devices</h1>
<table border="1" cellpadding="4"><tr><th>device</th><th>last seen (UTC)</th>
<th>backlog per lane</th><th>records stored</th></tr>
{% for d in devices %}<tr><td><code>{{ d.device_id }}</code></td><td>{{ d.last_seen_text }}</td>
<td>{{ d.backlog_text }}</td><td>{{ d.records }}</td></tr>{% endfor %}</table>"""


def create_app(centre: Centre) -> Flask:
    """The centre's WSGI app; each request runs on its own database connection."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.before_request
    def _connect() -> None:
        centre.db.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        if not centre.db.is_closed():
            centre.db.close()

    @app.errorhandler(Refused)
    def _refused(exc: Refused) -> tuple[Response, int]:
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(ProtocolError)
    def _protocol(exc: ProtocolError) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 401

    @app.errorhandler(413)
    def _too_big(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error="request body too large"), 413

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error="no such endpoint"), 404

    @app.errorhandler(405)
    def _bad_method(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error="method not allowed"), 405

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("request failed")
        return jsonify(error="internal error; the batch was not stored"), 500

    def authenticate(body: bytes) -> str:
        device_id = request.headers.get(H_DEVICE, "")
        if not device_id:
            raise Refused(401, "unsigned request")
        key = centre.device_key(device_id)
        path = request.full_path if request.query_string else request.path
        ts, nonce = verify_request(key, request.headers, request.method, path, body)
        centre.remember_nonce(device_id, nonce, ts)
        return device_id

    @app.get("/v1/ping")
    def ping() -> Response:
        return jsonify(ok=True, version=PROTOCOL_VERSION)

    @app.post("/v1/claim")
    def claim() -> Response:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # nesting deep enough to exhaust the parser
            body = None
        return jsonify(centre.claim(body))

    @app.post("/v1/records")
    def records() -> Response:
        body = request.get_data()
        device_id = authenticate(body)
        try:
            batch = decode_batch(centre.keys.sealing, device_id, body)
        except ProtocolError as exc:
            raise Refused(400, str(exc)) from None
        stored = centre.store(device_id, batch)
        nonce = request.headers["X-CB-Nonce"]
        return jsonify(centre.receipt(device_id, nonce, stored))

    @app.get("/v1/changes")
    def changes() -> Response:
        device_id = authenticate(b"")
        try:
            after = int(request.args.get("after", "0"))
            limit = min(500, max(1, int(request.args.get("limit", "200"))))
            if not -(2**63) <= after < 2**63:  # the database's integers are 64-bit
                raise ValueError
        except ValueError:
            raise Refused(400, "after and limit must be integers (64-bit)") from None
        return jsonify(centre.changes(device_id, after, limit))

    @app.get("/")
    def operator_page() -> str:
        devices: list[dict[str, Any]] = []
        for d in centre.devices():
            seen = d["last_seen"]
            d["last_seen_text"] = (
                "never" if seen is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seen))
            )
            d["backlog_text"] = (
                ", ".join(f"{k} {v}" for k, v in (d["backlog"] or {}).get("lanes", {}).items())
                or "-"
            )
            devices.append(d)
        return render_template_string(OPERATOR_PAGE, devices=devices)

    return app
