"""What the Temporal UI shows of a rollout: search attributes and the current-details markdown.

The UI is lockgate's status page: a release engineer filters the workflow list by
`LockgateTarget` or `LockgatePhase` and reads the current details without any other tool.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from rollout_specs import RolloutSpec, StageMode, format_duration
from workflows.commands import in_holdback, open_record, review_progress
from workflows.state import Phase, RolloutState

__all__ = [
    "CANDIDATE",
    "PERCENT",
    "PHASE",
    "SEARCH_ATTRIBUTES",
    "STAGE",
    "TARGET",
    "current_details",
    "search_attribute_updates",
    "stage_percent",
    "starting_search_attributes",
]

TARGET = SearchAttributeKey.for_keyword("LockgateTarget")
STAGE = SearchAttributeKey.for_keyword("LockgateStage")
PHASE = SearchAttributeKey.for_keyword("LockgatePhase")
PERCENT = SearchAttributeKey.for_float("LockgatePercent")
CANDIDATE = SearchAttributeKey.for_keyword("LockgateCandidate")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str] | SearchAttributeKey[float], ...] = (
    TARGET,
    STAGE,
    PHASE,
    PERCENT,
    CANDIDATE,
)
"""Every key lockgate writes; the server must have them registered before a rollout starts."""


def stage_percent(spec: RolloutSpec, state: RolloutState) -> float:
    """The candidate's live traffic share now: 0 offline, in shadow and after rollback."""
    if state.phase is Phase.COMPLETED:
        return 100.0
    if state.phase is Phase.ROLLED_BACK:
        return 0.0
    if state.phase is Phase.ABANDONED:  # nothing more was routed: the last route that landed
        return state.live_percent
    if not state.stage_routed:  # between stages (or awaiting approval): the last route serves
        return state.live_percent
    stages = spec.spec.course
    stage = stages[min(state.stage_index, len(stages) - 1)]
    return stage.percent or 0.0 if stage.mode is StageMode.SPLIT else 0.0


def _stage_name(spec: RolloutSpec, state: RolloutState) -> str:
    stages = spec.spec.course
    if state.stage_index < len(stages):
        return stages[state.stage_index].name
    return stages[-1].name


def _pairs(
    spec: RolloutSpec, stage: str, phase: Phase, percent: float
) -> list[SearchAttributePair[str] | SearchAttributePair[float]]:
    return [
        SearchAttributePair(TARGET, spec.spec.target),
        SearchAttributePair(STAGE, stage),
        SearchAttributePair(PHASE, phase.value),
        SearchAttributePair(PERCENT, percent),
        SearchAttributePair(CANDIDATE, spec.spec.candidate.version),
    ]


def starting_search_attributes(spec: RolloutSpec) -> TypedSearchAttributes:
    """The search attributes a rollout starts with, so it is findable before its first task."""
    return TypedSearchAttributes(_pairs(spec, spec.spec.stages[0].name, Phase.STARTING, 0.0))


def search_attribute_updates(
    spec: RolloutSpec, state: RolloutState, current: TypedSearchAttributes
) -> list[SearchAttributeUpdate[Any]]:
    """The upserts that bring `current` to this moment; empty when nothing changed.

    Each upsert is a history event, so unchanged values are not sent again at every check.
    """
    pairs = _pairs(spec, _stage_name(spec, state), state.phase, stage_percent(spec, state))
    return [_update(pair) for pair in pairs if current.get(pair.key) != pair.value]


def _update(pair: SearchAttributePair[Any]) -> SearchAttributeUpdate[Any]:
    return pair.key.value_set(pair.value)


def current_details(spec: RolloutSpec, state: RolloutState) -> str:
    """A short markdown page for the UI: where the rollout is, each verdict's evidence, who acted.

    Tables, so a human scans a stage and its triggers at a glance in the Temporal UI.
    """
    body = spec.spec
    stage = _stage_name(spec, state)
    course = body.course
    position = f"({min(state.stage_index + 1, len(course))} of {len(course)})"
    last_check = (
        f"{state.last_check.checked_at:%H:%M:%S} UTC (every {format_duration(body.check_interval)})"
        if state.last_check
        else "none yet"
    )
    lines = [
        f"**{spec.metadata.name}**: `{body.target}` {body.incumbent.version} -> "
        f"{body.candidate.version}",
        "",
        "| stage | candidate traffic | phase | last check |",
        "| --- | --- | --- | --- |",
        _row(
            f"`{stage}` {position}",
            f"{stage_percent(spec, state):g}%",
            f"`{state.phase.value}`",
            last_check,
        ),
    ]
    if (holdback := _holdback_line(spec, state)) is not None:
        lines += ["", holdback]
    if state.escalation:
        lines += ["", f"**Needs a human:** {state.escalation}"]
    if state.rollback:
        lines += ["", f"**Rollback** by {state.rollback.actor}: {state.rollback.reason}"]
    if state.outcome:
        lines += ["", f"**Outcome:** {state.outcome}"]
    approval = course[min(state.stage_index, len(course) - 1)].approval
    if approval is not None and state.approval_asked_at is not None:
        given = ", ".join(entry.actor for entry in state.approvals) or "none yet"
        lines += [
            "",
            f"**Awaiting approval:** {approval.required} of {', '.join(approval.approvers)} "
            f"(approved: {given}; asked {state.approval_asked_at:%H:%M:%S} UTC, times out after "
            f"{format_duration(approval.timeout)})",
        ]
    if body.guardrails.review is not None:
        lines += ["", f"**Reviews:** {review_progress(spec, state)}"]
    if state.last_check:
        verdicts = [*state.last_check.verdicts]
        if state.last_check.gate is not None:
            verdicts.append(state.last_check.gate)
        lines += ["", "| trigger | verdict | evidence |", "| --- | --- | --- |"]
        lines += [_row(f"`{v.trigger}`", f"**{v.outcome.value}**", v.detail) for v in verdicts]
    if state.audit:
        last = state.audit[-1]
        lines += ["", f"Last action: {last.action} by {last.actor} ({last.reason})"]
    return "\n".join(lines)


def _holdback_line(spec: RolloutSpec, state: RolloutState) -> str | None:
    """During the holdback: who is held back, on which version, and until when at the earliest.

    The earliest end is what a human weighs before ending it early with `lockgate promote`.
    """
    holdback = spec.spec.holdback
    if holdback is None or not in_holdback(spec, state) or state.rollback is not None:
        return None
    share = f"{holdback.percent:g}% of decisions stay on {spec.spec.incumbent.version}"
    record = open_record(state)
    if record is None or not state.stage_routed:
        return f"**Holdback:** {share} for {format_duration(holdback.duration)} (starting)"
    ends = record.started_at + holdback.duration
    return (
        f"**Holdback:** {share} for {format_duration(holdback.duration)}, until "
        f"{ends:%Y-%m-%d %H:%M} UTC at the earliest (and only with the latest check passing; "
        "`lockgate promote` ends it now)"
    )


def _row(*cells: str) -> str:
    """One markdown table row; a `|` or line break inside a cell would break the table."""
    escaped = (" ".join(cell.split()).replace("|", "\\|") for cell in cells)
    return "| " + " | ".join(escaped) + " |"
