"""Who a box trusts: a claimed box refuses new claims, and claims and sync reach only the
pinned centre (real `clinicbox-central serve` processes over real TLS)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.provisioning import AlreadyClaimed, ProvisioningError, accept_voucher, claim
from sync.agent.agent import AgentConfig, SyncAgent
from sync.agent.claim import ClaimError, claim_box, claim_with_voucher, load_link, save_link
from sync.protocol.sealing import sealing_key_b64
from tests.conftest import CLINICBOX, box_env, free_port, start_box
from tests.provisioning.test_technician import Browser, _provision
from tests.sync.conftest import Box, Central, delivered_at_centre
from tests.sync.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def centres(tmp_path: Path) -> Iterator[tuple[Central, Central]]:
    """The clinic's centre and a rogue one a technician runs on their own laptop."""
    ours, rogue = Central(tmp_path / "ours", None, 1), Central(tmp_path / "rogue", None, 1)
    yield ours, rogue
    ours.stop()
    rogue.stop()


def _devices(central: Central) -> list[str]:
    return [json.loads(line)["device_id"] for line in central.cli("devices").stdout.splitlines()]


def test_a_claimed_box_refuses_a_rogue_claim_until_factory_reset(
    tmp_path: Path, centres: tuple[Central, Central]
) -> None:
    ours, rogue = centres
    data = tmp_path / "data"
    done = _provision(
        data,
        tmp_path,
        "--central-url",
        ours.url,
        "--claim-token",
        ours.cli("claim-token").stdout.strip(),
    )
    assert done.returncode == 0, done.stderr
    rogue_token = rogue.cli("claim-token").stdout.strip()
    rogue_voucher = rogue.cli("claim-voucher", "--central-url", rogue.url).stdout.strip()

    box = start_box(data)
    try:  # the technician page: the form is hidden, and a hand-made post is refused
        tech = Browser(box)
        tech.sign_in("tech.tom")
        status, page = tech.post(
            "/technician/claim", "/technician", central_url=rogue.url, claim_token=rogue_token
        )
        assert status == 400 and "already claimed for " + ours.url in page
        status, page = tech.post(
            "/technician/claim", "/technician", central_url=rogue.url, voucher=rogue_voucher
        )
        assert status == 400 and "needs a factory reset" in page
    finally:
        box.stop()

    from appliance.store import open_store

    store = open_store(Settings(data_dir=data))
    try:
        refusals = store.AuditLog.select().where(
            store.AuditLog.action == "technician.claim-refused"
        )
        assert [e.actor for e in refusals] == ["tech.tom", "tech.tom"]
    finally:
        store.close()

    env = box_env(data, free_port())
    cli = subprocess.run(
        [CLINICBOX, "claim", "--central-url", rogue.url, "--claim-token", rogue_token],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert "already claimed" in cli.stderr and "Traceback" not in cli.stderr
    settings = Settings(data_dir=data)
    with pytest.raises(AlreadyClaimed):
        claim(settings, rogue.url, rogue_token)
    with pytest.raises(AlreadyClaimed):
        accept_voucher(settings, rogue.url, rogue_voucher)

    # After a restart the box still syncs with its own centre only; the rogue never heard of it.
    link = load_link(data)
    assert link is not None and link.central_url == ours.url
    assert _devices(rogue) == [] and _devices(ours) == [link.device_id]

    reset = subprocess.run(
        [CLINICBOX, "factory-reset", "--yes"], env=env, capture_output=True, text=True, timeout=60
    )
    assert reset.returncode == 0, reset.stderr
    assert _provision(data, tmp_path).returncode == 0
    again = subprocess.run(
        [CLINICBOX, "claim", "--central-url", rogue.url, "--claim-token", rogue_token],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert load_link(data).central_url == rogue.url and len(_devices(rogue)) == 1


def test_claims_need_https(tmp_path: Path, centres: tuple[Central, Central]) -> None:
    ours, _rogue = centres
    token = ours.cli("claim-token").stdout.strip()
    settings = Settings(data_dir=tmp_path / "box")
    plain = "http://" + ours.url.removeprefix("https://")
    with pytest.raises(ProvisioningError, match="must start with https://"):
        claim(settings, plain, token)
    voucher = ours.cli("claim-voucher").stdout.strip()
    with pytest.raises(ProvisioningError, match="must start with https://"):
        accept_voucher(settings, plain, voucher)
    refused = ours.cli("claim-voucher", "--central-url", plain, check=False)
    assert refused.returncode == 2 and "https://" in refused.stderr
    assert _devices(ours) == []
    claim(settings, ours.url, token)  # the same token over https works: it was never spent
    assert load_link(settings.data_dir).central_url == ours.url


def test_a_server_without_the_pinned_tls_key_never_sees_the_claim(
    tmp_path: Path, centres: tuple[Central, Central]
) -> None:
    """A rogue centre (or anyone) answering at the centre's address, with its own TLS key,
    is refused during the handshake: the token's secret is never sent to it."""
    ours, rogue = centres
    token = ours.cli("claim-token").stdout.strip()
    impostor = FaultProxy(ours.port, {"pass": 1}, rogue.data_dir)  # relays, with rogue's cert
    box = Box(tmp_path / "box")
    try:
        with pytest.raises(ClaimError, match="not the pinned centre"):
            claim_box(f"https://127.0.0.1:{impostor.port}", token, box.identity)
        voucher = ours.cli("claim-voucher").stdout.strip()
        with pytest.raises(ClaimError, match="not the pinned centre"):
            claim_with_voucher(f"https://127.0.0.1:{impostor.port}", voucher, box.identity)
    finally:
        impostor.close()
    assert _devices(ours) == []
    assert claim_box(ours.url, token, box.identity).device_id == box.identity.fingerprint


def test_a_swapped_sealing_key_in_the_claim_answer_is_refused(
    tmp_path: Path, centres: tuple[Central, Central]
) -> None:
    """Even a party on the path that holds the centre's TLS key (a TLS-terminating proxy)
    cannot give the box its own sealing key: the answer is signed with the pinned key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    ours, _rogue = centres
    theirs = sealing_key_b64(X25519PrivateKey.generate().public_key())

    def swap(body: bytes) -> bytes:
        answer = json.loads(body)
        answer["document"]["centre_sealing_key"] = theirs
        return json.dumps(answer).encode()

    proxy = FaultProxy(ours.port, {"pass": 1}, ours.data_dir, rewrite=swap)
    box = Box(tmp_path / "box")
    try:
        with pytest.raises(ClaimError, match="not signed by the centre"):
            claim_box(
                f"https://127.0.0.1:{proxy.port}",
                ours.cli("claim-token").stdout.strip(),
                box.identity,
            )
        with pytest.raises(ClaimError, match="not signed by the centre"):
            claim_with_voucher(
                f"https://127.0.0.1:{proxy.port}",
                ours.cli("claim-voucher").stdout.strip(),
                box.identity,
            )
    finally:
        proxy.close()
    assert load_link(box.data_dir) is None


def test_sync_goes_only_to_the_pinned_centre(
    tmp_path: Path, centres: tuple[Central, Central]
) -> None:
    """After the claim, a server with another TLS key at the centre's address (a network
    attacker, or a rogue relaying to the real centre) gets no batch: not a byte is sent."""
    ours, rogue = centres
    box = Box(tmp_path / "box")
    link = box.claim(ours)
    box.add_records(3)
    impostor = FaultProxy(ours.port, {"pass": 1}, rogue.data_dir)
    save_link(
        box.data_dir,
        link.__class__(**{**link.__dict__, "central_url": f"https://127.0.0.1:{impostor.port}"}),
    )
    from appliance.store import open_store

    store = open_store(box.settings)
    agent = SyncAgent(
        store, box.data_dir, box.identity, AgentConfig(connect_timeout_s=2, read_timeout_s=3)
    )
    try:
        agent.step()
        assert "not the pinned centre" in (agent.status.last_error or "")
        assert impostor.counts["pass"] >= 1 and delivered_at_centre(ours, link.device_id) == []
        save_link(box.data_dir, link)
        agent._link = agent._client = None  # the box restarts with its own centre's URL
        agent.step()
        assert len(delivered_at_centre(ours, link.device_id)) == 6
    finally:
        store.close()
        impostor.close()
