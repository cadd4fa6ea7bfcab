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


# --------------------------------------------------------------------------- conventions


def _spec_case():
    """HVL_SPEC §7's example: 20 ID scores 2..21; OOD {10, 2.5, 0, 0}."""
    return np.r_[np.ones(20, bool), np.zeros(4, bool)], np.r_[np.arange(2, 22), [10, 2.5, 0, 0]].astype(float)


def test_fpr95_conventions_by_hand_on_the_spec_example():
    y, s = _spec_case()
    # exact: t95 = the 19th largest ID score = 3; OOD >= 3: {10} → 1/4
    assert M.fpr95(y, s, "exact") == 0.25
    # mcm: recall 19/20 = 0.95 holds from score 3 down to just above 2; the largest FPR on that
    # stretch counts OOD 2.5 too → 2/4
    assert M.fpr95(y, s, "mcm") == 0.5
    # openood: OOD positive; catching 95% of 4 OOD needs all four, i.e. the cut at msp <= 10:
    # ID with msp <= 10 are 2..10 → 9/20 of ID rejected
    assert M.fpr95(y, s, "openood") == pytest.approx(0.45)


def test_mcm_convention_takes_the_nearest_recall_even_below_95():
    # 10 ID scores 1..10, OOD {1, 0}. Recall points 0.9 (score 2) and 1.0 (score 1) are equally
    # near 0.95 up to rounding, and 0.95 − 0.9 is the smaller float: MCM's code reads recall 0.9,
    # where no OOD image is accepted; the exact FPR95 needs recall 1.0, accepting OOD 1 → 1/2
    y = np.r_[np.ones(10, bool), np.zeros(2, bool)]
    s = np.r_[np.arange(1, 11), [1, 0]].astype(float)
    assert M.fpr95(y, s, "exact") == 0.5
    assert M.fpr95(y, s, "mcm") == 0.0
    # openood: both OOD must be flagged: cut at msp <= 1 → ID {1} rejected → 1/10
    assert M.fpr95(y, s, "openood") == pytest.approx(0.1)


def test_conventions_agree_on_auroc_and_are_recorded():
    y, s = _spec_case()
    ms = {c: M.ood_metrics(y, s, convention=c) for c in M.CONVENTIONS}
    assert {m["convention"] for m in ms.values()} == set(M.CONVENTIONS)
    assert ms["exact"]["auroc"] == ms["mcm"]["auroc"] == pytest.approx(ms["openood"]["auroc"])
    assert ms["exact"]["aupr"] == ms["mcm"]["aupr"]


def test_openood_aupr_is_the_trapezoid_under_the_pr_curve():
    # ID {0.9, 0.4}, OOD {0.5, 0.1}. PR curve with ID positive: thresholds 0.9 → (P 1, R ½),
    # 0.5 → (½, ½), 0.4 → (⅔, 1), plus sklearn's (P 1, R 0). Trapezoids over recall:
    # 0→½ at P 1 (0.5) + ½→½ (0) + ½→1 between ½ and ⅔ (½·(½+⅔)/2 = 7/24) = 19/24
    y, s = np.array([1, 1, 0, 0], bool), np.array([0.9, 0.4, 0.5, 0.1])
    assert M.ood_metrics(y, s, convention="openood")["aupr"] == pytest.approx(19 / 24)
    # average precision (exact / mcm) is the step sum instead: ½·1 + ½·⅔ = 5/6
    assert M.ood_metrics(y, s)["aupr"] == pytest.approx(5 / 6)


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="convention"):
        M.fpr95([1, 0], [0.9, 0.1], "openood-v1")


# --------------------------------------------------------------------------- bootstrap


def test_weighted_metrics_by_hand():
    # ID {0.9, 0.4}, OOD {0.5, 0.1}; three resamples given as draw counts
    y, s = np.array([1, 1, 0, 0], bool), np.array([0.9, 0.4, 0.5, 0.1])
    w = np.array(
        [
            [1, 1, 1, 1],  # the set itself: pairs 0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1 → 3/4
            [2, 0, 1, 1],  # ID {0.9, 0.9}: every pair won → 1
            [0, 2, 2, 0],
        ]
    )  # ID {0.4, 0.4} vs OOD {0.5, 0.5}: every pair lost → 0
    auc, fpr = M.weighted_auroc_fpr95(y, s, w)
    assert auc == pytest.approx([0.75, 1.0, 0.0])
    # FPR95: t95 is the lowest ID score drawn (2 ID images: 95% needs both) → OOD at or above it
    # row 0: t95 0.4 → OOD {0.5} of 2 → ½; row 1: t95 0.9 → 0; row 2: t95 0.4 → both OOD 0.5 → 1
    assert fpr == pytest.approx([0.5, 0.0, 1.0])


def test_weighted_metrics_equal_the_plain_ones_on_repeated_samples():
    rng = np.random.default_rng(3)
    y, s = rng.random(200) < 0.4, np.round(rng.random(200), 2)  # rounded: many ties
    w = M.bootstrap_counts(y, 4, seed=1)
    auc, fpr = M.weighted_auroc_fpr95(y, s, w)
    for i in range(4):
        ys, ss = np.repeat(y, w[i].astype(int)), np.repeat(s, w[i].astype(int))
        assert auc[i] == pytest.approx(M.auroc(ys, ss), abs=1e-12)
        assert fpr[i] == M.fpr95(ys, ss)


def test_bootstrap_counts_keep_the_number_of_id_and_ood():
    y = np.r_[np.ones(7, bool), np.zeros(5, bool)]
    w = M.bootstrap_counts(y, 50, seed=0)
    assert (w[:, y].sum(1) == 7).all() and (w[:, ~y].sum(1) == 5).all()


def test_paired_bootstrap_of_identical_methods_is_exactly_zero_and_of_a_better_one_positive():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    base = rng.normal(0, 1, 300) + y * 0.5
    better = base + y * 1.0  # every ID image scored higher: AUROC can only go up
    r = M.paired_bootstrap(
        y, {"hvl": np.stack([base, base]), "same": np.stack([base, base]), "better": better}, "hvl", n_boot=200, seed=1
    )
    assert set(r) == {"same", "better"}
    assert r["same"]["auroc"] == {"delta": 0.0, "lo": 0.0, "hi": 0.0, "p_not_above_0": 1.0, "n_boot": 200, "runs": 2}
    b = r["better"]["auroc"]
    assert b["delta"] == pytest.approx(M.auroc(y, better) - M.auroc(y, base))
    assert 0 < b["lo"] <= b["delta"] <= b["hi"] and b["p_not_above_0"] == 0.0 and b["runs"] == 1
    assert r["better"]["fpr95"]["delta"] == pytest.approx(M.fpr95(y, better) - M.fpr95(y, base))
    with pytest.raises(ValueError, match="reference"):
        M.paired_bootstrap(y, {"a": base}, "hvl")


def test_aggregation_refuses_mixed_conventions():
    from hvl_tools.aggregate import aggregate_table, convention_of

    a = {"auroc": 0.8, "fpr95": 0.5, "convention": "exact"}
    legacy = {"auroc": 0.7, "fpr95": 0.6}  # written before conventions: exact
    assert convention_of([a, legacy]) == "exact"
    table, summary = aggregate_table({"x": [a, legacy]})
    assert summary["x"]["auroc"]["mean"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="different metric conventions"):
        aggregate_table({"x": [a], "y": [{"auroc": 0.8, "fpr95": 0.4, "convention": "openood"}]})
