"""The gateway's admission rules (gateway.admission): generations, policy servers, targets,
rewards. The service tests replay the attacks; these pin each rule's edges."""

from __future__ import annotations

import math

import pytest

from activities.contracts import Route, RouteMode
from gateway.admission import (
    DEFAULT_REWARD_RANGE,
    MAX_GENERATION,
    PolicyServers,
    RewardRange,
    RouteRefusedError,
    RouteRules,
    normalize_policy_uri,
    valid_target,
)
from rollout_specs import PolicyVersion

NOW = 1_700_000_000.0  # seconds since the epoch
NOW_MS = int(NOW * 1000)
INCUMBENT = "http://127.0.0.1:8101"
CANDIDATE = "http://127.0.0.1:8102"


def _rules(lead: float = 24 * 3600.0) -> RouteRules:
    return RouteRules(
        PolicyServers([INCUMBENT, CANDIDATE]), max_generation_lead=lead, clock=lambda: NOW
    )


def _route(
    generation: int = NOW_MS, incumbent: str | None = INCUMBENT, candidate: str | None = CANDIDATE
) -> Route:
    return Route(
        rollout_id="rollout-offers/1",
        generation=generation,
        incumbent=PolicyVersion(version="41", uri=incumbent),
        candidate=PolicyVersion(version="42", uri=candidate),
        mode=RouteMode.SPLIT,
        percent=10,
    )


@pytest.mark.parametrize(
    "generation",
    [1, NOW_MS, NOW_MS + 24 * 3600 * 1000],
    ids=["1", "now", "a day ahead"],
)
def test_generations_up_to_the_lead_are_accepted(generation: int) -> None:
    _rules().check("offers", _route(generation))


@pytest.mark.parametrize(
    ("generation", "message"),
    [
        (NOW_MS + 24 * 3600 * 1000 + 1, "ahead of this gateway's clock"),
        (MAX_GENERATION, "ahead of this gateway's clock"),
        (MAX_GENERATION + 1, "does not fit in 64 bits"),
        (10**30, "does not fit in 64 bits"),
    ],
)
def test_generations_beyond_the_lead_or_int64_are_refused(generation: int, message: str) -> None:
    with pytest.raises(RouteRefusedError, match=message):
        _rules().check("offers", _route(generation))


def test_a_huge_generation_is_not_printed_in_full() -> None:
    with pytest.raises(RouteRefusedError) as refused:
        _rules().check("offers", _route(10**4000))
    assert len(str(refused.value)) < 400


def test_the_lead_follows_the_clock() -> None:
    clock = [NOW]
    rules = RouteRules(PolicyServers([INCUMBENT]), max_generation_lead=60, clock=lambda: clock[0])
    later = _route(NOW_MS + 120_000, candidate=None)
    with pytest.raises(RouteRefusedError):
        rules.check("offers", later)
    clock[0] += 61
    rules.check("offers", later)


@pytest.mark.parametrize(
    ("incumbent", "candidate", "role"),
    [
        ("http://169.254.169.254/latest/meta-data", CANDIDATE, "incumbent"),
        (INCUMBENT, "http://127.0.0.1:9999", "candidate"),
        (INCUMBENT, "file:///etc/passwd", "candidate"),
        (INCUMBENT, "http://127.0.0.1:8102@evil.example", "candidate"),
        (INCUMBENT, "http://127.0.0.1:8102/?redirect=http://evil", "candidate"),
    ],
)
def test_a_policy_uri_outside_the_allow_list_is_refused(
    incumbent: str, candidate: str, role: str
) -> None:
    with pytest.raises(RouteRefusedError, match=rf"{role}\.uri .* is not one of"):
        _rules().check("offers", _route(incumbent=incumbent, candidate=candidate))


def test_a_policy_version_without_a_uri_names_no_server_and_passes() -> None:
    # nothing can be fetched for it; lockgate's spec may leave the incumbent's uri out
    _rules().check("offers", _route(incumbent=None, candidate=None))


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("http://127.0.0.1:8101", "http://127.0.0.1:8101"),
        ("http://127.0.0.1:8101/", "http://127.0.0.1:8101"),
        ("HTTP://127.0.0.1:8101", "http://127.0.0.1:8101"),
        ("http://Policy.Internal", "http://policy.internal:80"),
        ("https://policy.internal/v2/", "https://policy.internal:443/v2"),
        ("http://[::1]:8101", "http://[::1]:8101"),
        ("http://user:secret@127.0.0.1:8101", None),
        ("http://127.0.0.1:8101?x=1", None),
        ("http://127.0.0.1:8101#frag", None),
        ("http://127.0.0.1:8101?", None),
        ("ftp://127.0.0.1", None),
        ("127.0.0.1:8101", None),
        ("http://", None),
        ("http://127.0.0.1:99999", None),
    ],
)
def test_policy_uris_are_normalized_or_refused(uri: str, normal: str | None) -> None:
    assert normalize_policy_uri(uri) == normal


def test_an_allow_list_entry_must_itself_be_a_plain_base_url() -> None:
    with pytest.raises(ValueError, match="not a plain http"):
        PolicyServers(["http://user:pw@127.0.0.1:8101"])
    assert PolicyServers([]).describe().startswith("none")
    assert len(PolicyServers([INCUMBENT, INCUMBENT + "/"])) == 1


@pytest.mark.parametrize(
    ("target", "valid"),
    [
        ("offers", True),
        ("offers-eu-2", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("Offers", False),
        ("offers_v2", False),
        ("-offers", False),
        ("offers-", False),
        ("", False),
        ("../etc", False),
    ],
)
def test_targets_are_lockgate_target_names(target: str, valid: bool) -> None:
    assert valid_target(target) is valid
    if not valid:
        with pytest.raises(RouteRefusedError, match="not a lockgate target name"):
            _rules().check(target, _route())


def test_the_default_reward_range_is_the_simulators() -> None:
    # the simulator's rewards are conversions: 0.0 or 1.0
    assert (DEFAULT_REWARD_RANGE.low, DEFAULT_REWARD_RANGE.high) == (0.0, 1.0)
    assert str(DEFAULT_REWARD_RANGE) == "[0, 1]"


@pytest.mark.parametrize(
    ("reward", "inside"),
    [(0.0, True), (1.0, True), (0.5, True), (-0.0, True), (1.0000001, False), (-1e-12, False),
     (1000.0, False), (1e308, False), (math.inf, False), (-math.inf, False), (math.nan, False)],
)  # fmt: skip
def test_rewards_are_finite_and_inside_the_range(reward: float, inside: bool) -> None:
    assert DEFAULT_REWARD_RANGE.contains(reward) is inside


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1,1", "cannot decrease"),
        ("1,1", "is empty"),
        ("2,1", "is empty"),
        ("0,inf", "finite"),
        ("nan,1", "finite"),
        ("0,1e10", "at most"),
        ("0", "LOW,HIGH"),
        ("0,1,2", "LOW,HIGH"),
        ("zero,one", "two numbers"),
    ],
)
def test_a_bad_reward_range_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RewardRange.parse(text)


def test_a_reward_range_parses() -> None:
    assert RewardRange.parse(" 0 , 5 ") == RewardRange(0.0, 5.0)
