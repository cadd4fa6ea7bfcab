"""The speed paths behind hvl score and the trainer: the training step (losses stay on the device,
one host read per epoch), and on CUDA the nvjpeg decoder, pinned batches and a sync-free step
(those run where a GPU is: bench/gpu_run.sh runs this file)."""

import numpy as np
import pytest
import torch

from hvl_core.geometry import split_scales
from hvl_core.head import HVLHead
from hvl_tools.config import TrainConfig
from hvl_tools.features import FeatureSet
from hvl_tools.train import make_train_step, train_head

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _data(N=20, d=16, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, 21, d, generator=g), torch.randint(0, C, (N,), generator=g), torch.randn(C, d, generator=g)


def test_train_step_returns_the_losses_of_the_batch_and_steps_once():
    v, y, text = _data()
    head = HVLHead(16, 3)
    with torch.no_grad():
        head.W.normal_(0, 0.1)
    ref = HVLHead(16, 3)
    ref.load_state_dict(head.state_dict())
    with torch.no_grad():
        expect = ref.loss(ref(*split_scales(v[:8], 2), text), y[:8])
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    got = make_train_step(head, opt, text, None)(v[:8], y[:8])
    assert got.shape == (3,) and not got.requires_grad
    assert torch.allclose(got, torch.stack([expect["id"], expect["ood"], expect["total"]]), atol=1e-6)
    # one SGD step: W moved by -lr * grad of the total loss
    W0 = ref.W.detach().clone()
    ref.loss(ref(*split_scales(v[:8], 2), text), y[:8])["total"].backward()
    assert torch.allclose(head.W, W0 - 0.1 * ref.W.grad, atol=1e-6)


def test_epoch_losses_are_the_sample_weighted_mean_of_the_steps():
    v, y, text = _data(N=20)
    cfg = TrainConfig(epochs=1, batch_size=8, scheduler="constant")
    fs = FeatureSet(v=v, paths=[str(i) for i in range(20)], labels=y, groups=[""] * 20)
    head = HVLHead(16, 3)
    hist = train_head(head, text, None, fs, cfg, progress=False).history
    # the same epoch by hand: same permutation, same optimizer
    hand = HVLHead(16, 3)
    opt = torch.optim.Adam(hand.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = make_train_step(hand, opt, text, None)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(cfg.seed))
    total = sum(float(step(v[perm[s : s + 8]], y[perm[s : s + 8]])[2]) * len(perm[s : s + 8]) for s in range(0, 20, 8))
    assert hist[0]["loss"] == pytest.approx(total / 20, rel=1e-5)
    assert torch.allclose(head.W, hand.W, atol=1e-6)


@cuda
def test_cuda_train_step_never_waits_for_the_device():
    v, y, text = (t.cuda() for t in _data(N=64, d=64))
    head = HVLHead(64, 3).cuda()
    step = make_train_step(head, torch.optim.Adam(head.parameters(), lr=0.002), text, None)
    step(v[:32], y[:32])  # warm-up (lazy init may sync once)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for s in range(0, 64, 32):
            step(v[s : s + 32], y[s : s + 32])
    finally:
        torch.cuda.set_sync_debug_mode("default")


@cuda
def test_nvjpeg_views_are_close_to_pil(tmp_path):
    from hvl_tools.bench.timing import synthetic_images
    from hvl_tools.score.views import decode_item, decode_jpegs, decode_view

    files = synthetic_images(tmp_path, 3, (300, 200))
    blobs = [decode_item(str(f), 224, 2, "upsample", on_device=True).jpeg for f in files]
    views = decode_jpegs(blobs, 224, torch.device("cuda"))
    for f, v in zip(files, views):
        ref = torch.from_numpy(np.array(decode_view(str(f), 224).view)).cuda().permute(2, 0, 1)
        assert v.is_cuda and v.shape == (3, 224, 224)
        assert (v.int() - ref.int()).abs().float().mean() < 2.0


@cuda
def test_scores_on_cuda_match_predict(tmp_path):
    from hvl_core import load_model
    from hvl_tools.bench.timing import synthetic_images
    from hvl_tools.score import ModelSpec, score_archive
    from hvl_tools.score.results import read_scores

    files = synthetic_images(tmp_path / "in", 6, (200, 160))
    model = load_model("tiny-clip-random", preset="dermatology-isic4", device="cuda")
    spec = ModelSpec(backbone="tiny-clip-random", preset="dermatology-isic4", device="cuda")
    score_archive(
        [str(tmp_path / "in")],
        tmp_path / "out",
        spec,
        batch_size=4,
        workers=1,
        progress=False,
        model=model,
        decode="cpu",
    )
    rows = {r["path"]: r for r in read_scores(tmp_path / "out" / "scores.csv")}
    for f, p in zip(files, model.predict_batch([str(f) for f in files], batch_size=4)):
        assert rows[str(f)]["label"] == p.label and rows[str(f)]["msp"] == pytest.approx(p.msp, abs=2e-3)
