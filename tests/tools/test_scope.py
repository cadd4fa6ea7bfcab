"""Stage 1 (HVL_SPEC §11), fitted and stored: KNN bank, outlier-exposure gate, pooled leave-one-source-out thresholds."""

import json

import numpy as np
import pytest
import torch

from hvl_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hvl_core.head import HVLHead
from hvl_core.presets import class_set_from_names
from hvl_core.scope import SCOPE_WEIGHTS, gate_logodds, knn_similarity, stage_pvalue, unit
from hvl_tools.scope_eval import fit_detector, fit_gate, loso_scores

T = torch.tensor


def test_knn_is_the_cosine_to_the_kth_nearest_by_hand():
    bank = T([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    f = T([[1.0, 0.0], [0.0, 1.0]])
    # sims of [1,0]: 1, 0, 0.6 → 2nd nearest 0.6; of [0,1]: 0, 1, 0.8 → 2nd nearest 0.8
    assert knn_similarity(f, bank, 2).tolist() == pytest.approx([0.6, 0.8])
    assert knn_similarity(f, bank, 10).tolist() == pytest.approx([0.0, 0.0])  # k > N: the farthest


def test_stage_pvalue_is_bonferroni_over_the_two_tests():
    assert stage_pvalue(np.array([0.3, 0.9, 0.6]), np.array([0.01, 0.2, 0.7])).tolist() == pytest.approx(
        [0.02, 0.4, 1.0]
    )


def _two_sources():
    pos = T([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    return pos, ["A", "A", "B", "B"], T([[-1.0, 0.0], [0.0, -1.0], [-0.6, -0.8]])


def test_loso_knn_scores_and_threshold_by_hand():
    pos, src, neg = _two_sources()
    knn, gate = loso_scores(pos, src, neg, k=1)
    # A's rows against B's bank: [1,0]→max(0.6, 0)=0.6, [0.8,0.6]→max(0.96, 0.6)=0.96; B's against A's: 0.96, 0.6
    assert knn.tolist() == pytest.approx([0.6, 0.96, 0.96, 0.6])
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
    # p = min(1, 2·min(p_knn, p_gate)), p = (1 + #{cal ≤ s}) / (N + 1)
    p_knn = (1 + (det.calibration["knn"] <= r.knn[0]).sum()) / 5
    p_gate = (1 + (det.calibration["gate"] <= r.gate[0]).sum()) / 5
    assert r.p_value[0] == pytest.approx(min(1.0, 2 * min(p_knn, p_gate)))


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
