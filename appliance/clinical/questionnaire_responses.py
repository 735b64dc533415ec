"""Saving a scored questionnaire: the response, and a risk flag in the urgent lane when item 9
(thoughts of self-harm) is answered above zero, in one transaction.

The patient's join pages, their own space and the clinician's portal all save through here,
so what gets stored is the same whoever filled the form in.
"""

from __future__ import annotations

from appliance.clinical.questionnaires import Result
from appliance.store.models import GroupSession, Patient, QuestionnaireResponse
from appliance.store.store import Store


def save_response(
    store: Store, patient: Patient, session: GroupSession | None, result: Result, actor: str
) -> QuestionnaireResponse:
    """Store `result` for `patient` (from `session`, if any) and audit it as `actor`."""
    with store.transaction():
        saved = store.QuestionnaireResponse.create(
            patient=patient,
            session=session,
            kind=result.instrument.upper(),
            items=list(result.answers),
            score=result.score,
            severity=result.severity,
        )
        if result.risk_flag:
            store.RiskFlag.create(
                patient=patient,
                source=saved,
                reason=f"{result.instrument.upper()} item 9 answered {result.answers[8]}",
            )
    store.audit(actor, "record.create", f"questionnaire_response/{saved.id}")
    return saved
