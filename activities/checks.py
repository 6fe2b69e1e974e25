"""The check activity: query monitoring for every rollback trigger, then judge the answers.

Judging lives here, in an activity, rather than in the workflow: the verdict is recorded in the
workflow's history as this activity's result, so a worker with a better judge never breaks the
replay of a rollout already running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    CHECK_INCOMPLETE,
    RUN_CHECKS,
    CheckInput,
    CheckResult,
    Evidence,
    Outcome,
    TriggerVerdict,
)
from activities.errors import NoDataError, ProviderError, UnknownBackendError
from activities.heartbeat import heartbeating
from activities.providers.base import MetricProvider
from activities.registry import BackendRegistry
from activities.server_clock import AttemptClock
from analysis.budget import reward_loss_upper_bound
from analysis.drift import action_drift, judge_drift
from analysis.review import review_rejections
from analysis.segments import FairnessResult, SegmentComparison, compare_segments, fairness_ratio
from analysis.sequential import ArmStats, compare_means
from analysis.shadow import judge_shadow, paired_actions
from analysis.spend import judge_spend
from analysis.thresholds import breach, describe_threshold
from rollout_specs import (
    AdvanceWhen,
    ArmMetric,
    BudgetTrigger,
    CompareTrigger,
    DriftRule,
    DriftTrigger,
    RollbackTrigger,
    ShadowTrigger,
    TemplateError,
    Threshold,
    ThresholdTrigger,
    TriggerKind,
    render,
)
from rollout_specs.backends import (
    MonitoringBackend,
    SegmentQueries,
    UnknownBackendType,
    monitoring_backend,
)
from rollout_specs.models import ReviewTrigger, SegmentsRule, SegmentsTrigger, SpendTrigger

__all__ = ["JUDGES", "CheckActivities", "arm_stats", "judge_trigger"]


class CheckActivities:
    """Runs checks against whichever monitoring backend the spec names."""

    def __init__(self, backends: BackendRegistry) -> None:
        self._backends = backends

    @activity.defn(name=RUN_CHECKS)
    async def run_checks(self, check: CheckInput) -> CheckResult:
        """Judge every trigger and the gate concurrently, within the check's deadline.

        Data problems are verdicts, never exceptions. The check returns what it has when its
        deadline passes (`error` for the triggers still waiting), and at once when a trigger
        fails for the failure_limit-th time in a row: that rollback never waits on the others.
        """
        clock = AttemptClock(check.scheduled_at)
        try:
            provider = self._backends.provider(check.monitoring)
        except UnknownBackendError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        judge = _Judge(provider, check)
        jobs = {asyncio.create_task(judge.trigger(t)): t for t in check.triggers}
        gate_job = asyncio.create_task(judge.gate(check.gate)) if check.gate is not None else None
        async with heartbeating():
            results, ending, timed_out = await _gather_until_decided(check, jobs, gate_job)
        if timed_out and check.fail_if_incomplete:
            raise ApplicationError(ending, type=CHECK_INCOMPLETE, non_retryable=True)
        verdicts = [results.get(job) or _unanswered(t.name, ending) for job, t in jobs.items()]
        gate = None
        if gate_job is not None and check.gate is not None:
            gate = results.get(gate_job) or _unanswered(_gate_name(check.gate), ending)
        for verdict in [*verdicts, *([gate] if gate else [])]:
            activity.logger.info(
                "check %s: %s (%s)", verdict.trigger, verdict.outcome.value, verdict.detail
            )
        stage = check.variables.get("stage")
        return CheckResult(checked_at=clock.now(), verdicts=verdicts, gate=gate, stage=stage)


async def _gather_until_decided(
    check: CheckInput,
    jobs: dict[asyncio.Task[TriggerVerdict], RollbackTrigger],
    gate_job: asyncio.Task[TriggerVerdict] | None,
) -> tuple[dict[asyncio.Task[TriggerVerdict], TriggerVerdict], str, bool]:
    """Collect verdicts until all are in, a trigger trips, or the deadline passes.

    Returns the verdicts obtained, when some are missing why (for their `error` text), and
    whether the deadline passed with some missing.
    Every job still running on the way out, a cancelled activity's included, is cancelled.
    """
    pending: set[asyncio.Task[TriggerVerdict]] = {*jobs, *([gate_job] if gate_job else [])}
    results: dict[asyncio.Task[TriggerVerdict], TriggerVerdict] = {}
    loop = asyncio.get_running_loop()
    ends_at = None if check.deadline is None else loop.time() + check.deadline
    ending = ""
    timed_out = False
    try:
        while pending:
            left = None if ends_at is None else max(0.0, ends_at - loop.time())
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                ending = (
                    f"no answer within the check's {check.deadline:g}s deadline; monitoring is "
                    "slow or hung, so this check cannot tell"
                )
                timed_out = True
                break
            for job in done:
                trigger = jobs.get(job)
                name = trigger.name if trigger else _gate_name(check.gate) if check.gate else ""
                results[job] = _verdict_of(job, name)
            tripped = [
                t.name
                for job, t in jobs.items()
                if job in done and _trips(results[job], t, check.failures)
            ]
            if tripped and pending:
                ending = (
                    f"not judged: the check ended as soon as {tripped[0]} reached its "
                    "failure_limit, so the rollback waits for no slower query"
                )
                break
    finally:
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return results, ending, timed_out


def _trips(verdict: TriggerVerdict, trigger: RollbackTrigger, failures: dict[str, int]) -> bool:
    """Whether this verdict makes `trigger` reach its failure_limit (a rollback)."""
    if verdict.outcome is not Outcome.FAIL:
        return False
    return failures.get(trigger.name, 0) + 1 >= trigger.failure_limit


def _verdict_of(job: asyncio.Task[TriggerVerdict], name: str) -> TriggerVerdict:
    """The job's verdict; a judge that crashed is an `error` for its trigger, never lost."""
    error = job.exception()
    if error is None:
        return job.result()
    activity.logger.exception("judging %s failed", name, exc_info=error)
    return TriggerVerdict(
        trigger=name,
        outcome=Outcome.ERROR,
        detail=f"the judge failed ({type(error).__name__}: {error}); this check cannot tell",
    )


def _unanswered(name: str, why: str) -> TriggerVerdict:
    return TriggerVerdict(trigger=name, outcome=Outcome.ERROR, detail=why)


def _gate_name(gate: AdvanceWhen) -> str:
    return f"advance_when:{gate.non_inferior}"


class _Judge:
    """One check's judging, sharing the provider and the per-arm statistics it reads."""

    def __init__(self, provider: MetricProvider, check: CheckInput) -> None:
        self.provider = provider
        self.check = check

    async def trigger(self, trigger: RollbackTrigger) -> TriggerVerdict:
        """The verdict of the judge registered for the trigger's kind; none is an error."""
        judge = JUDGES.get(trigger.kind)
        if judge is None:
            return TriggerVerdict(
                trigger=trigger.name,
                outcome=Outcome.ERROR,
                detail=f"this worker has no judge for {trigger.kind} triggers; it cannot tell",
            )
        return await judge(self, trigger)

    async def gate(self, gate: AdvanceWhen) -> TriggerVerdict:
        return await self._compare(
            _gate_name(gate),
            gate.non_inferior,
            gate.margin,
            gate.relative,
            self.check.gate_alpha,
            Threshold(below=-gate.margin),
        )

    async def threshold(self, trigger: ThresholdTrigger) -> TriggerVerdict:
        """A query's value against the healthy range."""
        return await judge_trigger(self.provider, trigger, self.check.variables)

    async def compare(self, trigger: CompareTrigger) -> TriggerVerdict:
        """The candidate against the incumbent by the sequential test; the estimate is shown."""
        rule = trigger.compare
        return await self._compare(
            trigger.name, rule.metric, rule.max_drop, rule.relative,
            self.check.alphas.get(trigger.name, 0.05), trigger.limit(),
        )  # fmt: skip

    async def budget(self, trigger: BudgetTrigger) -> TriggerVerdict:
        """The reward the candidate may have cost; the upper bound (the possible loss) is shown."""
        rule = trigger.budget
        alpha = self.check.alphas.get(trigger.name, 0.05)

        def decide(incumbent: ArmStats, candidate: ArmStats) -> _Statistical:
            return reward_loss_upper_bound(
                incumbent, candidate, max_reward_loss=rule.max_reward_loss, alpha=alpha,
                expected_n=self.check.expected_samples,
                higher_is_better=self.check.metrics[rule.metric].higher_is_better,
            )  # fmt: skip

        return await self._statistical(
            trigger.name, f"budget {rule.metric}", rule.metric, trigger.limit(), alpha, decide,
            shown=lambda result: result.upper,
        )  # fmt: skip

    async def drift(self, trigger: DriftTrigger) -> TriggerVerdict:
        """The candidate's actions against the incumbent's, by divergence and new actions."""
        name, rule = trigger.name, trigger.drift
        limits = {"js": rule.max_js, "psi": rule.max_psi, "new actions": rule.max_new_action_share}
        shown = ", ".join(f"{k} <= {v:g}" for k, v in limits.items() if v is not None)
        label = f"drift ({shown})"
        variables = self.check.variables
        try:
            incumbent, candidate = await asyncio.gather(
                self._actions(rule, variables["incumbent"]),
                self._actions(rule, variables["candidate"]),
            )
        except NoDataError as exc:
            return TriggerVerdict(
                trigger=name, outcome=Outcome.INCONCLUSIVE, query=label, detail=f"no data: {exc}"
            )
        except ProviderError as exc:
            return TriggerVerdict(
                trigger=name,
                outcome=Outcome.ERROR,
                query=label,
                detail=f"{type(exc).__name__}: {exc}",
            )
        result = action_drift(
            incumbent, candidate, smoothing=rule.smoothing, min_per_side=rule.min_samples
        )
        outcome, broken = judge_drift(
            result,
            max_js=rule.max_js,
            max_psi=rule.max_psi,
            max_new_action_share=rule.max_new_action_share,
        )
        return TriggerVerdict(
            trigger=name,
            outcome=outcome,
            value=result.js,
            query=label,
            detail=("; ".join(broken) + " | " if broken else "") + result.detail,
            evidence=Evidence(
                estimate=result.js,
                statistic=result.psi,
                n_incumbent=result.n_incumbent,
                n_candidate=result.n_candidate,
            ),
            awaiting_evidence=outcome is Outcome.INCONCLUSIVE,
        )

    async def shadow(self, trigger: ShadowTrigger) -> TriggerVerdict:
        """The paired shadow table: agreement, equal action shares, actions out of support."""
        name, rule = trigger.name, trigger.shadow
        label = "shadow pairs"
        try:
            query = render(rule.pairs, self.check.variables)
            counts = await self.provider.query_pairs(query, "incumbent_action", "candidate_action")
        except NoDataError as exc:
            return TriggerVerdict(
                trigger=name, outcome=Outcome.INCONCLUSIVE, query=label, detail=f"no data: {exc}"
            )
        except (ProviderError, TemplateError) as exc:
            return TriggerVerdict(
                trigger=name, outcome=Outcome.ERROR, query=label,
                detail=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
        pairs = {key: max(0, round(value)) for key, value in counts.items()}
        if sum(pairs.values()) == 0:
            return TriggerVerdict(
                trigger=name, outcome=Outcome.INCONCLUSIVE, query=label,
                detail="no data: no shadow pairs in the window",
            )  # fmt: skip
        # A pair is one request seen by both policies: the stage's expected_samples counts both.
        result = paired_actions(
            pairs, alpha=rule.alpha, smoothing=rule.smoothing,
            expected_pairs=max(1, self.check.expected_samples // 2),
        )  # fmt: skip
        outcome, findings = judge_shadow(
            result, min_samples=rule.min_samples, alpha=rule.alpha,
            min_agreement=rule.min_agreement, max_js=rule.max_js, max_psi=rule.max_psi,
            max_out_of_support=rule.max_out_of_support,
        )  # fmt: skip
        return TriggerVerdict(
            trigger=name,
            outcome=outcome,
            value=result.agreement,
            query=label,
            detail=("; ".join(findings) + " | " if findings else "") + result.detail,
            evidence=Evidence(
                estimate=result.agreement,
                lower=result.agreement_low,
                upper=result.agreement_high,
                statistic=result.homogeneity.statistic,
                boundary=result.homogeneity.boundary if result.homogeneity.df else None,
                n_incumbent=result.n,
                n_candidate=result.n,
                alpha=rule.alpha,
            ),
            awaiting_evidence=outcome is Outcome.INCONCLUSIVE,
        )

    async def segments(self, trigger: SegmentsTrigger) -> TriggerVerdict:
        """The compare test in every segment, and how evenly the candidate treats them.

        An average can improve while one segment gets worse, so the reward is compared per
        segment (compare_segments splits the level across the segments). With a fairness rule
        the trigger's alpha is split in two halves, one for the per-segment compare tests and
        one for the fairness ratio: by the union bound the trigger as a whole still rolls back
        a harmless, fair candidate with probability at most its alpha. A failure shown by
        either part fails the trigger whatever the other part could tell; the evidence is the
        worst segment's comparison.
        """
        name, rule = trigger.name, trigger.segments
        label = f"segments by {rule.label}"
        threshold = trigger.limit()
        alpha = self.check.alphas.get(name, 0.05)
        try:
            queries = self._segment_queries()
        except _Unanswerable as exc:
            return TriggerVerdict(
                trigger=name, outcome=Outcome.ERROR, threshold=threshold, query=label,
                detail=str(exc),
            )  # fmt: skip
        part_alpha = alpha / 2 if rule.fairness is not None else alpha
        compared, fairness = await asyncio.gather(
            self._segments_compared(rule, queries, part_alpha),
            self._segments_fairness(rule, queries, part_alpha),
        )
        part, comparison = compared
        parts = [part] if fairness is None else [part, fairness]
        outcome, awaiting = _combined(parts)
        leads = [p.lead for p in parts if p.lead]
        if fairness is None:
            body = part.detail
        else:
            body = (
                f"alpha {alpha:g} split in halves ({part_alpha:g} each) between the segments' "
                f"compare tests and the fairness ratio | segments: {part.detail} | "
                f"fairness: {fairness.detail}"
            )
        evidence = None
        if comparison is not None:
            evidence = Evidence(
                estimate=comparison.estimate, lower=comparison.lower, upper=comparison.upper,
                statistic=comparison.statistic, boundary=comparison.boundary,
                n_incumbent=comparison.n_incumbent, n_candidate=comparison.n_candidate,
                alpha=comparison.segment_alpha,
            )  # fmt: skip
        return TriggerVerdict(
            trigger=name,
            outcome=outcome,
            value=None if comparison is None else comparison.estimate,
            threshold=threshold,
            query=label,
            detail=("; ".join(leads) + " | " if leads else "") + body,
            evidence=evidence,
            awaiting_evidence=awaiting,
        )

    async def spend(self, trigger: SpendTrigger) -> TriggerVerdict:
        """The candidate's spend over the rollout and over the stage, against their budgets.

        The backend's spend query is read twice for the candidate: as written (over the stage
        window) and with the stage window replaced by the rollout's, so one template serves
        both budgets. The rollout's spend is the value shown against the budget.
        """
        name, rule = trigger.name, trigger.spend
        threshold = trigger.limit()
        label = f"spend of {rule.field}"

        def verdict(outcome: Outcome, detail: str, query: str = label) -> TriggerVerdict:
            return TriggerVerdict(
                trigger=name, outcome=outcome, threshold=threshold, query=query, detail=detail
            )

        try:
            template = self._spend_query()
        except _Unanswerable as exc:
            return verdict(Outcome.ERROR, str(exc))
        variables = self.check.variables
        values = {**variables, "spend_field": rule.field}
        if "candidate" in variables:  # else rendering names the missing {{version}}
            values["version"] = variables["candidate"]
        try:
            stage_query = render(template, values)
            rollout_window = variables.get("rollout_window")
            if rollout_window is None:
                raise TemplateError(
                    "query variable {{rollout_window}} has no value at this check, so the "
                    "rollout's spend cannot be read"
                )
            rollout_query = render(template, {**values, "stage_window": rollout_window})
        except TemplateError as exc:
            return verdict(Outcome.ERROR, str(exc), template)
        try:
            stage, rollout = await asyncio.gather(
                self.provider.query(stage_query), self.provider.query(rollout_query)
            )
        except NoDataError as exc:
            return verdict(Outcome.INCONCLUSIVE, f"no data: {exc}", rollout_query)
        except ProviderError as exc:
            return verdict(Outcome.ERROR, f"{type(exc).__name__}: {exc}", rollout_query)
        result = judge_spend(
            rollout.value, stage.value, budget=rule.budget, stage_budget=rule.stage_budget,
            stage_elapsed_s=self.check.stage_elapsed, stage_left_s=self.check.stage_left,
        )  # fmt: skip
        return TriggerVerdict(
            trigger=name,
            outcome=result.verdict,
            value=result.rollout_spent,
            threshold=threshold,
            query=rollout_query,
            detail=result.detail,
        )

    async def review(self, trigger: ReviewTrigger) -> TriggerVerdict:
        """Reviewers' verdicts on the candidate's proposals: the reject share's bounds.

        The counts come with the check (the workflow's audited verdicts), not from monitoring,
        so this judge queries nothing; the estimate of the reject share is the value shown.
        """
        name, rule = trigger.name, trigger.review
        alpha = self.check.alphas.get(name, 0.05)
        counts = self.check.reviews
        result = review_rejections(
            counts.rejected, counts.approved + counts.rejected,
            max_reject_share=rule.max_reject_share, alpha=alpha, min_reviews=rule.min_reviews,
        )  # fmt: skip
        return TriggerVerdict(
            trigger=name,
            outcome=result.verdict,
            value=result.estimate,
            threshold=trigger.limit(),
            query="reviewers' verdicts",
            detail=result.detail,
            evidence=Evidence(
                estimate=result.estimate,
                lower=result.lower,
                upper=result.upper,
                boundary=rule.max_reject_share,
                n_candidate=result.n,
                alpha=alpha,
            ),
            awaiting_evidence=result.verdict is Outcome.INCONCLUSIVE,
        )

    def _backend(self) -> MonitoringBackend:
        """The declaration of the check's monitoring type, for the queries it provides."""
        kind = self.check.monitoring.type
        try:
            return monitoring_backend(kind)
        except UnknownBackendType as exc:
            raise _Unanswerable(str(exc)) from exc

    def _segment_queries(self) -> SegmentQueries:
        backend = self._backend()
        if backend.segments is None:
            raise _Unanswerable(
                f"the {backend.type} monitoring backend has no per-segment queries, so a "
                "segments trigger cannot be judged on it; use monitoring that answers by "
                "segment (e.g. prometheus)"
            )
        return backend.segments

    def _spend_query(self) -> str:
        backend = self._backend()
        if backend.spend is None:
            raise _Unanswerable(
                f"the {backend.type} monitoring backend has no spend query, so a spend trigger "
                "cannot be judged on it; use monitoring that reads the router's spend counter"
            )
        return backend.spend

    def _segment_values(self, rule: SegmentsRule, version: str) -> dict[str, str]:
        return {**self.check.variables, "version": version, "segment_label": rule.label}

    async def _segments_compared(
        self, rule: SegmentsRule, queries: SegmentQueries, alpha: float
    ) -> tuple[_Part, SegmentComparison | None]:
        """No segment harmed: compare_segments over both arms' per-segment statistics."""
        variables = self.check.variables
        try:
            (incumbent, gaps_i), (candidate, gaps_c) = await asyncio.gather(
                self._segment_arm(rule, queries, variables["incumbent"]),
                self._segment_arm(rule, queries, variables["candidate"]),
            )
        except NoDataError as exc:
            return _Part(Outcome.INCONCLUSIVE, f"no data: {exc}"), None
        except ProviderError as exc:
            return _Part(Outcome.ERROR, f"{type(exc).__name__}: {exc}"), None
        result = compare_segments(
            incumbent, candidate, max_drop=rule.max_drop, relative=rule.relative, alpha=alpha,
            expected_n=self.check.expected_samples, higher_is_better=True,
            min_samples=max(2, rule.min_samples), segments_planned=rule.segments,
        )  # fmt: skip
        harmed = [o.segment for o in result.segments if o.verdict is Outcome.FAIL]
        lead = f"harmed in segment(s) {', '.join(harmed)}" if harmed else ""
        gaps = sorted(set(gaps_i) | set(gaps_c))
        note = f"; incomplete answers, not judged: {', '.join(gaps)}" if gaps else ""
        part = _Part(
            result.verdict, result.detail + note, lead, result.verdict is Outcome.INCONCLUSIVE
        )
        return part, result

    async def _segment_arm(
        self, rule: SegmentsRule, queries: SegmentQueries, version: str
    ) -> tuple[dict[str, ArmStats], list[str]]:
        """One arm's statistics per segment, and the segments some answer left out.

        A segment with observations whose sum or sum of squares is missing is not judged on a
        guessed zero: it is left out and named.
        """
        values = self._segment_values(rule, version)
        templates = (queries.count, queries.total, queries.total_squares)
        try:
            rendered = [render(template, values) for template in templates]
        except TemplateError as exc:
            raise ProviderError(str(exc)) from exc
        counts, totals, squares = await asyncio.gather(
            *(self.provider.query_by(query, "segment") for query in rendered)
        )
        stats: dict[str, ArmStats] = {}
        gaps: list[str] = []
        for segment, count in counts.items():
            if round(count) > 0 and (segment not in totals or segment not in squares):
                gaps.append(segment)
                continue
            stats[segment] = _arm_of(count, totals.get(segment, 0.0), squares.get(segment, 0.0))
        return stats, gaps

    async def _segments_fairness(
        self, rule: SegmentsRule, queries: SegmentQueries, alpha: float
    ) -> _Part | None:
        """The fairness ratio of the rule's action across segments; None without a rule."""
        fairness = rule.fairness
        if fairness is None:
            return None
        variables = self.check.variables
        try:
            incumbent, candidate = await asyncio.gather(
                self._segment_rates(rule, queries, fairness.action, variables["incumbent"]),
                self._segment_rates(rule, queries, fairness.action, variables["candidate"]),
            )
        except NoDataError as exc:
            return _Part(Outcome.INCONCLUSIVE, f"no data: {exc}")
        except ProviderError as exc:
            return _Part(Outcome.ERROR, f"{type(exc).__name__}: {exc}")
        result = fairness_ratio(
            candidate, incumbent, min_ratio=fairness.min_ratio,
            max_ratio_drop=fairness.max_ratio_drop, alpha=alpha, min_samples=rule.min_samples,
            segments_planned=rule.segments,
        )  # fmt: skip
        return _Part(
            result.verdict,
            f"rate of {fairness.action}: {result.detail}",
            _unfair(fairness.action, result),
            result.verdict is Outcome.INCONCLUSIVE,
        )

    async def _segment_rates(
        self, rule: SegmentsRule, queries: SegmentQueries, action: str, version: str
    ) -> dict[str, tuple[int, int]]:
        """One arm's (decisions of `action`, all decisions) per segment."""
        try:
            rendered = render(queries.decisions, self._segment_values(rule, version))
        except TemplateError as exc:
            raise ProviderError(str(exc)) from exc
        table = await self.provider.query_pairs(rendered, "segment", "action")
        rates: dict[str, tuple[int, int]] = {}
        for (segment, taken), value in table.items():
            count = max(0, round(value))
            events, decisions = rates.get(segment, (0, 0))
            rates[segment] = (events + (count if taken == action else 0), decisions + count)
        return rates

    async def _arms(self, metric: str) -> tuple[ArmStats, ArmStats]:
        definition = self.check.metrics[metric]
        variables = self.check.variables
        incumbent, candidate = await asyncio.gather(
            arm_stats(self.provider, definition, variables, variables["incumbent"]),
            arm_stats(self.provider, definition, variables, variables["candidate"]),
        )
        return incumbent, candidate

    async def _compare(
        self,
        name: str,
        metric: str,
        max_drop: float,
        relative: bool,
        alpha: float,
        threshold: Threshold | None,
    ) -> TriggerVerdict:
        def decide(incumbent: ArmStats, candidate: ArmStats) -> _Statistical:
            return compare_means(
                incumbent, candidate, max_drop=max_drop, relative=relative, alpha=alpha,
                expected_n=self.check.expected_samples,
                higher_is_better=self.check.metrics[metric].higher_is_better,
            )  # fmt: skip

        return await self._statistical(
            name, f"compare {metric}", metric, threshold, alpha, decide,
            shown=lambda result: result.estimate,
        )  # fmt: skip

    async def _actions(self, rule: DriftRule, version: str) -> dict[str, int]:
        try:
            query = render(rule.by_action, {**self.check.variables, "version": version})
        except TemplateError as exc:
            raise ProviderError(str(exc)) from exc
        counts = await self.provider.query_by(query, "action")
        return {action: max(0, round(value)) for action, value in counts.items()}

    async def _statistical(
        self,
        name: str,
        label: str,
        metric: str,
        threshold: Threshold | None,
        alpha: float,
        decide: Callable[[ArmStats, ArmStats], _Statistical],
        *,
        shown: Callable[[_Statistical], float | None],
    ) -> TriggerVerdict:
        """Read both arms of `metric`, decide, and keep the evidence with the verdict.

        `shown` picks the number plotted against the threshold (an estimate, or a bound).
        """
        try:
            incumbent, candidate = await self._arms(metric)
        except NoDataError as exc:
            return _no_data(name, threshold, metric, exc)
        except ProviderError as exc:
            return _broken(name, threshold, metric, exc)
        result = decide(incumbent, candidate)
        evidence = Evidence(
            estimate=result.estimate, lower=result.lower, upper=result.upper,
            statistic=result.statistic, boundary=result.boundary,
            n_incumbent=result.n_incumbent, n_candidate=result.n_candidate, alpha=alpha,
        )  # fmt: skip
        return TriggerVerdict(
            trigger=name,
            outcome=result.verdict,
            value=shown(result),
            threshold=threshold,
            query=label,
            detail=result.detail,
            evidence=evidence,
            awaiting_evidence=result.verdict is Outcome.INCONCLUSIVE,
        )


class _Unanswerable(Exception):
    """The monitoring backend cannot answer what a trigger reads (its verdict is an error)."""


@dataclass(frozen=True)
class _Part:
    """One part of a segments verdict (the compare tests, or the fairness ratio)."""

    outcome: Outcome
    detail: str
    lead: str = ""
    """What failed, named first in the verdict's detail; empty unless the part failed."""
    awaiting: bool = False
    """Inconclusive on real data (a test still deciding), not for want of data."""


def _combined(parts: list[_Part]) -> tuple[Outcome, bool]:
    """The verdict of all parts: a shown failure first, then an error, then undecided.

    A failure is never hidden by the other part's error; the verdict awaits evidence only when
    every undecided part has data.
    """
    outcomes = [part.outcome for part in parts]
    for outcome in (Outcome.FAIL, Outcome.ERROR, Outcome.INCONCLUSIVE):
        if outcome in outcomes:
            undecided = [p for p in parts if p.outcome is Outcome.INCONCLUSIVE]
            awaiting = outcome is Outcome.INCONCLUSIVE and all(p.awaiting for p in undecided)
            return outcome, awaiting
    return Outcome.PASS, False


def _unfair(action: str, result: FairnessResult) -> str:
    """The fairness failure in a few words, naming the two segments; empty when it passed."""
    if result.verdict is not Outcome.FAIL:
        return ""
    ratio = "n/a" if result.estimate is None else f"{result.estimate:.3f}"
    return (
        f"unfair rate of {action}: segment {result.lowest} against {result.highest} (ratio {ratio})"
    )


_KindJudge = Callable[[_Judge, Any], Awaitable[TriggerVerdict]]
"""A judge of one kind; it is only ever called with a trigger of the kind it is registered for."""

JUDGES: Mapping[TriggerKind, _KindJudge] = {
    ThresholdTrigger.kind: _Judge.threshold,
    CompareTrigger.kind: _Judge.compare,
    BudgetTrigger.kind: _Judge.budget,
    DriftTrigger.kind: _Judge.drift,
    ShadowTrigger.kind: _Judge.shadow,
    SegmentsTrigger.kind: _Judge.segments,
    SpendTrigger.kind: _Judge.spend,
    ReviewTrigger.kind: _Judge.review,
}
"""The judge of each kind of trigger: a kind without one is judged an error, never a pass."""


class _Statistical(Protocol):
    """What compare_means and reward_loss_upper_bound both report."""

    @property
    def verdict(self) -> Outcome: ...
    @property
    def estimate(self) -> float | None: ...
    @property
    def lower(self) -> float | None: ...
    @property
    def upper(self) -> float | None: ...
    @property
    def statistic(self) -> float | None: ...
    @property
    def boundary(self) -> float | None: ...
    @property
    def n_incumbent(self) -> int: ...
    @property
    def n_candidate(self) -> int: ...
    @property
    def detail(self) -> str: ...


def _no_data(name: str, threshold: Threshold | None, metric: str, exc: Exception) -> TriggerVerdict:
    return TriggerVerdict(
        trigger=name, outcome=Outcome.INCONCLUSIVE, threshold=threshold,
        query=f"metric {metric}", detail=f"no data: {exc}",
    )  # fmt: skip


def _broken(name: str, threshold: Threshold | None, metric: str, exc: Exception) -> TriggerVerdict:
    return TriggerVerdict(
        trigger=name, outcome=Outcome.ERROR, threshold=threshold,
        query=f"metric {metric}", detail=f"{type(exc).__name__}: {exc}",
    )  # fmt: skip


async def arm_stats(
    provider: MetricProvider, metric: ArmMetric, variables: dict[str, str], version: str
) -> ArmStats:
    """One arm's sufficient statistics; counters' extrapolated increases are rounded.

    Raises NoDataError when the arm has no observations series at all (never a zero count).
    """
    values = {**variables, "version": version}
    try:
        queries = [render(metric.count, values), render(metric.total, values)]
        if metric.total_squares is not None:
            queries.append(render(metric.total_squares, values))
    except TemplateError as exc:
        raise ProviderError(str(exc)) from exc
    samples = await asyncio.gather(*(provider.query(q) for q in queries))
    squares = samples[2].value if metric.total_squares is not None else None
    return _arm_of(samples[0].value, samples[1].value, squares)


def _arm_of(count: float, total: float, squares: float | None) -> ArmStats:
    """Statistics from counters' increases: the count rounded, none at all when it is 0.

    Without a sum of squares the metric is a 0/1 rate: `total` counts the events among them.
    """
    n = max(0, round(count))
    if n == 0:
        return ArmStats(0, 0.0, 0.0)
    if squares is None:  # a 0/1 metric: events among n
        return ArmStats.from_events(n, min(n, max(0, round(total))))
    return ArmStats(n, total, max(0.0, squares))


async def judge_trigger(
    provider: MetricProvider, trigger: ThresholdTrigger, variables: dict[str, str]
) -> TriggerVerdict:
    """Query one trigger and judge it: no data is INCONCLUSIVE, a broken answer is ERROR."""
    threshold = trigger.threshold
    template = trigger.query
    healthy = describe_threshold(threshold.above, threshold.below)

    def verdict(
        outcome: Outcome, detail: str, query: str, value: float | None = None
    ) -> TriggerVerdict:
        return TriggerVerdict(
            trigger=trigger.name,
            outcome=outcome,
            value=value,
            threshold=threshold,
            query=query,
            detail=detail,
        )

    try:
        query = render(template, variables)
    except TemplateError as exc:
        return verdict(Outcome.ERROR, str(exc), template)
    try:
        sample = await provider.query(query)
    except NoDataError as exc:
        return verdict(Outcome.INCONCLUSIVE, f"no data: {exc}", query)
    except ProviderError as exc:
        return verdict(Outcome.ERROR, f"{type(exc).__name__}: {exc}", query)
    problem = breach(sample.value, threshold.above, threshold.below)
    if problem is not None:
        return verdict(Outcome.FAIL, f"{problem} (healthy: {healthy})", query, sample.value)
    return verdict(Outcome.PASS, f"{sample.value:g} (healthy: {healthy})", query, sample.value)
