"""One check, one deadline: a fail is never lost, and a slow trigger never delays a rollback.

The check activity runs with a provider stand-in whose queries either answer at once or hang
until the test ends: the activity must come back by itself, keeping every verdict it obtained.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.checks import CheckActivities
from activities.contracts import CHECK_INCOMPLETE, CheckInput, CheckResult, Outcome
from activities.providers.base import Sample
from activities.registry import BackendRegistry
from rollout_specs import (
    BUILTIN_METRICS,
    AdvanceWhen,
    PrometheusMonitoring,
    RollbackTrigger,
    Threshold,
    ThresholdTrigger,
)

BOUND = 20.0
"""Seconds after which a check that has not come back counts as hung (the old behaviour)."""


class _Hanging:
    """Answers `fast_*` queries with their number at once; every other query never answers."""

    def __init__(self, answers: dict[str, float]) -> None:
        self.answers = answers
        self.released = asyncio.Event()
        self.cancelled = 0

    async def query(self, query: str) -> Sample:
        for key, value in self.answers.items():
            if query.startswith(key):
                return Sample(value=value)
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("a hanging query was released")

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        raise AssertionError("not asked in these tests")

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        raise AssertionError("not asked in these tests")


def _trigger(name: str, limit: int = 1) -> RollbackTrigger:
    return ThresholdTrigger(
        name=name, query=f"{name}{{}}", threshold=Threshold(above=0.05), failure_limit=limit
    )


def _check(triggers: list[RollbackTrigger], **extra: object) -> CheckInput:
    variables = {"target": "ranker", "incumbent": "41", "candidate": "42"}
    return CheckInput(
        monitoring=PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9"),
        triggers=triggers,
        variables={**variables, "stage_window": "60s", "check_interval": "1s"},
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def _run(client: httpx.AsyncClient, provider: _Hanging, check: CheckInput) -> CheckResult:
    registry = BackendRegistry(client, providers={"prometheus": lambda config, http: provider})
    run = ActivityEnvironment().run(CheckActivities(registry).run_checks, check)
    try:
        return await asyncio.wait_for(run, BOUND)
    finally:
        provider.released.set()


async def test_a_fail_that_trips_its_trigger_ends_the_check_without_waiting_for_slow_ones(
    client: httpx.AsyncClient,
) -> None:
    provider = _Hanging({"fast-errors": 0.5})
    triggers = [_trigger("slow-a"), _trigger("fast-errors"), _trigger("slow-b")]
    check = _check(triggers, deadline=600.0)  # a deadline far beyond the bound: not what ends it

    result = await _run(client, provider, check)

    outcomes = {v.trigger: v.outcome for v in result.verdicts}
    assert outcomes == {
        "slow-a": Outcome.ERROR,
        "fast-errors": Outcome.FAIL,
        "slow-b": Outcome.ERROR,
    }
    assert [v.trigger for v in result.verdicts] == ["slow-a", "fast-errors", "slow-b"]
    slow = result.verdicts[0]
    assert "fast-errors reached its failure_limit" in slow.detail
    assert provider.cancelled == 2, "the slow queries were cancelled, not left running"


async def test_a_fail_short_of_its_limit_still_waits_for_the_others_until_the_deadline(
    client: httpx.AsyncClient,
) -> None:
    # One failure of a failure_limit-2 trigger is no rollback yet: the check keeps collecting,
    # and the deadline ends it with the fail kept (it counts towards the next check's limit).
    provider = _Hanging({"fast-errors": 0.5})
    check = _check([_trigger("fast-errors", limit=2), _trigger("slow")], deadline=0.5)

    result = await _run(client, provider, check)

    fail, slow = result.verdicts
    assert fail.outcome is Outcome.FAIL
    assert fail.value == 0.5
    assert slow.outcome is Outcome.ERROR
    assert "no answer within the check's 0.5s deadline" in slow.detail


async def test_the_second_failure_in_a_row_trips_the_trigger_at_once(
    client: httpx.AsyncClient,
) -> None:
    provider = _Hanging({"fast-errors": 0.5})
    triggers = [_trigger("fast-errors", limit=2), _trigger("slow")]
    check = _check(triggers, deadline=600.0, failures={"fast-errors": 1})

    result = await _run(client, provider, check)

    assert [v.outcome for v in result.verdicts] == [Outcome.FAIL, Outcome.ERROR]


async def test_the_gate_is_judged_beside_the_triggers_and_errs_when_it_has_no_answer(
    client: httpx.AsyncClient,
) -> None:
    provider = _Hanging({"fast-errors": 0.0})
    check = _check(
        [_trigger("fast-errors")],
        deadline=0.5,
        gate=AdvanceWhen(non_inferior="reward", margin=0.02),
        metrics={"reward": BUILTIN_METRICS["prometheus"]["reward"]},
    )

    result = await _run(client, provider, check)

    assert [v.outcome for v in result.verdicts] == [Outcome.PASS]
    assert result.gate is not None
    assert result.gate.trigger == "advance_when:reward"
    assert result.gate.outcome is Outcome.ERROR, "no evidence for the gate is never a pass"
    assert "deadline" in result.gate.detail


async def test_a_judge_that_crashes_is_an_error_for_its_trigger_and_the_others_are_kept(
    client: httpx.AsyncClient,
) -> None:
    class _Crashing(_Hanging):
        async def query(self, query: str) -> Sample:
            if query.startswith("broken"):
                raise KeyError("boom")
            return await super().query(query)

    provider = _Crashing({"fast-errors": 0.5})
    result = await _run(client, provider, _check([_trigger("broken"), _trigger("fast-errors")]))

    broken, fail = result.verdicts
    assert broken.outcome is Outcome.ERROR
    assert "KeyError" in broken.detail
    assert fail.outcome is Outcome.FAIL


async def test_a_check_asked_to_fail_if_incomplete_raises_at_its_deadline(
    client: httpx.AsyncClient,
) -> None:
    # A check run inside the workflow task gives up rather than answer `error` for a trigger
    # that is merely slow: the workflow then runs it again as an activity with the full deadline.
    provider = _Hanging({"fast-errors": 0.0})
    check = _check([_trigger("fast-errors"), _trigger("slow")], deadline=0.2)
    check = check.model_copy(update={"fail_if_incomplete": True})

    with pytest.raises(ApplicationError) as raised:
        await _run(client, provider, check)

    assert raised.value.type == CHECK_INCOMPLETE
    assert raised.value.non_retryable
    assert "no answer within the check's 0.2s deadline" in str(raised.value)
    assert provider.cancelled == 1, "the slow query was cancelled, not left running"


async def test_a_check_that_may_not_be_incomplete_still_answers_a_trip_at_once(
    client: httpx.AsyncClient,
) -> None:
    # A tripped trigger is a complete answer: the rollback never waits for the slow query.
    provider = _Hanging({"fast-errors": 0.5})
    check = _check([_trigger("slow"), _trigger("fast-errors")], deadline=600.0)
    check = check.model_copy(update={"fail_if_incomplete": True})

    result = await _run(client, provider, check)

    assert [v.outcome for v in result.verdicts] == [Outcome.ERROR, Outcome.FAIL]
