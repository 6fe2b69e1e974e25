"""The routing table's generation rules and its state file (gateway.routing_table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activities.contracts import Route, RouteMode
from gateway.admission import PolicyServers, RouteRefusedError, RouteRules
from gateway.routing_table import (
    RouteConflictError,
    RoutingTable,
    StateFileError,
    TooManyTargetsError,
    conflict,
    too_many_targets,
)
from rollout_specs import Guardrails, PolicyVersion


def _route(generation: int, percent: float = 10.0, rollout_id: str = "rollout-offers/1") -> Route:
    return Route(
        rollout_id=rollout_id,
        generation=generation,
        incumbent=PolicyVersion(version="41", uri="http://127.0.0.1:8101"),
        candidate=PolicyVersion(version="42", uri="http://127.0.0.1:8102"),
        mode=RouteMode.SPLIT,
        percent=percent,
        scope={"region": ["eu-west-1"]},
        guardrails=Guardrails(blocked_actions=["discount_90"]),
    )


def test_a_first_route_is_applied() -> None:
    table = RoutingTable()
    result = table.put("offers", _route(1))
    assert result.changed
    assert table.get("offers") == _route(1)
    assert table.get("ranker") is None


def test_a_newer_generation_replaces_the_route() -> None:
    table = RoutingTable()
    table.put("offers", _route(1, percent=10))
    result = table.put("offers", _route(2, percent=50))
    assert result.changed
    assert table.get("offers") == _route(2, percent=50)


def test_the_same_generation_again_is_acknowledged_without_change() -> None:
    table = RoutingTable()
    table.put("offers", _route(5, percent=10))
    again = table.put("offers", _route(5, percent=10))
    assert not again.changed
    assert again.route == _route(5, percent=10)
    # even if the retry's body differs, the held route stands: a generation is written once
    different = table.put("offers", _route(5, percent=90))
    assert not different.changed
    assert different.route == table.get("offers") == _route(5, percent=10)


def test_an_older_generation_is_refused_naming_the_holder() -> None:
    table = RoutingTable()
    table.put("offers", _route(7, rollout_id="rollout-offers/run-b"))
    with pytest.raises(RouteConflictError) as refused:
        table.put("offers", _route(6, rollout_id="rollout-offers/run-a"))
    message = str(refused.value)
    assert "holds generation 7" in message
    assert "rollout-offers/run-b" in message
    assert "generation 6" in message
    assert table.get("offers") == _route(7, rollout_id="rollout-offers/run-b")


def test_every_store_refuses_in_the_same_words() -> None:
    """The shared store (gateway.route_store) raises these too: one wording for lockgate's log."""
    table = RoutingTable(max_targets=1)
    held = table.put("offers", _route(7, rollout_id="rollout-offers/run-b")).route
    with pytest.raises(RouteConflictError) as refused:
        table.put("offers", _route(6))
    assert str(refused.value) == str(conflict("offers", held, _route(6)))
    with pytest.raises(TooManyTargetsError) as full:
        table.put("ranker", _route(1))
    assert str(full.value) == str(too_many_targets(1, "ranker"))


def test_targets_are_independent() -> None:
    table = RoutingTable()
    table.put("offers", _route(9))
    assert table.put("ranker", _route(1)).changed
    assert table.targets() == ["offers", "ranker"]


def test_a_new_table_on_the_state_file_restores_every_route(tmp_path: Path) -> None:
    state = tmp_path / "state" / "routes.json"  # the directory is created on first write
    table = RoutingTable(state)
    table.put("offers", _route(3, percent=25))
    table.put("ranker", _route(1))
    restored = RoutingTable(state)
    assert restored.get("offers") == _route(3, percent=25)
    assert restored.get("ranker") == _route(1)
    # and the generation rules carry over the restart
    with pytest.raises(RouteConflictError):
        restored.put("offers", _route(2))


def test_the_state_file_is_replaced_whole_with_no_temporary_file_left(tmp_path: Path) -> None:
    state = tmp_path / "routes.json"
    table = RoutingTable(state)
    for generation in range(1, 6):
        table.put("offers", _route(generation, percent=generation * 10))
        stored = json.loads(state.read_text(encoding="utf-8"))
        assert stored["routes"]["offers"]["generation"] == generation
    assert [p.name for p in tmp_path.iterdir()] == ["routes.json"]


def test_an_unchanged_put_does_not_rewrite_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "routes.json"
    table = RoutingTable(state)
    table.put("offers", _route(1))
    state.write_text(state.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    marker = state.read_bytes()
    table.put("offers", _route(1))
    assert state.read_bytes() == marker


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{half a file", "cannot read"),
        ('{"some": "other file"}', "is not a gateway state file"),
        ('{"format": 1, "routes": {"offers": {"generation": 0}}}', "route of target offers"),
    ],
)
def test_a_state_file_it_cannot_trust_refuses_to_start(
    tmp_path: Path, content: str, message: str
) -> None:
    state = tmp_path / "routes.json"
    state.write_text(content, encoding="utf-8")
    with pytest.raises(StateFileError, match=message):
        RoutingTable(state)


def test_a_route_that_cannot_be_persisted_is_not_applied(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    table = RoutingTable(blocker / "routes.json")
    with pytest.raises(StateFileError, match="cannot write"):
        table.put("offers", _route(1))
    assert table.get("offers") is None


def _rules(now_ms: int = 1_700_000_000_000) -> RouteRules:
    servers = PolicyServers(["http://127.0.0.1:8101", "http://127.0.0.1:8102"])
    return RouteRules(servers, clock=lambda: now_ms / 1000)


def test_a_route_the_rules_refuse_is_never_held(tmp_path: Path) -> None:
    state = tmp_path / "routes.json"
    table = RoutingTable(state, rules=_rules())
    table.put("offers", _route(1))
    with pytest.raises(RouteRefusedError, match="does not fit in 64 bits"):
        table.put("offers", _route(10**30))
    with pytest.raises(RouteRefusedError, match="not a lockgate target name"):
        table.put("Offers", _route(1))
    assert table.get("offers") == _route(1)
    assert table.targets() == ["offers"]
    assert json.loads(state.read_text(encoding="utf-8"))["routes"]["offers"]["generation"] == 1


def test_a_new_target_beyond_the_cap_is_refused_and_held_ones_still_change() -> None:
    table = RoutingTable(max_targets=2)
    table.put("offers", _route(1))
    table.put("ranker", _route(1))
    with pytest.raises(TooManyTargetsError, match="already routes 2 targets"):
        table.put("pricing", _route(1))
    assert table.put("offers", _route(2)).changed
    assert table.targets() == ["offers", "ranker"]


def test_a_state_file_holding_a_route_the_rules_refuse_fails_the_start(tmp_path: Path) -> None:
    """A state file written before the rules (a taken-over gateway's) cannot bring the stray
    route back: the start fails and names it."""
    state = tmp_path / "routes.json"
    RoutingTable(state).put("offers", _route(10**30))
    with pytest.raises(StateFileError, match="route of target offers would be refused now"):
        RoutingTable(state, rules=_rules())
    foreign = tmp_path / "foreign.json"
    stray = _route(1).model_copy(
        update={"incumbent": PolicyVersion(version="41", uri="http://10.0.0.7:80")}
    )
    RoutingTable(foreign).put("offers", stray)
    with pytest.raises(StateFileError, match="not one of this gateway's policy servers"):
        RoutingTable(foreign, rules=_rules())
