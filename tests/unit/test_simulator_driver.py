"""The traffic driver against an in-process fake gateway (an httpx transport, no sockets).

These pin the driver's own logic: the harm applied per arm and region, how each kind of
failure is counted, late feedback, skipping when the gateway is too slow, and cancellation.
tests/gateway/test_simulator_drive.py drives the real gateway over HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from simulator.driver import DriveConfig, Driver
from simulator.scenarios import scenario
from tests.helpers.waiting import wait_until

GATEWAY = "http://gateway.test"


@dataclass
class Decided:
    unit_id: str
    region: str
    context: dict[str, float]
    arm: str
    at: float


@dataclass
class FakeGateway:
    """Answers decide and feedback like the gateway; every unit with an odd id is a candidate."""

    action: str = "discount_10"
    decide_status: int = 200
    decide_body: Any = None
    feedback_status: int = 200
    delay: float = 0.0
    decided: dict[str, Decided] = field(default_factory=dict)
    rewards: dict[str, tuple[float, float]] = field(default_factory=dict)
    """decision id -> (reward, time)."""
    feedback_posts: int = 0
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        body = json.loads(request.content)
        if request.url.path == "/v1/targets/offers/decide":
            if self.decide_status != 200:
                return httpx.Response(self.decide_status, json={"detail": "refused"})
            if self.decide_body is not None:
                return httpx.Response(200, json=self.decide_body)
            decision_id = f"d{next(self.ids)}"
            arm = "candidate" if int(body["unit_id"][1:]) % 2 else "incumbent"
            self.decided[decision_id] = Decided(
                body["unit_id"],
                body["attributes"]["region"],
                body["context"],
                arm,
                time.monotonic(),
            )
            return httpx.Response(
                200,
                json={
                    "decision_id": decision_id,
                    "action": self.action,
                    "arm": arm,
                    "version": "42" if arm == "candidate" else "41",
                    "mode": "split",
                    "shadow_action": None,
                    "guardrail": None,
                },
            )
        if request.url.path == "/v1/targets/offers/feedback":
            self.feedback_posts += 1
            if self.feedback_status != 200:
                return httpx.Response(self.feedback_status, json={"detail": "refused"})
            self.rewards[body["decision_id"]] = (body["reward"], time.monotonic())
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"detail": f"no such path {request.url.path}"})


def _driver(fake: FakeGateway, name: str = "healthy", **options: Any) -> Driver:
    chosen = scenario(
        name,
        regression_fraction=options.pop("regression_fraction", 0.3),
        region=options.pop("region", None),
    )
    options.setdefault("rate", 400.0)
    options.setdefault("duration", 0.25)
    config = DriveConfig(GATEWAY, "offers", chosen, **options)
    return Driver(config, transport=fake.transport())


async def test_every_decision_gets_one_feedback_and_the_counts_add_up() -> None:
    fake = FakeGateway()
    report = await _driver(fake, rate=400, duration=0.25).run()
    assert report.sent == len(fake.decided) == 100  # rate x duration, exactly
    assert set(fake.rewards) == set(fake.decided)
    assert fake.feedback_posts == report.feedback_sent == 100
    arms = Counter(decided.arm for decided in fake.decided.values())
    for arm in ("incumbent", "candidate"):
        assert report.arms[arm].decisions == report.arms[arm].rewarded == arms[arm]
    total = sum(reward for reward, _ in fake.rewards.values())
    assert sum(arm.reward_total for arm in report.arms.values()) == total
    assert (report.errors, report.no_route, report.skipped) == (0, 0, 0)
    assert "sent 100" in report.summary()


async def test_units_are_sticky_to_their_region_and_base_features() -> None:
    fake = FakeGateway()
    driver = _driver(fake, rate=1000, duration=0.5, units=40)
    await driver.run()
    pool = {unit.unit_id: unit for unit in driver.pool}
    seen: dict[str, set[tuple[str, float, float]]] = {}
    for decided in fake.decided.values():
        unit = pool[decided.unit_id]
        assert decided.region == unit.region
        stable = (decided.region, decided.context["recency"], decided.context["loyalty"])
        seen.setdefault(decided.unit_id, set()).add(stable)
        assert decided.context["region_eu"] == unit.context["region_eu"]
    assert all(len(values) == 1 for values in seen.values())
    assert max(Counter(d.unit_id for d in fake.decided.values()).values()) > 5  # units return


async def test_the_regression_harms_the_candidates_units_in_its_region_only() -> None:
    fake = FakeGateway()
    report = await _driver(
        fake, "regression", regression_fraction=0.99, region="ap-south-1", rate=2000, duration=1
    ).run()
    assert report.sent + report.skipped == 2000
    assert report.sent > 800  # this test is about rewards: a slow machine may skip some visits
    rewards: dict[tuple[str, bool], list[float]] = {}
    for decision_id, decided in fake.decided.items():
        key = (decided.arm, decided.region == "ap-south-1")
        rewards.setdefault(key, []).append(fake.rewards[decision_id][0])
    mean = {key: sum(values) / len(values) for key, values in rewards.items()}
    # harmed decisions (~10 % of those sent) convert with p ~ 0.005: a handful at most
    harmed = rewards["candidate", True]
    assert len(harmed) > 40
    assert sum(harmed) <= max(3, 0.03 * len(harmed))
    for key in [("incumbent", True), ("incumbent", False), ("candidate", False)]:
        assert mean[key] > 0.35, (key, mean)


async def test_feedback_is_sent_after_the_reward_delay() -> None:
    fake = FakeGateway()
    report = await _driver(fake, rate=100, duration=0.2, reward_delay=0.3).run()
    assert report.arms["incumbent"].rewarded + report.arms["candidate"].rewarded == 20
    for decision_id, decided in fake.decided.items():
        assert fake.rewards[decision_id][1] - decided.at >= 0.29


async def test_no_route_is_counted_and_the_driver_goes_on() -> None:
    fake = FakeGateway(decide_status=404)
    report = await _driver(fake).run()
    assert report.no_route == report.sent == 100
    assert fake.feedback_posts == 0
    assert report.errors == 0


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (502, None, "decide answered 502"),
        (200, ["not", "an", "object"], "not an object"),
        (200, {"decision_id": "x", "arm": "incumbent", "action": "teleport"}, "world action"),
        (200, {"decision_id": "x", "arm": "both", "action": "none"}, "arm"),
    ],
)
async def test_failed_or_unusable_decisions_are_errors_without_feedback(
    status: int, body: Any, message: str
) -> None:
    fake = FakeGateway(decide_status=status, decide_body=body)
    report = await _driver(fake, rate=100, duration=0.1).run()
    assert report.errors == report.sent == 10
    assert report.last_error is not None
    assert message in report.last_error
    assert fake.feedback_posts == 0


async def test_refused_feedback_is_counted_per_arm() -> None:
    fake = FakeGateway(feedback_status=409)
    report = await _driver(fake, rate=100, duration=0.1).run()
    errors = sum(arm.feedback_errors for arm in report.arms.values())
    assert errors == fake.feedback_posts == 10
    assert sum(arm.rewarded for arm in report.arms.values()) == 0
    assert report.last_error is not None
    assert "409" in report.last_error


async def test_a_gateway_too_slow_for_the_rate_makes_it_skip_not_burst() -> None:
    fake = FakeGateway(delay=0.25)
    driver = _driver(fake, rate=50, duration=1.5, concurrency=1, max_lag=0.2)
    started = time.monotonic()
    report = await driver.run()
    assert report.sent + report.skipped == 75  # every due visit is sent or counted as skipped
    assert report.skipped > 50
    assert report.sent <= math.ceil(1.5 / 0.25) + 1  # one request in flight at a time
    # after the last visit: its decide, the feedback queued for the one slot, and some slack
    assert time.monotonic() - started < 1.5 + 1.5


async def test_cancelling_stops_at_once_and_leaves_nothing_running() -> None:
    fake = FakeGateway(delay=0.05)
    driver = _driver(fake, rate=200, duration=None, reward_delay=5.0)
    task = asyncio.create_task(driver.run())
    await wait_until(lambda: driver.report.decisions >= 20, timeout=10, what="20 decisions")
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0  # not after the 5 s reward delay
    assert driver.in_flight == 0
    assert driver.report.sent >= 20
    assert fake.feedback_posts == 0  # the delayed rewards were abandoned with the run


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0.0}, "rate is 0.0"),
        ({"rate": math.nan}, "rate is nan"),
        ({"duration": -1.0}, "duration is -1.0"),
        ({"units": 0}, "at least 1"),
        ({"reward_delay": -1.0}, "reward_delay"),
    ],
)
def test_a_config_that_cannot_run_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriveConfig(GATEWAY, "offers", scenario("healthy"), **options)
