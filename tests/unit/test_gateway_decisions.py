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


def test_adding_forgets_what_expired_meanwhile_and_then_tracks_the_next_oldest() -> None:
    clock = Clock()
    pending = PendingDecisions(ttl=60, clock=clock)
    pending.add("first", "offers", "incumbent", "41")
    clock.now += 40
    pending.add("second", "offers", "incumbent", "41")
    clock.now += 21  # "first" is 61s old: the next add forgets it, and only it
    pending.add("third", "offers", "incumbent", "41")
    assert len(pending) == 2
    clock.now += 40  # "second" is 21 + 40 = 61s old now, "third" 40s
    pending.add("fourth", "offers", "incumbent", "41")
    assert len(pending) == 2
    with pytest.raises(UnknownDecisionError):
        pending.reward("second", "offers")
    clock.now += 200  # everything expired: the memory empties, and starts again
    pending.add("fifth", "offers", "incumbent", "41")
    assert len(pending) == 1
    clock.now += 59
    pending.add("sixth", "offers", "incumbent", "41")
    assert len(pending) == 2


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
