"""How one decision is served under a route: the modes, the guardrails and the fallbacks.

- `off`: the incumbent serves.
- `shadow`: both policies are asked at once; the incumbent's action is served, the candidate's
  is recorded (decision, agreement, would-be guardrail violation) and never served.
- `split`: the unit's sticky arm serves (gateway.assignment).

Guardrails: when the candidate picks a blocked action, the incumbent is asked and its action is
served instead; the violation is counted and named in the answer. The decision stays the
candidate's (arm and version; counted with the action actually served), so the candidate arm
is judged as it will really run, with its guardrails (intention to treat): moving its blocked
decisions to the incumbent would flatter the candidate's reward and hide how often it is
overruled.

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
from gateway.metrics import GatewayMetrics
from gateway.policy_client import PolicyClient, PolicyError
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

    `guardrail` is the blocked action the candidate picked in this decision, if any (served in
    split, would-be in shadow); `shadow_action` is the candidate's action in shadow mode.
    """

    action: str
    arm: Arm
    version: str
    mode: RouteMode
    shadow_action: str | None = None
    guardrail: str | None = None


class Decider:
    """Serves decisions for routes, recording every event in the gateway's metrics."""

    def __init__(self, policies: PolicyClient, metrics: GatewayMetrics) -> None:
        self._policies = policies
        self._metrics = metrics
        self._logged: dict[tuple[str, str, str], float] = {}

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
            decision = await self._candidate(target, route, candidate, context)
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
    ) -> str:
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

    async def _ask_incumbent(self, target: str, route: Route, context: Mapping[str, float]) -> str:
        try:
            return await self._act(target, Arm.INCUMBENT, route.incumbent, route.mode, context)
        except PolicyError as exc:
            self._metrics.error(target, Arm.INCUMBENT, route.incumbent.version)
            raise IncumbentUnavailableError(
                f"incumbent {route.incumbent.version} gave no action: {exc.reason}"
            ) from exc

    async def _incumbent(self, target: str, route: Route, context: Mapping[str, float]) -> Decision:
        action = await self._ask_incumbent(target, route, context)
        version = route.incumbent.version
        self._metrics.decision(target, Arm.INCUMBENT, version, route.mode, action)
        return Decision(action, Arm.INCUMBENT, version, route.mode)

    async def _candidate(
        self, target: str, route: Route, candidate: PolicyVersion, context: Mapping[str, float]
    ) -> Decision | None:
        """The candidate's decision (guarded), or None when it failed and the incumbent serves."""
        version = candidate.version
        try:
            action = await self._act(target, Arm.CANDIDATE, candidate, route.mode, context)
        except PolicyError:
            self._metrics.error(target, Arm.CANDIDATE, version)
            return None
        blocked = None
        if action in route.guardrails.blocked_actions:
            blocked = action
            self._metrics.violation(target, Arm.CANDIDATE, version, action)
            action = await self._ask_incumbent(target, route, context)
        self._metrics.decision(target, Arm.CANDIDATE, version, route.mode, action)
        return Decision(action, Arm.CANDIDATE, version, route.mode, guardrail=blocked)

    async def _shadow(
        self, target: str, route: Route, candidate: PolicyVersion, context: Mapping[str, float]
    ) -> Decision:
        served, answer = await asyncio.gather(
            self._incumbent(target, route, context),
            self._act(target, Arm.CANDIDATE, candidate, RouteMode.SHADOW, context),
            return_exceptions=True,
        )
        version = candidate.version
        mirrored: str | None = None
        if isinstance(answer, PolicyError):
            self._metrics.error(target, Arm.CANDIDATE, version)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            mirrored = answer
        if isinstance(served, BaseException):
            raise served
        if mirrored is None:
            return served
        self._metrics.decision(target, Arm.CANDIDATE, version, RouteMode.SHADOW, mirrored)
        self._metrics.shadow_pair(target, served.action, mirrored)
        blocked = None
        if mirrored in route.guardrails.blocked_actions:
            blocked = mirrored
            self._metrics.violation(target, Arm.CANDIDATE, version, mirrored)
        return Decision(
            served.action,
            Arm.INCUMBENT,
            served.version,
            RouteMode.SHADOW,
            shadow_action=mirrored,
            guardrail=blocked,
        )
