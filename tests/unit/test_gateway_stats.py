"""Windowed stats and their query language (gateway.stats), on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.stats import Stat, StatsQuery, StatsQueryError, WindowedStats, parse_stats_query


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stats(clock: Clock) -> WindowedStats:
    return WindowedStats(retention=3600, clock=clock)


def _ask(stats: WindowedStats, text: str) -> float | None:
    return stats.answer(parse_stats_query(text))


# ------------------------------------------------------------------------------ the language


def test_a_full_query_is_parsed() -> None:
    query = parse_stats_query("mean_reward target=offers version=42 window=90s min_samples=200")
    assert query == StatsQuery(Stat.MEAN_REWARD, "offers", "42", window=90.0, min_samples=200)


def test_the_window_defaults_to_a_minute_and_takes_any_spec_duration() -> None:
    assert parse_stats_query("decisions target=t version=v").window == 60.0
    assert parse_stats_query("decisions target=t version=v window=1h30m").window == 5400.0
    assert parse_stats_query("decisions  version=v\ttarget=t window=500ms").window == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty query"),
        ("p99 target=t version=v", "unknown stat 'p99'.*error_rate, mean_reward"),
        ("error_rate target=t", "missing version"),
        ("error_rate version=v", "missing target"),
        ("error_rate target=t version=v region=eu", "unknown key 'region'"),
        ("error_rate target=t target=u version=v", "target is given twice"),
        ("error_rate target=t version=v window", "'window' is not key=value"),
        ("error_rate target=t version=v window=90", "window: '90' is not a duration"),
        ("error_rate target=t version=v window=0s", "longer than zero"),
        ("error_rate target=t version=v min_samples=-3", "min_samples must be a whole number"),
    ],
)
def test_a_query_it_cannot_answer_is_refused_saying_how_to_write_it(
    text: str, message: str
) -> None:
    with pytest.raises(StatsQueryError, match=message):
        parse_stats_query(text)


# ------------------------------------------------------------------------------ the numbers


@pytest.mark.parametrize("stat", list(Stat))
def test_no_traffic_is_no_data_never_zero(stats: WindowedStats, stat: Stat) -> None:
    field = " field=amount" if stat is Stat.ACTION_VALUE else ""
    assert _ask(stats, f"{stat} target=offers version=42{field}") is None


def test_error_rate_is_failed_calls_over_all_calls(stats: WindowedStats) -> None:
    for _ in range(9):
        stats.decision("offers", "42")
    stats.error("offers", "42")
    assert _ask(stats, "error_rate target=offers version=42") == pytest.approx(0.1)
    assert _ask(stats, "decisions target=offers version=42") == 9
    assert _ask(stats, "errors target=offers version=42") == 1


def test_a_version_that_only_fails_has_an_error_rate_of_one(stats: WindowedStats) -> None:
    stats.error("offers", "42")
    assert _ask(stats, "error_rate target=offers version=42") == 1.0


def test_counts_are_zero_not_null_once_the_version_has_traffic(stats: WindowedStats) -> None:
    stats.decision("offers", "42")
    assert _ask(stats, "guardrail_violations target=offers version=42") == 0
    assert _ask(stats, "rewarded target=offers version=42") == 0
    assert _ask(stats, "reward_sum target=offers version=42") == 0
    # but a mean of no rewards is still no data
    assert _ask(stats, "mean_reward target=offers version=42") is None


def test_reward_stats_sum_the_rewards_of_the_window(stats: WindowedStats) -> None:
    for reward in [1.0, 0.0, 2.0, 3.0]:
        stats.decision("offers", "42")
        stats.reward("offers", "42", reward)
    assert _ask(stats, "mean_reward target=offers version=42") == pytest.approx(1.5)
    assert _ask(stats, "reward_sum target=offers version=42") == pytest.approx(6.0)
    assert _ask(stats, "reward_squares target=offers version=42") == pytest.approx(14.0)
    assert _ask(stats, "rewarded target=offers version=42") == 4


def test_guardrail_violations_are_counted(stats: WindowedStats) -> None:
    stats.decision("offers", "42")
    stats.violation("offers", "42")
    stats.violation("offers", "42")
    assert _ask(stats, "guardrail_violations target=offers version=42") == 2


def test_versions_and_targets_are_kept_apart(stats: WindowedStats) -> None:
    stats.error("offers", "42")
    stats.decision("offers", "41")
    stats.decision("ranker", "42")
    assert _ask(stats, "error_rate target=offers version=41") == 0.0
    assert _ask(stats, "error_rate target=ranker version=42") == 0.0
    assert _ask(stats, "error_rate target=offers version=42") == 1.0


def test_only_the_window_counts(stats: WindowedStats, clock: Clock) -> None:
    stats.error("offers", "42")  # t = 1000
    clock.now += 30
    stats.decision("offers", "42")  # t = 1030
    clock.now += 20  # t = 1050: the error is 50s old
    assert _ask(stats, "error_rate target=offers version=42 window=60s") == pytest.approx(0.5)
    assert _ask(stats, "error_rate target=offers version=42 window=40s") == 0.0
    clock.now += 50  # t = 1100: everything is older than 60s
    assert _ask(stats, "error_rate target=offers version=42 window=60s") is None
    assert _ask(stats, "error_rate target=offers version=42 window=2m") == pytest.approx(0.5)


def test_min_samples_holds_the_answer_until_there_is_enough_evidence(
    stats: WindowedStats,
) -> None:
    for _ in range(199):
        stats.decision("offers", "42")
        stats.reward("offers", "42", 1.0)
    query = "mean_reward target=offers version=42 min_samples=200"
    assert _ask(stats, query) is None
    stats.reward("offers", "42", 0.0)
    assert _ask(stats, query) == pytest.approx(199 / 200)
    assert _ask(stats, "error_rate target=offers version=42 min_samples=500") is None


def test_a_window_longer_than_the_retention_is_refused(stats: WindowedStats) -> None:
    with pytest.raises(StatsQueryError, match="longer than the 3600s of history"):
        _ask(stats, "decisions target=offers version=42 window=2h")


def test_history_older_than_the_retention_is_dropped(stats: WindowedStats, clock: Clock) -> None:
    stats.decision("offers", "42")
    clock.now += 3601
    stats.error("offers", "42")  # writing drops the expired second
    assert _ask(stats, "decisions target=offers version=42 window=1h") == 0
    assert _ask(stats, "errors target=offers version=42 window=1h") == 1
