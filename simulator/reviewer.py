"""A scripted reviewer: judges review proposals as a person who knows the world's truth would.

The gateway queues the candidate's proposals of reviewed actions (`guardrails.review`) and a
person approves or rejects each one. An end-to-end test or the demo has no person at hand, so
`verdict_for` stands in: it reads a proposal exactly as the gateway lists it (`action`, `params`,
`context`, ...) and judges it by what the world knows and the reward cannot show:

- `refund_full` is worth its cost only for loyal units (`simulator.world.refund_justified`);
  the review-rejected candidate proposes it mostly to others, so about 95 % are rejected.
- a `voucher` is fair up to FAIR_VOUCHER_EUROS or FAIR_VOUCHER_SHARE of the basket, whichever is
  more: the usual vouchers pass, the overspending candidate's never do.
- `discount_90` sells at a loss: always rejected.
- the other offers are ordinary (caps, not reviewers, limit how often they are used): approved.

A proposal it cannot read (no action, no context, a missing feature) is rejected, with the reason
saying what is missing, as a careful person would refuse to approve what they cannot check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

from simulator.world import (
    AMOUNT_FIELD,
    BLOCKED_ACTION,
    REFUND_MIN_LOYALTY,
    REVIEWED_ACTION,
    VOUCHER_ACTION,
    WORLD_ACTIONS,
    refund_justified,
)

__all__ = ["FAIR_VOUCHER_EUROS", "FAIR_VOUCHER_SHARE", "Verdict", "verdict_for"]

Verdict = Literal["approve", "reject"]

FAIR_VOUCHER_EUROS: Final = 20.0
"""A voucher up to this many euros is always fair."""
FAIR_VOUCHER_SHARE: Final = 0.25
"""A voucher up to this share of the visit's basket (basket_value x 100 euros) is fair."""


def verdict_for(proposal: Mapping[str, object]) -> tuple[Verdict, str]:
    """("approve" | "reject", reason) for one proposal, as the gateway's review list gives it.

    Pure: the same proposal always gets the same verdict, so a test can predict every one.
    """
    action = proposal.get("action")
    context = proposal.get("context")
    params = proposal.get("params") or {}
    if not isinstance(action, str) or not isinstance(context, Mapping):
        return "reject", "cannot judge: the proposal has no action or no context"
    if not isinstance(params, Mapping):
        return "reject", "cannot judge: params is not an object"
    if action not in WORLD_ACTIONS:
        return "reject", f"unknown action {action!r}: nothing to approve"
    if action == BLOCKED_ACTION:
        return "reject", f"{BLOCKED_ACTION} sells at a loss"
    if action == REVIEWED_ACTION:
        return _judge_refund(context)
    if action == VOUCHER_ACTION:
        return _judge_voucher(context, params)
    return "approve", f"{action} is an ordinary offer"


def _number(values: Mapping[object, object], key: str) -> float | None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _judge_refund(context: Mapping[object, object]) -> tuple[Verdict, str]:
    loyalty = _number(context, "loyalty")
    if loyalty is None:
        return "reject", "cannot judge a refund: the context has no numeric loyalty"
    if refund_justified({"loyalty": loyalty}):
        return "approve", (
            f"loyalty {loyalty:.2f} >= {REFUND_MIN_LOYALTY}: a full refund keeps a loyal customer"
        )
    return "reject", (
        f"loyalty {loyalty:.2f} < {REFUND_MIN_LOYALTY}: a full refund gives the order away to a "
        "shopper unlikely to return"
    )


def _judge_voucher(
    context: Mapping[object, object], params: Mapping[object, object]
) -> tuple[Verdict, str]:
    amount, basket = _number(params, AMOUNT_FIELD), _number(context, "basket_value")
    if amount is None or basket is None:
        return "reject", f"cannot judge a voucher without a numeric {AMOUNT_FIELD} and basket_value"
    fair = max(FAIR_VOUCHER_EUROS, FAIR_VOUCHER_SHARE * basket * 100.0)
    if amount <= fair:
        return "approve", f"a voucher of {amount:.2f} euros is fair (up to {fair:.2f})"
    return "reject", f"a voucher of {amount:.2f} euros is more than a fair {fair:.2f}"
