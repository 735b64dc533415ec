"""First-start setup wizard, opened with the one-time code printed by `clinicbox serve`.

Step 1 redeems the code (it works once); the session may then finish the wizard within
`WIZARD_WINDOW_S`: clinic name, the first clinician-admin and technician accounts, how the
record keys are protected (the device key, or a passphrase staff enter after each restart),
and optionally claiming the box for a central server with a one-time token or offline voucher.
"""

from __future__ import annotations

import time

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from appliance.accounts import check_password
from appliance.provisioning import (
    Account,
    AccountRefused,
    ClaimRefused,
    ProvisioningError,
    claim_for_portal,
    provision,
)
from appliance.provisioning_state import read_state
from web.app_state import current_box

bp = Blueprint("setup", __name__)

WIZARD_WINDOW_S = 30 * 60
_SESSION_KEY = "setup_until"
_FIELDS = (
    "clinic_name", "admin_username", "tech_username", "central_url", "claim_token", "key_mode"
)
# Form field prefix of each first account's role.
_PREFIX = {"admin": "admin", "technician": "tech"}


def _wizard_open() -> bool:
    return float(session.get(_SESSION_KEY, 0)) > time.time()


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> ResponseReturnValue:
    box = current_box()
    if read_state(box.settings).provisioned:
        return render_template("setup_done.html", state=read_state(box.settings), claimed=None,
                               claim_refused=None)
    if request.method == "GET":
        return _code_page(None, 200)
    code = request.form.get("code", "")
    if not code.strip():
        return _code_page("Enter the setup code.", 400)
    if not box.setup_code.redeem(code):
        return _code_page(
            "That setup code is not valid. Check the code printed by the box and retry.", 403
        )
    session[_SESSION_KEY] = time.time() + WIZARD_WINDOW_S
    return redirect(url_for("setup.wizard"))


@bp.route("/setup/wizard", methods=["GET", "POST"])
def wizard() -> ResponseReturnValue:
    box = current_box()
    if read_state(box.settings).provisioned:
        return redirect(url_for("setup.setup"))
    if not _wizard_open():
        return _code_page(
            "Enter the setup code first (it may have expired: restart for a new one).", 403
        )
    form = {name: request.form.get(name, "").strip() for name in _FIELDS}
    if request.method == "GET":
        return render_template("setup_wizard.html", form=form, error=None, error_field=None)

    admin = Account(form["admin_username"], request.form.get("admin_password", ""), "admin")
    tech = Account(form["tech_username"], request.form.get("tech_password", ""), "technician")
    token = request.form.get("claim_token", "").strip()
    voucher = request.form.get("voucher", "").strip()
    if (token or voucher) and not form["central_url"]:
        return _wizard_error(form, "Claiming needs the central server's address.", "central_url")
    if token and voucher:
        return _wizard_error(form, "Give either a claim token or an offline voucher, not both.")
    # Passwords go back into the form only while they were not the problem, so a mistake
    # elsewhere does not make the person type both again.
    passwords = {"admin_password": admin.password, "tech_password": tech.password,
                 "voucher": voucher}
    try:
        passphrase = _chosen_passphrase(form, admin, tech)
    except ValueError as exc:
        return _wizard_error(form, str(exc))
    try:
        provision(box.settings, box.store, form["clinic_name"], admin, tech)
    except AccountRefused as exc:
        field = f"{_PREFIX.get(exc.role, exc.role)}_{exc.field}"
        passwords.pop(field, None)
        return _wizard_error(form | passwords, str(exc), field)
    except ProvisioningError as exc:
        return _wizard_error(form | passwords, str(exc))
    if passphrase is not None:
        # The same keys, re-wrapped: the device secret is shredded, and from the next start the
        # box waits at /unlock for this passphrase.
        box.store.keyring.rewrap(passphrase)
        box.store.audit("setup", "keys.passphrase", "store/keys")
    session.pop(_SESSION_KEY, None)
    claimed = claim_refused = None
    if token or voucher:
        try:
            claimed = claim_for_portal(box, form["central_url"], token, voucher)
        except ClaimRefused as exc:  # the box is set up all the same; say why it is unclaimed
            claim_refused = exc.message
    return render_template("setup_done.html", state=read_state(box.settings), claimed=claimed,
                           claim_refused=claim_refused, locked=passphrase is not None)


def _chosen_passphrase(form: dict[str, str], *accounts: Account) -> str | None:
    """The store passphrase when the wizard chose passphrase mode, else None (ValueError when
    it is missing, mistyped, weak, or the same as an account's password)."""
    if form["key_mode"] != "passphrase":
        if form["key_mode"] not in ("", "device"):
            raise ValueError("Choose how the records are protected.")
        return None
    passphrase = request.form.get("store_passphrase", "")
    if passphrase != request.form.get("store_passphrase_confirm", ""):
        raise ValueError("The two store passphrases differ; type it again.")
    try:
        check_password(passphrase)
    except ValueError as exc:
        raise ValueError(f"Store passphrase: {exc}") from None
    if any(passphrase == account.password for account in accounts):
        raise ValueError("Use a store passphrase that is not a staff password.")
    return passphrase


def _code_page(error: str | None, status: int) -> tuple[str, int]:
    pending = current_box().setup_code.pending()
    return render_template(
        "setup.html", pending=pending, error=error, wizard_open=_wizard_open()
    ), status


def _wizard_error(
    form: dict[str, str], message: str, field: str | None = None
) -> tuple[str, int]:
    """The form again with `message` at the top and beside `field` (if one is to blame)."""
    page = render_template("setup_wizard.html", form=form, error=message, error_field=field)
    return page, 400
