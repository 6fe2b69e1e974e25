"""What the gateway accepts from its callers: routes, policy servers, target names and rewards.

Each rule closes a way one request could take the gateway over or forge the evidence lockgate
judges a rollout by:

- **generations** are int64 and at most `max_generation_lead` ahead of the gateway's clock.
  lockgate's generations are workflow-time milliseconds, so a real one is never far in the
  future; a generation of 10**30 would make every later PUT (the rollback included) older, and
  so a 409, forever.
- **policy servers** are the ones the gateway was started with (`--policy-uri`): a route naming
  any other URI is refused before anything is fetched, so the route API cannot be turned into a
  request forgery against whatever the gateway can reach.
- **targets** are lockgate's target slugs, so a target name is a short, safe metric label.
- **rewards** are finite and inside the configured range, so one feedback cannot move a mean by
  orders of magnitude or overflow a sum of squares into infinity.

The rules are pure (a clock is injected) so they are tested without a server.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from activities.contracts import Route
from rollout_specs.durations import shown
from rollout_specs.models import SLUG_PATTERN

__all__ = [
    "DEFAULT_GENERATION_LEAD",
    "DEFAULT_REWARD_RANGE",
    "MAX_GENERATION",
    "PolicyServers",
    "RewardRange",
    "RouteRefusedError",
    "RouteRules",
    "normalize_policy_uri",
    "valid_target",
]

MAX_GENERATION = 2**63 - 1
"""Generations are int64: what every router and database in the chain can store."""
DEFAULT_GENERATION_LEAD = 24 * 3600.0
"""Seconds a generation may lie ahead of the gateway's clock (as milliseconds since the epoch):
a day absorbs any clock skew between lockgate's workers and the gateway."""
MAX_REWARD = 1e9
"""The largest upper bound a reward range may have: its square, summed over a billion
decisions, stays far from float overflow."""

_TARGET = re.compile(SLUG_PATTERN)
_MAX_TARGET_LENGTH = 63


class RouteRefusedError(ValueError):
    """A route the gateway will not hold (HTTP 422); the message says why and what to send."""


def valid_target(target: str) -> bool:
    """Whether `target` is a lockgate target name (a slug of at most 63 characters).

    Target names become metric labels and state-file keys, so anything else is refused rather
    than stored.
    """
    return len(target) <= _MAX_TARGET_LENGTH and _TARGET.match(target) is not None


def normalize_policy_uri(uri: str) -> str | None:
    """`scheme://host:port/path` with the default port spelled out and no trailing slash.

    Two spellings of one policy server (`http://127.0.0.1:8101/` and `http://127.0.0.1:8101`)
    compare equal, and anything that is not a plain http(s) base URL (credentials, a query, a
    fragment, no host) is None, so it can never match the allow-list.
    """
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    if url.userinfo or url.query or url.fragment or uri.rstrip().endswith(("?", "#")):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    if not 0 < port < 65536:
        return None
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}:{port}{url.path.rstrip('/')}"


class PolicyServers:
    """The allow-list of policy servers a route may name, fixed when the gateway starts.

    Args:
        uris: Base URLs of the policy servers, e.g. `http://127.0.0.1:8101`.

    Raises:
        ValueError: A URI is not a plain http(s) base URL.
    """

    def __init__(self, uris: Iterable[str]) -> None:
        allowed: dict[str, str] = {}
        for uri in uris:
            normal = normalize_policy_uri(uri)
            if normal is None:
                raise ValueError(
                    f"policy server {shown(uri)} is not a plain http(s) base URL like "
                    "http://127.0.0.1:8101 (no credentials, query or fragment)"
                )
            allowed[normal] = uri
        self._allowed = allowed

    def allows(self, uri: str) -> bool:
        """Whether `uri` is one of the allowed policy servers (under any spelling)."""
        normal = normalize_policy_uri(uri)
        return normal is not None and normal in self._allowed

    def __len__(self) -> int:
        return len(self._allowed)

    def describe(self) -> str:
        """The allow-list for messages: operators need it to fix a refused route."""
        if not self._allowed:
            return "none (start the gateway with --policy-uri)"
        return ", ".join(sorted(self._allowed))


@dataclass(frozen=True)
class RewardRange:
    """The rewards feedback may carry: finite numbers in [low, high].

    `low` is at least 0 because rewards are summed in Prometheus counters, which must never
    decrease; `high` is at most MAX_REWARD so sums of squares stay finite.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("the reward range's bounds must be finite numbers")
        if self.low < 0:
            raise ValueError(
                f"the reward range starts at {self.low:g}; rewards are summed in Prometheus "
                "counters, which cannot decrease: shift signed rewards to start at 0 or above"
            )
        if not self.low < self.high:
            raise ValueError(f"the reward range [{self.low:g}, {self.high:g}] is empty")
        if self.high > MAX_REWARD:
            raise ValueError(f"the reward range may reach at most {MAX_REWARD:g}")

    @classmethod
    def parse(cls, text: str) -> RewardRange:
        """`LOW,HIGH`, as `--reward-range` takes it (e.g. `0,1`).

        Raises:
            ValueError: Not two numbers, or not a valid range.
        """
        parts = text.split(",")
        if len(parts) != 2:
            raise ValueError(f"write the reward range as LOW,HIGH (like 0,1), not {shown(text)}")
        try:
            low, high = (float(part) for part in parts)
        except ValueError:
            raise ValueError(
                f"write the reward range as two numbers LOW,HIGH (like 0,1), not {shown(text)}"
            ) from None
        return cls(low, high)

    def contains(self, reward: float) -> bool:
        """Whether a reward is finite and inside the range (NaN never is)."""
        return self.low <= reward <= self.high

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


DEFAULT_REWARD_RANGE = RewardRange(0.0, 1.0)
"""The simulator's rewards are conversions, 0 or 1; counters forbid negative rewards."""


@dataclass(frozen=True)
class RouteRules:
    """The checks every route passes before the gateway holds it (PUT and state file alike).

    Args:
        policy_servers: The only policy servers a route may name.
        max_generation_lead: Seconds a generation (milliseconds since the epoch) may lie ahead
            of `clock`.
        clock: Wall-clock seconds since the epoch (injected for tests).
    """

    policy_servers: PolicyServers
    max_generation_lead: float = DEFAULT_GENERATION_LEAD
    clock: Callable[[], float] = time.time

    def check(self, target: str, route: Route) -> None:
        """Refuse a route the gateway must not hold.

        Raises:
            RouteRefusedError: A bad target name, a generation out of bounds, or a policy URI
                that is not one of the gateway's policy servers.
        """
        if not valid_target(target):
            raise RouteRefusedError(
                f"target {shown(target)} is not a lockgate target name: lowercase letters, "
                "digits and '-', at most 63 characters"
            )
        self._check_generation(route.generation)
        for role, policy in (("incumbent", route.incumbent), ("candidate", route.candidate)):
            if policy is None or policy.uri is None:
                continue
            if not self.policy_servers.allows(policy.uri):
                raise RouteRefusedError(
                    f"{role}.uri {shown(policy.uri)} is not one of this gateway's policy "
                    f"servers ({self.policy_servers.describe()}); nothing was fetched from it. "
                    "Name one of them, or restart the gateway with another --policy-uri"
                )

    def _check_generation(self, generation: int) -> None:
        if generation > MAX_GENERATION:
            raise RouteRefusedError(
                f"generation {shown(generation)} does not fit in 64 bits; lockgate sends "
                "milliseconds of workflow time"
            )
        now_ms = self.clock() * 1000
        horizon = int(now_ms + self.max_generation_lead * 1000)
        if generation > horizon:
            raise RouteRefusedError(
                f"generation {shown(generation)} is more than {self.max_generation_lead:g}s "
                f"ahead of this gateway's clock (at most {horizon} now); lockgate sends "
                "milliseconds of workflow time, so check the sender and the clocks"
            )
