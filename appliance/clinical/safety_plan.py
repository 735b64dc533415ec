"""The safety plan: the six sections of the Stanley-Brown Safety Planning Intervention
(Stanley & Brown 2012), written by a patient with their clinician.

One `SafetyPlan` record per patient holds every section, encrypted together; each save is a
new version in the urgent sync lane (the centre should have the latest plan of anyone at
risk). Plain functions over the store, no Flask.
"""

from __future__ import annotations

from typing import Any

from appliance.store.models import Patient, User
from appliance.store.store import Store
from appliance.translatable import translatable as T

# (key, heading as the patient reads it, prompt for writing it). The patient's pages
# translate the headings through the same gettext catalogs as every patient page.
SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "warning_signs",
        T("My warning signs"),
        "Thoughts, images, moods, situations or behaviour that tell me a crisis may be coming",
    ),
    (
        "coping",
        T("Things I can do on my own"),
        "Ways to take my mind off my problems without contacting anyone",
    ),
    (
        "distraction",
        T("People and places that take my mind off things"),
        "People to be with and social settings that help",
    ),
    (
        "help",
        T("People I can ask for help"),
        "Names and phone numbers of people I can talk to",
    ),
    (
        "professionals",
        T("Professionals and crisis lines"),
        "Clinicians, the clinic, crisis lines and the local emergency number",
    ),
    (
        "safe_environment",
        T("Making my surroundings safe"),
        "What I will do to keep means of harm away",
    ),
)
SECTION_KEYS = tuple(key for key, _heading, _prompt in SECTIONS)
MAX_SECTION = 1500


class SafetyPlanError(ValueError):
    """The plan cannot be saved as given; the message says what to fix."""


def plan_of(store: Store, patient: Patient) -> Any | None:
    """The patient's safety plan, or None."""
    Plan = store.SafetyPlan  # noqa: N806
    return Plan.get_or_none(Plan.patient == patient.id)


def clean_sections(form: Any) -> dict[str, str]:
    """The plan's sections from a form, stripped and checked; at least one is needed."""
    sections = {key: (form.get(key) or "").strip() for key in SECTION_KEYS}
    too_long = [key for key, text in sections.items() if len(text) > MAX_SECTION]
    if too_long:
        raise SafetyPlanError(f"Keep each section under {MAX_SECTION} characters.")
    if not any(sections.values()):
        raise SafetyPlanError("Write at least one section of the plan.")
    return sections


def save_plan(store: Store, patient: Patient, sections: dict[str, str], user: User) -> Any:
    """Create or update the patient's plan (a new version of the same record)."""
    with store.transaction():
        plan = plan_of(store, patient)
        if plan is None:
            return store.SafetyPlan.create(
                patient=patient.id, sections=sections, written_by=user.id
            )
        plan.sections = sections
        plan.written_by = user.id
        plan.save()
        return plan
