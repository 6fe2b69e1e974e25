"""The metric names and labels (docs/monitoring.md), which lockgate's example queries rely on."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import OTHER_ACTION, GatewayMetrics
from gateway.stats import StatsQuery, parse_stats_query

EXPECTED = {
    "lockgate_decisions_total": {"target", "arm", "version", "mode", "action"},
    "lockgate_rewards_total": {"target", "arm", "version"},
    "lockgate_reward_squares_total": {"target", "arm", "version"},
    "lockgate_rewarded_decisions_total": {"target", "arm", "version"},
    "lockgate_guardrail_violations_total": {"target", "arm", "version", "guardrail"},
    "lockgate_decision_errors_total": {"target", "arm", "version"},
    "lockgate_decision_latency_seconds_bucket": {"target", "arm", "le"},
    "lockgate_decision_latency_seconds_count": {"target", "arm"},
    "lockgate_decision_latency_seconds_sum": {"target", "arm"},
    "lockgate_policy_latency_seconds_bucket": {"target", "arm", "version", "mode", "le"},
    "lockgate_policy_latency_seconds_count": {"target", "arm", "version", "mode"},
    "lockgate_policy_latency_seconds_sum": {"target", "arm", "version", "mode"},
    "lockgate_shadow_agreements_total": {"target", "agree"},
    "lockgate_shadow_pairs_total": {"target", "incumbent_action", "candidate_action"},
    "lockgate_shadow_mirrors_dropped_total": {"target"},
}


def _record_one_of_each(metrics: GatewayMetrics) -> None:
    metrics.decision("offers", "candidate", "42", "split", "discount_10")
    metrics.reward("offers", "candidate", "42", 2.0)
    metrics.violation("offers", "candidate", "42", "discount_90")
    metrics.error("offers", "candidate", "42")
    metrics.latency("offers", "candidate", 0.003)
    metrics.policy_latency("offers", "candidate", "42", "shadow", 0.002)
    metrics.shadow_pair("offers", "discount_10", "no_offer")
    metrics.mirror_dropped("offers")


def _samples(metrics: GatewayMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_every_metric_has_the_contract_name_and_labels() -> None:
    metrics = GatewayMetrics()
    _record_one_of_each(metrics)
    samples = _samples(metrics)
    for name, labels in EXPECTED.items():
        assert name in samples, f"{name} is missing"
        assert all(set(found) == labels for found, _ in samples[name]), name


def test_rewards_and_their_squares_are_summed() -> None:
    metrics = GatewayMetrics()
    for reward in [1.0, 3.0]:
        metrics.reward("offers", "incumbent", "41", reward)
    samples = _samples(metrics)
    assert samples["lockgate_rewards_total"][0][1] == 4.0
    assert samples["lockgate_reward_squares_total"][0][1] == 10.0
    assert samples["lockgate_rewarded_decisions_total"][0][1] == 2.0


def test_shadow_pairs_count_the_table_and_agreement_is_its_diagonal() -> None:
    metrics = GatewayMetrics()
    metrics.shadow_pair("offers", "no_offer", "no_offer")
    metrics.shadow_pair("offers", "no_offer", "discount_10")
    metrics.shadow_pair("offers", "no_offer", "discount_10")
    samples = _samples(metrics)
    agreements = {
        labels["agree"]: value for labels, value in samples["lockgate_shadow_agreements_total"]
    }
    assert agreements == {"true": 1.0, "false": 2.0}
    pairs = {
        (labels["incumbent_action"], labels["candidate_action"]): value
        for labels, value in samples["lockgate_shadow_pairs_total"]
    }
    assert pairs == {("no_offer", "no_offer"): 1.0, ("no_offer", "discount_10"): 2.0}


def test_each_gateway_has_its_own_registry_never_the_global_one() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()  # a shared registry would refuse this
    _record_one_of_each(first)
    assert "lockgate_decisions_total" not in _samples(second)
    assert REGISTRY.get_sample_value("lockgate_decisions_total", {"target": "offers"}) is None
    assert not any(m.name.startswith("lockgate_") for m in REGISTRY.collect())


def test_events_also_feed_the_windowed_stats() -> None:
    metrics = GatewayMetrics()
    _record_one_of_each(metrics)
    totals = {
        stat: metrics.stats.answer(_query(stat))
        for stat in ["decisions", "errors", "guardrail_violations", "rewarded", "reward_sum"]
    }
    assert totals == {
        "decisions": 1.0,
        "errors": 1.0,
        "guardrail_violations": 1.0,
        "rewarded": 1.0,
        "reward_sum": 2.0,
    }


def _query(stat: str) -> StatsQuery:
    return parse_stats_query(f"{stat} target=offers version=42")


def test_actions_beyond_the_cap_are_folded_into_other_per_target() -> None:
    metrics = GatewayMetrics(max_actions=2)
    for action in ["a", "b", "c", "a", "d"]:
        metrics.decision("offers", "candidate", "42", "split", action)
    metrics.decision("ranker", "candidate", "42", "split", "c")  # its own first actions
    metrics.shadow_pair("offers", "a", "z")
    metrics.violation("offers", "candidate", "42", "y")
    samples = _samples(metrics)
    decisions = {
        (labels["target"], labels["action"]): value
        for labels, value in samples["lockgate_decisions_total"]
    }
    assert decisions == {
        ("offers", "a"): 2.0,
        ("offers", "b"): 1.0,
        ("offers", OTHER_ACTION): 2.0,
        ("ranker", "c"): 1.0,
    }
    (pair,) = samples["lockgate_shadow_pairs_total"]
    assert (pair[0]["incumbent_action"], pair[0]["candidate_action"]) == ("a", OTHER_ACTION)
    agreements = {labels["agree"] for labels, _ in samples["lockgate_shadow_agreements_total"]}
    assert agreements == {"false"}, "agreement is judged on the real actions"
    (violation,) = samples["lockgate_guardrail_violations_total"]
    assert violation[0]["guardrail"] == OTHER_ACTION


@pytest.mark.parametrize("reward", [-1.0, math.inf, math.nan])
def test_a_reward_that_would_corrupt_the_sums_is_refused(reward: float) -> None:
    metrics = GatewayMetrics()
    with pytest.raises(ValueError, match="finite number >= 0"):
        metrics.reward("offers", "incumbent", "41", reward)
    assert "lockgate_rewards_total" not in _samples(metrics)
    assert metrics.stats.answer(parse_stats_query("rewarded target=offers version=41")) is None
