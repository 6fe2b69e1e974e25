"""The judges of the guardrail triggers: no segment harmed (and fair), spend, and review.

Each judge runs against a provider stand-in that answers the built-in Prometheus queries from
small tables, so the queries the judge renders are checked too (one arm per `version`, the
segment label, the spend field, the stage's and the rollout's windows).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities import checks
from activities.checks import JUDGES, CheckActivities
from activities.contracts import CheckInput, CheckResult, Outcome, ReviewCounts, TriggerVerdict
from activities.errors import NoDataError, ProviderError, ProviderUnavailable
from activities.providers.base import MetricProvider, Sample
from activities.registry import BackendRegistry
from rollout_specs import HttpMonitoring, PrometheusMonitoring, RollbackTrigger, Threshold
from rollout_specs.backends import MonitoringBackend, monitoring_backend
from rollout_specs.models import (
    Fairness,
    ReviewRule,
    ReviewTrigger,
    SegmentsRule,
    SegmentsTrigger,
    SpendRule,
    SpendTrigger,
)
from runtime.history import RecordedCheck
from runtime.report import trigger_plot

INCUMBENT, CANDIDATE = "41", "42"
VARIABLES = {
    "target": "ranker",
    "incumbent": INCUMBENT,
    "candidate": CANDIDATE,
    "stage_window": "600s",
    "rollout_window": "7200s",
    "check_interval": "30s",
}
PROMETHEUS = PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9")

Arm = tuple[float, float, float]
"""One segment of one arm: rewarded decisions, sum of rewards, sum of squared rewards."""


def _arm(n: int, mean: float, sd: float = 1.0) -> Arm:
    return (float(n), n * mean, n * (sd**2 + mean**2))


def _version(query: str) -> str:
    found = re.search(r'version="([^"]*)"', query)
    assert found, f"no arm in {query!r}"
    return found.group(1)


class _Monitoring:
    """Answers the built-in Prometheus segment and spend queries from tables (or fails)."""

    def __init__(
        self,
        rewards: dict[str, dict[str, Arm]] | None = None,
        decisions: dict[str, dict[tuple[str, str], float]] | None = None,
        spend: dict[str, float] | None = None,
        failure: Exception | None = None,
    ) -> None:
        self.rewards = rewards or {}
        self.decisions = decisions or {}
        self.spend = spend or {}
        self.failure = failure
        self.queries: list[str] = []

    def _asked(self, query: str) -> None:
        self.queries.append(query)
        if self.failure is not None:
            raise self.failure

    async def query(self, query: str) -> Sample:
        self._asked(query)
        assert "lockgate_action_value_total" in query
        assert _version(query) == CANDIDATE
        window = re.search(r"\[(\w+)\]", query)
        assert window, query
        return Sample(value=self.spend[window.group(1)])

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        self._asked(query)
        assert label == "segment"
        column = next(
            i
            for i, metric in enumerate(
                ("rewarded_decisions_total", "segment_rewards_total", "reward_squares_total")
            )
            if metric in query
        )
        arm = self.rewards[_version(query)]
        return {segment: values[column] for segment, values in arm.items()}

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        self._asked(query)
        assert (first, second) == ("segment", "action")
        assert "lockgate_segment_decisions_total" in query
        return self.decisions[_version(query)]


def _check(trigger: RollbackTrigger, **extra: object) -> CheckInput:
    fields: dict[str, object] = {
        "monitoring": PROMETHEUS,
        "triggers": [trigger],
        "variables": VARIABLES,
        "alphas": {trigger.name: 0.05},
        "expected_samples": 40_000,
        **extra,
    }
    return CheckInput.model_validate(fields)


async def _judge(
    provider: MetricProvider, trigger: RollbackTrigger, **extra: object
) -> TriggerVerdict:
    return await checks._Judge(provider, _check(trigger, **extra)).trigger(trigger)


def test_the_three_kinds_have_their_judges() -> None:
    assert JUDGES["segments"] is checks._Judge.segments
    assert JUDGES["spend"] is checks._Judge.spend
    assert JUDGES["review"] is checks._Judge.review


# --------------------------------------------------------------------------------- segments

SEGMENTS = SegmentsTrigger(
    name="no-region-harmed",
    segments=SegmentsRule(label="region", max_drop=0.1, segments=4, min_samples=100),
)
FAIR = SegmentsTrigger(
    name="no-region-harmed",
    segments=SegmentsRule(
        label="region",
        max_drop=0.1,
        segments=4,
        min_samples=100,
        fairness=Fairness(action="approve", min_ratio=0.8),
    ),
)
EVEN = {"eu": _arm(8000, 1.0), "us": _arm(8000, 1.0), "apac": _arm(8000, 1.0)}


def _decisions(approve: dict[str, int], per_segment: int = 4000) -> dict[tuple[str, str], float]:
    table: dict[tuple[str, str], float] = {}
    for segment, approved in approve.items():
        table[(segment, "approve")] = float(approved)
        table[(segment, "deny")] = float(per_segment - approved)
    return table


FAIR_DECISIONS = _decisions({"eu": 2000, "us": 2000, "apac": 2000})


async def test_segments_pass_when_no_segment_is_harmed() -> None:
    provider = _Monitoring(rewards={INCUMBENT: EVEN, CANDIDATE: EVEN})

    verdict = await _judge(provider, SEGMENTS)

    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert verdict.threshold == Threshold(below=-0.1)
    assert verdict.query == "segments by region"
    assert verdict.value == pytest.approx(0.0)
    assert verdict.evidence is not None
    assert verdict.evidence.estimate == verdict.value
    assert verdict.evidence.n_incumbent == verdict.evidence.n_candidate == 8000
    assert verdict.evidence.alpha == pytest.approx(0.05 / 4)  # the trigger's alpha / segments
    assert len(provider.queries) == 6  # count, total, squares per arm; no fairness rule
    assert all('label="region"' in q for q in provider.queries)
    assert {_version(q) for q in provider.queries} == {INCUMBENT, CANDIDATE}


async def test_segments_fail_naming_the_harmed_segment_with_its_evidence() -> None:
    harmed = {**EVEN, "eu": _arm(8000, 0.6)}
    provider = _Monitoring(rewards={INCUMBENT: EVEN, CANDIDATE: harmed})

    verdict = await _judge(provider, SEGMENTS)

    assert verdict.outcome is Outcome.FAIL
    assert verdict.detail.startswith("harmed in segment(s) eu | ")
    assert "us" not in verdict.detail.split(" | ")[0]
    assert verdict.value == pytest.approx(-0.4)  # the worst segment's estimate
    assert verdict.evidence is not None
    assert verdict.evidence.upper is not None
    assert verdict.evidence.upper < -0.1
    assert not verdict.awaiting_evidence


async def test_segments_name_every_harmed_segment() -> None:
    harmed = {**EVEN, "eu": _arm(8000, 0.6), "apac": _arm(8000, 0.7)}
    provider = _Monitoring(rewards={INCUMBENT: EVEN, CANDIDATE: harmed})

    verdict = await _judge(provider, SEGMENTS)

    assert verdict.outcome is Outcome.FAIL
    assert verdict.detail.startswith("harmed in segment(s) apac, eu | ")
    assert verdict.value == pytest.approx(-0.4)


async def test_segments_await_evidence_in_burn_in() -> None:
    small = {"eu": _arm(20, 1.0), "us": _arm(20, 1.0)}
    provider = _Monitoring(rewards={INCUMBENT: small, CANDIDATE: small})

    verdict = await _judge(provider, SEGMENTS)

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.awaiting_evidence, "a test still deciding on real data is not missing data"


async def test_a_segment_whose_sums_are_missing_is_named_not_judged_on_a_zero() -> None:
    class _Gappy(_Monitoring):
        async def query_by(self, query: str, label: str) -> dict[str, float]:
            answer = await super().query_by(query, label)
            if "rewarded_decisions" not in query and _version(query) == CANDIDATE:
                answer.pop("eu")
            return answer

    provider = _Gappy(rewards={INCUMBENT: EVEN, CANDIDATE: EVEN})

    verdict = await _judge(provider, SEGMENTS)

    assert "incomplete answers, not judged: eu" in verdict.detail
    assert verdict.outcome is not Outcome.FAIL


@pytest.mark.parametrize(
    ("failure", "outcome", "detail"),
    [
        (NoDataError("no series"), Outcome.INCONCLUSIVE, "no data: no series"),
        (ProviderUnavailable("refused"), Outcome.ERROR, "ProviderUnavailable: refused"),
        (ProviderError("bad_data"), Outcome.ERROR, "ProviderError: bad_data"),
    ],
)
async def test_segments_without_an_answer_are_never_a_pass(
    failure: Exception, outcome: Outcome, detail: str
) -> None:
    verdict = await _judge(_Monitoring(failure=failure), SEGMENTS)

    assert verdict.outcome is outcome
    assert verdict.detail == detail
    assert verdict.value is None
    assert verdict.evidence is None
    assert not verdict.awaiting_evidence


async def test_a_missing_template_value_is_an_error_for_segments() -> None:
    variables = {k: v for k, v in VARIABLES.items() if k != "stage_window"}
    provider = _Monitoring(rewards={INCUMBENT: EVEN, CANDIDATE: EVEN})

    verdict = await _judge(provider, SEGMENTS, variables=variables)

    assert verdict.outcome is Outcome.ERROR
    assert "{{stage_window}} has no value" in verdict.detail
    assert provider.queries == []


async def test_segments_on_monitoring_without_segment_queries_is_an_error() -> None:
    http = HttpMonitoring(type="http", url="http://127.0.0.1:9")

    verdict = await _judge(_Monitoring(), SEGMENTS, monitoring=http)

    assert verdict.outcome is Outcome.ERROR
    assert "the http monitoring backend has no per-segment queries" in verdict.detail


async def test_fairness_passes_when_the_action_is_as_frequent_everywhere() -> None:
    provider = _Monitoring(
        rewards={INCUMBENT: EVEN, CANDIDATE: EVEN},
        decisions={INCUMBENT: FAIR_DECISIONS, CANDIDATE: FAIR_DECISIONS},
    )

    verdict = await _judge(provider, FAIR)

    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert "alpha 0.05 split in halves (0.025 each)" in verdict.detail
    assert verdict.evidence is not None
    assert verdict.evidence.alpha == pytest.approx(0.025 / 4)
    pairs = [q for q in provider.queries if "lockgate_segment_decisions_total" in q]
    assert {_version(q) for q in pairs} == {INCUMBENT, CANDIDATE}


async def test_fairness_fails_naming_the_disfavoured_segment_though_no_reward_dropped() -> None:
    unfair = _decisions({"eu": 1000, "us": 2400, "apac": 2300})
    provider = _Monitoring(
        rewards={INCUMBENT: EVEN, CANDIDATE: EVEN},
        decisions={INCUMBENT: FAIR_DECISIONS, CANDIDATE: unfair},
    )

    verdict = await _judge(provider, FAIR)

    assert verdict.outcome is Outcome.FAIL
    lead = verdict.detail.split(" | ")[0]
    assert lead.startswith("unfair rate of approve: segment eu against us")
    assert "harmed" not in lead
    assert verdict.value == pytest.approx(0.0)  # still the worst segment's reward estimate


async def test_a_fairness_failure_is_not_hidden_by_broken_reward_queries() -> None:
    unfair = _decisions({"eu": 1000, "us": 2400, "apac": 2300})

    class _RewardsDown(_Monitoring):
        async def query_by(self, query: str, label: str) -> dict[str, float]:
            raise ProviderUnavailable("rewards are down")

    provider = _RewardsDown(decisions={INCUMBENT: FAIR_DECISIONS, CANDIDATE: unfair})

    verdict = await _judge(provider, FAIR)

    assert verdict.outcome is Outcome.FAIL
    assert "ProviderUnavailable: rewards are down" in verdict.detail
    assert verdict.evidence is None


async def test_fairness_without_decisions_keeps_the_verdict_short_of_a_pass() -> None:
    class _NoDecisions(_Monitoring):
        async def query_pairs(
            self, query: str, first: str, second: str
        ) -> dict[tuple[str, str], float]:
            raise NoDataError("no decisions")

    provider = _NoDecisions(rewards={INCUMBENT: EVEN, CANDIDATE: EVEN})

    verdict = await _judge(provider, FAIR)

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "fairness: no data: no decisions" in verdict.detail
    assert not verdict.awaiting_evidence, "missing data is no evidence, not a test deciding"


# ------------------------------------------------------------------------------------ spend

SPEND = SpendTrigger(
    name="discount-spend", spend=SpendRule(field="amount", budget=5000, stage_budget=1000)
)


async def test_spend_within_budget_passes_with_the_rollout_spend_as_value() -> None:
    provider = _Monitoring(spend={"600s": 300.0, "7200s": 1200.0})

    verdict = await _judge(provider, SPEND, stage_elapsed=300.0, stage_left=300.0)

    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert verdict.value == 1200.0
    assert verdict.threshold == Threshold(above=5000)
    assert "projected" in verdict.detail
    assert sorted(provider.queries) == sorted(
        'sum(increase(lockgate_action_value_total{target="ranker",version="42",'
        f'field="amount"}}[{window}])) or vector(0)'
        for window in ("600s", "7200s")
    )
    assert verdict.query == next(q for q in provider.queries if "[7200s]" in q)


async def test_spend_over_the_rollout_budget_fails_naming_it() -> None:
    provider = _Monitoring(spend={"600s": 400.0, "7200s": 5200.0})

    verdict = await _judge(provider, SPEND, stage_elapsed=300.0, stage_left=0.0)

    assert verdict.outcome is Outcome.FAIL
    assert "exceeded budget" in verdict.detail
    assert "stage_budget" not in verdict.detail.split(";")[0]
    assert verdict.value == 5200.0


async def test_spend_over_the_stage_budget_fails_naming_it() -> None:
    provider = _Monitoring(spend={"600s": 1100.0, "7200s": 2000.0})

    verdict = await _judge(provider, SPEND, stage_elapsed=300.0, stage_left=0.0)

    assert verdict.outcome is Outcome.FAIL
    assert "exceeded stage_budget" in verdict.detail


@pytest.mark.parametrize(
    ("failure", "outcome", "detail"),
    [
        (NoDataError("no series"), Outcome.INCONCLUSIVE, "no data: no series"),
        (ProviderUnavailable("refused"), Outcome.ERROR, "ProviderUnavailable: refused"),
    ],
)
async def test_spend_without_an_answer_is_never_a_pass(
    failure: Exception, outcome: Outcome, detail: str
) -> None:
    verdict = await _judge(_Monitoring(failure=failure), SPEND)

    assert verdict.outcome is outcome
    assert verdict.detail == detail
    assert verdict.value is None


@pytest.mark.parametrize(
    ("missing", "named"), [("rollout_window", "rollout_window"), ("candidate", "version")]
)
async def test_spend_without_a_template_value_is_an_error(missing: str, named: str) -> None:
    variables = {k: v for k, v in VARIABLES.items() if k != missing}
    provider = _Monitoring(spend={"600s": 1.0, "7200s": 1.0})

    verdict = await _judge(provider, SPEND, variables=variables)

    assert verdict.outcome is Outcome.ERROR
    assert f"{{{{{named}}}}} has no value" in verdict.detail
    assert provider.queries == []


async def test_spend_on_monitoring_without_a_spend_query_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def without_spend(kind: str) -> MonitoringBackend:
        return dataclasses.replace(monitoring_backend(kind), spend=None)

    monkeypatch.setattr(checks, "monitoring_backend", without_spend)

    verdict = await _judge(_Monitoring(), SPEND)

    assert verdict.outcome is Outcome.ERROR
    assert "the prometheus monitoring backend has no spend query" in verdict.detail


# ----------------------------------------------------------------------------------- review

REVIEW = ReviewTrigger(name="reviewers", review=ReviewRule(max_reject_share=0.2))


class _Silent:
    """The review judge reads the check's counts: any query fails the test."""

    async def query(self, query: str) -> Sample:
        raise AssertionError("the review judge queries nothing")

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        raise AssertionError("the review judge queries nothing")

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        raise AssertionError("the review judge queries nothing")


async def test_review_passes_when_few_proposals_are_rejected() -> None:
    verdict = await _judge(_Silent(), REVIEW, reviews=ReviewCounts(approved=300, rejected=10))

    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert verdict.value == pytest.approx(10 / 310)
    assert verdict.threshold == Threshold(above=0.2)
    assert verdict.evidence is not None
    assert verdict.evidence.upper is not None
    assert verdict.evidence.upper <= 0.2
    assert verdict.evidence.n_candidate == 310
    assert verdict.evidence.alpha == 0.05


async def test_review_fails_when_reviewers_reject_too_many() -> None:
    verdict = await _judge(_Silent(), REVIEW, reviews=ReviewCounts(approved=40, rejected=60))

    assert verdict.outcome is Outcome.FAIL
    assert "reviewers reject more than tolerated" in verdict.detail
    assert verdict.value == pytest.approx(0.6)
    assert verdict.evidence is not None
    assert verdict.evidence.lower is not None
    assert verdict.evidence.lower > 0.2


@pytest.mark.parametrize(
    "reviews",
    [ReviewCounts(), ReviewCounts(approved=2, rejected=1), ReviewCounts(approved=12, rejected=4)],
)
async def test_review_never_holds_a_stage_with_few_or_unclear_verdicts(
    reviews: ReviewCounts,
) -> None:
    """Proposals are never executed, so only a shown excess of rejections acts; the evidence a
    stage needs from reviewers is its min_reviews."""
    verdict = await _judge(_Silent(), REVIEW, reviews=reviews)

    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert not verdict.awaiting_evidence


# ------------------------------------------------------------------------- through the activity


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def test_the_check_activity_judges_the_three_kinds_together(
    client: httpx.AsyncClient,
) -> None:
    provider = _Monitoring(
        rewards={INCUMBENT: EVEN, CANDIDATE: {**EVEN, "eu": _arm(8000, 0.6)}},
        spend={"600s": 100.0, "7200s": 200.0},
    )
    registry = BackendRegistry(client, providers={"prometheus": lambda config, http: provider})
    segments = SEGMENTS.model_copy(update={"failure_limit": 2})  # no early end of the check
    check = _check(segments).model_copy(
        update={
            "triggers": [segments, SPEND, REVIEW],
            "alphas": {SEGMENTS.name: 0.025, REVIEW.name: 0.025},
            "reviews": ReviewCounts(approved=5),
            "stage_elapsed": 60.0,
        }
    )

    result = await ActivityEnvironment().run(CheckActivities(registry).run_checks, check)

    outcomes = {v.trigger: v.outcome for v in result.verdicts}
    assert outcomes == {
        "no-region-harmed": Outcome.FAIL,
        "discount-spend": Outcome.PASS,
        "reviewers": Outcome.PASS,
    }


# ---------------------------------------------------------------------------------- report


@pytest.mark.parametrize(
    ("trigger", "provider", "extra", "axis", "line"),
    [
        (
            SEGMENTS,
            _Monitoring(rewards={INCUMBENT: EVEN, CANDIDATE: {**EVEN, "eu": _arm(8000, 0.6)}}),
            {},
            "worst segment: candidate - incumbent",
            "rolls back below -0.1",
        ),
        (
            SPEND,
            _Monitoring(spend={"600s": 100.0, "7200s": 200.0}),
            {},
            "spend over the rollout",
            "rolls back above 5000",
        ),
        (
            REVIEW,
            _Silent(),
            {"reviews": ReviewCounts(approved=40, rejected=60)},
            "share of proposals rejected",
            "rolls back above 0.2",
        ),
    ],
)
async def test_the_report_plots_each_kind_against_its_limit(
    trigger: RollbackTrigger,
    provider: MetricProvider,
    extra: dict[str, object],
    axis: str,
    line: str,
) -> None:
    verdict = await _judge(provider, trigger, **extra)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    checked = RecordedCheck(
        run_id="run-1", stage="canary", result=CheckResult(checked_at=at, verdicts=[verdict])
    )

    svg = trigger_plot(trigger, [checked], [(at, "canary")])

    assert axis in svg
    assert line in svg
    assert verdict.value is not None
