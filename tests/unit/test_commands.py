"""The human commands as tables: every command in every phase, refused (and why) or taken."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rollout_specs import NotifyEvent, RolloutSpec
from tests.conftest import build_spec, spec_document
from workflows.commands import (
    REFUSALS,
    TRANSITIONS,
    Command,
    Situation,
    carry_out,
    refusal,
    stuck,
)
from workflows.messages import AbandonInput, ControlInput
from workflows.state import AuditAction, AuditEntry, Phase, RollbackRequest, RolloutState

T0 = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
TARGET = "ranker"
SUBMITTER = "alice"
CANARY = 1
"""The stage that needs approval: two of bob, carol and alice (the submitter)."""


def _spec() -> RolloutSpec:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target=TARGET)
    document["spec"]["stages"][CANARY]["approval"] = {
        "approvers": ["bob", "carol", "alice"],
        "required": 2,
        "timeout": "1h",
    }
    return build_spec(document)


SPEC = _spec()


def _entry(actor: str = "bob", action: str = "pause", reason: str = "look") -> AuditEntry:
    return AuditEntry(at=T0, actor=actor, action=action, reason=reason, stage="shadow")


def _state(phase: Phase, **changes: Any) -> RolloutState:
    """A state as the workflow leaves it in `phase`."""
    state = RolloutState(rollout_id="r/1", submitted_by=SUBMITTER, started_at=T0, phase=phase)
    state.stage_routed = phase not in (Phase.STARTING, Phase.AWAITING_APPROVAL)
    if phase is Phase.AWAITING_APPROVAL:
        state.stage_index = CANARY
        state.approval_asked_at = T0
    if phase is Phase.ESCALATED:
        state.escalation = "no evidence for 3 consecutive checks"
    if phase is Phase.PAUSED:
        state.paused_by = _entry("dave", reason="holiday freeze")
    if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        state.rollback = RollbackRequest(actor="trigger:errors", reason="errors up", at=T0)
    if phase is Phase.ROLLING_BACK:
        state.landing_since = T0
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def _situation(state: RolloutState, abandoned: AuditEntry | None = None) -> Situation:
    return Situation(spec=SPEC, state=state, submitted_by=SUBMITTER, abandoned=abandoned)


def _ask(
    command: Command,
    state: RolloutState,
    actor: str = "bob",
    reason: str = "why not",
    force: bool = False,
    abandoned: AuditEntry | None = None,
) -> str | None:
    request = (
        AbandonInput(actor=actor, reason=reason, force=force)
        if command is Command.ABANDON
        else ControlInput(actor=actor, reason=reason)
    )
    return refusal(command, _situation(state, abandoned), request)


ROLLING_BACK = (
    "the rollout is rolling back (trigger:errors: errors up); it ends once the router accepts "
    "the incumbent's route (`lockgate status` shows the last error); if the router cannot be "
    "fixed, `lockgate abandon ranker --reason ... --yes` ends it"
)
NOT_STUCK = (
    "the rollout is not stuck (phase {}, no route being retried): abandon is the last resort for "
    "a rollout that is rolling back, escalated or retrying a route; use rollback, pause or "
    "promote, or add --force to end it anyway"
)
VERB = {command: command.value for command in Command} | {Command.ROLLBACK: "roll back"}


def _ended(phase: Phase, command: Command) -> str:
    return f"the rollout has ended ({phase.value}); nothing to {VERB[command]}"


def _not_paused(phase: Phase) -> str:
    return f"the rollout is not paused (phase {phase.value}); nothing to resume"


STILL_ROUTING = "the stage's traffic is still being set; try again in a moment"
NO_REVIEW = (
    "the rollout of ranker routes no action to reviewers (its spec has no guardrails.review), "
    "so there is nothing to review"
)
PAUSED_BY = "already paused by dave at 2026-01-01 09:30:00 UTC (holiday freeze)"

# One row per phase: the answer to approve, pause, resume, promote, rollback, abandon (bob
# asking, with a reason); None means the command is taken.
EXPECTED: dict[Phase, dict[Command, str | None]] = {
    Phase.STARTING: {
        Command.APPROVE: "nothing awaits approval: stage shadow is starting",
        Command.PAUSE: None,
        Command.RESUME: _not_paused(Phase.STARTING),
        Command.PROMOTE: STILL_ROUTING,
        Command.ROLLBACK: None,
        Command.ABANDON: NOT_STUCK.format("starting"),
        Command.REVIEW: NO_REVIEW,
    },
    Phase.AWAITING_APPROVAL: {
        Command.APPROVE: None,
        Command.PAUSE: None,
        Command.RESUME: _not_paused(Phase.AWAITING_APPROVAL),
        Command.PROMOTE: STILL_ROUTING,
        Command.ROLLBACK: None,
        Command.ABANDON: NOT_STUCK.format("awaiting_approval"),
        Command.REVIEW: NO_REVIEW,
    },
    Phase.RUNNING: {
        Command.APPROVE: "nothing awaits approval: stage shadow is running",
        Command.PAUSE: None,
        Command.RESUME: _not_paused(Phase.RUNNING),
        Command.PROMOTE: None,
        Command.ROLLBACK: None,
        Command.ABANDON: NOT_STUCK.format("running"),
        Command.REVIEW: NO_REVIEW,
    },
    Phase.HELD: {
        Command.APPROVE: "nothing awaits approval: stage shadow is held",
        Command.PAUSE: None,
        Command.RESUME: _not_paused(Phase.HELD),
        Command.PROMOTE: None,
        Command.ROLLBACK: None,
        Command.ABANDON: NOT_STUCK.format("held"),
        Command.REVIEW: NO_REVIEW,
    },
    Phase.ESCALATED: {
        Command.APPROVE: "nothing awaits approval: stage shadow is escalated",
        Command.PAUSE: None,
        Command.RESUME: _not_paused(Phase.ESCALATED),
        Command.PROMOTE: None,
        Command.ROLLBACK: None,
        Command.ABANDON: None,
        Command.REVIEW: NO_REVIEW,
    },
    Phase.PAUSED: {
        Command.APPROVE: "nothing awaits approval: stage shadow is paused",
        Command.PAUSE: PAUSED_BY,
        Command.RESUME: None,
        Command.PROMOTE: "the rollout is paused; resume it before promoting",
        Command.ROLLBACK: None,
        Command.ABANDON: NOT_STUCK.format("paused"),
        Command.REVIEW: NO_REVIEW,
    },
    Phase.HOLDBACK: {
        Command.APPROVE: "nothing awaits approval: stage shadow is holdback",
        Command.PAUSE: None,
        Command.RESUME: _not_paused(Phase.HOLDBACK),
        Command.PROMOTE: None,
        Command.ROLLBACK: None,
        Command.ABANDON: NOT_STUCK.format("holdback"),
        Command.REVIEW: NO_REVIEW,
    },
    Phase.ROLLING_BACK: {
        Command.APPROVE: ROLLING_BACK,
        Command.PAUSE: ROLLING_BACK,
        Command.RESUME: _not_paused(Phase.ROLLING_BACK),
        Command.PROMOTE: ROLLING_BACK,
        Command.ROLLBACK: ROLLING_BACK,
        Command.ABANDON: None,
        Command.REVIEW: ROLLING_BACK,
    },
    Phase.PROMOTING: {
        **{
            command: f"the candidate is being made the incumbent; too late to {VERB[command]}"
            for command in (Command.APPROVE, Command.PAUSE, Command.PROMOTE, Command.ROLLBACK)
        },
        Command.RESUME: _not_paused(Phase.PROMOTING),
        Command.ABANDON: NOT_STUCK.format("promoting"),
        Command.REVIEW: NO_REVIEW,
    },
    **{
        phase: {
            **{command: _ended(phase, command) for command in Command},
            Command.RESUME: _not_paused(phase),
        }
        for phase in (Phase.ROLLED_BACK, Phase.COMPLETED, Phase.ABANDONED)
    },
}


def test_the_table_covers_every_command_in_every_phase() -> None:
    assert set(EXPECTED) == set(Phase)
    assert all(set(row) == set(Command) for row in EXPECTED.values())
    assert set(REFUSALS) == set(TRANSITIONS) == set(Command)


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("command", list(Command))
def test_every_command_in_every_phase(command: Command, phase: Phase) -> None:
    assert _ask(command, _state(phase)) == EXPECTED[phase][command]


def test_command_names_are_the_update_names_in_recorded_histories() -> None:
    assert [c.value for c in Command] == [
        "approve",
        "pause",
        "resume",
        "promote",
        "rollback",
        "abandon",
        "review",
    ]
    assert all(AuditAction(command).value == command.value for command in Command)


# ----------------------------------------------------------------------------- single rules


@pytest.mark.parametrize("command", list(Command))
def test_every_command_needs_an_actor_and_a_reason(command: Command) -> None:
    state = _state(Phase.RUNNING)
    assert _ask(command, state, actor=" ") == (
        "say who you are: the command needs an actor (--as NAME)"
    )
    assert _ask(command, state, reason="\t") == (
        "say why: the command needs a reason (--reason TEXT); it goes to the audit trail"
    )


@pytest.mark.parametrize("command", [c for c in Command if c is not Command.ABANDON])
def test_nothing_steers_a_rollout_being_abandoned(command: Command) -> None:
    abandoned = _entry("carol", "abandon", "router wedged")
    expected = (
        _not_paused(Phase.ESCALATED)
        if command is Command.RESUME
        else f"the rollout is being abandoned by carol; nothing to {VERB[command]}"
    )
    assert _ask(command, _state(Phase.ESCALATED), abandoned=abandoned) == expected


def test_abandon_is_taken_once() -> None:
    abandoned = _entry("carol", "abandon", "router wedged")
    assert _ask(Command.ABANDON, _state(Phase.ESCALATED), abandoned=abandoned) == (
        "already abandoned by carol (router wedged)"
    )


def test_force_abandons_a_rollout_that_is_not_stuck_but_not_one_that_ended() -> None:
    assert _ask(Command.ABANDON, _state(Phase.RUNNING), force=True) is None
    assert _ask(Command.ABANDON, _state(Phase.COMPLETED), force=True) == (
        "the rollout has ended (completed); nothing to abandon"
    )


@pytest.mark.parametrize(
    ("state", "is_stuck"),
    [
        (_state(Phase.ROLLING_BACK), True),
        (_state(Phase.ESCALATED), True),
        (_state(Phase.RUNNING), False),
        (_state(Phase.RUNNING, landing_since=T0), True),
        (_state(Phase.PROMOTING), False),
        (_state(Phase.PROMOTING, escalation="router refuses"), True),
        (_state(Phase.PAUSED, escalation="no evidence"), False),
    ],
)
def test_stuck(state: RolloutState, is_stuck: bool) -> None:
    assert stuck(state) is is_stuck


def test_a_promotion_the_router_refuses_can_be_abandoned_and_says_so() -> None:
    state = _state(Phase.PROMOTING, escalation="make 42 the incumbent has not landed")
    assert _ask(Command.PAUSE, state) == (
        "the candidate is being made the incumbent; too late to pause; if the router cannot be "
        "fixed, `lockgate abandon ranker --reason ... --yes` ends it"
    )
    assert _ask(Command.ABANDON, state) is None


def test_promote_is_taken_once_per_stage() -> None:
    state = _state(Phase.RUNNING, promote_requested=_entry("carol", "promote"))
    assert _ask(Command.PROMOTE, state) == "already promoted by carol"


def test_approval_rules() -> None:
    state = _state(Phase.AWAITING_APPROVAL)
    assert _ask(Command.APPROVE, state, actor=SUBMITTER) == (
        "four eyes: alice submitted this rollout and cannot approve it; ask bob or carol"
    )
    assert _ask(Command.APPROVE, state, actor="mallory") == (
        "mallory is not an approver of stage canary; its approvers are bob, carol, alice"
    )
    state.approvals.append(_entry("bob", "approve"))
    assert _ask(Command.APPROVE, state, actor="bob") == "bob has already approved stage canary"
    assert _ask(Command.APPROVE, state, actor="carol") is None


def test_four_eyes_with_no_one_else_to_ask() -> None:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target=TARGET)
    document["spec"]["stages"][CANARY]["approval"] = {"approvers": ["alice"]}
    state = _state(Phase.AWAITING_APPROVAL)
    situation = Situation(spec=build_spec(document), state=state, submitted_by=SUBMITTER)
    assert refusal(Command.APPROVE, situation, ControlInput(actor="alice", reason="me")) == (
        "four eyes: alice submitted this rollout and cannot approve it; ask another approver"
    )


def test_an_approval_stage_not_yet_asked_awaits_nothing() -> None:
    state = _state(Phase.RUNNING, stage_index=CANARY, stage_routed=False)
    assert _ask(Command.APPROVE, state) == "nothing awaits approval: stage canary is running"


# ----------------------------------------------------------------------------- transitions


def _do(
    command: Command, state: RolloutState, actor: str = "bob", reason: str = "why", **kw: Any
) -> tuple[Any, AuditEntry]:
    request = (
        AbandonInput(actor=actor, reason=reason, **kw)
        if command is Command.ABANDON
        else ControlInput(actor=actor, reason=reason)
    )
    entry = AuditEntry(at=T0, actor=actor, action=AuditAction(command), reason=reason)
    assert refusal(command, _situation(state), request) is None
    return carry_out(command, _situation(state), request, entry), entry


def test_pause_records_who_and_notifies() -> None:
    state = _state(Phase.HELD)
    effect, entry = _do(Command.PAUSE, state, reason="freeze")
    assert state.phase is Phase.PAUSED
    assert state.paused_by is entry
    assert state.audit == [entry]
    assert effect.message == "paused; checks continue, no stage will advance"
    assert effect.publish
    assert effect.notify == (NotifyEvent.PAUSED, "paused by bob: freeze")
    assert not effect.wake
    assert not effect.rollback
    assert not effect.abandon


@pytest.mark.parametrize(
    ("escalation", "phase"), [(None, Phase.RUNNING), ("no evidence", Phase.ESCALATED)]
)
def test_resume_returns_to_running_or_to_the_escalation(
    escalation: str | None, phase: Phase
) -> None:
    state = _state(Phase.PAUSED, escalation=escalation)
    effect, entry = _do(Command.RESUME, state)
    assert state.paused_by is None
    assert state.phase is phase
    assert state.audit == [entry]
    assert effect.message == "resumed"
    assert effect.publish
    assert effect.notify is None


def test_promote_wakes_the_stage() -> None:
    state = _state(Phase.RUNNING, stage_index=2)
    effect, entry = _do(Command.PROMOTE, state)
    assert state.promote_requested is entry
    assert state.phase is Phase.RUNNING
    assert state.audit == [entry]
    assert effect.message == "stage half ends now"
    assert effect.wake
    assert not effect.publish


def test_approvals_count_up_to_the_stage_starting() -> None:
    state = _state(Phase.AWAITING_APPROVAL)
    first, bob = _do(Command.APPROVE, state, actor="bob")
    assert first.message == "approved; stage canary needs 1 more approval(s)"
    second, carol = _do(Command.APPROVE, state, actor="carol")
    assert second.message == "approved; stage canary starts now"
    assert state.approvals == [bob, carol] == state.audit
    assert state.phase is Phase.AWAITING_APPROVAL
    assert not second.publish
    assert not second.wake


def test_rollback_leaves_the_request_to_the_workflow() -> None:
    state = _state(Phase.RUNNING)
    effect, _ = _do(Command.ROLLBACK, state)
    assert effect.rollback
    assert effect.message == "rolling back to the incumbent"
    assert state.audit == []  # the workflow's rollback request audits it, as automatic ones
    assert state.rollback is None


@pytest.mark.parametrize(("force", "forced"), [(False, ""), (True, " (forced)")])
def test_abandon_is_remembered_by_the_workflow(force: bool, forced: str) -> None:
    state = _state(Phase.ESCALATED)
    effect, entry = _do(Command.ABANDON, state, force=force)
    assert effect.abandon
    assert effect.message == (
        f"abandoned{forced}; lockgate stops managing ranker's route now, whatever the router holds"
    )
    assert state.audit == [entry]
    assert state.phase is Phase.ESCALATED  # the main loop ends it
