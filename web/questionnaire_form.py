"""One questionnaire form, filled by a patient or entered by a clinician: show, check, save.

Both the patient's join pages and the clinician's portal use it, so validation messages and
what gets stored (the scored response, and a risk flag in the urgent lane) are the same.
"""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request

from appliance.clinical.questionnaires import IncompleteAnswers, get_instrument, score


def save_response(store: Any, patient: Any, session: Any, result: Any, actor: str) -> Any:
    """Store a scored questionnaire, and a risk flag (urgent lane) when item 9 is above zero."""
    with store.transaction():
        saved = store.QuestionnaireResponse.create(
            patient=patient, session=session, kind=result.instrument.upper(),
            items=list(result.answers), score=result.score, severity=result.severity,
        )
        if result.risk_flag:
            store.RiskFlag.create(
                patient=patient, source=saved,
                reason=f"{result.instrument.upper()} item 9 answered {result.answers[8]}",
            )
    store.audit(actor, "record.create", f"questionnaire_response/{saved.id}")
    return saved


def questionnaire_view(
    store: Any,
    code: str,
    action: str,
    patient: Any,
    session: Any,
    actor: str,
    watch_url: str | None = None,
) -> tuple[Any, Any]:
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
        page = render_template(
            "questionnaire.html", instrument=instrument, error=None, missing=[], form={},
            action=action, watch_url=watch_url,
        )
        return page, None
    try:
        result = score(instrument, request.form)
    except IncompleteAnswers as exc:
        page = render_template(
            "questionnaire.html", instrument=instrument, error=str(exc), missing=exc.missing,
            form=request.form, action=action, watch_url=watch_url,
        ), 400
        return page, None
    return None, save_response(store, patient, session, result, actor)
