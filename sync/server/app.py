"""The centre's HTTP API (Flask) and operator page.

- `GET /v1/ping`: unauthenticated link probe.
- `POST /v1/claim`: JSON claim with a one-time token or an offline voucher.
- `POST /v1/records`: signed request, sealed batch body; answers a signed receipt.
- `GET /v1/changes?after=N`: signed request; signed down-sync changes after cursor N.
- `POST /v1/updates/check`: signed; the box's software report in, the newest release's
  bundles out (`sync.server.update_bundles`).
- `GET /v1/updates/bundles/<sha256>`: signed; a published bundle, with byte ranges.
- `GET /`: operator page (login required): devices, last seen, backlog, records stored.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, jsonify, request, send_file

from sync.protocol import ProtocolError
from sync.protocol.errors import TooLarge
from sync.protocol.messages import COMPACT_RECEIPT, H_RECEIPT, decode_batch
from sync.protocol.signing import H_DEVICE, verify_request
from sync.server.centre import PROTOCOL_VERSION, Centre, Refused
from sync.server.operator_page import init_operator_page
from sync.server.update_bundles import offer, served_file

log = logging.getLogger(__name__)

# A push batch is sealed and compressed: 2 MB of payload travels in far less than this.
MAX_BODY = 16 * 1024 * 1024
MAX_CLAIM_BODY = 16 * 1024


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

    @app.errorhandler(400)
    def _bad_request(exc: Exception) -> tuple[Response, int]:
        return jsonify(error=getattr(exc, "description", None) or "bad request"), 400

    @app.errorhandler(413)
    def _too_big(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error=f"request body larger than {MAX_BODY // (1024 * 1024)} MiB"), 413

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
        raw = request.get_data(cache=False)
        if len(raw) > MAX_CLAIM_BODY:
            raise Refused(413, f"a claim is at most {MAX_CLAIM_BODY // 1024} KiB")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise Refused(400, "the claim is not JSON (or nested too deeply)") from None
        return jsonify(centre.claim(body))

    @app.post("/v1/records")
    def records() -> Response:
        body = request.get_data()
        device_id = authenticate(body)
        try:
            batch = decode_batch(centre.keys.sealing, device_id, body)
        except TooLarge as exc:
            raise Refused(413, str(exc)) from None
        except ProtocolError as exc:
            raise Refused(400, str(exc)) from None
        stored = centre.store(device_id, batch)
        nonce = request.headers["X-CB-Nonce"]
        sent = None
        if request.headers.get(H_RECEIPT) == COMPACT_RECEIPT:
            sent = [(r["id"], r["version"], r["hash"]) for r in batch["records"]]
        return jsonify(centre.receipt(device_id, nonce, stored, sent))

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

    @app.post("/v1/updates/check")
    def update_check() -> Response:
        body = request.get_data()
        if len(body) > MAX_CLAIM_BODY:
            raise Refused(413, f"an update check is at most {MAX_CLAIM_BODY // 1024} KiB")
        device_id = authenticate(body)
        try:
            report = json.loads(body)
        except (ValueError, RecursionError):
            raise Refused(400, "an update check is JSON") from None
        return jsonify(offer(centre, device_id, report))

    @app.get("/v1/updates/bundles/<sha256>")
    def update_bundle(sha256: str) -> Response:
        authenticate(b"")
        path = served_file(centre, sha256)
        # Byte ranges (206, Content-Range) so a box resumes a cut download where it stopped.
        return send_file(
            path, mimetype="application/octet-stream", conditional=True, etag=sha256, max_age=0
        )

    init_operator_page(app, centre)
    return app
