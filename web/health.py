"""Liveness and trust: `/healthz` for monitors, `/ca.pem` for tablets to trust the box."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from web.app_state import current_box

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    doc = current_box().health()
    response = jsonify(doc)
    response.status_code = 200 if doc["status"] == "ok" else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/ca.pem")
def ca_certificate() -> Response:
    pem = current_box().tls.ca_cert.read_bytes()
    return Response(
        pem,
        mimetype="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="clinicbox-ca.pem"'},
    )
