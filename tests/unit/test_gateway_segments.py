"""Per-segment decisions and rewards (issue 14): bounded labels, rewards in the decision's
segments. The HTTP stack (real gateway, real policy servers) is test_gateway_caps.py's."""

# ruff: noqa: F811 (the fixtures imported from test_gateway_caps are parameters here)

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.decisions import PendingDecisions
from gateway.metrics import GatewayMetrics
from gateway.segments import MAX_LABELS, MAX_VALUES, OTHER_SEGMENT, SegmentLabels
from tests.unit.test_gateway_caps import (  # noqa: F401 (fixtures)
    NONE,
    TARGET,
    Stack,
    candidate,
    client,
    clock,
    discount,
    gateway,
    incumbent,
    stack,
)


def test_labels_are_the_first_eight_and_values_the_first_thirty_two_then_other() -> None:
    labels = SegmentLabels()
    first = {f"label{i}": "a" for i in range(MAX_LABELS)}
    assert labels.segments("offers", first) == tuple((name, "a") for name in first)
    # a ninth label is not counted at all; the known ones still are
    assert labels.segments("offers", {"late": "x", "label0": "b"}) == (("label0", "b"),)
    for i in range(MAX_VALUES - 2):  # a and b are two values already
        assert labels.segments("offers", {"label0": f"v{i}"}) == (("label0", f"v{i}"),)
    assert labels.segments("offers", {"label0": "new"}) == (("label0", OTHER_SEGMENT),)
    assert labels.segments("offers", {"label0": "v3"}) == (("label0", "v3"),)
    # another target has its own bounds
    assert labels.segments("pricing", {"late": "x"}) == (("late", "x"),)


def test_an_overlong_label_is_not_counted_and_an_overlong_value_is_other() -> None:
    labels = SegmentLabels()
    assert labels.segments("offers", {"l" * 65: "eu"}) == ()
    assert labels.segments("offers", {"region": "e" * 129}) == (("region", OTHER_SEGMENT),)


def test_a_pending_decision_keeps_its_segments_for_the_reward() -> None:
    pending = PendingDecisions()
    pending.add("d1", "offers", "candidate", "42", (("region", "eu"),))
    assert pending.reward("d1", "offers").segments == (("region", "eu"),)


def test_decisions_and_rewards_are_counted_per_segment(stack: Stack) -> None:
    stack.route({}, percent=100)
    eu = stack.decide(discount(), unit="u-1", attributes={"region": "eu", "device": "ios"})
    us = stack.decide(NONE, unit="u-2", attributes={"region": "us"})
    plain = stack.decide(NONE, unit="u-3")
    for decision, reward in ((eu, 0.75), (us, 0.5), (plain, 1.0)):
        answer = stack.client.post(
            f"{stack.gateway.url}/v1/targets/{TARGET}/feedback",
            json={"decision_id": decision["decision_id"], "reward": reward},
        )
        assert answer.status_code == 200, answer.text
    arm = {"target": TARGET, "arm": "candidate", "version": "42"}
    decisions = "lockgate_segment_decisions_total"
    assert stack.metric(decisions, **arm, label="region", segment="eu", action="discount") == 1
    assert stack.metric(decisions, **arm, label="device", segment="ios", action="discount") == 1
    assert stack.metric(decisions, **arm, label="region", segment="us", action="none") == 1
    assert stack.metric(decisions) == 3  # the decision without attributes is in no segment
    rewards = "lockgate_segment_rewards_total"
    assert stack.metric(rewards, **arm, label="region", segment="eu") == 0.75
    assert stack.metric(rewards, **arm, label="device", segment="ios") == 0.75
    assert stack.metric(rewards, **arm, label="region", segment="us") == 0.5
    assert stack.metric(rewards, label="region") == 1.25
    squares = "lockgate_segment_reward_squares_total"
    assert stack.metric(squares, **arm, label="region", segment="eu") == 0.5625
    rewarded = "lockgate_segment_rewarded_decisions_total"
    assert stack.metric(rewarded, label="region") == 2
    # the overall reward series are unchanged by segments
    assert stack.metric("lockgate_rewards_total", **arm) == 2.25


def test_segment_rewards_go_to_the_arm_that_decided(stack: Stack) -> None:
    stack.route({}, percent=0)
    decision = stack.decide(NONE, unit="u-1", attributes={"region": "eu"})
    stack.client.post(
        f"{stack.gateway.url}/v1/targets/{TARGET}/feedback",
        json={"decision_id": decision["decision_id"], "reward": 1.0},
    )
    assert (
        stack.metric("lockgate_segment_rewards_total", arm="incumbent", version="41", segment="eu")
        == 1.0
    )
    assert stack.metric("lockgate_segment_rewards_total", arm="candidate") == 0


NEW_SERIES = {
    "lockgate_guardrail_interventions_total": {"target", "guardrail", "kind"},
    "lockgate_action_value_total": {"target", "arm", "version", "field"},
    "lockgate_segment_decisions_total": {
        "target", "arm", "version", "label", "segment", "action",
    },
    "lockgate_segment_rewards_total": {"target", "arm", "version", "label", "segment"},
    "lockgate_segment_reward_squares_total": {"target", "arm", "version", "label", "segment"},
    "lockgate_segment_rewarded_decisions_total": {
        "target", "arm", "version", "label", "segment",
    },
    "lockgate_review_proposals_total": {"target", "version"},
    "lockgate_review_verdicts_total": {"target", "version", "verdict"},
    "lockgate_review_dropped_total": {"target"},
}  # fmt: skip


def test_the_guardrail_and_segment_series_have_the_contract_names_and_labels() -> None:
    metrics = GatewayMetrics()
    metrics.intervention("offers", "42", "amount", "value")
    metrics.action_values("offers", "candidate", "42", {"amount": 12.5, "rebate": -3.0})
    segments = (("region", "eu"),)
    metrics.segment_decision("offers", "candidate", "42", "discount", segments)
    metrics.reward("offers", "candidate", "42", 0.5, segments)
    metrics.review_proposal("offers", "42")
    metrics.review_verdict("offers", "42", "reject")
    metrics.review_dropped("offers")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    for name, labels in NEW_SERIES.items():
        assert name in found, f"{name} is missing"
        assert all(set(seen) == labels for seen, _ in found[name]), name
    # a negative parameter is not added to a counter (it never goes down)
    assert [v for _, v in found["lockgate_action_value_total"]] == [12.5]
