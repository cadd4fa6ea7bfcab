"""Metrics (HVL_SPEC §7) against hand-computed values, including ties and the FPR95 convention."""
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from hvl_tools import metrics as M


def test_accuracy_by_hand():
    assert M.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert M.accuracy([], []) is None
    with pytest.raises(ValueError):
        M.accuracy([0, 1], [0])


def test_auroc_with_a_tie_counts_half():
    # ID {0.9, 0.5}, OOD {0.5, 0.1}: pairs (0.9>0.5)=1, (0.9>0.1)=1, (0.5=0.5)=½, (0.5>0.1)=1 → 3.5/4
    assert M.auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.875)
    # perfectly reversed scores
    assert M.auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def _collinear_case():
    """20 ID, 10 OOD; three score values each shared by one ID and one OOD image, so the ROC
    points (17,0)→(18,1)→(19,2)→(20,3) (ID, OOD counts) lie on a line; the 95% point (19, 2) is the
    middle one, which drop_intermediate=True removes."""
    ids = [0.9] * 17 + [0.6, 0.5, 0.4]
    ood = [0.6, 0.5, 0.4] + [0.1] * 7
    return np.r_[np.ones(20), np.zeros(10)].astype(bool), np.r_[ids, ood]


def test_fpr95_is_the_exact_roc_point_not_the_dropped_one():
    y, s = _collinear_case()
    # by hand: t95 = the 19th largest ID score = 0.5; OOD scores >= 0.5: {0.6, 0.5} → 2/10
    assert M.threshold_at_tpr(s[y]) == 0.5
    assert M.fpr95(y, s) == pytest.approx(0.2)
    # sklearn's default would report the next point: OOD >= 0.4 → 3/10
    fpr, tpr, _ = roc_curve(y, s)  # drop_intermediate=True
    assert fpr[np.argmax(tpr >= 0.95)] == pytest.approx(0.3)
    assert M.roc_point(y, s) == pytest.approx((0.2, 0.95, 0.5))


def test_fpr95_tie_at_the_threshold_counts_the_tied_ood():
    # 19 ID at 0.8 and one at 0.1 → t95 = 0.8 (19/20 = 95% have score >= 0.8)
    ids = [0.8] * 19 + [0.1]
    ood = [0.8, 0.5, 0.2]  # the OOD at 0.8 is accepted (score >= t95) → 1/3
    y = np.r_[np.ones(20), np.zeros(3)]
    assert M.threshold_at_tpr(ids) == 0.8
    assert M.fpr95(y, np.r_[ids, ood]) == pytest.approx(1 / 3)


def test_fpr95_needs_more_than_95_percent_when_n_is_small():
    # 10 ID: 95% of 10 = 9.5 → 10 images must pass, so t95 is the lowest ID score
    ids = np.linspace(0.5, 0.95, 10)
    ood = [0.45, 0.55, 0.9]
    y = np.r_[np.ones(10), np.zeros(3)]
    assert M.threshold_at_tpr(ids) == pytest.approx(0.5)
    assert M.fpr95(y, np.r_[ids, ood]) == pytest.approx(2 / 3)


def test_threshold_at_tpr_matches_the_roc_threshold_on_tied_random_scores():
    rng = np.random.default_rng(0)
    for n in range(1, 80):
        ids = rng.integers(0, 6, n) / 5
        ood = rng.integers(0, 6, rng.integers(1, 25)) / 5
        y = np.r_[np.ones(n), np.zeros(len(ood))]
        s = np.r_[ids, ood]
        fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
        i = np.argmax(tpr >= 0.95)
        assert M.threshold_at_tpr(ids) == thr[i]
        assert M.fpr95(y, s) == fpr[i] == pytest.approx(np.mean(ood >= thr[i]))
        assert np.mean(ids >= thr[i]) >= 0.95


def test_aupr_in_and_out_by_hand():
    # ranked: ID 0.9 (P=1, R=½), OOD 0.8, ID 0.7 (P=2/3, R=1) → AP = ½·1 + ½·⅔
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    assert M.aupr(y, s) == pytest.approx(0.5 + 1 / 3)
    # OOD positive, score −msp: ranked OOD 0.1 (P=1, R=½), ID 0.7, OOD 0.8 (P=⅔, R=1)
    assert M.aupr_out(y, s) == pytest.approx(0.5 + 1 / 3)


def test_undefined_metrics_are_none_not_nan():
    m = M.ood_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    assert m["auroc"] is None and m["fpr95"] is None and m["aupr"] is None
    assert m["n_id"] == 3 and m["n_ood"] == 0 and m["t95"] == 0.2


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels but"):
        M.auroc([1, 0], [0.1])
    with pytest.raises(ValueError, match="finite"):
        M.auroc([1, 0], [np.nan, 0.1])
    with pytest.raises(ValueError):
        M.threshold_at_tpr([])


def test_rates_at_threshold():
    r = M.rates_at_threshold([1, 1, 1, 1, 0, 0], [0.9, 0.6, 0.5, 0.2, 0.5, 0.1], 0.5)
    assert r == {"threshold": 0.5, "tpr": 0.75, "fpr": 0.5}


def test_mean_std_is_the_sample_std():
    mean, std, n = M.mean_std([0.8, 0.9, 1.0, None])
    assert (mean, n) == (pytest.approx(0.9), 3)
    assert std == pytest.approx(0.1)  # sqrt(((-.1)² + 0 + .1²) / 2)
    assert M.mean_std([0.7]) == (0.7, 0.0, 1)
    assert M.mean_std([None]) == (None, None, 0)
    assert M.fmt_pct(0.9, 0.1) == "90.00 ± 10.00"
