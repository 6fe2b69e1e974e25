"""Threshold judging and the verdict one trigger gets from one provider answer."""

from __future__ import annotations

import math

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.checks import CheckActivities, judge_trigger
from activities.contracts import CheckInput, Outcome
from activities.errors import (
    AmbiguousResultError,
    NoDataError,
    ProviderError,
    ProviderUnavailable,
)
from activities.providers.base import Sample
from activities.registry import BackendRegistry
from analysis.thresholds import breach, describe_threshold
from rollout_specs import (
    BUILTIN_METRICS,
    CompareRule,
    CompareTrigger,
    DriftRule,
    DriftTrigger,
    PrometheusMonitoring,
    ShadowRule,
    ShadowTrigger,
    Threshold,
    ThresholdTrigger,
)


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


class _Unasked:
    """Base of provider stand-ins: a kind of query the judge should not send fails the test."""

    async def query(self, query: str) -> Sample:
        raise AssertionError(f"unexpected single-number query {query!r}")

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        raise AssertionError(f"unexpected by-{label} query {query!r}")

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        raise AssertionError(f"unexpected paired query {query!r}")


class _Answer(_Unasked):
    """A provider stand-in answering one fixed thing (unit test of judge_trigger only)."""

    def __init__(self, answer: float | Exception) -> None:
        self.answer = answer
        self.queries: list[str] = []

    async def query(self, query: str) -> Sample:
        self.queries.append(query)
        if isinstance(self.answer, Exception):
            raise self.answer
        return Sample(value=self.answer)


TRIGGER = ThresholdTrigger(
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


class _Arms(_Unasked):
    """Answers the built-in reward metric's per-arm queries from fixed sufficient statistics."""

    def __init__(self, arms: dict[str, tuple[float, float]]) -> None:
        self.arms = arms  # version -> (n, conversions)

    async def query(self, query: str) -> Sample:
        version = "41" if 'version="41"' in query else "42"
        n, total = self.arms[version]
        if "rewarded_decisions" in query:
            return Sample(value=n)
        return Sample(value=total)


def _compare_check(monitoring: PrometheusMonitoring) -> CheckInput:
    trigger = CompareTrigger(
        name="reward-regression", compare=CompareRule(metric="reward", max_drop=0.05)
    )
    return CheckInput(
        monitoring=monitoring,
        triggers=[trigger],
        variables={
            "target": "offers",
            "incumbent": "41",
            "candidate": "42",
            "rollout": "r",
            "stage": "canary",
            "percent": "10",
            "stage_window": "60s",
            "check_interval": "5s",
        },
        metrics={"reward": BUILTIN_METRICS["prometheus"]["reward"]},
        alphas={"reward-regression": 0.025},
        expected_samples=4000,
    )


@pytest.mark.parametrize(
    ("candidate", "outcome", "awaiting"),
    [
        ((2000, 700), Outcome.FAIL, False),  # 0.35 vs 0.54: a drop beyond 0.05 is established
        ((2000, 1090), Outcome.PASS, False),  # 0.545 vs 0.54: non-inferiority is established
        ((150, 78), Outcome.INCONCLUSIVE, True),  # too few to tell: keep baking, not "no data"
        ((0, 0), Outcome.INCONCLUSIVE, True),  # no observations yet: nothing is a pass
    ],
)
async def test_a_compare_trigger_judges_both_arms_and_keeps_its_evidence(
    candidate: tuple[float, float], outcome: Outcome, awaiting: bool
) -> None:
    monitoring = PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9")
    arms = _Arms({"41": (18000, 9720), "42": candidate})
    async with httpx.AsyncClient() as client:
        registry = BackendRegistry(client, providers={"prometheus": lambda config, http: arms})
        result = await ActivityEnvironment().run(
            CheckActivities(registry).run_checks, _compare_check(monitoring)
        )
    verdict = result.verdicts[0]
    assert verdict.outcome is outcome
    assert verdict.awaiting_evidence is awaiting
    assert verdict.evidence is not None
    assert verdict.evidence.n_incumbent == 18000
    assert verdict.evidence.n_candidate == candidate[0]
    assert verdict.evidence.alpha == 0.025
    if outcome is Outcome.FAIL:
        assert verdict.evidence.upper is not None
        assert verdict.evidence.upper < -0.05


class _Actions(_Unasked):
    """Answers per-arm decision counts by action (unit test of the drift judging only)."""

    def __init__(self, counts: dict[str, dict[str, float]]) -> None:
        self.counts = counts

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        assert label == "action"
        return self.counts["41" if 'version="41"' in query else "42"]


INCUMBENT_ACTIONS: dict[str, float] = {"none": 500, "discount_10": 300, "free_shipping": 200}


@pytest.mark.parametrize(
    ("candidate", "outcome", "detail"),
    [
        ({"none": 480, "discount_10": 320, "free_shipping": 200}, Outcome.PASS, ""),
        ({"none": 100, "discount_10": 100, "free_shipping": 800}, Outcome.FAIL, "js "),
        ({"none": 450, "discount_10": 300, "discount_90": 250}, Outcome.FAIL, "new actions 0.25"),
        ({"none": 10, "discount_10": 5}, Outcome.INCONCLUSIVE, ""),  # too few to judge
    ],
)
async def test_a_drift_trigger_compares_action_distributions(
    candidate: dict[str, float], outcome: Outcome, detail: str
) -> None:
    trigger = DriftTrigger(
        name="action-drift", drift=DriftRule(max_js=0.05, max_new_action_share=0.01)
    )
    check = _compare_check(PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9"))
    check = check.model_copy(update={"triggers": [trigger]})
    actions = _Actions({"41": INCUMBENT_ACTIONS, "42": candidate})
    async with httpx.AsyncClient() as client:
        registry = BackendRegistry(client, providers={"prometheus": lambda config, http: actions})
        result = await ActivityEnvironment().run(CheckActivities(registry).run_checks, check)
    verdict = result.verdicts[0]
    assert verdict.outcome is outcome, verdict.detail
    assert detail in verdict.detail
    assert verdict.awaiting_evidence is (outcome is Outcome.INCONCLUSIVE)


class _Pairs(_Unasked):
    """Answers the shadow pair table (unit test of the shadow judging only)."""

    def __init__(self, pairs: dict[tuple[str, str], float] | Exception) -> None:
        self.pairs = pairs
        self.asked: list[tuple[str, str, str]] = []

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        self.asked.append((query, first, second))
        if isinstance(self.pairs, Exception):
            raise self.pairs
        return self.pairs


@pytest.mark.parametrize(
    ("pairs", "outcome", "detail"),
    [
        ({("none", "none"): 900, ("none", "discount_10"): 60, ("discount_10", "none"): 40},
         Outcome.PASS, "agreement 0.900"),
        ({("none", "none"): 400, ("none", "discount_10"): 600}, Outcome.FAIL, "agreement <= "),
        ({("none", "none"): 40, ("none", "discount_10"): 10}, Outcome.INCONCLUSIVE, "not enough"),
        (NoDataError("no series"), Outcome.INCONCLUSIVE, "no data"),
    ],
)  # fmt: skip
async def test_a_shadow_trigger_judges_the_paired_table_with_its_evidence(
    pairs: dict[tuple[str, str], float] | Exception, outcome: Outcome, detail: str
) -> None:
    trigger = ShadowTrigger(
        name="shadow-actions", shadow=ShadowRule(min_agreement=0.8, min_samples=500)
    )
    check = _compare_check(PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9"))
    check = check.model_copy(update={"triggers": [trigger]})
    provider = _Pairs(pairs)
    async with httpx.AsyncClient() as client:
        registry = BackendRegistry(client, providers={"prometheus": lambda config, http: provider})
        result = await ActivityEnvironment().run(CheckActivities(registry).run_checks, check)
    verdict = result.verdicts[0]
    assert verdict.outcome is outcome, verdict.detail
    assert detail in verdict.detail
    query, first, second = provider.asked[0]
    assert (first, second) == ("incumbent_action", "candidate_action")
    assert f'target="{check.variables["target"]}"' in query
    if not isinstance(pairs, Exception):
        assert verdict.evidence is not None
        assert verdict.evidence.n_candidate == sum(pairs.values())
        assert verdict.awaiting_evidence is (outcome is Outcome.INCONCLUSIVE)
    else:
        assert not verdict.awaiting_evidence, "missing data is no evidence, not a test deciding"
