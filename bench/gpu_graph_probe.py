"""Second GPU follow-up (bench/results/gpu-h100-graph.md): can the cached-feature training step
escape kernel-launch overhead, and what does one image really take in GPU memory?

1. One epoch of head training (2,000 cached images, d=512, n=2, 40 classes, batch 32, Adam
   lr 0.002) eagerly vs with the whole step (forward, loss, backward, Adam) captured once in a
   CUDA graph and replayed (``torch.cuda.graph``, ``Adam(capturable=True)``; the short last batch
   runs eagerly). Both start from the same zero-initialised head on the same batches; their
   per-step losses are compared, so the graph is checked to compute the same thing.
2. Single-image memory with the allocator cache emptied first (``bench.measure_memory``), for
   clip-vit-b16-random at n = 1, 2, 3: allocator peak and the device's used memory (CUDA context
   included), the figure comparable to the paper's 2.8 GB.

    python bench/gpu_graph_probe.py --out OUT

Status: prepared and checked on a CPU as far as a CPU can (the eager parts); not yet run on a GPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hvl_core import bench  # noqa: E402
from hvl_core.geometry import split_scales  # noqa: E402
from hvl_core.head import HVLHead  # noqa: E402


def data(d, n, N, C, dev):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(N, 1 + 5 * n * n, d, generator=g).to(dev)
    y = torch.randint(0, C, (N,), generator=g).to(dev)
    text = torch.randn(C, d, generator=g).to(dev)
    perm = torch.randperm(N, generator=g).to(dev)
    return v, y, text, perm


def eager_trainer(d, n, C, text, dev):
    head = HVLHead(d, C, n=n).to(dev).train()
    opt = torch.optim.Adam(head.parameters(), lr=0.002)

    def step(v0, v1, v2, y):
        loss = head.loss(head(v0, v1, v2, text), y)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def graph_trainer(d, n, C, text, dev, B=32):
    head = HVLHead(d, C, n=n).to(dev).train()
    opt = torch.optim.Adam(head.parameters(), lr=0.002, capturable=True)
    sv0, sv1, sv2 = (torch.zeros(B, d, device=dev), torch.zeros(B, n * n, d, device=dev),
                     torch.zeros(B, 4 * n * n, d, device=dev))
    sy = torch.zeros(B, dtype=torch.long, device=dev)

    def eager(v0, v1, v2, y):
        loss = head.loss(head(v0, v1, v2, text), y)["total"]
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        return loss.detach()

    # warm up on a side stream (the autograd / optimizer state must exist before capture) on a
    # copy of the state, then restore it so both trainers start from the same head
    saved = {k: t.clone() for k, t in head.state_dict().items()}
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            eager(sv0, sv1, sv2, sy)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)  # the captured backward then writes (not adds) the grads
    with torch.cuda.graph(graph):
        sloss = head.loss(head(sv0, sv1, sv2, text), sy)["total"]
        sloss.backward()
        opt.step()
    # reset the parameters and the optimizer's moments/steps in place (the graph holds their addresses)
    with torch.no_grad():
        for k, t in head.state_dict().items():
            t.copy_(saved[k])
        for st in opt.state.values():
            for t in st.values():
                if torch.is_tensor(t):
                    t.zero_()
        for p in head.parameters():
            if p.grad is not None:
                p.grad.zero_()

    def step(v0, v1, v2, y):
        if len(y) != B:
            return eager(v0, v1, v2, y)
        sv0.copy_(v0)
        sv1.copy_(v1)
        sv2.copy_(v2)
        sy.copy_(y)
        graph.replay()
        return sloss.detach().clone()

    return step


def epochs(step, v, y, perm, n, epochs_n, dev, B=32):
    times, losses = [], []
    for _ in range(epochs_n):
        torch.cuda.synchronize(dev)
        t = time.perf_counter()
        for s in range(0, len(v), B):
            idx = perm[s:s + B]
            v0, v1, v2 = split_scales(v[idx], n)
            losses.append(step(v0, v1, v2, y[idx]))
        torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t)
    return times, torch.stack(losses).float().cpu()


def probe_train(dev):
    d, n, N, C = 512, 2, 2000, 40
    v, y, text, perm = data(d, n, N, C, dev)
    t_e, l_e = epochs(eager_trainer(d, n, C, text, dev), v, y, perm, n, 3, dev)
    t_g, l_g = epochs(graph_trainer(d, n, C, text, dev), v, y, perm, n, 3, dev)
    k = 63  # the first epoch's steps
    return {"eager_epoch_s": round(statistics.median(t_e[1:]), 4), "graph_epoch_s": round(statistics.median(t_g[1:]), 4),
            "speedup": round(statistics.median(t_e[1:]) / statistics.median(t_g[1:]), 2),
            "eager_epochs_s": [round(x, 4) for x in t_e], "graph_epochs_s": [round(x, 4) for x in t_g],
            "first_epoch_losses_max_abs_diff": float((l_e[:k] - l_g[:k]).abs().max()),
            "first_losses_eager": [round(float(x), 5) for x in l_e[:5]],
            "first_losses_graph": [round(float(x), 5) for x in l_g[:5]],
            "last_loss_eager": round(float(l_e[-1]), 5), "last_loss_graph": round(float(l_g[-1]), 5)}


def probe_memory(dev):
    from hvl_core import create_backbone, load_model

    paths = bench.synthetic_images(Path("/tmp/hvl-graph-probe"), 1, (640, 480))
    bb = create_backbone("clip-vit-b16-random")
    out = {}
    for n in (1, 2, 3):
        model = load_model(bb, preset="dermatology-isic4", device=dev, n=n)
        model.predict(paths[0])
        out[f"n={n}"] = bench.measure_memory(lambda m=model: m.predict(paths[0]), dev)
        del model
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dev = torch.device("cuda")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"device": bench.device_info(dev)["label"]}
    for name, fn in (("train: eager vs CUDA graph", probe_train), ("single-image memory", probe_memory)):
        t0 = time.perf_counter()
        try:
            res[name] = fn(dev)
        except Exception as e:  # noqa: BLE001 - a failure is a result
            res[name] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
        res[name + " (s)"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(res[name]), flush=True)
        (out / "graph.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
