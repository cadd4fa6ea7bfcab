"""Stage 1 (HVL_SPEC §11), fitted and stored: KNN bank, outlier-exposure gate, pooled leave-one-source-out thresholds."""

import json

import numpy as np
import pytest
import torch

from hvl_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hvl_core.head import HVLHead
from hvl_core.presets import class_set_from_names
from hvl_core.scope import (
    SCOPE_WEIGHTS,
    gate_logodds,
    knn_similarity,
    min_pvalue_calibration,
    scope_embedding,
    stage_pvalue,
    unit,
)
from hvl_tools.scope_eval import fit_detector, fit_gate, loso_scores

T = torch.tensor


def test_knn_is_the_cosine_to_the_kth_nearest_by_hand():
    bank = T([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    f = T([[1.0, 0.0], [0.0, 1.0]])
    # sims of [1,0]: 1, 0, 0.6 → 2nd nearest 0.6; of [0,1]: 0, 1, 0.8 → 2nd nearest 0.8
    assert knn_similarity(f, bank, 2).tolist() == pytest.approx([0.6, 0.8])
    assert knn_similarity(f, bank, 10).tolist() == pytest.approx([0.0, 0.0])  # k > N: the farthest


def test_stage_pvalue_is_bonferroni_over_its_tests():
    assert stage_pvalue(np.array([0.3, 0.9, 0.6]), np.array([0.01, 0.2, 0.7])).tolist() == pytest.approx(
        [0.02, 0.4, 1.0]
    )
    p3 = stage_pvalue(np.array([0.3, 0.9]), np.array([0.01, 0.2]), np.array([0.5, 0.1]))
    assert p3.tolist() == pytest.approx([0.03, 0.3])


def _two_sources():
    pos = T([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    return pos, ["A", "A", "B", "B"], T([[-1.0, 0.0], [0.0, -1.0], [-0.6, -0.8]])


def test_loso_knn_scores_and_threshold_by_hand():
    pos, src, neg = _two_sources()
    knn, gate, contrast = loso_scores(pos, src, neg, k=1)
    # A's rows against B's bank: [1,0]→max(0.6, 0)=0.6, [0.8,0.6]→max(0.96, 0.6)=0.96; B's against A's: 0.96, 0.6
    assert knn.tolist() == pytest.approx([0.6, 0.96, 0.96, 0.6])
    # contrast = knn − cos to the nearest negative: [1,0]→0.6−0 ([0,-1]), [0.8,0.6]→0.96+0.6 ([0,-1]),
    # [0.6,0.8]→0.96+0.6 ([-1,0]), [0,1]→0.6−0 ([-1,0])
    assert contrast.tolist() == pytest.approx([0.6, 1.56, 1.56, 0.6])
    # every gate score comes from a gate fitted without its own source
    w, b = fit_gate(pos[2:], neg)
    assert gate[:2] == pytest.approx(gate_logodds(pos[:2], w, b).double().numpy(), abs=1e-6)
    det = fit_detector(pos, src, neg, k=1, alpha=0.8)
    # α/2 = 0.4 over N = 4 pooled scores: the ⌊0.4·5⌋ = 2nd smallest, 0.6
    assert det.t_knn == pytest.approx(0.6)
    assert det.t_gate == pytest.approx(np.sort(gate)[1])
    with pytest.raises(ValueError, match="two sources"):
        loso_scores(pos, ["A"] * 4, neg)


def test_predict_needs_both_tests_and_gives_the_stage_pvalue():
    pos, src, neg = _two_sources()
    det = fit_detector(pos, src, neg, k=1, alpha=0.8, scope="a test image")
    r = det.predict(T([[0.7, 0.7], [-1.0, 0.1], [5.0, 0.0]]))  # raw embeddings: normalised inside
    assert r.in_scope.tolist() == [True, False, True]
    knn = knn_similarity(unit(T([[-1.0, 0.1]])), det.bank, 1).item()
    assert r.knn[1] == pytest.approx(knn) and knn < det.t_knn
    # p_j = (1 + #{cal ≤ s}) / (N + 1); the stage's p is conformal for u = min_j p_j over the ID images' u
    p_knn = (1 + (det.calibration["knn"] <= r.knn[1]).sum()) / 5
    p_gate = (1 + (det.calibration["gate"] <= r.gate[1]).sum()) / 5
    u = min(p_knn, p_gate)
    assert r.p_value[1] == pytest.approx((1 + (det.calibration["min_p"] <= u).sum()) / 5)


def test_the_stage_pvalue_calibrates_the_smallest_test_pvalue_by_hand():
    # two tests that disagree: p_a = [1, 2, 3, 4]/4, p_b = [4, 3, 2, 1]/4 → u = [.25, .5, .5, .25]
    assert min_pvalue_calibration([1.0, 2, 3, 4], [4.0, 3, 2, 1]).tolist() == [0.25, 0.25, 0.5, 0.5]
    # a new image under every score of one test: p_j = 1/5, u = 0.2 → p = (1 + #{u_i ≤ 0.2}) / 5 = 1/5,
    # where Bonferroni gives 2/5
    from hvl_core.conformal import conformal_pvalue

    assert conformal_pvalue(0.2, [0.25, 0.25, 0.5, 0.5]) == pytest.approx(0.2)
    assert stage_pvalue(0.2, 0.6) == pytest.approx(0.4)


def _pad(x, d=64):  # the tiny backbone's width; the zeros change no cosine
    return torch.nn.functional.pad(x, (0, d - x.shape[1]))


def _saved(tmp_path, det):
    head = HVLHead(64, 2, similarity="linear", tau=1.0)
    return save_checkpoint(tmp_path / "ck", head, "tiny-clip-random", class_set_from_names(["a", "b"]), scope=det)


def test_scope_round_trips_through_a_checkpoint(tmp_path):
    pos, src, neg = _two_sources()
    det = fit_detector(_pad(pos), src, _pad(neg), k=1, alpha=0.8, scope="a test image", fitted_on={"id": ["A", "B"]})
    ck = load_checkpoint(_saved(tmp_path, det))
    assert ck.scope is not None and ck.scope.scope == "a test image"
    x = _pad(T([[0.7, 0.7], [-1.0, 0.1]]))
    a, b = det.predict(x), ck.scope.predict(x)
    assert a.in_scope.tolist() == b.in_scope.tolist()
    assert np.allclose(a.gate, b.gate, atol=1e-6) and np.allclose(a.p_value, b.p_value)
    assert ck.meta["scope"]["fitted_on"] == {"id": ["A", "B"]}


def test_a_tampered_or_missing_scope_file_is_one_sentence(tmp_path):
    pos, src, neg = _two_sources()
    folder = _saved(tmp_path, fit_detector(_pad(pos), src, _pad(neg), k=1, alpha=0.8))
    blob = (folder / SCOPE_WEIGHTS).read_bytes()
    mid = len(blob) - 8  # a byte of the tensors, flipped
    (folder / SCOPE_WEIGHTS).write_bytes(blob[:mid] + bytes([blob[mid] ^ 0xFF]) + blob[mid + 1 :])
    with pytest.raises(CheckpointError, match="in-scope stage.*sha256"):
        load_checkpoint(folder)
    (folder / SCOPE_WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="scope.safetensors is missing"):
        load_checkpoint(folder)
    (folder / SCOPE_WEIGHTS).write_bytes(blob)
    meta = json.loads((folder / "config.json").read_text())
    meta["scope"]["t_knn"] = "high"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="t_knn must be a finite number"):
        load_checkpoint(folder)


def test_scale_means_features_by_hand():
    v0 = T([[3.0, 4.0]])  # → [0.6, 0.8]
    v1 = T([[[2.0, 0.0], [0.0, 0.0]]])  # mean [1, 0] → [1, 0]
    v2 = T([[[0.0, 1.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]]])  # mean [0, 1] → [0, 1]
    assert scope_embedding(v0, v1, v2, "global").tolist()[0] == pytest.approx([0.6, 0.8])
    f = scope_embedding(v0, v1, v2, "scale-means")
    r3 = 3**-0.5
    assert f.tolist()[0] == pytest.approx([0.6 * r3, 0.8 * r3, r3, 0.0, 0.0, r3])
    # the cosine of two such f is the mean of the three scales' cosines
    g = scope_embedding(T([[1.0, 0.0]]), T([[[1.0, 0.0]]]), T([[[1.0, 1.0]]]), "scale-means")
    assert (f @ g.T).item() == pytest.approx((0.6 + 1.0 + 2**-0.5) / 3)
    with pytest.raises(ValueError, match="unknown stage 1 features 'pixels'"):
        scope_embedding(v0, v1, v2, "pixels")


def test_a_scale_means_stage_round_trips_and_its_width_is_checked(tmp_path):
    pos, src, neg = _two_sources()
    wide = lambda x: _pad(x, 3 * 64)  # noqa: E731 - f of a 64-d backbone is 192 wide
    det = fit_detector(wide(pos), src, wide(neg), k=1, alpha=0.8, features="scale-means")
    folder = _saved(tmp_path, det)
    ck = load_checkpoint(folder)
    assert ck.scope.features == "scale-means" and ck.meta["scope"]["features"] == "scale-means"
    x = wide(T([[0.7, 0.7], [-1.0, 0.1]]))
    assert ck.scope.predict(x).in_scope.tolist() == det.predict(x).in_scope.tolist() == [True, False]
    meta = json.loads((folder / "config.json").read_text())
    for bad, why in (("global", "shapes .*192.* for 64-d features"), (["x"], "features must be one of")):
        meta["scope"]["features"] = bad
        (folder / "config.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=why):
            load_checkpoint(folder)
    del meta["scope"]["features"]  # a stage 1 stored before the key existed: the global embedding
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="for 64-d features"):
        load_checkpoint(folder)


def test_the_contrast_test_rejects_what_lies_nearer_a_negative():
    pos, src, neg = _two_sources()
    pos, neg = _pad(pos, 3), torch.cat([_pad(neg, 3), T([[0.5, 0.5, 0.7]])])  # a negative in a pocket off the plane
    det = fit_detector(pos, src, neg, k=1, alpha=0.8, contrast=True)
    # by hand: cos to the pocket is 0.5/0.995 for [1,0,0] and [0,1,0], 0.7/0.995 for the other two, more
    # than to any other negative; LOSO knn [0.6, 0.96, 0.96, 0.6] → contrast [0.0975, 0.2565, 0.2565, 0.0975]
    c = 0.6 - 0.5 / 0.99499, 0.96 - 0.7 / 0.99499
    assert det.calibration["contrast"].tolist() == pytest.approx([c[0], c[0], c[1], c[1]], abs=1e-4)
    # α/3 = 0.267 of N = 4 pooled scores: the ⌊0.267·5⌋ = 1st smallest
    assert det.t_contrast == pytest.approx(c[0], abs=1e-4) and det.t_knn == pytest.approx(0.6)
    x = T([[0.45, 0.45, 0.77], [0.6, 0.8, 0.0]])  # the first lies in the pocket, yet near enough the known images
    r = det.predict(x)
    assert r.knn[0] >= det.t_knn and r.contrast[0] < det.t_contrast
    assert r.in_scope.tolist() == [False, True]
    p = [(1 + (det.calibration[key] <= getattr(r, key)[1]).sum()) / 5 for key in ("knn", "gate", "contrast")]
    assert r.p_value[1] == pytest.approx(min(1.0, 3 * min(p)))


def test_a_stage_with_negatives_round_trips_and_is_checked(tmp_path):
    pos, src, neg = _two_sources()
    det = fit_detector(_pad(pos), src, _pad(neg), k=1, alpha=0.8, contrast=True)
    folder = _saved(tmp_path, det)
    ck = load_checkpoint(folder)
    assert ck.scope.negatives.shape == (3, 64) and ck.meta["scope"]["n_negatives"] == 3
    x = _pad(T([[0.7, 0.7], [-1.0, 0.1]]))
    a, b = det.predict(x), ck.scope.predict(x)
    assert a.in_scope.tolist() == b.in_scope.tolist() and a.contrast == pytest.approx(b.contrast)
    meta = json.loads((folder / "config.json").read_text())
    del meta["scope"]["calibration"]["contrast"]
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="must hold the knn and gate and contrast and min_p scores"):
        load_checkpoint(folder)
