"""The model service on a public server: bounded builds, no server paths from any field or file,
checkpoints keyed by all that decides, uploads swept, the queue. Each test reproduces a defect
found by an adversarial pass."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import hvl_core
from app import service as svc_mod
from app.service import ModelService, Session, UserError, checkpoint_ref, configure_queue, sweep_uploads
from hvl_core import CheckpointError, ScoreError
from hvl_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from tests.wsi_files import write_pyramid

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"


@pytest.fixture
def builds(monkeypatch, tiny_backbone):
    """create_backbone replaced by a counter handing out the tiny backbone under the asked name."""
    made = []

    def fake(name="auto"):
        if name.startswith("ViT-B-16:"):
            raise AssertionError("a public server built a checkpoint's arbitrary backbone")
        made.append(name)
        bb = hvl_core.create_backbone("tiny-clip-random") if name == "fresh" else tiny_backbone
        return bb

    monkeypatch.setattr(svc_mod, "create_backbone", fake)
    return made


def checkpoint_files(
    tmp_path, tiny_backbone, name="ck", threshold=0.42, backbone="tiny-clip-random", classes=None, edit=None
) -> list[str]:
    """A checkpoint's two files in separate folders, as gradio stores uploads."""
    model = hvl_core.load_model(tiny_backbone, classes=classes or ["melanoma", "nevus"], device="cpu")
    folder = hvl_core.save_checkpoint(tmp_path / name, model.head, backbone, model.classes, threshold=threshold)
    if edit:
        meta = json.loads((folder / CONFIG_NAME).read_text())
        edit(meta)
        (folder / CONFIG_NAME).write_text(json.dumps(meta))
    a, b = tmp_path / f"{name}-u1", tmp_path / f"{name}-u2"
    a.mkdir(), b.mkdir()
    (a / "head.safetensors").write_bytes((folder / WEIGHTS_NAME).read_bytes())  # first-layout upload names
    (b / "hvl.json").write_bytes((folder / CONFIG_NAME).read_bytes())
    return [str(a / "head.safetensors"), str(b / "hvl.json")]


def public(tiny_backbone) -> ModelService:
    s = ModelService("tiny-clip-random", device="cpu", allow_local_checkpoints=False)
    s._backbones["tiny-clip-random"] = tiny_backbone
    return s


@pytest.mark.parametrize(
    "name", ["ViT-B-16:none", "ViT-B-16:None", "ViT-B-16:NONE", "ViT-B-16:/etc/passwd", "hf-hub:someone/big-model"]
)
def test_public_server_builds_no_backbone_a_checkpoint_names(name, tiny_backbone, tmp_path, builds):
    s = public(tiny_backbone)
    files = checkpoint_files(tmp_path, tiny_backbone, backbone=name)
    spec, ck = s.spec("dermatology-isic4", "", checkpoint_ref("", files), 2)
    with pytest.raises(UserError, match="runs only its listed backbones") as e:
        s.model(spec, ck)
    assert "passwd" not in str(e.value) and builds == [] and len(s._backbones) == 1


def test_a_checkpoints_custom_backbone_is_off_on_a_public_server_unless_allowed(tiny_backbone, tmp_path, monkeypatch):
    """A checkpoint naming a registered backbone the page does not offer (a ``*-random`` twin:
    seconds of CPU and ~1 GB while every browser user waits) is refused by default."""
    import copy

    twin, made = copy.copy(tiny_backbone), []
    twin.name = "custom-random"
    monkeypatch.setitem(hvl_core.backbones._REGISTRY, "custom-random", lambda: twin)
    monkeypatch.setattr(svc_mod, "create_backbone", lambda name="auto": made.append(name) or twin)
    monkeypatch.delenv("HVL_ALLOW_CUSTOM_BACKBONES", raising=False)
    s = public(tiny_backbone)
    files = checkpoint_files(tmp_path, tiny_backbone, backbone="custom-random")
    spec, ck = s.spec("dermatology-isic4", "", checkpoint_ref("", files), 2)
    with pytest.raises(UserError, match="runs only its listed backbones"):
        s.model(spec, ck)
    assert made == []
    monkeypatch.setenv("HVL_ALLOW_CUSTOM_BACKBONES", "1")
    with pytest.raises(UserError, match="being built"):  # in a worker of its own
        s.model(spec, ck)
    s._builds.wait()
    assert s.model(spec, ck).backbone is twin and made == ["custom-random"]


def test_rejected_checkpoint_leaves_no_backbone_and_builds_stay_bounded(tiny_backbone, tmp_path, builds, monkeypatch):
    s = ModelService("tiny-clip-random", device="cpu", max_backbones=2)
    s._backbones["tiny-clip-random"] = tiny_backbone
    bad = checkpoint_files(tmp_path, tiny_backbone, "bad", backbone="fresh", edit=lambda m: m.update(embed_dim=8))
    with pytest.raises((CheckpointError, ValueError)):
        spec, ck = s.spec("dermatology-isic4", "", checkpoint_ref("", bad), 2)
        s.model(spec, ck)
    assert list(s._backbones) == ["tiny-clip-random"]
    for i in range(4):  # four more backbone names: never more than two kept
        # registered for this test only: the registry is shared by the whole run
        monkeypatch.setitem(hvl_core.backbones._REGISTRY, f"bb-{i}", lambda: tiny_backbone)
        s.backbone(f"bb-{i}")
        assert len(s._backbones) <= 2 and "tiny-clip-random" in s._backbones  # the default stays
    assert len(s._models) <= s.max_models


def test_recalibrated_checkpoint_with_the_same_weights_is_another_model(service_tiny, tiny_backbone, tmp_path):
    first = checkpoint_files(tmp_path, tiny_backbone, "a", threshold=0.42)
    second = checkpoint_files(
        tmp_path, tiny_backbone, "b", threshold=0.77, edit=lambda m: m["classes"]["names"].__setitem__(0, "lentigo")
    )
    s = service_tiny
    spec1, ck1 = s.spec("dermatology-isic4", "", checkpoint_ref("", first), 2)
    spec2, ck2 = s.spec("dermatology-isic4", "", checkpoint_ref("", second), 2)
    assert ck1.meta["weights_sha256"] == ck2.meta["weights_sha256"]
    m1, m2 = s.model(spec1, ck1), s.model(spec2, ck2)
    assert m1.threshold == pytest.approx(0.42) and m2.threshold == pytest.approx(0.77)
    assert m1.classes.names[0] == "melanoma" and m2.classes.names[0] == "lentigo"


@pytest.fixture
def service_tiny(tiny_backbone):
    s = ModelService("tiny-clip-random", device="cpu")
    s._backbones["tiny-clip-random"] = tiny_backbone
    return s


def test_public_checkpoint_field_reaches_no_loader_and_does_not_reveal_paths(tiny_backbone, tmp_path, monkeypatch):
    s = public(tiny_backbone)
    calls = []
    from app import checkpoints

    monkeypatch.setattr(checkpoints, "load_checkpoint", lambda *a: calls.append(a))
    monkeypatch.setattr(ModelService, "_hub_checkpoint", staticmethod(lambda repo: calls.append(repo)))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("x")
    messages = set()
    for text in ["/etc/passwd", "/no/such/file", "../etc", "~/x", "./etc", "etc/../etc/passwd", "a/b/c", "C:\\x"]:
        with pytest.raises(UserError) as e:
            s.resolve_checkpoint(checkpoint_ref(text, None))
        messages.add(str(e.value))
    assert len(messages) == 1 and calls == []
    # an existing relative folder that also reads as a hub id goes to the hub, never to the disk
    with pytest.raises(Exception):
        s.resolve_checkpoint(checkpoint_ref("etc/passwd", None))
    assert calls == ["etc/passwd"]


def test_uploaded_checkpoint_errors_name_no_server_path(service_tiny, tmp_path, tiny_backbone):
    files = checkpoint_files(tmp_path, tiny_backbone)
    Path(files[1]).write_text("{not json")
    with pytest.raises(CheckpointError) as e:
        service_tiny.resolve_checkpoint(checkpoint_ref("", files))
    assert "not valid JSON" in str(e.value) and "/tmp" not in str(e.value) and "hvl-ckpt" not in str(e.value)
    Path(files[1]).write_text("[" * 100_000 + "]" * 100_000)  # a deep nest
    with pytest.raises(CheckpointError) as e:
        service_tiny.resolve_checkpoint(checkpoint_ref("", files))
    assert "hvl-ckpt" not in str(e.value)


def test_nan_threshold_is_refused(service_tiny):
    spec, ck = service_tiny.spec("dermatology-isic4", "", None, 2)
    sess = service_tiny.load(str(EXAMPLE), previous=Session(model_identity=spec.identity()))
    with pytest.raises(ScoreError, match="must be a finite number"):
        service_tiny.analyse(sess, spec, ck, float("nan"), 4, True, False)
    with pytest.raises(ScoreError, match="outside the range of the msp score"):
        service_tiny.analyse(sess, spec, ck, 1.5, 4, True, False)


def test_sweep_removes_old_uploads_and_empty_folders(tmp_path):
    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    old, new, empty = root / "abc" / "Jane Doe.png", root / "new.png", root / "tmpq1w2e3"
    old.write_bytes(b"x"), new.write_bytes(b"y"), empty.write_bytes(b"")
    outside = tmp_path / "keep.txt"
    outside.write_text("keep")
    (root / "link").symlink_to(outside)
    past = time.time() - 3600
    for p in (old, empty):
        os.utime(p, (past, past))
    os.utime(root / "link", (past, past), follow_symlinks=False)
    assert sweep_uploads(root, older_than_s=600) == 3
    assert new.exists() and not old.exists() and not empty.exists() and not (root / "abc").exists()
    assert outside.read_text() == "keep"  # a link is removed, its target never followed
    assert sweep_uploads(root, 0) == 1 and not any(root.iterdir())  # start-up: everything


def test_sweep_removes_the_empty_temp_files_of_uploads_sooner(tmp_path):
    """gradio's upload parser leaves one 0-byte temporary file per upload next to the uploads."""
    leftover, upload = tmp_path / "tmpab12cd", tmp_path / "x" / "scan.png"
    upload.parent.mkdir()
    leftover.write_bytes(b""), upload.write_bytes(b"png")
    past = time.time() - 120
    for p in (leftover, upload):
        os.utime(p, (past, past))
    assert sweep_uploads(tmp_path, older_than_s=600, empty_older_than_s=60) == 1
    assert not leftover.exists() and upload.exists()


def test_queue_gives_the_api_its_own_group():
    import gradio as gr

    with gr.Blocks() as demo:
        t = gr.Textbox()
        gr.Button().click(lambda x: x, t, t, api_name="predict", concurrency_id="model")
        gr.Button().click(lambda x: x, t, t, concurrency_id="model", api_visibility="private")
    configure_queue(demo)
    groups = sorted(fn.concurrency_id for fn in demo.fns.values())
    assert groups == ["api", "model"] and demo._queue.max_size == svc_mod.QUEUE_MAX_SIZE


def test_a_click_on_the_thumbnail_picks_that_tile(service_tiny, tmp_path):
    p = tmp_path / "s.tiff"
    write_pyramid(p, 2048, 2048, mpp=0.5, levels=2)
    sess = service_tiny.load(str(p))
    assert sess.loaded.slide.picked
    thumb = sess.loaded.slide.thumbnail
    new = service_tiny.pick_tile(sess, thumb.width / 4, thumb.height / 4)
    assert new.loaded.slide.tile_center == (512, 512) and not new.loaded.slide.picked
    os.remove(p)
    with pytest.raises(UserError, match="upload it again"):
        service_tiny.pick_tile(new, 1, 1)
    with pytest.raises(UserError, match="not a whole-slide image"):
        service_tiny.pick_tile(service_tiny.load(str(EXAMPLE)), 1, 1)


def test_api_flood_does_not_lock_out_browser_events():
    """Twelve API requests queued first; a browser event (the other group) is served while they
    still wait, not after all of them; and more requests than the old 16-slot queue all queue."""
    import socket

    import gradio as gr
    from gradio_client import Client

    def slow(x):
        time.sleep(0.3)
        return x

    with gr.Blocks() as demo:
        t = gr.Textbox()
        gr.Button().click(slow, t, t, api_name="predict", concurrency_id="model")
        gr.Button().click(slow, t, t, api_name="browser", concurrency_id="model")
    configure_queue(demo)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        jobs = [client.submit(str(i), api_name="/predict") for i in range(20)]
        time.sleep(0.5)
        t0 = time.perf_counter()
        assert client.predict("b", api_name="/browser") == "b"
        browser_wait = time.perf_counter() - t0
        answers = [j.result(timeout=60) for j in jobs]
        api_done = time.perf_counter() - t0
        assert sorted(answers, key=int) == [str(i) for i in range(20)]
        # one API slot: the API backlog takes ~6 s; the browser event had its own slot
        assert browser_wait < api_done / 2
    finally:
        demo.close()


def test_template_bomb_checkpoint_is_refused_before_anything_is_built(tiny_backbone, tmp_path, builds):
    """A 1.6 KB config whose template would format 100 MB per class: refused from its text."""
    s = public(tiny_backbone)
    for i, template in enumerate(["{{}}{0:>100000000}", "{} {x}", "{} {0.__class__}"]):
        files = checkpoint_files(
            tmp_path, tiny_backbone, f"bomb{i}", edit=lambda m, t=template: m["classes"].update(template=t)
        )
        with pytest.raises(CheckpointError, match="exactly one {}") as e:
            s.spec("dermatology-isic4", "", checkpoint_ref("", files), 2)
        assert "\n" not in str(e.value)
    assert builds == [] and s._models == {} and s._uploaded == {}


def test_listed_backbone_of_another_width_is_refused_without_building_it(tiny_backbone, tmp_path, builds):
    """biomedclip-random is listed, but gives 512-d embeddings: a 64-d checkpoint naming it is
    refused from its config, before the 30 s build."""
    s = public(tiny_backbone)
    files = checkpoint_files(tmp_path, tiny_backbone, backbone="biomedclip-random")
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="embed_dim is 64, but the backbone biomedclip-random gives 512-d"):
        s.spec("dermatology-isic4", "", checkpoint_ref("", files), 2)
    assert builds == [] and time.perf_counter() - t0 < 5


def test_a_slow_build_does_not_hold_the_service_lock(tiny_backbone, tmp_path, monkeypatch):
    """While one request builds a backbone (on loopback, in the request), another's cached model
    and decisions go on."""
    import threading

    s = ModelService("tiny-clip-random", device="cpu")
    s._backbones["tiny-clip-random"] = tiny_backbone
    spec, _ = s.spec("dermatology-isic4", "", None, 2)
    s.model(spec)  # cached
    started, release = threading.Event(), threading.Event()

    def slow_build(name="auto"):
        started.set()
        release.wait(20)
        return tiny_backbone

    monkeypatch.setattr(svc_mod, "create_backbone", slow_build)
    monkeypatch.setattr(svc_mod, "CHOOSABLE_BACKBONES", ("slow-one",))
    t = threading.Thread(target=lambda: s.model(s.spec("dermatology-isic4", "", None, 2, "slow-one")[0]))
    t.start()
    try:
        assert started.wait(10)
        t0 = time.perf_counter()
        assert s.model(spec) is not None and s.backbone() is tiny_backbone
        assert time.perf_counter() - t0 < 1  # not behind the build
    finally:
        release.set()
        t.join(30)


def test_sessions_are_bounded_in_number_and_bytes(service_tiny, monkeypatch):
    """Every session used to keep its decoded image and encoding for 30 min: now at most
    MAX_SESSIONS of them and MAX_SESSION_BYTES together, least recently used out."""
    from app import sessions

    store = sessions.SessionStore(max_items=5, max_bytes=10 * 2**20)
    monkeypatch.setattr(sessions, "STORE", store)
    monkeypatch.setattr(svc_mod, "STORE", store)
    spec, ck = service_tiny.spec("dermatology-isic4", "", None, 2)
    first = service_tiny.load(str(EXAMPLE))
    first, *_ = service_tiny.analyse(first, spec, ck, None, 4, True, False)
    assert first.encoded is not None and store.get(first.key).encoded is not None
    many = [service_tiny.load(str(EXAMPLE)) for _ in range(8)]
    assert len(store) <= 5 and store.nbytes <= 10 * 2**20
    assert many[-1].has_image() and not first.has_image() and first.dropped()
    with pytest.raises(UserError, match="no longer held.*upload it again"):
        service_tiny.analyse(first, spec, ck, None, 4, True, False)
    with pytest.raises(UserError, match="upload it again"):
        service_tiny.decide(first, None, 4, True, False)
    # one session's next image lets its last one go
    again = service_tiny.load(str(EXAMPLE), previous=many[-1])
    assert not many[-1].has_image() and again.has_image()


def test_sessions_expire(monkeypatch):
    from app.sessions import SessionStore
    from hvl_core import load_image

    now = [0.0]
    store = SessionStore(max_items=10, max_bytes=2**30, ttl_s=60, clock=lambda: now[0])
    key = store.put(load_image(str(EXAMPLE)))
    now[0] = 59
    assert store.get(key) is not None  # used: its clock starts again
    now[0] = 59 + 61
    assert store.get(key) is None and len(store) == 0


def test_batch_is_bounded_in_pixels_not_bytes(tiny_model, monkeypatch):
    """A 4 MB batch of twelve 9400² PNGs decoded for 126 s at +6.8 GB: the batch cap counted
    compressed bytes. Now each file is refused from its header past the per-image budget, and the
    batch's decoded pixels are bounded; each refused file is a row with its reason."""
    import io

    from PIL import Image

    from app import batch as bt
    from tests.core.test_images import _png_header

    bomb = _png_header(9400, 9400)
    items = [(f"bomb{i}.png", bomb) for i in range(12)]
    b = bt.encode(tiny_model, items)
    assert sorted(b.errors) == list(range(12)) and all("decoded at full size" in e for e in b.errors.values())

    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (120, 60, 90)).save(buf, "PNG")
    monkeypatch.setattr(bt, "MAX_BATCH_PIXELS", 3 * 300 * 200)
    b = bt.encode(tiny_model, [(f"{i}.png", buf.getvalue()) for i in range(5)])
    assert b.readable() == [0, 1, 2] and sorted(b.errors) == [3, 4]
    assert "pixel budget" in b.errors[3] and b.encoded[2] is not None and b.encoded[3] is None


def test_a_public_server_builds_another_backbone_in_a_worker_of_its_own(tiny_backbone, monkeypatch):
    """A build held the browser event's queue slot: every other user's upload waited behind it."""
    import threading

    from hvl_core.backbones import BackboneUnavailable

    s = public(tiny_backbone)
    default, _ = s.spec("dermatology-isic4", "", None, 2)
    s.model(default)
    release, made, fail = threading.Event(), [], []

    def slow_build(name="auto"):
        made.append(name)
        release.wait(20)
        if fail:
            raise BackboneUnavailable(f"Cannot load {name}: offline.")
        return tiny_backbone

    monkeypatch.setattr(svc_mod, "create_backbone", slow_build)
    monkeypatch.setattr(svc_mod, "CHOOSABLE_BACKBONES", ("slow-one",))
    other, _ = s.spec("dermatology-isic4", "", None, 2, "slow-one")
    for _ in range(2):  # answered at once, however often asked; one build
        with pytest.raises(UserError, match="slow-one is being built"):
            s.model(other)
    assert s.model(default) is not None and made == ["slow-one"]  # the others go on meanwhile
    release.set()
    s._builds.wait()
    assert s.model(other).backbone is tiny_backbone and "tiny-clip-random" in s._backbones
    fail.append(1)
    s._backbones.pop("slow-one")
    other, _ = s.spec("dermatology-isic4", "", None, 3, "slow-one")  # a model not built yet
    with pytest.raises(UserError, match="being built"):
        s.model(other)
    s._builds.wait()
    with pytest.raises(BackboneUnavailable, match="offline"):  # a failed build is told once
        s.model(other)
    with pytest.raises(UserError, match="being built"):  # then tried again
        s.model(other)
    s._builds.wait()
