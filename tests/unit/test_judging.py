"""Threshold judging and the verdict one trigger gets from one provider answer."""

from __future__ import annotations

import math

import pytest

from activities.checks import judge_trigger
from activities.contracts import Outcome
from activities.errors import (
    AmbiguousResultError,
    NoDataError,
    ProviderError,
    ProviderUnavailable,
)
from activities.providers.base import Sample
from analysis.thresholds import breach, describe_threshold
from rollout_specs import RollbackTrigger, Threshold


@pytest.mark.parametrize(
    ("value", "above", "below", "expected"),
    [
        (0.01, 0.01, None, None),  # on the bound is tolerated
        (0.0101, 0.01, None, "0.0101 is above 0.01"),
        (-1.0, None, 0.0, "-1 is below 0"),
        (5.0, 10.0, 0.0, None),
        (11.0, 10.0, 0.0, "11 is above 10"),
    ],
)
def test_breach(
    value: float, above: float | None, below: float | None, expected: str | None
) -> None:
    assert breach(value, above, below) == expected


def test_breach_refuses_to_judge_nan() -> None:
    with pytest.raises(ValueError, match="it is no data"):
        breach(math.nan, 1.0, None)


def test_describe_threshold() -> None:
    assert describe_threshold(0.01, None) == "<= 0.01"
    assert describe_threshold(None, 0.5) == ">= 0.5"
    assert describe_threshold(250, 0) == "in [0, 250]"


class _Answer:
    """A provider stand-in answering one fixed thing (unit test of judge_trigger only)."""

    def __init__(self, answer: float | Exception) -> None:
        self.answer = answer
        self.queries: list[str] = []

    async def query(self, query: str) -> Sample:
        self.queries.append(query)
        if isinstance(self.answer, Exception):
            raise self.answer
        return Sample(value=self.answer)


TRIGGER = RollbackTrigger(
    name="error-rate",
    query='errors{target="{{target}}",version="{{candidate}}"}',
    threshold=Threshold(above=0.05),
)
VARIABLES = {"target": "ranker", "candidate": "42"}


@pytest.mark.parametrize(
    ("answer", "outcome", "detail"),
    [
        (0.01, Outcome.PASS, "0.01 (healthy: <= 0.05)"),
        (0.2, Outcome.FAIL, "0.2 is above 0.05 (healthy: <= 0.05)"),
        (NoDataError("empty vector"), Outcome.INCONCLUSIVE, "no data: empty vector"),
        (ProviderUnavailable("refused"), Outcome.ERROR, "ProviderUnavailable: refused"),
        (AmbiguousResultError("2 series"), Outcome.ERROR, "AmbiguousResultError: 2 series"),
        (ProviderError("bad_data"), Outcome.ERROR, "ProviderError: bad_data"),
    ],
)
async def test_judge_trigger(answer: float | Exception, outcome: Outcome, detail: str) -> None:
    provider = _Answer(answer)
    verdict = await judge_trigger(provider, TRIGGER, VARIABLES)
    assert verdict.outcome is outcome
    assert verdict.detail == detail
    assert provider.queries == ['errors{target="ranker",version="42"}']
    assert verdict.query == provider.queries[0]


async def test_a_missing_template_value_is_an_error_and_nothing_is_queried() -> None:
    provider = _Answer(0.0)
    verdict = await judge_trigger(provider, TRIGGER, {"target": "ranker"})
    assert verdict.outcome is Outcome.ERROR
    assert "{{candidate}} has no value" in verdict.detail
    assert provider.queries == []
