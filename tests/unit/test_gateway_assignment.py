"""Sticky, scoped arm assignment (gateway.assignment): pure, so checked over many units."""

from __future__ import annotations

import pytest

from gateway.assignment import Arm, assign, in_scope, position

UNITS = [f"user-{n}" for n in range(20_000)]
SHARE_TOLERANCE = 1.5
"""Percentage points. The hash is deterministic, so this is not a flaky bound: at 50% the
binomial standard deviation over 20,000 units is 0.35 points, so 1.5 is over 4 of them."""


def _candidates(rollout_id: str, percent: float, units: list[str] = UNITS) -> set[str]:
    return {u for u in units if assign(rollout_id, u, percent, None, {}) is Arm.CANDIDATE}


def test_a_unit_gets_the_same_arm_on_every_request() -> None:
    first = [assign("rollout-a", u, 30, None, {}) for u in UNITS[:2000]]
    again = [assign("rollout-a", u, 30, None, {}) for u in UNITS[:2000]]
    assert first == again
    assert set(first) == {Arm.CANDIDATE, Arm.INCUMBENT}


def test_raising_the_percent_never_moves_a_unit_back_to_the_incumbent() -> None:
    previous: set[str] = set()
    for percent in [0.5, 1, 5, 10, 25, 50, 75, 99.9, 100]:
        now = _candidates("rollout-a", percent)
        assert previous <= now, f"units left the candidate when raising to {percent}%"
        previous = now
    assert previous == set(UNITS)


@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_the_candidate_share_converges_to_the_percent(percent: float) -> None:
    share = 100 * len(_candidates("rollout-a", percent)) / len(UNITS)
    assert share == pytest.approx(percent, abs=SHARE_TOLERANCE)


def test_zero_percent_serves_nobody_and_a_hundred_serves_everyone() -> None:
    assert _candidates("rollout-a", 0) == set()
    assert _candidates("rollout-a", 100) == set(UNITS)


def test_a_new_rollout_reshuffles_units_independently() -> None:
    first, second = _candidates("rollout-a", 50), _candidates("rollout-b", 50)
    assert first != second
    # independent draws: half of one rollout's candidates are the other's
    assert 100 * len(first & second) / len(first) == pytest.approx(50, abs=SHARE_TOLERANCE * 2)


def test_the_boundary_between_rollout_and_unit_ids_cannot_collide() -> None:
    assert position("ab", "c") != position("a", "bc")


def test_positions_stay_in_zero_to_a_hundred() -> None:
    positions = [position("rollout-a", u) for u in UNITS]
    assert all(0 <= p < 100 for p in positions)
    assert min(positions) < 1
    assert max(positions) > 99


def test_a_scoped_split_only_gives_the_candidate_to_units_in_scope() -> None:
    scope = {"region": ["eu-west-1", "eu-central-1"], "tier": ["gold"]}
    inside = {"region": "eu-central-1", "tier": "gold", "device": "ios"}
    assert all(assign("r", u, 100, scope, inside) is Arm.CANDIDATE for u in UNITS[:500])
    for outside in [
        {"region": "us-east-1", "tier": "gold"},  # value not listed
        {"region": "eu-west-1"},  # a scope label missing
        {},  # no attributes at all
    ]:
        assert all(assign("r", u, 100, scope, outside) is Arm.INCUMBENT for u in UNITS[:500])


def test_a_scoped_split_serves_the_percent_of_in_scope_units() -> None:
    scope = {"region": ["eu-west-1"]}
    chosen = [assign("r", u, 25, scope, {"region": "eu-west-1"}) for u in UNITS]
    share = 100 * chosen.count(Arm.CANDIDATE) / len(UNITS)
    assert share == pytest.approx(25, abs=SHARE_TOLERANCE)


@pytest.mark.parametrize("scope", [None, {}])
def test_no_scope_admits_every_unit(scope: dict[str, list[str]] | None) -> None:
    assert in_scope(scope, {})
    assert in_scope(scope, {"region": "anywhere"})
