"""Follow-up probes behind the GPU recommendations (bench/results/gpu-h100-probe.md).

The main run (bench/gpu_run.sh → gpu-h100.md) showed that on an H100 the head's training step
and the single-image encoder call are bound by kernel launches / Python dispatch, not by the GPU.
This script measures, in one run, what would change that:

1. one epoch of head training (2,000 cached images, d=512, n=2, 40 classes, batch 32): eager on
   the GPU, ``torch.compile``'d forward+loss on the GPU, and eager on the host CPU;
2. the ViT-B/16 encoder on 21 crops (bf16 autocast): eager vs ``torch.compile`` (default and
   ``reduce-overhead``, i.e. CUDA graphs), under ``no_grad`` (inference mode trips the compiler);
3. where a single image's time goes outside the encoder (decode, view, upsample/cut, head,
   numpy conversion).

    python bench/gpu_probe.py --out OUT [--device cuda] [--tiny] [--seconds 200]

``--tiny`` uses tiny-clip-random and small sizes (a CPU dry run). Each part is skipped when the
time budget is spent; every part's result (or error) is written to OUT/probe.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hvl_core.geometry import split_scales  # noqa: E402
from hvl_core.head import HVLHead  # noqa: E402
from hvl_tools.bench import timing as bench  # noqa: E402


def med_ms(xs):
    return round(statistics.median(xs) * 1000, 3)


def epoch_times(step, batches, device, epochs):
    out = []
    for _ in range(epochs):
        bench._sync(device)
        t = time.perf_counter()
        for b in batches:
            step(*b)
        bench._sync(device)
        out.append(time.perf_counter() - t)
    return out


def probe_training(device, d, n, N, C, epochs, use_compile):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(N, 1 + 5 * n * n, d, generator=g)
    y = torch.randint(0, C, (N,), generator=g)
    text = torch.randn(C, d, generator=g)
    head = HVLHead(d, C, n=n).to(device).train()
    opt = torch.optim.Adam(head.parameters(), lr=0.002)
    t_dev = text.to(device)
    vd, yd = v.to(device), y.to(device)
    perm = torch.randperm(N, generator=g).to(device)
    batches = []
    for s in range(0, N, 32):
        idx = perm[s : s + 32]
        batches.append((*split_scales(vd[idx], n), yd[idx]))

    def loss_fn(v0, v1, v2, yy):
        return head.loss(head(v0, v1, v2, t_dev), yy)["total"]

    fn = torch.compile(loss_fn) if use_compile else loss_fn

    def step(v0, v1, v2, yy):
        loss = fn(v0, v1, v2, yy)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step(*batches[0])
    step(*batches[-1])  # the short last batch (another shape)
    bench._sync(device)
    first = time.perf_counter() - t0
    times = epoch_times(step, batches, device, epochs)
    return {
        "epoch_s": round(statistics.median(times), 4),
        "epochs": epochs,
        "first_two_steps_s": round(first, 2),
        "steps_per_epoch": len(batches),
    }


def probe_encoder(model, device, reps):
    from hvl_core.geometry import hierarchical_crops
    from hvl_core.images import load_image

    visual = model.backbone.model.visual
    paths = bench.synthetic_images(Path(os.environ.get("TMPDIR", "/tmp")) / "hvl-probe", 1, (640, 480))
    crops = hierarchical_crops(load_image(paths[0]).image, 2, model.backbone.image_size)
    x = model.backbone.normalize(crops.to(device))
    out = {}

    def runner(f):
        def run():
            with torch.no_grad(), model._autocast():
                return f(x)

        return run

    eager = runner(visual)
    for _ in range(3):
        eager()
    out["eager_ms"] = med_ms([bench.timed(eager, device) for _ in range(reps)])
    for mode in ("default", "reduce-overhead"):
        try:
            torch._dynamo.reset()
            comp = runner(torch.compile(visual, mode=mode))
            t0 = time.perf_counter()
            for _ in range(3):
                comp()
            bench._sync(device)
            compile_s = time.perf_counter() - t0
            out[mode] = {
                "ms": med_ms([bench.timed(comp, device) for _ in range(reps)]),
                "compile_s": round(compile_s, 1),
            }
            with torch.no_grad():
                ref, got = eager().float(), comp().float()
            out[mode]["min_cosine_to_eager"] = round(
                torch.nn.functional.cosine_similarity(ref, got, -1).min().item(), 5
            )
        except Exception as e:  # noqa: BLE001 - a compiler failure is a result
            out[mode] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return out


def probe_stages(model, device, reps):
    """Median ms of each step of predict() for one 640×480 JPEG."""

    from hvl_core.geometry import grid_cells, square_view, to_tensor01
    from hvl_core.images import load_image

    path = bench.synthetic_images(Path(os.environ.get("TMPDIR", "/tmp")) / "hvl-probe", 1, (640, 480))[0]
    li = load_image(path)
    S, n = model.backbone.image_size, model.n
    view = square_view(li.image, S)
    x = to_tensor01(view)
    xd = x.to(device)
    enc = model.encode(path)
    out_head = model.run_head([enc])

    def upsample_cut():
        parts = [xd.unsqueeze(0)]
        for g in (n, 2 * n):
            big = torch.nn.functional.interpolate(xd.unsqueeze(0), scale_factor=g, mode="bicubic", align_corners=False)[
                0
            ].clamp(0, 1)
            parts.append(grid_cells(big, g))
        return torch.cat(parts)

    def to_numpy():
        return {
            f: getattr(out_head, f).float().cpu().numpy()
            for f in (
                "p0",
                "p1",
                "p2",
                "p_id",
                "msp",
                "p1_patches",
                "p2_patches",
                "entropy1",
                "entropy2",
                "entropy_gain",
            )
        }

    fns = {
        "decode (load_image)": lambda: load_image(path),
        "square_view (PIL resize+crop)": lambda: square_view(li.image, S),
        "to_tensor01": lambda: to_tensor01(view),
        "copy view to device": lambda: x.to(device),
        "upsample + cut on device": upsample_cut,
        "run_head": lambda: model.run_head([enc]),
        "head outputs to numpy": to_numpy,
        "decide (head + Prediction)": lambda: model.decide(enc),
        "predict (all)": lambda: model.predict(path),
    }
    t = bench.interleaved(fns, reps, 2, device)
    return {k: med_ms(v) for k, v in t.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--seconds", type=float, default=200)
    a = ap.parse_args(argv)
    deadline = time.perf_counter() + a.seconds
    device = torch.device(a.device)
    from hvl_core import load_model

    backbone = "tiny-clip-random" if a.tiny else "clip-vit-b16-random"
    d, N, epochs, reps = (64, 128, 2, 5) if a.tiny else (512, 2000, 3, 20)
    res = {"device": bench.device_info(device)["label"], "backbone": backbone, "parts": {}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    def save():
        (out / "probe.json").write_text(json.dumps(res, indent=1) + "\n")
        (out / "probe.md").write_text(render(res))

    def part(name, fn, need_s):
        left = deadline - time.perf_counter()
        if left < need_s:
            res["parts"][name] = {"skipped": f"{left:.0f} s left, needs ~{need_s} s"}
        else:
            t0 = time.perf_counter()
            try:
                res["parts"][name] = fn()
            except Exception as e:  # noqa: BLE001
                res["parts"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            res["parts"][name + " (s)"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(res["parts"][name]), flush=True)
        save()

    model = load_model(backbone, preset="dermatology-isic4", device=device)
    part("stages", lambda: probe_stages(model, device, reps), 10)
    part("train eager (device)", lambda: probe_training(device, d, 2, N, 40, epochs, False), 15)
    part("train eager (host CPU)", lambda: probe_training(torch.device("cpu"), d, 2, N, 40, 2, False), 30)
    part("train compiled (device)", lambda: probe_training(device, d, 2, N, 40, epochs, True), 60)
    part("encoder compile", lambda: probe_encoder(model, device, reps), 60)
    return 0


def render(res) -> str:
    L = [f"# GPU probes — {res['device']} ({res['backbone']})", ""]
    for name, v in res["parts"].items():
        if name.endswith(" (s)"):
            continue
        L += [f"## {name}", "", "```", json.dumps(v, indent=1), "```", ""]
    return "\n".join(L)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
