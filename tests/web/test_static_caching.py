"""Static files are fetched once per release over a slow link: pages link them with a content
version, a request for the current version may be kept a year, and no static answer varies by
the session cookie (which a patient is given halfway through joining)."""

from __future__ import annotations

import re

from flask import Flask

from tests.web.conftest import sign_in

_LINKED = re.compile(r'(?:href|src)="(/static/[^"?]+)\?v=([0-9a-f]{12})"')


def test_pages_link_static_files_by_version_and_those_are_kept(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    linked = _LINKED.findall(page)
    assert linked, "the sign-in page links no versioned static file"
    for path, version in linked:
        answer = client.get(f"{path}?v={version}")
        assert answer.status_code == 200
        control = answer.cache_control
        assert control.immutable and control.public and control.max_age == 365 * 24 * 3600
        assert not control.no_cache


def test_an_unversioned_or_stale_request_is_revalidated(app: Flask) -> None:
    client = app.test_client()
    for query in ("", "?v=000000000000"):
        answer = client.get(f"/static/call.js{query}")
        assert answer.status_code == 200
        assert answer.cache_control.no_cache and not answer.cache_control.immutable


def test_static_answers_do_not_vary_by_cookie(app: Flask) -> None:
    client = app.test_client()
    sign_in(client)  # a session cookie is now sent with every request
    answer = client.get("/static/call.js")
    assert "cookie" not in {value.lower() for value in answer.vary}
    assert "Set-Cookie" not in answer.headers


def test_a_path_outside_the_static_folder_gets_no_version(app: Flask) -> None:
    assert app.test_client().get("/static/../__init__.py?v=000000000000").status_code == 404
