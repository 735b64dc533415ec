"""Who may open which session and which patient record: the clinic's care-team rules.

- A session's team is its owner (`GroupSession.facilitator`) and its co-facilitators.
- A patient's care team is the team of every session the patient attended or is booked in
  (any `Attendance` row, whatever its status: a clinician who saw someone in the waiting
  room keeps seeing their record).
- An admin may open everything; outside their own teams that is a cross-team view, which the
  caller writes to the audit log (`Grant.cross_team`).
- Technicians look after the box and open no clinical record; neither does an inactive
  account.

Plain functions over the store's models, no Flask: the portal's guards (web/access.py) and
the SFU's signalling both ask here, so the rules live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from appliance.store.models import GroupSession, Patient, User
from appliance.store.store import Store

CLINICAL_ROLES = ("clinician", "admin")

OWNER = "owner"
CO_FACILITATOR = "co-facilitator"
CARE_TEAM = "care-team"
ADMIN = "admin"


@dataclass(frozen=True)
class Grant:
    """Why a user may open a record: `relation` is owner, co-facilitator, care-team or admin."""

    relation: str
    # The user is an admin (who may also be on the team, e.g. as a co-facilitator).
    by_admin: bool = False

    @property
    def cross_team(self) -> bool:
        """An admin opening a record outside their own teams (to be audited)."""
        return self.relation == ADMIN

    @property
    def manages_team(self) -> bool:
        """May add and remove the session's co-facilitators (the owner, or an admin)."""
        return self.relation == OWNER or self.by_admin


def is_clinical(user: User | None) -> TypeGuard[User]:
    """A signed-in, active clinician or admin."""
    return user is not None and bool(user.active) and user.role in CLINICAL_ROLES


def team_session_ids(store: Store, user: User) -> Any:
    """A subquery of the ids of the sessions `user` owns or co-facilitates."""
    GroupSession, CoFacilitator = store.GroupSession, store.CoFacilitator  # noqa: N806
    helped = CoFacilitator.select(CoFacilitator.session).where(CoFacilitator.user == user.id)
    return GroupSession.select(GroupSession.id).where(
        (GroupSession.facilitator == user.id) | GroupSession.id.in_(helped)
    )


def own_sessions(store: Store, user: User) -> Any:
    """The sessions `user` owns or co-facilitates (a query; empty for non-clinical users)."""
    GroupSession = store.GroupSession  # noqa: N806
    if not is_clinical(user):
        return GroupSession.select().where(GroupSession.id.is_null())
    return GroupSession.select().where(GroupSession.id.in_(team_session_ids(store, user)))


def care_patient_ids(store: Store, user: User) -> Any:
    """A subquery of the ids of the patients in `user`'s care: anyone with a seat, whatever
    its status, in a session `user` owns or co-facilitates."""
    Attendance = store.Attendance  # noqa: N806
    return Attendance.select(Attendance.patient).where(
        Attendance.session.in_(team_session_ids(store, user))
    )


def session_grant(store: Store, user: User | None, group: GroupSession) -> Grant | None:
    """How `user` may run `group`, or None when it is outside their reach."""
    if not is_clinical(user):
        return None
    by_admin = user.role == "admin"
    if group.facilitator_id == user.id:
        return Grant(OWNER, by_admin)
    CoFacilitator = store.CoFacilitator  # noqa: N806
    helping = (
        CoFacilitator.select()
        .where((CoFacilitator.session == group.id) & (CoFacilitator.user == user.id))
        .exists()
    )
    if helping:
        return Grant(CO_FACILITATOR, by_admin)
    if by_admin:
        return Grant(ADMIN, by_admin)
    return None


def care_team_ids(store: Store, patient_id: str) -> set[int]:
    """User ids of the owners and co-facilitators of every session the patient is in."""
    GroupSession, Attendance, CoFacilitator = (  # noqa: N806
        store.GroupSession,
        store.Attendance,
        store.CoFacilitator,
    )
    sessions = Attendance.select(Attendance.session).where(Attendance.patient == patient_id)
    owners = GroupSession.select(GroupSession.facilitator).where(GroupSession.id.in_(sessions))
    helpers = CoFacilitator.select(CoFacilitator.user).where(CoFacilitator.session.in_(sessions))
    return {row.facilitator_id for row in owners} | {row.user_id for row in helpers}


def patient_grant(store: Store, user: User | None, patient: Patient) -> Grant | None:
    """How `user` may open `patient`'s record, or None when it is outside their care."""
    if not is_clinical(user):
        return None
    by_admin = user.role == "admin"
    if user.id in care_team_ids(store, patient.id):
        return Grant(CARE_TEAM, by_admin)
    if by_admin:
        return Grant(ADMIN, by_admin)
    return None


def may_join_call_as_staff(store: Store, user: User, group: GroupSession) -> bool:
    """May `user` take a facilitator seat in `group`'s call (checked again at every offer,
    so a co-facilitator removed from the team cannot reuse an earlier join token)."""
    return session_grant(store, user, group) is not None
