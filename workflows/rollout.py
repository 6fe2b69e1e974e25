"""RolloutWorkflow: moves a candidate policy through the spec's stages, or rolls it back.

Deterministic orchestration only. Every side effect (routing, monitoring) is an activity; the
decisions (after each check, an offline gate, an approval deadline) come from pure functions in
`workflows.progression`, and which human command is taken in which phase, and what it changes,
from `workflows.commands`; the times a decision rests on come from the activities' results,
which the history records. The state is one pydantic model carried across continue-as-new.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, RetryState

with workflow.unsafe.imports_passed_through():
    import pydantic

    from activities.contracts import (
        APPLY_ROUTE,
        NOTIFY,
        OFFLINE_EVAL,
        RUN_CHECKS,
        ApplyRouteInput,
        CheckInput,
        CheckResult,
        LandedRoute,
        Notification,
        OfflineEvalInput,
        Outcome,
        Route,
        RouteMode,
        TriggerVerdict,
    )
    from activities.reviews import (
        LIST_REVIEWS,
        RECORD_REVIEW,
        ListReviewsInput,
        PendingProposals,
        RecordedVerdict,
        RecordReviewInput,
    )
    from rollout_specs import (
        NotifyEvent,
        PolicyVersion,
        RolloutSpec,
        SpecError,
        Stage,
        StageMode,
        format_duration,
    )
    from workflows import WORKFLOW_NAME
    from workflows.checking import check_input
    from workflows.commands import (
        PENDING_REVIEWS,
        Command,
        Effect,
        Situation,
        carry_out,
        current_stage,
        in_holdback,
        listing_refusal,
        missing_actor_or_reason,
        open_record,
        refusal,
        review_reason,
        running_phase,
    )
    from workflows.messages import (
        AbandonInput,
        ControlInput,
        ControlResult,
        PendingReviewsInput,
        PendingReviewsResult,
        ReviewInput,
        RolloutInput,
        RolloutResult,
        StatusResult,
    )
    from workflows.progression import (
        Action,
        approval_time_left,
        approval_timed_out,
        assess,
        judge_offline,
    )
    from workflows.state import (
        AuditAction,
        AuditEntry,
        Phase,
        RollbackRequest,
        RolloutState,
        StageRecord,
    )
    from workflows.visibility import current_details, search_attribute_updates, stage_percent

__all__ = ["REFUSED", "RolloutWorkflow"]

REFUSED = "RefusedTransition"
"""ApplicationError type of a human command the rollout cannot take in its current phase."""

STAGE_ROUTE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["RouteConflict", "RouterError", "UnknownBackendError"],
)
"""Moving traffic forward gives up after a few tries: then the rollout rolls back instead."""

NEVER_GIVE_UP = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)
"""Rollback and the final promotion retry until the router accepts, whatever it answers."""
LANDING_ROUNDS = (
    (timedelta(minutes=10), timedelta(seconds=10), timedelta(minutes=10)),
    (timedelta(hours=2), timedelta(minutes=1), timedelta(minutes=30)),
    (timedelta.max, timedelta(minutes=5), timedelta(hours=2)),
)
"""(refused for less than, longest wait between attempts, round length) of a route that must
land: every 10 s at most for the first 10 minutes, then every minute, then every 5 minutes. A
round is one activity retried by Temporal; each new round refreshes the escalation with the
last error, and a conflict ends a round at once so the escalation can name the route's holder.
"""
ESCALATION_EVERY_MAX = timedelta(hours=1)
"""The escalation of a route that has not landed is refreshed at growing intervals up to this."""
HISTORY_BUDGET = 5_000
"""Events one run may hold before it continues as new, well below Temporal's 51,200 limit."""
WORK_HEARTBEAT = timedelta(seconds=3)
"""Heartbeat timeout of checks and routes: a dead worker's attempt is retried after this, and
a rollback's cancel reaches the activity within it."""
CHECK_MARGIN = timedelta(seconds=5)
"""A check's deadline is monitoring.timeout plus this; its activity timeout adds it again."""
PREEMPT = "rollback-preempts"
"""Patch id: rollbacks cancel work in flight, landing loops continue as new, conflicts escalate.
Histories recorded before it replay with the behaviour they were recorded with."""
EVIDENCE_CLOCK = "bake-measured-on-evidence"
"""Patch id: a stage's bake is measured from the route's landing to the check's end, both times
recorded in the history by the activities, never with the workflow task's clock. With the Temporal
Python SDK 1.35 a worker that first meets a rollout through a query runs its next workflow task
with the previous task's time, seconds stale, while a replay reads the right one: a bake judged
on that clock could advance live and hold on replay, and the rollout would stop on a
nondeterminism error at the next restart. Histories recorded before it replay as they ran."""
QUICK_CHECKS = "checks-in-the-workflow-task"
"""Patch id: a check first runs as a local activity inside the workflow task (one history event
instead of three and a second workflow task: six events per check, not eleven), and as an
activity only when it cannot finish within QUICK_CHECK. Histories recorded before it replay with
every check an activity."""
QUICK_CHECK = timedelta(milliseconds=500)
"""How long a check may hold its workflow task. Signals and updates (a rollback) wait for the
task, so this bounds what a check in flight adds to a rollback's latency; past it (monitoring
slow), the check runs again as an activity that a rollback cancels at once."""
QUICK_CHECK_MARGIN = timedelta(milliseconds=500)
"""Beyond QUICK_CHECK, before the local activity itself times out: the check answers by then."""
COMMANDS_CATCH_UP = timedelta(milliseconds=1)
"""The timer that ends a workflow task before a check run inside it moves traffic: a rollback or
pause sent during the check is delivered with its firing, before the advance is taken."""
SLOW_MONITORING_CHECKS = 10
"""Checks run as activities straight away after a quick check could not finish: monitoring that
was slow once is likely slow again, and a rollback should not wait on it."""
DEADLINE_PASSED = timedelta(milliseconds=1)
"""The wait on an approval whose deadline has already passed: the timer fires at once."""

CHECK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=2
)
OFFLINE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=["UnknownBackendError"],
)
REVIEW_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=3,
    non_retryable_error_types=["RouterError", "UnknownBackendError", "MissingCredential"],
)
"""A human waits on the answer: a few tries when the router is down, none when it refused
(an unknown or already judged proposal is said at once, never retried into a storm)."""
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)
"""A webhook gets about a minute of retries; it never holds up the rollout meanwhile."""
OFFLINE_TIMEOUT = timedelta(minutes=30)
OFFLINE_HEARTBEAT = timedelta(seconds=30)
NOTIFICATION_GRACE = timedelta(minutes=2)
"""How long a finished rollout waits for its last notifications before it returns."""
AUTOMATIC = "lockgate"
T = TypeVar("T")


@workflow.defn(name=WORKFLOW_NAME, failure_exception_types=[pydantic.ValidationError, SpecError])
class RolloutWorkflow:
    """One rollout of one target, from its first stage to promotion or rollback."""

    @workflow.init
    def __init__(self, request: RolloutInput) -> None:
        self._spec: RolloutSpec = request.spec
        info = workflow.info()
        self._state: RolloutState = request.state or RolloutState(
            rollout_id=f"{info.workflow_id}/{info.run_id}",
            submitted_by=request.submitted_by,
            started_at=workflow.now(),
        )
        self._submitted_by = request.submitted_by
        self._wake = False
        self._preempts = False
        self._evidence_clock = False
        self._quick_checks = False
        self._slow_checks_left = 0
        self._deliveries: list[asyncio.Task[None]] = []
        self._abandoned: AuditEntry | None = None
        self._abandon_forced = False
        self._in_flight: workflow.ActivityHandle[Any] | None = None

    # ----------------------------------------------------------------------------- main loop

    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        """Run the stages in order; a rollback request at any point ends in a rollback."""
        self._preempts = workflow.patched(PREEMPT)
        self._evidence_clock = workflow.patched(EVIDENCE_CLOCK)
        self._quick_checks = workflow.patched(QUICK_CHECKS)
        if request.state is None:
            self._audit(
                self._submitted_by, AuditAction.SUBMITTED, f"rollout {self._spec.metadata.name}"
            )
        self._publish()
        # The rollout's own course runs as a task so that `abandon` can stop it wherever it
        # waits; the task issues exactly the commands the body issued when it ran inline.
        progress = asyncio.create_task(self._progress())
        await workflow.wait_condition(lambda: progress.done() or self._abandoned is not None)
        if self._abandoned is not None and not progress.done():
            await self._stop(progress)
            self._end_abandoned(self._abandoned)
        else:
            await progress  # its ending, or a continue-as-new, is the run's
        with contextlib.suppress(TimeoutError):  # the outcome is final; webhooks get a grace period
            await workflow.wait_condition(
                lambda: all(task.done() for task in self._deliveries),
                timeout=NOTIFICATION_GRACE,
                timeout_summary="last notifications",
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RolloutResult(phase=self._state.phase, outcome=self._state.outcome or "")

    async def _progress(self) -> None:
        """The stages in order, then the rollback or the promotion that ends the rollout.

        A spec's holdback runs as one more stage after its last (spec.course): judged like a
        split stage, its end is the promotion and its failure the rollback.
        """
        stages = self._spec.spec.course
        while self._state.stage_index < len(stages) and self._state.rollback is None:
            advanced = await self._run_stage(stages[self._state.stage_index])
            if advanced:
                self._end_stage("promoted" if self._state.promote_requested else "advanced")
                self._state.stage_index += 1
                self._state.stage_routed = False
        if self._state.rollback is not None:
            await self._roll_back()
        else:
            await self._promote_candidate()

    async def _stop(self, progress: asyncio.Task[None]) -> None:
        """Cancel the rollout's course and the activity it waits on (a route, a check).

        The activity is asked to stop and given one heartbeat timeout to hear it (a heartbeat
        answered while the workflow still runs carries the cancel; after it ends, the activity
        would only learn at its own deadline). The workflow never waits for the router itself.
        """
        in_flight = self._in_flight
        cancelled = in_flight is not None and not in_flight.done()
        if in_flight is not None and cancelled:
            in_flight.add_done_callback(_retrieve)
            in_flight.cancel()
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        if cancelled:
            await workflow.sleep(WORK_HEARTBEAT, summary="the cancelled activity stops")

    def _end_abandoned(self, command: AuditEntry) -> None:
        """End in `abandoned`: say what lockgate last routed, since nobody routes any more."""
        state = self._state
        if state.stages and state.stages[-1].ended_at is None:
            self._end_stage("abandoned")
        state.escalation = None
        state.landing_since = None
        target = self._spec.spec.target
        state.outcome = (
            f"abandoned{' (forced)' if self._abandon_forced else ''} by {command.actor}: "
            f"{command.reason}; lockgate no longer routes "
            f"{target} (the last route that landed gave the candidate "
            f"{state.live_percent:g}%); check the router's route for {target} by hand"
        )
        self._audit(AUTOMATIC, AuditAction.ENDED, state.outcome)
        self._set_phase(Phase.ABANDONED)
        self._notify(NotifyEvent.ROLLED_BACK, state.outcome)

    def _track(self, handle: workflow.ActivityHandle[T]) -> workflow.ActivityHandle[T]:
        """Remember the activity the rollout waits on now, so `abandon` can cancel it."""
        self._in_flight = handle
        return handle

    async def _run_stage(self, stage: Stage) -> bool:
        """Bake one stage; True when it earned its gate (or a human promoted it)."""
        if not self._state.stage_routed:
            if stage.approval is not None and not await self._await_approval(stage):
                return False
            if stage.mode is StageMode.OFFLINE:
                return await self._offline_gate(stage)
            if not await self._route_stage(stage):
                return False
        while self._state.rollback is None:
            await self._sleep_until_check()
            if self._state.rollback is not None:
                return False
            if self._state.promote_requested is not None:
                return True
            action = await self._check(stage)
            if action is Action.ADVANCE and self._state.paused_by is None:
                return True
            self._maybe_continue_as_new()
        return False

    async def _sleep_until_check(self) -> None:
        self._wake = False
        interval = self._spec.spec.check_interval
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._wake, timeout=interval, timeout_summary="until the next check"
            )

    def _history_full(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        return self._preempts and info.get_current_history_length() >= HISTORY_BUDGET

    def _maybe_continue_as_new(
        self, in_flight: workflow.ActivityHandle[Route] | None = None
    ) -> None:
        """Continue as new when the history is long, carrying the state, cancelling `in_flight`.

        Called only from the main loop, never from a handler, and never while a notification is
        still on its way (the next call continues as new instead).
        """
        if not self._history_full():
            return
        if not all(task.done() for task in self._deliveries):
            return
        if not workflow.all_handlers_finished():  # a review waiting on the router: next time
            return
        if in_flight is not None:
            in_flight.cancel()
        # Only the review handlers wait (on the router), and none is waiting now.
        workflow.continue_as_new(
            RolloutInput(spec=self._spec, submitted_by=self._submitted_by, state=self._state)
        )

    # ----------------------------------------------------------------------------- routing

    async def _route_stage(self, stage: Stage) -> bool:
        """Point the router at this stage's traffic; on failure, ask for a rollback."""
        self._open_record(stage)
        mode = RouteMode.SHADOW if stage.mode is StageMode.SHADOW else RouteMode.SPLIT
        route = self._route(mode, percent=stage.percent or 0.0, scope=stage.scope)
        try:
            handle = workflow.start_activity(
                APPLY_ROUTE,
                self._route_input(route),
                result_type=LandedRoute,
                start_to_close_timeout=self._route_timeout(),
                heartbeat_timeout=WORK_HEARTBEAT if self._preempts else None,
                retry_policy=STAGE_ROUTE_RETRY,
                summary=f"route {stage.name}: {mode.value} {stage.percent or 0:g}%",
            )
            landed = await self._unless_rolling_back(handle)
            if landed is None:
                return False  # the rollback's route (a newer generation) supersedes this one
        except ActivityError as exc:
            reason = f"could not apply stage {stage.name}'s route: {_refusal(exc)}"
            self._request_rollback(AUTOMATIC, reason)
            return False
        self._state.stage_routed = True
        self._state.live_percent = (stage.percent or 0.0) if mode is RouteMode.SPLIT else 0.0
        self._state.stages[-1].started_at = landed.landed_at or workflow.now()
        self._state.trigger_failures = {}
        self._state.no_evidence_streak = 0
        self._set_phase(Phase.PAUSED if self._state.paused_by else self._running_phase())
        started = f"{mode.value} {stage.percent or 0:g}%"
        if in_holdback(self._spec, self._state):
            started = self._holdback_started(started)
        self._audit(AUTOMATIC, AuditAction.STAGE_STARTED, started)
        self._notify(NotifyEvent.STAGE_STARTED, f"stage {stage.name} started: {started}")
        return True

    def _open_record(self, stage: Stage) -> StageRecord:
        """The stage's record, created the first time the stage is entered."""
        records = self._state.stages
        if not records or records[-1].name != stage.name:
            records.append(StageRecord(name=stage.name, started_at=workflow.now()))
        return records[-1]

    # ----------------------------------------------------------------------------- approvals

    async def _await_approval(self, stage: Stage) -> bool:
        """Wait for the stage's approvals before its traffic moves; False if rolling back."""
        approval = stage.approval
        assert approval is not None
        state = self._state
        record = self._open_record(stage)
        if state.approval_asked_at is None:
            state.approval_asked_at = workflow.now()
            state.approvals = []
            asked = (
                f"{approval.required} of {', '.join(approval.approvers)} must approve stage "
                f"{stage.name} within {format_duration(approval.timeout)}"
            )
            self._audit(AUTOMATIC, AuditAction.APPROVAL_NEEDED, asked)
            self._notify(NotifyEvent.APPROVAL_NEEDED, f"approval needed: {asked}")
        self._set_phase(Phase.AWAITING_APPROVAL)

        def settled() -> bool:
            return state.rollback is not None or len(state.approvals) >= approval.required

        remaining = approval_time_left(approval, state.approval_asked_at, workflow.now())
        try:
            if self._evidence_clock:
                # Past the deadline, wait on a timer all the same: whether a timer is started
                # must not depend on the task's clock (see EVIDENCE_CLOCK).
                remaining = max(remaining, DEADLINE_PASSED)
            elif remaining <= timedelta():
                raise TimeoutError
            await workflow.wait_condition(
                settled, timeout=remaining, timeout_summary=f"approval of {stage.name}"
            )
        except TimeoutError:
            ruling = approval_timed_out(stage, len(state.approvals))
            if ruling.action is Action.ROLLBACK:
                self._request_rollback(AUTOMATIC, ruling.reason)
                return False
            self._escalate(ruling.reason)
            await workflow.wait_condition(settled)
        if state.rollback is not None:
            return False
        record.approved_by = [entry.actor for entry in state.approvals]
        state.approvals = []
        state.approval_asked_at = None
        state.escalation = None
        self._audit(AUTOMATIC, AuditAction.APPROVED, f"approved by {', '.join(record.approved_by)}")
        if state.paused_by is not None:
            self._set_phase(Phase.PAUSED)
            await workflow.wait_condition(
                lambda: state.paused_by is None or state.rollback is not None
            )
        return state.rollback is None

    # ----------------------------------------------------------------------------- offline gate

    async def _offline_gate(self, stage: Stage) -> bool:
        """Judge the candidate on logged decisions once; no traffic moves. True = advance."""
        offline = stage.offline_eval
        assert offline is not None
        state = self._state
        record = self._open_record(stage)
        record.started_at = workflow.now()
        state.stage_routed = True  # nothing to route: the stage is in effect
        self._set_phase(Phase.PAUSED if state.paused_by else self._running_phase())
        started = f"offline evaluation ({offline.estimator.value}) on {offline.log}"
        self._audit(AUTOMATIC, AuditAction.STAGE_STARTED, started)
        self._notify(NotifyEvent.STAGE_STARTED, f"stage {stage.name} started: {started}")
        request = OfflineEvalInput(
            stage=stage.name,
            offline=offline,
            incumbent=self._spec.spec.incumbent,
            candidate=self._spec.spec.candidate,
        )
        try:
            evaluation = workflow.start_activity(
                OFFLINE_EVAL,
                request,
                result_type=TriggerVerdict,
                start_to_close_timeout=OFFLINE_TIMEOUT,
                heartbeat_timeout=OFFLINE_HEARTBEAT,
                retry_policy=OFFLINE_RETRY,
                summary=f"offline evaluation of {self._spec.spec.candidate.version}",
            )
            judged = await self._unless_rolling_back(evaluation)
            if judged is None:
                return False
            verdict = judged
        except ActivityError as exc:
            verdict = TriggerVerdict(
                trigger="offline_eval",
                outcome=Outcome.ERROR,
                detail=f"the offline evaluation could not run: {_cause(exc)}",
            )
        record.checks += 1
        state.checks_total += 1
        state.last_check = CheckResult(checked_at=workflow.now(), verdicts=[verdict])
        ruling = judge_offline(stage, verdict)
        if ruling.action is Action.ADVANCE:
            self._audit(AUTOMATIC, AuditAction.OFFLINE_PASSED, ruling.reason, evidence=verdict)
            await workflow.wait_condition(
                lambda: state.paused_by is None or state.rollback is not None
            )
            return state.rollback is None
        if ruling.action is Action.ROLLBACK:
            self._request_rollback(f"trigger:{verdict.trigger}", ruling.reason, verdict)
            return False
        self._escalate(ruling.reason)
        await workflow.wait_condition(
            lambda: state.rollback is not None or state.promote_requested is not None
        )
        return state.rollback is None

    def _route(
        self,
        mode: RouteMode,
        percent: float = 0.0,
        scope: dict[str, list[str]] | None = None,
        incumbent: PolicyVersion | None = None,
    ) -> Route:
        """The route to send next; `mode` off serves only `incumbent` (default: the spec's)."""
        body = self._spec.spec
        # Generations grow with the clock so a newer rollout of the same target always wins.
        now_ms = int(workflow.now().timestamp() * 1000)
        self._state.generation = max(self._state.generation + 1, now_ms)
        return Route(
            rollout_id=self._state.rollout_id,
            generation=self._state.generation,
            incumbent=incumbent or body.incumbent,
            candidate=None if mode is RouteMode.OFF else body.candidate,
            mode=mode,
            percent=percent,
            scope=scope,
            guardrails=body.guardrails,
        )

    def _route_input(self, route: Route) -> ApplyRouteInput:
        return ApplyRouteInput(
            router=self._spec.spec.router, target=self._spec.spec.target, route=route
        )

    def _route_timeout(self) -> timedelta:
        return self._spec.spec.router.timeout * 3 + timedelta(seconds=5)

    async def _unless_rolling_back(self, handle: workflow.ActivityHandle[T]) -> T | None:
        """The activity's result, or None once a rollback is requested (the activity is cancelled).

        A rollback never waits for a check or a stage route in flight: the cancel and the
        rollback's own route leave in the same workflow task.
        """
        self._track(handle)
        if not self._preempts:
            return await handle
        await workflow.wait_condition(lambda: handle.done() or self._state.rollback is not None)
        if handle.done():
            return await handle
        handle.add_done_callback(_retrieve)
        handle.cancel()
        return None

    async def _apply_until_landed(self, route: Route, purpose: str) -> None:
        """Apply a route that must land: retry forever, escalating while the router refuses.

        A refusal that lasts continues the workflow as new (the next run sends the same kind of
        route with a newer generation), so no history outgrows its limit however long it takes.
        """
        if not self._preempts:
            await self._apply_until_landed_unpatched(route, purpose)
            return
        state = self._state
        since = state.landing_since = state.landing_since or workflow.now()
        escalate_every = max(self._spec.spec.check_interval * 3, timedelta(seconds=3))
        refusals = 0
        while True:
            most, length = _landing_round(workflow.now() - since)
            handle = workflow.start_activity(
                APPLY_ROUTE,
                self._route_input(route),
                result_type=Route,
                start_to_close_timeout=self._route_timeout(),
                schedule_to_close_timeout=length,
                heartbeat_timeout=WORK_HEARTBEAT,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=most,
                    maximum_attempts=0,
                    non_retryable_error_types=["RouteConflict"],
                ),
                summary=purpose,
            )
            self._track(handle)
            while not handle.done():
                await workflow.wait([handle], timeout=escalate_every.total_seconds())
                if not handle.done():
                    waited = _rounded(workflow.now() - since)
                    self._escalate(
                        f"{purpose} has not landed after {waited}; the router keeps refusing it "
                        "and lockgate keeps retrying (lockgate status shows the last error)"
                    )
                    escalate_every = min(escalate_every * 2, ESCALATION_EVERY_MAX)
                    self._maybe_continue_as_new(in_flight=handle)
            try:
                handle.result()
                state.landing_since = None
                return
            except ActivityError as exc:  # a conflict, or a round that ran out of time
                waited = _rounded(workflow.now() - since)
                self._escalate(
                    f"{purpose} has not landed after {waited}: {_refusal(exc)}; lockgate keeps "
                    "retrying"
                )
                if exc.retry_state is RetryState.NON_RETRYABLE_FAILURE:  # a conflict
                    refusals = min(refusals + 1, 12)
                    backoff = min(timedelta(seconds=2**refusals), most)
                    await workflow.sleep(backoff, summary=f"retry {purpose}")
                # otherwise the round ran out of time, and the next one starts at once
                self._maybe_continue_as_new()

    async def _apply_until_landed_unpatched(self, route: Route, purpose: str) -> None:
        """The landing loop of histories recorded before PREEMPT, replayed as they ran."""
        escalate_every = max(self._spec.spec.check_interval * 3, timedelta(seconds=3))
        waited = timedelta()
        while True:
            handle = workflow.start_activity(
                APPLY_ROUTE,
                self._route_input(route),
                result_type=Route,
                start_to_close_timeout=self._route_timeout(),
                retry_policy=NEVER_GIVE_UP,
                summary=purpose,
            )
            self._track(handle)
            while not handle.done():
                await workflow.wait([handle], timeout=escalate_every.total_seconds())
                if not handle.done():
                    waited += escalate_every
                    self._escalate(
                        f"{purpose} has not landed after {format_duration(waited)}; "
                        "the router keeps refusing it and lockgate keeps retrying"
                    )
            try:
                handle.result()
                return
            except ActivityError as exc:  # only a non-retryable error ends the activity
                self._escalate(f"{purpose} failed ({_cause(exc)}); retrying")

    # ----------------------------------------------------------------------------- checks

    async def _check(self, stage: Stage) -> Action:
        state = self._state
        record = state.stages[-1]
        record.checks += 1
        state.checks_total += 1
        result, in_task = await self._run_checks(stage, record.checks)
        if result is None:
            return Action.ROLLBACK  # a rollback was requested while the check ran
        elapsed = (
            result.checked_at if self._evidence_clock else workflow.now()
        ) - record.started_at
        assessment = assess(
            self._spec.spec,
            stage,
            result,
            state.trigger_failures,
            state.no_evidence_streak,
            elapsed,
            record.reviews,
        )
        if assessment.action is Action.ADVANCE and in_task:
            # Commands sent while the check held its workflow task are read only once the task
            # ends: end it before moving traffic, so a rollback or pause sent meanwhile wins.
            await workflow.sleep(COMMANDS_CATCH_UP, summary="commands sent during the check")
            if state.rollback is not None:
                return Action.ROLLBACK
        state.last_check = result
        state.trigger_failures = assessment.trigger_failures
        state.no_evidence_streak = assessment.no_evidence_streak
        workflow.logger.info(
            "stage %s check %d: %s (%s)",
            stage.name,
            record.checks,
            assessment.action.value,
            assessment.reason,
        )
        if assessment.action is Action.ADVANCE and state.paused_by is None:
            self._audit(AUTOMATIC, AuditAction.ADVANCE, assessment.reason, evidence=result.gate)
        if assessment.action is Action.ROLLBACK:
            actor = f"trigger:{assessment.tripped}" if assessment.tripped else AUTOMATIC
            tripped = [v for v in result.verdicts if v.trigger == assessment.tripped]
            reason = assessment.reason
            if in_holdback(self._spec, state):
                reason = f"the holdback reverts to {self._spec.spec.incumbent.version}: {reason}"
            self._request_rollback(actor, reason, tripped[0] if tripped else None)
        elif assessment.action is Action.ESCALATE:
            self._escalate(assessment.reason)
        else:
            self._state.escalation = None
            held = assessment.action is Action.HOLD
            if held and state.phase in (Phase.RUNNING, Phase.HOLDBACK):
                self._notify(NotifyEvent.HELD, f"stage {stage.name} held: {assessment.reason}")
            self._set_phase(
                Phase.PAUSED if state.paused_by else Phase.HELD if held else self._running_phase()
            )
        return assessment.action

    async def _run_checks(self, stage: Stage, number: int) -> tuple[CheckResult | None, bool]:
        """The check's verdicts, or None when a rollback was requested while it ran.

        With them, whether the check was judged inside the workflow task: commands sent
        meanwhile are read only once that task ends.
        """
        body = self._spec.spec
        triggers = body.triggers_for(stage)
        check = check_input(
            self._spec,
            stage,
            triggers,
            at=workflow.now(),
            stage_start=self._state.stages[-1].started_at,
            rollout_start=self._rollout_start(),
            percent=stage_percent(self._spec, self._state),
            reviews=self._state.reviews,
        )
        timeout = body.monitoring.timeout * 3 + timedelta(seconds=10)
        if self._preempts:
            deadline = body.monitoring.timeout + CHECK_MARGIN
            failures = self._state.trigger_failures
            check = check.model_copy(
                update={"deadline": deadline.total_seconds(), "failures": dict(failures)}
            )
            timeout = deadline + CHECK_MARGIN
        summary = f"check {stage.name} #{number}"
        if self._quick_checks and self._slow_checks_left == 0:
            quick = await self._quick_check(check, summary)
            if quick is not None:
                return quick, True
            self._slow_checks_left = SLOW_MONITORING_CHECKS
        elif self._slow_checks_left > 0:
            self._slow_checks_left -= 1
        try:
            handle = workflow.start_activity(
                RUN_CHECKS,
                check,
                result_type=CheckResult,
                start_to_close_timeout=timeout,
                heartbeat_timeout=WORK_HEARTBEAT if self._preempts else None,
                retry_policy=CHECK_RETRY,
                summary=summary,
            )
            return await self._unless_rolling_back(handle), False
        except ActivityError as exc:
            # The checker itself failed: that is an error verdict for every trigger, never a pass.
            detail = f"the check could not run: {_cause(exc)}"
            failed = CheckResult(
                checked_at=self._last_evidence_time() if self._quick_checks else workflow.now(),
                verdicts=[
                    TriggerVerdict(trigger=t.name, outcome=Outcome.ERROR, detail=detail)
                    for t in triggers
                ],
            )
            return failed, False

    async def _quick_check(self, check: CheckInput, summary: str) -> CheckResult | None:
        """The check run inside the workflow task, or None when it could not finish there.

        A local activity leaves one marker in the history instead of an activity's three events
        and the workflow task that reads its answer. None means monitoring was slow (the check
        could not judge every trigger within QUICK_CHECK) or the attempt failed; the caller then
        runs the check as an activity, which a rollback can cancel.
        """
        quick = check.model_copy(
            update={
                "deadline": QUICK_CHECK.total_seconds(),
                "fail_if_incomplete": True,
                "scheduled_at": workflow.now(),
            }
        )
        try:
            result: CheckResult = await workflow.execute_local_activity(
                RUN_CHECKS,
                quick,
                result_type=CheckResult,
                # From scheduling, so a check queued behind others on a busy worker holds its
                # workflow task no longer than one that ran at once.
                schedule_to_close_timeout=QUICK_CHECK + QUICK_CHECK_MARGIN,
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=summary,
            )
            return result
        except FailureError:
            # Slow, failed or timed out. A local activity's timeout is raised as an ActivityError
            # live and as a bare TimeoutError on replay (SDK 1.35): both land here alike.
            return None

    def _last_evidence_time(self) -> datetime:
        """The latest time the history holds for this stage: its start or its last check's end.

        A check that could not run has no time of its own; this one never runs ahead of the
        real time, so a stage is never judged older than the evidence shows.
        """
        started = self._state.stages[-1].started_at
        last = self._state.last_check
        return max(started, last.checked_at) if last is not None else started

    def _rollout_start(self) -> datetime:
        """When the first live (shadow or split) stage started: rollout_window counts from it."""
        modes = {stage.name: stage.mode for stage in self._spec.spec.course}
        live = [
            record.started_at
            for record in self._state.stages
            if modes.get(record.name) is not StageMode.OFFLINE
        ]
        return live[0] if live else self._state.stages[-1].started_at

    # ----------------------------------------------------------------------------- endings

    async def _roll_back(self) -> None:
        request = self._state.rollback
        assert request is not None
        self._set_phase(Phase.ROLLING_BACK)
        await self._apply_until_landed(self._route(RouteMode.OFF), "rollback to the incumbent")
        if self._state.stages and self._state.stages[-1].ended_at is None:
            self._end_stage("rolled_back")
        self._state.escalation = None
        self._state.live_percent = 0.0
        incumbent = self._spec.spec.incumbent.version
        self._state.outcome = f"rolled back to {incumbent} by {request.actor}: {request.reason}"
        self._audit(AUTOMATIC, AuditAction.ROLLBACK_LANDED, self._state.outcome)
        self._set_phase(Phase.ROLLED_BACK)
        self._notify(NotifyEvent.ROLLED_BACK, self._state.outcome)

    async def _promote_candidate(self) -> None:
        self._set_phase(Phase.PROMOTING)
        version = self._spec.spec.candidate.version
        route = self._route(RouteMode.OFF, incumbent=self._spec.spec.candidate)
        await self._apply_until_landed(route, f"make {version} the incumbent")
        self._state.escalation = None
        self._state.outcome = f"{version} is the incumbent of {self._spec.spec.target}"
        self._state.live_percent = 100.0
        self._audit(AUTOMATIC, AuditAction.COMPLETED, self._state.outcome)
        self._set_phase(Phase.COMPLETED)
        self._notify(NotifyEvent.COMPLETED, self._state.outcome)

    def _running_phase(self) -> Phase:
        """`running`, or `holdback` once every spec stage is done and the holdback is on."""
        return running_phase(self._spec, self._state)

    def _holdback_started(self, route: str) -> str:
        """The holdback's start, for the audit and the webhooks: who stays where, how long."""
        body = self._spec.spec
        assert body.holdback is not None
        return (
            f"holdback: {route} ({body.holdback.percent:g}% of decisions stay on "
            f"{body.incumbent.version} for {format_duration(body.holdback.duration)}, compared "
            f"with {body.candidate.version})"
        )

    def _end_stage(self, outcome: str) -> None:
        record = self._state.stages[-1]
        record.ended_at = workflow.now()
        record.outcome = outcome
        self._state.promote_requested = None

    # ----------------------------------------------------------------------------- state

    def _request_rollback(
        self, actor: str, reason: str, evidence: TriggerVerdict | None = None
    ) -> None:
        if self._state.rollback is not None:  # the first request is the one that is carried out
            return
        self._state.rollback = RollbackRequest(actor=actor, reason=reason, at=workflow.now())
        self._audit(actor, AuditAction.ROLLBACK, reason, evidence=evidence)
        workflow.logger.warning("rollback requested by %s: %s", actor, reason)
        self._wake = True

    def _escalate(self, reason: str) -> None:
        workflow.logger.error("escalation: %s", reason)
        if self._state.escalation is None:
            self._audit(AUTOMATIC, AuditAction.ESCALATED, reason)
            self._notify(NotifyEvent.HELD, f"a human is needed: {reason}")
        self._state.escalation = reason
        if self._state.phase not in (Phase.ROLLING_BACK, Phase.PROMOTING, Phase.PAUSED):
            self._state.phase = Phase.ESCALATED
        self._publish()

    def _set_phase(self, phase: Phase) -> None:
        self._state.phase = phase
        self._publish()

    def _audit(
        self, actor: str, action: AuditAction, reason: str, evidence: TriggerVerdict | None = None
    ) -> None:
        self._state.audit.append(
            AuditEntry(
                at=workflow.now(),
                actor=actor,
                action=action,
                reason=reason,
                stage=self._current_stage().name,
                evidence=evidence,
            )
        )

    def _current_stage(self) -> Stage:
        return current_stage(self._spec, self._state)

    def _notify(self, event: NotifyEvent, text: str) -> None:
        """Tell every webhook that wants `event`, beside the rollout and never in its way.

        A failing webhook is retried for a while, then logged; nothing waits for it.
        """
        body = self._spec
        for webhook in body.spec.notify:
            if event not in webhook.events:
                continue
            notification = Notification(
                webhook=webhook,
                event=event,
                target=body.spec.target,
                rollout=body.metadata.name,
                stage=self._current_stage().name,
                phase=self._state.phase.value,
                at=workflow.now(),
                text=f"lockgate {body.spec.target} ({body.metadata.name}): {text}",
            )
            self._deliveries.append(asyncio.create_task(self._deliver(notification)))

    async def _deliver(self, notification: Notification) -> None:
        try:
            await workflow.execute_activity(
                NOTIFY,
                notification,
                start_to_close_timeout=notification.webhook.timeout * 2 + timedelta(seconds=5),
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {notification.event.value}",
            )
        except ActivityError as exc:
            workflow.logger.warning(
                "notification %s to %s was not delivered: %s",
                notification.event.value,
                notification.webhook.describe(),
                _cause(exc),
            )

    def _publish(self) -> None:
        current = workflow.info().typed_search_attributes
        updates = search_attribute_updates(self._spec, self._state, current)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(current_details(self._spec, self._state))

    # ----------------------------------------------------------------------------- handlers

    @workflow.query(name="status")
    def status(self) -> StatusResult:
        """The spec and the whole state, for `lockgate status` and the UI's query tab."""
        return StatusResult(spec=self._spec, state=self._state)

    # Every update but the two review ones is synchronous (it only changes state); those wait
    # on the router, and continue-as-new waits for them. The rules live in workflows.commands;
    # the update names are Command values, the names recorded in every history.

    @workflow.update(name=Command.PAUSE.value)
    def pause(self, command: ControlInput) -> ControlResult:
        """Stop advancing. Checks go on and a breach still rolls back: pausing never disarms."""
        return self._carry_out(Command.PAUSE, command)

    @pause.validator
    def _validate_pause(self, command: ControlInput) -> None:
        self._validate(Command.PAUSE, command)

    @workflow.update(name=Command.RESUME.value)
    def resume(self, command: ControlInput) -> ControlResult:
        """Allow advancing again from the next passing check."""
        return self._carry_out(Command.RESUME, command)

    @resume.validator
    def _validate_resume(self, command: ControlInput) -> None:
        self._validate(Command.RESUME, command)

    @workflow.update(name=Command.PROMOTE.value)
    def promote(self, command: ControlInput) -> ControlResult:
        """End the current stage's bake now and move to the next stage (a human's override)."""
        return self._carry_out(Command.PROMOTE, command)

    @promote.validator
    def _validate_promote(self, command: ControlInput) -> None:
        self._validate(Command.PROMOTE, command)

    @workflow.update(name=Command.APPROVE.value)
    def approve(self, command: ControlInput) -> ControlResult:
        """Approve the stage awaiting approval; its traffic moves once enough have approved."""
        return self._carry_out(Command.APPROVE, command)

    @approve.validator
    def _validate_approve(self, command: ControlInput) -> None:
        self._validate(Command.APPROVE, command)

    @workflow.update(name=Command.ROLLBACK.value)
    def rollback(self, command: ControlInput) -> ControlResult:
        """Send all traffic back to the incumbent, now."""
        _refuse_if(missing_actor_or_reason(command))
        return self._carry_out(Command.ROLLBACK, command)

    @rollback.validator
    def _validate_rollback(self, command: ControlInput) -> None:
        self._validate(Command.ROLLBACK, command)

    @workflow.update(name=Command.ABANDON.value)
    def abandon(self, command: AbandonInput) -> ControlResult:
        """End a stuck rollout where it is: the last resort when the router cannot be fixed.

        Records who and why; the main loop then cancels the work in flight and ends the
        rollout in `abandoned` without sending any route (the router is not trusted to land it).
        """
        return self._carry_out(Command.ABANDON, command)

    @abandon.validator
    def _validate_abandon(self, command: AbandonInput) -> None:
        self._validate(Command.ABANDON, command)

    @workflow.update(name=Command.REVIEW.value)
    async def review(self, command: ReviewInput) -> ControlResult:
        """Judge one of the candidate's proposals: the router records it, then the audit does.

        The router is asked first, so the audit and the counts only ever hold verdicts the
        router took; its refusal (an unknown or already judged proposal) is the update's.
        """
        body = self._spec.spec
        request = RecordReviewInput(
            router=body.router,
            target=body.target,
            proposal_id=command.proposal_id,
            verdict=command.verdict,
            actor=command.actor,
            reason=command.reason,
        )
        try:
            recorded = await workflow.execute_activity(
                RECORD_REVIEW,
                request,
                result_type=RecordedVerdict,
                start_to_close_timeout=self._review_attempt(),
                schedule_to_close_timeout=self._review_timeout(),
                retry_policy=REVIEW_RETRY,
                summary=f"{command.verdict.value} proposal {command.proposal_id}",
            )
        except ActivityError as exc:
            raise ApplicationError(
                f"the verdict was not recorded: {_refusal(exc)}", type=REFUSED, non_retryable=True
            ) from exc
        return self._carry_out(Command.REVIEW, command, review_reason(command, recorded))

    @review.validator
    def _validate_review(self, command: ReviewInput) -> None:
        self._validate(Command.REVIEW, command)

    @workflow.update(name=PENDING_REVIEWS)
    async def pending_reviews(self, request: PendingReviewsInput) -> PendingReviewsResult:
        """The proposals waiting at the router, read by the worker that holds its credentials.

        No audit entry and no change of state: looking is not a decision.
        """
        body = self._spec.spec
        try:
            found = await workflow.execute_activity(
                LIST_REVIEWS,
                ListReviewsInput(router=body.router, target=body.target, limit=request.limit),
                result_type=PendingProposals,
                start_to_close_timeout=self._review_attempt(),
                schedule_to_close_timeout=self._review_timeout(),
                retry_policy=REVIEW_RETRY,
                summary=f"list proposals for {request.actor or 'a reviewer'}",
            )
        except ActivityError as exc:
            raise ApplicationError(
                f"the router's proposals could not be read: {_refusal(exc)}",
                type=REFUSED,
                non_retryable=True,
            ) from exc
        stage = self._current_stage()
        record = open_record(self._state)
        return PendingReviewsResult(
            pending=found.pending,
            dropped=found.dropped,
            reviews=self._state.reviews,
            stage=stage.name,
            stage_reviews=record.reviews if record is not None else 0,
            min_reviews=stage.min_reviews,
        )

    @pending_reviews.validator
    def _validate_pending_reviews(self, request: PendingReviewsInput) -> None:
        _refuse_if(listing_refusal(self._situation()))

    def _review_attempt(self) -> timedelta:
        """One attempt of a review activity: the router's deadline, and a margin."""
        return self._spec.spec.router.timeout + timedelta(seconds=5)

    def _review_timeout(self) -> timedelta:
        """Every attempt of a review activity: a reviewer waits no longer for an answer."""
        return self._review_attempt() * REVIEW_RETRY.maximum_attempts + timedelta(seconds=10)

    def _situation(self) -> Situation:
        return Situation(
            spec=self._spec,
            state=self._state,
            submitted_by=self._submitted_by,
            abandoned=self._abandoned,
        )

    def _validate(self, name: Command, command: ControlInput) -> None:
        """Refuse the update, with the rule's words, when the rollout cannot take it now."""
        _refuse_if(refusal(name, self._situation(), command))

    def _carry_out(
        self, name: Command, command: ControlInput, reason: str | None = None
    ) -> ControlResult:
        """Apply the command's transition, then what it asks of Temporal, in this order.

        `reason` is the audit entry's, when it says more than the command's (a review's).
        """
        entry = AuditEntry(
            at=workflow.now(),
            actor=command.actor,
            action=AuditAction(name),
            reason=command.reason if reason is None else reason,
            stage=self._current_stage().name,
        )
        effect: Effect = carry_out(name, self._situation(), command, entry)
        if effect.rollback:
            self._request_rollback(command.actor, command.reason)
        if effect.abandon:
            self._abandoned = entry
            self._abandon_forced = isinstance(command, AbandonInput) and command.force
        if effect.publish:
            self._publish()
        if effect.notify is not None:
            self._notify(*effect.notify)
        if effect.wake:
            self._wake = True
        return ControlResult(message=effect.message, phase=self._state.phase)


def _refuse_if(message: str | None) -> None:
    if message is not None:
        _refuse(message)


def _refuse(message: str) -> None:
    raise ApplicationError(message, type=REFUSED, non_retryable=True)


def _landing_round(refused_for: timedelta) -> tuple[timedelta, timedelta]:
    """The longest wait between attempts and the round's length, after `refused_for`."""
    for limit, most, length in LANDING_ROUNDS:
        if refused_for < limit:
            return most, length
    return LANDING_ROUNDS[-1][1], LANDING_ROUNDS[-1][2]


def _rounded(elapsed: timedelta) -> str:
    """A duration for humans, in whole seconds (`2h5m3s`, never `7503120ms`)."""
    return format_duration(timedelta(seconds=round(elapsed.total_seconds())))


def _refusal(error: ActivityError) -> str:
    """What the activity said (a conflict names the route's holder); else the root cause."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.message:
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    return _cause(error)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Read a cancelled activity's outcome, so asyncio never logs it as unretrieved."""
    if not task.cancelled():
        task.exception()


def _cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error)
