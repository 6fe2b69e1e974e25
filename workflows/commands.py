"""The human commands: when the rollout takes each one, and what each one changes.

Pure rules over the rollout's state, no Temporal: the workflow's update validators ask
`refusal` and its update handlers call `carry_out`, so every command in every phase is tested as
a table without a server (tests/unit/test_commands.py). A refusal is a sentence for the human who
typed the command; the workflow raises it as the update's error, word for word.

The workflow keeps what needs Temporal: the clock (the audit entry's time), publishing the phase
to the search attributes, webhooks, logging, and requesting the rollback itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from activities.contracts import ReviewCounts
from activities.reviews import RecordedVerdict, Verdict
from rollout_specs import NotifyEvent, RolloutSpec, Stage
from workflows.messages import AbandonInput, ControlInput, ReviewInput
from workflows.state import TERMINAL_PHASES, AuditEntry, Phase, RolloutState, StageRecord

__all__ = [
    "PENDING_REVIEWS",
    "REFUSALS",
    "TRANSITIONS",
    "Command",
    "Effect",
    "Situation",
    "carry_out",
    "current_stage",
    "in_holdback",
    "listing_refusal",
    "missing_actor_or_reason",
    "open_record",
    "refusal",
    "review_progress",
    "review_reason",
    "running_phase",
    "stuck",
]


class Command(StrEnum):
    """A human command; its value is the workflow update's name, recorded in every history.

    The audit entry a command writes carries the same string (AuditAction has each of them).
    """

    APPROVE = "approve"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ABANDON = "abandon"
    REVIEW = "review"
    """A verdict on one of the candidate's proposals; the router records it first."""


PENDING_REVIEWS = "pending_reviews"
"""The update that lists the proposals waiting at the router: not a command (nothing changes,
nothing is audited), but an update, because only the worker may ask the router."""


@dataclass(frozen=True)
class Situation:
    """What a command is judged against: the spec, the state, and the workflow's own memory.

    `abandoned` is the accepted `abandon` command, kept by the workflow outside the state (it
    lives only until the run ends), so it is passed in.
    """

    spec: RolloutSpec
    state: RolloutState
    submitted_by: str
    abandoned: AuditEntry | None = None


@dataclass(frozen=True)
class Effect:
    """What the workflow does after a command changed the state, beyond the state itself."""

    message: str
    """The ControlResult message for the human."""
    publish: bool = False
    """The phase changed: publish it (search attributes, current details)."""
    notify: tuple[NotifyEvent, str] | None = None
    """A webhook event and its text, sent after publishing."""
    wake: bool = False
    """Cut the wait for the next check short: the main loop has something to act on."""
    rollback: bool = False
    """Request a rollback by the command's actor, for the command's reason."""
    abandon: bool = False
    """Remember the command as the rollout's abandonment; the main loop ends the rollout."""


Check = Callable[[Situation, ControlInput], str | None]
"""One rule: the refusal's text, or None when this rule lets the command through."""
Transition = Callable[[Situation, ControlInput, AuditEntry], Effect]
"""What an accepted command does to the state, given its audit entry (already timestamped)."""


def current_stage(spec: RolloutSpec, state: RolloutState) -> Stage:
    """The stage the rollout is in; the last one once every stage is done.

    A spec with a holdback runs it as a last stage, so during it that stage is `holdback`.
    """
    stages = spec.spec.course
    return stages[min(state.stage_index, len(stages) - 1)]


def in_holdback(spec: RolloutSpec, state: RolloutState) -> bool:
    """Whether every spec stage is done and the holdback (if the spec has one) has not ended."""
    body = spec.spec
    return body.holdback is not None and len(body.stages) <= state.stage_index < len(body.course)


def running_phase(spec: RolloutSpec, state: RolloutState) -> Phase:
    """The phase of a stage going its course: `holdback` during the holdback, else `running`.

    One place, so a check, a stage's start and `resume` all name the holdback the same way.
    """
    return Phase.HOLDBACK if in_holdback(spec, state) else Phase.RUNNING


def stuck(state: RolloutState) -> bool:
    """Rolling back, escalated, or retrying a route that must land: abandon is allowed."""
    return (
        state.phase in (Phase.ROLLING_BACK, Phase.ESCALATED)
        or state.landing_since is not None
        or (state.phase is Phase.PROMOTING and state.escalation is not None)
    )


def open_record(state: RolloutState) -> StageRecord | None:
    """The record of the stage running now, or None between stages (none is open)."""
    if state.stages and state.stages[-1].ended_at is None:
        return state.stages[-1]
    return None


def review_progress(spec: RolloutSpec, state: RolloutState) -> str:
    """Where the reviews stand, for a human: the rollout's verdicts and the stage's minimum.

    `3 approved, 1 rejected; stage canary: 4 of 20 proposals reviewed`.
    """
    counts = state.reviews
    text = f"{counts.approved} approved, {counts.rejected} rejected"
    stage = current_stage(spec, state)
    if stage.min_reviews is None:
        return text
    record = open_record(state)
    done = record.reviews if record is not None and record.name == stage.name else 0
    return f"{text}; stage {stage.name}: {done} of {stage.min_reviews} proposals reviewed"


def review_reason(request: ReviewInput, recorded: RecordedVerdict) -> str:
    """The audit entry's reason for a verdict: what was judged, then the reviewer's words.

    `reject proposal 3f2a: refund_full for unit u-17 (version 42): refund too large`.
    """
    proposal = recorded.proposal
    what = (
        f"{proposal.action} for unit {proposal.unit_id} (version {proposal.version})"
        if proposal is not None
        else "already recorded at the router by an earlier attempt"
    )
    said = f": {request.reason.strip()}" if request.reason.strip() else ""
    return f"{request.verdict.value} proposal {request.proposal_id}: {what}{said}"


def missing_actor_or_reason(command: ControlInput) -> str | None:
    """Every command names who sent it and why: the audit trail is useless without both."""
    if not command.actor.strip():
        return "say who you are: the command needs an actor (--as NAME)"
    if not command.reason.strip():
        return "say why: the command needs a reason (--reason TEXT); it goes to the audit trail"
    return None


# ----------------------------------------------------------------------------- refusal rules


def _explained(situation: Situation, command: ControlInput) -> str | None:
    return missing_actor_or_reason(command)


def _not_ended(verb: str) -> Check:
    def rule(situation: Situation, command: ControlInput) -> str | None:
        phase = situation.state.phase
        if phase in TERMINAL_PHASES:
            return f"the rollout has ended ({phase.value}); nothing to {verb}"
        return None

    return rule


def _not_being_abandoned(verb: str) -> Check:
    def rule(situation: Situation, command: ControlInput) -> str | None:
        if situation.abandoned is not None:
            by = situation.abandoned.actor
            return f"the rollout is being abandoned by {by}; nothing to {verb}"
        return None

    return rule


def _not_rolling_back(situation: Situation, command: ControlInput) -> str | None:
    rollback = situation.state.rollback
    if rollback is None:
        return None
    return (
        f"the rollout is rolling back ({rollback.actor}: {rollback.reason}); "
        "it ends once the router accepts the incumbent's route (`lockgate status` shows "
        "the last error); if the router cannot be fixed, `lockgate abandon "
        f"{situation.spec.spec.target} --reason ... --yes` ends it"
    )


def _not_promoting(verb: str) -> Check:
    def rule(situation: Situation, command: ControlInput) -> str | None:
        state = situation.state
        if state.phase is not Phase.PROMOTING:
            return None
        stuck_hint = (
            f"; if the router cannot be fixed, `lockgate abandon {situation.spec.spec.target} "
            "--reason ... --yes` ends it"
            if state.escalation
            else ""
        )
        return f"the candidate is being made the incumbent; too late to {verb}{stuck_hint}"

    return rule


def _live(verb: str) -> tuple[Check, ...]:
    """The rules of a command that steers a rollout still on its course.

    Not ended, not being abandoned, not rolling back, not already being promoted.
    """
    return (
        _explained,
        _not_ended(verb),
        _not_being_abandoned(verb),
        _not_rolling_back,
        _not_promoting(verb),
    )


def _not_paused(situation: Situation, command: ControlInput) -> str | None:
    by = situation.state.paused_by
    if by is None:
        return None
    return f"already paused by {by.actor} at {by.at:%Y-%m-%d %H:%M:%S} UTC ({by.reason})"


def _paused(situation: Situation, command: ControlInput) -> str | None:
    state = situation.state
    if state.paused_by is not None:
        return None
    return f"the rollout is not paused (phase {state.phase.value}); nothing to resume"


def _promotable(situation: Situation, command: ControlInput) -> str | None:
    state = situation.state
    if state.paused_by is not None:
        return "the rollout is paused; resume it before promoting"
    if not state.stage_routed:
        return "the stage's traffic is still being set; try again in a moment"
    if state.promote_requested is not None:
        return f"already promoted by {state.promote_requested.actor}"
    return None


def _awaiting_approval(situation: Situation, command: ControlInput) -> str | None:
    state = situation.state
    stage = current_stage(situation.spec, state)
    if stage.approval is None or state.approval_asked_at is None:
        return f"nothing awaits approval: stage {stage.name} is {state.phase.value}"
    return None


def _four_eyes(situation: Situation, command: ControlInput) -> str | None:
    if command.actor != situation.submitted_by:
        return None
    approval = current_stage(situation.spec, situation.state).approval
    assert approval is not None  # _awaiting_approval comes first
    others = [a for a in approval.approvers if a != situation.submitted_by]
    return (
        f"four eyes: {command.actor} submitted this rollout and cannot approve it; "
        f"ask {' or '.join(others) or 'another approver'}"
    )


def _an_approver(situation: Situation, command: ControlInput) -> str | None:
    stage = current_stage(situation.spec, situation.state)
    assert stage.approval is not None  # _awaiting_approval comes first
    if command.actor in stage.approval.approvers:
        return None
    return (
        f"{command.actor} is not an approver of stage {stage.name}; its approvers are "
        f"{', '.join(stage.approval.approvers)}"
    )


def _first_approval(situation: Situation, command: ControlInput) -> str | None:
    if not any(entry.actor == command.actor for entry in situation.state.approvals):
        return None
    stage = current_stage(situation.spec, situation.state)
    return f"{command.actor} has already approved stage {stage.name}"


def _not_abandoned(situation: Situation, command: ControlInput) -> str | None:
    abandoned = situation.abandoned
    if abandoned is None:
        return None
    return f"already abandoned by {abandoned.actor} ({abandoned.reason})"


def _stuck_or_forced(situation: Situation, command: ControlInput) -> str | None:
    forced = isinstance(command, AbandonInput) and command.force
    if forced or stuck(situation.state):
        return None
    return (
        f"the rollout is not stuck (phase {situation.state.phase.value}, no route being "
        "retried): abandon is the last resort for a rollout that is rolling back, escalated or "
        "retrying a route; use rollback, pause or promote, or add --force to end it anyway"
    )


def _reviewer_explained(situation: Situation, command: ControlInput) -> str | None:
    """An approval may go without a reason; a rejection, like every command, says why."""
    if not isinstance(command, ReviewInput) or not command.actor.strip():
        return missing_actor_or_reason(command)
    if command.verdict is Verdict.APPROVE or command.reason.strip():
        return None
    return (
        "say why you reject it: a rejection needs a reason (--reason TEXT); it goes to the "
        "audit trail and to the router"
    )


def _names_a_proposal(situation: Situation, command: ControlInput) -> str | None:
    if isinstance(command, ReviewInput) and not command.proposal_id.strip():
        target = situation.spec.spec.target
        return f"name the proposal to judge; `lockgate review {target}` lists them with their ids"
    return None


def _reviews_proposals(situation: Situation, command: ControlInput) -> str | None:
    body = situation.spec.spec
    if body.guardrails.review is not None:
        return None
    return (
        f"the rollout of {body.target} routes no action to reviewers (its spec has no "
        "guardrails.review), so there is nothing to review"
    )


REFUSALS: dict[Command, tuple[Check, ...]] = {
    Command.APPROVE: (
        *_live("approve"),
        _awaiting_approval,
        _four_eyes,
        _an_approver,
        _first_approval,
    ),
    Command.PAUSE: (*_live("pause"), _not_paused),
    Command.RESUME: (_explained, _paused),
    Command.PROMOTE: (*_live("promote"), _promotable),
    Command.ROLLBACK: _live("roll back"),
    Command.ABANDON: (_explained, _not_abandoned, _not_ended("abandon"), _stuck_or_forced),
    Command.REVIEW: (
        _reviewer_explained,
        _names_a_proposal,
        _not_ended("review"),
        _not_being_abandoned("review"),
        _not_rolling_back,
        _reviews_proposals,
    ),
}
"""Each command's rules, in the order they are asked: the first that objects is the answer."""


def listing_refusal(situation: Situation) -> str | None:
    """Why the rollout cannot list proposals: its spec routes no action to reviewers."""
    return _reviews_proposals(situation, ControlInput(actor="", reason=""))


def refusal(command: Command, situation: Situation, request: ControlInput) -> str | None:
    """Why the rollout refuses `command` now, or None when it takes it."""
    for check in REFUSALS[command]:
        refused = check(situation, request)
        if refused is not None:
            return refused
    return None


# ----------------------------------------------------------------------------- transitions


def _pause(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    state = situation.state
    state.audit.append(entry)
    state.paused_by = entry
    state.phase = Phase.PAUSED
    return Effect(
        message="paused; checks continue, no stage will advance",
        publish=True,
        notify=(NotifyEvent.PAUSED, f"paused by {request.actor}: {request.reason}"),
    )


def _resume(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    state = situation.state
    state.audit.append(entry)
    state.paused_by = None
    state.phase = Phase.ESCALATED if state.escalation else running_phase(situation.spec, state)
    return Effect(message="resumed", publish=True)


def _promote(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    state = situation.state
    state.audit.append(entry)
    state.promote_requested = entry
    if in_holdback(situation.spec, state):
        candidate = situation.spec.spec.candidate.version
        message = f"the holdback ends now; {candidate} becomes the incumbent"
        return Effect(message=message, wake=True)
    stage = current_stage(situation.spec, state).name
    return Effect(message=f"stage {stage} ends now", wake=True)


def _approve(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    state = situation.state
    state.audit.append(entry)
    state.approvals.append(entry)
    stage = current_stage(situation.spec, state)
    assert stage.approval is not None  # refused otherwise
    missing = stage.approval.required - len(state.approvals)
    return Effect(
        message=(
            f"approved; stage {stage.name} starts now"
            if missing <= 0
            else f"approved; stage {stage.name} needs {missing} more approval(s)"
        )
    )


def _rollback(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    # The workflow requests it: automatic rollbacks take the same way, which audits the request.
    return Effect(message="rolling back to the incumbent", rollback=True)


def _abandon(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    situation.state.audit.append(entry)
    forced = " (forced)" if isinstance(request, AbandonInput) and request.force else ""
    return Effect(
        message=(
            f"abandoned{forced}; lockgate stops managing {situation.spec.spec.target}'s route "
            "now, whatever the router holds"
        ),
        abandon=True,
    )


def _review(situation: Situation, request: ControlInput, entry: AuditEntry) -> Effect:
    # Called once the router has recorded the verdict: the count follows the router.
    assert isinstance(request, ReviewInput), "a review carries its verdict"
    state = situation.state
    state.audit.append(entry)
    approved = request.verdict is Verdict.APPROVE
    counts = state.reviews
    state.reviews = ReviewCounts(
        approved=counts.approved + approved, rejected=counts.rejected + (not approved)
    )
    record = open_record(state)
    if record is not None:
        record.reviews += 1
    done = "approved" if approved else "rejected"
    progress = review_progress(situation.spec, state)
    return Effect(message=f"{done} proposal {request.proposal_id}; {progress}", publish=True)


TRANSITIONS: dict[Command, Transition] = {
    Command.APPROVE: _approve,
    Command.PAUSE: _pause,
    Command.RESUME: _resume,
    Command.PROMOTE: _promote,
    Command.ROLLBACK: _rollback,
    Command.ABANDON: _abandon,
    Command.REVIEW: _review,
}
"""What each accepted command changes; every one but rollback records its audit entry here."""


def carry_out(
    command: Command, situation: Situation, request: ControlInput, entry: AuditEntry
) -> Effect:
    """Apply an accepted command to `situation.state`; the workflow then does the Effect.

    `entry` is the command's audit entry (the workflow stamps its time and stage); it becomes
    the state's record of the command (`paused_by`, an approval, ...).
    """
    return TRANSITIONS[command](situation, request, entry)
