"""The staff admin page (/staff): admins add staff accounts, change a role, disable or enable
an account and set a new password, without a shell on the box.

Admins only (clinicians and technicians get 403). Every change is written to the audit log
with the acting admin and the account's id (usernames are login names, not clinical data).
Disabling an account, changing its role and setting its password end its open sessions at
once, so the change holds on every device it was signed in on. An admin cannot disable or
demote their own account: whoever acts is an active admin, so the box always keeps one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance import staff_sessions
from appliance.accounts import ROLES, AccountRefused, create_user, normalise_username, set_password
from appliance.store.models import User
from appliance.store.store import Store
from web.app_state import current_box
from web.auth import current_user, role_required, staff_user

bp = Blueprint("staff_admin", __name__)

admin_required = role_required("admin")

ACTIONS = ("disable", "enable", "role", "password")


def _store() -> Store:
    return current_box().store


def _audit(action: str, user_id: int) -> None:
    _store().audit(f"user:{staff_user().id}", action, f"users/{user_id}")


def _page(error: str | None = None, status: int = 200, **form: str) -> Any:
    User = _store().User  # noqa: N806 - the store's model class
    staff = list(User.select().order_by(User.active.desc(), User.username))
    return render_template(
        "staff.html", staff=staff, roles=ROLES, error=error, form=form, me=current_user()
    ), status


def _sentence(problem: str) -> str:
    """A ValueError text from appliance.accounts as a sentence for the page."""
    return problem[:1].upper() + problem[1:] + "."


@bp.get("/staff")
@admin_required
def staff_list() -> ResponseReturnValue:
    return _page()


@bp.post("/staff")
@admin_required
def add_staff() -> ResponseReturnValue:
    """Create an account: username, role and a first password the new colleague changes."""
    username = normalise_username(request.form.get("username", ""))
    role = request.form.get("role", "")
    password = request.form.get("password", "")
    if role not in ROLES:
        return _page(
            "Choose a role for the new account: clinician, admin or technician.",
            400,
            username=username,
        )
    try:
        user = create_user(_store(), username, password, role)
    except AccountRefused as exc:
        # The form keeps what was typed (never the password) and says which field to fix.
        field = exc.field.capitalize()
        return _page(f"{field}: {_sentence(str(exc))}", 400, username=username, role=role)
    _audit("user.add", user.id)
    flash(f"Added {user.username} ({user.role}).")
    return redirect(url_for("staff_admin.staff_list"))


def _refuse_lockout(user: User, action: str, role: str) -> None:
    """400 when an admin would disable or demote their own account. Whoever acts here is an
    active admin, so refusing this alone keeps at least one active admin on the box."""
    loses_admin = action == "disable" or (action == "role" and role != "admin")
    if user.id == staff_user().id and loses_admin:
        abort(
            400,
            description="You cannot disable or demote your own account; "
            "ask another admin to do it.",
        )


@bp.post("/staff/<int:user_id>")
@admin_required
def change_staff(user_id: int) -> ResponseReturnValue:
    """Disable or enable an account, change its role, or set a new password."""
    store = _store()
    user = store.User.get_or_none(store.User.id == user_id)
    if user is None:
        abort(404, description="There is no such staff account.")
    action = request.form.get("action", "")
    role = request.form.get("role", "")
    if action not in ACTIONS:
        abort(400, description="Choose disable, enable, change role or set password.")
    if action == "role" and role not in ROLES:
        abort(400, description="Choose a role: clinician, admin or technician.")
    _refuse_lockout(user, action, role)
    with store.transaction():
        if action == "password":
            try:
                set_password(store, user.username, request.form.get("password", ""))
            except ValueError as exc:
                return _page(f"New password for {user.username}: {_sentence(str(exc))}", 400)
            message = f"New password set for {user.username}; give it to them in person."
        elif action == "role":
            user.role = role
            user.save()
            message = f"{user.username} is now {role}."
        else:
            user.active = action == "enable"
            user.save()
            message = f"{user.username} is {'enabled' if user.active else 'disabled'}."
        # Whatever changed applies on every device at once: the account signs in again.
        ended = 0 if action == "enable" else staff_sessions.end_all_for(store, user.id)
        _audit(f"user.{action}", user.id)
    if ended:
        message += f" Signed out of {ended} open session(s)."
    flash(message)
    return redirect(url_for("staff_admin.staff_list"))
