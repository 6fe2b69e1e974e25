"""The holdback's pure rules: the spec field, the stage it runs as, its checks, phase and page.

The holdback is the spec's last split stage at `100 - percent` that cannot end before its
duration; these tests pin that down without a server (the workflow's own run is in
tests/workflow/test_holdback.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from rollout_specs import RolloutSpec, SpecError, StageMode, parse_spec
from rollout_specs.models import HOLDBACK_STAGE
from runtime.outcomes import ExitCode, outcome_of, outcome_on_timeout
from runtime.watching import EventTracker
from tests.conftest import build_spec, spec_document
from workflows.commands import (
    Command,
    Situation,
    carry_out,
    current_stage,
    in_holdback,
    refusal,
    running_phase,
)
from workflows.messages import ControlInput, StatusResult
from workflows.progression import Action, assess
from workflows.state import AuditEntry, Phase, RollbackRequest, RolloutState, StageRecord
from workflows.visibility import (
    PERCENT,
    PHASE,
    STAGE,
    current_details,
    search_attribute_updates,
    stage_percent,
    starting_search_attributes,
)

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
SPEC_STAGES = 4
"""shadow, canary, half, full: the holdback is the fifth stage of the course (index 4)."""


def _document(holdback: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker")
    document["spec"]["rollback_triggers"].append(
        {"name": "conversion", "compare": {"metric": "reward", "max_drop": 0.05}}
    )
    if holdback is not None:
        document["spec"]["holdback"] = holdback
    document["spec"].update(changes)
    return document


def _spec(percent: float = 1, duration: str = "7d") -> RolloutSpec:
    return build_spec(_document({"percent": percent, "duration": duration}))


def _problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document, "spec.yaml")
    return caught.value.problems


# ----------------------------------------------------------------------------- the spec


def test_the_holdback_runs_as_a_last_split_stage_that_bakes_for_its_duration() -> None:
    body = _spec(percent=1, duration="7d").spec
    stage = body.holdback_stage()
    assert stage is not None
    assert (stage.name, stage.mode, stage.percent) == (HOLDBACK_STAGE, StageMode.SPLIT, 99)
    assert stage.min_duration == timedelta(days=7)
    assert (stage.max_duration, stage.advance_when, stage.scope) == (None, None, None)
    assert [s.name for s in body.course] == ["shadow", "canary", "half", "full", "holdback"]


def test_without_a_holdback_the_course_is_the_spec_stages_and_the_payload_is_unchanged() -> None:
    spec = build_spec(_document())
    assert spec.spec.holdback is None
    assert spec.spec.holdback_stage() is None
    assert spec.spec.course == spec.spec.stages
    # Specs recorded in histories (and routers reading them) see no new key.
    assert "holdback" not in json.loads(spec.model_dump_json())["spec"]


def test_a_holdback_round_trips_through_the_json_the_workflow_carries() -> None:
    spec = _spec(percent=2.5, duration="36h")
    again = RolloutSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.spec.holdback is not None
    assert again.spec.holdback.percent == 2.5
    assert again.spec.holdback.duration == timedelta(hours=36)


def test_the_holdback_compares_arms_where_the_full_stage_cannot() -> None:
    body = _spec().spec
    full, holdback = body.course[-2:]
    assert [t.name for t in body.triggers_for(full)] == ["error-rate"]
    assert holdback is not None
    assert [t.name for t in body.triggers_for(holdback)] == ["error-rate", "conversion"]


@pytest.mark.parametrize(
    ("holdback", "expected"),
    [
        ({"percent": 0, "duration": "7d"}, "spec.holdback.percent: must be greater than 0, got 0"),
        ({"percent": 51, "duration": "7d"}, "spec.holdback.percent: must be at most 50, got 51"),
        ({"percent": 1}, "spec.holdback.duration: required field is missing"),
        ({"percent": 1, "duration": "7d", "until": "x"}, "spec.holdback.until: unknown key"),
    ],
)
def test_holdback_fields_are_bounded(holdback: dict[str, Any], expected: str) -> None:
    problems = _problems(_document(holdback))
    assert len(problems) == 1
    assert problems[0].startswith(expected), problems


def test_a_holdback_shorter_than_the_check_interval_is_refused() -> None:
    problems = _problems(_document({"percent": 1, "duration": "10s"}, check_interval="30s"))
    assert problems == [
        "spec.holdback.duration: 10s is shorter than check_interval (30s), so the holdback would "
        "end before its first check; make it at least as long"
    ]


def test_a_holdback_needs_a_trigger_that_compares_the_arms_in_split_stages() -> None:
    document = _document({"percent": 1, "duration": "7d"})
    document["spec"]["rollback_triggers"][1]["modes"] = ["shadow"]  # compares, but never in split
    assert _problems(document) == [
        "spec.holdback: no rollback trigger compares the candidate with the incumbent in split "
        "stages, so the holdback could only end on silence; add one, e.g. {name: reward, "
        "compare: {metric: reward, max_drop: 0.02, relative: true}}, or remove holdback"
    ]


def test_no_stage_may_take_the_holdback_stage_name() -> None:
    document = _document({"percent": 1, "duration": "7d"})
    document["spec"]["stages"][1]["name"] = "holdback"
    assert _problems(document) == [
        "spec.stages[1].name: stage name 'holdback' is the holdback's, which runs after the last "
        "stage; rename the stage"
    ]
    without = _document()
    without["spec"]["stages"][1]["name"] = "holdback"
    build_spec(without)  # the name is free when the spec has no holdback


# ----------------------------------------------------------------------------- its checks


def _check(error_rate: Outcome, conversion: Outcome, awaiting: bool = False) -> CheckResult:
    return CheckResult(
        checked_at=T0,
        verdicts=[
            TriggerVerdict(trigger="error-rate", outcome=error_rate, detail="error rate"),
            TriggerVerdict(
                trigger="conversion",
                outcome=conversion,
                detail="candidate - incumbent",
                awaiting_evidence=awaiting,
            ),
        ],
    )


P, F, N = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE


@pytest.mark.parametrize(
    ("error_rate", "conversion", "awaiting", "streak", "elapsed", "action"),
    [
        (P, P, False, 0, timedelta(days=6), Action.BAKE),  # healthy, but the duration is not over
        (P, P, False, 0, timedelta(days=7), Action.ADVANCE),  # over and passing: it completes
        (P, F, False, 0, timedelta(hours=1), Action.ROLLBACK),  # shown worse: revert
        (P, F, False, 0, timedelta(days=8), Action.ROLLBACK),  # even after the duration
        (P, N, False, 0, timedelta(days=8), Action.HOLD),  # no data never completes it
        (N, P, False, 2, timedelta(days=8), Action.ESCALATE),  # missing_data_limit 3: a human
        (P, N, True, 0, timedelta(days=8), Action.BAKE),  # a test still deciding: it waits
    ],
)
def test_the_holdback_is_judged_like_a_stage_and_ends_only_after_its_duration(
    error_rate: Outcome,
    conversion: Outcome,
    awaiting: bool,
    streak: int,
    elapsed: timedelta,
    action: Action,
) -> None:
    body = _spec(duration="7d").spec
    stage = body.holdback_stage()
    assert stage is not None
    result = assess(body, stage, _check(error_rate, conversion, awaiting), {}, streak, elapsed)
    assert result.action is action, result.reason
    if action is Action.ROLLBACK:
        assert result.tripped == "conversion"


# ----------------------------------------------------------------------------- phase, commands


def _state(phase: Phase = Phase.HOLDBACK, **changes: Any) -> RolloutState:
    """A state as the workflow leaves it once the holdback's route has landed."""
    state = RolloutState(
        rollout_id="r/1",
        submitted_by="alice",
        started_at=T0,
        phase=phase,
        stage_index=SPEC_STAGES,
        stage_routed=True,
        live_percent=99,
        stages=[StageRecord(name="holdback", started_at=T0)],
    )
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def _situation(spec: RolloutSpec, state: RolloutState) -> Situation:
    return Situation(spec=spec, state=state, submitted_by="alice")


def _entry(action: str, actor: str = "bob") -> AuditEntry:
    return AuditEntry(at=T0, actor=actor, action=action, reason="why", stage="holdback")


def test_the_holdback_is_its_own_phase_and_stage_only_after_the_spec_stages() -> None:
    spec = _spec()
    assert current_stage(spec, _state()).name == "holdback"
    assert (in_holdback(spec, _state()), running_phase(spec, _state())) == (True, Phase.HOLDBACK)
    full = _state(Phase.RUNNING, stage_index=SPEC_STAGES - 1)
    assert (in_holdback(spec, full), running_phase(spec, full)) == (False, Phase.RUNNING)
    without = build_spec(_document())
    done = _state(Phase.RUNNING, stage_index=SPEC_STAGES)
    assert (in_holdback(without, done), running_phase(without, done)) == (False, Phase.RUNNING)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (Command.PAUSE, None),
        (Command.PROMOTE, None),
        (Command.ROLLBACK, None),
        (Command.RESUME, "the rollout is not paused (phase holdback); nothing to resume"),
        (Command.APPROVE, "nothing awaits approval: stage holdback is holdback"),
    ],
)
def test_commands_in_the_holdback(command: Command, expected: str | None) -> None:
    request = ControlInput(actor="bob", reason="why")
    assert refusal(command, _situation(_spec(), _state()), request) == expected


def test_promote_ends_the_holdback_and_says_who_becomes_the_incumbent() -> None:
    spec, state = _spec(), _state()
    entry = _entry("promote", actor="carol")
    request = ControlInput(actor="carol", reason="why")
    effect = carry_out(Command.PROMOTE, _situation(spec, state), request, entry)
    assert effect.message == "the holdback ends now; 42 becomes the incumbent"
    assert effect.wake
    assert state.promote_requested == entry


def test_resume_in_the_holdback_returns_to_the_holdback_phase() -> None:
    spec = _spec()
    state = _state(Phase.PAUSED, paused_by=_entry("pause"))
    request = ControlInput(actor="bob", reason="ok")
    assert refusal(Command.PROMOTE, _situation(spec, state), request) == (
        "the rollout is paused; resume it before promoting"
    )
    carry_out(Command.RESUME, _situation(spec, state), request, _entry("resume"))
    assert (state.phase, state.paused_by) == (Phase.HOLDBACK, None)
    escalated = _state(Phase.PAUSED, paused_by=_entry("pause"), escalation="no evidence")
    carry_out(Command.RESUME, _situation(spec, escalated), request, _entry("resume"))
    assert escalated.phase is Phase.ESCALATED


# ----------------------------------------------------------------------------- what humans see


def test_search_attributes_and_percent_follow_the_holdback() -> None:
    spec = _spec(percent=1)
    state = _state()
    assert stage_percent(spec, state) == 99
    updates = search_attribute_updates(spec, state, starting_search_attributes(spec))
    values = {update.key.name: update.value for update in updates}
    assert values[PHASE.name] == "holdback"
    assert values[STAGE.name] == "holdback"
    assert values[PERCENT.name] == 99
    completed = _state(Phase.COMPLETED, stage_index=SPEC_STAGES + 1)
    assert stage_percent(spec, completed) == 100


def test_the_ui_page_says_who_is_held_back_and_until_when() -> None:
    spec = _spec(percent=1, duration="7d")
    markdown = current_details(spec, _state())
    assert "| `holdback` (5 of 5) | 99% | `holdback` |" in markdown
    assert (
        "**Holdback:** 1% of decisions stay on 41 for 7d, until 2026-12-08 06:00 UTC at the "
        "earliest (and only with the latest check passing; `lockgate promote` ends it now)"
    ) in markdown
    ended = current_details(spec, _state(Phase.COMPLETED, stage_index=SPEC_STAGES + 1))
    assert "**Holdback:**" not in ended
    before = current_details(spec, _state(Phase.RUNNING, stage_index=SPEC_STAGES - 1))
    assert "**Holdback:**" not in before


def test_watch_reports_the_holdback_as_the_last_stage() -> None:
    spec = _spec()
    tracker = EventTracker("ranker")
    events = tracker.observe(StatusResult(spec=spec, state=_state()), T0)
    assert [(e.event, e.message) for e in events] == [
        ("phase", "holdback"),
        ("stage", "holdback (5/5)"),
    ]


def test_a_holdback_is_progress_for_a_ci_job_not_an_outcome() -> None:
    assert outcome_of(Phase.HOLDBACK.value) is None
    assert outcome_on_timeout(Phase.HOLDBACK.value) is ExitCode.TIMED_OUT


def test_the_page_stops_announcing_the_holdback_once_it_is_ending() -> None:
    spec = _spec()
    promoting = _state(Phase.PROMOTING, stage_index=SPEC_STAGES + 1)
    assert not in_holdback(spec, promoting)
    assert "**Holdback:**" not in current_details(spec, promoting)
    reverting = _state(
        Phase.ROLLING_BACK,
        rollback=RollbackRequest(actor="trigger:conversion", reason="worse", at=T0),
    )
    assert "**Holdback:**" not in current_details(spec, reverting)
