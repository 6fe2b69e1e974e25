"""Sticky, scoped arm assignment: which policy serves a unit, decided without any state.

A unit (a user, a session) is placed at a fixed point in [0, 100) by hashing the rollout id with
the unit id. The candidate serves the units below `percent`, so:

- the same unit lands on the same arm on every request, on every gateway replica, and after a
  gateway restart (nothing is stored);
- raising `percent` only adds units to the candidate: nobody moves back to the incumbent;
- a new rollout (a new rollout id) draws a fresh, independent sample of units.

Only units whose attributes match the route's scope are eligible at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from hashlib import blake2b

__all__ = ["Arm", "assign", "in_scope", "position"]

_SCALE = 100.0 / 2**64


class Arm(StrEnum):
    """The two sides of a rollout, as the metrics' `arm` label spells them."""

    INCUMBENT = "incumbent"
    CANDIDATE = "candidate"


def position(rollout_id: str, unit_id: str) -> float:
    """The unit's fixed point in [0, 100) for one rollout.

    The rollout id is length-prefixed so that no (rollout, unit) pair can collide with another by
    moving characters across the boundary ("ab" + "c" vs "a" + "bc").

    Args:
        rollout_id: The rollout that owns the route; a new one reshuffles every unit.
        unit_id: The unit to place.

    Returns:
        A number in [0, 100), uniform over units.
    """
    key = f"{len(rollout_id)}:{rollout_id}:{unit_id}".encode()
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big") * _SCALE


def in_scope(scope: Mapping[str, list[str]] | None, attributes: Mapping[str, str]) -> bool:
    """Whether a unit may be given the candidate under `scope`.

    Every label of the scope must be present in the unit's attributes with one of the listed
    values; a unit without the label is out of scope, so a scoped stage can never leak to units
    that did not say where they are. No scope (None or empty) admits every unit.
    """
    if not scope:
        return True
    for label, values in scope.items():
        value = attributes.get(label)
        if value is None or value not in values:
            return False
    return True


def assign(
    rollout_id: str,
    unit_id: str,
    percent: float,
    scope: Mapping[str, list[str]] | None,
    attributes: Mapping[str, str],
) -> Arm:
    """The arm that serves a unit in a split stage.

    Args:
        rollout_id: The route's rollout id.
        unit_id: The unit asking for a decision.
        percent: The candidate's share of in-scope units, 0 to 100.
        scope: The route's scope, or None for every unit.
        attributes: The unit's labels, matched against `scope`.

    Returns:
        `Arm.CANDIDATE` when the unit is in scope and its position is below `percent`, otherwise
        `Arm.INCUMBENT`.
    """
    if percent > 0 and in_scope(scope, attributes) and position(rollout_id, unit_id) < percent:
        return Arm.CANDIDATE
    return Arm.INCUMBENT
