"""Gzip for what a remote patient's join waits on: the portal's static files and the box's
SDP answer.

On an EDGE link (~200 kbps down, 650 ms round trip) the call script alone (29 KB) took 4.7 s
and the SDP answer (~23 KB) 2 s of a patient's join through the relay; gzip makes them a
quarter to a fifth of that. Only these responses are compressed, never pages or other
answers that carry a lasting secret (a CSRF token, a join token) next to text a client
chose: that is what a compression side channel (BREACH) needs. The static files hold no
secret; the SDP answer holds ICE credentials and a DTLS fingerprint that are new for every
peer connection, so there is nothing stable to guess across requests.
"""

from __future__ import annotations

import gzip
from typing import Any

from flask import Flask, request

#: Endpoints whose answers are compressed (when the client accepts gzip).
COMPRESSED_ENDPOINTS = frozenset({"static", "media_api.offer"})
COMPRESSIBLE_TYPES = (
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "image/svg+xml",
)
#: Below this, gzip's header and a round of work buy nothing.
MIN_BYTES = 1024


def _accepts_gzip() -> bool:
    return any(
        part.split(";")[0].strip().lower() == "gzip"
        and part.replace(" ", "").lower() not in ("gzip;q=0", "gzip;q=0.0")
        for part in request.headers.get("Accept-Encoding", "").split(",")
    )


def compress(response: Any) -> Any:
    """`response` gzipped when the request, the endpoint and the content allow it."""
    if request.endpoint not in COMPRESSED_ENDPOINTS:
        return response
    response.vary.add("Accept-Encoding")
    if (
        response.status_code != 200
        or "Content-Encoding" in response.headers
        or response.mimetype not in COMPRESSIBLE_TYPES
        or not _accepts_gzip()
    ):
        return response
    response.direct_passthrough = False  # a static file's stream: read it here
    body = response.get_data()
    if len(body) < MIN_BYTES:
        return response
    response.set_data(gzip.compress(body, compresslevel=6, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response


def init_app(app: Flask) -> None:
    """Compress the chosen answers of `app`."""
    app.after_request(compress)
