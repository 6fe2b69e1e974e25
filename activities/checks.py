"""The check activity: query monitoring for every rollback trigger, then judge the answers.

Judging lives here, in an activity, rather than in the workflow: the verdict is recorded in the
workflow's history as this activity's result, so a worker with a better judge never breaks the
replay of a rollout already running.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import RUN_CHECKS, CheckInput, CheckResult, Outcome, TriggerVerdict
from activities.errors import NoDataError, ProviderError, UnknownBackendError
from activities.providers.base import MetricProvider
from activities.registry import BackendRegistry
from analysis.thresholds import breach, describe_threshold
from rollout_specs import RollbackTrigger, TemplateError, render

__all__ = ["CheckActivities", "judge_trigger"]


class CheckActivities:
    """Runs checks against whichever monitoring backend the spec names."""

    def __init__(self, backends: BackendRegistry) -> None:
        self._backends = backends

    @activity.defn(name=RUN_CHECKS)
    async def run_checks(self, check: CheckInput) -> CheckResult:
        """Judge every trigger concurrently; data problems are verdicts, never exceptions."""
        try:
            provider = self._backends.provider(check.monitoring)
        except UnknownBackendError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        verdicts = await asyncio.gather(
            *(judge_trigger(provider, trigger, check.variables) for trigger in check.triggers)
        )
        for verdict in verdicts:
            activity.logger.info(
                "check %s: %s (%s)", verdict.trigger, verdict.outcome.value, verdict.detail
            )
        return CheckResult(checked_at=datetime.now(UTC), verdicts=list(verdicts))


async def judge_trigger(
    provider: MetricProvider, trigger: RollbackTrigger, variables: dict[str, str]
) -> TriggerVerdict:
    """Query one trigger and judge it: no data is INCONCLUSIVE, a broken answer is ERROR."""
    threshold = trigger.threshold
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
        query = render(trigger.query, variables)
    except TemplateError as exc:
        return verdict(Outcome.ERROR, str(exc), trigger.query)
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
