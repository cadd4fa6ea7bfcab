"""Named backbones: the catalog and its labels, random twins built offline with the real
architectures and tokenizers, the hub load path from a local cache, local weights files, and
one-sentence failures offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hvl_core.backbones import (
    BackboneUnavailable,
    create_backbone,
    describe_backbones,
    list_backbones,
    recommended_backbones,
)
from hvl_core.backbones.catalog import BY_NAME, CATALOG

ROOT = Path(__file__).resolve().parents[2]
REAL = [i.name for i in CATALOG if i.openclip]


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """The hub cannot be reached and its cache is empty; any connection attempt fails the test."""
    import socket

    import huggingface_hub.constants as hc

    import hvl_core.hub

    def refuse(*a, **k):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hvl_core.hub, "hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    return tmp_path


def test_every_registered_backbone_is_described_with_its_labels():
    described = {d["name"]: d for d in describe_backbones()}
    assert set(list_backbones()) - {"auto"} == set(described)
    for name in REAL:
        twin = described[f"{name}-random"]
        assert twin["twin_of"] == name and twin["kind"] == described[name]["kind"] and not twin["zero_shot"]
        assert described[name]["zero_shot"] and described[name]["kind"] == "vision-language"
    assert (
        described["medmnist-densenet121"]["kind"] == "label-only" and not described["medmnist-densenet121"]["zero_shot"]
    )
    assert (
        "NON-COMMERCIAL" in described["dermlip-b16"]["licence"]
        and "non-commercial" in described["dermlip-b16"]["label"]
    )
    assert all(d["label"] and d["trained_on"] and d["licence"] and d["head"] for d in described.values())
    json.dumps(describe_backbones())  # JSON-ready for a UI


def test_recommended_backbones_per_preset():
    from hvl_core.presets import list_presets

    assert recommended_backbones("histology-nct-crc")[0] == "biomedclip"
    assert "quiltnet-b32" in recommended_backbones("histology-nct-crc")
    assert "quiltnet-b32" not in recommended_backbones("dermatology-isic4")
    assert "dermlip-b16" in recommended_backbones("dermatology-isic4")
    for preset in list_presets():
        assert recommended_backbones(preset), preset
        assert all(p in list_presets() for name in recommended_backbones(preset) for p in BY_NAME[name].presets)


@pytest.mark.parametrize("name", REAL)
def test_offline_a_real_backbone_fails_at_once_with_one_sentence(name, no_network, monkeypatch):
    import open_clip

    def never(*a, **k):
        raise AssertionError("built a model although the weights cannot be had")

    monkeypatch.setattr(open_clip, "create_model", never)
    with pytest.raises(BackboneUnavailable) as e:
        create_backbone(name)
    msg = str(e.value)
    assert "\n" not in msg and msg.count(". ") == 0 and msg.endswith(".")
    assert "hub is unreachable" in msg and "not cached" in msg and f"--backbone {name}:/path/to/" in msg
    assert "pip" not in msg and "medmnist-densenet121" in msg


def test_offline_an_unknown_hf_hub_model_fails_with_one_sentence(no_network):
    with pytest.raises(BackboneUnavailable, match="hf-hub:org/absent: the Hugging Face hub is unreachable"):
        create_backbone("hf-hub:org/absent")


def test_missing_local_weights_file_names_the_backbone(tmp_path):
    with pytest.raises(
        BackboneUnavailable, match=r"biomedclip:.*missing.bin: .*missing.bin is not a readable weights file"
    ):
        create_backbone(f"biomedclip:{tmp_path}/missing.bin")


def test_a_foreign_weights_file_is_one_sentence(tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, f)
    with pytest.raises(BackboneUnavailable, match="does not fit its architecture"):
        create_backbone(f"quiltnet-b32:{f}")


def test_zero_gpu_decorator_is_a_no_op_off_spaces_and_spaces_gpu_on_them(monkeypatch):
    import types

    from hvl_core.hub import gpu_task

    def f(x):
        return x + 1

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert gpu_task(f) is f and gpu_task(duration=60)(f) is f
    calls = []
    fake = types.ModuleType("spaces")

    def GPU(fn=None, duration=None):
        def deco(g):
            calls.append((g.__name__, duration))
            return lambda *a: ("on gpu", g(*a))

        return deco(fn) if fn is not None else deco

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu_task(f) is f  # the package alone is not a ZeroGPU Space
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert gpu_task(f)(1) == ("on gpu", 2) and gpu_task(duration=90)(f)(1) == ("on gpu", 2)
    assert calls == [("f", None), ("f", 90)]
    monkeypatch.setitem(sys.modules, "spaces", None)  # flag set but no package: still a no-op
    assert gpu_task(f) is f


@pytest.mark.slow
def test_biomedclip_twin_has_the_real_architecture_tokenizer_and_preprocessing(no_network):
    bb = create_backbone("biomedclip-random")
    m = bb.model
    text = m.text.transformer
    assert type(text).__name__ == "BertModel" and text.config.num_hidden_layers == 12
    assert text.config.vocab_size == 30522 and text.config.hidden_size == 768
    trunk = m.visual.trunk
    assert type(trunk).__name__ == "VisionTransformer" and trunk.patch_embed.patch_size == (16, 16)
    assert len(trunk.blocks) == 12 and trunk.embed_dim == 768
    assert bb.embed_dim == 512 and bb.image_size == 224
    assert bb.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    # PubMedBERT's WordPiece vocabulary: [CLS]=2, [SEP]=3, medical words split its own way
    ids = bb.tokenizer(["a photo of dermatofibroma"])
    assert ids.shape == (1, 256)
    tokens = bb.tokenizer.tokenizer.convert_ids_to_tokens(ids[0, :8].tolist())
    assert tokens[:7] == ["[CLS]", "a", "photo", "of", "dermat", "##ofib", "##roma"] and tokens[7] == "[SEP]"
    # seeded: the same weights every time
    again = create_backbone("biomedclip-random")
    assert torch.equal(next(again.model.parameters()), next(m.parameters()))


@pytest.mark.slow
def test_quiltnet_twin_is_an_open_clip_vit_b32(no_network):
    bb = create_backbone("quiltnet-b32-random")
    assert bb.model.visual.conv1.kernel_size == (32, 32) and bb.model.visual.transformer.width == 768
    assert bb.model.transformer.width == 512 and bb.tokenizer(["x"]).shape == (1, 77)
    assert bb.embed_dim == 512


@pytest.mark.slow
def test_local_weights_file_loads_into_the_named_architecture(tmp_path, rgb_image):
    """NAME:/path: the twin's architecture (offline) with the file's weights, strictly."""
    from safetensors.torch import save_file

    from hvl_core import load_model

    twin = create_backbone("quiltnet-b32-random")
    state = {k: v.clone() + 0.01 for k, v in twin.model.state_dict().items()}  # "trained" weights
    f = tmp_path / "open_clip_model.safetensors"
    save_file(state, f)
    bb = create_backbone(f"quiltnet-b32:{f}")
    assert torch.equal(bb.model.state_dict()["visual.proj"], state["visual.proj"])
    a = load_model(bb, preset="histology-nct-crc", device="cpu").predict(rgb_image)
    b = load_model(twin, preset="histology-nct-crc", device="cpu").predict(rgb_image)
    assert a.msp != pytest.approx(b.msp, abs=1e-6)


HUB_SCRIPT = r"""
import json, os, sys
from pathlib import Path
import torch
from safetensors.torch import save_file

cache, repo_cfgs = Path(os.environ["HF_HUB_CACHE"]), Path(sys.argv[2])
name = sys.argv[1]
from hvl_core.backbones import create_backbone
from hvl_core.backbones.catalog import BY_NAME
twin = create_backbone(name + "-random")

def snapshot(repo, files):
    # a hub-cache snapshot as huggingface_hub lays it out (refs/main -> snapshots/REV/)
    d = cache / ("models--" + repo.replace("/", "--"))
    (d / "refs").mkdir(parents=True, exist_ok=True)
    (d / "refs" / "main").write_text("0" * 40)
    snap = d / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        (snap / fname).write_bytes(data)
    return snap

info = BY_NAME[name]
repo = info.openclip[len("hf-hub:"):]
state = {k: v.clone() + 0.01 for k, v in twin.model.state_dict().items()}
snap = snapshot(repo, {"open_clip_config.json": (repo_cfgs / "open_clip_config.json").read_bytes()})
save_file(state, snap / "open_clip_model.safetensors")
text_repo = json.loads((repo_cfgs / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"].get("hf_model_name")
if text_repo:
    snapshot(text_repo, {f: (repo_cfgs / f).read_bytes() for f in
                         ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")})
real = create_backbone(name)
same = all(torch.equal(real.model.state_dict()[k], v) for k, v in state.items())
x = torch.rand(2, 3, 224, 224)
tok_same = torch.equal(real.tokenizer(["a photo of melanoma"]), twin.tokenizer(["a photo of melanoma"]))
print(json.dumps({"weights_loaded": same, "tokenizer_same": tok_same, "dim": real.embed_dim,
                  "finite": bool(torch.isfinite(real.encode_image(real.normalize(x))).all())}))
"""


@pytest.mark.slow
def test_biomedclip_loads_from_the_hub_cache_offline_through_open_clip(tmp_path):
    """The real load path (open_clip hf-hub: config, weights, transformers text config and
    tokenizer from the hub cache), offline, with the hub files made from the shipped ones."""
    cfgs = ROOT / "hvl_core" / "backbones" / "configs" / "biomedclip"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, "biomedclip", str(cfgs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"weights_loaded": True, "tokenizer_same": True, "dim": 512, "finite": True}


@pytest.mark.slow
def test_predict_cli_offline_exits_2_with_one_sentence(tmp_path, rgb_image):
    img = tmp_path / "x.png"
    rgb_image.save(img)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "hvl_tools.cli", "predict", "--backbone", "biomedclip", str(img)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr and "pip" not in r.stderr
    assert "biomedclip:/path/to/open_clip_pytorch_model.bin" in lines[0]


def test_names_that_point_at_the_local_disk():
    from hvl_core.backbones import names_local_file, same_backbone

    for name in (
        "ViT-B-16:/etc/passwd",
        "biomedclip:/data/w.bin",
        "ViT-B-16:weights.safetensors",
        "openclip:ViT-B-16:./w.pt",
        "local-dir:/srv/model",
        "ViT-B-16:~/w",
    ):
        assert names_local_file(name), name
    for name in ("clip-vit-b16", "ViT-B-16:openai", "ViT-B-16:none", "hf-hub:org/name", "biomedclip-random"):
        assert not names_local_file(name), name
    assert same_backbone("biomedclip:/data/w.bin", "biomedclip") and same_backbone("biomedclip", "biomedclip")
    assert not same_backbone("biomedclip-random", "biomedclip") and not same_backbone(
        "quiltnet-b32:/w.bin", "biomedclip"
    )


def test_a_checkpoint_runs_on_a_local_copy_of_its_backbone(tmp_path, monkeypatch):
    """load_model(backbone="NAME:/path", checkpoint=...) for a checkpoint trained on NAME."""
    from hvl_core import CheckpointError, checkpoint_fields, load_model, save_checkpoint
    from hvl_core.backbones import openclip
    from hvl_core.head import HVLHead
    from hvl_core.presets import load_preset

    # a 64-d head stands in for quiltnet-b32's 512-d one: the catalog's width check is lifted
    monkeypatch.setattr(checkpoint_fields, "declared_width", lambda name: None)
    d = save_checkpoint(tmp_path / "ck", HVLHead(64, 4), "quiltnet-b32", load_preset("dermatology-isic4"))
    asked = []
    tiny = create_backbone("tiny-clip-random")
    monkeypatch.setattr(
        openclip, "create_named", lambda name, weights_file=None, **kw: asked.append((name, weights_file)) or tiny
    )
    m = load_model("quiltnet-b32:/data/quilt.bin", checkpoint=d, device="cpu")
    assert asked == [("quiltnet-b32", "/data/quilt.bin")] and m.head.dim == 64
    with pytest.raises(CheckpointError, match="trained on backbone quiltnet-b32, not biomedclip:/data/w.bin"):
        load_model("biomedclip:/data/w.bin", checkpoint=d, device="cpu")


def test_without_transformers_biomedclip_says_so_in_one_sentence(monkeypatch, no_network):
    import open_clip.hf_model

    monkeypatch.setattr(open_clip.hf_model, "transformers", None)
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    with pytest.raises(BackboneUnavailable) as e:
        create_backbone("biomedclip-random")
    msg = str(e.value)
    assert msg == (
        "Cannot load biomedclip-random: its text tower needs the transformers package, which this "
        "installation lacks; use another backbone."
    )


def test_a_backbone_name_never_opens_a_file_or_tells_whether_it_exists(tmp_path, monkeypatch):
    """``ViT-B-16:/etc/passwd`` read the file's first bytes, and "does not exist" / "is not a
    weights file" told which files exist."""
    from hvl_core.backbones import openclip as oc

    def no_open(*a, **k):
        raise AssertionError("a file was opened")

    monkeypatch.setattr(oc, "open", no_open, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    messages = []
    for name in (
        "ViT-B-16:/etc/passwd",
        f"ViT-B-16:{tmp_path}/passwd",
        f"ViT-B-16:{tmp_path}/absent",
        "ViT-B-16:passwd",
    ):
        with pytest.raises(BackboneUnavailable) as e:
            create_backbone(name)
        messages.append(str(e.value).replace(name.partition(":")[2], "PATH"))
    assert len(set(messages)) == 1 and "is not a readable weights file" in messages[0]
    monkeypatch.undo()
    (tmp_path / "x.pt").write_text("root:x:0:0\n")  # named like weights: read, and the same sentence
    with pytest.raises(BackboneUnavailable, match="x.pt is not a readable weights file"):
        create_backbone(f"ViT-B-16:{tmp_path}/x.pt")
    with pytest.raises(BackboneUnavailable, match="absent.pt is not a readable weights file"):
        create_backbone(f"ViT-B-16:{tmp_path}/absent.pt")


def test_answers_name_a_local_weights_file_never_its_path(tiny_backbone):
    from hvl_core.backbones import public_name

    assert public_name("ViT-B-16:/srv/w/open_clip.bin") == "ViT-B-16:open_clip.bin"
    assert public_name("openclip:ViT-B-16:/a/b.pt") == "openclip:ViT-B-16:b.pt"
    assert public_name("local-dir:/srv/models/x/") == "local-dir:x"
    for name in ("ViT-B-16:openai", "hf-hub:org/name", "clip-vit-b16", "biomedclip-random"):
        assert public_name(name) == name
    import copy

    bb = copy.copy(tiny_backbone)
    bb.name = "ViT-B-16:/srv/secret/w.bin"
    assert bb.describe().startswith("ViT-B-16:w.bin") and "/srv" not in bb.describe()
