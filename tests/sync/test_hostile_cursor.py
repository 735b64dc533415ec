"""The centre answers a cursor too large for its database with a clear 400 (it was a 500).

JSON nested too deep for the claim endpoint is refused in tests/sync/test_bounds.py."""

from __future__ import annotations

import pytest

from sync.agent.transport import HttpClient, Rejected
from sync.protocol.signing import sign_request
from tests.sync.conftest import Box

pytestmark = pytest.mark.timeout(60)


def test_huge_cursor_or_limit_is_refused_with_a_message(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    client = HttpClient(central_sqlite.url, 2, 5, link.tls_pin)
    for query in ("after=" + "9" * 40, "after=-" + "9" * 40, "limit=" + "9" * 5000, "after=x"):
        path = f"/v1/changes?{query}"
        headers = sign_request(box.identity.sign, link.device_id, "GET", path, b"")
        with pytest.raises(Rejected) as refused:
            client.request("GET", path, b"", headers)
        assert refused.value.status == 400, query
        assert "after and limit must be" in str(refused.value)
    path = "/v1/changes?after=0&limit=" + "9" * 400  # a huge limit is only capped
    headers = sign_request(box.identity.sign, link.device_id, "GET", path, b"")
    assert client.request("GET", path, b"", headers).json()["cursor"] == 0

