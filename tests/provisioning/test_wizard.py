"""The web setup wizard: code, clinic name, first accounts; refusals are clear 4xx."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.accounts import authenticate
from appliance.box import Box
from appliance.identity import DeviceIdentity
from appliance.provisioning import ProvisioningError, accept_voucher
from appliance.provisioning_state import read_state
from tests.provisioning.conftest import central_voucher

pytestmark = pytest.mark.timeout(60)

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(client: FlaskClient, path: str) -> str:
    match = _CSRF.search(client.get(path).get_data(as_text=True))
    assert match, path
    return match.group(1)


def _enter_code(client: FlaskClient, code: str) -> int:
    return client.post("/setup", data={"code": code, "csrf_token": _csrf(client, "/setup")}
                       ).status_code


def _wizard(client: FlaskClient, **overrides: str) -> tuple[int, str]:
    form = {"clinic_name": "Riverside Clinic", "admin_username": "admin.ana",
            "admin_password": PASSWORD, "tech_username": "tech.tom", "tech_password": PASSWORD,
            "central_url": "", "claim_token": "", "voucher": ""}
    form.update(overrides)
    form["csrf_token"] = _csrf(client, "/setup/wizard")
    reply = client.post("/setup/wizard", data=form)
    return reply.status_code, reply.get_data(as_text=True)


def test_wizard_provisions_the_box(app: Flask, box: Box) -> None:
    code = box.setup_code.issue()
    client = app.test_client()
    # Without the code the wizard stays shut.
    assert client.get("/setup/wizard").status_code == 403
    assert _enter_code(client, "WRONG-CODE9") == 403
    assert client.get("/setup/wizard").status_code == 403
    assert _enter_code(client, code) == 302
    # The code is single use: another browser cannot reuse it.
    other = app.test_client()
    assert "No setup code is waiting" in other.get("/setup").get_data(as_text=True)
    with other.session_transaction() as sess:
        sess["csrf_token"] = "t"
    assert other.post("/setup", data={"code": code, "csrf_token": "t"}).status_code == 403

    status, page = _wizard(client, admin_password="1234567890")
    assert status == 400 and "at least 12 characters" in page
    status, page = _wizard(client, tech_password="PASSWORD1234")
    assert status == 400 and "commonly used" in page
    status, page = _wizard(client, tech_username="admin.ana")
    assert status == 400 and "different usernames" in page
    status, page = _wizard(client, clinic_name="   ")
    assert status == 400 and "clinic name" in page
    status, page = _wizard(client, claim_token="abc")
    assert status == 400 and "central server" in page
    assert not read_state(box.settings).provisioned

    status, page = _wizard(client)
    assert status == 200, page
    state = read_state(box.settings)
    assert state.provisioned and state.clinic_name == "Riverside Clinic"
    assert state.advert_state == "unclaimed"
    assert authenticate(box.store, "admin.ana", PASSWORD).role == "admin"
    assert authenticate(box.store, "tech.tom", PASSWORD).role == "technician"
    assert (box.settings.secrets_dir / "device-ed25519.pem").exists()
    DeviceIdentity.load_or_create(box.settings.secrets_dir)  # loads, does not remake

    # Done once: the wizard cannot run again.
    assert client.get("/setup/wizard").status_code == 302
    assert "This box is set up" in client.get("/setup").get_data(as_text=True)


def test_offline_voucher_claims(app: Flask, box: Box, tmp_path: Path) -> None:
    voucher = central_voucher(tmp_path / "centre")
    # A damaged voucher is caught on the box, before it is stored.
    with pytest.raises(ProvisioningError, match="not a valid ClinicBox claim voucher"):
        accept_voucher(box.settings, "https://centre.example", voucher[:-8] + "AAAAAAAA")
    client = app.test_client()
    assert _enter_code(client, box.setup_code.issue()) == 302
    status, page = _wizard(client, central_url="https://centre.example", voucher=voucher)
    assert status == 200, page
    assert "checks it on first contact" in page
    assert read_state(box.settings).advert_state == "claimed"
    claim_file = box.settings.data_dir / "state" / "claim.json"
    assert claim_file.stat().st_mode & 0o777 == 0o600


def test_bad_claim_url_leaves_box_provisioned_but_unclaimed(app: Flask, box: Box) -> None:
    client = app.test_client()
    assert _enter_code(client, box.setup_code.issue()) == 302
    status, page = _wizard(client, central_url="ftp://centre.example", voucher="v")
    assert status == 200
    assert "Claim failed" in page and "https://" in page
    state = read_state(box.settings)
    assert state.provisioned and not state.claimed


def test_wizard_can_lock_the_records_with_a_passphrase(app: Flask, box: Box) -> None:
    from appliance.store.keyring import Keyring, StoreLockedError

    client = app.test_client()
    assert _enter_code(client, box.setup_code.issue()) == 302
    page = client.get("/setup/wizard").get_data(as_text=True)
    # Both choices are offered, and what each leaves a thief is said plainly.
    assert 'value="device"' in page and 'value="passphrase"' in page
    assert "can read every" in page and "shows no clinical content" in page
    store_choice = {"key_mode": "passphrase", "store_passphrase": "lantern over the hill",
                    "store_passphrase_confirm": "lantern over the hill"}
    status, page = _wizard(client, **{**store_choice, "store_passphrase_confirm": "lantern"})
    assert status == 400 and "differ" in page
    status, page = _wizard(client, **{**store_choice, "store_passphrase": "PASSWORD1234",
                                      "store_passphrase_confirm": "PASSWORD1234"})
    assert status == 400 and "Store passphrase: that password is too commonly used" in page
    status, page = _wizard(client, **{**store_choice, "store_passphrase": PASSWORD,
                                      "store_passphrase_confirm": PASSWORD})
    assert status == 400 and "not a staff password" in page
    assert not read_state(box.settings).provisioned

    status, page = _wizard(client, **store_choice)
    assert status == 200, page
    assert 'id="locked-note"' in page and "/unlock" in page
    secrets_dir = box.settings.secrets_dir
    keys = json.loads((secrets_dir / "store-keys.json").read_bytes())
    assert keys["mode"] == "passphrase"
    assert not (secrets_dir / "store-device.key").exists()
    with pytest.raises(StoreLockedError):
        Keyring.open(secrets_dir, None)
    # The same keys, re-wrapped: records, the CA key and the cookie key all still open.
    reopened = Keyring.open(secrets_dir, "lantern over the hill")
    assert reopened.get_box_secret("tls-ca-key") is not None
    assert authenticate(box.store, "admin.ana", PASSWORD).role == "admin"


def test_wizard_keeps_device_mode_by_default(app: Flask, box: Box) -> None:
    client = app.test_client()
    assert _enter_code(client, box.setup_code.issue()) == 302
    status, page = _wizard(client)
    assert status == 200, page
    keys = json.loads((box.settings.secrets_dir / "store-keys.json").read_bytes())
    assert keys["mode"] == "device"
    assert 'id="locked-note"' not in page


def test_a_refused_password_names_its_field_and_keeps_the_rest(app: Flask, box: Box) -> None:
    client = app.test_client()
    assert _enter_code(client, box.setup_code.issue()) == 302
    status, page = _wizard(client, tech_password="short")
    assert status == 400
    assert "First technician password must be at least 12 characters" in page
    # The message sits beside that field, which is marked invalid and emptied; the other
    # password and the usernames are kept.
    assert re.search(r'id="tech_password" name="tech_password"[^>]*value=""[^>]*'
                     r'aria-invalid="true" aria-describedby="tech_password-error"', page)
    assert f'id="admin_password" name="admin_password" type="password" ' \
           f'autocomplete="new-password" value="{PASSWORD}"' in page
    assert 'value="tech.tom"' in page and 'value="admin.ana"' in page
    assert not read_state(box.settings).provisioned
