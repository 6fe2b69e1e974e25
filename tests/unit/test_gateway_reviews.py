"""Actions routed through a human (issue 14): proposals queued at the gateway, verdicts on its
control plane. The stack (real gateway, real policy servers) is test_gateway_caps.py's."""

# ruff: noqa: F811 (the fixtures imported from test_gateway_caps are parameters here)

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from gateway.metrics import GatewayMetrics
from gateway.reviews import AlreadyReviewedError, Reviews, UnknownProposalError, Verdict
from tests.unit.test_gateway_caps import (  # noqa: F401 (fixtures)
    REFUND,
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

REVIEW = {"review": {"actions": ["refund_full"], "max_pending": 3}}


def _reviews(stack: Stack, query: str = "", **headers: str) -> httpx.Response:
    return stack.client.get(
        f"{stack.gateway.control_url}/v1/targets/{TARGET}/reviews{query}",
        headers=headers or stack.gateway.auth,
    )


def _verdict(stack: Stack, proposal: str, body: Any, **headers: str) -> httpx.Response:
    return stack.client.post(
        f"{stack.gateway.control_url}/v1/targets/{TARGET}/reviews/{proposal}",
        json=body,
        headers=headers or stack.gateway.auth,
    )


APPROVE = {"verdict": "approve", "actor": "ana", "reason": "customer was overcharged"}


def test_a_reviewed_action_is_queued_and_the_incumbent_serves(stack: Stack) -> None:
    stack.route(REVIEW)
    answer = stack.decide(REFUND, unit="u-7", attributes={"region": "eu"})
    assert (answer["action"], answer["arm"], answer["version"]) == ("none", "candidate", "42")
    assert (answer["guardrail"], answer["intervention"]) == ("refund_full", "review")
    assert answer["params"] is None  # the incumbent's `none`, not the proposal's amount
    listing = _reviews(stack)
    assert listing.status_code == 200
    assert listing.json()["dropped"] == 0
    [proposal] = listing.json()["pending"]
    assert proposal["id"] == answer["proposal"]
    assert {k: v for k, v in proposal.items() if k not in {"id", "created_at"}} == {
        "unit_id": "u-7",
        "version": "42",
        "action": "refund_full",
        "params": {"amount": 500.0},
        "context": REFUND,
        "attributes": {"region": "eu"},
    }
    assert datetime.fromisoformat(proposal["created_at"]).tzinfo is not None
    assert stack.metric("lockgate_review_proposals_total", target=TARGET, version="42") == 1
    assert (
        stack.metric(
            "lockgate_guardrail_interventions_total", guardrail="refund_full", kind="review"
        )
        == 1
    )
    # actions not under review are served as usual
    assert stack.decide(discount())["action"] == "discount"


def test_a_verdict_is_recorded_once_and_a_second_says_whose_the_first_was(stack: Stack) -> None:
    stack.route(REVIEW)
    first = stack.decide(REFUND)["proposal"]
    second = stack.decide(REFUND)["proposal"]
    approved = _verdict(stack, first, APPROVE)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["id"], body["action"], body["verdict"], body["actor"], body["reason"]) == (
        first,
        "refund_full",
        "approve",
        "ana",
        "customer was overcharged",
    )
    assert [p["id"] for p in _reviews(stack).json()["pending"]] == [second]
    again = _verdict(stack, first, {"verdict": "reject", "actor": "bo", "reason": "no"})
    assert again.status_code == 409
    assert "approve by ana" in again.json()["detail"]
    assert (again.json()["verdict"], again.json()["actor"]) == ("approve", "ana")
    rejected = _verdict(stack, second, {"verdict": "reject", "actor": "bo"})
    assert (rejected.status_code, rejected.json()["reason"]) == (200, "")
    assert _reviews(stack).json()["pending"] == []
    assert stack.metric("lockgate_review_verdicts_total", version="42", verdict="approve") == 1
    assert stack.metric("lockgate_review_verdicts_total", version="42", verdict="reject") == 1


def test_an_unknown_proposal_is_404_and_a_bad_verdict_422(stack: Stack) -> None:
    stack.route(REVIEW)
    proposal = stack.decide(REFUND)["proposal"]
    assert _verdict(stack, "f" * 32, APPROVE).status_code == 404
    bads: list[Any] = [
        {"verdict": "maybe", "actor": "ana"},
        {"verdict": "approve"},
        {"verdict": "approve", "actor": ""},
        {"verdict": "approve", "actor": "ana", "extra": 1},
        [],
    ]
    for bad in bads:
        answer = _verdict(stack, proposal, bad)
        assert answer.status_code == 422, bad
        assert answer.json()["detail"].startswith("bad review")
    assert len(_reviews(stack).json()["pending"]) == 1  # nothing was recorded
    too_big = _verdict(stack, proposal, {**APPROVE, "reason": "x" * 5000})
    assert too_big.status_code == 413


def test_the_queue_keeps_the_newest_max_pending_and_counts_the_dropped(stack: Stack) -> None:
    stack.route(REVIEW)
    ids = [stack.decide(REFUND, unit=f"u-{i}")["proposal"] for i in range(5)]
    listing = _reviews(stack).json()
    assert [p["id"] for p in listing["pending"]] == ids[2:]
    assert listing["dropped"] == 2
    assert stack.metric("lockgate_review_dropped_total", target=TARGET) == 2
    assert _verdict(stack, ids[0], APPROVE).status_code == 404  # dropped unseen
    assert [p["id"] for p in _reviews(stack, "?limit=2").json()["pending"]] == ids[2:4]
    for bad in ("0", "1001", "two", "-1", "1" * 40):
        assert _reviews(stack, f"?limit={bad}").status_code == 422, bad


def test_the_review_endpoints_need_the_control_token_and_are_not_on_the_data_plane(
    stack: Stack,
) -> None:
    stack.route(REVIEW)
    proposal = stack.decide(REFUND)["proposal"]
    wrong = {"Authorization": "Bearer " + "x" * 32}
    assert _reviews(stack, **wrong).status_code == 401
    assert _verdict(stack, proposal, APPROVE, **wrong).status_code == 401
    no_token = stack.client.get(f"{stack.gateway.control_url}/v1/targets/{TARGET}/reviews")
    assert no_token.status_code == 401
    data = stack.client.get(f"{stack.gateway.url}/v1/targets/{TARGET}/reviews")
    assert data.status_code == 404
    assert len(_reviews(stack).json()["pending"]) == 1


def test_in_shadow_nothing_is_queued_but_the_would_be_review_is_counted(stack: Stack) -> None:
    stack.route(REVIEW, mode="shadow")
    answer = stack.decide(REFUND)
    assert (answer["arm"], answer["shadow_action"], answer["intervention"], answer["proposal"]) == (
        "incumbent",
        "refund_full",
        "review",
        None,
    )
    assert _reviews(stack).json() == {"pending": [], "dropped": 0}
    assert stack.metric("lockgate_guardrail_interventions_total", kind="review") == 1
    assert stack.metric("lockgate_review_proposals_total") == 0


def test_a_target_without_proposals_lists_none(stack: Stack) -> None:
    assert _reviews(stack).json() == {"pending": [], "dropped": 0}


def test_only_the_last_reviewed_proposals_are_remembered_for_the_409() -> None:
    reviews = Reviews(GatewayMetrics(), clock=lambda: 0.0, keep_reviewed=2)

    def propose() -> str:
        return reviews.propose(
            TARGET, 10, unit_id="u", version="42", action="refund_full", params=None,
            context={}, attributes={},
        ).id  # fmt: skip

    ids = [propose() for _ in range(3)]
    for proposal in ids:
        reviews.review(TARGET, proposal, Verdict.REJECT, "ana", "")
    with pytest.raises(UnknownProposalError):  # forgotten: the oldest of three reviewed
        reviews.review(TARGET, ids[0], Verdict.APPROVE, "bo", "")
    with pytest.raises(AlreadyReviewedError) as caught:
        reviews.review(TARGET, ids[2], Verdict.APPROVE, "bo", "")
    assert (caught.value.reviewed.actor, caught.value.reviewed.verdict) == ("ana", Verdict.REJECT)
    assert reviews.pending(TARGET, 50) == ([], 0)
    assert reviews.pending("elsewhere", 50) == ([], 0)
