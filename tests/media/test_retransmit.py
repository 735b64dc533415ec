"""A remote subscriber's retransmissions: a share of its allowance, none while backing off."""

from __future__ import annotations

from appliance.media.retransmit import DEPTH_S, SHARE, RetransmitBudget


def test_a_nack_storm_is_answered_only_up_to_the_budget() -> None:
    budget = RetransmitBudget()
    assert budget.allow(0.0, 60, 500, 80_000, congested=False) == 0  # nothing saved yet
    # GPRS, 80 kbps: 10% for up to 0.5 s is 500 bytes, one packet; not 60 (24 KB, 2.4 s).
    granted = budget.allow(1.0, 60, 500, 80_000, congested=False)
    assert granted == int(SHARE * 80_000 / 8 * DEPTH_S // 500) == 1
    assert budget.allow(1.0, 60, 500, 80_000, congested=False) == 0  # spent
    # A fast link resends a few lost packets at once.
    fast = RetransmitBudget()
    fast.allow(0.0, 0, 1270, 2_000_000, congested=False)
    assert fast.allow(1.0, 5, 1270, 2_000_000, congested=False) == 5


def test_nothing_is_resent_while_the_link_backs_off() -> None:
    budget = RetransmitBudget()
    budget.allow(0.0, 0, 500, 1_000_000, congested=False)
    assert budget.allow(2.0, 3, 500, 1_000_000, congested=True) == 0
    assert budget.allow(2.1, 3, 500, 1_000_000, congested=False) == 3  # saved up meanwhile
