"""Training the HVL head on cached crop embeddings (HVL_SPEC §4–5, §8).

Paper settings are the defaults: Adam, lr 0.002, batch 32, 100 epochs, cosine annealing (per
epoch, to 0), K = 4, n = 2. The loss is ``HVLHead.loss``: L_ID + lambda_ood · L_OOD.

Resumable: after every epoch the training state (head, Adam moments, scheduler, epoch, the
shuffling RNG, the loss history) is written to ``STATE_DIR`` as
``train_state-e<epoch>.safetensors`` (every tensor; no pickle) plus ``train_state.json`` (the
rest, and the sha256 of that tensor file), atomically and in that order, so a run killed at any
moment leaves a consistent state behind. ``resume=True`` continues from it and gives the same
head as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from hvl_core.files import atomic_write, sha256_bytes
from hvl_core.geometry import split_scales
from hvl_core.head import HVLHead

from .config import TrainConfig
from .embedding_scores import cpu_threads_for_head, head_scores, torch_threads
from .features import FeatureSet
from .reports import plot_losses

STATE_JSON = "train_state.json"
STATE_FORMAT = "hvl-train-state"
STATE_VERSION = 1


class TrainStateError(ValueError):
    """A training state that cannot be resumed (corrupt, truncated, or from another run)."""


@dataclass
class TrainResult:
    head: HVLHead
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # epochs already done when this call started
    seconds: float = 0.0


def data_fingerprint(feats: FeatureSet) -> str:
    """sha256 over the training embeddings' shape, labels and a sample of values (to refuse
    resuming a state on other data)."""
    h = hashlib.sha256(str(tuple(feats.v.shape)).encode())
    h.update(feats.labels.numpy().tobytes())
    flat = feats.v.reshape(-1)
    h.update(flat[:: max(1, flat.numel() // 4096)].numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- state files


def _flatten_state(head: HVLHead, opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[dict, dict]:
    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    osd = opt.state_dict()
    scalars: dict = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    tensors["rng"] = gen.get_state().clone()
    return tensors, {"param_groups": osd["param_groups"], "scalars": scalars}


def _opt_state_from(tensors: dict, opt_meta: dict) -> dict:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in opt_meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = []
    for g in opt_meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_train_state(
    state_dir: Path, head: HVLHead, opt, sched, gen: torch.Generator, epoch: int, history: list, info: dict
) -> Path:
    """Write the state after ``epoch`` epochs (tensors first, then the JSON that names them)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    tensors, opt_meta = _flatten_state(head, opt, gen)
    blob = st_save(tensors, metadata={"format": STATE_FORMAT})
    name = f"train_state-e{epoch}.safetensors"
    atomic_write(state_dir / name, blob)
    meta = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "epoch": epoch,
        "tensors": name,
        "tensors_sha256": sha256_bytes(blob),
        "optimizer": opt_meta,
        "scheduler": sched.state_dict() if sched is not None else None,
        "history": history,
        **info,
    }
    atomic_write(state_dir / STATE_JSON, json.dumps(meta, indent=1).encode())
    for old in state_dir.glob("train_state-e*.safetensors"):
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass
    return state_dir / STATE_JSON


def load_train_state(state_dir: Path) -> tuple[dict, dict]:
    """(meta, tensors) of a saved state; ``TrainStateError`` when missing parts or corrupt."""
    state_dir = Path(state_dir)
    js = state_dir / STATE_JSON
    try:
        meta = json.loads(js.read_text())
    except FileNotFoundError:
        raise TrainStateError(f"{state_dir}: no {STATE_JSON}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TrainStateError(
            f"{js}: not valid JSON ({e}); the state is corrupt — delete {state_dir} to start over"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise TrainStateError(f"{js}: not an HVL training state")
    tf = state_dir / str(meta.get("tensors", ""))
    if not tf.is_file():
        raise TrainStateError(
            f"{state_dir}: {meta.get('tensors')} is missing; the state is incomplete — delete {state_dir} to start over"
        )
    blob = tf.read_bytes()
    if sha256_bytes(blob) != meta.get("tensors_sha256"):
        raise TrainStateError(
            f"{tf}: does not match the sha256 in {STATE_JSON} (truncated or corrupt); delete {state_dir} to start over"
        )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise TrainStateError(f"{tf}: not readable ({e})") from None
    return meta, tensors


# --------------------------------------------------------------------------- training


def _make_scheduler(opt, cfg: TrainConfig, warmup: int = 0):
    """Per epoch: cosine annealing (the paper's) or constant, after ``warmup`` epochs of a linear ramp."""
    if not warmup:
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.eta_min)
        return None  # constant learning rate
    floor = cfg.eta_min / opt.param_groups[0]["lr"]

    def factor(e: int) -> float:
        ramp = min(1.0, (e + 1) / warmup)
        if cfg.scheduler != "cosine":
            return ramp
        return ramp * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * e / cfg.epochs)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


#: linear logits (§10): the bound on one full, sign-like Adam step's move of a logit that sets the
#: learning rate, and the epochs of linear warm-up that keep the first steps (the sign-like ones)
#: small. Measured on the dermatology training images (DenseNet features): every step then moves
#: a logit by 0.70 at most, 0.09 in the median, and the head fits them (accuracy 1.00); with a
#: bound of 0.25 and no warm-up it fitted 0.65, and the first step alone moved a logit by 4.
MAX_LOGIT_STEP = 8.0
LINEAR_WARMUP_EPOCHS = 10


def step_size(head: HVLHead, text: torch.Tensor, v: torch.Tensor, lr: float) -> float:
    """The learning rate a head trains with (HVL_SPEC §10). Adam moves every parameter by about
    ``lr`` a step. The paper's ``lr`` suits cosine logits of unit CLIP features, and is kept for
    them. A linear logit ``(u·t_c + bias)/tau`` on raw features moves by up to
    ``lr·(|u|₁ + |v|₁·|t_c|₁)/tau`` (b⁰/b² through u, W through v and t), and on non-negative
    features the first steps reach it: tens on DenseNet features (|v|₁ ≈ 300), which froze the old
    head in a few steps. There ``lr`` is scaled so this bound, for the mean image ``v (N, crops, d)``
    and the largest class row, is ``MAX_LOGIT_STEP``, and training warms up (``LINEAR_WARMUP_EPOCHS``)."""
    if head.config.similarity != "linear":
        return lr
    v1 = float(v.abs().sum(-1).mean())
    t1 = float(text.abs().sum(-1).max())
    bound = lr * (v1 + v1 * t1) / head.config.tau
    return lr * min(1.0, MAX_LOGIT_STEP / bound) if bound > 0 else lr


def train_head(
    head: HVLHead,
    text: torch.Tensor,
    logit_bias: torch.Tensor | None,
    feats: FeatureSet,
    cfg: TrainConfig,
    state_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    log=None,
    compile_step: bool | str = False,
) -> TrainResult:
    with torch_threads(cpu_threads_for_head(head, torch.device(device))):
        return _train_head(
            head, text, logit_bias, feats, cfg, state_dir, resume, device, progress, on_epoch_end, log, compile_step
        )


def make_train_step(
    head: HVLHead,
    opt: torch.optim.Optimizer,
    text: torch.Tensor,
    bias: torch.Tensor | None,
    compile_step: bool | str = False,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One optimisation step on a batch of cached embeddings v (B, 1 + n² + 4n², d) and labels (B,):
    returns the detached (L_ID, L_OOD, total) on the device, without waiting for the device.
    ``compile_step``: the forward and loss (and so their backward) through ``torch.compile``:
    ``True`` fuses kernels; a mode name, e.g. ``"reduce-overhead"`` (CUDA graphs), is passed on.
    The first steps compile, once per batch size."""
    n = head.config.n

    def losses(v, y):
        v0, v1, v2 = split_scales(v, n)
        out = head.loss(head(v0, v1, v2, text, bias), y)
        return torch.stack([out["id"], out["ood"], out["total"]])

    if not compile_step:
        forward = losses
    else:
        forward = torch.compile(losses, mode=None if compile_step is True else compile_step)

    def step(v, y):
        ls = forward(v, y)
        opt.zero_grad(set_to_none=True)
        ls[2].backward()
        opt.step()
        return ls.detach()

    return step


def _train_head(
    head, text, logit_bias, feats, cfg, state_dir, resume, device, progress, on_epoch_end, log, compile_step=False
) -> TrainResult:
    """Train ``head`` in place on cached embeddings ``feats`` (labels ≥ 0).

    ``state_dir``: where the per-epoch training state goes (None: not saved, not resumable).
    ``resume``: continue from the state there when there is one (refused when it was made with
    other data or settings). ``on_epoch_end(epoch, record)`` runs after each epoch's state is
    saved (tests use it to simulate a crash)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if len(feats) == 0:
        raise ValueError("no training images")
    if (feats.labels < 0).any() or (feats.labels >= head.num_classes).any():
        raise ValueError("every training image needs a label in 0..C-1")
    device = torch.device(device)
    head.to(device).train()
    text = text.to(device)
    bias = logit_bias.to(device) if logit_bias is not None else None
    gen = torch.Generator().manual_seed(cfg.seed)
    lr = step_size(head, text, feats.v, cfg.lr)
    if lr != cfg.lr:
        log(
            f"linear logits on raw features: learning rate {cfg.lr:g} scaled to {lr:.3g}, "
            f"{LINEAR_WARMUP_EPOCHS} epochs of warm-up (HVL_SPEC §10)"
        )
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg, LINEAR_WARMUP_EPOCHS if lr != cfg.lr else 0)
    info = {
        "train_config": cfg.to_dict(),
        "head_config": head.config.to_dict(),
        "data": data_fingerprint(feats),
        "num_classes": head.num_classes,
        "dim": head.dim,
    }
    history: list[dict] = []
    start = 0
    if state_dir is not None and resume and (Path(state_dir) / STATE_JSON).exists():
        meta, tensors = load_train_state(Path(state_dir))
        for key in ("train_config", "head_config", "data", "num_classes", "dim"):
            if meta.get(key) != info[key]:
                what = {
                    "data": "other training data",
                    "train_config": "other training settings",
                    "head_config": "other head options",
                }.get(key, "another model")
                raise TrainStateError(
                    f"{state_dir}: the saved state was made with {what} "
                    f"({key} differs); resume with the same settings, or delete {state_dir} "
                    "to start over"
                )
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        opt.load_state_dict(_opt_state_from(tensors, meta["optimizer"]))
        if sched is not None and meta.get("scheduler"):
            sched.load_state_dict(meta["scheduler"])
        gen.set_state(tensors["rng"])
        start = int(meta["epoch"])
        history = list(meta.get("history", []))
        log(f"resuming from epoch {start}/{cfg.epochs} ({state_dir})")
    elif state_dir is not None and resume:
        log(f"no training state in {state_dir}; starting from epoch 0")
    N = len(feats)
    t_start = time.time()
    bar = None
    if progress and start < cfg.epochs:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, initial=start, desc="training", unit="epoch", leave=False)
    # the whole cached set goes to the device once; a step then reads no host memory and waits for
    # nothing: losses are summed on the device and read once per epoch
    v_all, labels = feats.v.to(device), feats.labels.to(device)
    step = make_train_step(head, opt, text, bias, compile_step)
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        perm = torch.randperm(N, generator=gen).to(device)
        sums = torch.zeros(3, device=device)
        lr = opt.param_groups[0]["lr"]
        for s in range(0, N, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            sums += step(v_all[idx], labels[idx]) * len(idx)
        if sched is not None:
            sched.step()
        loss_id, loss_ood, loss = (x / N for x in sums.tolist())  # the epoch's one host sync
        rec = {
            "epoch": epoch + 1,
            "loss_id": loss_id,
            "loss_ood": loss_ood,
            "loss": loss,
            "lr": lr,
            "seconds": round(time.time() - t0, 4),
        }
        if not all(math.isfinite(rec[k]) for k in ("loss_id", "loss_ood", "loss")):
            raise FloatingPointError(f"epoch {epoch + 1}: the loss is not finite ({rec}); lower the learning rate")
        history.append(rec)
        if state_dir is not None:
            save_train_state(Path(state_dir), head, opt, sched, gen, epoch + 1, history, info)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(L_ID=f"{rec['loss_id']:.3f}", L_OOD=f"{rec['loss_ood']:.3f}")
        if progress:
            msg = f"epoch {epoch + 1}/{cfg.epochs}  L_ID {rec['loss_id']:.4f}  L_OOD {rec['loss_ood']:.4f}  lr {lr:.2e}"
            (bar.write(msg, file=sys.stderr) if bar is not None else log(msg))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, rec)
    if bar is not None:
        bar.close()
    head.eval()
    return TrainResult(head=head, history=history, resumed_from=start, seconds=time.time() - t_start)


# --------------------------------------------------------------------------- train + calibrate + save


def fit(
    model,
    train_feats: FeatureSet,
    val_feats: FeatureSet | None,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    extra: dict | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    log=None,
    save_state: bool = True,
    compile_step: bool | str = False,
) -> tuple[Path, dict]:
    """Train ``model.head`` on ``train_feats``, calibrate the threshold on ``val_feats`` (95% ID TPR;
    none when there is no validation set), and save the checkpoint to ``out_dir`` (atomically, with
    the training state in ``out_dir/train_state`` unless ``save_state=False``, ``training.json`` and
    ``loss.png``)."""
    from hvl_core.checkpoint import save_checkpoint

    from .calibrate import calibrate_threshold

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = train_head(
        model.head,
        model.text,
        model.logit_bias,
        train_feats,
        cfg,
        state_dir=out / "train_state" if save_state else None,
        resume=resume,
        device=model.device,
        progress=progress,
        on_epoch_end=on_epoch_end,
        log=log,
        compile_step=compile_step,
    )
    cal = None
    if val_feats is not None and len(val_feats):
        cal = calibrate_threshold(model.head, model.text, model.logit_bias, val_feats, device=model.device)
    train_acc = None
    if len(train_feats):
        _, p = head_scores(model.head, model.text, model.logit_bias, train_feats, device=model.device)
        train_acc = float((p.argmax(-1) == train_feats.labels).float().mean())
    summary = {
        "train_config": cfg.to_dict(),
        "n_train": len(train_feats),
        "n_val": 0 if val_feats is None else len(val_feats),
        "epochs_run": len(result.history) - result.resumed_from,
        "resumed_from_epoch": result.resumed_from,
        "seconds": round(result.seconds, 2),
        "final": result.history[-1] if result.history else None,
        "train_accuracy": train_acc,
        **(extra or {}),
    }
    meta_extra = {"training": summary}
    if cal is not None:
        meta_extra["calibration"] = cal
        model.threshold, model.calibrated = cal["threshold"], True
    save_checkpoint(
        out,
        model.head,
        model.backbone.name,
        model.classes,
        threshold=None if cal is None else cal["threshold"],
        detail=model.detail,
        extra=meta_extra,
    )
    (out / "training.json").write_text(
        json.dumps({**summary, "calibration": cal, "history": result.history}, indent=1) + "\n"
    )
    if result.history:
        plot_losses(out / "loss.png", result.history)
    return out, {**summary, "calibration": cal}
