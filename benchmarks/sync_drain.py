"""Drain questionnaire-sized records to a real centre over a cut-prone link; measure ingest.

Part 1 (drain): a box with N PHQ-9 responses drains them with the real agent process
(`clinicbox sync run`) to a real `clinicbox-central` (SQLite, 2 workers). With the weak-link
lab (root) the centre sits behind the lab's EDGE profile (260 kbps up, 325 ms, 1% loss) and
the link is cut for 10 s every 60 s; without it, plain loopback with the same cuts applied by
stopping nothing (no cut possible) is reported as `link: "loopback"`.

Part 2 (ingest): the centre on a real PostgreSQL (initdb/pg_ctl, run as `nobody`) with 4
workers; 4 client threads push pre-sealed, signed batches of 500 records; records/s.

    python benchmarks/sync_drain.py [--quick] [--drain-only]

In the lab, where the drain's time went is printed too: the emulated uplink's delivered bytes
are sampled every 0.1 s, and the box namespace's TCP counters (`nstat`: connections opened,
segments sent and retransmitted) are read before and after. `--drain-only` skips part 2;
`CLINICBOX_SYNC_*` variables given to the benchmark reach the agent (to compare settings);
`--box-cc bbr` gives the box's namespace another TCP congestion control than the Pi's cubic.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config import Settings  # noqa: E402
from appliance.identity import DeviceIdentity  # noqa: E402
from sync.agent.claim import CentralLink, claim_box, save_link  # noqa: E402
from sync.agent.transport import HttpClient  # noqa: E402
from sync.protocol.messages import encode_batch, seal_batch  # noqa: E402
from sync.protocol.signing import sign_request  # noqa: E402

BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
EDGE_UP_BPS = 260_000 / 8


def clinic_uplink(profile):
    """`profile` as the clinic's own link: the lab shapes a host's "down" on the way from the
    LAN to that host, so with the centre as the linked host the box's uploads would get the
    profile's downlink rate. Swapped, batches travel at the uplink rate (EDGE: 260 kbps, the
    capacity the goodput ratio divides by) and receipts at the downlink rate (200 kbps)."""
    steps = tuple(replace(s, down=s.up, up=s.down) for s in profile.steps)
    return replace(profile, name=f"{profile.name}-clinic", steps=steps)


AGENT_WITH_CC = """
import socket, sys
_connect = socket.socket.connect
def connect(self, address):
    if self.type == socket.SOCK_STREAM and self.family in (socket.AF_INET, socket.AF_INET6):
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"{cc}")
    return _connect(self, address)
socket.socket.connect = connect
from appliance.commands.main import main
sys.argv[0] = "clinicbox"
main()
"""


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    e.update(extra)
    return e


def start_central(data_dir, database, workers, host="127.0.0.1", wrap=None):
    args = [str(BIN / "clinicbox-central"), "--data-dir", str(data_dir)]
    if database:
        args += ["--database", database]
    argv = [*args, "serve", "--host", host, "--port", "0", "--workers", str(workers)]
    proc = (wrap(argv) if wrap else subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, env=env(), start_new_session=True))
    line = proc.stdout.readline()
    if "serving on" not in line:
        raise SystemExit(f"central did not start: {line!r}")
    return proc, line.split("serving on ")[1].split()[0].rstrip("/"), args


def token(args):
    return subprocess.run([*args, "claim-token"], capture_output=True, text=True, env=env(),
                          check=True).stdout.strip()


def make_box(data_dir, n):
    from appliance.store import open_store

    settings = Settings(data_dir=data_dir)
    (data_dir / "secrets").mkdir(parents=True, mode=0o700)
    identity = DeviceIdentity.load_or_create(data_dir / "secrets")
    store = open_store(settings)
    plaintext = 0
    try:
        with store.transaction():
            patient = store.Patient.create(display_name="Benchmark patient")
            for i in range(n):
                store.QuestionnaireResponse.create(
                    patient=patient, kind="PHQ9", items=[(i + k) % 4 for k in range(9)],
                    score=(i * 7) % 28, severity=["none", "mild", "moderate", "severe"][i % 4],
                )
        from appliance.store.outbox import Outbox

        items = Outbox(store).lease(1 << 40, n + 10, lease_seconds=0.001)
        plaintext = sum(len(i.payload) for i in items) / max(1, len(items))
        time.sleep(0.01)
    finally:
        store.close()
    return identity, plaintext


def tcp_counters(lab, host):
    """The host namespace's kernel TCP counters (absolute values, `nstat -az`)."""
    out = lab.run(host, ["nstat", "-asz", "--json"]).stdout
    counters = json.loads(out).get("kernel", {})
    return {k: counters.get(k, 0) for k in ("TcpActiveOpens", "TcpOutSegs", "TcpRetransSegs",
                                            "TcpExtTCPLostRetransmit", "TcpExtTCPTimeouts",
                                            "TcpExtTCPLossProbes")}


class UplinkSampler(threading.Thread):
    """Samples the emulated uplink's delivered bytes every 0.1 s (time from the agent's
    start): where the link carried data and where it stood idle."""

    def __init__(self, lab, link_name):
        super().__init__(daemon=True)
        self.lab, self.link_name = lab, link_name
        self.samples: list[tuple[float, int]] = []
        self.started = time.monotonic()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            try:
                # The centre's link: its "down" is the box's upload.
                got = self.lab.stats()["links"][self.link_name]["down"]["delivered_bytes"]
            except Exception:  # noqa: BLE001 - a missed sample is only a gap
                continue
            self.samples.append((time.monotonic() - self.started, got))


def where_time_went(samples, seconds, rate_bytes_s, first_stored_s):
    """Split the drain's seconds: before the first byte of a batch reached the centre, the
    seconds the uplink carried frames (at its rate), and idle time after the first batch."""
    if not samples:
        return {}
    base = samples[0][1]
    # The first frames on the link (the TCP and TLS handshakes): the agent process is up.
    first_frame = next((t for t, b in samples if b > base), None)
    first = next((t for t, b in samples if b - base > 4000), None)  # past the handshakes
    # Busy time is what the frames delivered would take at the link's rate; idle is the rest.
    total_bytes = samples[-1][1] - base
    busy = total_bytes / rate_bytes_s
    per_second = []
    for start in range(int(seconds) + 1):
        inside = [b for t, b in samples if start <= t < start + 1]
        if len(inside) > 1:
            per_second.append(round((inside[-1] - inside[0]) / rate_bytes_s, 2))
    return {"first_frame_s": round(first_frame, 2) if first_frame is not None else None,
            "first_batch_bytes_s": round(first, 2) if first is not None else None,
            "first_stored_s": first_stored_s, "link_busy_s": round(busy, 1),
            "link_idle_s": round(seconds - busy, 1), "utilisation_per_s": per_second}


def drain(quick, box_cc="cubic"):
    n = 1000 if quick else 10_000
    period, cut_s = (20, 4) if quick else (60, 10)
    work = Path(tempfile.mkdtemp(prefix="cbsync-bench-"))
    try:
        from harness import Lab, LabUnavailable, profiles
    except ImportError:
        Lab = None  # noqa: N806
    lab = None
    try:
        if Lab is not None:
            try:
                lab = Lab()
                lab.__enter__()
            except LabUnavailable as exc:
                print(f"weak-link lab unavailable ({exc}); plain loopback", file=sys.stderr)
                lab = None
        identity, plaintext = make_box(work / "box", n)
        print(f"box: {n} records, {plaintext:.0f} bytes of canonical JSON each", flush=True)
        if lab is not None:
            box_host = lab.host("box")
            centre_host = lab.host("centre", link=clinic_uplink(profiles.EDGE))
            proc, url, args = start_central(
                work / "central", None, 2, host=centre_host.ip,
                wrap=lambda argv: lab.popen(centre_host, argv, stdout=subprocess.PIPE,
                                            text=True, env=env()))
        else:
            proc, url, args = start_central(work / "central", None, 2)
        # Claim over loopback-free path: the centre's URL is reachable from the box host only.
        claim_url = url
        if lab is not None:
            result = json.loads(lab.run(box_host, [sys.executable, "-c", (
                "import json,sys;from pathlib import Path;"
                "from appliance.identity import DeviceIdentity;"
                "from sync.agent.claim import claim_box;"
                f"i=DeviceIdentity.load_or_create(Path({str(work / 'box' / 'secrets')!r}));"
                f"print(json.dumps(claim_box({claim_url!r},{token(args)!r},i)))")],
                env=env(PYTHONPATH=str(Path(__file__).resolve().parent.parent))).stdout)
        else:
            result = claim_box(claim_url, token(args), identity)
        save_link(work / "box", CentralLink(url, result["device_id"],
                                            result["centre_signing_key"],
                                            result["centre_sealing_key"], result["tls_pin"]))
        agent_env = env(CLINICBOX_DATA_DIR=str(work / "box"), CLINICBOX_SYNC_PROBE_INTERVAL_S="1",
                        CLINICBOX_SYNC_BACKOFF_MAX_S="8", CLINICBOX_SYNC_READ_TIMEOUT_S="20",
                        CLINICBOX_SYNC_CONNECT_TIMEOUT_S="5", CLINICBOX_SYNC_MAX_BATCH="1024",
                        CLINICBOX_SYNC_LEASE_S="60",
                        # Agent settings to compare (CLINICBOX_SYNC_START_BATCH=256, ...).
                        **{k: v for k, v in os.environ.items() if k.startswith("CLINICBOX_SYNC_")})
        argv = [str(BIN / "clinicbox"), "sync", "run"]
        if lab is not None:
            # A namespace takes the host's TCP congestion control (bbr on this build machine)
            # and may not change it here; the box's own (Raspberry Pi OS) is cubic. So the
            # agent runs with every TCP socket it connects set to `box_cc`.
            argv = [sys.executable, "-c", AGENT_WITH_CC.format(cc=box_cc), "sync", "run"]
        tcp_before = tcp_counters(lab, box_host) if lab is not None else {}
        sampler = UplinkSampler(lab, centre_host.name) if lab is not None else None
        if sampler is not None:
            sampler.start()
        started = time.monotonic()
        first_stored = None
        # cwd: the box's data dir, not the checkout (python -c puts cwd first on sys.path,
        # and PYTHONPATH then could not point the agent at another tree to compare).
        agent = (lab.popen(box_host, argv, env=agent_env, cwd=work) if lab is not None else
                 subprocess.Popen(argv, env=agent_env, start_new_session=True))
        db = work / "central" / "central.db"
        cuts = 0
        rows = []
        limit = 1800
        while time.monotonic() - started < limit:
            time.sleep(0.5)
            elapsed = time.monotonic() - started
            if lab is not None and elapsed > (cuts + 1) * period - cut_s:
                lab.cut(centre_host, seconds=cut_s)
                cuts += 1
            try:
                with sqlite3.connect(db, timeout=10) as c:
                    rows = c.execute("SELECT record_id, version, COUNT(*) FROM record "
                                     "GROUP BY record_id, version").fetchall()
            except sqlite3.Error:
                continue
            if rows and first_stored is None:
                first_stored = round(time.monotonic() - started, 1)
            if len(rows) >= n + 1:
                break
        seconds = time.monotonic() - started
        time.sleep(1.0)  # the last receipt
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(10)
        status = json.loads((work / "box" / "state" / "sync-status.json").read_text())
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        with sqlite3.connect(db, timeout=10) as c:
            requests = c.execute("SELECT COUNT(*) FROM nonce").fetchone()[0]
        link_bytes = {}
        breakdown = {}
        if sampler is not None:
            sampler.stop.set()
            sampler.join()
            breakdown = where_time_went([(t, b) for t, b in sampler.samples if t <= seconds],
                                        seconds, EDGE_UP_BPS, first_stored)
            after = tcp_counters(lab, box_host)
            breakdown["tcp"] = {k: after[k] - tcp_before.get(k, 0) for k in after}
            print(f"where the time went: {breakdown}", flush=True)
        if lab is not None:
            # Frames on the emulated link (IP and TCP headers, handshakes, retransmissions).
            counters = lab.stats()["links"][centre_host.name]
            link_bytes = {"up": counters["down"]["delivered_bytes"],
                          "down": counters["up"]["delivered_bytes"]}
            print("uplink frames: " + ", ".join(
                f"{k} {counters['down'][k]}" for k in ("delivered", "dropped_loss",
                                                        "dropped_queue", "max_queue_bytes")),
                flush=True)
        wire = status["bytes_today"]
        capacity = (EDGE_UP_BPS if lab is not None else None)
        return {
            "link": "edge" if lab is not None else "loopback", "cuts": cuts,
            "box_congestion_control": box_cc if lab is not None else None,
            "records": n + 1, "delivered": len(rows),
            "lost": n + 1 - len(rows), "duplicates": sum(c - 1 for _r, _v, c in rows),
            "seconds": round(seconds, 1), "wire_bytes": wire,
            "wire_bytes_per_record": round(wire / (n + 1), 1),
            "plaintext_bytes_per_record": round(plaintext, 1),
            "link_bytes_up_per_record": (round(link_bytes["up"] / (n + 1), 1)
                                         if link_bytes else None),
            "link_bytes_down_per_record": (round(link_bytes["down"] / (n + 1), 1)
                                           if link_bytes else None),
            "requests": requests, "records_per_request": round((n + 1) / max(1, requests), 1),
            "goodput_ratio": (round(wire / (capacity * seconds), 3) if capacity else None),
            "connections_opened": breakdown.get("tcp", {}).get("TcpActiveOpens"),
            "segments_retransmitted": breakdown.get("tcp", {}).get("TcpRetransSegs"),
            "link_idle_s": breakdown.get("link_idle_s"),
            "first_stored_s": first_stored,
        }
    finally:
        if lab is not None:
            lab.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)


def start_postgres(base):
    nobody = pwd.getpwnam("nobody")
    data, sock = base / "data", base / "sock"
    for d in (base, data, sock):
        d.mkdir(exist_ok=True)
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
    pre = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    e = {"PATH": os.environ["PATH"], "HOME": str(base), "LC_ALL": "C"}
    subprocess.run([*pre, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                    "trust", "--no-sync"], check=True, capture_output=True, env=e)
    port = 6400 + os.getpid() % 500
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c max_connections=100"
    subprocess.run([*pre, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                    str(base / "log"), "start"], check=True, capture_output=True, env=e)
    subprocess.run([*pre, "createdb", "-h", str(sock), "-p", str(port), "-U", "postgres",
                    "central"], check=True, capture_output=True, env=e)

    def stop():
        subprocess.run([*pre, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, env=e)

    return f"postgresql+pool://postgres@/central?host={sock}&port={port}&max_connections=20", stop


class Item:
    def __init__(self, i, device):
        self.payload = json.dumps({"fields": {"items": [i % 4] * 9, "kind": "PHQ9",
                                              "score": i % 28, "severity": "mild"},
                                   "id": f"{device}-{i}", "type": "questionnaire_response",
                                   "version": 1}, sort_keys=True, separators=(",", ":")).encode()
        self.record_type, self.record_id, self.version, self.lane = "q", f"{device}-{i}", 1, 1
        self.content_hash = hashlib.sha256(self.payload).hexdigest()


def ingest(quick):
    base = Path(tempfile.mkdtemp(prefix="cbsync-pg-"))
    os.chmod(base, 0o755)
    url, stop_pg = start_postgres(base)
    try:
        proc, central, args = start_central(base / "central", url, 4)
        clients, batches, per = 4, (4 if quick else 10), 500
        work = []
        for c in range(clients):
            ident = DeviceIdentity.load_or_create(base / f"dev{c}")
            res = claim_box(central, token(args), ident)
            link = res.link(central)
            bodies = [seal_batch(link.sealing_key, link.device_id, encode_batch(
                link.device_id, [Item(b * per + i, c) for i in range(per)], {}))
                for b in range(batches)]
            work.append((ident, link, bodies))
        errors = []

        def push(ident, link, bodies):
            client = HttpClient(central, 5, 120, link.tls_pin)
            for body in bodies:
                headers = sign_request(ident.sign, link.device_id, "POST", "/v1/records", body)
                try:
                    client.request("POST", "/v1/records", body, headers)
                except Exception as exc:  # noqa: BLE001 - reported, not hidden
                    errors.append(str(exc))

        threads = [threading.Thread(target=push, args=w) for w in work]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        total = clients * batches * per
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        return {"central_records_per_s": round(total / seconds), "ingest_records": total,
                "ingest_workers": 4, "ingest_errors": len(errors)}
    finally:
        stop_pg()
        shutil.rmtree(base, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--drain-only", action="store_true", help="skip the ingest part")
    parser.add_argument("--box-cc", default="cubic",
                        help="the box's TCP congestion control in the lab (default cubic, as "
                             "on Raspberry Pi OS)")
    options = parser.parse_args()
    result = drain(options.quick, options.box_cc)
    print(f"drain: {result}", flush=True)
    if not options.drain_only:
        result.update(ingest(options.quick))
        print(f"ingest (PostgreSQL, 4 workers): {result['central_records_per_s']} records/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
