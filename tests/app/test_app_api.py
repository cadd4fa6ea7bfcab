"""The demo's server side: the model service (caching, no encoder on threshold moves,
checkpoints, bad input), the example gallery, ``app.py`` itself, and the public API through
``gradio_client`` against the app launched in a thread."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import struct
import threading
import zlib
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import hvl_core  # noqa: E402
from app import examples, layout, messages  # noqa: E402
from app.components import upload  # noqa: E402
from app.service import ModelService, Session, Spec, UserError, checkpoint_ref  # noqa: E402
from hvl_core import CheckpointError, ImageError  # noqa: E402
from hvl_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"
ISIC4 = ["melanocytic nevus", "melanoma", "dermatofibroma", "vascular lesion"]


@pytest.fixture(scope="module")
def service(tiny_backbone):
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone  # share the session's backbone
    return svc


@pytest.fixture
def encoder_calls(tiny_backbone, monkeypatch):
    """Counts the images that go through the backbone's image encoder."""
    calls = []
    real = tiny_backbone.encode_image

    def counting(pixels):
        calls.append(pixels.shape[0])
        return real(pixels)

    monkeypatch.setattr(tiny_backbone, "encode_image", counting)
    return calls


def analysed(service, spec=Spec(), threshold=None, k=4, ef=True, rn=False, previous=None):
    sess = service.load(str(EXAMPLE), previous=previous)
    s, ck = service.spec(spec.preset, spec.custom, None, spec.n)
    return service.analyse(sess, s, ck, threshold, k, ef, rn)


# --------------------------------------------------------------------------- the service


def test_threshold_and_head_options_never_run_the_encoder(service, encoder_calls):
    sess, pred, model, _ = analysed(service)
    assert sum(encoder_calls) == 1 + 4 + 16  # one pass over the 21 crops
    encoder_calls.clear()
    before = service.encode_calls
    seen = set()
    for thr in (0.0, pred.msp - 0.01, pred.msp + 0.01, 1.0):
        sess, p, _ = service.decide(sess, thr, 4, True, False)
        assert p.known == (p.msp >= thr) and p.threshold == thr
        assert p.msp == pytest.approx(pred.msp)
        seen.add(p.known)
    assert seen == {True, False}  # the decision flipped
    _, p_k, _ = service.decide(sess, 0.5, 2, True, False)
    _, p_off, _ = service.decide(sess, 0.5, 4, False, False)
    _, p_rn, _ = service.decide(sess, 0.5, 4, True, True)
    assert len(p_k.pseudo_ood) == 2 and p_off.keep2.all() and p_rn.p1.sum() == pytest.approx(1.0, abs=1e-4)
    assert encoder_calls == [] and service.encode_calls == before


def test_preset_switch_reuses_the_encoding_and_n_reencodes(service, encoder_calls):
    sess, pred, model, _ = analysed(service)
    encoder_calls.clear()
    spec, ck = service.spec("histology-nct-crc", "", None, 2)
    sess2, pred2, model2, reset = service.analyse(sess, spec, ck, 0.3, 4, True, False)
    assert encoder_calls == []  # same backbone and n: the cached encoding is reused
    assert reset and pred2.threshold == model2.threshold  # another model: its own threshold
    assert len(pred2.classes) == 8 and model2 is not model  # background is a negative class
    spec3, _ = service.spec("histology-nct-crc", "", None, 3)
    sess3, pred3, model3, reset3 = service.analyse(sess2, spec3, None, 0.3, 4, True, False)
    assert sum(encoder_calls) == 1 + 9 + 36 and pred3.n == 3
    assert not reset3 and pred3.threshold == 0.3  # same model, other n: the user's threshold stays
    # models are cached per (backbone, classes, checkpoint, n)
    assert service.model(spec) is model2 and service.model(spec3) is model3


def test_custom_classes_and_bad_settings(service):
    spec, ck = service.spec("custom", "melanoma, benign mole: a benign mole on the skin\nscar", None, 2)
    sess, pred, model, _ = service.analyse(service.load(str(EXAMPLE)), spec, ck, None, 4, True, False)
    assert pred.classes == ["melanoma", "benign mole", "scar"]
    with pytest.raises(UserError, match="custom classes"):
        service.spec("custom", " , ", None, 2)
    with pytest.raises(UserError, match="n must be"):
        service.spec("dermatology-isic4", "", None, 9)
    with pytest.raises(UserError, match="unknown class set"):
        service.spec("radiology", "", None, 2)
    with pytest.raises(UserError, match="upload an image"):
        service.analyse(Session(), Spec(), None, None, 4, True, False)


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"plain text, not a picture", "not an image this app can read"),
        (None, "corrupt or truncated"),  # a truncated PNG, built below
        ("tiny", "at least 16×16"),
    ],
)
def test_bad_images_give_readable_errors(service, tmp_path, payload, message):
    path = tmp_path / "upload.png"
    if payload is None:
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif payload == "tiny":
        Image.new("RGB", (8, 8)).save(path)
    else:
        path.write_bytes(payload)
    with pytest.raises(ImageError, match=message):
        service.load(str(path))


def _saved(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


UNUSUAL = {
    "16-bit grayscale PNG": (
        lambda p: _saved(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), p / "deep.png"),
        "converted to 8-bit",
    ),
    "RGBA PNG": (lambda p: _saved(Image.new("RGBA", (64, 48), (200, 10, 10, 100)), p / "alpha.png"), "transparency"),
    "grayscale JPEG": (lambda p: _saved(Image.new("L", (64, 64), 90), p / "gray.jpg"), None),
    "CMYK JPEG": (lambda p: _saved(Image.new("CMYK", (64, 64), (10, 200, 30, 0)), p / "cmyk.jpg"), "CMYK"),
    "animated GIF": (
        lambda p: _saved(
            Image.new("RGB", (40, 40), (255, 0, 0)),
            p / "anim.gif",
            save_all=True,
            append_images=[Image.new("RGB", (40, 40), (0, 0, 255))],
            duration=100,
        ),
        "the first frame used",
    ),
    "huge TIFF": (lambda p: _saved(Image.new("RGB", (5000, 300), (20, 120, 60)), p / "wide.tif"), "downscaled"),
    "BMP": (lambda p: _saved(Image.new("RGB", (40, 40), (1, 2, 3)), p / "x.bmp"), None),
    "WebP": (lambda p: _saved(Image.new("RGB", (40, 40), (1, 2, 3)), p / "x.webp"), None),
}


@pytest.mark.parametrize("kind", list(UNUSUAL))
def test_unusual_but_valid_images_are_analysed_with_a_note(service, tmp_path, kind):
    make, note = UNUSUAL[kind]
    path = make(tmp_path)
    sess = service.load(str(path))
    spec, ck = service.spec("dermatology-isic4", "", None, 1)
    sess, pred, model, _ = service.analyse(sess, spec, ck, None, 4, True, False)
    assert pred.image.shape == (model.backbone.image_size, model.backbone.image_size, 3)
    status = messages.status_markdown(sess, pred)
    assert path.name in status
    if note:
        assert note in status, status


def test_answers_and_messages_name_a_checkpoint_never_its_server_path(service, tiny_backbone, tmp_path):
    from app import api

    model = hvl_core.load_model(tiny_backbone, preset="dermatology-isic4", device="cpu")
    folder = hvl_core.save_checkpoint(tmp_path / "ck", model.head, "tiny-clip-random", model.classes, threshold=0.42)
    spec, ck = service.spec("dermatology-isic4", "", checkpoint_ref(str(folder), None), 2)
    _, pred, m, _ = service.analyse(service.load(str(EXAMPLE)), spec, ck, None, 4, True, False)
    row = json.dumps(api.result("image", pred, m))
    assert json.loads(row)["checkpoint"] == "ck" and str(tmp_path) not in row
    up = tmp_path / "up"
    up.mkdir()
    (up / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes())
    (up / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError) as e:
        service.spec("dermatology-isic4", "", checkpoint_ref("", [str(up / WEIGHTS_NAME), str(up / CONFIG_NAME)]), 2)
    assert "not valid JSON" in str(e.value) and "/" not in str(e.value) and "hvl-ckpt" not in str(e.value)


def test_new_upload_keeps_the_users_threshold(service):
    sess, pred, model, reset = analysed(service, threshold=0.77, previous=Session(model_identity=Spec().identity()))
    assert not reset and pred.threshold == 0.77
    _, pred2, _, reset2 = analysed(service, threshold=0.77)  # no previous model: the model's own
    assert reset2 and pred2.threshold == model.threshold == hvl_core.DEFAULT_THRESHOLD


def test_checkpoints_from_a_folder_and_from_uploaded_files(service, tiny_backbone, tmp_path):
    model = hvl_core.load_model(tiny_backbone, preset="dermatology-isic4", device="cpu")
    with __import__("torch").no_grad():
        model.head.W.add_(0.01)
    folder = hvl_core.save_checkpoint(tmp_path / "ck", model.head, "tiny-clip-random", model.classes, threshold=0.42)
    key, ck = service.resolve_checkpoint(checkpoint_ref(str(folder), None))
    spec, ck = service.spec("histology-nct-crc", "", checkpoint_ref(str(folder), None), 2)
    sess, pred, m, reset = service.analyse(service.load(str(EXAMPLE)), spec, ck, 0.9, 4, True, False)
    assert m.calibrated and reset and pred.threshold == pytest.approx(0.42)  # the calibrated threshold
    assert pred.classes == ISIC4  # the checkpoint fixes the classes
    # the two files uploaded separately (gradio puts each in its own cache folder)
    a, b = tmp_path / "u1", tmp_path / "u2"
    a.mkdir(), b.mkdir()
    (a / "head.safetensors").write_bytes((folder / WEIGHTS_NAME).read_bytes())  # first-layout names still work
    (b / "hvl.json").write_bytes((folder / CONFIG_NAME).read_bytes())
    spec_u, ck_u = service.spec(
        "dermatology-isic4", "", checkpoint_ref("", [str(a / "head.safetensors"), str(b / "hvl.json")]), 2
    )
    assert spec_u.checkpoint[0] == "upload"
    _, pred_u, m_u, _ = service.analyse(sess, spec_u, ck_u, None, 4, True, False)
    assert pred_u.msp == pytest.approx(pred.msp, abs=1e-5) and m_u.threshold == pytest.approx(0.42)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("hvl-ckpt-*"))  # temp links removed
    # bad checkpoints: readable messages
    with pytest.raises(UserError, match="upload the files of a checkpoint folder"):
        service.spec("dermatology-isic4", "", checkpoint_ref("", [str(a / "head.safetensors")]), 2)
    with pytest.raises(CheckpointError):
        service.spec("dermatology-isic4", "", checkpoint_ref(str(tmp_path / "missing"), None), 2)
    (b / "hvl.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        service.spec("dermatology-isic4", "", checkpoint_ref("", [str(a / "head.safetensors"), str(b / "hvl.json")]), 2)
    public = ModelService("tiny-clip-random", device="cpu", allow_local_checkpoints=False)
    with pytest.raises(UserError, match="disabled here"):
        public.spec("dermatology-isic4", "", checkpoint_ref(str(folder), None), 2)


def test_friendly_error_hides_internals():
    assert messages.friendly_error(ImageError("x.png is not an image")) == "x.png is not an image"
    msg = messages.friendly_error(RuntimeError("CUDA error: device-side assert at /src/foo.cu:12"))
    assert "RuntimeError" in msg and "foo.cu" not in msg and "still running" in msg


# --------------------------------------------------------------------------- examples and app.py


def test_examples_from_the_manifest_and_without_it(tmp_path):
    items = examples.load_examples()
    manifest = json.loads((ROOT / "assets" / "manifest.json").read_text())
    assert len(items) == len(manifest)
    assert {it["kind"] for it in items} == {"skin", "histology", "ood", "failure"}
    order = ["skin", "histology", "ood", "failure"]
    assert [it["kind"] for it in items] == sorted((it["kind"] for it in items), key=order.index)
    assert all(Path(it["path"]).is_file() for it in items)
    assert upload.gallery_caption(items[0]).startswith("Skin: ")
    # every bundled example's caption is whole (not cut) and short enough for its thumbnail
    captions = [upload.gallery_caption(it) for it in items]
    assert all(len(c) <= upload.CAPTION_WIDTH and not c.endswith("…") for c in captions), captions
    assert "Out-of-domain: MRI abdomen" in captions and "Fails: IHC colon" in captions
    # the failure set: a sentence each on why, shown under the gallery
    fails = upload.failures_markdown(items)
    assert fails.count("\n- ") == 4 and "IHC of colonic glands" in fails and "Blank glass" in fails
    assert "Fundus retina" in fails and "another organ" in fails  # the lessons of the others
    # no manifest: the images in the folder, kind from the name
    Image.new("RGB", (32, 32)).save(tmp_path / "ood_thing.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "skin_a.jpg")
    (tmp_path / "notes.txt").write_text("x")
    found = examples.load_examples(tmp_path)
    assert [(Path(i["path"]).name, i["kind"]) for i in found] == [("skin_a.jpg", "skin"), ("ood_thing.png", "ood")]


def test_app_py_builds_the_space_app(monkeypatch, tmp_path):
    import gradio as gr

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # app.py sets its own otherwise, for the whole session
    monkeypatch.setenv("HVL_BACKBONE", "tiny-clip-random")
    monkeypatch.setenv("HVL_DEVICE", "cpu")
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    spec = importlib.util.spec_from_file_location("hvl_space_app", ROOT / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert isinstance(mod.demo, gr.Blocks)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and mod.demo.analytics_enabled is False
    assert mod.demo.delete_cache == layout.DELETE_CACHE
    assert mod._launch["server_name"] == "127.0.0.1" and mod._launch["server_port"] == 7860
    assert mod._launch["run_history"] is False
    assert mod.service.allow_local_checkpoints  # loopback: local checkpoint folders allowed
    assert mod.service.backbone().name == "tiny-clip-random"
    from app.service import API_GROUP, QUEUE_MAX_SIZE

    assert mod.demo._queue.max_size == QUEUE_MAX_SIZE  # 20 clients × 5 requests all queue
    assert {fn.concurrency_id for fn in mod.demo.fns.values() if fn.api_name in ("predict", "batch")} == {API_GROUP}


def test_readme_front_matter_is_a_space_config():
    import gradio
    import yaml

    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).is_file()
    assert meta["sdk_version"] == gradio.__version__ == "6.31.0"  # the Space runs the version we test
    assert meta["python_version"] == "3.11" and meta["license"] == "apache-2.0"
    assert meta["colorFrom"] in SPACE_COLORS and meta["colorTo"] in SPACE_COLORS
    assert meta["suggested_hardware"] in ("cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "a10g-small")
    assert "timm/vit_base_patch16_clip_224.openai" in meta["models"]
    assert len(meta.get("short_description", "")) <= 60


SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


# --------------------------------------------------------------------------- the public API


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(service):
    from gradio_client import Client

    demo = layout.build_demo(service)
    kw = layout.launch_kwargs("127.0.0.1", _free_port())
    demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    try:
        yield Client(
            f"http://127.0.0.1:{kw['server_port']}/", verbose=False, analytics_enabled=False, download_files=False
        )
    finally:
        demo.close()


def api(client, path, preset="dermatology-isic4", classes="", threshold=None):
    """``/predict`` on a local file (uploaded by ``handle_file``), its JSON answer parsed."""
    from gradio_client import handle_file

    return json.loads(client.predict(handle_file(str(path)), preset, classes, "auto", threshold, api_name="/predict"))


def test_api_predicts_an_example(client, tiny_model):
    out = api(client, EXAMPLE)
    ref = tiny_model.predict(str(EXAMPLE))
    assert out["classes"] == ISIC4 and out["label"] == ref.label
    assert out["msp"] == pytest.approx(ref.msp, abs=1e-5) and out["score"] == pytest.approx(ref.score, abs=1e-5)
    assert out["threshold"] == hvl_core.DEFAULT_THRESHOLD and out["known"] == (out["score"] >= out["threshold"])
    assert out["decision"] == (
        f"Known: {ref.label} ({ref.msp:.3f})" if ref.known else "Unknown — refer to a specialist"
    )
    assert [t["class"] for t in out["top"]] == [c for c, _ in ref.top(5)] and out["file"] == EXAMPLE.name
    assert out["backbone"] == "tiny-clip-random" and out["checkpoint"] is None and out["n"] == 2
    flipped = api(client, EXAMPLE, threshold=min(out["msp"] + 0.01, 1.0) if out["known"] else out["msp"] - 0.01)
    assert flipped["known"] != out["known"] and flipped["msp"] == pytest.approx(out["msp"])
    assert flipped["threshold_source"] == "given"


def test_api_bad_files_get_their_message_and_the_server_keeps_serving(client, tmp_path):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "scan.png"
    bad.write_bytes(b"%PDF-1.4 definitely not a png")
    with pytest.raises(AppError, match="not an image this app can read"):
        api(client, bad)
    small = tmp_path / "dot.png"
    Image.new("L", (1, 1)).save(small)
    with pytest.raises(AppError, match="at least 16×16"):
        api(client, small)
    bomb = tmp_path / "bomb.png"  # a header claiming 20000×20000 pixels
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )
    with pytest.raises(AppError, match="too large to decode safely|more than the"):
        api(client, bomb)
    with pytest.raises(AppError, match="custom classes"):
        api(client, EXAMPLE, preset="custom", classes="")
    good = api(client, EXAMPLE, preset="custom", classes="melanoma, nevus")
    assert good["classes"] == ["melanoma", "nevus"] and good["decision"]


def test_api_handles_concurrent_requests(client):
    results = []

    def go():
        results.append(api(client, EXAMPLE)["msp"])

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3 and max(results) - min(results) < 1e-6


@pytest.mark.parametrize("score, threshold", [("msp", 2.0), ("nonsense", None), ("auto", "abc")])
def test_predict_checks_score_and_threshold_before_reading_the_image(service, monkeypatch, score, threshold):
    """A threshold outside the score's range took a whole encoding (2.5-3.1 s) to be refused."""
    from app import api

    def never(*a, **k):
        raise AssertionError("the image was read")

    monkeypatch.setattr(api, "image_source", never)
    with pytest.raises((UserError, ValueError)) as e:
        api.predict(service, "data:image/png;base64,AAAA", "dermatology-isic4", "", score, threshold)
    assert ("threshold" in str(e.value) or "score" in str(e.value)) and "\n" not in str(e.value)
