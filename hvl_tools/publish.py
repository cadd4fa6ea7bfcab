"""Publishing a trained head to the Hugging Face hub, and the model card that goes with it.

``push_checkpoint(ck_dir, "org/name")`` validates the checkpoint (a truncated one is refused),
stages ``model.safetensors``, ``config.json`` (from either checkpoint layout), ``README.md`` (model card with hub metadata and, when an
evaluation folder is given, its numbers), ``training.json``/``loss.png`` when present and the
evaluation's metrics and plots under ``eval/`` (never per-image scores or local paths), then uploads that folder with ``HfApi().upload_folder``. The
training state (optimiser moments) is never uploaded. ``hvl_core.load_checkpoint("org/name")`` /
``load_model(checkpoint="org/name")`` load it back (``hf_hub_download``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from hvl_core.checkpoint import (
    CARD_NAME,
    CONFIG_NAME,
    LAYOUTS,
    WEIGHTS_NAME,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
)
from hvl_core.hub import is_hub_id
from hvl_core.model_card import hub_metadata

#: copied from an evaluation folder (scores.csv and report.md name local files: never pushed)
EVAL_FILES = ("roc.png", "hist.png")
#: metrics.json fields that may hold local paths: reduced to their last component before pushing
PATH_FIELDS = ("id_dir", "ood_dir", "checkpoint", "split", "data_root")
TRAIN_FILES = ("training.json", "loss.png")


def public_metrics(m: dict) -> dict:
    """An evaluation's metrics without local file paths (per-image lists dropped, folders → names)."""
    out = {k: v for k, v in m.items() if k != "skipped"}
    for k in PATH_FIELDS:
        if isinstance(out.get(k), str):
            out[k] = Path(out[k]).name
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * float(x):.2f}"


def model_card(ck: Checkpoint, repo_id: str, metrics: dict | None = None) -> str:
    """The README.md of a pushed checkpoint: hub metadata (YAML) + a description people can act on."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    meta = ck.meta
    names = list(ck.classes.names)
    backbone = ck.backbone
    eval_results = None
    if metrics:
        ds_name = metrics.get("split") or (Path(metrics["id_dir"]).name if metrics.get("id_dir") else "evaluation set")
        eval_results = []
        for key, mtype, mname in (
            ("accuracy", "accuracy", "ID accuracy"),
            ("auroc", "roc_auc", "AUROC (ID positive)"),
            ("fpr95", "fpr95", "FPR at 95% TPR"),
            ("aupr", "aupr", "AUPR-In"),
        ):
            if metrics.get(key) is not None:
                eval_results.append(
                    EvalResult(
                        task_type="image-classification",
                        dataset_type="custom",
                        dataset_name=str(ds_name),
                        metric_type=mtype,
                        metric_value=round(float(metrics[key]), 6),
                        metric_name=mname,
                    )
                )
        eval_results = eval_results or None
    hub = hub_metadata(meta)  # the same library_name, base_model and datasets as the card beside the checkpoint
    data = ModelCardData(
        license="apache-2.0",
        library_name=hub["library_name"],
        pipeline_tag="image-classification",
        tags=["hvl", "out-of-distribution-detection", "medical-imaging", "vision-language", backbone],
        base_model=hub.get("base_model"),
        datasets=hub.get("datasets"),
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results,
    )
    training = meta.get("training") or {}
    cfg = training.get("train_config") or {}
    thr = meta.get("threshold")
    lines = [
        f"# {repo_id.split('/')[-1]} — HVL head for out-of-distribution detection",
        "",
        "An HVL head (Lai et al., *Hierarchical Vision-Language Learning for Medical Out-of-Distribution "
        "Detection*, MICCAI 2025) trained with the open-source HVL demo: it recognises the known classes below "
        "and says **unknown** when the fused max-softmax probability (MSP) is under its threshold.",
        "",
        "**Research and teaching use only; not a medical device.** It has not been validated clinically.",
        "",
        "## Model",
        "",
        f"- Backbone (frozen encoder): `{backbone}`",
        f"- Known classes ({len(names)}): " + ", ".join(names),
        f"- Head options: `{json.dumps(meta.get('config', {}))}`",
        f"- Threshold: {thr:.4f} (calibrated: MSP accepting 95% of held-out ID images)"
        if thr is not None
        else "- Threshold: not calibrated (the demo then uses its default)",
    ]
    if training:
        lines += [
            "",
            "## Training",
            "",
            f"- {training.get('n_train')} training images, {training.get('n_val')} validation images",
            f"- Adam, lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, {cfg.get('epochs')} epochs, "
            f"{cfg.get('scheduler')} schedule, seed {cfg.get('seed')}",
        ]
        data_info = training.get("data") or {}
        if data_info.get("split") or data_info.get("train_dir"):
            lines.append(
                f"- Data: {Path(data_info.get('split') or data_info.get('train_dir')).name}"
                + (f", fold {data_info['fold']}" if data_info.get("fold") is not None else "")
                + (f", task {data_info['task']}" if data_info.get("task") else "")
            )
    if metrics:
        lines += [
            "",
            "## Evaluation",
            "",
            f"{metrics.get('n_id')} ID and {metrics.get('n_ood')} OOD images"
            + (f" ({metrics['split']})" if metrics.get("split") else "")
            + ".",
            "",
            "| ID acc. | AUROC | FPR95 | AUPR-In |",
            "|---:|---:|---:|---:|",
            f"| {_pct(metrics.get('accuracy'))} | {_pct(metrics.get('auroc'))} | {_pct(metrics.get('fpr95'))} | "
            f"{_pct(metrics.get('aupr'))} |",
            "",
            "Percent. ID is the positive class, the score is MSP; FPR95 is the fraction of OOD images accepted at "
            "the threshold that accepts 95% of ID images (exact ROC point). Full report in `eval/`.",
        ]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import hvl_core",
        "",
        f'model = hvl_core.load_model(checkpoint="{repo_id}")',
        'pred = model.predict("image.png")',
        "print(pred.label, pred.score, pred.score_name, pred.known)",
        "```",
        "",
        f"Files: `{WEIGHTS_NAME}` (W, b0, b2; safetensors), `{CONFIG_NAME}` (classes, options, threshold, "
        "sha256 of the weights).",
    ]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    return str(ModelCard(content))


def stage(
    ck_dir: str | os.PathLike, staging: str | os.PathLike, repo_id: str, eval_dir: str | os.PathLike | None = None
) -> Path:
    """Copy what gets pushed into ``staging`` (validated checkpoint, card, training and eval files)."""
    src = Path(ck_dir)
    if not src.is_dir():
        raise CheckpointError(f"{src}: not a checkpoint folder")
    ck = load_checkpoint(src)  # refuses a truncated / mismatched checkpoint
    dst = Path(staging)
    dst.mkdir(parents=True, exist_ok=True)
    # either layout on disk; the hub gets the hub layout (the config's content reads the same)
    cfg, weights = next((c, w) for c, w in LAYOUTS if (src / c).is_file())
    shutil.copy2(src / cfg, dst / CONFIG_NAME)
    shutil.copy2(src / weights, dst / WEIGHTS_NAME)
    for name in TRAIN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    metrics = None
    if eval_dir is not None:
        ev = Path(eval_dir)
        if not (ev / "metrics.json").is_file():
            raise FileNotFoundError(f"{ev}: no metrics.json (run hvl evaluate --out {ev} first)")
        metrics = public_metrics(json.loads((ev / "metrics.json").read_text()))
        (dst / "eval").mkdir(exist_ok=True)
        (dst / "eval" / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        for name in EVAL_FILES:
            if (ev / name).is_file():
                shutil.copy2(ev / name, dst / "eval" / name)
    (dst / CARD_NAME).write_text(model_card(ck, repo_id, metrics))
    return dst


def push_checkpoint(
    ck_dir: str | os.PathLike,
    repo_id: str,
    eval_dir: str | os.PathLike | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api=None,
):
    """Create (if needed) the model repo ``repo_id`` and upload the staged checkpoint folder.
    Returns the hub's commit info."""
    if not is_hub_id(repo_id):
        raise ValueError(f"a hub repo id is written org/name, got {repo_id!r}")
    import huggingface_hub

    api = api if api is not None else huggingface_hub.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hvl-push-") as tmp:
        folder = stage(ck_dir, tmp, repo_id, eval_dir)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            commit_message=commit_message or f"Upload HVL head ({Path(ck_dir).name})",
        )
