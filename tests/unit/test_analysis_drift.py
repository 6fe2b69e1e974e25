"""Action-distribution drift and shadow agreement, pinned to hand values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]

from analysis.drift import action_drift, agreement, default_min_per_side

ACTIONS = ["a", "b", "c", "d", "e"]
INCUMBENT = dict(zip(ACTIONS, [500, 300, 150, 50, 0], strict=True))
CANDIDATE = dict(zip(ACTIONS, [450, 320, 170, 40, 20], strict=True))


@pytest.mark.parametrize(
    ("smoothing", "psi", "js"),
    [(0.5, 0.0853, 0.00748), (1e-4, 0.2554, 0.00834)],
)
def test_reference_counts(smoothing: float, psi: float, js: float) -> None:
    result = action_drift(INCUMBENT, CANDIDATE, smoothing=smoothing)
    assert result.psi == pytest.approx(psi, abs=5e-5)
    assert result.js == pytest.approx(js, abs=5e-6)
    assert result.new_actions == ("e",)
    assert result.new_action_share == pytest.approx(0.02)
    assert (result.n_incumbent, result.n_candidate, result.actions) == (1000, 1000, 5)
    assert result.enough_data
    assert "add-" in result.detail


def test_unsmoothed_js_is_finite_and_psi_is_not() -> None:
    result = action_drift(INCUMBENT, CANDIDATE, smoothing=0.0)
    assert result.js == pytest.approx(0.008342, abs=5e-7)
    # scipy returns the Jensen-Shannon *distance*, the square root of the divergence.
    p = np.array([500, 300, 150, 50, 0]) / 1000
    q = np.array([450, 320, 170, 40, 20]) / 1000
    assert float(jensenshannon(p, q)) == pytest.approx(0.091335, abs=5e-7)
    assert float(jensenshannon(p, q)) ** 2 == pytest.approx(result.js, rel=1e-9)
    assert result.psi == math.inf


def test_psi_is_the_symmetrised_kl() -> None:
    result = action_drift(INCUMBENT, CANDIDATE)
    p = (np.array([500, 300, 150, 50, 0]) + 0.5) / 1002.5
    q = (np.array([450, 320, 170, 40, 20]) + 0.5) / 1002.5
    assert result.psi == pytest.approx(stats.entropy(q, p) + stats.entropy(p, q), rel=1e-12)


def test_minimum_sample_size() -> None:
    assert default_min_per_side(5) == 80
    assert default_min_per_side(1) == 1
    small = action_drift({"a": 40, "b": 39}, {"a": 79, "b": 1})
    assert small.min_per_side == 20
    assert small.enough_data
    assert not action_drift({"a": 10, "b": 9}, {"a": 79, "b": 1}).enough_data
    custom = action_drift(INCUMBENT, CANDIDATE, min_per_side=5_000)
    assert not custom.enough_data
    assert "not enough data (need 5000 per side)" in custom.detail


def test_empty_side_has_no_divergence() -> None:
    result = action_drift({"a": 0, "b": 0}, {"a": 3})
    assert result.js is None
    assert result.psi is None
    assert not result.enough_data
    assert result.new_actions == ("a",)
    assert result.new_action_share == 1.0
    none = action_drift({"a": 5}, {"a": 0})
    assert none.new_action_share == 0.0


def test_declared_actions_with_no_decisions_count_towards_k() -> None:
    result = action_drift({"a": 100, "b": 100, "c": 0}, {"a": 100, "b": 100, "c": 0})
    assert result.actions == 3
    assert result.js == pytest.approx(0.0, abs=1e-15)
    assert result.new_actions == ()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: action_drift({}, {}), "no actions"),
        (lambda: action_drift({"a": -1}, {"a": 1}), "negative"),
        (lambda: action_drift({"a": 1}, {"a": 1}, smoothing=-0.5), "smoothing"),
        (lambda: action_drift({"a": 1}, {"a": 1}, min_per_side=0), "min_per_side"),
        (lambda: agreement(1, 0, 0.05), "no data"),
        (lambda: agreement(5, 4, 0.05), "agree"),
        (lambda: agreement(1, 4, 0.0), "alpha"),
    ],
)
def test_invalid_inputs_are_refused(call: object, match: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=match):
        call()


def test_agreement_reference() -> None:
    rate, low, high = agreement(870, 1000, 0.05)
    assert rate == pytest.approx(0.870)
    assert low == pytest.approx(0.8477, abs=5e-5)
    assert high == pytest.approx(0.8894, abs=5e-5)


def test_agreement_wilson_formula() -> None:
    # Independent closed form of the Wilson score interval.
    k, n, z = 37, 50, stats.norm.ppf(0.95)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    result = agreement(k, n, 0.10)
    assert result.wilson_low == pytest.approx(centre - half, rel=1e-9)
    assert result.wilson_high == pytest.approx(centre + half, rel=1e-9)


counts = st.lists(st.integers(0, 5_000), min_size=1, max_size=8)


@given(inc=counts, cand=counts, smoothing=st.sampled_from([0.5, 1.0, 1e-4]))
def test_divergences_are_symmetric_and_bounded(
    inc: list[int], cand: list[int], smoothing: float
) -> None:
    k = max(len(inc), len(cand))
    a = {str(i): (inc[i] if i < len(inc) else 0) for i in range(k)}
    b = {str(i): (cand[i] if i < len(cand) else 0) for i in range(k)}
    forward = action_drift(a, b, smoothing=smoothing)
    backward = action_drift(b, a, smoothing=smoothing)
    if forward.js is None or forward.psi is None:
        assert backward.js is None
        return
    assert backward.js == pytest.approx(forward.js, rel=1e-9, abs=1e-15)
    assert backward.psi == pytest.approx(forward.psi, rel=1e-9, abs=1e-15)
    assert 0.0 <= forward.js <= math.log(2) + 1e-12
    # Convexity of KL: JS <= PSI / 4.
    assert forward.js <= forward.psi / 4 + 1e-12
    assert 0.0 <= forward.new_action_share <= 1.0


@given(inc=counts, smoothing=st.sampled_from([0.0, 0.5, 1.0]))
def test_identical_counts_have_no_drift(inc: list[int], smoothing: float) -> None:
    a = {str(i): c for i, c in enumerate(inc)}
    result = action_drift(a, dict(a), smoothing=smoothing)
    if result.js is None:
        return
    assert result.js == pytest.approx(0.0, abs=1e-12)
    assert result.psi == pytest.approx(0.0, abs=1e-12)
    assert result.new_action_share == 0.0


@given(data=st.data(), n=st.integers(1, 10_000), alpha=st.floats(0.001, 0.5))
def test_agreement_interval_contains_rate_and_mirrors(
    data: st.DataObject, n: int, alpha: float
) -> None:
    k = data.draw(st.integers(0, n))
    rate, low, high = agreement(k, n, alpha)
    assert 0.0 <= low <= rate <= high <= 1.0
    _, mirror_low, mirror_high = agreement(n - k, n, alpha)
    assert low == pytest.approx(1 - mirror_high, abs=1e-12)
    assert high == pytest.approx(1 - mirror_low, abs=1e-12)
