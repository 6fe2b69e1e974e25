"""Reviews without a server: the `review` command's rules, its counts, min_reviews, the router.

The command is judged like every other (workflows.commands, tests/unit/test_commands.py); the
stage's wait for reviews is a progression rule; the HTTP router speaks the review endpoints of
docs/router-contract.md against scripted answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli
from activities.contracts import CheckResult, Outcome, ReviewCounts, TriggerVerdict
from activities.errors import RouterError, RouterUnavailable
from activities.reviews import (
    ListReviewsInput,
    PendingProposals,
    Proposal,
    RecordedVerdict,
    ReviewActivities,
    Verdict,
)
from activities.routers.http_router import HttpTrafficRouter
from rollout_specs import HttpRouter, RolloutSpec
from rollout_specs.backends import RouterBackend, router_backend
from tests.conftest import build_spec, spec_document
from tests.helpers.scripted import NO_WAIT, Scripted
from workflows.commands import (
    Command,
    Situation,
    carry_out,
    listing_refusal,
    refusal,
    review_progress,
    review_reason,
)
from workflows.messages import ControlInput, PendingReviewsResult, ReviewInput
from workflows.progression import Action, assess, reviews_missing
from workflows.state import (
    AuditAction,
    AuditEntry,
    Phase,
    RollbackRequest,
    RolloutState,
    StageRecord,
)

T0 = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
TARGET = "offers"
CANARY = 1


def _spec(review: bool = True, min_reviews: int | None = 2) -> RolloutSpec:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target=TARGET)
    if review:
        document["spec"]["guardrails"]["review"] = {"actions": ["refund_full"]}
        if min_reviews is not None:
            document["spec"]["stages"][CANARY]["min_reviews"] = min_reviews
    return build_spec(document)


SPEC = _spec()


def _state(phase: Phase = Phase.RUNNING, **changes: Any) -> RolloutState:
    """A rollout in the canary stage (the one with min_reviews), in `phase`."""
    state = RolloutState(
        rollout_id="r/1", submitted_by="alice", started_at=T0, phase=phase, stage_index=CANARY
    )
    state.stage_routed = True
    state.stages = [
        StageRecord(name="shadow", started_at=T0, ended_at=T0, outcome="advanced"),
        StageRecord(name="canary", started_at=T0),
    ]
    if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        state.rollback = RollbackRequest(actor="bob", reason="errors", at=T0)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def _review(
    verdict: Verdict = Verdict.APPROVE, reason: str = "", actor: str = "bob", pid: str = "p1"
) -> ReviewInput:
    return ReviewInput(proposal_id=pid, verdict=verdict, actor=actor, reason=reason)


def _ask(request: ControlInput, state: RolloutState, spec: RolloutSpec = SPEC) -> str | None:
    return refusal(Command.REVIEW, Situation(spec=spec, state=state, submitted_by="alice"), request)


ROLLING_BACK = (
    "the rollout is rolling back (bob: errors); it ends once the router accepts the incumbent's "
    "route (`lockgate status` shows the last error); if the router cannot be fixed, `lockgate "
    "abandon offers --reason ... --yes` ends it"
)


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.STARTING, None),
        (Phase.AWAITING_APPROVAL, None),
        (Phase.RUNNING, None),
        (Phase.HELD, None),
        (Phase.ESCALATED, None),
        (Phase.PAUSED, None),
        (Phase.PROMOTING, None),
        (Phase.ROLLING_BACK, ROLLING_BACK),
        (Phase.ROLLED_BACK, "the rollout has ended (rolled_back); nothing to review"),
        (Phase.COMPLETED, "the rollout has ended (completed); nothing to review"),
        (Phase.ABANDONED, "the rollout has ended (abandoned); nothing to review"),
    ],
)
def test_review_in_every_phase(phase: Phase, expected: str | None) -> None:
    assert _ask(_review(), _state(phase)) == expected
    assert _ask(_review(Verdict.REJECT, "too generous"), _state(phase)) == expected


def test_an_approval_needs_no_reason_but_a_rejection_does() -> None:
    state = _state()
    assert _ask(_review(Verdict.APPROVE, reason=""), state) is None
    assert _ask(_review(Verdict.REJECT, reason=" \t"), state) == (
        "say why you reject it: a rejection needs a reason (--reason TEXT); it goes to the audit "
        "trail and to the router"
    )


@pytest.mark.parametrize("verdict", list(Verdict))
def test_a_review_names_its_reviewer_and_its_proposal(verdict: Verdict) -> None:
    state = _state()
    assert _ask(_review(verdict, "why", actor=" "), state) == (
        "say who you are: the command needs an actor (--as NAME)"
    )
    assert _ask(_review(verdict, "why", pid=" "), state) == (
        "name the proposal to judge; `lockgate review offers` lists them with their ids"
    )


def test_a_rollout_without_reviewed_actions_has_nothing_to_review_or_list() -> None:
    spec = _spec(review=False)
    expected = (
        "the rollout of offers routes no action to reviewers (its spec has no guardrails.review), "
        "so there is nothing to review"
    )
    assert _ask(_review(), _state(), spec) == expected
    assert listing_refusal(Situation(spec=spec, state=_state(), submitted_by="alice")) == expected
    assert listing_refusal(Situation(spec=SPEC, state=_state(), submitted_by="alice")) is None


def test_a_rollout_being_abandoned_takes_no_verdict() -> None:
    abandoned = AuditEntry(at=T0, actor="carol", action="abandon", reason="stuck")
    situation = Situation(spec=SPEC, state=_state(), submitted_by="alice", abandoned=abandoned)
    assert refusal(Command.REVIEW, situation, _review()) == (
        "the rollout is being abandoned by carol; nothing to review"
    )


PROPOSAL = Proposal(
    id="p1",
    created_at=T0,
    unit_id="u-17",
    version="42",
    action="refund_full",
    params={"amount": 120.0},
    context={"tenure": 3.0},
    attributes={"region": "eu"},
)


def _carry(state: RolloutState, request: ReviewInput) -> tuple[str, AuditEntry]:
    situation = Situation(spec=SPEC, state=state, submitted_by="alice")
    assert refusal(Command.REVIEW, situation, request) is None
    recorded = RecordedVerdict(
        verdict=request.verdict, actor=request.actor, reason=request.reason, proposal=PROPOSAL
    )
    entry = AuditEntry(
        at=T0,
        actor=request.actor,
        action=AuditAction.REVIEW,
        reason=review_reason(request, recorded),
        stage="canary",
    )
    effect = carry_out(Command.REVIEW, situation, request, entry)
    assert effect.publish
    assert not effect.wake
    assert not effect.rollback
    return effect.message, entry


def test_verdicts_are_audited_and_counted_for_the_rollout_and_the_stage() -> None:
    state = _state()
    message, approved = _carry(state, _review(Verdict.APPROVE))
    assert message == (
        "approved proposal p1; 1 approved, 0 rejected; stage canary: 1 of 2 proposals reviewed"
    )
    assert approved.reason == "approve proposal p1: refund_full for unit u-17 (version 42)"
    message, rejected = _carry(state, _review(Verdict.REJECT, "refund too large", pid="p2"))
    assert message == (
        "rejected proposal p2; 1 approved, 1 rejected; stage canary: 2 of 2 proposals reviewed"
    )
    assert rejected.reason == (
        "reject proposal p2: refund_full for unit u-17 (version 42): refund too large"
    )
    assert state.audit == [approved, rejected]
    assert state.reviews == ReviewCounts(approved=1, rejected=1)
    assert [record.reviews for record in state.stages] == [0, 2]
    assert state.phase is Phase.RUNNING


def test_a_verdict_between_stages_counts_for_the_rollout_only() -> None:
    state = _state()
    state.stages[-1].ended_at = T0  # canary ended; the next stage's record is not open yet
    _carry(state, _review())
    assert state.reviews == ReviewCounts(approved=1, rejected=0)
    assert [record.reviews for record in state.stages] == [0, 0]


def test_review_progress_without_a_minimum_and_a_retried_verdict() -> None:
    state = _state(stage_index=2)  # stage half: no min_reviews
    state.reviews = ReviewCounts(approved=3, rejected=1)
    assert review_progress(SPEC, state) == "3 approved, 1 rejected"
    recorded = RecordedVerdict(verdict=Verdict.APPROVE, actor="bob")
    assert review_reason(_review(reason="fine"), recorded) == (
        "approve proposal p1: already recorded at the router by an earlier attempt: fine"
    )


# ----------------------------------------------------------------------------- min_reviews

PASS = CheckResult(
    checked_at=T0,
    verdicts=[TriggerVerdict(trigger="error-rate", outcome=Outcome.PASS, detail="0.1% <= 5%")],
)


def _assess(reviews: int, elapsed: timedelta, max_duration: str | None = None) -> Any:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target=TARGET)
    document["spec"]["guardrails"]["review"] = {"actions": ["refund_full"]}
    document["spec"]["stages"][CANARY]["min_reviews"] = 3
    if max_duration is not None:
        document["spec"]["stages"][CANARY]["max_duration"] = max_duration
    body = build_spec(document).spec
    return assess(body, body.stages[CANARY], PASS, {}, 0, elapsed, reviews)


def test_a_stage_with_min_reviews_waits_for_them_after_its_bake() -> None:
    waiting = _assess(reviews=2, elapsed=timedelta(seconds=5))
    assert waiting.action is Action.BAKE
    assert waiting.reason == (
        "waiting for reviews: 2 of 3 proposals reviewed during stage canary (`lockgate review` "
        "lists the pending ones)"
    )
    assert _assess(reviews=3, elapsed=timedelta(seconds=5)).action is Action.ADVANCE
    assert _assess(reviews=9, elapsed=timedelta(seconds=5)).action is Action.ADVANCE


def test_reviews_do_not_shorten_the_bake() -> None:
    baking = _assess(reviews=5, elapsed=timedelta(milliseconds=500))
    assert baking.action is Action.BAKE
    assert baking.reason.startswith("every trigger passing; baking")


def test_a_stage_that_never_gets_its_reviews_meets_max_duration() -> None:
    late = _assess(reviews=0, elapsed=timedelta(minutes=11), max_duration="10m")
    assert late.action is Action.ESCALATE
    assert "waiting for reviews: 0 of 3" in late.reason


def test_reviews_missing_is_none_without_a_minimum() -> None:
    stage = SPEC.spec.stages[0]
    assert reviews_missing(stage, 0) is None
    assert reviews_missing(SPEC.spec.stages[CANARY], 1) == (
        "waiting for reviews: 1 of 2 proposals reviewed during stage canary (`lockgate review` "
        "lists the pending ones)"
    )


# ----------------------------------------------------------------------------- HTTP router

BASE_URL = "http://router.test:8080"
REVIEWS_URL = f"{BASE_URL}/v1/targets/offers/reviews"
PROPOSAL_JSON: dict[str, Any] = {
    "id": "p1",
    "created_at": "2026-01-01T09:30:00Z",
    "unit_id": "u-17",
    "version": "42",
    "action": "refund_full",
    "params": {"amount": 120.0},
    "context": {"tenure": 3.0},
    "attributes": {"region": "eu"},
}


@pytest.fixture
def scripted() -> Scripted:
    return Scripted()


@pytest.fixture
async def router(scripted: Scripted) -> AsyncIterator[HttpTrafficRouter]:
    config = HttpRouter(type="http", url=BASE_URL, timeout=timedelta(seconds=4))
    async with httpx.AsyncClient(transport=httpx.MockTransport(scripted)) as client:
        yield HttpTrafficRouter(config, client, read_retries=NO_WAIT)


async def test_listing_reads_the_pending_proposals(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(200, json={"pending": [PROPOSAL_JSON], "dropped": 4}))
    listed = await router.pending_reviews("offers", 20)
    assert listed == PendingProposals(pending=[PROPOSAL], dropped=4)
    request = scripted.requests[0]
    assert request.method == "GET"
    assert str(request.url) == f"{REVIEWS_URL}?limit=20"


async def test_listing_is_retried_like_a_read_and_then_unavailable(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(503, json={"detail": "restarting"}))
    with pytest.raises(RouterUnavailable, match="HTTP 503"):
        await router.pending_reviews("offers", 20)
    assert len(scripted.requests) == NO_WAIT.attempts


async def test_a_listing_that_is_not_proposals_is_a_router_error(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(200, json={"pending": [{"id": "p1"}]}))
    with pytest.raises(RouterError, match="not a list of proposals"):
        await router.pending_reviews("offers", 20)


async def test_a_verdict_is_posted_once_and_acknowledged(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    answer = {**PROPOSAL_JSON, "verdict": "reject", "actor": "bob", "reason": "too much"}
    scripted.script(httpx.Response(200, json=answer))
    recorded = await router.record_review("offers", "p1", Verdict.REJECT, "bob", "too much")
    assert recorded == RecordedVerdict(
        verdict=Verdict.REJECT, actor="bob", reason="too much", proposal=PROPOSAL
    )
    request = scripted.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{REVIEWS_URL}/p1")
    assert json.loads(request.content) == {
        "verdict": "reject",
        "actor": "bob",
        "reason": "too much",
    }


async def test_an_unknown_proposal_is_refused_at_once(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(404, json={"detail": "no proposal p9 for target offers"}))
    with pytest.raises(RouterError) as raised:
        await router.record_review("offers", "p9", Verdict.APPROVE, "bob", "")
    assert str(raised.value) == (
        "no proposal 'p9' is waiting for target 'offers' at the router (no proposal p9 for "
        "target offers); `lockgate review offers` lists the pending ones"
    )
    assert not isinstance(raised.value, RouterUnavailable)
    assert len(scripted.requests) == 1


async def test_a_proposal_judged_by_someone_else_is_refused_naming_them(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    conflict = {
        "detail": "proposal p1 was already reviewed: approve by carol",
        "verdict": "approve",
        "actor": "carol",
        "reason": "",
    }
    scripted.script(httpx.Response(409, json=conflict))
    with pytest.raises(RouterError) as raised:
        await router.record_review("offers", "p1", Verdict.REJECT, "bob", "no")
    assert str(raised.value) == (
        "proposal p1 was already reviewed: approve by carol; a proposal takes one verdict"
    )


async def test_a_retry_that_finds_its_own_verdict_counts_as_recorded(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    conflict = {"detail": "already reviewed", "verdict": "reject", "actor": "bob", "reason": "no"}
    scripted.script(httpx.Response(409, json=conflict))
    recorded = await router.record_review("offers", "p1", Verdict.REJECT, "bob", "no")
    assert recorded == RecordedVerdict(verdict=Verdict.REJECT, actor="bob", reason="no")


async def test_a_verdict_is_a_write_sent_once_even_on_a_5xx(
    scripted: Scripted, router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(502, text="bad gateway"))
    with pytest.raises(RouterUnavailable, match="failed the verdict on p1 with HTTP 502"):
        await router.record_review("offers", "p1", Verdict.APPROVE, "bob", "")
    assert len(scripted.requests) == 1


async def test_a_bad_verdict_is_a_refusal(scripted: Scripted, router: HttpTrafficRouter) -> None:
    scripted.script(httpx.Response(422, json={"detail": "bad review: actor: too long"}))
    with pytest.raises(RouterError, match="refused the verdict on p1 with HTTP 422"):
        await router.record_review("offers", "p1", Verdict.APPROVE, "bob", "")


async def test_the_activity_refuses_a_router_type_that_holds_no_proposals() -> None:
    class Registry:
        def router(self, config: object) -> object:
            raise AssertionError("a router that holds no proposals is never built")

    activities = ReviewActivities(Registry())  # type: ignore[arg-type]
    config = SPEC.spec.router
    declaration = router_backend("http")
    plain = RouterBackend(
        type=declaration.type,
        config=declaration.config,
        implementation=declaration.implementation,
        label=declaration.label,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("activities.reviews.router_backend", lambda type_: plain)
        with pytest.raises(Exception, match="does not hold proposals for review") as raised:
            await activities.pending_reviews(ListReviewsInput(router=config, target=TARGET))
    assert getattr(raised.value, "type", None) == "RouterError"


# ----------------------------------------------------------------------------- CLI


def test_the_cli_refuses_two_verdicts_and_a_rejection_without_reason() -> None:
    runner = CliRunner()
    both = runner.invoke(cli.app, ["review", "offers", "--approve", "p1", "--reject", "p2"])
    assert both.exit_code == 2
    assert "give one verdict" in both.output
    silent = runner.invoke(cli.app, ["review", "offers", "--reject", "p1"])
    assert silent.exit_code == 2
    assert "a rejection needs a reason" in silent.output


def test_the_proposals_table_shows_data_literally() -> None:
    hostile = PROPOSAL.model_copy(update={"id": "[bold]p1[/]", "attributes": {"region": "[/]"}})
    listed = PendingReviewsResult(
        pending=[hostile],
        dropped=2,
        reviews=ReviewCounts(approved=1, rejected=0),
        stage="canary",
        stage_reviews=1,
        min_reviews=2,
    )
    console = Console(width=250, record=True)
    console.print(cli.render_proposals(TARGET, listed))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "[bold]p1[/]" in text
    assert "u-17 (region=[/])" in text
    assert "refund_full" in text
    assert "amount=120" in text
    assert (
        "reviews: 1 approved, 0 rejected; stage canary: 1 of 2 proposals reviewed; 2 dropped "
        "from the full queue unseen"
    ) in text
