"""Hostile inputs: every route of the box's portal and of the centre, fed what an attacker sends.

The box's app runs in-process (real store, real media loop) and is driven with Flask's test
client as an anonymous visitor, a patient who joined a session, a clinician, an admin and a
technician; the centre (`clinicbox-central serve`, a real process on SQLite) is driven over
HTTP anonymously and as a claimed box signing its requests. Each route and method gets:
hostile path parameters (non-ASCII, huge, NUL, bidi overrides, path traversal, huge numbers),
the same values in every known query and form field, wrong JSON shapes (deeply nested,
lists, numbers, wrong field types) and missing fields. Counted: responses by class, 5xx and
tracebacks in the logs (the box logs `unhandled ...` for what became a 500). The
authorization matrix (tests/web/authz_matrix.py: every route x eight kinds of visitor) runs too.

    python benchmarks/hostile_inputs.py [--quick]

Last line: one JSON object with routes, inputs_tried, status_5xx, tracebacks,
authz_matrix_cells and authz_failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

PASSWORD = "hostile inputs benchmark"
VENV_BIN = Path(sys.executable).parent
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_FIELD = re.compile(r'name="([a-z_]+)"')
# Keys read from query strings and JSON bodies that no template names.
EXTRA_FIELDS = ("next", "reason", "after", "limit", "token", "sdp", "type", "resume", "choice")


def hostile_values(quick: bool) -> list[tuple[str, str]]:
    values = [
        ("non-ascii", "é漢字🙂ı"),
        ("huge", "A" * 20_000),
        ("bidi", "Ana\u202egnp.exe\u2066x\u2069"),
        ("nul", "a\x00b"),
        ("traversal", "../../../../etc/passwd"),
        ("huge-int", "9" * 40),
        ("negative", "-1"),
        ("empty", ""),
        ("markup", '"><script>alert(1)</script>'),
    ]
    return values[:4] if quick else values


def json_bodies(fields: list[str], quick: bool) -> list[tuple[str, str]]:
    bodies = [
        ("nested", "[" * 20_000 + "]" * 20_000),
        ("list", json.dumps([1, "x", None])),
        ("wrong-types", json.dumps({f: [{"a": 1}] for f in fields})),
    ]
    if not quick:
        bodies += [
            ("number", "12345678901234567890123"),
            ("numbers", json.dumps({f: 10**30 for f in fields})),
            ("nested-object", '{"a":' * 5_000 + "1" + "}" * 5_000),
            ("not-json", "{'token': "),
        ]
    return bodies


class LogCounter(logging.Handler):
    """Counts error records and tracebacks logged while requests run."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[str] = []
        self.tracebacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.tracebacks += 1
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage()[:200])


class Tally:
    """What was sent and what came back, per route."""

    def __init__(self) -> None:
        self.tried = 0
        self.classes: Counter[str] = Counter()
        self.server_errors: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        # (seconds, route, what) of the slowest answers: a hang shows here.
        self.slowest: list[tuple[float, str, str]] = []
        self._since = time.perf_counter()

    def start(self) -> None:
        """Mark the moment the next request is sent (its time is taken in `add`)."""
        self._since = time.perf_counter()

    def add(self, route: str, status: int, what: str) -> None:
        took = time.perf_counter() - self._since
        self.slowest = sorted([*self.slowest, (took, route, what)], reverse=True)[:3]
        self.tried += 1
        self.classes[f"{status // 100}xx"] += 1
        if status >= 500:
            self.server_errors[route] += 1
            self.examples.setdefault(route, f"{status} for {what}")


# --- the box -----------------------------------------------------------------------------
def _csrf(client: FlaskClient, path: str) -> str:
    match = _CSRF.search(client.get(path).get_data(as_text=True))
    return match.group(1) if match else ""


@contextmanager
def running_box(data_dir: Path) -> Iterator[tuple[Any, Flask]]:
    """The box the authorization matrix builds, served as in production (not TESTING), with a
    clinician, an admin and a technician."""
    from appliance.accounts import create_user
    from tests.web.authz_matrix import matrix_box
    from web import create_app

    with matrix_box(data_dir) as box:
        app = create_app(box, {"TESTING": False})
        for name, role in (
            ("dr.ada", "clinician"), ("ad.min", "admin"), ("tech.tom", "technician")
        ):
            create_user(box.store, name, PASSWORD, role)
        yield box, app


class Identity:
    """One kind of visitor: a test client that can sign in again if a request signed it out."""

    def __init__(self, app: Flask, name: str, username: str | None) -> None:
        self.app, self.name, self.username = app, name, username
        self.client = app.test_client()
        self.csrf = ""

    def sign_in(self) -> None:
        if self.username is None:
            self.csrf = _csrf(self.client, "/join")
            return
        token = _csrf(self.client, "/login")
        self.client.post(
            "/login", data={"username": self.username, "password": PASSWORD, "csrf_token": token}
        )
        self.csrf = _csrf(self.client, "/join")

    def still_signed_in(self) -> bool:
        if self.username is None:
            return True
        return self.client.get("/dashboard").status_code == 200


def _patient(app: Flask, clinician: Identity) -> tuple[Identity, dict[str, str]]:
    """A session starting now, a patient who joined it, and real ids for path parameters."""
    client = clinician.client
    token = _csrf(client, "/sessions/new")
    starts = (datetime.now() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    reply = client.post(
        "/sessions/new",
        data={
            "csrf_token": token,
            "title": "Hostile inputs group",
            "starts_at": starts,
            "facilitator": "1",
            "capacity": "16",
            "keep_chat": "yes",
        },
    )
    session_url = reply.headers["Location"]
    page = client.get(session_url).get_data(as_text=True)
    code = re.search(r'id="session-code">([\d ]+)<', page).group(1).replace(" ", "")
    invite = re.search(r'id="invite-link" href="[^"]*/i/([\w-]+)"', page).group(1)
    patient = Identity(app, "patient", None)
    token = _csrf(patient.client, "/join")
    patient.client.post(
        "/join/consent", data={"csrf_token": token, "code": code, "name": "Pat", "agree": "yes"}
    )
    patient.csrf = token
    box = app.extensions["clinicbox"]
    person = box.store.Patient.select().first()
    real = {
        "session_id": session_url.rsplit("/", 1)[1],
        "patient_id": str(person.id),
        "code": "phq9",
        "token": invite,
        "filename": "call.js",
    }
    return patient, real


def _fields(app: Flask) -> list[str]:
    names: set[str] = set(EXTRA_FIELDS)
    for template in (Path(app.root_path) / (app.template_folder or "templates")).glob("*.html"):
        names.update(_FIELD.findall(template.read_text()))
    names.discard("csrf_token")
    return sorted(names)


def _path(rule: Any, real: dict[str, str], hostile: tuple[str, str] | None) -> str:
    """The rule's path with real ids, and `hostile` in its first parameter when given."""
    path = rule.rule
    for n, arg in enumerate(sorted(rule.arguments)):
        value = real.get(arg, "x")
        if hostile is not None and n == 0:
            value = urllib.request.quote(hostile[1][:4000], safe="")
        path = path.replace(f"<{arg}>", value).replace(f"<path:{arg}>", value)
    return path


def walk_box(app: Flask, quick: bool, tally: Tally, logs: LogCounter) -> int:
    """Every route x method x identity x input; returns how many routes."""
    clinician = Identity(app, "clinician", "dr.ada")
    clinician.sign_in()
    patient, real = _patient(app, clinician)
    identities = [
        Identity(app, "anonymous", None),
        patient,
        clinician,
        Identity(app, "admin", "ad.min"),
        Identity(app, "technician", "tech.tom"),
    ]
    for identity in identities:
        if identity is not patient and identity is not clinician:
            identity.sign_in()
    fields = _fields(app)
    values = hostile_values(quick)
    routes = [r for r in app.url_map.iter_rules()]
    for rule in routes:
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        for method in methods:
            for identity in identities:
                if rule.endpoint == "auth.logout" and identity.username is not None:
                    continue  # signing out would make the rest of the walk anonymous
                _walk_route(identity, rule, method, real, fields, values, quick, tally)
                if not identity.still_signed_in():
                    identity.sign_in()
    return len(routes)


def _walk_route(
    identity: Identity,
    rule: Any,
    method: str,
    real: dict[str, str],
    fields: list[str],
    values: list[tuple[str, str]],
    quick: bool,
    tally: Tally,
) -> None:
    client = identity.client
    route = f"box {method} {rule.rule}"
    plain_send: Callable[..., Any] = client.get if method == "GET" else client.post

    def send(*args: Any, **kwargs: Any) -> Any:
        tally.start()
        return plain_send(*args, **kwargs)

    headers = {"X-CSRF-Token": identity.csrf}
    who = identity.name

    def tried(status: int, what: str) -> None:
        tally.add(route, status, f"{who}: {what}")

    if rule.arguments:
        for label, value in values:
            tried(
                send(_path(rule, real, (label, value)), headers=headers).status_code,
                f"path {label}",
            )
    path = _path(rule, real, None)
    tried(send(path, headers=headers).status_code, "nothing (missing fields)")
    for label, value in values:
        query = urllib.parse.urlencode({f: value[:2000] for f in fields})
        tried(send(f"{path}?{query}", headers=headers).status_code, f"query {label}")
        if method == "POST":
            form = {f: value for f in fields}
            tried(
                send(path, data={**form, "csrf_token": identity.csrf}).status_code, f"form {label}"
            )
    if method == "POST":
        bodies = json_bodies(fields, quick)
        bodies += [
            (f"fields {label}", json.dumps({f: value for f in fields})) for label, value in values
        ]
        for label, body in bodies:
            tally.start()
            reply = client.post(
                path,
                data=body,
                content_type="application/json",
                headers={**headers, "Accept": "application/json"},
            )
            tried(reply.status_code, f"json {label}")


# --- the centre --------------------------------------------------------------------------
class CentreProcess:
    """`clinicbox-central serve` on SQLite, on a free port, with its stderr kept."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.args = [str(VENV_BIN / "clinicbox-central"), "--data-dir", str(data_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
        self.env = env
        self.stderr_path = data_dir.parent / "centre.log"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [*self.args, "serve", "--port", "0", "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            self.stop()
            raise RuntimeError(f"the centre did not start: {line!r}")
        self.url = line.split("serving on ")[1].split()[0].rstrip("/")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*self.args, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def tracebacks(self) -> int:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace").count("Traceback")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._stderr.close()


def _centre_rules(data_dir: Path) -> list[Any]:
    from sync.server.app import create_app
    from sync.server.centre import Centre

    return list(create_app(Centre.open(data_dir)).url_map.iter_rules())


# An attacker does not check the centre's certificate: the walk talks TLS and nothing more.
_ANY_CERTIFICATE = ssl.create_default_context()
_ANY_CERTIFICATE.check_hostname = False
_ANY_CERTIFICATE.verify_mode = ssl.CERT_NONE


def _http(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20, context=_ANY_CERTIFICATE) as reply:
            reply.read()
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        print(f"  centre {method} {url[:80]}: no answer ({type(exc).__name__})")
        return 599


def walk_centre(work: Path, quick: bool, tally: Tally) -> tuple[int, int]:
    """Every centre route, anonymous and signed by a claimed box; returns (routes, tracebacks)."""
    from appliance.identity import DeviceIdentity
    from sync.agent.claim import claim_box
    from sync.protocol.signing import sign_request

    centre = CentreProcess(work / "centre")
    try:
        rules = _centre_rules(work / "centre-routes")
        secrets = work / "device"
        secrets.mkdir(mode=0o700)
        identity = DeviceIdentity.load_or_create(secrets)
        claimed = claim_box(centre.url, centre.cli("claim-token"), identity)
        fields = ["after", "limit", "token", "voucher", "device_id", "public_key"]
        values = hostile_values(quick)
        for rule in rules:
            if rule.endpoint == "static":
                continue
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                route = f"centre {method} {rule.rule}"
                for signed in (False, True):
                    who = "signed box" if signed else "anonymous"

                    def send(
                        path: str,
                        body: bytes | None,
                        what: str,
                        signed: bool = signed,
                        method: str = method,
                        route: str = route,
                        who: str = who,
                    ) -> None:
                        headers = {"Content-Type": "application/json"}
                        if signed:
                            headers.update(
                                sign_request(
                                    identity.sign, claimed.device_id, method, path, body or b""
                                )
                            )
                        tally.start()
                        status = _http(centre.url + path, method, body, headers)
                        tally.add(route, status, f"{who}: {what}")

                    send(rule.rule, b"" if method == "POST" else None, "nothing")
                    for label, value in values:
                        query = urllib.parse.urlencode({f: value[:2000] for f in fields})
                        send(
                            f"{rule.rule}?{query}",
                            b"" if method == "POST" else None,
                            f"query {label}",
                        )
                        if method == "POST":
                            body = json.dumps({f: value for f in fields}).encode()
                            send(rule.rule, body, f"json fields {label}")
                            send(rule.rule, value.encode(), f"raw body {label}")
                    if method == "POST":
                        for label, body_text in json_bodies(fields, quick):
                            send(rule.rule, body_text.encode(), f"json {label}")
        return len([r for r in rules if r.endpoint != "static"]), centre.tracebacks()
    finally:
        centre.stop()


# --- the authorization matrix ---------------------------------------------------------------
def run_authz_matrix() -> tuple[int, int, str]:
    """(cells checked, failures, what ran): the route x visitor walk in tests/web."""
    from tests.web.authz_matrix import run_walk

    cells, failures = run_walk()
    for line in failures:
        print(f"  authz: {line}")
    return cells, len(failures), "tests.web.authz_matrix.run_walk()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer hostile values (~1 min)")
    args = parser.parse_args()
    logs = LogCounter()
    logging.getLogger().addHandler(logs)
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("peewee", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(tmp)
        with running_box(work / "box") as (_box, app):
            app.logger.addHandler(logs)
            box_routes = walk_box(app, args.quick, tally, logs)
        box_tried = tally.tried
        print(
            f"box: {box_routes} routes, {box_tried} requests in {time.monotonic() - started:.0f} s"
        )
        centre_routes, centre_tracebacks = walk_centre(work, args.quick, tally)
        print(f"centre: {centre_routes} routes, {tally.tried - box_tried} requests")
    cells, failures, how = run_authz_matrix()
    print(f"responses by class: {dict(sorted(tally.classes.items()))}")
    if tally.server_errors:
        print("5xx by route (first example):")
        for route, count in tally.server_errors.most_common():
            print(f"  {count:5d}  {route}  e.g. {tally.examples[route]}")
    else:
        print("no 5xx")
    box_errors = Counter(e.split(" on ")[0] for e in logs.errors)
    if box_errors:
        print(f"box error log lines: {dict(box_errors)}")
    print(f"tracebacks: box {logs.tracebacks}, centre {centre_tracebacks}")
    for took, route, what in tally.slowest:
        print(f"slowest: {took * 1000:.0f} ms  {route}  ({what})")
    print(f"authorization matrix: {how}")
    print(f"took {time.monotonic() - started:.0f} s")
    print(
        json.dumps(
            {
                "routes": box_routes + centre_routes,
                "inputs_tried": tally.tried,
                "status_5xx": sum(tally.server_errors.values()),
                "tracebacks": logs.tracebacks + centre_tracebacks,
                "authz_matrix_cells": cells,
                "authz_failures": failures,
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
