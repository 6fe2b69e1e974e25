"""The check activity: query monitoring for every rollback trigger, then judge the answers.

Judging lives here, in an activity, rather than in the workflow: the verdict is recorded in the
workflow's history as this activity's result, so a worker with a better judge never breaks the
replay of a rollout already running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

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
from analysis.drift import action_drift
from analysis.sequential import ArmStats, compare_means
from analysis.shadow import PairedActions, paired_actions
from analysis.thresholds import breach, describe_threshold
from rollout_specs import (
    AdvanceWhen,
    ArmMetric,
    DriftRule,
    RollbackTrigger,
    ShadowRule,
    TemplateError,
    Threshold,
    render,
)

__all__ = ["CheckActivities", "arm_stats", "judge_trigger", "shadow_findings"]


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
        if trigger.compare is not None:
            rule = trigger.compare
            return await self._compare(
                trigger.name, rule.metric, rule.max_drop, rule.relative,
                self.check.alphas.get(trigger.name, 0.05),
            )  # fmt: skip
        if trigger.budget is not None:
            return await self._budget(trigger)
        if trigger.drift is not None:
            return await self._drift(trigger.name, trigger.drift)
        if trigger.shadow is not None:
            return await self._shadow(trigger.name, trigger.shadow)
        return await judge_trigger(self.provider, trigger, self.check.variables)

    async def gate(self, gate: AdvanceWhen) -> TriggerVerdict:
        return await self._compare(
            _gate_name(gate), gate.non_inferior, gate.margin, gate.relative, self.check.gate_alpha
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
        self, name: str, metric: str, max_drop: float, relative: bool, alpha: float
    ) -> TriggerVerdict:
        def decide(incumbent: ArmStats, candidate: ArmStats) -> _Statistical:
            return compare_means(
                incumbent, candidate, max_drop=max_drop, relative=relative, alpha=alpha,
                expected_n=self.check.expected_samples,
                higher_is_better=self.check.metrics[metric].higher_is_better,
            )  # fmt: skip

        return await self._statistical(
            name, f"compare {metric}", metric, Threshold(below=-max_drop), alpha, decide
        )

    async def _budget(self, trigger: RollbackTrigger) -> TriggerVerdict:
        rule = trigger.budget
        if rule is None:
            raise ValueError(f"trigger {trigger.name} is not a budget trigger")
        alpha = self.check.alphas.get(trigger.name, 0.05)

        def decide(incumbent: ArmStats, candidate: ArmStats) -> _Statistical:
            return reward_loss_upper_bound(
                incumbent, candidate, max_reward_loss=rule.max_reward_loss, alpha=alpha,
                expected_n=self.check.expected_samples,
                higher_is_better=self.check.metrics[rule.metric].higher_is_better,
            )  # fmt: skip

        threshold = Threshold(above=rule.max_reward_loss)
        return await self._statistical(
            trigger.name, f"budget {rule.metric}", rule.metric, threshold, alpha, decide
        )

    async def _drift(self, name: str, rule: DriftRule) -> TriggerVerdict:
        """The candidate's actions against the incumbent's, by divergence and new actions."""
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
        measured = {"js": result.js, "psi": result.psi, "new actions": result.new_action_share}
        broken = []
        for key, limit in limits.items():
            value = measured[key]
            if limit is not None and value is not None and value > limit:
                broken.append(f"{key} {value:.4g} > {limit:g}")
        if not result.enough_data:
            outcome = Outcome.INCONCLUSIVE
        else:
            outcome = Outcome.FAIL if broken else Outcome.PASS
        detail = (
            "; ".join(broken) + " | " if broken and outcome is Outcome.FAIL else ""
        ) + result.detail
        return TriggerVerdict(
            trigger=name,
            outcome=outcome,
            value=result.js,
            query=label,
            detail=detail,
            evidence=Evidence(
                estimate=result.js,
                statistic=result.psi,
                n_incumbent=result.n_incumbent,
                n_candidate=result.n_candidate,
            ),
            awaiting_evidence=outcome is Outcome.INCONCLUSIVE,
        )

    async def _shadow(self, name: str, rule: ShadowRule) -> TriggerVerdict:
        """The paired shadow table: agreement, equal action shares, actions out of support."""
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
        outcome, shown = shadow_findings(rule, result)
        return TriggerVerdict(
            trigger=name,
            outcome=outcome,
            value=result.agreement,
            query=label,
            detail=("; ".join(shown) + " | " if shown else "") + result.detail,
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
        threshold: Threshold,
        alpha: float,
        decide: Callable[[ArmStats, ArmStats], _Statistical],
    ) -> TriggerVerdict:
        """Read both arms of `metric`, decide, and keep the evidence with the verdict."""
        try:
            incumbent, candidate = await self._arms(metric)
        except NoDataError as exc:
            return _no_data(name, threshold, metric, exc)
        except ProviderError as exc:
            return _broken(name, threshold, metric, exc)
        result = decide(incumbent, candidate)
        outcome = _OUTCOMES.get(result.verdict, Outcome.INCONCLUSIVE)
        evidence = Evidence(
            estimate=result.estimate, lower=result.lower, upper=result.upper,
            statistic=result.statistic, boundary=result.boundary,
            n_incumbent=result.n_incumbent, n_candidate=result.n_candidate, alpha=alpha,
        )  # fmt: skip
        return TriggerVerdict(
            trigger=name,
            outcome=outcome,
            value=result.upper if label.startswith("budget") else result.estimate,
            threshold=threshold,
            query=label,
            detail=result.detail,
            evidence=evidence,
            awaiting_evidence=outcome is Outcome.INCONCLUSIVE,
        )


class _Statistical(Protocol):
    """What compare_means and reward_loss_upper_bound both report."""

    @property
    def verdict(self) -> str: ...
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


_OUTCOMES = {"fail": Outcome.FAIL, "pass": Outcome.PASS, "ok": Outcome.PASS}
"""Statistical verdicts as outcomes; anything else (inconclusive) is awaiting evidence."""


def shadow_findings(rule: ShadowRule, result: PairedActions) -> tuple[Outcome, list[str]]:
    """The verdict of a shadow window, and the findings behind it.

    Fail needs evidence: an agreement rate whose Wilson upper bound is below the floor, action
    shares that differ significantly (Stuart-Maxwell at `alpha`) *and* by more than the effect
    size limit, or too many actions out of the incumbent's support. Pass needs evidence too:
    the agreement's lower bound at or above the floor. Anything between is awaiting evidence.
    """
    if result.n < rule.min_samples:
        return Outcome.INCONCLUSIVE, [f"not enough pairs (need {rule.min_samples})"]
    significant = result.homogeneity.p_value < rule.alpha
    broken: list[str] = []
    unsure: list[str] = []
    if rule.min_agreement is not None:
        if result.agreement_high < rule.min_agreement:
            broken.append(f"agreement <= {result.agreement_high:.3f} < {rule.min_agreement:g}")
        elif result.agreement_low < rule.min_agreement:
            unsure.append(f"agreement not yet shown >= {rule.min_agreement:g}")
    for key, value, limit in (("js", result.js, rule.max_js), ("psi", result.psi, rule.max_psi)):
        if limit is not None and value > limit:
            (broken if significant else unsure).append(f"{key} {value:.4g} > {limit:g}")
    share, most = result.out_of_support, rule.max_out_of_support
    if most is not None and share > most:
        broken.append(f"out of support {share:.2%} > {most:.2%}")
    if broken:
        return Outcome.FAIL, broken
    if unsure:
        return Outcome.INCONCLUSIVE, unsure
    return Outcome.PASS, []


def _no_data(name: str, threshold: Threshold, metric: str, exc: Exception) -> TriggerVerdict:
    return TriggerVerdict(
        trigger=name, outcome=Outcome.INCONCLUSIVE, threshold=threshold,
        query=f"metric {metric}", detail=f"no data: {exc}",
    )  # fmt: skip


def _broken(name: str, threshold: Threshold, metric: str, exc: Exception) -> TriggerVerdict:
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
    provider: MetricProvider, trigger: RollbackTrigger, variables: dict[str, str]
) -> TriggerVerdict:
    """Query one trigger and judge it: no data is INCONCLUSIVE, a broken answer is ERROR."""
    if trigger.query is None or trigger.threshold is None:
        raise ValueError(f"trigger {trigger.name} is not a query-and-threshold trigger")
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
