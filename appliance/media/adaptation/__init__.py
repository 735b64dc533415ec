"""Adaptation for weak links, audio first: estimate each subscriber's downlink, share the
clinic's uplink, pick a tier per publisher per subscriber, and say why (docs/weak-links.md)."""

from appliance.media.adaptation.allocation import Demand, Limit, Plan, allocate
from appliance.media.adaptation.budget import BudgetConfig, UplinkBudget
from appliance.media.adaptation.estimator import (
    DownlinkEstimator,
    Estimate,
    EstimatorConfig,
    LinkState,
)
from appliance.media.adaptation.ladder import AudioMode, Costs, Publisher, Reason, Tier
from appliance.media.adaptation.policy import Notice, SubscriberPolicy
from appliance.media.adaptation.session import SessionAdaptation, Update

__all__ = [
    "AudioMode", "BudgetConfig", "Costs", "Demand", "DownlinkEstimator", "Estimate",
    "EstimatorConfig", "Limit", "LinkState", "Notice", "Plan", "Publisher", "Reason",
    "SessionAdaptation", "SubscriberPolicy", "Tier", "UplinkBudget", "Update", "allocate",
]
