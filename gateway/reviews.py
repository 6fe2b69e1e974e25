"""Proposals waiting for a human: the candidate's reviewed actions, never executed by themselves.

When the candidate picks an action its route lists under `guardrails.review`, the incumbent's
decision is served and the candidate's is queued here as a proposal, with what a reviewer needs
to judge it (the unit, its context and attributes, the action and its parameters). A reviewer
(`lockgate review`, through the control plane) approves or rejects it; lockgate audits the
verdict and its `review` trigger judges the reject share.

Bounds, so no traffic can grow the gateway without limit:

- per target at most the route's `review.max_pending` proposals wait; a new one past it drops
  the oldest, which is counted (`dropped`, lockgate_review_dropped_total): a reviewer sees that
  proposals went unseen;
- the last KEEP_REVIEWED reviewed proposals per target are kept, so a second verdict on one of
  them is answered 409 naming who gave the first; older ids are unknown (404).

A proposal holds its decide request's context and attributes, so a queue holds at most
max_pending decide bodies' worth (`--max-decide-bytes` each); targets are the routed ones.

Proposals live in memory only: a gateway restart loses the pending ones (verdicts already given
are in lockgate's audit trail).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gateway.metrics import GatewayMetrics

__all__ = [
    "KEEP_REVIEWED",
    "AlreadyReviewedError",
    "Proposal",
    "Reviewed",
    "Reviews",
    "UnknownProposalError",
    "Verdict",
]

KEEP_REVIEWED = 1000
"""Reviewed proposals remembered per target, to answer a second verdict with the first."""


class Verdict(StrEnum):
    """A reviewer's ruling on one proposal."""

    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Proposal:
    """One decision of the candidate held for review."""

    id: str
    created_at: float
    """Seconds since the epoch."""
    unit_id: str
    version: str
    action: str
    params: Mapping[str, float] | None
    context: Mapping[str, float]
    attributes: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        """The proposal as the review endpoints answer it (created_at in RFC 3339, UTC)."""
        return {
            "id": self.id,
            "created_at": _rfc3339(self.created_at),
            "unit_id": self.unit_id,
            "version": self.version,
            "action": self.action,
            "params": dict(self.params) if self.params is not None else None,
            "context": dict(self.context),
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A proposal with its verdict: who ruled, why, and when (seconds since the epoch)."""

    proposal: Proposal
    verdict: Verdict
    actor: str
    reason: str
    reviewed_at: float

    def to_json(self) -> dict[str, Any]:
        """The proposal's fields plus `verdict`, `actor`, `reason` and `reviewed_at`."""
        return {
            **self.proposal.to_json(),
            "verdict": self.verdict.value,
            "actor": self.actor,
            "reason": self.reason,
            "reviewed_at": _rfc3339(self.reviewed_at),
        }


class UnknownProposalError(LookupError):
    """No proposal has that id for the target: never queued, dropped, or long reviewed (404)."""


class AlreadyReviewedError(LookupError):
    """The proposal already has its verdict (409); `reviewed` says whose."""

    def __init__(self, reviewed: Reviewed) -> None:
        super().__init__(reviewed.proposal.id)
        self.reviewed = reviewed


class _Queue:
    """One target's pending proposals (oldest first) and its recently reviewed ones."""

    __slots__ = ("dropped", "pending", "reviewed")

    def __init__(self) -> None:
        self.pending: OrderedDict[str, Proposal] = OrderedDict()
        self.reviewed: OrderedDict[str, Reviewed] = OrderedDict()
        self.dropped = 0


class Reviews:
    """Every target's review queue, counting proposals, verdicts and drops in the metrics.

    Args:
        metrics: The gateway's metrics.
        clock: Wall-clock seconds since the epoch (proposals are shown to humans with a date).
        keep_reviewed: Reviewed proposals remembered per target.
    """

    def __init__(
        self,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.time,
        keep_reviewed: int = KEEP_REVIEWED,
    ) -> None:
        if keep_reviewed < 1:
            raise ValueError("keep_reviewed must be at least 1")
        self._metrics = metrics
        self._clock = clock
        self._keep_reviewed = keep_reviewed
        self._queues: dict[str, _Queue] = {}

    def propose(
        self,
        target: str,
        max_pending: int,
        *,
        unit_id: str,
        version: str,
        action: str,
        params: Mapping[str, float] | None,
        context: Mapping[str, float],
        attributes: Mapping[str, str],
    ) -> Proposal:
        """Queue a proposal, dropping (and counting) the oldest beyond `max_pending`."""
        queue = self._queues.get(target)
        if queue is None:
            queue = self._queues[target] = _Queue()
        proposal = Proposal(
            uuid.uuid4().hex,
            self._clock(),
            unit_id,
            version,
            action,
            params,
            context,
            attributes,
        )
        queue.pending[proposal.id] = proposal
        self._metrics.review_proposal(target, version)
        while len(queue.pending) > max_pending:
            queue.pending.popitem(last=False)
            queue.dropped += 1
            self._metrics.review_dropped(target)
        return proposal

    def pending(self, target: str, limit: int) -> tuple[list[Proposal], int]:
        """The target's oldest `limit` pending proposals, and how many were dropped unseen."""
        queue = self._queues.get(target)
        if queue is None:
            return [], 0
        oldest: list[Proposal] = []
        for proposal in queue.pending.values():
            if len(oldest) >= limit:
                break
            oldest.append(proposal)
        return oldest, queue.dropped

    def review(
        self, target: str, proposal_id: str, verdict: Verdict, actor: str, reason: str
    ) -> Reviewed:
        """Record a verdict; the proposal leaves the pending list.

        Raises:
            UnknownProposalError: No pending or recently reviewed proposal has that id.
            AlreadyReviewedError: The proposal already has a verdict.
        """
        queue = self._queues.get(target)
        if queue is None:
            raise UnknownProposalError(proposal_id)
        earlier = queue.reviewed.get(proposal_id)
        if earlier is not None:
            raise AlreadyReviewedError(earlier)
        proposal = queue.pending.pop(proposal_id, None)
        if proposal is None:
            raise UnknownProposalError(proposal_id)
        reviewed = Reviewed(proposal, verdict, actor, reason, self._clock())
        queue.reviewed[proposal_id] = reviewed
        while len(queue.reviewed) > self._keep_reviewed:
            queue.reviewed.popitem(last=False)
        self._metrics.review_verdict(target, proposal.version, verdict.value)
        return reviewed


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
