"""The spec side of the RL guardrails: caps, review, segments, spend and review triggers.

What the engineer writes must load exactly as meant, travel to the router unchanged, and be
refused with the field and the fix when it cannot work (a review trigger with nothing routed to
a human would judge nothing for ever; a segments trigger on a provider without per-segment
answers would only ever error).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from activities.contracts import Route
from rollout_specs import (
    Guardrails,
    PolicyVersion,
    ShareCap,
    SpecError,
    ValueCap,
    parse_spec,
)
from rollout_specs.models import ReviewTrigger, SegmentsTrigger, SpendTrigger

BASE: dict[str, Any] = {
    "apiVersion": "lockgate/v1",
    "kind": "Rollout",
    "metadata": {"name": "offers"},
    "spec": {
        "target": "offers",
        "incumbent": {"version": "41"},
        "candidate": {"version": "42"},
        "router": {"type": "http", "url": "http://127.0.0.1:8080"},
        "monitoring": {"type": "prometheus", "url": "http://127.0.0.1:9090"},
        "guardrails": {
            "blocked_actions": ["discount_90"],
            "caps": [
                {"action": "discount_20", "max_share": 0.05, "window": "10m"},
                {"field": "amount", "max": 250},
            ],
            "review": {"actions": ["refund_full"]},
        },
        "stages": [
            {"name": "canary", "percent": 5, "min_duration": "10m", "min_reviews": 20},
            {"name": "full", "percent": 100, "min_duration": "1h"},
        ],
        "rollback_triggers": [
            {
                "name": "errors",
                "query": 'sum(rate(errors{version="{{candidate}}"}[{{stage_window}}]))',
                "threshold": {"above": 0.01},
            },
            {"name": "reviewers", "review": {"max_reject_share": 0.2}},
            {
                "name": "regions",
                "segments": {
                    "label": "region",
                    "max_drop": 0.1,
                    "relative": True,
                    "fairness": {"action": "approve", "min_ratio": 0.8},
                },
            },
            {"name": "spend", "spend": {"field": "amount", "budget": 5000, "stage_budget": 1000}},
        ],
    },
}


def _with(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document["spec"].update(copy.deepcopy(changes))
    return document


def _problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document, "s.yaml")
    return caught.value.problems


def test_every_guardrail_and_new_trigger_loads_as_written() -> None:
    spec = parse_spec(BASE, "s.yaml").spec

    assert spec.guardrails.caps == [
        ShareCap(action="discount_20", max_share=0.05, window=timedelta(minutes=10)),
        ValueCap(field="amount", max=250),
    ]
    assert spec.guardrails.review is not None
    assert spec.guardrails.review.actions == ["refund_full"]
    assert spec.guardrails.review.max_pending == 1000
    assert spec.stages[0].min_reviews == 20
    kinds = [type(t) for t in spec.rollback_triggers[1:]]
    assert kinds == [ReviewTrigger, SegmentsTrigger, SpendTrigger]
    # Segments and review triggers spend alpha; spend does not (it is a fixed budget).
    assert [t.name for t in spec.rollback_triggers if t.statistical] == ["reviewers", "regions"]
    assert spec.trigger_alpha(spec.rollback_triggers[1]) == pytest.approx(0.025)


def test_the_guardrails_reach_the_router_and_come_back_unchanged() -> None:
    guardrails = parse_spec(BASE, "s.yaml").spec.guardrails
    route = Route(
        rollout_id="r", generation=1, incumbent=PolicyVersion(version="41"), guardrails=guardrails
    )

    body = route.model_dump(mode="json")

    assert body["guardrails"]["caps"][0] == {
        "action": "discount_20",
        "max_share": 0.05,
        "window": "10m",
    }
    assert Route.model_validate(body) == route


def test_a_route_without_the_new_guardrails_keeps_its_old_body() -> None:
    """A router that predates caps and review reads the same body as before."""
    route = Route(
        rollout_id="r",
        generation=1,
        incumbent=PolicyVersion(version="41"),
        guardrails=Guardrails(blocked_actions=["discount_90"]),
    )

    assert route.model_dump(mode="json")["guardrails"] == {"blocked_actions": ["discount_90"]}


@pytest.mark.parametrize(
    ("guardrails", "expected"),
    [
        (
            {"caps": [{"field": "amount"}]},
            "spec.guardrails.caps[0].max: required field is missing",
        ),
        (
            {"caps": [{"action": "a", "max_share": 1.5}]},
            "spec.guardrails.caps[0].max_share: must be less than 1, got 1.5",
        ),
        (
            {"caps": [{"action": "a", "max_share": 0.1, "window": "0s"}]},
            "spec.guardrails.caps[0].window: a cap's window is between 1s and 1d, e.g. window: 10m",
        ),
        (
            {"caps": [{"field": "amount", "max": 1e400}]},
            "spec.guardrails.caps[0].max: must be a finite number, not .nan or .inf (which "
            "would disarm the check); write a number like 0.01",
        ),
        (
            {"caps": [{"action": "a", "max_share": 0.1}, {"action": "a", "max_share": 0.2}]},
            "spec.guardrails.caps[1].action: 'a' is capped twice; keep one share cap per action",
        ),
        (
            {"blocked_actions": ["a"], "caps": [{"action": "a", "max_share": 0.1}]},
            "spec.guardrails.caps[0].action: 'a' is blocked outright; a cap on it changes "
            "nothing, remove one",
        ),
        (
            {"blocked_actions": ["a"], "review": {"actions": ["a"]}},
            "spec.guardrails.review.actions[0]: 'a' is blocked outright, so it is never "
            "proposed; remove it from review.actions or from blocked_actions",
        ),
    ],
    ids=["value-cap-max", "share-range", "window", "infinite-max", "twice", "blocked", "review"],
)
def test_a_cap_that_cannot_work_is_refused_at_its_key(
    guardrails: dict[str, Any], expected: str
) -> None:
    document = _with(guardrails=guardrails)
    document["spec"]["rollback_triggers"] = [BASE["spec"]["rollback_triggers"][0]]
    document["spec"]["stages"][0].pop("min_reviews")

    assert expected in _problems(document)


def test_reviews_are_refused_when_nothing_is_routed_to_a_human() -> None:
    document = _with(guardrails={})

    assert _problems(document) == [
        "spec.rollback_triggers[1].review: judges reviewers' verdicts on the candidate's "
        "proposals, but no action is routed to a human; add guardrails.review: {actions: [...]}",
        "spec.stages[0].min_reviews: judges reviewers' verdicts on the candidate's proposals, "
        "but no action is routed to a human; add guardrails.review: {actions: [...]}",
    ]


def test_min_reviews_is_for_split_stages_only() -> None:
    document = _with()
    document["spec"]["stages"].insert(
        0, {"name": "shadow", "mode": "shadow", "min_duration": "1h", "min_reviews": 5}
    )

    assert (
        "spec.stages[0].min_reviews: a shadow stage serves nothing, so the candidate proposes "
        "nothing to review; move min_reviews to a split stage"
    ) in _problems(document)


def test_segments_need_monitoring_that_answers_per_segment() -> None:
    document = _with(monitoring={"type": "http", "url": "http://127.0.0.1:8080/v1/stats"})

    assert (
        "spec.rollback_triggers[2].segments: a segments trigger reads rewards and decisions by "
        "segment, which needs Prometheus monitoring; the http provider answers one number per "
        "query"
    ) in _problems(document)


def test_a_stage_budget_above_the_rollout_budget_is_refused() -> None:
    document = _with()
    document["spec"]["rollback_triggers"][3]["spend"]["stage_budget"] = 6000

    assert _problems(document) == [
        "spec.rollback_triggers[3].spend: stage_budget (6000) is larger than budget (5000), so "
        "it never binds; lower it or remove it"
    ]


def test_a_fairness_rule_needs_a_limit() -> None:
    document = _with()
    document["spec"]["rollback_triggers"][2]["segments"]["fairness"] = {"action": "approve"}

    assert _problems(document) == [
        "spec.rollback_triggers[2].segments.fairness: a fairness rule needs min_ratio, "
        "max_ratio_drop, or both"
    ]
