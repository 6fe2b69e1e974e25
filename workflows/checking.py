"""What one check asks of monitoring: its query variables and the whole check input.

One pure rule for every place that judges a check: the workflow renders its checks with it, and
`lockgate backtest` replays recorded data with it, so a replay judges exactly what the rollout
would have judged at the same instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from activities.contracts import CheckInput, ReviewCounts
from rollout_specs import RollbackTrigger, RolloutSpec, Stage

__all__ = ["check_input", "promql_window", "template_variables"]


def promql_window(value: timedelta) -> str:
    """A duration as a PromQL range: whole seconds, at least 1 (`90s`)."""
    return f"{max(1, round(value.total_seconds()))}s"


def template_variables(
    spec: RolloutSpec,
    stage: Stage,
    *,
    at: datetime,
    stage_start: datetime,
    rollout_start: datetime,
    percent: float,
) -> dict[str, str]:
    """The query variables of a check of `stage` at `at`.

    The windows run from the stage's start and from the first live stage's start, and are
    never shorter than one check_interval (a window of a few seconds holds no scrape yet);
    `percent` is the candidate's live share (0 in shadow).
    """
    body = spec.spec
    return {
        "target": body.target,
        "incumbent": body.incumbent.version,
        "candidate": body.candidate.version,
        "rollout": spec.metadata.name,
        "stage": stage.name,
        "percent": f"{percent:g}",
        "stage_window": promql_window(max(at - stage_start, body.check_interval)),
        "rollout_window": promql_window(max(at - rollout_start, body.check_interval)),
        "check_interval": promql_window(body.check_interval),
    }


def check_input(
    spec: RolloutSpec,
    stage: Stage,
    triggers: Sequence[RollbackTrigger],
    *,
    at: datetime,
    stage_start: datetime,
    rollout_start: datetime,
    percent: float,
    reviews: ReviewCounts,
) -> CheckInput:
    """The check of `triggers` (and the stage's gate) at `at`, as the worker receives it."""
    body = spec.spec
    gate = stage.advance_when
    metrics = {metric for t in triggers for metric in t.arm_metrics}
    if gate is not None:
        metrics.add(gate.non_inferior)
    elapsed = at - stage_start
    variables = template_variables(
        spec, stage, at=at, stage_start=stage_start, rollout_start=rollout_start, percent=percent
    )
    return CheckInput(
        monitoring=body.monitoring,
        triggers=list(triggers),
        variables=variables,
        metrics={name: body.metric(name) for name in sorted(metrics)},
        alphas={t.name: body.trigger_alpha(t) for t in triggers if t.statistical},
        expected_samples=stage.expected_samples,
        gate=gate,
        gate_alpha=body.alpha,
        reviews=reviews,
        stage_elapsed=elapsed.total_seconds(),
        stage_left=max(timedelta(0), stage.min_duration - elapsed).total_seconds(),
    )
