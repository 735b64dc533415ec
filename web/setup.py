"""First-start setup, opened with the one-time code printed by `clinicbox serve`.

The full provisioning wizard (clinic name, first accounts, claiming) belongs to the
provisioning work; until it lands this page checks the code and says what comes next.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from web import current_box

bp = Blueprint("setup", __name__)


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> tuple[str, int] | str:
    box = current_box()
    if request.method == "GET":
        return render_template("setup.html", pending=box.setup_code.pending(), error=None)
    code = request.form.get("code", "")
    if not code.strip():
        return render_template("setup.html", pending=True, error="Enter the setup code."), 400
    if not box.setup_code.redeem(code):
        message = "That setup code is not valid. Check the code printed by the box and retry."
        return render_template("setup.html", pending=box.setup_code.pending(), error=message), 403
    return render_template("setup_accepted.html")
