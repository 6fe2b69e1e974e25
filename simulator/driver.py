"""Traffic: simulated units asking a gateway for decisions and sending their rewards back.

A pool of sticky units (fixed ids, each with a fixed region and stable base features) visits at
a target rate. Each visit posts `decide`, draws the conversion from the world for the action the
gateway actually served (harmed by the scenario when the candidate arm served it), and posts
`feedback`, optionally after a delay, as real rewards arrive late. The served action's `params`
(a voucher's `amount`, when the gateway's answer carries them) count in its conversion and in the
report's spend; guardrail interventions are counted by the kind the answer names.

Pacing is drift-free: visit `i` is due at `start + i / rate` on the event loop's monotonic clock,
so slow iterations never accumulate into a lower rate. In-flight requests are bounded by
`concurrency`; if the gateway is so slow that the driver falls more than `max_lag` seconds
behind, the missed visits are skipped (and counted) instead of being fired in one burst.

The driver talks to nothing but the gateway URL it is given (proxy environment variables are
ignored), and stops after `duration` seconds, letting in-flight decisions finish and send their
feedback, or at once when cancelled.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx

from simulator.scenarios import Scenario
from simulator.world import AMOUNT_FIELD, WORLD_ACTIONS, Unit, World

__all__ = ["ARMS", "ArmReport", "DriveConfig", "DriveReport", "Driver"]

ARMS: Final = ("incumbent", "candidate")


@dataclass(frozen=True)
class DriveConfig:
    """What traffic to send, where, and for how long.

    Attributes:
        gateway: The gateway's base URL, e.g. http://127.0.0.1:8080.
        target: The target (policy slot) decisions are asked for.
        scenario: How the world treats the candidate arm's units.
        rate: Visits per second.
        duration: Seconds to run; None runs until cancelled.
        seed: Seeds the unit pool, the visit sequence and the rewards.
        units: Size of the sticky unit pool.
        unit_prefix: Prefix of unit ids, so two drivers on one target never share units.
        concurrency: Most HTTP requests in flight at once.
        reward_delay: Seconds between a decision and its feedback.
        timeout: Seconds an HTTP request may take.
        max_lag: Seconds the schedule may fall behind before missed visits are skipped.
    """

    gateway: str
    target: str
    scenario: Scenario
    rate: float = 50.0
    duration: float | None = None
    seed: int = 7
    units: int = 5000
    unit_prefix: str = "u"
    concurrency: int = 64
    reward_delay: float = 0.0
    timeout: float = 5.0
    max_lag: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate is {self.rate}; send a positive number of visits per second")
        if self.duration is not None and not self.duration >= 0:
            raise ValueError(f"duration is {self.duration}; use seconds >= 0, or None")
        if self.units < 1 or self.concurrency < 1:
            raise ValueError("units and concurrency must be at least 1")
        if self.reward_delay < 0 or self.timeout <= 0 or self.max_lag <= 0:
            raise ValueError("reward_delay must be >= 0, timeout and max_lag > 0")


@dataclass
class ArmReport:
    """Counts for the decisions one arm served.

    Attributes:
        decisions: Decisions the arm served (decide answered 200).
        rewarded: Feedback accepted (200).
        feedback_errors: Feedback refused (404 expired, 409 twice, ...) or failed in transit.
        reward_total: Sum of the rewards accepted.
        spend: Sum of the served decisions' `amount` parameters (what a spend budget adds up).
    """

    decisions: int = 0
    rewarded: int = 0
    feedback_errors: int = 0
    reward_total: float = 0.0
    spend: float = 0.0

    @property
    def mean_reward(self) -> float | None:
        """The observed mean reward, or None before any feedback was accepted."""
        return self.reward_total / self.rewarded if self.rewarded else None


@dataclass
class DriveReport:
    """What the driver sent and what came back, updated live while it runs.

    Attributes:
        sent: Decide requests sent.
        no_route: Decide answered 404: the target has no route (yet); the driver goes on.
        errors: Other failed decides: 5xx (502: the incumbent failed), other 4xx, transport
            errors, malformed answers.
        skipped: Visits skipped because the gateway was too slow to keep the rate.
        violations: Decisions whose answer names a guardrail for a blocked action: the candidate
            picked it (overruled in split mode, would-be in shadow mode). An answer naming a
            guardrail without an intervention kind counts here, as gateways before caps answer.
        interventions: Decisions the gateway intervened on (would-be in shadow mode), by the
            answer's `intervention` kind (blocked, review, value, share).
        arms: Per-arm counts, by arm name.
        last_error: The latest error's description, for the summary.
        elapsed: Seconds the driver has run.
    """

    sent: int = 0
    no_route: int = 0
    errors: int = 0
    skipped: int = 0
    violations: int = 0
    interventions: dict[str, int] = field(default_factory=dict)
    arms: dict[str, ArmReport] = field(default_factory=lambda: {arm: ArmReport() for arm in ARMS})
    last_error: str | None = None
    elapsed: float = 0.0

    @property
    def decisions(self) -> int:
        """Decisions served, over both arms."""
        return sum(arm.decisions for arm in self.arms.values())

    @property
    def feedback_sent(self) -> int:
        """Feedback posted, accepted or not."""
        return sum(arm.rewarded + arm.feedback_errors for arm in self.arms.values())

    def summary(self) -> str:
        """One line for logs and the command line."""
        rate = self.sent / self.elapsed if self.elapsed > 0 else 0.0
        parts = [f"sent {self.sent} in {self.elapsed:.1f}s ({rate:.1f}/s)"]
        for name, arm in self.arms.items():
            if arm.decisions or arm.feedback_errors:
                mean = "n/a" if arm.mean_reward is None else f"{arm.mean_reward:.3f}"
                spent = f", spend {arm.spend:.2f}" if arm.spend else ""
                parts.append(
                    f"{name} {arm.decisions} decisions, {arm.rewarded} rewarded "
                    f"(mean {mean}), {arm.feedback_errors} feedback errors{spent}"
                )
        parts.append(
            f"guardrail violations {self.violations}; no route {self.no_route}; "
            f"errors {self.errors}; skipped {self.skipped}"
        )
        if self.interventions:
            counts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.interventions.items()))
            parts.append(f"interventions {counts}")
        if self.last_error is not None:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts)


class Driver:
    """Sends one scenario's traffic to one gateway target; see the module docstring.

    Args:
        config: What to send.
        transport: An httpx transport to use instead of the network (tests, embedding).
    """

    def __init__(self, config: DriveConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.report = DriveReport()
        self._transport = transport
        self._world = World(config.seed)
        self._pool = self._world.units(config.units, config.unit_prefix)
        self._rewards = World(config.seed + 1)  # its own stream: rewards never shift the visits
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)

    @property
    def in_flight(self) -> int:
        """Decisions and feedback started and not finished (0 once `run` has returned)."""
        return len(self._tasks)

    @property
    def pool(self) -> list[Unit]:
        """The sticky units this driver draws its visits from."""
        return self._pool

    async def run(self) -> DriveReport:
        """Send traffic until `duration` has passed (then drain) or the task is cancelled."""
        config = self.config
        loop = asyncio.get_running_loop()
        started = loop.time()
        drained = False
        async with httpx.AsyncClient(
            base_url=f"{config.gateway.rstrip('/')}/v1/targets/{quote(config.target, safe='')}",
            timeout=config.timeout,
            trust_env=False,
            transport=self._transport,
            limits=httpx.Limits(max_connections=config.concurrency),
        ) as http:
            try:
                await self._pace(http, started)
                while self._tasks:  # decisions spawn their feedback: drain until none is left
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                drained = True
            finally:
                if not drained:
                    for task in self._tasks:
                        task.cancel()
                    if self._tasks:
                        await asyncio.gather(*self._tasks, return_exceptions=True)
                self.report.elapsed = loop.time() - started
        return self.report

    async def _pace(self, http: httpx.AsyncClient, started: float) -> None:
        config, loop = self.config, asyncio.get_running_loop()
        visits = self._world.rng
        last = None if config.duration is None else math.ceil(config.duration * config.rate)
        tick = 0
        while last is None or tick < last:
            due = started + tick / config.rate
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > config.max_lag:
                caught_up = max(tick + 1, math.floor((now - started) * config.rate))
                caught_up = caught_up if last is None else min(last, caught_up)
                self.report.skipped += caught_up - tick
                tick = caught_up
                continue
            await self._slots.acquire()
            unit = self._pool[int(visits.integers(len(self._pool)))]
            self._spawn(self._visit(http, unit, self._world.visit(unit)))
            tick += 1

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail(self, description: str) -> None:
        self.report.errors += 1
        self.report.last_error = description

    async def _visit(self, http: httpx.AsyncClient, unit: Unit, context: dict[str, float]) -> None:
        """One decide (holding the slot the pacer took), then the feedback in its own task."""
        report = self.report
        try:
            report.sent += 1
            body = {
                "unit_id": unit.unit_id,
                "context": context,
                "attributes": {"region": unit.region},
            }
            try:
                response = await http.post("/decide", json=body)
            except httpx.HTTPError as exc:
                self._fail(f"decide: {type(exc).__name__}: {exc}")
                return
            if response.status_code == 404:
                report.no_route += 1
                return
            if response.status_code != 200:
                self._fail(f"decide answered {response.status_code}: {response.text[:200]}")
                return
            decision = _parse_decision(response)
            if isinstance(decision, str):
                self._fail(decision)
                return
        finally:
            self._slots.release()
        report.arms[decision.arm].decisions += 1
        report.arms[decision.arm].spend += decision.params.get(AMOUNT_FIELD, 0.0)
        if decision.guardrail is not None and decision.intervention in (None, "blocked"):
            report.violations += 1
        if decision.intervention is not None:
            kinds = report.interventions
            kinds[decision.intervention] = kinds.get(decision.intervention, 0) + 1
        factor = self.config.scenario.reward_factor(decision.arm, unit.region)
        reward = self._rewards.draw_reward(context, decision.action, factor, decision.params)
        self._spawn(self._feedback(http, decision.arm, decision.decision_id, reward))

    async def _feedback(
        self, http: httpx.AsyncClient, arm: str, decision_id: str, reward: float
    ) -> None:
        if self.config.reward_delay > 0:
            await asyncio.sleep(self.config.reward_delay)
        counts = self.report.arms[arm]
        async with self._slots:
            try:
                response = await http.post(
                    "/feedback", json={"decision_id": decision_id, "reward": reward}
                )
            except httpx.HTTPError as exc:
                counts.feedback_errors += 1
                self.report.last_error = f"feedback: {type(exc).__name__}: {exc}"
                return
        if response.status_code == 200:
            counts.rewarded += 1
            counts.reward_total += reward
        else:
            counts.feedback_errors += 1
            self.report.last_error = (
                f"feedback answered {response.status_code}: {response.text[:200]}"
            )


@dataclass(frozen=True)
class _Decision:
    """What the driver needs of a decide answer."""

    decision_id: str
    action: str
    arm: str
    guardrail: str | None
    intervention: str | None
    params: dict[str, float]


def _parse_decision(response: httpx.Response) -> _Decision | str:
    """The decision from a decide answer, or what is wrong with the answer."""
    try:
        body = response.json()
    except ValueError:
        return f"decide answered 200 with a body that is not JSON: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"decide answered 200 with {body!r}, not an object"
    decision_id, action, arm = body.get("decision_id"), body.get("action"), body.get("arm")
    if not isinstance(decision_id, str) or arm not in ARMS or action not in WORLD_ACTIONS:
        return (
            f"decide answered 200 without a usable decision_id, arm ({', '.join(ARMS)}) "
            f"and world action ({', '.join(WORLD_ACTIONS)}): {body!r}"[:300]
        )
    params = body.get("params") or {}
    numeric = isinstance(params, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in params.values()
    )
    if not numeric:
        return f"decide answered 200 with params that are not finite numbers: {body!r}"[:300]
    guardrail, intervention = body.get("guardrail"), body.get("intervention")
    return _Decision(
        decision_id,
        str(action),
        str(arm),
        None if guardrail is None else str(guardrail),
        None if intervention is None else str(intervention),
        {str(name): float(value) for name, value in params.items()},
    )
