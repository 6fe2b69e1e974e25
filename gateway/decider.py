"""How one decision is served under a route: the modes, the guardrails and the fallbacks.

- `off`: the incumbent serves.
- `shadow`: both policies are asked at once; the incumbent's action is served, the candidate's
  is recorded (decision, agreement, would-be guardrail violation) and never served. With a
  mirror (`--shadow-mirror batched`), a candidate behind a policy server is asked after the
  answer instead, in batches (gateway.mirror), and recorded the same way when they answer.
- `split`: the unit's sticky arm serves (gateway.assignment).

Guardrails, in this order, on the candidate's decision (the first that applies overrules it):

1. `blocked_actions`: the action is never served; the violation is counted.
2. `review`: the action is a proposal for humans (gateway.reviews): it is queued and not served.
3. value caps: a parameter above its cap (gateway.caps).
4. share caps: the action would pass its share of the candidate's served decisions in the window.

When one applies, the incumbent is asked and its decision (action and parameters) is served
instead, and the intervention is counted and named in the answer (`guardrail`, `intervention`,
and `proposal` for a review). The decision stays the candidate's (arm and version; counted with
the action actually served), so the candidate arm is judged as it will really run, with its
guardrails (intention to treat): moving its overruled decisions to the incumbent would flatter
the candidate's reward and hide how often it is overruled. In shadow the same rules are judged
on the candidate's mirrored decision and would-be interventions are counted, but nothing is
queued for review (nothing of the candidate's is served, so there is nothing to approve).

With no caps and no review on the route, none of this costs more than two attribute reads.

Failures: a candidate that gives no action is counted as a candidate error and the incumbent
serves (the unit is not punished for the rollout); an incumbent that gives no action is counted
and raises `IncumbentUnavailableError` (HTTP 502), since there is nothing safe left to serve.
The 502 says why in the gateway's words only (PolicyError.reason): what a policy server answered
goes to the gateway's log (at most one line per policy version every LOG_EVERY seconds), never
to a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from activities.contracts import Route, RouteMode
from gateway.assignment import Arm, assign
from gateway.caps import CapGuard, Intervention
from gateway.metrics import GatewayMetrics
from gateway.mirror import DEFAULT_MAX_BATCH, Mirror, ShadowMirror
from gateway.policy_client import PolicyAnswer, PolicyClient, PolicyError
from gateway.reviews import Reviews
from rollout_specs import PolicyVersion

__all__ = ["LOG_EVERY", "Decider", "Decision", "IncumbentUnavailableError"]

LOG_EVERY = 10.0
"""Seconds between two log lines about failures of one policy version (the metrics count all)."""

_log = logging.getLogger("gateway.decider")


class IncumbentUnavailableError(Exception):
    """The incumbent policy gave no action, so the decision cannot be served."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One served decision, as the decide endpoint answers it.

    `guardrail` names what overruled the candidate's decision, if anything (served in split,
    would-be in shadow): the action (blocked, review, share) or the parameter (value), and
    `intervention` is its kind; `proposal` is the id of the queued review proposal;
    `shadow_action` is the candidate's action in shadow mode; `params` are the served action's.
    """

    action: str
    arm: Arm
    version: str
    mode: RouteMode
    shadow_action: str | None = None
    guardrail: str | None = None
    intervention: Intervention | None = None
    proposal: str | None = None
    params: Mapping[str, float] | None = None


class Decider:
    """Serves decisions for routes, recording every event in the gateway's metrics."""

    def __init__(
        self,
        policies: PolicyClient,
        metrics: GatewayMetrics,
        *,
        caps: CapGuard | None = None,
        reviews: Reviews | None = None,
        mirror_queue: int | None = None,
        mirror_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        """Serve with `policies`, recording in `metrics`.

        `mirror_queue`: None asks shadow's candidate on the response path (its action is in
        the answer); a number mirrors it in batches, off the path, with at most that many
        waiting (gateway.mirror), `mirror_batch` at most in one call.
        """
        self._policies = policies
        self._metrics = metrics
        self._caps = caps if caps is not None else CapGuard()
        self.reviews = reviews if reviews is not None else Reviews(metrics)
        self._logged: dict[tuple[str, str, str], float] = {}
        self.mirror = (
            None
            if mirror_queue is None
            else ShadowMirror(
                self._mirror_batch,
                metrics.mirror_dropped,
                capacity=mirror_queue,
                max_batch=mirror_batch,
            )
        )

    async def aclose(self) -> None:
        """Stop mirroring (the gateway is stopping)."""
        if self.mirror is not None:
            await self.mirror.aclose()

    async def decide(
        self,
        target: str,
        route: Route,
        unit_id: str,
        context: Mapping[str, float],
        attributes: Mapping[str, str],
    ) -> Decision:
        """Serve one decision for `unit_id` as `route` says.

        Raises:
            IncumbentUnavailableError: The incumbent was needed and gave no action.
        """
        candidate = route.candidate
        if candidate is None or route.mode is RouteMode.OFF:
            return await self._incumbent(target, route, context)
        if route.mode is RouteMode.SHADOW:
            return await self._shadow(target, route, candidate, context)
        arm = assign(route.rollout_id, unit_id, route.percent, route.scope, attributes)
        if arm is Arm.CANDIDATE:
            decision = await self._candidate(target, route, candidate, unit_id, context, attributes)
            if decision is not None:
                return decision
        return await self._incumbent(target, route, context)

    async def _act(
        self,
        target: str,
        arm: Arm,
        policy: PolicyVersion,
        mode: RouteMode,
        context: Mapping[str, float],
    ) -> PolicyAnswer:
        """Ask one policy, timing the call whatever its outcome."""
        started = time.perf_counter()
        try:
            return await self._policies.act(policy, context)
        except PolicyError as exc:
            self._log_failure(target, arm, policy.version, exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.policy_latency(target, arm, policy.version, mode, elapsed)

    def _log_failure(self, target: str, arm: Arm, version: str, exc: PolicyError) -> None:
        """Log what the policy server said, at most once per LOG_EVERY seconds per version."""
        key = (target, arm.value, version)
        now = time.monotonic()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_EVERY:
            return
        if len(self._logged) > 10_000:  # versions come from routes; keep the memo bounded anyway
            self._logged.clear()
        self._logged[key] = now
        _log.warning("target %s: %s %s gave no action: %s", target, arm.value, version, exc)

    async def _ask_incumbent(
        self, target: str, route: Route, context: Mapping[str, float]
    ) -> PolicyAnswer:
        try:
            return await self._act(target, Arm.INCUMBENT, route.incumbent, route.mode, context)
        except PolicyError as exc:
            self._metrics.error(target, Arm.INCUMBENT, route.incumbent.version)
            raise IncumbentUnavailableError(
                f"incumbent {route.incumbent.version} gave no action: {exc.reason}"
            ) from exc

    async def _incumbent(self, target: str, route: Route, context: Mapping[str, float]) -> Decision:
        answer = await self._ask_incumbent(target, route, context)
        version = route.incumbent.version
        self._metrics.decision(target, Arm.INCUMBENT, version, route.mode, answer.action)
        return Decision(answer.action, Arm.INCUMBENT, version, route.mode, params=answer.params)

    def _guard(
        self, target: str, route: Route, version: str, answer: PolicyAnswer
    ) -> tuple[Intervention, str] | None:
        """The guardrail that overrules the candidate's answer, as (kind, name), or None."""
        guardrails = route.guardrails
        action = answer.action
        if action in guardrails.blocked_actions:
            self._metrics.violation(target, Arm.CANDIDATE, version, action)
            return Intervention.BLOCKED, action
        if guardrails.review is not None and action in guardrails.review.actions:
            return Intervention.REVIEW, action
        if guardrails.caps:
            return self._caps.check(target, route, action, answer.params)
        return None

    async def _candidate(
        self,
        target: str,
        route: Route,
        candidate: PolicyVersion,
        unit_id: str,
        context: Mapping[str, float],
        attributes: Mapping[str, str],
    ) -> Decision | None:
        """The candidate's decision (guarded), or None when it failed and the incumbent serves."""
        version = candidate.version
        try:
            answer = await self._act(target, Arm.CANDIDATE, candidate, route.mode, context)
        except PolicyError:
            self._metrics.error(target, Arm.CANDIDATE, version)
            return None
        served = answer
        overruled = self._guard(target, route, version, answer)
        kind = guardrail = proposal = None
        if overruled is not None:
            kind, guardrail = overruled
            self._metrics.intervention(target, version, guardrail, kind)
            served = await self._ask_incumbent(target, route, context)
            review = route.guardrails.review
            if kind is Intervention.REVIEW and review is not None:
                proposal = self.reviews.propose(
                    target,
                    review.max_pending,
                    unit_id=unit_id,
                    version=version,
                    action=answer.action,
                    params=answer.params,
                    context=context,
                    attributes=attributes,
                ).id
        if route.guardrails.caps:
            self._caps.served(target, route, served.action)
        self._metrics.decision(target, Arm.CANDIDATE, version, route.mode, served.action)
        return Decision(
            served.action,
            Arm.CANDIDATE,
            version,
            route.mode,
            guardrail=guardrail,
            intervention=kind,
            proposal=proposal,
            params=served.params,
        )

    async def _ask_both(
        self, target: str, route: Route, candidate: PolicyVersion, context: Mapping[str, float]
    ) -> tuple[Decision | Exception, PolicyAnswer | Exception]:
        """The incumbent's decision and the candidate's answer in shadow, or why each failed."""
        served: Decision | Exception
        answer: PolicyAnswer | Exception
        ask = self._act(target, Arm.CANDIDATE, candidate, RouteMode.SHADOW, context)
        # Over HTTP, the candidate's call in a task, overlapping the incumbent's (one task, not
        # the two of a gather; cancelling this decision cancels it too). In-process there is
        # no I/O to overlap: one after the other, without a task.
        local = self._policies.serves_in_process(candidate)
        mirror = None if local else asyncio.create_task(ask)
        try:
            served = await self._incumbent(target, route, context)
        except Exception as exc:
            served = exc
        except BaseException:
            if mirror is not None:
                mirror.cancel()
            else:
                ask.close()
            raise
        try:
            answer = await (ask if mirror is None else mirror)
        except Exception as exc:
            answer = exc
        return served, answer

    async def _shadow(
        self, target: str, route: Route, candidate: PolicyVersion, context: Mapping[str, float]
    ) -> Decision:
        mirror = self.mirror
        if mirror is not None and not self._policies.serves_in_process(candidate):
            decision = await self._incumbent(target, route, context)
            mirror.offer(Mirror(target, route, candidate, context, decision.action))
            return decision
        served, answer = await self._ask_both(target, route, candidate, context)
        version = candidate.version
        mirrored: PolicyAnswer | None = None
        if isinstance(answer, PolicyError):
            self._metrics.error(target, Arm.CANDIDATE, version)
        elif isinstance(answer, Exception):
            raise answer
        else:
            mirrored = answer
        if isinstance(served, Exception):
            raise served
        if mirrored is None:
            return served
        overruled = self._record_shadow(target, route, version, served.action, mirrored)
        kind, guardrail = overruled if overruled is not None else (None, None)
        return Decision(
            served.action,
            Arm.INCUMBENT,
            served.version,
            RouteMode.SHADOW,
            shadow_action=mirrored.action,
            guardrail=guardrail,
            intervention=kind,
            params=served.params,
        )

    def _record_shadow(
        self, target: str, route: Route, version: str, served: str, mirrored: PolicyAnswer
    ) -> tuple[Intervention, str] | None:
        """Record one candidate answer beside the incumbent's served action, as shadow evidence.

        The candidate's decision, the pair, and the guardrail that would have overruled it
        (returned, as `_guard` gives it).
        """
        action = mirrored.action
        self._metrics.decision(target, Arm.CANDIDATE, version, RouteMode.SHADOW, action)
        self._metrics.shadow_pair(target, served, action)
        overruled = self._guard(target, route, version, mirrored)
        if overruled is not None:  # would-be: counted, never queued (nothing is served)
            kind, guardrail = overruled
            self._metrics.intervention(target, version, guardrail, kind)
        if route.guardrails.caps:  # what the candidate would have served
            self._caps.served(target, route, action if overruled is None else served)
        return overruled

    async def _mirror_batch(self, mirrors: list[Mirror]) -> None:
        """Ask the candidate for a batch of mirrored decisions and record each as shadow does.

        One policy latency is observed per batch call (its own round trip, for all its
        contexts); a failed call counts an error for each of its mirrors, as that many failed
        calls would have.
        """
        first = mirrors[0]
        target, candidate = first.target, first.candidate
        version = candidate.version
        started = time.perf_counter()
        answers: list[PolicyAnswer | PolicyError]
        try:
            answers = await self._policies.act_many(candidate, [m.context for m in mirrors])
        except PolicyError as exc:
            answers = [exc] * len(mirrors)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.policy_latency(target, Arm.CANDIDATE, version, RouteMode.SHADOW, elapsed)
        for mirror, answer in zip(mirrors, answers, strict=True):
            if isinstance(answer, PolicyError):
                self._log_failure(target, Arm.CANDIDATE, version, answer)
                self._metrics.error(target, Arm.CANDIDATE, version)
            else:
                self._record_shadow(target, mirror.route, version, mirror.served, answer)
