"""One-number answers over a sliding time window: monitoring for when there is no Prometheus.

lockgate's `http` monitoring provider sends a query and reads `{"value": number | null}`. The
gateway keeps per (target, version) counts in one-second buckets and answers queries like

    error_rate target=offers version=42 window=90s
    mean_reward target=offers version=42 window=5m min_samples=200

Stats: `error_rate` (failed policy calls / all policy calls), `mean_reward` (reward sum /
rewarded decisions), and the raw sums `decisions`, `errors`, `guardrail_violations`,
`interventions` (decisions of the version a guardrail overruled, or in shadow would have),
`reward_sum`, `reward_squares`, `rewarded` (for statistics computed elsewhere), and
`action_value` with `field=<parameter>` (the sum of that parameter over the version's served
decisions: a spend; negative values are not added, as in the Prometheus counter). `window` is a
duration (default 60s; `90s`, `5m`, `1h30m`); `min_samples` (default: no minimum) is the fewest
samples the stat needs before it answers: policy calls for the per-call stats, rewarded
decisions for the reward stats.

No data is `None` (JSON null), never 0: a version with no traffic in the window has no error
rate, and lockgate must hold the stage rather than read a comforting zero.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from rollout_specs import parse_duration

__all__ = ["Stat", "StatsQuery", "StatsQueryError", "WindowedStats", "parse_stats_query"]

DEFAULT_WINDOW = 60.0
DEFAULT_RETENTION = 24 * 3600.0


class Stat(StrEnum):
    """The numbers `/v1/stats` can answer."""

    ERROR_RATE = "error_rate"
    MEAN_REWARD = "mean_reward"
    DECISIONS = "decisions"
    ERRORS = "errors"
    GUARDRAIL_VIOLATIONS = "guardrail_violations"
    INTERVENTIONS = "interventions"
    ACTION_VALUE = "action_value"
    REWARD_SUM = "reward_sum"
    REWARD_SQUARES = "reward_squares"
    REWARDED = "rewarded"


class StatsQueryError(ValueError):
    """A query that cannot be answered as written; the message says how to write it."""


_USAGE = (
    "write `<stat> target=<target> version=<version> [window=60s] [min_samples=N]` "
    f"with <stat> one of {', '.join(s.value for s in Stat)} "
    "(action_value also takes field=<parameter>)"
)


@dataclass(frozen=True)
class StatsQuery:
    """A parsed query: which number, of which policy version, over how many seconds."""

    stat: Stat
    target: str
    version: str
    window: float = DEFAULT_WINDOW
    min_samples: int = 0
    field: str | None = None
    """The parameter `action_value` sums (only that stat takes one)."""


def parse_stats_query(text: str) -> StatsQuery:
    """Parse the query text of `GET /v1/stats?query=...`.

    Raises:
        StatsQueryError: Unknown stat or key, a repeated or missing key, a bad window.
    """
    words = text.split()
    if not words:
        raise StatsQueryError(f"empty query; {_USAGE}")
    try:
        stat = Stat(words[0])
    except ValueError:
        raise StatsQueryError(f"unknown stat {words[0]!r}; {_USAGE}") from None
    fields: dict[str, str] = {}
    for word in words[1:]:
        key, equals, value = word.partition("=")
        if not equals or not key or not value:
            raise StatsQueryError(f"{word!r} is not key=value; {_USAGE}")
        if key not in {"target", "version", "window", "min_samples", "field"}:
            raise StatsQueryError(f"unknown key {key!r}; {_USAGE}")
        if key in fields:
            raise StatsQueryError(f"{key} is given twice; {_USAGE}")
        fields[key] = value
    missing = [key for key in ("target", "version") if key not in fields]
    if stat is Stat.ACTION_VALUE and "field" not in fields:
        missing.append("field")
    if missing:
        raise StatsQueryError(f"missing {' and '.join(missing)}; {_USAGE}")
    if stat is not Stat.ACTION_VALUE and "field" in fields:
        raise StatsQueryError(f"only action_value takes a field; {_USAGE}")
    return StatsQuery(
        stat,
        fields["target"],
        fields["version"],
        _window(fields.get("window")),
        _min_samples(fields.get("min_samples")),
        fields.get("field"),
    )


def _window(text: str | None) -> float:
    if text is None:
        return DEFAULT_WINDOW
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise StatsQueryError(f"window: {exc}") from None
    if seconds <= 0:
        raise StatsQueryError(f"window must be longer than zero, not {text!r}")
    return seconds


def _min_samples(text: str | None) -> int:
    if text is None:
        return 0
    if not text.isdigit():
        raise StatsQueryError(f"min_samples must be a whole number, not {text!r}")
    return int(text)


class _Bucket:
    """Everything that happened to one (target, version) within one second."""

    __slots__ = (
        "decisions",
        "errors",
        "guardrail_violations",
        "interventions",
        "reward_squares",
        "reward_sum",
        "rewarded",
        "second",
        "values",
    )

    def __init__(self, second: int) -> None:
        self.second = second
        self.decisions = 0
        self.errors = 0
        self.guardrail_violations = 0
        self.interventions = 0
        self.rewarded = 0
        self.reward_sum = 0.0
        self.reward_squares = 0.0
        self.values: dict[str, float] | None = None  # parameter sums, once there are any


class _Totals:
    """Sums over the buckets of one window."""

    def __init__(self, buckets: list[_Bucket], field: str | None = None) -> None:
        self.decisions = sum(b.decisions for b in buckets)
        self.errors = sum(b.errors for b in buckets)
        self.guardrail_violations = sum(b.guardrail_violations for b in buckets)
        self.interventions = sum(b.interventions for b in buckets)
        self.action_value = (
            sum(b.values.get(field, 0.0) for b in buckets if b.values is not None)
            if field is not None
            else 0.0
        )
        self.rewarded = sum(b.rewarded for b in buckets)
        self.reward_sum = sum(b.reward_sum for b in buckets)
        self.reward_squares = sum(b.reward_squares for b in buckets)

    def value(self, stat: Stat, min_samples: int) -> float | None:
        """The stat, or None when no data (or fewer than `min_samples` samples) backs it."""
        calls = self.decisions + self.errors
        if stat is Stat.ERROR_RATE:
            return self.errors / calls if calls and calls >= min_samples else None
        if stat is Stat.MEAN_REWARD:
            if not self.rewarded or self.rewarded < min_samples:
                return None
            return self.reward_sum / self.rewarded
        if stat in _COUNTED_PER_CALL:
            return float(getattr(self, stat.value)) if calls and calls >= min_samples else None
        # reward sums: a version idle in the window has none; a busy one not yet rewarded has 0
        if (calls == 0 and self.rewarded == 0) or self.rewarded < min_samples:
            return None
        return float(getattr(self, stat.value))


_COUNTED_PER_CALL = frozenset(
    {
        Stat.DECISIONS,
        Stat.ERRORS,
        Stat.GUARDRAIL_VIOLATIONS,
        Stat.INTERVENTIONS,
        Stat.ACTION_VALUE,
    }
)


class WindowedStats:
    """Per (target, version) one-second buckets, kept for `retention` seconds.

    Only seconds with activity have a bucket, so an idle gateway holds nothing, and a busy one
    at most `retention` buckets per version. Times come from `clock` (monotonic by default:
    windows are relative, and a wall-clock step must not empty or double one).
    """

    def __init__(
        self,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retention = retention
        self._clock = clock
        self._series: dict[tuple[str, str], deque[_Bucket]] = {}

    def _bucket(self, target: str, version: str) -> _Bucket:
        second = int(self._clock())
        series = self._series.get((target, version))
        if series is None:
            series = self._series[(target, version)] = deque()
        elif series[-1].second == second:
            return series[-1]
        horizon = second - self.retention
        while series and series[0].second <= horizon:
            series.popleft()
        bucket = _Bucket(second)
        series.append(bucket)
        return bucket

    def decision(self, target: str, version: str) -> None:
        """A policy version took a decision (served, or in shadow would have)."""
        self._bucket(target, version).decisions += 1

    def error(self, target: str, version: str) -> None:
        """A policy version failed to give an action."""
        self._bucket(target, version).errors += 1

    def violation(self, target: str, version: str) -> None:
        """A policy version picked an action the guardrails block."""
        self._bucket(target, version).guardrail_violations += 1

    def intervention(self, target: str, version: str) -> None:
        """A guardrail overruled a decision of a policy version (or in shadow would have)."""
        self._bucket(target, version).interventions += 1

    def action_values(self, target: str, version: str, params: Mapping[str, float]) -> None:
        """A served decision of a policy version had these parameters."""
        bucket = self._bucket(target, version)
        values = bucket.values
        if values is None:
            values = bucket.values = {}
        for field, value in params.items():
            values[field] = values.get(field, 0.0) + value

    def reward(self, target: str, version: str, reward: float) -> None:
        """A decision of a policy version got its reward."""
        bucket = self._bucket(target, version)
        bucket.rewarded += 1
        bucket.reward_sum += reward
        bucket.reward_squares += reward * reward

    def answer(self, query: StatsQuery) -> float | None:
        """The query's number over its window, or None when there is no data.

        Raises:
            StatsQueryError: The window is longer than what is retained, so part of it is gone.
        """
        if query.window > self.retention:
            raise StatsQueryError(
                f"window {query.window:g}s is longer than the {self.retention:g}s of history "
                "this gateway keeps; ask for a shorter window"
            )
        series = self._series.get((query.target, query.version))
        if not series:
            return None
        oldest = int(self._clock()) - query.window  # buckets after it are inside the window
        inside: list[_Bucket] = []
        for bucket in reversed(series):
            if bucket.second <= oldest:
                break
            inside.append(bucket)
        return _Totals(inside, query.field).value(query.stat, query.min_samples)
