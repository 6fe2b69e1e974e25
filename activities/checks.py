"""The check activity: query monitoring for every rollback trigger, then judge the answers.

Judging lives here, in an activity, rather than in the workflow: the verdict is recorded in the
workflow's history as this activity's result, so a worker with a better judge never breaks the
replay of a rollout already running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
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
from analysis.budget import reward_loss_upper_bound
from analysis.drift import action_drift, judge_drift
from analysis.sequential import ArmStats, compare_means
from analysis.shadow import judge_shadow, paired_actions
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
        try:
            provider = self._backends.provider(check.monitoring)
        except UnknownBackendError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        judge = _Judge(provider, check)
        jobs = {asyncio.create_task(judge.trigger(t)): t for t in check.triggers}
        gate_job = asyncio.create_task(judge.gate(check.gate)) if check.gate is not None else None
        async with heartbeating():
            results, ending = await _gather_until_decided(check, jobs, gate_job)
        verdicts = [results.get(job) or _unanswered(t.name, ending) for job, t in jobs.items()]
        gate = None
        if gate_job is not None and check.gate is not None:
            gate = results.get(gate_job) or _unanswered(_gate_name(check.gate), ending)
        for verdict in [*verdicts, *([gate] if gate else [])]:
            activity.logger.info(
                "check %s: %s (%s)", verdict.trigger, verdict.outcome.value, verdict.detail
            )
        return CheckResult(checked_at=datetime.now(UTC), verdicts=verdicts, gate=gate)


async def _gather_until_decided(
    check: CheckInput,
    jobs: dict[asyncio.Task[TriggerVerdict], RollbackTrigger],
    gate_job: asyncio.Task[TriggerVerdict] | None,
) -> tuple[dict[asyncio.Task[TriggerVerdict], TriggerVerdict], str]:
    """Collect verdicts until all are in, a trigger trips, or the deadline passes.

    Returns the verdicts obtained and, when some are missing, why (for their `error` text).
    Every job still running on the way out, a cancelled activity's included, is cancelled.
    """
    pending: set[asyncio.Task[TriggerVerdict]] = {*jobs, *([gate_job] if gate_job else [])}
    results: dict[asyncio.Task[TriggerVerdict], TriggerVerdict] = {}
    loop = asyncio.get_running_loop()
    ends_at = None if check.deadline is None else loop.time() + check.deadline
    ending = ""
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
    return results, ending


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
        result = paired_actions(pairs, alpha=rule.alpha, smoothing=rule.smoothing)
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
                n_incumbent=result.n,
                n_candidate=result.n,
                alpha=rule.alpha,
            ),
            awaiting_evidence=outcome is Outcome.INCONCLUSIVE,
        )

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


_KindJudge = Callable[[_Judge, Any], Awaitable[TriggerVerdict]]
"""A judge of one kind; it is only ever called with a trigger of the kind it is registered for."""

JUDGES: Mapping[TriggerKind, _KindJudge] = {
    ThresholdTrigger.kind: _Judge.threshold,
    CompareTrigger.kind: _Judge.compare,
    BudgetTrigger.kind: _Judge.budget,
    DriftTrigger.kind: _Judge.drift,
    ShadowTrigger.kind: _Judge.shadow,
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
    n = max(0, round(samples[0].value))
    if n == 0:
        return ArmStats(0, 0.0, 0.0)
    if metric.total_squares is None:  # a 0/1 metric: events among n
        return ArmStats.from_events(n, min(n, max(0, round(samples[1].value))))
    total, squares = samples[1].value, max(0.0, samples[2].value)
    return ArmStats(n, total, squares)


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
