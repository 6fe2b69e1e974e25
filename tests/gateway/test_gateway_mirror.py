"""Shadow with the batched mirror (`--shadow-mirror batched`, gateway.mirror), over real servers.

The incumbent 41 always answers `none`; the candidate 42 answers `discount_10`, or the blocked
`discount_90` when the context says `risky: 1` (tests/gateway/artifacts). The decide answer
comes from the incumbent alone; the candidate's decisions reach the metrics when its batch
answers, which the tests wait for (bounded), never sleep for.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from activities.contracts import Route
from gateway.mirror import Mirror, ShadowMirror
from runtime.processes import free_port
from tests.gateway.servers import GatewayServer, PolicyServer
from tests.helpers.waiting import wait_until

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TARGET = "offers"
BLOCKED = "discount_90"
SAFE = {"basket": 30.0, "risky": 0.0}
RISKY = {"basket": 30.0, "risky": 1.0}


def _shadow(incumbent: PolicyServer, candidate: dict[str, str]) -> dict[str, Any]:
    return {
        "rollout_id": "rollout-offers/run-1",
        "generation": 1,
        "incumbent": incumbent.as_version(),
        "candidate": candidate,
        "mode": "shadow",
        "percent": 0.0,
        "scope": None,
        "guardrails": {"blocked_actions": [BLOCKED]},
    }


async def _metric(
    http: httpx.AsyncClient, gateway: GatewayServer, name: str, **labels: str
) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    text = (await http.get(f"{gateway.control_url}/metrics", headers=gateway.auth)).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def _decide(
    http: httpx.AsyncClient, gateway: GatewayServer, unit: str, context: dict[str, float]
) -> dict[str, Any]:
    response = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide",
        json={"unit_id": unit, "context": context, "attributes": {}},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_the_candidates_decisions_are_recorded_when_their_batch_answers(
    http: httpx.AsyncClient, incumbent: PolicyServer, candidate: PolicyServer
) -> None:
    with GatewayServer([incumbent, candidate], shadow_mirror="batched") as gateway:
        route = _shadow(incumbent, candidate.as_version())
        put = await http.put(
            f"{gateway.control_url}/v1/targets/{TARGET}/route", json=route, headers=gateway.auth
        )
        assert put.status_code == 200, put.text
        contexts = [SAFE] * 5 + [RISKY]
        answers = await asyncio.gather(
            *(_decide(http, gateway, f"user-{n}", c) for n, c in enumerate(contexts))
        )
        for answer in answers:  # the incumbent's, answered before the candidate was asked
            assert (answer["action"], answer["arm"], answer["version"], answer["mode"]) == (
                "none",
                "incumbent",
                "41",
                "shadow",
            )
            assert answer["shadow_action"] is None
            assert answer["guardrail"] is None

        mirrored = {"target": TARGET, "arm": "candidate", "version": "42", "mode": "shadow"}

        async def all_mirrored() -> bool:
            pairs = await _metric(http, gateway, "lockgate_shadow_pairs_total")
            return pairs == 6

        await wait_until(all_mirrored, timeout=10, interval=0.02, what="6 shadow pairs")
        decisions = "lockgate_decisions_total"
        assert await _metric(http, gateway, decisions, **mirrored, action="discount_10") == 5
        assert await _metric(http, gateway, decisions, **mirrored, action=BLOCKED) == 1
        assert await _metric(http, gateway, decisions, arm="incumbent", mode="shadow") == 6
        assert await _metric(http, gateway, "lockgate_shadow_agreements_total", agree="false") == 6
        violations = "lockgate_guardrail_violations_total"
        assert await _metric(http, gateway, violations, version="42", guardrail=BLOCKED) == 1
        interventions = "lockgate_guardrail_interventions_total"
        assert await _metric(http, gateway, interventions, guardrail=BLOCKED) == 1
        # one latency per batch call (at most one per decision), and no error, no drop
        calls = await _metric(http, gateway, "lockgate_policy_latency_seconds_count", **mirrored)
        assert 1 <= calls <= 6
        assert await _metric(http, gateway, "lockgate_decision_errors_total") == 0
        assert await _metric(http, gateway, "lockgate_shadow_mirrors_dropped_total") == 0


async def test_a_candidate_that_is_down_counts_an_error_per_mirror_and_serves_on(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with GatewayServer([incumbent, down], shadow_mirror="batched") as gateway:
        route = _shadow(incumbent, {"version": "42", "uri": down})
        put = await http.put(
            f"{gateway.control_url}/v1/targets/{TARGET}/route", json=route, headers=gateway.auth
        )
        assert put.status_code == 200, put.text
        for n in range(3):
            assert (await _decide(http, gateway, f"user-{n}", SAFE))["action"] == "none"

        async def all_failed() -> bool:
            errors = await _metric(
                http, gateway, "lockgate_decision_errors_total", arm="candidate", version="42"
            )
            return errors == 3

        await wait_until(all_failed, timeout=10, interval=0.02, what="3 candidate errors")
        assert await _metric(http, gateway, "lockgate_shadow_pairs_total") == 0


async def test_a_context_the_candidate_refuses_is_an_error_and_the_others_stand(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    # the candidate 42, needing one more feature than the incumbent
    artifact = json.loads((ARTIFACTS / "offers-42.json").read_text(encoding="utf-8"))
    artifact["features"].append("loyalty")
    artifact["weights"] = [[*row, 0.0] for row in artifact["weights"]]
    with (
        PolicyServer(artifact) as candidate,
        GatewayServer([incumbent, candidate], shadow_mirror="batched") as gateway,
    ):
        route = _shadow(incumbent, candidate.as_version())
        put = await http.put(
            f"{gateway.control_url}/v1/targets/{TARGET}/route", json=route, headers=gateway.auth
        )
        assert put.status_code == 200, put.text
        await asyncio.gather(
            _decide(http, gateway, "user-1", {**SAFE, "loyalty": 1.0}),
            _decide(http, gateway, "user-2", SAFE),  # no loyalty: the candidate refuses it
        )

        async def both_judged() -> bool:
            pairs = await _metric(http, gateway, "lockgate_shadow_pairs_total")
            errors = await _metric(http, gateway, "lockgate_decision_errors_total")
            return pairs == 1 and errors == 1

        await wait_until(both_judged, timeout=10, interval=0.02, what="one pair, one error")


def _mirror(target: str = TARGET) -> Mirror:
    route = Route.model_validate(
        {
            "rollout_id": "r/1",
            "generation": 1,
            "incumbent": {"version": "41", "uri": "http://127.0.0.1:1"},
            "candidate": {"version": "42", "uri": "http://127.0.0.1:2"},
            "mode": "shadow",
            "percent": 0.0,
        }
    )
    assert route.candidate is not None
    return Mirror(target, route, route.candidate, {"x": 1.0}, "none")


async def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    release = asyncio.Event()
    sent: list[int] = []
    dropped: list[str] = []

    async def send(batch: list[Mirror]) -> None:
        await release.wait()
        sent.append(len(batch))

    mirror = ShadowMirror(send, dropped.append, capacity=2, max_batch=10, gather=0)
    assert mirror.offer(_mirror())
    assert mirror.offer(_mirror())
    assert not mirror.offer(_mirror("ranker"))  # full: refused at once, and counted
    assert dropped == ["ranker"]
    assert len(mirror) == 2
    release.set()
    await wait_until(lambda: sent == [2], timeout=5, interval=0.01, what="one batch of two")
    assert mirror.offer(_mirror())  # room again once the batch left
    await wait_until(lambda: sent == [2, 1], timeout=5, interval=0.01, what="a batch of one")
    await mirror.aclose()


async def test_batches_are_per_target_and_candidate_and_bounded() -> None:
    sent: list[tuple[str, str, int]] = []

    async def send(batch: list[Mirror]) -> None:
        assert len({(m.target, m.candidate.uri, m.candidate.version) for m in batch}) == 1
        sent.append((batch[0].target, batch[0].candidate.version, len(batch)))

    mirror = ShadowMirror(send, lambda target: None, capacity=100, max_batch=4, gather=0)
    for n in range(6):
        mirror.offer(_mirror("offers" if n % 2 else "ranker"))
    await wait_until(
        lambda: sum(size for _, _, size in sent) == 6, timeout=5, interval=0.01, what="all sent"
    )
    assert max(size for _, _, size in sent) <= 4
    assert {target for target, _, _ in sent} == {"offers", "ranker"}
    await mirror.aclose()


async def test_the_policy_servers_sampling_batch_decides_as_the_single_form(
    http: httpx.AsyncClient,
) -> None:
    contexts = [SAFE, RISKY, {"basket": 30.0}, SAFE]
    with PolicyServer(ARTIFACTS / "offers-42.json", seed=3) as server:
        batch = await http.post(f"{server.url}/act", json={"contexts": contexts, "sample": True})
        assert batch.status_code == 200, batch.text
        body = batch.json()
    assert body["version"] == "42"
    decisions = body["decisions"]
    assert [d.get("action") for d in decisions] == ["discount_10", BLOCKED, None, "discount_10"]
    assert "risky" in decisions[2]["detail"]  # the refused context, named; the others stand
    with PolicyServer(ARTIFACTS / "offers-42.json", seed=3) as server:
        singles = [await http.post(f"{server.url}/act", json={"context": c}) for c in contexts]
    assert [s.json().get("action") for s in singles] == [d.get("action") for d in decisions]
    assert singles[2].status_code == 422
    # without `sample`, the batch form still scores: probabilities, no action
    with PolicyServer(ARTIFACTS / "offers-42.json", seed=3) as server:
        scored = await http.post(f"{server.url}/act", json={"contexts": [SAFE]})
    assert set(scored.json()) == {"probabilities", "version"}


def test_an_unknown_shadow_mirror_is_refused() -> None:
    with pytest.raises(ValueError, match="sync, batched"):
        GatewayServer([], shadow_mirror="later")


def test_the_mirror_queue_is_bounded_by_a_positive_number() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GatewayServer([], shadow_mirror="batched", mirror_queue=0)
