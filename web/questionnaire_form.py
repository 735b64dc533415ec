"""One questionnaire form, filled by a patient or entered by a clinician: show, check, save.

Both the patient's join pages and the clinician's portal use it, so validation messages are
the same; saving is appliance/clinical/questionnaire_responses.py.
"""

from __future__ import annotations

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue

from appliance.clinical.questionnaire_responses import save_response
from appliance.clinical.questionnaires import IncompleteAnswers, get_instrument, score
from appliance.store.models import GroupSession, Patient, QuestionnaireResponse
from appliance.store.store import Store


def questionnaire_view(
    store: Store,
    code: str,
    action: str,
    patient: Patient,
    session: GroupSession | None,
    actor: str,
    watch_url: str | None = None,
) -> tuple[ResponseReturnValue, None] | tuple[None, QuestionnaireResponse]:
    """Handle GET/POST of instrument `code`.

    Returns (page, None) when a page must be shown (the empty form, or the form again with
    the missing answers named, status 400), or (None, saved_response) once stored.
    `watch_url`: a patient's state URL; the page then says when they are let into the call.
    """
    try:
        instrument = get_instrument(code)
    except ValueError as exc:
        abort(404, description=str(exc))
    if request.method == "GET":
        form = render_template(
            "questionnaire.html", instrument=instrument, error=None, missing=[], form={},
            action=action, watch_url=watch_url,
        )
        return form, None
    try:
        result = score(instrument, request.form)
    except IncompleteAnswers as exc:
        again = render_template(
            "questionnaire.html", instrument=instrument, error=str(exc), missing=exc.missing,
            form=request.form, action=action, watch_url=watch_url,
        )
        return (again, 400), None
    return None, save_response(store, patient, session, result, actor)
