"""How long a stage's sequential tests need, before the rollout starts.

A release engineer writes ``min_duration: 30m`` and hopes it is enough; whether it is depends on
the traffic the stage sees, its share of it, the metric's noise and the margin. This module
answers with the same always-valid boundary the compare trigger and the ``advance_when`` gate
use (``analysis.sequential.compare_means``: the one-sided normal-mixture boundary, ``rho`` tuned
by ``tuned_rho(expected_n, alpha)``, intrinsic time ``t = n_incumbent + n_candidate``, burn-in,
the score-form variance of 0/1 metrics).

The question is always "how long until the test decides", for one of its two directions:

* ``pass``: non-inferiority within the margin shown, when the true improvement is ``g``
  (0 by default: the candidate is as good as the incumbent);
* ``fail``: a drop beyond the margin shown, when the true drop is larger than the margin
  (``2 x max_drop`` by default: a drop of exactly ``max_drop`` is the test's own null, which
  it rejects with probability at most alpha, so "caught" needs a drop past the margin; at
  ``2 x max_drop`` it is as far past the margin as an equal candidate is inside it).

The answer is the **median** time to decision. In intrinsic time the test statistic is a
Brownian motion with drift ``mu = distance / sqrt(U)`` (``U`` the per-unit variance of the
difference for the split), looked at once per check, against the boundary ``b(t)``. Up to
``EXACT_CHECKS`` checks its first passage is computed exactly for that Gaussian random walk
(``_RandomWalk``: the density of the undecided paths carried from check to check). Beyond, the
classic tangent-line approximation is used: the boundary replaced by its tangent at ``t``, for
which a linear boundary's crossing probability is exact (Durbin 1971), with discrete looks
handled by shifting the boundary up by ``0.5826 sqrt(dt)`` (Siegmund 1985; Broadie, Glasserman
& Kou 1997), ``dt`` the observations between checks. No verdict comes before the burn-in (and,
for 0/1 metrics, the expected-events rule). As decisions fall on checks, the median is read
between the two checks around one half (``interpolated_median``). tests/unit/test_plan.py
checks it against a simulation of ``compare_means`` itself; benchmarks/plan.py against the
demo world.

Assumptions, stated once: every decision's outcome is known at once (rewards that arrive late
delay everything by their delay); the incumbent's mean and standard deviation are what is
given, and a continuous metric's candidate has the same standard deviation; the plug-in
variance is its true value (it is, after the burn-in, to a few percent).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from scipy import optimize, special  # type: ignore[import-untyped]

from analysis.sequential import (
    MATERIAL_VARIANCE_SHARE,
    MIN_EXPECTED_EVENTS,
    one_sided_bound,
    tuned_rho,
)

__all__ = [
    "BURN_IN",
    "DISCRETE_LOOK_SHIFT",
    "Decision",
    "MetricModel",
    "Question",
    "crossing_probability",
    "decision_time",
    "interpolated_median",
]

BURN_IN: Final = 100
"""Observations per arm before ``compare_means`` gives any verdict (its default burn-in)."""
DISCRETE_LOOK_SHIFT: Final = 0.5826
"""``-zeta(1/2) / sqrt(2 pi)``: how far up a boundary looked at only every ``dt`` must move, in
units of ``sqrt(dt)``, for continuous first-passage formulas to hold (Siegmund's correction)."""
EXACT_CHECKS: Final = 200
"""Up to this many checks the median is computed exactly for the Gaussian random walk (see
``_RandomWalk``); beyond, the continuous approximation is used, whose looks are dense enough."""
GRID_PER_SD: Final = 8
"""Grid points per standard deviation of one check's step, in the exact computation."""
KERNEL_SDS: Final = 7
"""The step's Gaussian kernel is cut this many standard deviations out."""
_TANGENT_STEP: Final = 1e-3
"""Relative step of the boundary's numerical derivative."""

Direction = Literal["pass", "fail"]


@dataclass(frozen=True)
class MetricModel:
    """What the plan assumes of a metric in the incumbent arm: its noise, and its mean if known.

    Why: the time a test needs scales with the variance, so the plan is only as good as this;
    it comes from the engineer (``--sd``, ``--rate``) or from monitoring (the incumbent's
    current statistics). A 0/1 metric (``binary``) is described by its rate alone: its standard
    deviation follows, and the score-form variance at the margin that ``compare_means`` uses
    for rates can be reproduced.

    Attributes:
        sd: Per-observation standard deviation in the incumbent arm, > 0.
        mean: The incumbent's mean; needed for relative margins and for rates.
        binary: Whether the metric is 0/1 (a rate); then ``mean`` is required, in (0, 1).
    """

    sd: float
    mean: float | None = None
    binary: bool = False

    def __post_init__(self) -> None:
        if not (self.sd > 0.0 and math.isfinite(self.sd)):
            raise ValueError(f"sd must be positive and finite, got {self.sd!r}")
        if self.mean is not None and not math.isfinite(self.mean):
            raise ValueError(f"mean must be finite, got {self.mean!r}")
        if self.binary and (self.mean is None or not 0.0 < self.mean < 1.0):
            raise ValueError("a 0/1 metric needs its rate as the mean, strictly in (0, 1)")

    @classmethod
    def rate(cls, rate: float) -> MetricModel:
        """A 0/1 metric with event rate ``rate`` (sd ``sqrt(p (1 - p))``)."""
        if not 0.0 < rate < 1.0:
            raise ValueError(f"a rate must be strictly between 0 and 1, got {rate!r}")
        return cls(sd=math.sqrt(rate * (1.0 - rate)), mean=rate, binary=True)

    def variance_at(self, shift: float) -> float:
        """Per-observation variance of an arm whose mean is the incumbent's plus ``shift``.

        A rate's variance moves with its rate (clipped just inside (0, 1)); a continuous
        metric's is taken to stay the incumbent's.
        """
        if not self.binary:
            return self.sd * self.sd
        assert self.mean is not None
        p = min(max(self.mean + shift, 1e-9), 1.0 - 1e-9)
        return p * (1.0 - p)


@dataclass(frozen=True)
class Question:
    """One direction of one ``compare_means`` test, as a trigger or a gate runs it.

    Why: the compare trigger asks both directions (fail to roll back, pass to advance) and the
    gate asks pass; each has its own margin, alpha and distance from its null.

    Attributes:
        direction: ``pass`` (non-inferiority within ``margin``) or ``fail`` (a drop beyond it).
        margin: The tolerated drop in the metric's units (convert a relative one first), > 0.
        improvement: True improvement of the candidate in the metric's units, positive =
            better whatever the metric's direction.
        alpha: Level of this decision (the trigger's Bonferroni share, or the spec's alpha for
            the gate), in (0, 1).
        expected_n: The stage's ``expected_samples``: tunes the boundary's ``rho``.
        higher_is_better: The metric's direction (where a rate's margin point lies).
        failure_limit: Consecutive failing checks that act (``fail`` only); each extra one
            costs a check.
        burn_in: Observations per arm before any verdict.
    """

    direction: Direction
    margin: float
    improvement: float
    alpha: float
    expected_n: int
    higher_is_better: bool = True
    failure_limit: int = 1
    burn_in: int = BURN_IN

    @property
    def distance(self) -> float:
        """How far the truth lies from the test's null, towards its rejection (> 0 to decide)."""
        inside = self.improvement + self.margin
        return inside if self.direction == "pass" else -inside


@dataclass(frozen=True)
class Decision:
    """The median time to a decision, in observations and in wall-clock time.

    Attributes:
        samples: Observations (both arms) at the median decision; None when it never comes.
        seconds: Seconds from the stage's start to that check; None when it never comes.
        checks: The median in checks (1 = the first), interpolated between the two checks
            around one half (see ``interpolated_median``).
        earliest_seconds: When the burn-in (and, for rates, the expected-events rule) first
            allows any verdict.
        why_never: Why there is no decision (None when there is one).
    """

    samples: float | None
    seconds: float | None
    checks: float | None
    earliest_seconds: float
    why_never: str | None = None


def _log_phi(x: float) -> float:
    return float(special.log_ndtr(x))


def crossing_probability(
    t: float, drift: float, boundary: float, slope: float, look_shift: float = 0.0
) -> float:
    """P(a unit Brownian motion with ``drift`` has crossed the boundary by intrinsic time ``t``).

    Why: the tangent-line approximation of a curved boundary's first passage. Replacing the
    boundary by the line ``a + slope s`` through ``(t, boundary + look_shift)`` gives the exact
    linear-boundary formula ``Phi((nu t - a)/sqrt t) + exp(2 a nu) Phi((-nu t - a)/sqrt t)``
    with ``nu = drift - slope``; the second term is computed in logs, as it multiplies a huge
    exponential by a tiny tail.

    Args:
        t: Intrinsic time, > 0.
        drift: Drift of the statistic per unit of intrinsic time.
        boundary: The boundary's value at ``t``.
        slope: The boundary's derivative at ``t``.
        look_shift: Added to the boundary for discrete looks (``0.5826 sqrt(dt)``).

    Returns:
        The probability, in [0, 1].
    """
    if t <= 0.0:
        raise ValueError(f"t must be positive, got {t!r}")
    level = boundary + look_shift
    intercept = max(level - slope * t, 1e-12)
    nu = drift - slope
    root = math.sqrt(t)
    first = math.exp(_log_phi((nu * t - intercept) / root))
    log_second = 2.0 * intercept * nu + _log_phi((-nu * t - intercept) / root)
    second = math.exp(log_second) if log_second < 0.0 else 1.0
    # Being above the boundary at t is crossing by t: a floor that matters when looks are so
    # sparse that the shift for discrete looks overshoots.
    above = math.exp(_log_phi((drift * t - boundary) / root))
    return min(1.0, max(first + second, above))


def interpolated_median(cdf: Sequence[float]) -> float | None:
    """The median check of a decision made only at checks, interpolated between two checks.

    Why: decisions fall on checks, so the median of the decision time jumps a whole check when
    the probability of having decided by some check passes one half by a hair. Reading the
    median off the line between the two checks around one half (the grouped-data median)
    makes it a smooth function of traffic and margins, for the plan and the simulations that
    check it alike; at the first check with any decision there is nothing earlier to
    interpolate from.

    Args:
        cdf: ``P(decided by check k)`` for ``k = 1, 2, ...``, non-decreasing.

    Returns:
        The median in checks (a float), or None when the probability never reaches one half.
    """
    previous = 0.0
    for index, value in enumerate(cdf):
        if value >= 0.5:
            if previous <= 0.0:
                return float(index + 1)
            return index + (0.5 - previous) / (value - previous)
        previous = value
    return None


@dataclass(frozen=True)
class _RandomWalk:
    """The statistic as a Gaussian random walk looked at once per check, on a grid of values.

    Few checks is where the continuous approximation is weakest (a single look cannot see a
    crossing between looks) and where an exact computation is cheap: the density of the
    statistic among the paths not yet absorbed is carried from check to check by convolving
    with the step's Gaussian, and the mass above the boundary is absorbed at each check from
    the first one allowed to decide.
    """

    drift: float
    step: float
    first_check: int
    last_check: int

    def cdf(self, boundary: Callable[[int], float]) -> list[float]:
        """``P(crossed by check k)`` for every check up to ``last_check`` (or one half)."""
        sd = math.sqrt(self.step)
        h = sd / GRID_PER_SD
        bounds = [boundary(k) for k in range(1, self.last_check + 1)]
        reach = KERNEL_SDS * sd + abs(self.drift) * self.step  # one step's farthest move
        top = max(bounds) + reach
        spread = 8.0 * sd * math.sqrt(self.last_check)
        low = min(0.0, self.drift * self.step * self.last_check) - spread - reach
        grid = low + h * np.arange(math.ceil((top - low) / h) + 2)
        offsets = h * np.arange(-KERNEL_SDS * GRID_PER_SD, KERNEL_SDS * GRID_PER_SD + 1)
        shift = round(self.drift * self.step / h)  # the kernel is centred on the drift
        kernel = np.exp(-0.5 * ((offsets + shift * h - self.drift * self.step) / sd) ** 2)
        kernel /= kernel.sum()
        density = np.zeros(grid.size)
        density[round(-low / h)] = 1.0  # the statistic starts at 0
        crossed = 0.0
        found: list[float] = []
        for k, bound in enumerate(bounds, start=1):
            density = np.roll(np.convolve(density, kernel, mode="same"), shift)
            if k >= self.first_check:
                above = grid >= bound
                crossed += float(density[above].sum())
                density[above] = 0.0
            found.append(crossed)
            if crossed >= 0.5 and len(found) > 1 and found[-2] >= 0.5:
                break
        return found


def _variances(metric: MetricModel, question: Question, share: float) -> tuple[float, float]:
    """Per-unit-time variance of the difference: at the truth, and as the test estimates it.

    ``U = var_i / (1 - f) + var_c / f``. A rate's ``compare_means`` evaluates the variance at
    the margin (both arms' rates differing by exactly the margin), not at the truth.
    """
    sign = 1.0 if question.higher_is_better else -1.0
    var_i = metric.variance_at(0.0)
    var_true = metric.variance_at(sign * question.improvement)
    var_null = metric.variance_at(-sign * question.margin)
    return var_i / (1.0 - share) + var_true / share, var_i / (1.0 - share) + var_null / share


def _earliest_t(metric: MetricModel, question: Question, share: float) -> float:
    """Intrinsic time before which ``compare_means`` gives no verdict.

    Each arm needs ``burn_in`` observations; a 0/1 arm that carries a material share of the
    variance also needs ``MIN_EXPECTED_EVENTS`` expected events and non-events at the margin.
    """
    earliest = question.burn_in / min(share, 1.0 - share)
    if metric.binary:
        assert metric.mean is not None
        sign = 1.0 if question.higher_is_better else -1.0
        rates = (metric.mean, metric.mean - sign * question.margin)
        parts = (rates[0] * (1 - rates[0]) / (1 - share), rates[1] * (1 - rates[1]) / share)
        for rate, part, arm_share in zip(rates, parts, (1.0 - share, share), strict=True):
            rare = min(rate, 1.0 - rate)
            if part >= MATERIAL_VARIANCE_SHARE * sum(parts) and rare > 0.0:
                earliest = max(earliest, MIN_EXPECTED_EVENTS / (rare * arm_share))
    return earliest


def decision_time(
    metric: MetricModel,
    question: Question,
    *,
    traffic: float,
    candidate_share: float,
    check_interval: float,
    horizon: float = 90 * 86_400.0,
) -> Decision:
    """Median time until ``question``'s test decides, at ``traffic`` observations per second.

    Why: this is the number ``lockgate plan`` shows for every gate and trigger of a stage, and
    the only way to know before a rollout whether ``min_duration`` covers the evidence. See
    the module docstring for the method and its assumptions.

    Args:
        metric: The metric's noise and mean in the incumbent arm.
        question: The test and the truth assumed.
        traffic: Observations per second counted in both arms together (the stage's decisions
            that reach the metric), > 0.
        candidate_share: The candidate's share of those observations, in (0, 1).
        check_interval: Seconds between checks, > 0.
        horizon: Seconds beyond which the decision counts as never coming.

    Returns:
        The median decision, or why there is none within the horizon.
    """
    if not (traffic > 0.0 and math.isfinite(traffic)):
        raise ValueError(f"traffic must be positive and finite, got {traffic!r}")
    if not 0.0 < candidate_share < 1.0:
        raise ValueError(f"candidate_share must be in (0, 1), got {candidate_share!r}")
    if not check_interval > 0.0:
        raise ValueError(f"check_interval must be positive, got {check_interval!r}")
    if question.margin <= 0.0 or question.failure_limit < 1:
        raise ValueError("the margin must be positive and failure_limit at least 1")
    step = traffic * check_interval  # observations between two checks
    earliest = _earliest_t(metric, question, candidate_share)
    first_check = max(1, math.ceil(earliest / step - 1e-9))
    earliest_seconds = first_check * check_interval
    distance = question.distance
    if distance <= 0.0:
        what = (
            "the candidate is assumed worse than the margin"
            if question.direction == "pass"
            else "the assumed drop is within the margin"
        )
        return Decision(None, None, None, earliest_seconds, f"never: {what}")
    u_true, u_null = _variances(metric, question, candidate_share)
    drift = distance / math.sqrt(u_true)
    scale = math.sqrt(u_null / u_true)  # the test's standard error over the true one
    rho = tuned_rho(question.expected_n, question.alpha)
    shift = DISCRETE_LOOK_SHIFT * math.sqrt(step)

    def probability(t: float) -> float:
        h = _TANGENT_STEP * t
        b = one_sided_bound(t, rho, question.alpha) * scale
        slope = (
            (
                one_sided_bound(t + h, rho, question.alpha)
                - one_sided_bound(t - h, rho, question.alpha)
            )
            * scale
            / (2.0 * h)
        )
        return crossing_probability(t, drift, b, slope, shift)

    limit = horizon * traffic
    t = first_check * step
    if probability(t) < 0.5:
        low = t
        while probability(t) < 0.5:
            if t >= limit:
                return Decision(
                    None, None, None, earliest_seconds,
                    f"not within {horizon / 86_400:g} days at this traffic",
                )  # fmt: skip
            low, t = t, min(2.0 * t, limit)
        t = float(optimize.brentq(lambda s: probability(s) - 0.5, low, t, xtol=step / 4))
    checks = max(float(first_check), t / step)
    if checks <= EXACT_CHECKS:
        last = max(first_check, min(2 * math.ceil(checks) + 2, 2 * EXACT_CHECKS))
        walk = _RandomWalk(drift, step, first_check, last)
        exact = interpolated_median(
            walk.cdf(lambda k: one_sided_bound(k * step, rho, question.alpha) * scale)
        )
        checks = exact if exact is not None else checks
    if question.direction == "fail":
        checks += question.failure_limit - 1
    return Decision(
        samples=checks * step,
        seconds=checks * check_interval,
        checks=checks,
        earliest_seconds=earliest_seconds,
    )
