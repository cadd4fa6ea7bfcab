"""Bad inputs and concurrent clients against the demo's server side; writes bench/results/inputs.md|json.

    PYTHONPATH=. .venv/bin/python bench/inputs_bench.py                  # both parts (~3 min on 2 cores)
    PYTHONPATH=. .venv/bin/python bench/inputs_bench.py --part bad       # the bad-input table only
    PYTHONPATH=. .venv/bin/python bench/inputs_bench.py --part memory    # peak RSS per request, worst cases
    PYTHONPATH=. .venv/bin/python bench/inputs_bench.py --part hostile   # a hostile client beside an ordinary one
    git worktree add /tmp/before HEAD~1 && PYTHONPATH=. .venv/bin/python bench/inputs_bench.py \
        --part decode --compare-root /tmp/before                       # decoding memory, before / after

Part 1, bad inputs: each kind goes through what the app does with an upload or a field
(``ModelService.load`` / ``spec`` / ``model`` / ``analyse``) on the ``tiny-clip-random`` backbone,
in this process; the row says the message the user sees, whether it was a traceback (an
exception that is not a user error), and the peak RSS while it ran (sampled every 2 ms).

Part 3, memory (``--part memory``): the worst case of each kind, each in a fresh process: ten
uploads of a template-bomb checkpoint, 20 sessions against one, a 9400² and a 7000² RGBA PNG, a
batch of twelve of each, a checkpoint naming a listed backbone of another width, deflated DICOMs
(~400 MB and ~4 GB inflated), a 20,000-page TIFF, a 9500² and a 10000×8000 JPEG, and ``app.py``
stopped by SIGTERM after an upload (is its upload folder gone?).

Part 4, a hostile client (``--part hostile``): ``app.py`` on loopback; one client's ``/predict``
timed alone and beside a client sending deflated DICOMs, a 20,000-page TIFF, a raw call with too
few values (a data: URI, an upload named like a patient) and a 100 MB body; every answer and the
server's log are then searched for a path, the name or a data: URI.

Part 2, concurrency: ``app.py`` on loopback in a subprocess (``HVL_BACKBONE=tiny-clip-random``),
20 ``gradio_client`` clients × 5 ``/predict`` requests each at once; errors, latency
percentiles, and the server's RSS after the first 10 and after all 100 requests.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"


# --------------------------------------------------------------------------- files


def _png(a) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _png_rgba(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (side, side), (40, 90, 160, 200)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _tiff(a, **kw) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, a, **kw)
    return buf.getvalue()


def big_slide(path: Path, side: int = 12288, mpp: float = 0.5) -> None:
    """A 12288² pyramidal JPEG TIFF written tile by tile (never whole in memory): glass with a
    purple block of tissue."""
    import tifffile

    t = 256

    def tiles(n):
        for ty in range(0, n, t):
            for tx in range(0, n, t):
                tile = np.full((t, t, 3), 242, np.uint8)
                if n // 4 <= ty < n // 2 and n // 2 <= tx < 3 * n // 4:
                    tile[:] = (170, 60, 150)
                yield tile

    res = 1e4 / mpp
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(
            tiles(side),
            shape=(side, side, 3),
            dtype=np.uint8,
            tile=(t, t),
            photometric="rgb",
            compression="jpeg",
            subifds=2,
            resolution=(res, res),
            resolutionunit="CENTIMETER",
        )
        for i in (1, 2):
            n = side // 2**i
            tw.write(
                tiles(n),
                shape=(n, n, 3),
                dtype=np.uint8,
                tile=(t, t),
                photometric="rgb",
                compression="jpeg",
                subfiletype=1,
                resolution=(res / 2**i, res / 2**i),
                resolutionunit="CENTIMETER",
            )


def bad_inputs(tmp: Path, tiny_backbone) -> list[tuple[str, str, dict]]:
    """(kind, what it is, how to run it) — ``image``: uploaded file/bytes/array; ``ckpt``: uploaded
    checkpoint files; ``text``: the checkpoint field; ``settings``: API arguments."""
    import hvl_core
    from tests.wsi_files import dicom_bytes

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good_png = _png(rgb)
    ok_model = hvl_core.load_model(tiny_backbone, classes=["melanoma", "nevus"], device="cpu")

    def ck(name, edit=None, raw=None, weights=None, backbone="tiny-clip-random"):
        folder = hvl_core.save_checkpoint(tmp / f"ck-{name}", ok_model.head, backbone, ok_model.classes, threshold=0.4)
        cfg, wts = folder / "config.json", folder / "model.safetensors"
        if edit:
            meta = json.loads(cfg.read_text())
            edit(meta)
            cfg.write_text(json.dumps(meta))
        if raw is not None:
            cfg.write_text(raw)
        if weights is not None:
            wts.write_bytes(weights)
        return [str(wts), str(cfg)]

    def f(name, data: bytes) -> str:
        p = tmp / name
        p.write_bytes(data)
        return str(p)

    from tests.wsi_files import slide_pixels, write_dicom_wsi

    (tmp / "dwsi").mkdir()
    dwsi = write_dicom_wsi(tmp / "dwsi", slide_pixels(3072, 2048), mpp=0.25, levels=1)
    slide = tmp / "slide-12288.tiff"
    big_slide(slide)
    nan_f = np.linspace(0, 1, 256 * 256, dtype=np.float32).reshape(256, 256)
    nan_f[5, 5] = np.nan
    inf_f = nan_f.copy()
    inf_f[5, 5] = np.inf
    png = good_png
    pickle_like = b"\x80\x04\x95" + b"\x00" * 64
    return [
        ("empty file", "0 bytes", {"image": f("empty.png", b"")}),
        ("text file", "plain text named .png", {"image": f("notes.png", b"hello " * 100)}),
        ("truncated PNG", "half a PNG", {"image": f("half.png", png[: len(png) // 2])}),
        ("truncated JPEG", "a third of a JPEG", {"image": f("cut.jpg", EXAMPLE.read_bytes()[:3000])}),
        ("PNG bomb", "20000² PNG header, 0.3 MB", {"image": f("bomb.png", _png(np.zeros((20000, 20000), np.uint8)))}),
        ("tiny image", "1×1 PNG", {"image": f("one.png", _png(np.zeros((1, 1, 3), np.uint8)))}),
        (
            "16-bit 9000² TIFF",
            "uint16 9000×9000",
            {"image": f("u16.tiff", _tiff(np.zeros((9000, 9000), np.uint16), compression="zlib"))},
        ),
        (
            "float 9000² TIFF",
            "float32 9000×9000",
            {"image": f("f32.tiff", _tiff(np.zeros((9000, 9000), np.float32), compression="zlib"))},
        ),
        ("float TIFF with NaN", "one NaN pixel", {"image": f("nan.tiff", _tiff(nan_f))}),
        ("float TIFF with inf", "one inf pixel", {"image": f("inf.tiff", _tiff(inf_f))}),
        ("all-NaN TIFF", "every pixel NaN", {"image": f("allnan.tiff", _tiff(np.full((64, 64), np.nan, np.float32)))}),
        ("float array [0,1]", "numpy float64 RGB", {"image": rng.random((64, 64, 3))}),
        ("uint16 array", "numpy uint16 RGB", {"image": rng.integers(0, 65535, (64, 64, 3), dtype=np.uint16)}),
        ("bool array", "numpy bool", {"image": rng.random((64, 64)) > 0.5}),
        ("4-D array", "numpy (2, 64, 64, 3)", {"image": np.zeros((2, 64, 64, 3), np.uint8)}),
        ("None", "no image", {"image": None}),
        ("DICOM grey", "8-bit MONOCHROME2", {"image": f("grey.dcm", dicom_bytes(rgb[:, :, 0]))}),
        ("DICOM colour", "8-bit RGB", {"image": f("rgb.dcm", dicom_bytes(rgb))}),
        (
            "DICOM 12-bit windowed",
            "uint16, window",
            {
                "image": f(
                    "w.dcm",
                    dicom_bytes(rng.integers(0, 4096, (64, 64), dtype=np.uint16), bits_stored=12, window=(2048, 1000)),
                )
            },
        ),
        ("DICOM truncated", "pixel data cut", {"image": f("cut.dcm", dicom_bytes(rgb)[:-5000])}),
        ("DICOM WSI level file", "3072×2048 TILED_FULL, 0.25 µm/px", {"image": str(dwsi[0])}),
        ("DICOM WSI as bytes", "the same file's bytes", {"image": dwsi[0].read_bytes()}),
        ("whole-slide TIFF 12288²", "pyramid, 0.5 µm/px, JPEG tiles", {"image": str(slide)}),
        ("slide, tile outside", "tile (99999, 5)", {"image": str(slide), "tile": (99999, 5)}),
        ("checkpoint: ViT-B-16:none", "config.json backbone", {"ckpt": ck("none", backbone="ViT-B-16:none")}),
        ("checkpoint: ViT-B-16:NONE", "config.json backbone", {"ckpt": ck("NONE", backbone="ViT-B-16:NONE")}),
        ("checkpoint: backbone path", "ViT-B-16:/etc/passwd", {"ckpt": ck("passwd", backbone="ViT-B-16:/etc/passwd")}),
        ("checkpoint: pickle weights", "pickle bytes as .safetensors", {"ckpt": ck("pkl", weights=pickle_like)}),
        ("checkpoint: not JSON", "config.json = '{not json'", {"ckpt": ck("nojson", raw="{not json")}),
        (
            "checkpoint: deep nest",
            "config.json 100k nested lists",
            {"ckpt": ck("deep", raw="[" * 100_000 + "]" * 100_000)},
        ),
        (
            "checkpoint: string version",
            "format_version '2'",
            {"ckpt": ck("ver", edit=lambda m: m.update(format_version="2"))},
        ),
        (
            "checkpoint: string classes",
            "num_classes 'two'",
            {"ckpt": ck("ncls", edit=lambda m: m.update(num_classes="two"))},
        ),
        (
            "checkpoint: n = 10⁶",
            "config.n = 1000000",
            {"ckpt": ck("bign", edit=lambda m: m["config"].update(n=1_000_000))},
        ),
        (
            "checkpoint: NaN threshold",
            "threshold NaN",
            {"ckpt": ck("nanthr", edit=lambda m: m.update(threshold=float("nan")))},
        ),
        ("checkpoint: one file", "only config.json", {"ckpt": ck("one")[1:]}),
        (
            "checkpoint: template bomb",
            "template '{{}}{0:>100000000}'",
            {"ckpt": ck("bomb", edit=lambda m: m["classes"].update(template="{{}}{0:>100000000}"))},
        ),
        (
            "checkpoint: template field",
            "template '{} {0.__class__}'",
            {"ckpt": ck("attr", edit=lambda m: m["classes"].update(template="{} {0.__class__}"))},
        ),
        (
            "checkpoint: listed, other width",
            "biomedclip-random, 64-d head",
            {"ckpt": ck("wide", backbone="biomedclip-random")},
        ),
        ("PNG 9400² RGBA", "1.5 MB file, 88 M pixels", {"image": f("rgba-9400.png", _png_rgba(9400))}),
        ("checkpoint field: /etc/passwd", "text", {"text": "/etc/passwd"}),
        ("checkpoint field: ../..", "text", {"text": "../../etc"}),
        ("checkpoint field: upload path", "a pickle in the upload folder", {"text": f("evil.pt", pickle_like)}),
        ("threshold NaN", "API threshold", {"settings": {"threshold": float("nan")}}),
        ("n = 99", "API n", {"settings": {"n": 99}}),
        ("unknown preset", "API preset 'x'", {"settings": {"preset": "x"}}),
        ("custom, no classes", "API preset custom, ''", {"settings": {"preset": "custom"}}),
    ]


class PeakRSS:
    """Peak resident memory of ``pid`` while the block runs (sampled every 2 ms)."""

    def __init__(self, pid: int | None = None):
        self.proc = psutil.Process(pid or os.getpid())

    def __enter__(self):
        self.peak, self._stop = self.proc.memory_info().rss, False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def run_bad_inputs() -> dict:
    import gc

    from app.service import USER_ERRORS, ModelService, Session, checkpoint_ref
    from hvl_core import create_backbone

    tiny = create_backbone("tiny-clip-random")
    service = ModelService("tiny-clip-random", device="cpu", allow_local_checkpoints=False)
    service._backbones["tiny-clip-random"] = tiny
    rows = []
    with tempfile.TemporaryDirectory() as d:
        kinds = bad_inputs(Path(d), tiny)
        service.analyse(
            service.load(str(EXAMPLE)), *service.spec("dermatology-isic4", "", None, 2), None, 4, True, False
        )
        for kind, what, job in kinds:
            gc.collect()
            base = psutil.Process().memory_info().rss
            message, traceback = "ok", False
            with PeakRSS() as peak:
                try:
                    st = {
                        "preset": "dermatology-isic4",
                        "custom": "",
                        "threshold": None,
                        "n": 2,
                        **job.get("settings", {}),
                    }
                    ref = checkpoint_ref(job.get("text", ""), job.get("ckpt"))
                    spec, ck = service.spec(st["preset"], st["custom"], ref, st["n"])
                    source = job.get("image", str(EXAMPLE)) if "image" in job else str(EXAMPLE)
                    sess = service.load(source, previous=Session(model_identity=spec.identity()), tile=job.get("tile"))
                    sess, pred, model, _ = service.analyse(sess, spec, ck, st["threshold"], 4, True, False)
                    message = f"ok: {pred.label or 'unknown'} (MSP {pred.msp:.3f})" + (
                        f" — {'; '.join(pred.notes)}" if pred.notes else ""
                    )
                except USER_ERRORS + (ValueError,) as e:
                    message = str(e)
                except Exception as e:  # noqa: BLE001 — what the bench counts: a traceback
                    message, traceback = f"TRACEBACK {type(e).__name__}: {e}", True
            rows.append(
                {
                    "kind": kind,
                    "input": what,
                    "message": message[:300],
                    "traceback": traceback,
                    "rss_before_mb": round(base / 2**20),
                    "peak_rss_mb": round(peak.peak / 2**20),
                    "peak_growth_mb": round((peak.peak - base) / 2**20),
                }
            )
            print(f"{kind:32s} {rows[-1]['peak_growth_mb']:5d} MB  {message[:110]}", flush=True)
    return {
        "rows": rows,
        "kinds": len(rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "backbones_kept": list(service._backbones),
    }


# --------------------------------------------------------------------------- concurrency


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(port: int, upload_parent) -> dict:
    """The environment of an ``app.py`` started for a measurement: the tiny backbone on the CPU, on
    loopback at ``port``, its upload folder under ``upload_parent``."""
    return {
        **os.environ,
        "HVL_BACKBONE": "tiny-clip-random",
        "HVL_DEVICE": "cpu",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
        "GRADIO_TEMP_DIR": str(upload_parent),
    }


def run_concurrency(clients: int = 20, per_client: int = 5) -> dict:
    from gradio_client import Client, handle_file

    port = _free_port()
    uploads = Path(tempfile.mkdtemp(prefix="hvl-bench-uploads-"))
    tmp_before = {p.name for p in Path(tempfile.gettempdir()).iterdir()}
    env = server_env(port, uploads)
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = psutil.Process(server.pid)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 — still starting
                time.sleep(0.5)
        latencies, errors, done = [], [], [0]
        rss_at = {}
        lock = threading.Lock()

        def one_client(i):
            c = Client(url, verbose=False)
            for j in range(per_client):
                t0 = time.perf_counter()
                try:
                    out = c.predict(
                        handle_file(str(EXAMPLE)), "dermatology-isic4", "", None, 2, 4, True, False, api_name="/predict"
                    )
                    assert "msp" in out
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}"[:200])
                with lock:
                    done[0] += 1
                    if done[0] in (10, clients * per_client):
                        rss_at[done[0]] = proc.memory_info().rss

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    in_uploads = [p for p in uploads.rglob("*") if p.is_file()]
    empty_uploads = sum(p.stat().st_size == 0 for p in in_uploads)
    from app.service import sweep_uploads

    swept = sweep_uploads(uploads, 0)  # what the next start-up does
    left_after_sweep = sum(1 for p in uploads.rglob("*") if p.is_file())
    shutil.rmtree(uploads, ignore_errors=True)
    log.seek(0)
    server_log = log.read().decode(errors="replace")
    lat = sorted(latencies)
    leftovers = [p for p in Path(tempfile.gettempdir()).iterdir() if p.name not in tmp_before and p.is_file()]
    return {
        "backbone": "tiny-clip-random (CPU)",
        "clients": clients,
        "requests_per_client": per_client,
        "requests": clients * per_client,
        "answers": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": round(wall, 1),
        "p50_s": round(statistics.median(lat), 2) if lat else None,
        "p95_s": round(lat[int(0.95 * (len(lat) - 1))], 2) if lat else None,
        "max_s": round(lat[-1], 2) if lat else None,
        "rss_after_10_mb": round(rss_at.get(10, 0) / 2**20),
        "rss_after_100_mb": round(rss_at.get(clients * per_client, 0) / 2**20),
        "server_tracebacks": server_log.count("Traceback"),
        "upload_folder_files_after_run": len(in_uploads),
        "upload_folder_zero_byte_files": empty_uploads,
        "upload_folder_files_after_startup_sweep": left_after_sweep,
        "swept": swept,
        "new_files_in_system_tmp": len(leftovers),
        "new_zero_byte_files_in_system_tmp": sum(p.stat().st_size == 0 for p in leftovers),
    }


# --------------------------------------------------------------------------- a hostile client beside an ordinary one

#: what a hostile client sends to /predict besides the files: an upload named like a patient
PATIENT_NAME = "it's DOE^JOHN MRN 12345.png"
HOSTILE_FILES = ("dicom_deflated_400k", "dicom_deflated_4m", "tiff_20000_pages")


def _hostile_round(url: str, uris: dict, uploaded: str) -> list[tuple[str, float, str]]:
    """One round of hostile calls: (what, seconds, the answer's text)."""
    import httpx
    from gradio_client import Client

    c, out = Client(url, verbose=False), []
    for key, uri in uris.items():
        t0 = time.perf_counter()
        try:
            text = str(c.predict(uri, api_name="/predict"))
        except Exception as e:  # noqa: BLE001 — the refusal is the answer
            text = str(e)
        out.append((key, time.perf_counter() - t0, text))
    # too few values, one of them a data: URI and an upload named like a patient (gradio printed both)
    few = [{"path": uploaded, "orig_name": PATIENT_NAME, "meta": {"_type": "gradio.FileData"}}, uris[HOSTILE_FILES[0]]]
    t0 = time.perf_counter()
    event = httpx.post(f"{url}gradio_api/call/predict", json={"data": few}, timeout=60).json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/predict/{event}", timeout=60).text
    out.append(("too few values", time.perf_counter() - t0, text))
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))), timeout=30) as sock:
        t0 = time.perf_counter()
        sock.sendall(
            b"POST /gradio_api/call/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n" + b'{"data": ["' + b"A" * 2**20
        )
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < 64:
            if not (chunk := sock.recv(65536)):  # the answer, its body unread (the server keeps the line open)
                break
            answer += chunk
        head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
        out.append(("100 MB body", time.perf_counter() - t0, f"{head.splitlines()[0]}: {body}"))
    return out


def run_hostile(rounds: int = 5) -> dict:
    """``app.py`` on loopback: one client's ``/predict`` timed alone, then while a second client
    sends ``HOSTILE_FILES`` as data: URIs, a raw call with too few values and a 100 MB body; then
    every answer and the server's log are searched for a path, the patient's name or a data: URI."""
    import base64

    import httpx
    from gradio_client import Client, handle_file

    port, tmp = _free_port(), Path(tempfile.mkdtemp(prefix="hvl-bench-hostile-"))
    uris = {}
    for key in HOSTILE_FILES:
        FILES[key][1](tmp / key)
        uris[key] = "data:application/octet-stream;base64," + base64.b64encode((tmp / key).read_bytes()).decode()
    (tmp / PATIENT_NAME).write_bytes(EXAMPLE.read_bytes())
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], env=server_env(port, tmp), stdout=log, stderr=subprocess.STDOUT
    )
    url, answers, hostile, stop = f"http://127.0.0.1:{port}/", [], [], threading.Event()
    try:
        for _ in range(240):
            try:
                a = Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 — still starting
                time.sleep(0.5)
        with open(tmp / PATIENT_NAME, "rb") as f:
            uploaded = httpx.post(f"{url}gradio_api/upload", files={"files": (PATIENT_NAME, f)}).json()[0]

        def timed():
            t = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                answers.append(str(a.predict(handle_file(str(EXAMPLE)), api_name="/predict")))
                t.append(time.perf_counter() - t0)
            return t

        alone = timed()

        def attack():
            while not stop.is_set():
                hostile.extend(_hostile_round(url, uris, uploaded))

        b = threading.Thread(target=attack)
        b.start()
        while not hostile:
            time.sleep(0.1)  # the attack has begun
        beside = timed()
        stop.set()
        b.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    log.seek(0)
    server_log = log.read().decode(errors="replace")
    shutil.rmtree(tmp, ignore_errors=True)
    texts = answers + [t for _, _, t in hostile] + [server_log]
    leaks = {
        "absolute paths (tmp, upload folder, checkout)": sum(x in t for t in texts for x in (str(tmp), str(ROOT))),
        "the patient's name": sum("DOE" in t for t in texts),
        "data: URIs": sum("data:application" in t or "base64," in t for t in texts),
    }
    by_kind = {}
    for what, sec, text in hostile:
        by_kind.setdefault(what, {"calls": 0, "max_s": 0.0, "answer": text.strip().splitlines()[-1][:200]})
        by_kind[what]["calls"] += 1
        by_kind[what]["max_s"] = round(max(by_kind[what]["max_s"], sec), 2)
    return {
        "predict_alone_median_s": round(statistics.median(alone), 2),
        "predict_beside_hostile_median_s": round(statistics.median(beside), 2),
        "slowdown": round(statistics.median(beside) / statistics.median(alone), 2),
        "hostile": by_kind,
        "leaks": leaks,
        "server_log_lines": len(server_log.splitlines()),
        "server_tracebacks": server_log.count("Traceback"),
    }


# --------------------------------------------------------------------------- many browser sessions


def _browser_upload(url: str, dep: dict, components: dict, path: Path) -> str:
    """What a browser does when a file is dropped on the upload box: ``/upload``, then the upload
    event through the queue with the page's other values as they start; the last message's kind."""
    import secrets

    import httpx

    with open(path, "rb") as f:
        server_path = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, f)}, timeout=60).json()[0]
    upload_id = dep["targets"][0][0]
    data = []
    for cid in dep["inputs"]:
        c = components[cid]
        if cid == upload_id:
            meta = {"_type": "gradio.FileData"}
            data.append({"path": server_path, "orig_name": path.name, "mime_type": "image/jpeg", "meta": meta})
        else:
            data.append(None if c["type"] == "state" else c.get("props", {}).get("value"))
    session = secrets.token_hex(8)
    body = {"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None, "trigger_id": upload_id}
    httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=60).raise_for_status()
    last = ""
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                last = msg.get("msg", "")
                if last == "process_completed":
                    return "ok" if msg.get("success") else f"failed: {str(msg.get('output'))[:200]}"
    return last


def run_sessions(count: int = 200, root: Path = ROOT, every: int = 20) -> dict:
    """``root``'s ``app.py`` on loopback: ``count`` browser sessions, each uploading a different
    12 MP JPEG (the page's upload event, as the browser sends it); the server's RSS every ``every``."""
    import httpx
    from PIL import ImageDraw

    port, tmp = _free_port(), Path(tempfile.mkdtemp(prefix="hvl-bench-sessions-"))
    env = {**server_env(port, tmp), "PYTHONPATH": str(root)}
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([sys.executable, str(root / "app.py")], env=env, stdout=log, stderr=subprocess.STDOUT)
    url, rss, results = f"http://127.0.0.1:{port}/", {}, []
    base = Image.fromarray(np.asarray(_photo(2000).resize((4000, 3000))))
    try:
        for _ in range(240):
            try:
                config = httpx.get(f"{url}config", timeout=5).json()
                break
            except Exception:  # noqa: BLE001 — still starting
                time.sleep(0.5)
        components = {c["id"]: c for c in config["components"]}
        upload = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "upload")
        dep = next(d for d in config["dependencies"] if [upload, "upload"] in [list(t) for t in d["targets"]])
        proc = psutil.Process(server.pid)
        rss[0] = _mb(proc.memory_info().rss)
        for i in range(1, count + 1):
            img = base.copy()
            ImageDraw.Draw(img).rectangle(
                (i * 17 % 3500, i * 11 % 2500, i * 17 % 3500 + 400, i * 11 % 2500 + 400), (i, 255 - i, 99)
            )
            path = tmp / f"photo-{i}.jpg"
            img.save(path, quality=85)
            results.append(_browser_upload(url, dep, components, path))
            path.unlink()
            if i % every == 0 or i == 1:
                rss[i] = _mb(proc.memory_info().rss)
                print(f"{i} sessions: server RSS {rss[i]} MB", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    half = count // 2
    return {
        "root": "this tree" if root == ROOT else "--compare-root",
        "sessions": count,
        "image": "4000×3000 JPEG, a different one each session",
        "answers_ok": results.count("ok"),
        "first_failure": next((r for r in results if r != "ok"), ""),
        "rss_mb_by_sessions": rss,
        f"last_{count - half}_sessions_added_mb": rss[count] - rss[half],
    }


# --------------------------------------------------------------------------- decode memory, before / after

_DECODE_PROBE = """
import sys, time, threading, psutil
from hvl_core.images import load_image
p = psutil.Process(); base = p.memory_info().rss; peak = [base]; stop = []
def watch():
    while not stop:
        peak[0] = max(peak[0], p.memory_info().rss); time.sleep(0.002)
t = threading.Thread(target=watch, daemon=True); t.start()
try:
    load_image(sys.argv[1]); msg = 'ok'
except Exception as e:
    msg = type(e).__name__ + ': ' + str(e)[:80]
stop.append(1); t.join()
print(round((peak[0] - base) / 2 ** 20), msg)
"""


def run_decode_memory(compare_root: Path) -> dict:
    """Peak RSS growth of ``load_image`` on 9000² 16-bit and float TIFFs, each in a fresh
    process, with this tree's hvl_core and with ``compare_root``'s (e.g. the previous commit)."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        files = {
            "uint16 9000² TIFF": np.zeros((9000, 9000), np.uint16),
            "float32 9000² TIFF": np.zeros((9000, 9000), np.float32),
        }
        for kind, a in files.items():
            path = Path(d) / f"{a.dtype}.tiff"
            path.write_bytes(_tiff(a, compression="zlib"))
            row = {"kind": kind}
            for label, root in (("before", compare_root), ("after", ROOT)):
                out = subprocess.run(
                    [sys.executable, "-c", _DECODE_PROBE, str(path)],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(root)},
                    cwd=d,
                    timeout=300,
                )
                growth, _, msg = out.stdout.strip().partition(" ")
                row[label] = {
                    "peak_growth_mb": int(growth) if growth.isdigit() else None,
                    "result": msg or out.stderr[-200:],
                }
            rows.append(row)
            print(row, flush=True)
    return {"compare_root": str(compare_root), "rows": rows}


# --------------------------------------------------------------------------- memory per request, worst cases

#: template bomb uploads, sessions and batch files per case
BOMB_UPLOADS, SESSIONS, BATCH_FILES = 10, 20, 12


def _rss() -> int:
    import gc

    gc.collect()
    return psutil.Process().memory_info().rss


def _mb(n: int) -> int:
    return round(n / 2**20)


def _public_service():
    from app.service import ModelService
    from hvl_core import create_backbone

    service = ModelService("tiny-clip-random", device="cpu", allow_local_checkpoints=False)
    service._backbones["tiny-clip-random"] = create_backbone("tiny-clip-random")
    return service


def _warm(service):
    """One ordinary analysis, so the model and its caches are built before the baseline."""
    spec, ck = service.spec("dermatology-isic4", "", None, 2)
    sess, *_ = service.analyse(service.load(str(EXAMPLE)), spec, ck, None, 4, True, False)
    from app.sessions import STORE

    STORE.drop(sess.key)


def probe_template_bomb(tmp: Path) -> dict:
    """Ten uploads of a checkpoint whose template is ``{{}}{0:>100000000}`` (each another file)."""
    import hvl_core
    from app.service import USER_ERRORS, checkpoint_ref

    service = _public_service()
    _warm(service)
    model = hvl_core.load_model(service.backbone(), classes=["melanoma", "nevus"], device="cpu")
    uploads = []
    for i in range(BOMB_UPLOADS):
        d = hvl_core.save_checkpoint(
            tmp / f"bomb{i}", model.head, "tiny-clip-random", model.classes, threshold=0.4 + i / 100
        )
        meta = json.loads((d / "config.json").read_text())
        meta["classes"]["template"] = "{{}}{0:>100000000}"
        (d / "config.json").write_text(json.dumps(meta))
        uploads.append([str(d / "model.safetensors"), str(d / "config.json")])
    base, messages = _rss(), set()
    with PeakRSS() as peak:
        for files in uploads:
            try:
                spec, ck = service.spec("dermatology-isic4", "", checkpoint_ref("", files), 2)
                service.model(spec, ck)
                messages.add("accepted")
            except USER_ERRORS as e:
                messages.add(str(e).split(": ", 1)[-1][:300])
    return {
        "uploads": BOMB_UPLOADS,
        "growth_mb": _mb(_rss() - base),
        "peak_growth_mb": _mb(peak.peak - base),
        "models_cached": len(service._models),
        "message": sorted(messages),
    }


def _photo(side: int) -> Image.Image:
    """A smooth RGB picture of ``side``² (compresses like a photo, unlike noise)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    a = np.stack([127 + 120 * np.sin(9 * y), 255 * x, 127 + 120 * np.cos(7 * (x + y))], -1)
    return Image.fromarray(a.astype(np.uint8))


def probe_sessions(tmp: Path) -> dict:
    """RSS with one session (a 4096² image analysed) and with ``SESSIONS`` of them open."""
    from app.sessions import MAX_SESSION_BYTES, MAX_SESSIONS, STORE

    path = tmp / "photo-4096.jpg"
    if not path.exists():
        _photo(4096).save(path, quality=90)
    service = _public_service()
    _warm(service)
    model_rss = _rss()
    spec, ck = service.spec("dermatology-isic4", "", None, 2)
    held = []
    rss = {}
    for i in range(SESSIONS):
        sess, *_ = service.analyse(service.load(str(path)), spec, ck, None, 4, True, False)
        held.append(sess)  # every page keeps its gr.State
        if i + 1 in (1, SESSIONS):
            rss[i + 1] = _rss()
    return {
        "image": "4096² JPEG, analysed (n = 2)",
        "rss_model_only_mb": _mb(model_rss),
        "rss_one_session_mb": _mb(rss[1]),
        f"rss_{SESSIONS}_sessions_mb": _mb(rss[SESSIONS]),
        "ratio": round(rss[SESSIONS] / rss[1], 3),
        "images_held": len(STORE),
        "bytes_held_mb": _mb(STORE.nbytes),
        "store_limits": f"{MAX_SESSIONS} entries, {MAX_SESSION_BYTES >> 20} MiB",
        "sessions_still_holding_their_image": sum(s.has_image() for s in held),
    }


def _png_file(tmp: Path, side: int, mode: str = "RGBA") -> Path:
    path = tmp / f"{mode.lower()}-{side}.png"
    if not path.exists():
        Image.new(mode, (side, side), (40, 90, 160, 200)).save(path, compress_level=1)
    return path


def probe_image(tmp: Path, side: int) -> dict:
    """``load_image`` of a ``side``² RGBA PNG, as an upload is read."""
    from hvl_core.images import ImageError, load_image

    path = _png_file(tmp, side)
    base = _rss()
    t0 = time.perf_counter()
    with PeakRSS() as peak:
        try:
            li = load_image(str(path))
            msg = f"ok: {li.image.size[0]}×{li.image.size[1]} kept"
        except ImageError as e:
            msg = str(e)
    return {
        "file": f"{side}² RGBA PNG, {path.stat().st_size / 2**10:,.0f} KB",
        "peak_growth_mb": _mb(peak.peak - base),
        "seconds": round(time.perf_counter() - t0, 2),
        "result": msg[:200],
    }


def probe_batch(tmp: Path, side: int) -> dict:
    """The batch view's ``encode`` on ``BATCH_FILES`` uploads of a ``side``² RGBA PNG."""
    from app import batch as bt
    from hvl_core import load_model

    path = _png_file(tmp, side)
    service = _public_service()
    model = load_model(service.backbone(), preset="dermatology-isic4", device="cpu")
    items = bt.read_uploads([str(path)] * BATCH_FILES)
    base = _rss()
    t0 = time.perf_counter()
    with PeakRSS() as peak:
        b = bt.encode(model, items)
    return {
        "files": f"{BATCH_FILES} × {side}² RGBA PNG ({BATCH_FILES * path.stat().st_size / 2**20:.1f} MB uploaded)",
        "encoded": len(b.readable()),
        "error_rows": len(b.errors),
        "first_error": next(iter(b.errors.values()), "")[:200],
        "peak_growth_mb": _mb(peak.peak - base),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def probe_width_mismatch(tmp: Path) -> dict:
    """A checkpoint naming the listed ``biomedclip-random`` with a 64-d head: how long to refuse."""
    import hvl_core
    from app.service import USER_ERRORS, checkpoint_ref

    service = _public_service()
    model = hvl_core.load_model(service.backbone(), classes=["melanoma", "nevus"], device="cpu")
    d = hvl_core.save_checkpoint(tmp / "wide", model.head, "biomedclip-random", model.classes)
    t0 = time.perf_counter()
    try:
        spec, ck = service.spec(
            "dermatology-isic4", "", checkpoint_ref("", [str(d / "model.safetensors"), str(d / "config.json")]), 2
        )
        service.model(spec, ck)
        msg = "accepted"
    except USER_ERRORS as e:
        msg = str(e).split(": ", 1)[-1]
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "message": msg[:200],
        "backbones_built": list(service._backbones),
    }


def _deflated_dicom(path: Path, inflated_mb: int) -> None:
    """A deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99) holding a 16×16 image and a
    private element of ``inflated_mb`` MB of zeros: ~1000:1, deflated in 1 MB chunks."""
    import struct
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    from tests.wsi_files import dicom_bytes

    ds = __import__("pydicom").dcmread(io.BytesIO(dicom_bytes(np.zeros((16, 16), np.uint8))))
    pixels = ds.PixelData
    del ds.PixelData
    ds.add_new((0x7FDF, 0x0010), "LO", "HVL BENCH")
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_dataset(head, ds)
    meta = DicomBytesIO()
    meta.write(b"\0" * 128 + b"DICM")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    write_file_meta_info(meta, ds.file_meta)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    n = inflated_mb * 2**20
    with open(path, "wb") as f:
        f.write(meta.getvalue())
        f.write(z.compress(head.getvalue() + struct.pack("<HH2sHI", 0x7FDF, 0x1000, b"OB", 0, n)))
        chunk = bytes(2**20)
        for _ in range(inflated_mb):
            f.write(z.compress(chunk))
        f.write(z.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, len(pixels)) + pixels))
        f.write(z.flush())


def _many_page_tiff(path: Path, pages: int) -> None:
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        for i in range(pages):
            tw.write(np.full((16, 16), i % 256, np.uint8))


def _grey_jpeg(path: Path, size: tuple[int, int]) -> None:
    Image.linear_gradient("L").resize(size).save(path, "JPEG", quality=90)


#: hostile or large files read as an upload is: (what it is, how to write it)
FILES = {
    "dicom_deflated_400k": ("deflated DICOM, ~400 MB inflated", lambda p: _deflated_dicom(p, 400)),
    "dicom_deflated_4m": ("deflated DICOM, ~4 GB inflated", lambda p: _deflated_dicom(p, 4000)),
    "tiff_20000_pages": ("TIFF of 20,000 pages of 16×16", lambda p: _many_page_tiff(p, 20_000)),
    "jpeg_9500": ("9500×9500 grey JPEG", lambda p: _grey_jpeg(p, (9500, 9500))),
    "jpeg_10000x8000": ("10000×8000 grey JPEG", lambda p: _grey_jpeg(p, (10000, 8000))),
}


def probe_file(tmp: Path, key: str) -> dict:
    """``load_image`` of one of ``FILES`` (written first, outside the measurement), as an upload."""
    from hvl_core.images import ImageError, load_image

    what, write = FILES[key]
    path = tmp / key
    if not path.exists():
        write(path)
    base = _rss()
    t0 = time.perf_counter()
    with PeakRSS() as peak:
        try:
            li = load_image(str(path))
            msg = f"ok: {li.image.size[0]}×{li.image.size[1]} kept; " + "; ".join(li.notes)
        except ImageError as e:
            msg = str(e)
    return {
        "file": f"{what}, {path.stat().st_size / 2**10:,.0f} KB",
        "peak_growth_mb": _mb(peak.peak - base),
        "seconds": round(time.perf_counter() - t0, 2),
        "result": msg[:200],
    }


PROBES = {
    "template_bomb": probe_template_bomb,
    "sessions": probe_sessions,
    "png_9400": lambda tmp: probe_image(tmp, 9400),
    "png_7000": lambda tmp: probe_image(tmp, 7000),
    "batch_9400": lambda tmp: probe_batch(tmp, 9400),
    "batch_7000": lambda tmp: probe_batch(tmp, 7000),
    "width_mismatch": probe_width_mismatch,
    **{key: (lambda tmp, key=key: probe_file(tmp, key)) for key in FILES},
}


def run_sigterm() -> dict:
    """``app.py`` on loopback: one ``/predict`` upload, then SIGTERM; is its upload folder gone?"""
    import signal

    from gradio_client import Client, handle_file

    parent = Path(tempfile.mkdtemp(prefix="hvl-bench-parent-"))
    port = _free_port()
    env = server_env(port, parent)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                c = Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 — still starting
                time.sleep(0.5)
        c.predict(handle_file(str(EXAMPLE)), api_name="/predict")
        folders = list(parent.glob(f"hvl-uploads-{server.pid}-*"))
        files_before = sum(1 for f in folders for p in f.rglob("*") if p.is_file())
        mode = oct(folders[0].stat().st_mode & 0o777) if folders else None
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    finally:
        server.kill()
    left = [str(p) for p in parent.iterdir()]
    shutil.rmtree(parent, ignore_errors=True)
    return {
        "upload_folders": len(folders),
        "mode": mode,
        "files_before_sigterm": files_before,
        "exit_code": code,
        "left_after_sigterm": len(left),
    }


def run_memory(cases=None) -> dict:
    """Each probe in a fresh process (peak RSS of that process alone), then the SIGTERM check."""
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name in cases or PROBES:
            r = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--probe", name, "--tmp", d],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                timeout=900,
            )
            line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
            out[name] = json.loads(line) if line.startswith("{") else {"failed": r.stderr[-500:]}
            print(name, out[name], flush=True)
    if not cases or "sigterm" in cases:
        out["sigterm"] = run_sigterm()
        print("sigterm", out["sigterm"], flush=True)
    return out


# --------------------------------------------------------------------------- report


def write_report(
    out: Path,
    bad: dict | None,
    conc: dict | None,
    decode: dict | None = None,
    memory: dict | None = None,
    hostile: dict | None = None,
    sessions: dict | None = None,
) -> None:
    from app.service import EMPTY_AGE_S

    out.mkdir(parents=True, exist_ok=True)
    old = json.loads((out / "inputs.json").read_text()) if (out / "inputs.json").exists() else {}
    data = {
        **old,
        **({"bad_inputs": bad} if bad else {}),
        **({"concurrency": conc} if conc else {}),
        **({"decode_memory": decode} if decode else {}),
        **({"memory": {**old.get("memory", {}), **memory}} if memory else {}),
        **({"hostile": hostile} if hostile else {}),
        **({"sessions": {**old.get("sessions", {}), **sessions}} if sessions else {}),
        "cpu": f"{psutil.cpu_count()} cores",
        "load_average_1_5_15_min": [round(x, 1) for x in os.getloadavg()],  # the machine may be shared
        "python": sys.version.split()[0],
    }
    (out / "inputs.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    L = [
        "# Bad inputs and concurrent clients",
        "",
        "`PYTHONPATH=. .venv/bin/python bench/inputs_bench.py` (bench/inputs_bench.py); backbone `tiny-clip-random`, CPU, "
        f"{data['cpu']}; load average {data['load_average_1_5_15_min']} (1, 5, 15 min) when the last part was "
        "written: the machine was shared with other work, so times are upper bounds.",
        "",
    ]
    if "bad_inputs" in data:
        b = data["bad_inputs"]
        L += [
            f"## Bad inputs: {b['kinds']} kinds, {b['tracebacks']} tracebacks",
            "",
            "Through `ModelService` as the app runs an upload or a field, public-server rules "
            "(`allow_local_checkpoints=False`). Peak growth: the most resident memory above the value before the "
            "input, sampled every 2 ms.",
            "",
            "| kind | input | message the user sees | peak RSS (MB) | growth (MB) |",
            "|---|---|---|---:|---:|",
        ]
        for r in b["rows"]:
            msg = r["message"].replace("|", "\\|").replace("\n", " ")
            L.append(f"| {r['kind']} | {r['input']} | {msg} | {r['peak_rss_mb']} | {r['peak_growth_mb']} |")
        L += ["", f"Backbones kept built afterwards: {', '.join(b['backbones_kept'])}.", ""]
    if "concurrency" in data:
        c = data["concurrency"]
        ratio = c["rss_after_100_mb"] / c["rss_after_10_mb"] if c["rss_after_10_mb"] else float("nan")
        L += [
            f"## {c['clients']} clients × {c['requests_per_client']} requests",
            "",
            f"`app.py` on loopback (`HVL_BACKBONE=tiny-clip-random`, CPU), `gradio_client` `/predict` on "
            f"`assets/{EXAMPLE.name}`, all clients at once.",
            "",
            "| answers | errors | wall | p50 | p95 | max | server RSS after 10 | after 100 | ratio | server tracebacks |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {c['answers']}/{c['requests']} | {c['errors']} | {c['wall_s']} s | {c['p50_s']} s | {c['p95_s']} s | "
            f"{c['max_s']} s | {c['rss_after_10_mb']} MB | {c['rss_after_100_mb']} MB | {ratio:.2f} | {c['server_tracebacks']} |",
            "",
            f"Upload folder after the run: {c['upload_folder_files_after_run']} files "
            f"({c['upload_folder_zero_byte_files']} of them gradio's empty temporary files, one per upload; "
            f"the sweeper removes those after {EMPTY_AGE_S} s and the uploads after ten minutes); after a "
            f"start-up sweep: {c['upload_folder_files_after_startup_sweep']}. New files in the system temp "
            f"folder: {c['new_files_in_system_tmp']} ({c['new_zero_byte_files_in_system_tmp']} of 0 bytes).",
            "",
        ]
    if "decode_memory" in data:
        L += [
            "## Decoding memory, before / after",
            "",
            "Peak RSS growth of `load_image` alone, each in a fresh process (`--compare-root`: the tree before "
            "this change).",
            "",
            "| file | before (MB) | before: result | after (MB) | after: result |",
            "|---|---:|---|---:|---|",
        ]
        for r in data["decode_memory"]["rows"]:
            b, a = r["before"], r["after"]
            L.append(f"| {r['kind']} | {b['peak_growth_mb']} | {b['result']} | {a['peak_growth_mb']} | {a['result']} |")
        L.append("")
    if "memory" in data:
        L += _memory_report(data["memory"])
    if "hostile" in data:
        L += _hostile_report(data["hostile"])
    if "sessions" in data:
        L += _sessions_report(data["sessions"])
    (out / "inputs.md").write_text("\n".join(L))


def _memory_report(m: dict) -> list[str]:
    L = [
        "## Memory per request, worst cases",
        "",
        "`--part memory`: each case in a fresh process (`tiny-clip-random`, CPU), public-server rules; peak "
        "growth is the most resident memory above the value just before the request, sampled every 2 ms.",
        "",
        "| case | what was measured | figure | goal |",
        "|---|---|---|---|",
    ]
    if "template_bomb" in m:
        t = m["template_bomb"]
        L.append(
            f"| template bomb | {t['uploads']} checkpoint uploads with `{{{{}}}}{{0:>100000000}}` | RSS growth "
            f"{t['growth_mb']} MB (peak +{t['peak_growth_mb']} MB), {t['models_cached']} models cached; "
            f"{'; '.join(t['message'])} | no growth |"
        )
    if "sessions" in m:
        s = m["sessions"]
        n = next(k for k in s if k.startswith("rss_") and k.endswith("_sessions_mb"))
        L.append(
            f"| sessions | {s['image']}; model only {s['rss_model_only_mb']} MB | one session {s['rss_one_session_mb']} MB, "
            f"{n.split('_')[1]} sessions {s[n]} MB: ratio {s['ratio']}; the store holds {s['images_held']} images, "
            f"{s['bytes_held_mb']} MB ({s['store_limits']}) | ≤ 1.2× one session + the model |"
        )
    for key in ("png_9400", "png_7000"):
        if key in m:
            r = m[key]
            L.append(
                f"| one image | {r['file']} | peak +{r['peak_growth_mb']} MB, {r['seconds']} s: {r['result']} | "
                "≤ +400 MB |"
            )
    for key in ("batch_9400", "batch_7000"):
        if key in m:
            r = m[key]
            L.append(
                f"| batch | {r['files']} | peak +{r['peak_growth_mb']} MB, {r['seconds']} s; {r['encoded']} encoded, "
                f"{r['error_rows']} error rows ({r['first_error']}) | bounded like one image |"
            )
    for key in FILES:
        if "file" in m.get(key, {}):
            r = m[key]
            L.append(
                f"| hostile file | {r['file']} | peak +{r['peak_growth_mb']} MB, {r['seconds']} s: {r['result']} | "
                "≤ 2 s, ≤ +50 MB (JPEGs: analysed) |"
            )
    if "width_mismatch" in m:
        w = m["width_mismatch"]
        L.append(
            f"| listed backbone, other width | 64-d checkpoint naming `biomedclip-random` | refused in {w['seconds']} s, "
            f"nothing built ({', '.join(w['backbones_built'])} kept): {w['message']} | before any build |"
        )
    if "sigterm" in m:
        g = m["sigterm"]
        L.append(
            f"| SIGTERM | `app.py`, one `/predict` upload, then SIGTERM | {g['upload_folders']} private folder "
            f"(mode {g['mode']}, {g['files_before_sigterm']} files) before; exit {g['exit_code']}; "
            f"{g['left_after_sigterm']} left after | folder gone |"
        )
    return [*L, ""]


def _hostile_report(h: dict) -> list[str]:
    L = [
        "## A hostile client beside an ordinary one",
        "",
        "`--part hostile`: `app.py` on loopback (`tiny-clip-random`, CPU); one client's `/predict` of "
        f"{EXAMPLE.name} timed alone, then while a second client sends, round after round, the files below as "
        "data: URIs, a raw call with too few values (an upload named like a patient and a data: URI), and a "
        "100 MB body. Then every answer and the server's whole log are searched.",
        "",
        f"- the other client's `/predict`: median {h['predict_alone_median_s']} s alone, "
        f"{h['predict_beside_hostile_median_s']} s beside the hostile one: {h['slowdown']}× (goal ≤ 2×)",
        "- found in the answers and the log: "
        + ", ".join(f"{k}: {v}" for k, v in h["leaks"].items())
        + f" (goal: none); {h['server_tracebacks']} tracebacks in {h['server_log_lines']} log lines",
        "",
        "| hostile call | calls | slowest answer (s) | answer |",
        "|---|---:|---:|---|",
    ]
    for what, r in h["hostile"].items():
        L.append(f"| {what} | {r['calls']} | {r['max_s']} | {r['answer'].replace('|', '/')} |")
    return [*L, ""]


def _sessions_report(runs: dict) -> list[str]:
    L = [
        "## Many browser sessions",
        "",
        "`--part sessions [--compare-root OLD_CHECKOUT]`: `app.py` on loopback (`tiny-clip-random`, CPU); each "
        "session uploads a different 4000×3000 JPEG through the page's upload event, as the browser sends it "
        "(`/upload`, then the event through the queue). The server's RSS after so many sessions:",
        "",
    ]
    for label, r in runs.items():
        curve = ", ".join(f"{n}: {mb}" for n, mb in r["rss_mb_by_sessions"].items())
        added = next(v for k, v in r.items() if k.startswith("last_"))
        L += [
            f"- {label} ({r['root']}): {r['answers_ok']} of {r['sessions']} analysed; MB by sessions: {curve}; "
            f"the last {r['sessions'] - r['sessions'] // 2} sessions added {added} MB (goal ≤ 64)",
        ]
    return [*L, ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--part", choices=["bad", "concurrency", "decode", "memory", "hostile", "sessions", "all"], default="all"
    )
    ap.add_argument("--cases", nargs="+", help=f"for --part memory: some of {', '.join([*PROBES, 'sigterm'])}")
    ap.add_argument("--probe", choices=list(PROBES), help=argparse.SUPPRESS)  # one case, in this process
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--compare-root", help="for --part decode: a checkout whose hvl_core gives the 'before' column")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(PROBES[args.probe](Path(args.tmp)), ensure_ascii=False))
        return
    bad = run_bad_inputs() if args.part in ("bad", "all") else None
    conc = run_concurrency() if args.part in ("concurrency", "all") else None
    if conc:
        print(json.dumps(conc, indent=1))
    decode = run_decode_memory(Path(args.compare_root)) if args.part == "decode" and args.compare_root else None
    memory = run_memory(args.cases) if args.part in ("memory", "all") else None
    hostile = run_hostile() if args.part in ("hostile", "all") else None
    if hostile:
        print(json.dumps(hostile, indent=1))
    sessions = None
    if args.part == "sessions":  # not in "all": 200 sessions take minutes
        sessions = {"after": run_sessions()}
        if args.compare_root:
            sessions["before"] = run_sessions(root=Path(args.compare_root))
    write_report(Path(args.out), bad, conc, decode, memory, hostile, sessions)


if __name__ == "__main__":
    main()
