"""HVLHead against a per-sample, loop-by-loop reference written from HVL_SPEC §2–6."""

import math

import pytest
import torch

from hvl_core.head import HVLConfig, HVLHead


def ref_forward(
    v0,
    v1,
    v2,
    text,
    W,
    b0,
    b2,
    n,
    k,
    tau,
    renormalize=False,
    fusion=True,
    selection="entropy_gain",
    propagate=True,
    entropy_filter=True,
):
    """The spec, one image at a time, with python loops (independent of hvl_core.equations)."""

    def nrm(x):
        return x / x.norm()

    def cos(a, b):
        return float(a @ b) / max(float(a.norm() * b.norm()), 1e-8)

    def logits_of(u, t):
        return torch.tensor([cos(u, t[c]) / tau for c in range(t.shape[0])], dtype=torch.float64)

    def probs(u, t):
        logits = logits_of(u, t)
        e = torch.exp(logits - logits.max())
        return e / e.sum()

    def H(p):
        return -sum(float(pc) * math.log(max(float(pc), 1e-12)) for pc in p)

    outs = []
    for b in range(v0.shape[0]):
        t = torch.stack([nrm(x) for x in text]).double()
        t0, t1, t2 = t + b0, t + (b0 + b2) / 2, t + b2
        adapt = lambda v: torch.clamp(nrm(v).double() @ W, min=0) + nrm(v).double()  # noqa: E731
        u0 = adapt(v0[b])
        u1 = [adapt(x) for x in v1[b]]
        u2 = [adapt(x) for x in v2[b]]
        g = 2 * n
        par = [(r // 2) * n + c // 2 for r in range(g) for c in range(g)]
        if fusion:
            u1h = [u + cos(u, u0) * u0 for u in u1]
            u2h = [u + cos(u, u1h[par[j]]) * u1h[par[j]] for j, u in enumerate(u2)]
        else:
            u1h, u2h = u1, u2
        p0 = probs(u0, t0)
        p1s = [probs(u, t1) for u in u1h]
        p2s = [probs(u, t2) for u in u2h]
        h1 = [H(p) for p in p1s]
        h2 = [H(p) for p in p2s]

        def agg(ps, hs):
            m = sum(hs) / len(hs)
            keep = [(h <= m) if entropy_filter else True for h in hs]
            s = sum(p for p, kk in zip(ps, keep) if kk)
            return s / (sum(keep) if renormalize else len(ps)), keep

        p1, keep1 = agg(p1s, h1)
        p2, keep2 = agg(p2s, h2)
        gain = [h2[j] - h1[par[j]] for j in range(g * g)]
        score = gain if selection == "entropy_gain" else h2
        idx = sorted(range(g * g), key=lambda j: (-score[j], j))[:k]
        q2 = [u2h[j] for j in idx]
        if propagate:
            q1 = [q + sum(cos(q, u) * u for u in u1h) / len(u1h) for q in q2]
            q0 = [q + cos(q, u0) * u0 for q in q1]
        else:
            q1 = q0 = q2
        l_ood = -sum(H(probs(a, t0)) + H(probs(bq, t1)) + H(probs(c, t2)) for a, bq, c in zip(q0, q1, q2)) / len(q2)
        p_id = (p0 + p1 + p2) / 3
        outs.append(
            dict(
                p0=p0,
                p1=p1,
                p2=p2,
                p_id=p_id,
                msp=float(p_id.max()),
                h1=h1,
                h2=h2,
                keep1=keep1,
                keep2=keep2,
                gain=gain,
                idx=idx,
                l_ood=l_ood,
                z0=logits_of(u0, t0),
                z1=[logits_of(u, t1) for u in u1h],
                z2=[logits_of(u, t2) for u in u2h],
            )
        )
    return outs


def random_head(n, C, d=6, seed=0, trained=True, **options):
    torch.manual_seed(seed)
    head = HVLHead(d, C, n=n, **options).double()
    if trained:  # non-zero parameters so the adapter and biases matter
        with torch.no_grad():
            head.W.normal_(0, 0.3)
            head.b0.normal_(0, 0.2)
            head.b2.normal_(0, 0.2)
    B = 2
    v0 = torch.randn(B, d, dtype=torch.float64)
    v1 = torch.randn(B, n * n, d, dtype=torch.float64)
    v2 = torch.randn(B, 4 * n * n, d, dtype=torch.float64)
    text = torch.randn(C, d, dtype=torch.float64)
    return head, (v0, v1, v2, text)


def check_against_reference(head, inputs, **ref_opts):
    out = head(*inputs)
    cfg = head.config
    refs = ref_forward(*inputs, head.W.detach(), head.b0.detach(), head.b2.detach(), cfg.n, cfg.k, cfg.tau, **ref_opts)
    for b, r in enumerate(refs):
        for name in ("p0", "p1", "p2", "p_id"):
            assert torch.allclose(getattr(out, name)[b], r[name], atol=1e-9), name
        assert out.msp[b].item() == pytest.approx(r["msp"], abs=1e-9)
        assert torch.allclose(out.entropy1[b], torch.tensor(r["h1"], dtype=torch.float64), atol=1e-9)
        assert torch.allclose(out.entropy2[b], torch.tensor(r["h2"], dtype=torch.float64), atol=1e-9)
        assert out.keep1[b].tolist() == [bool(x) for x in r["keep1"]]
        assert out.keep2[b].tolist() == [bool(x) for x in r["keep2"]]
        assert torch.allclose(out.entropy_gain[b], torch.tensor(r["gain"], dtype=torch.float64), atol=1e-9)
        assert out.pseudo_ood[b].tolist() == r["idx"]
    labels = torch.zeros(inputs[0].shape[0], dtype=torch.long)
    loss = head.loss(out, labels)
    want_ood = sum(r["l_ood"] for r in refs) / len(refs)
    if head.config.use_ood_loss:
        assert loss["ood"].item() == pytest.approx(want_ood, abs=1e-9)
    # the exact −log p_y (§10: no clamp at 1e-12, whose zero gradient froze images that fell under it)
    want_id = sum(-math.log(float(r[s][0])) for r in refs for s in ("p0", "p1", "p2")) / len(refs)
    assert loss["id"].item() == pytest.approx(want_id, rel=1e-9, abs=1e-9)
    return out, loss


@pytest.mark.parametrize("n,C", [(1, 2), (1, 5), (2, 3), (2, 5), (3, 4)])
def test_head_matches_the_reference(n, C):
    head, inputs = random_head(n, C, tau=0.5, k=3)
    check_against_reference(head, inputs)


@pytest.mark.parametrize(
    "switch,ref_opts",
    [
        ({"fusion": False}, {"fusion": False}),
        ({"pseudo_ood_selection": "entropy"}, {"selection": "entropy"}),
        ({"propagate": False}, {"propagate": False}),
        ({"renormalize": True}, {"renormalize": True}),
        ({"entropy_filter": False}, {"entropy_filter": False}),
    ],
)
def test_every_ablation_switch_matches_the_reference(switch, ref_opts):
    head, inputs = random_head(2, 4, tau=0.3, k=4, **switch)
    out, _ = check_against_reference(head, inputs, **ref_opts)
    base, _ = random_head(2, 4, tau=0.3, k=4)
    # The switch changes something observable on the same inputs.
    base_out = base(*inputs)
    changed = any(
        not torch.equal(getattr(out, f), getattr(base_out, f)) for f in ("p1", "p2", "pseudo_ood", "keep1", "keep2")
    )
    changed = changed or not torch.allclose(
        base.loss(base_out, torch.zeros(2, dtype=torch.long))["ood"],
        head.loss(out, torch.zeros(2, dtype=torch.long))["ood"],
    )
    assert changed


def test_no_ood_loss_switch_zeroes_l_ood():
    head, inputs = random_head(2, 3, use_ood_loss=False)
    loss = head.loss(head(*inputs), torch.tensor([0, 1]))
    assert loss["ood"].item() == 0.0
    assert loss["total"].item() == pytest.approx(loss["id"].item())


def test_lambda_ood_weights_the_total():
    head, inputs = random_head(2, 3, lambda_ood=0.25)
    loss = head.loss(head(*inputs), torch.tensor([0, 1]))
    assert loss["total"].item() == pytest.approx(loss["id"].item() + 0.25 * loss["ood"].item())


def test_parameters_are_exactly_W_b0_b2_and_zero_initialised():
    head = HVLHead(8, 3)
    shapes = {k: tuple(v.shape) for k, v in head.named_parameters()}
    assert shapes == {"W": (8, 8), "b0": (3, 8), "b2": (3, 8)}
    assert all(float(p.detach().abs().sum()) == 0 for p in head.parameters())


def test_untrained_head_is_zero_shot_multiscale_clip():
    head, (v0, v1, v2, text) = random_head(2, 4, trained=False, tau=0.01)
    out = head(v0, v1, v2, text)
    t = torch.nn.functional.normalize(text, dim=-1)
    # scale 0: MCM's zero-shot softmax of cosine similarities
    mcm = torch.softmax(torch.nn.functional.normalize(v0, dim=-1) @ t.T / 0.01, dim=-1)
    assert torch.allclose(out.p0, mcm, atol=1e-12)
    # and the whole pass equals the reference with W = b = 0
    check_against_reference(head, (v0, v1, v2, text))


def test_gradients_reach_W_b0_b2_through_both_losses():
    for which in ("id", "ood"):
        head, inputs = random_head(2, 3, trained=False, tau=0.1)
        head.float()
        inputs = tuple(x.float() for x in inputs)
        loss = head.loss(head(*inputs), torch.tensor([0, 2]))[which]
        loss.backward()
        for name in ("W", "b0", "b2"):
            g = getattr(head, name).grad
            assert g is not None and float(g.abs().sum()) > 0, (which, name)


def test_one_training_step_lowers_the_loss_from_zero_init():
    head, inputs = random_head(1, 3, trained=False, tau=0.1, d=8)
    head.float()
    inputs = tuple(x.float() for x in inputs)
    labels = torch.tensor([0, 1])
    opt = torch.optim.Adam(head.parameters(), lr=0.01)
    first = head.loss(head(*inputs), labels)["id"].item()
    for _ in range(20):
        opt.zero_grad()
        head.loss(head(*inputs), labels)["id"].backward()
        opt.step()
    assert head.loss(head(*inputs), labels)["id"].item() < first
    assert float(head.W.detach().abs().sum()) > 0  # the zero-initialised adapter moved


def test_per_call_overrides_change_k_and_filter_but_not_n():
    head, inputs = random_head(2, 3)
    assert head(*inputs, k=2).pseudo_ood.shape == (2, 2)
    assert head(*inputs).pseudo_ood.shape == (2, 4)
    assert bool(head(*inputs, entropy_filter=False).keep2.all())
    with pytest.raises(ValueError, match="n is fixed"):
        head(*inputs, n=3)


def test_wrong_shapes_are_refused_with_a_clear_message():
    head, (v0, v1, v2, text) = random_head(2, 3)
    with pytest.raises(ValueError, match="patches"):
        head(v0, v1[:, :3], v2, text)
    with pytest.raises(ValueError, match="text embeddings"):
        head(v0, v1, v2, text[:2])


def test_negative_classes_share_the_softmax_but_not_the_decision():
    torch.manual_seed(1)
    head = HVLHead(6, 2, n=1, num_negatives=2, tau=0.5).double()
    v0, v1, v2 = torch.randn(1, 6).double(), torch.randn(1, 1, 6).double(), torch.randn(1, 4, 6).double()
    text = torch.randn(4, 6).double()
    out = head(v0, v1, v2, text)
    assert out.p0.shape == (1, 2) and out.p_id.shape == (1, 2)
    full = torch.softmax(
        torch.nn.functional.normalize(v0, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T / 0.5, -1
    )
    assert torch.allclose(out.p0, full[:, :2], atol=1e-12)  # ID columns of the 4-way softmax
    assert float(out.p0.detach().sum()) < 1


@pytest.mark.parametrize(
    "bad", [dict(n=0), dict(k=0), dict(tau=0), dict(pseudo_ood_selection="random"), dict(similarity="dot")]
)
def test_invalid_options_are_refused(bad):
    with pytest.raises(ValueError):
        HVLConfig(**bad)


def test_config_round_trips_through_a_dict():
    cfg = HVLConfig(n=3, k=2, renormalize=True, fusion=False)
    assert HVLConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown HVL options"):
        HVLConfig.from_dict({"n": 2, "bogus": 1})


# --- §9 scores ----------------------------------------------------------------------------------


def ref_logit_score(r, name, T=1.0):
    """§9 by loops: per-patch E = T·log Σ exp(s/T) (or max s), mean over kept patches, mean of scales."""

    def f(z):
        z = [float(x) for x in z]
        return T * math.log(sum(math.exp(x / T) for x in z)) if name == "energy" else max(z)

    def kept(zs, keep):
        vals = [f(z) for z, kk in zip(zs, keep) if kk]
        return sum(vals) / len(vals)

    s0, s1, s2 = f(r["z0"]), kept(r["z1"], r["keep1"]), kept(r["z2"], r["keep2"])
    return s0, (s0 + s1 + s2) / 3


@pytest.mark.parametrize("name,T", [("energy", 1.0), ("energy", 0.5), ("maxlogit", 1.0)])
@pytest.mark.parametrize("entropy_filter", [True, False])
def test_logit_scores_match_the_reference(name, T, entropy_filter):
    head, inputs = random_head(2, 4, tau=0.5, score=name, energy_t=T, entropy_filter=entropy_filter)
    out = head(*inputs)
    refs = ref_forward(
        *inputs, head.W.detach(), head.b0.detach(), head.b2.detach(), 2, 4, 0.5, entropy_filter=entropy_filter
    )
    for b, r in enumerate(refs):
        whole, fused = ref_logit_score(r, name, T)
        assert out.score0[b].item() == pytest.approx(whole, abs=1e-9)
        assert out.score[b].item() == pytest.approx(fused, abs=1e-9)
        assert out.msp[b].item() == pytest.approx(r["msp"], abs=1e-9)  # MSP is still reported


def test_msp_score_is_max_p_id_and_its_whole_image_version_max_p0():
    head, inputs = random_head(2, 3)
    out = head(*inputs)
    assert torch.equal(out.score, out.msp)
    assert torch.allclose(out.score0, out.p0.max(-1).values)


def test_logit_scores_ignore_negative_classes_but_msp_does_not():
    torch.manual_seed(3)
    v0, v1, v2 = torch.randn(1, 6).double(), torch.randn(1, 1, 6).double(), torch.randn(1, 4, 6).double()
    text = torch.randn(3, 6).double()
    with_neg = HVLHead(6, 2, n=1, num_negatives=1, tau=0.5, score="energy").double()
    alone = HVLHead(6, 2, n=1, tau=0.5, score="energy").double()
    a = with_neg(v0, v1, v2, text, entropy_filter=False)
    b = alone(v0, v1, v2, text[:2], entropy_filter=False)
    assert torch.allclose(a.score, b.score, atol=1e-12)  # the negative row never enters the energy
    assert not torch.allclose(a.msp, b.msp)  # it does take a share of the softmax


def test_negative_and_kept_mass_account_for_every_distribution():
    torch.manual_seed(1)
    head = HVLHead(6, 2, n=2, num_negatives=3, tau=0.3).double()
    v0, v1, v2 = torch.randn(2, 6).double(), torch.randn(2, 4, 6).double(), torch.randn(2, 16, 6).double()
    out = head(v0, v1, v2, torch.randn(5, 6).double())
    assert out.neg0.shape == (2, 3) and out.neg1.shape == (2, 3)
    assert torch.allclose(out.p0.sum(-1) + out.neg0.sum(-1), torch.ones(2, dtype=torch.float64))
    # p¹ + negatives = the kept fraction of the mid patches (the spec's divide-by-all)
    assert torch.allclose(out.p1.sum(-1) + out.neg1.sum(-1), out.keep1.double().mean(-1))
    assert torch.allclose(out.p2.sum(-1) + out.neg2.sum(-1), out.keep2.double().mean(-1))


@pytest.mark.parametrize("bad", [dict(score="auroc"), dict(energy_t=0), dict(energy_t=float("nan"))])
def test_invalid_scores_are_refused_with_a_score_error(bad):
    from hvl_core.head import ScoreError

    with pytest.raises(ScoreError):
        HVLConfig(**bad)


def test_score_ranges_by_hand():
    from hvl_core.head import score_range

    assert score_range(HVLConfig(), 4) == (0.0, 1.0)
    assert score_range(HVLConfig(score="maxlogit", tau=0.01), 4) == pytest.approx((-100.0, 100.0))
    assert score_range(HVLConfig(score="energy", tau=0.5, energy_t=2.0), 4) == pytest.approx(
        (-2 + 2 * math.log(4), 2 + 2 * math.log(4))
    )
    assert score_range(HVLConfig(score="energy", similarity="linear"), 4) == (-math.inf, math.inf)


@pytest.mark.parametrize(
    "cfg,thr,match",
    [
        (HVLConfig(), float("nan"), "finite"),
        (HVLConfig(), 1.5, "outside the range of the msp score"),
        (HVLConfig(), -0.1, "outside the range"),
        (HVLConfig(score="maxlogit", tau=0.01), 150.0, r"\[-100, 100\]"),
        (HVLConfig(score="energy", similarity="linear"), float("inf"), "finite"),
        (HVLConfig(), "high", "must be a number"),
    ],
)
def test_thresholds_that_do_not_fit_the_score_are_refused(cfg, thr, match):
    from hvl_core.head import ScoreError, check_threshold

    with pytest.raises(ScoreError, match=match):
        check_threshold(thr, cfg, 4)


def test_thresholds_that_fit_are_returned_as_floats():
    from hvl_core.head import check_threshold

    assert check_threshold(0, HVLConfig(), 4) == 0.0 and check_threshold("0.25", HVLConfig(), 4) == 0.25
    assert check_threshold(-40.5, HVLConfig(score="energy", similarity="linear"), 4) == -40.5
