"""In-process policies (gateway.in_process): the policy server's decisions, without the hop."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.__main__ import main as gateway_main
from gateway.admission import PolicyServers
from gateway.app import Gateway, create_gateway
from gateway.in_process import (
    REFUSED_REASON,
    InProcessPolicies,
    InProcessPolicy,
    parse_policy_artifact,
)
from gateway.policies import ArtifactError, load_policy
from gateway.policy_client import PolicyClient, PolicyError, policy_http_client
from gateway.policy_server import create_policy_app
from rollout_specs import PolicyVersion

ARTIFACTS = Path(__file__).resolve().parents[2] / "simulator" / "artifacts"
CAPPED = ARTIFACTS / "candidate-capped.json"  # six actions, one with a parameter
SERVER = "http://127.0.0.1:8102"


def _contexts(count: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    features = load_policy(CAPPED).artifact.features
    return [{name: rng.uniform(-1.0, 2.0) for name in features} for _ in range(count)]


def _route(
    incumbent: dict[str, str], candidate: dict[str, str] | None, mode: str
) -> dict[str, Any]:
    """A first-generation route of the offers target, as lockgate would PUT it."""
    return {
        "rollout_id": "rollout-offers/1",
        "generation": 1,
        "incumbent": incumbent,
        "candidate": candidate,
        "mode": mode,
        "percent": 0.0,
        "scope": None,
        "guardrails": {},
    }


def _clients(gateway: Gateway) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """Clients of the gateway's control plane and data plane, in this process."""
    control = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.control), base_url="http://control"
    )
    data = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.data), base_url="http://data"
    )
    return control, data


async def _served_by_the_policy_server(
    path: Path, seed: int, contexts: list[dict[str, float]]
) -> list[tuple[str, dict[str, float] | None]]:
    """What `python -m gateway.policy_server --policy path --seed seed` answers, in order."""
    app = create_policy_app(load_policy(path), seed=seed)
    answers = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://policy"
    ) as client:
        for context in contexts:
            # the body the gateway's policy client sends
            content = json.dumps({"context": context}, separators=(",", ":"))
            document = (await client.post("/act", content=content)).json()
            answers.append((document["action"], document.get("params")))
    return answers


@pytest.mark.parametrize("seed", [7, 12345])
async def test_the_decisions_are_the_policy_servers_for_the_same_seed_and_contexts(
    seed: int,
) -> None:
    contexts = _contexts(500, seed)
    expected = await _served_by_the_policy_server(CAPPED, seed, contexts)
    local = InProcessPolicy(SERVER, load_policy(CAPPED), seed=seed)
    served = [local.act(context) for context in contexts]
    assert [(answer.action, answer.params) for answer in served] == expected
    # the artifact really samples (several actions) and really gives parameters
    assert len({action for action, _ in expected}) >= 3
    assert any(params for _, params in expected)


async def test_the_gateways_client_answers_the_same_in_process_as_over_http() -> None:
    """Through PolicyClient, the path decide takes: the same answers, and no HTTP call."""
    contexts = _contexts(200, 3)
    expected = await _served_by_the_policy_server(CAPPED, 3, contexts)
    policies = InProcessPolicies([(SERVER + "/", CAPPED)], seed=3)  # another spelling

    async with policy_http_client() as http:
        client = PolicyClient(http, PolicyServers(policies.uris), in_process=policies)
        version = PolicyVersion(version="42", uri=SERVER)
        served = [await client.act(version, context) for context in contexts]
        assert not http._idle  # no connection was ever opened: nothing listens at SERVER
    assert [(answer.action, answer.params) for answer in served] == expected


def test_a_context_the_policy_cannot_take_fails_the_call_as_a_422_would() -> None:
    local = InProcessPolicy(SERVER, load_policy(CAPPED), seed=1)
    with pytest.raises(PolicyError) as raised:
        local.act({"recency": 1.0})
    assert raised.value.reason == REFUSED_REASON
    assert "basket_value" in str(raised.value)  # the log line names the missing feature


def test_without_a_seed_each_policy_draws_its_own() -> None:
    contexts = _contexts(200, 5)
    policy = load_policy(CAPPED)
    first = [InProcessPolicy(SERVER, policy).act(c).action for c in contexts]
    second = [InProcessPolicy(SERVER, policy).act(c).action for c in contexts]
    assert first != second


def test_urls_are_matched_under_any_spelling_and_mapped_once() -> None:
    policies = InProcessPolicies([("http://127.0.0.1:8102/", CAPPED)])
    assert policies.uris == ["http://127.0.0.1:8102"]
    assert policies.get("http://127.0.0.1:8102") is not None
    assert policies.get("http://127.0.0.1:8101") is None
    assert policies.get("not a url") is None
    with pytest.raises(ValueError, match="twice"):
        InProcessPolicies([(SERVER, CAPPED), (SERVER + "/", CAPPED)])
    with pytest.raises(ValueError, match="plain http"):
        InProcessPolicies([("file:///tmp/x", CAPPED)])


def test_a_bad_artifact_fails_the_start_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{}", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"broken\.json"):
        InProcessPolicies([(SERVER, broken)])
    long = json.loads(CAPPED.read_text(encoding="utf-8"))
    long["actions"][0] = "x" * 129
    path = tmp_path / "long.json"
    path.write_text(json.dumps(long), encoding="utf-8")
    with pytest.raises(ValueError, match="longer than 128"):
        InProcessPolicies([(SERVER, path)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:8101=offers.json", ("http://127.0.0.1:8101", Path("offers.json"))),
        ("http://h:1/p?a=b=/x/y.json", ("http://h:1/p?a=b", Path("/x/y.json"))),
    ],
)
def test_parse_policy_artifact_splits_at_the_last_equals(
    text: str, expected: tuple[str, Path]
) -> None:
    assert parse_policy_artifact(text) == expected


@pytest.mark.parametrize("text", ["offers.json", "=offers.json", "http://h:1="])
def test_parse_policy_artifact_refuses_what_is_not_url_equals_path(text: str) -> None:
    with pytest.raises(ValueError, match="URL=PATH"):
        parse_policy_artifact(text)


def test_a_url_cannot_be_both_a_policy_server_and_in_process() -> None:
    with pytest.raises(ValueError, match="both"):
        create_gateway(
            policy_uris=[SERVER + "/"],
            in_process=InProcessPolicies([(SERVER, CAPPED)]),
            control_token=None,
            insecure_control_plane=True,
        )


async def test_the_gateway_serves_an_in_process_route_without_any_policy_server() -> None:
    gateway = create_gateway(
        policy_uris=[],
        in_process=InProcessPolicies([(SERVER, CAPPED)], seed=9),
        control_token=None,
        insecure_control_plane=True,
    )
    route = _route({"version": "42", "uri": SERVER}, None, "off")
    control, data = _clients(gateway)
    async with control, data:
        (await control.put("/v1/targets/offers/route", json=route)).raise_for_status()
        context = _contexts(1, 1)[0]
        answer = await data.post(
            "/v1/targets/offers/decide", json={"unit_id": "u-1", "context": context}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "42"
        assert answer.json()["action"] in load_policy(CAPPED).actions
        refused = await data.post(
            "/v1/targets/offers/decide", json={"unit_id": "u-1", "context": {"recency": 1.0}}
        )
        assert refused.status_code == 502
        assert REFUSED_REASON in refused.json()["detail"]


async def test_shadow_and_split_with_in_process_policies() -> None:
    """Shadow asks both in-process policies, one after the other, and answers the incumbent's."""
    candidate = "http://127.0.0.1:8103"
    gateway = create_gateway(
        policy_uris=[],
        in_process=InProcessPolicies([(SERVER, CAPPED), (candidate, ARTIFACTS / "candidate.json")]),
        control_token=None,
        insecure_control_plane=True,
    )
    route = _route({"version": "41", "uri": SERVER}, {"version": "42", "uri": candidate}, "shadow")
    control, data = _clients(gateway)
    async with control, data:
        (await control.put("/v1/targets/offers/route", json=route)).raise_for_status()
        for context in _contexts(20, 2):
            answer = (
                await data.post(
                    "/v1/targets/offers/decide", json={"unit_id": "u-1", "context": context}
                )
            ).json()
            assert (answer["mode"], answer["arm"], answer["version"]) == (
                "shadow",
                "incumbent",
                "41",
            )
            assert answer["shadow_action"] in load_policy(ARTIFACTS / "candidate.json").actions
        route |= {"generation": 2, "mode": "split", "percent": 50.0}
        (await control.put("/v1/targets/offers/route", json=route)).raise_for_status()
        arms = set()
        for unit in range(40):
            answer = await data.post(
                "/v1/targets/offers/decide",
                json={"unit_id": f"u-{unit}", "context": _contexts(1, unit)[0]},
            )
            arms.add(answer.json()["arm"])
        assert arms == {"incumbent", "candidate"}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--insecure-control-plane"], "at least one --policy-uri"),
        (["--insecure-control-plane", "--policy-artifact", "offers.json"], "URL=PATH"),
        (
            ["--insecure-control-plane", "--policy-artifact", f"{SERVER}=/nonexistent.json"],
            "cannot read policy artifact /nonexistent.json",
        ),
        (
            [
                *("--insecure-control-plane", "--policy-uri", SERVER),
                *("--policy-artifact", f"{SERVER}={CAPPED}"),
            ],
            "both a --policy-uri and a --policy-artifact",
        ),
    ],
)
def test_the_command_refuses_what_it_cannot_serve_before_listening(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        gateway_main(["--port", "0", "--control-port", "1", *argv])
    assert raised.value.code == 2
    assert says in capsys.readouterr().err
