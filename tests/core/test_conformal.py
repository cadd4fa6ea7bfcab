"""Conformal p-values, the conformal threshold and Benjamini–Hochberg, against hand-computed cases."""

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from hvl_core.conformal import bh_select, conformal_pvalue, conformal_threshold

CAL = [0.9, 0.1, 0.5, 0.3, 0.7]  # sorted: 0.1 0.3 0.5 0.7 0.9, N = 5


def test_pvalue_by_hand():
    # p = (1 + #{s_i <= s}) / 6
    assert conformal_pvalue(0.05, CAL) == pytest.approx(1 / 6)
    assert conformal_pvalue(0.3, CAL) == pytest.approx(3 / 6)  # ties count as "as low or lower"
    assert conformal_pvalue(0.31, CAL) == pytest.approx(3 / 6)
    assert conformal_pvalue(2.0, CAL) == pytest.approx(1.0)
    np.testing.assert_allclose(conformal_pvalue([0.05, 0.6], CAL), [1 / 6, 4 / 6])


def test_threshold_by_hand():
    # N = 19, alpha = 0.1: k = floor(0.1 * 20) = 2 -> the 2nd smallest score
    cal = np.arange(1, 20, dtype=float)  # 1..19
    assert conformal_threshold(cal, 0.1) == 2.0
    # N = 5, alpha = 0.05: k = floor(0.3) = 0 -> cannot reject
    with pytest.raises(ValueError, match="at least 19"):
        conformal_threshold(CAL, 0.05)
    # N = 39, alpha = 0.05: k = 2
    assert conformal_threshold(np.arange(39.0), 0.05) == 1.0


def test_threshold_and_pvalue_agree():
    """score < t  <=>  p <= alpha, for every score between and on the calibration points."""
    rng = np.random.default_rng(0)
    cal = rng.normal(size=57)
    for alpha in (0.05, 0.1, 0.2):
        t = conformal_threshold(cal, alpha)
        probe = np.r_[cal, cal + 1e-9, cal - 1e-9, -10, 10]
        np.testing.assert_array_equal(probe < t, conformal_pvalue(probe, cal) <= alpha)


def test_false_rejection_is_at_most_alpha():
    """Exchangeable ID scores: the rejection rate of a fresh ID image is <= alpha (averaged over draws)."""
    rng = np.random.default_rng(1)
    rejected = []
    for _ in range(2000):
        s = rng.normal(size=40)
        rejected.append(s[0] < conformal_threshold(s[1:], 0.1))
    assert np.mean(rejected) <= 0.1 + 0.02


def test_bh_by_hand():
    # m = 5, q = 0.1: sorted p 0.001 0.02 0.03 0.5 0.9 vs i q / m = 0.02 0.04 0.06 0.08 0.1
    # the largest i with p_(i) <= i q / m is 3 -> the three smallest are selected
    p = np.array([0.5, 0.001, 0.9, 0.03, 0.02])
    np.testing.assert_array_equal(bh_select(p, 0.1), [False, True, False, True, True])
    assert not bh_select([0.2, 0.3], 0.1).any()
    assert bh_select([], 0.1).shape == (0,)


def test_bh_matches_scipy():
    rng = np.random.default_rng(2)
    for _ in range(50):
        p = np.r_[rng.uniform(size=30), rng.uniform(0, 0.01, size=rng.integers(0, 10))]
        q = rng.choice([0.05, 0.1, 0.2])
        np.testing.assert_array_equal(bh_select(p, q), false_discovery_control(p, method="bh") <= q)
