"""Pending decisions for late rewards (gateway.decisions): one reward each, bounded memory."""

from __future__ import annotations

import pytest

from gateway.decisions import AlreadyRewardedError, PendingDecisions, UnknownDecisionError


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_reward_reaches_whoever_served_the_decision() -> None:
    pending = PendingDecisions()
    pending.add("d1", "offers", "candidate", "42")
    served = pending.reward("d1", "offers")
    assert (served.target, served.arm, served.version) == ("offers", "candidate", "42")


def test_a_second_reward_for_the_same_decision_is_refused() -> None:
    pending = PendingDecisions()
    pending.add("d1", "offers", "incumbent", "41")
    pending.reward("d1", "offers")
    with pytest.raises(AlreadyRewardedError):
        pending.reward("d1", "offers")


def test_an_unknown_decision_or_another_targets_is_unknown() -> None:
    pending = PendingDecisions()
    pending.add("d1", "offers", "incumbent", "41")
    with pytest.raises(UnknownDecisionError):
        pending.reward("d2", "offers")
    with pytest.raises(UnknownDecisionError):
        pending.reward("d1", "ranker")
    assert pending.reward("d1", "offers").version == "41"  # the wrong target did not consume it


def test_a_decision_expires_after_the_ttl() -> None:
    clock = Clock()
    pending = PendingDecisions(ttl=60, clock=clock)
    pending.add("old", "offers", "incumbent", "41")
    clock.now += 30
    pending.add("young", "offers", "incumbent", "41")
    clock.now += 31  # "old" is 61s old, "young" 31s
    with pytest.raises(UnknownDecisionError):
        pending.reward("old", "offers")
    assert pending.reward("young", "offers").arm == "incumbent"
    assert len(pending) == 1


def test_beyond_capacity_the_oldest_decisions_are_forgotten() -> None:
    pending = PendingDecisions(capacity=3)
    for n in range(5):
        pending.add(f"d{n}", "offers", "incumbent", "41")
    assert len(pending) == 3
    for forgotten in ["d0", "d1"]:
        with pytest.raises(UnknownDecisionError):
            pending.reward(forgotten, "offers")
    for kept in ["d2", "d3", "d4"]:
        pending.reward(kept, "offers")


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        PendingDecisions(capacity=0)
