"""Eq. 1–5 and the parent map against hand-computed values (HVL_SPEC §1–6)."""

import math

import pytest
import torch

from hvl_core import equations as eq

T = torch.tensor
S2 = 1 / math.sqrt(2)


def close(a, b, tol=1e-5):
    assert torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol), (
        a,
        b,
    )


# --- §1 parent map j* ---------------------------------------------------------------------------


def test_parent_index_n1_all_cells_share_the_single_mid_patch():
    assert eq.parent_index(1).tolist() == [0, 0, 0, 0]


def test_parent_index_n2_by_hand():
    # 4×4 high grid over a 2×2 mid grid, row-major
    assert eq.parent_index(2).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]


def test_parent_index_n3_first_and_last_rows_by_hand():
    p = eq.parent_index(3).view(6, 6)
    assert p[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert p[5].tolist() == [6, 6, 7, 7, 8, 8]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_parent_index_every_mid_cell_has_exactly_its_four_children(n):
    p = eq.parent_index(n)
    assert p.shape == (4 * n * n,)
    g = 2 * n
    for j, parent in enumerate(p.tolist()):
        r, c = divmod(j, g)
        pr, pc = divmod(parent, n)
        assert (pr, pc) == (r // 2, c // 2)
    assert torch.bincount(p, minlength=n * n).tolist() == [4] * (n * n)


def test_parent_index_rejects_n0():
    with pytest.raises(ValueError):
        eq.parent_index(0)


# --- §2 cosine, adapter, texts ------------------------------------------------------------------


def test_cosine_by_hand_and_zero_vector():
    close(eq.cosine(T([3.0, 4.0]), T([4.0, 3.0])), 24 / 25)
    close(eq.cosine(T([0.0, 0.0]), T([1.0, 0.0])), 0.0)  # |a||b| clamped at 1e-8: no NaN


def test_cosine_matrix_by_hand():
    x = T([[1.0, 0.0], [1.0, 1.0]])
    t = T([[2.0, 0.0], [0.0, 3.0]])
    close(eq.cosine_matrix(x, t), [[1.0, 0.0], [S2, S2]])


def test_adapter_by_hand():
    v = T([[1.0, -2.0]])
    close(eq.adapter(v, torch.eye(2)), [[2.0, -2.0]])  # ReLU([1,-2]) + v
    close(eq.adapter(v, T([[0.0, 1.0], [1.0, 0.0]])), [[1.0, -1.0]])  # ReLU([-2,1]) + v
    close(eq.adapter(v, torch.zeros(2, 2)), v)  # W = 0 is the identity


def test_adapter_zero_W_still_gets_a_gradient():
    W = torch.zeros(2, 2, requires_grad=True)
    eq.adapter(T([[1.0, 2.0]]), W).sum().backward()
    # d/dW of ReLU(vW) at 0 with right-derivative 1: outer(v, 1)
    close(W.grad, [[1.0, 1.0], [2.0, 2.0]])


def test_scale_texts_mid_bias_is_the_mean():
    t, b0, b2 = T([[1.0, 1.0]]), T([[2.0, 0.0]]), T([[0.0, 4.0]])
    t0, t1, t2 = eq.scale_texts(t, b0, b2)
    close(t0, [[3.0, 1.0]])
    close(t1, [[2.0, 3.0]])
    close(t2, [[1.0, 5.0]])


# --- Eq. 1 fusion -------------------------------------------------------------------------------


def test_fuse_scales_orthogonal_parent_leaves_patch_unchanged():
    u0 = T([[1.0, 0.0]])
    u1 = T([[[0.0, 1.0]]])  # n = 1; cos(u1, u0) = 0 → û1 = u1
    u2 = T([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0]]])
    u1h, u2h = eq.fuse_scales(u0, u1, u2, eq.parent_index(1))
    close(u1h, u1)
    # û2_j = u2_j + cos(u2_j, û1)·û1 with û1 = [0, 1]
    close(u2h, [[[1.0, 0.0], [1.0, 1.0 + S2], [0.0, 3.0], [0.0, 0.0]]])


def test_fuse_scales_uses_the_fused_parent():
    u0 = T([[1.0, 0.0]])
    u1 = T([[[1.0, 1.0]]])
    u2 = T([[[0.0, 1.0]] * 4])
    u1h, u2h = eq.fuse_scales(u0, u1, u2, eq.parent_index(1))
    p = [1 + S2, 1.0]  # û1 = u1 + cos(u1,u0)·u0 = [1 + 1/√2, 1]
    close(u1h, [[p]])
    c = 1.0 / math.hypot(*p)  # cos([0,1], û1) = p[1] / |û1|
    close(u2h[0, 0], [c * p[0], 1 + c * p[1]])
    # With the *unfused* parent the answer would differ (cos = 1/√2): the test can tell.
    assert abs(c - S2) > 0.1


def test_fuse_scales_n2_routes_each_cell_to_its_own_parent():
    d = 4
    u0 = torch.zeros(1, d)  # no scale-0 context → û1 = u1
    u1 = torch.eye(d).unsqueeze(0)  # mid patch i = e_i
    u2 = torch.eye(d)[eq.parent_index(2)].unsqueeze(0)  # each high cell equals its parent's e_i
    _, u2h = eq.fuse_scales(u0, u1, u2, eq.parent_index(2))
    close(u2h, 2 * u2)  # cos = 1 with its own parent; would be 0 with any other


# --- Eq. 2–3 ------------------------------------------------------------------------------------


def test_class_probs_by_hand():
    p = eq.class_probs(T([[1.0, 0.0]]), T([[1.0, 0.0], [0.0, 1.0]]), tau=1.0)
    e = math.e
    close(p, [[e / (e + 1), 1 / (e + 1)]])
    p = eq.class_probs(T([[1.0, 0.0]]), T([[1.0, 0.0], [0.0, 1.0]]), tau=0.5)
    close(p, [[e**2 / (e**2 + 1), 1 / (e**2 + 1)]])


def test_class_probs_linear_with_bias_by_hand():
    p = eq.class_probs(
        T([[2.0, 0.0]]), T([[1.0, 0.0], [0.0, 1.0]]), tau=1.0, logit_bias=T([0.0, 2.0]), similarity="linear"
    )
    close(p, [[0.5, 0.5]])  # logits [2, 0] + bias [0, 2] = [2, 2]


def test_entropy_by_hand():
    close(eq.entropy(T([0.5, 0.5])), math.log(2))
    close(eq.entropy(T([1.0, 0.0])), 0.0)
    close(eq.entropy(T([0.25] * 4)), math.log(4))
    close(eq.entropy(T([0.9, 0.1])), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))


def test_entropy_filter_keeps_patches_at_or_below_the_mean():
    assert eq.entropy_filter(T([[1.0, 2.0, 3.0]])).tolist() == [[True, True, False]]
    assert eq.entropy_filter(T([[0.7, 0.7, 0.7, 0.7]])).tolist() == [[True] * 4]  # ties: all kept
    assert eq.entropy_filter(T([[0.1, 5.0, 5.0, 5.0]])).tolist() == [[True, False, False, False]]


def test_aggregate_divides_by_all_patches_unless_renormalized():
    p = T([[[0.8, 0.2], [0.5, 0.5]]])
    keep = T([[True, False]])
    close(eq.aggregate_patches(p, keep), [[0.4, 0.1]])  # sums to 0.5 < 1, as the paper writes
    close(eq.aggregate_patches(p, keep, renormalize=True), [[0.8, 0.2]])


def test_cross_entropy_and_id_loss_by_hand():
    y = T([1])
    close(eq.cross_entropy(T([[0.25, 0.75]]).log(), y), [-math.log(0.75)])
    p0, p1, p2 = T([[0.5, 0.5], [0.9, 0.1]]), T([[0.2, 0.6], [0.3, 0.1]]), T([[0.1, 0.9], [0.4, 0.4]])
    y = T([1, 0])
    want = ((-math.log(0.5) - math.log(0.6) - math.log(0.9)) + (-math.log(0.9) - math.log(0.3) - math.log(0.4))) / 2
    close(eq.id_loss(p0.log(), p1.log(), p2.log(), y), want)


def test_log_aggregate_is_the_log_of_the_aggregate():
    p = T([[[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]]])
    keep = T([[True, False, True]])
    close(eq.log_aggregate_patches(p.log(), keep).exp(), [[0.9 / 3, 1.1 / 3]])  # divide by all 3
    close(eq.log_aggregate_patches(p.log(), keep, renormalize=True).exp(), [[0.45, 0.55]])
    close(eq.log_aggregate_patches(p.log(), keep), eq.aggregate_patches(p, keep).log())


def test_id_loss_keeps_a_gradient_where_p_y_is_1e_30():
    # §10: with p_y = 1e-30 the old −log(clamp(p_y, 1e-12)) had gradient 0, so the image never learned
    z = torch.tensor([[0.0, 69.0776]], dtype=torch.float64, requires_grad=True)  # p_0 = e^-69.08 ≈ 1e-30
    logp = torch.log_softmax(z, -1)
    assert logp[0, 0].exp().item() == pytest.approx(1e-30, rel=1e-3)
    y = T([0])
    loss = eq.id_loss(logp, logp, logp, y)
    assert loss.item() == pytest.approx(3 * 69.0776, rel=1e-6)  # 3 × −log(1e-30), not 3 × −log(1e-12)
    (g,) = torch.autograd.grad(loss, z)
    assert g[0, 0].item() == pytest.approx(-3.0, rel=1e-6)  # ∂(−log softmax_0)/∂z_0 = p_0 − 1 ≈ −1, per scale
    # the patch mean too: one kept patch at 1e-30, the mean of the log domain still moves
    zp = torch.tensor([[[0.0, 69.0776], [0.0, 69.0776]]], dtype=torch.float64, requires_grad=True)
    lp = eq.log_aggregate_patches(torch.log_softmax(zp, -1), T([[True, True]]))
    (gp,) = torch.autograd.grad(eq.cross_entropy(lp, y).sum(), zp)
    assert gp[0, :, 0].abs().min().item() > 0.4


# --- Eq. 4–5 ------------------------------------------------------------------------------------


def test_entropy_gain_by_hand():
    h1 = T([[0.5]])
    h2 = T([[0.1, 0.9, 0.5, 0.6]])
    close(eq.entropy_gain(h2, h1, eq.parent_index(1)), [[-0.4, 0.4, 0.0, 0.1]])
    h1 = T([[1.0, 2.0, 3.0, 4.0]])
    h2 = torch.full((1, 16), 2.5)
    gain = eq.entropy_gain(h2, h1, eq.parent_index(2)).view(4, 4)
    close(gain, [[1.5, 1.5, 0.5, 0.5], [1.5, 1.5, 0.5, 0.5], [-0.5, -0.5, -1.5, -1.5], [-0.5, -0.5, -1.5, -1.5]])


def test_select_pseudo_ood_top_k_ties_lower_index_first():
    s = T([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert eq.select_pseudo_ood(s, 2).tolist() == [[1, 2], [0, 1]]
    assert eq.select_pseudo_ood(s, 3).tolist() == [[1, 2, 3], [0, 1, 2]]
    assert eq.select_pseudo_ood(s, 10).shape == (2, 4)  # K capped at the number of patches


def test_propagate_pseudo_ood_by_hand_n1():
    q2 = T([[[0.0, 1.0]]])
    u1h = T([[[1.0, 0.0]]])  # orthogonal: q1 = q2
    u0 = T([[1.0, 1.0]])
    q1, q0 = eq.propagate_pseudo_ood(q2, u1h, u0)
    close(q1, q2)
    close(q0, [[[S2, 1 + S2]]])  # q1 + cos(q1,u0)·u0


def test_propagate_pseudo_ood_averages_over_all_mid_patches_n2():
    q2 = T([[[1.0, 0.0]]])
    u1h = T([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    q1, _ = eq.propagate_pseudo_ood(q2, u1h, torch.zeros(1, 2))
    close(q1, [[[1.5, 0.0]]])  # q2 + (1/4)(1·[1,0] + 0 + 1·[1,0] + 0)


def test_ood_loss_is_minus_the_summed_entropies():
    u = torch.full((1, 3, 2), 0.5)  # B=1, K=3, C=2 uniform
    close(eq.ood_loss(u, u, u), -3 * math.log(2))
    sure = T([[[1.0, 0.0]]])
    close(eq.ood_loss(sure, sure, u[:, :1]), -math.log(2))


def test_fused_prediction_and_msp():
    p0, p1, p2 = T([[0.9, 0.1]]), T([[0.3, 0.2]]), T([[0.0, 0.6]])
    close(eq.fused_prediction(p0, p1, p2), [[0.4, 0.3]])
    close(eq.msp(eq.fused_prediction(p0, p1, p2)), [0.4])


# --- §9 scores ----------------------------------------------------------------------------------


def test_class_logits_by_hand_and_class_probs_is_their_softmax():
    u, t = T([[1.0, 0.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    close(eq.class_logits(u, t, tau=0.5), [[2.0, 0.0]])  # cos / tau
    close(eq.class_logits(T([[2.0, 0.0]]), t, tau=2.0, logit_bias=T([0.0, 2.0]), similarity="linear"), [[1.0, 1.0]])
    close(eq.class_probs(u, t, tau=0.5), torch.softmax(T([[2.0, 0.0]]), -1))


def test_energy_by_hand():
    close(eq.energy(T([0.0, 0.0])), math.log(2))  # logsumexp of two zeros
    close(eq.energy(T([1.0, 2.0, 3.0])), math.log(math.e + math.e**2 + math.e**3))
    # T = 2: 2 · log(e^{1/2} + e^{3/2})
    close(eq.energy(T([1.0, 3.0]), T=2.0), 2 * math.log(math.exp(0.5) + math.exp(1.5)))
    # per patch over the last dim; a large logit dominates: E ≈ max
    close(eq.energy(T([[[100.0, 0.0], [-5.0, -5.0]]])), [[100.0, -5.0 + math.log(2)]], tol=1e-4)


def test_max_logit_by_hand():
    close(eq.max_logit(T([[1.0, -2.0, 0.5], [-3.0, -1.0, -2.0]])), [1.0, -1.0])


def test_kept_mean_divides_by_the_kept_patches_not_all():
    x = T([[2.0, 4.0, 9.0], [-1.0, -3.0, 5.0]])
    keep = T([[True, True, False], [False, True, False]])
    close(eq.kept_mean(x, keep), [3.0, -3.0])  # (2+4)/2; −3/1 — an energy of 0 is not neutral
    close(eq.kept_mean(x, torch.ones_like(keep)), [5.0, 1 / 3])  # filter off: all patches


def test_fused_score_is_the_mean_of_the_three_scales():
    close(eq.fused_score(T([3.0]), T([-1.0]), T([4.0])), [2.0])


def test_energy_orders_far_images_below_near_ones_where_msp_saturates():
    # the case: a retina far from every class (logits ≈ −12) vs a skin photo (≈ +1);
    # both have one logit far above the rest, so MSP ≈ 1 for both, but energy keeps the distance
    far, near = T([-11.7, -30.0, -30.0]), T([1.2, -20.0, -20.0])
    assert torch.softmax(far, -1).max() > 0.999 and torch.softmax(near, -1).max() > 0.999
    assert eq.energy(near) - eq.energy(far) > 12
