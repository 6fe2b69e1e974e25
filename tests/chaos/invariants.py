"""What "nothing is lost" means, checked the same way after every chaos scenario.

`assert_nothing_lost` reads three independent witnesses (the router's PUT log and its current
route, the monitoring server's answered queries, and the rollout's own status) and asserts:

1. route generations the router accepted only rise, per target (a 200 never goes backwards, and
   every stored change is newer than the one before);
2. the distinct routes the router stored are exactly those of an uninterrupted run: one per stage
   entered, in order, then the final `off` route (no stage re-run, skipped or lost);
3. no stage advanced without a passing check: every `advanced` stage counted checks >= 1, has
   exactly one `advance` audit entry, and monitoring answered a passing value for the target while
   the stage was baking;
4. a requested rollback landed and was PUT: phase `rolled_back`, the router serves the incumbent
   with mode `off` at the rollout's last generation, and answered that PUT with 200;
5. the audit trail is complete, each entry once: `submitted`, `stage_started` per stage entered,
   `rollback` with its actor and reason then `rollback_landed`, or `completed`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from rollout_specs import RolloutSpec, StageMode, ThresholdTrigger
from tests.chaos.cluster import SUBMITTER, Cluster, MonitoringQuery
from tests.chaos.router_process import PutRecord
from workflows.messages import StatusResult
from workflows.state import Phase, RolloutState

__all__ = ["Rollback", "RouteKey", "assert_nothing_lost", "expected_routes", "stored_routes"]

RouteKey = tuple[str, float, str]
"""A route as the suite compares them: (mode, percent, incumbent version)."""

CLOCK_SLACK: Final = 0.5
"""Seconds of slack between the workflow's clock and the test's when placing a query in a stage."""


@dataclass(frozen=True)
class Rollback:
    """A rollback the scenario requested: who and why, as they must appear in the audit."""

    actor: str
    reason: str


def expected_routes(spec: RolloutSpec, *, through: str, rolled_back: bool) -> list[RouteKey]:
    """The routes of an uninterrupted run that enters stages up to `through`, then ends."""
    body = spec.spec
    routes: list[RouteKey] = []
    for stage in body.stages:
        if stage.mode is StageMode.SHADOW:
            routes.append(("shadow", 0.0, body.incumbent.version))
        else:
            routes.append(("split", float(stage.percent or 0), body.incumbent.version))
        if stage.name == through:
            break
    else:
        raise ValueError(f"the spec has no stage {through!r}")
    final = body.incumbent if rolled_back else body.candidate
    return [*routes, ("off", 0.0, final.version)]


def stored_routes(puts: list[PutRecord]) -> list[PutRecord]:
    """The PUTs that changed the stored route: answered 200 with a generation not seen before."""
    seen: set[int] = set()
    stored = []
    for record in puts:
        if record.event == "answered" and record.status == 200 and record.generation not in seen:
            seen.add(record.generation)
            stored.append(record)
    return stored


async def assert_nothing_lost(
    cluster: Cluster,
    spec: RolloutSpec,
    *,
    through: str,
    rollback: Rollback | None,
) -> StatusResult:
    """Assert every invariant of the module docstring for the rollout of `spec`; its status.

    Args:
        cluster: The cluster the rollout ran on (its router, monitoring and Temporal server).
        spec: The rollout's spec.
        through: The last stage the rollout entered.
        rollback: The rollback the scenario requested, or None when the rollout must complete.
    """
    target = spec.spec.target
    status = await cluster.status(target)
    state = status.state
    puts = cluster.router.puts(target)
    _assert_generations_only_rise(puts, target)
    stored = stored_routes(puts)
    routes = [(r.mode, float(r.percent), r.incumbent) for r in stored]
    assert routes == expected_routes(spec, through=through, rolled_back=rollback is not None), (
        f"the router stored {routes} for {target}: a stage was re-run, skipped or lost"
    )
    assert {r.rollout_id for r in stored} == {state.rollout_id}, "one rollout owns every route"
    await _assert_final_route(cluster, spec, state, stored[-1], rolled_back=rollback is not None)
    _assert_advances_had_passing_checks(spec, state, cluster.metrics.answered(target))
    _assert_audit_complete(state, rollback)
    if rollback is None:
        assert state.phase is Phase.COMPLETED, f"phase {state.phase}: {state.outcome}"
    else:
        assert state.phase is Phase.ROLLED_BACK, f"phase {state.phase}: {state.outcome}"
        assert state.rollback is not None
        assert (state.rollback.actor, state.rollback.reason) == (rollback.actor, rollback.reason)
    assert [s.name for s in state.stages] == _stage_names(spec, through)
    return status


def _assert_generations_only_rise(puts: list[PutRecord], target: str) -> None:
    accepted = [r.generation for r in puts if r.event == "answered" and r.status == 200]
    assert accepted, f"the router accepted no route for {target}"
    assert accepted == sorted(accepted), f"accepted generations went backwards: {accepted}"
    changes = [r.generation for r in stored_routes(puts)]
    assert changes == sorted(set(changes)), f"stored generations did not strictly rise: {changes}"


async def _assert_final_route(
    cluster: Cluster,
    spec: RolloutSpec,
    state: RolloutState,
    last: PutRecord,
    *,
    rolled_back: bool,
) -> None:
    target = spec.spec.target
    route = await cluster.router.route(target)
    assert route is not None, f"the router has no route for {target}"
    serving = spec.spec.incumbent if rolled_back else spec.spec.candidate
    assert route["mode"] == "off", f"the router still splits {target}: {route}"
    assert route["candidate"] is None, f"a candidate is still routed: {route}"
    assert route["incumbent"]["version"] == serving.version, f"serving {route['incumbent']}"
    assert route["generation"] == state.generation == last.generation, (
        f"router holds generation {route['generation']}, the rollout's last is "
        f"{state.generation}, the last PUT stored {last.generation}"
    )
    assert (last.status, last.mode) == (200, "off"), f"the final route was not PUT: {last}"


def _assert_advances_had_passing_checks(
    spec: RolloutSpec, state: RolloutState, queries: list[MonitoringQuery]
) -> None:
    trigger = spec.spec.rollback_triggers[0]
    above = trigger.threshold.above if isinstance(trigger, ThresholdTrigger) else None
    assert above is not None, "the chaos specs' trigger is `above` a threshold"
    advances = Counter(entry.stage for entry in state.audit if entry.action == "advance")
    for record in state.stages:
        if record.outcome != "advanced":
            assert advances[record.name] == 0, f"stage {record.name} has an advance entry"
            continue
        assert record.checks >= 1, f"stage {record.name} advanced after {record.checks} checks"
        assert advances[record.name] == 1, (
            f"stage {record.name} advanced with {advances[record.name]} advance entries"
        )
        assert record.ended_at is not None
        start = record.started_at.timestamp() - CLOCK_SLACK
        end = record.ended_at.timestamp() + CLOCK_SLACK
        passing = [
            q
            for q in queries
            if start <= q.at <= end and isinstance(q.value, float) and q.value <= above
        ]
        assert passing, (
            f"monitoring answered no passing value while stage {record.name} baked "
            f"({record.started_at} - {record.ended_at})"
        )


def _assert_audit_complete(state: RolloutState, rollback: Rollback | None) -> None:
    audit = state.audit
    actions = Counter(entry.action for entry in audit)
    assert (audit[0].action, audit[0].actor) == ("submitted", SUBMITTER), audit[0]
    assert actions["submitted"] == 1
    started = Counter(entry.stage for entry in audit if entry.action == "stage_started")
    for index, record in enumerate(state.stages):
        last = index == len(state.stages) - 1
        entered = record.outcome == "advanced" or record.checks > 0
        expected = {1} if entered else {0, 1} if last else {1}
        assert started[record.name] in expected, (
            f"stage {record.name} has {started[record.name]} stage_started entries"
        )
    times = [entry.at for entry in audit]
    assert times == sorted(times), "the audit trail is out of order"
    if rollback is None:
        assert (actions["completed"], actions["rollback"]) == (1, 0), dict(actions)
        assert audit[-1].action == "completed", audit[-1]
        return
    requests = [entry for entry in audit if entry.action == "rollback"]
    assert len(requests) == 1, f"rollback entries: {requests}"
    assert (requests[0].actor, requests[0].reason) == (rollback.actor, rollback.reason)
    assert (actions["rollback_landed"], actions["completed"]) == (1, 0), dict(actions)
    landed = next(entry for entry in audit if entry.action == "rollback_landed")
    assert landed.at >= requests[0].at
    assert rollback.actor in landed.reason, landed.reason


def _stage_names(spec: RolloutSpec, through: str) -> list[str]:
    names = [stage.name for stage in spec.spec.stages]
    return names[: names.index(through) + 1]
