"""How fast the demo answers: ``bench/app_bench.py --out DIR``.

- ``app_redecide_ms``: median time for the app's handler (``handlers.on_options``) to return all
  its outputs after a K change on a cached encoding (goal ≤ 150 ms on two cores);
- ``batch_redecide_ms``: median time for the batch tab's handler (``views_handlers.on_batch_threshold``)
  to re-decide a table of ``BATCH_SIZE`` images after a threshold move and return the table, the
  histogram and the flip count (goal ≤ 100 ms);
- ``upload_to_decision_over_encoder``: the upload handler (``handlers.on_upload``: read the file,
  crops, encoder, head, every figure) ÷ the bare encoder on the same crops, the median of
  per-round ratios with the two interleaved (goal ≤ 1.2);
- ``batch_per_image_over_single``: the batch tab's analysis (``views_handlers.analyse_batch``:
  read, one call of the GPU function for all the images, decide) per image ÷ one upload's handler
  (goal ≤ 1.0);
- ``start_to_serve_s``: ``python app.py`` in a fresh process until its page answers (goal ≤ 10 s),
  then ``first_analysis_over_encoder``: that server's first ``/predict`` (the image as a ``data:``
  URI, through gradio's REST route as curl sends it: the call posted, its event stream read to
  the end) ÷ the bare encoder on the same crops, timed here right after (goal ≤ 1.2); the same
  request sent twice more gives ``later_analysis_s``, so ``first_over_later`` is what a first
  request costs beyond the next ones. ``later_analysis_gradio_client_s``: the same request
  through ``gradio_client``, whose message loop sleeps 50 ms between looks — its own cost.

This process runs as the server does: its malloc set by ``hvl_core/allocator.py`` and every model
computation, the bare encoder's too, on the model's thread (``app/model_thread.py``) — the ratios
compare like with like. The handlers run as the app runs them, on a UI of stand-in components
(handlers only use components as keys) — what is measured is the Python side of an event, not the
browser's. The keys of the first backbone are merged into ``DIR/bench.json`` (created if missing)
with a per-backbone breakdown under ``"app"``, printed, and summarised in ``DIR/app.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the app/ package of this checkout

from hvl_core.allocator import tune_malloc  # noqa: E402

MALLOC = tune_malloc()  # as app.py does, before any thread starts

import torch  # noqa: E402

from app import model_thread  # noqa: E402

DEFAULT_IMAGE = ROOT / "assets" / "histology_tumor_nuclei.jpg"
GOALS = {
    "app_redecide_ms": 150.0,
    "upload_to_decision_over_encoder": 1.2,
    "batch_redecide_ms": 100.0,
    "batch_per_image_over_single": 1.0,
    "start_to_serve_s": 10.0,
    "first_analysis_over_encoder": 1.2,
}
BATCH_SIZE = 20


def stub_ui(service):
    from app.examples import load_examples
    from app.headless import stub_ui

    return stub_ui(service, load_examples())


def inputs(ui, session, shown, upload=None, **settings) -> dict:
    from app.settings import Settings

    s = Settings(**settings)
    v = {getattr(ui.controls, f.name): getattr(s, f.name) for f in fields(Settings)}
    return {**v, ui.session: session, ui.shown: shown, ui.upload: upload}


def measure_batch(service, ui, redecides: int, size: int = BATCH_SIZE) -> dict:
    """The batch tab: ``size`` images (the shipped examples, repeated) encoded once, then the
    threshold moved back and forth ``redecides`` times."""
    from app import views_handlers as vh
    from app.headless import stub_views
    from app.reference import ReferenceSet
    from app.settings import Settings

    paths = [e["path"] for e in ui.examples]
    files = [paths[i % len(paths)] for i in range(size)]
    t0 = time.perf_counter()
    batch, model = vh.analyse_batch(service, Settings(), files)
    batch_s = time.perf_counter() - t0
    v = stub_views(ReferenceSet([]))
    scores = sorted(p.score for p in batch.predictions)
    lo, hi = scores[0], scores[-1]
    times = []
    for i in range(redecides):
        t = lo + (hi - lo) * (0.25 if i % 2 else 0.75)  # across the scores: images flip each time
        t0 = time.perf_counter()
        out = vh.on_batch_threshold(ui, v, batch, t)
        times.append(time.perf_counter() - t0)
        batch = out[v.batch.state]
    return {
        "batch_size": size,
        "batch_analyse_s": round(batch_s, 2),
        "batch_per_image_ms": round(1000 * batch_s / size, 1),
        "batch_redecide_ms": round(1000 * statistics.median(times), 2),
        "batch_redecide_ms_max": round(1000 * max(times), 2),
    }


def measure(backbone: str, image: Path, repeats: int, redecides: int) -> dict:
    from app import handlers
    from app.service import ModelService, Session, Spec
    from hvl_core import load_image
    from hvl_core.geometry import hierarchical_crops

    service = ModelService(backbone, device="cpu")
    model = service.preload(Spec())
    ui = stub_ui(service)
    fresh = lambda: Session(model_identity=Spec().identity())  # noqa: E731
    crops = hierarchical_crops(load_image(str(image)).image, model.n, model.backbone.image_size, model.detail)

    def upload():
        out = handlers.on_upload(
            ui, inputs(ui, fresh(), {}, upload=str(image), threshold=model.threshold), progress=None
        )
        if "hvl-error" in str(out.get(ui.decision, "")):
            raise RuntimeError(f"the app could not analyse {image}: {out[ui.decision]}")
        return out

    out = upload()  # warm-up: class embeddings, allocator, fonts
    model.encode_crops(crops)
    handler_s, encoder_s, ratios = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = upload()
        t1 = time.perf_counter()
        model.encode_crops(crops)
        t2 = time.perf_counter()
        handler_s.append(t1 - t0)
        encoder_s.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    sess, shown = out[ui.session], out[ui.shown]
    # the app's own share: drawing every output of an upload, from the finished prediction
    from app.settings import Settings

    draw_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        handlers.present(ui, sess, {}, sess.prediction, model, Settings(threshold=model.threshold))
        draw_s.append(time.perf_counter() - t0)
    redecide_s, head_s, sent = [], [], []
    g = 4 * model.n**2
    for i in range(redecides):
        k = 2 + (i % 2) * (g // 2 - 2) if g > 4 else 1 + i % 2
        t0 = time.perf_counter()
        res = handlers.on_options(ui, inputs(ui, sess, shown, threshold=model.threshold, k=k))
        redecide_s.append(time.perf_counter() - t0)
        sess, shown = res[ui.session], res[ui.shown]
        sent.append(sorted(c.name for c in res if c in ui.figures()))
        t0 = time.perf_counter()
        service.decide(sess, model.threshold, k, True, False)  # the head alone, for the breakdown
        head_s.append(time.perf_counter() - t0)
    batch = measure_batch(service, ui, redecides)
    return {
        **batch,
        "backbone": model.backbone.name,
        "n": model.n,
        "crops": int(crops.shape[0]),
        "image": image.name,
        "repeats": repeats,
        "redecides": redecides,
        "upload_handler_ms": round(1000 * statistics.median(handler_s), 1),
        "bare_encoder_ms": round(1000 * statistics.median(encoder_s), 1),
        "upload_to_decision_over_encoder": round(statistics.median(ratios), 3),
        "upload_to_decision_over_encoder_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "app_redecide_ms": round(1000 * statistics.median(redecide_s), 2),
        "app_redecide_ms_max": round(1000 * max(redecide_s), 2),
        "redecide_head_ms": round(1000 * statistics.median(head_s), 2),
        "upload_draw_ms": round(1000 * statistics.median(draw_s), 1),
        "redecide_redraws": sorted({tuple(s) for s in sent})[0] if sent else [],
        "batch_per_image_over_single": round(batch["batch_per_image_ms"] / (1000 * statistics.median(handler_s)), 3),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest_predict(url: str, uri: str, timeout_s: float = 120) -> dict:
    """One ``/predict`` through gradio's REST route, as curl sends it: the call posted with every
    value, then its event stream read until the answer. The answer, parsed."""
    import httpx

    from app.api import AUTO
    from app.service import DEFAULT_PRESET

    with httpx.Client(timeout=timeout_s) as http:
        posted = http.post(f"{url}gradio_api/call/predict", json={"data": [uri, DEFAULT_PRESET, "", AUTO, None]})
        event = posted.raise_for_status().json()["event_id"]
        with http.stream("GET", f"{url}gradio_api/call/predict/{event}") as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    data = json.loads(line.split(":", 1)[1])
                    if kind == "error":
                        raise RuntimeError(f"/predict failed: {data}")
                    return json.loads(data[0])
    raise RuntimeError("/predict: the event stream ended without an answer")


def measure_starts(backbone: str, image: Path, starts: int) -> dict:
    """``measure_start`` ``starts`` times: the medians, and every start's figures (a shared
    machine's load moves single starts by a factor of two)."""
    runs = [measure_start(backbone, image) for _ in range(starts)]
    keys = (
        "start_to_serve_s",
        "first_analysis_s",
        "later_analysis_s",
        "first_over_later",
        "first_analysis_encoder_s",
        "first_analysis_over_encoder",
        "later_analysis_gradio_client_s",
    )
    return {
        **runs[-1],
        **{k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
        "starts": [{k: r[k] for k in keys} for r in runs],
    }


def measure_start(
    backbone: str, image: Path, encoder_repeats: int = 3, later_requests: int = 2, timeout_s: float = 600
) -> dict:
    """``python app.py`` in a fresh process: seconds until its page answers, then its first
    ``/predict`` ÷ the bare encoder on the same crops (this process, right after, the server idle),
    and the same request ``later_requests`` times more (their median)."""
    import base64
    import tempfile
    import urllib.request

    from gradio_client import Client

    from app.service import ModelService, Spec
    from hvl_core import load_image
    from hvl_core.geometry import hierarchical_crops

    model = ModelService(backbone, device="cpu").preload(Spec())  # built before the server starts
    crops = hierarchical_crops(load_image(str(image)).image, model.n, model.backbone.image_size, model.detail)
    port = _free_port()
    env = {**os.environ, "HVL_BACKBONE": backbone, "HVL_DEVICE": "cpu", "GRADIO_SERVER_PORT": str(port)}
    env.pop("GRADIO_SERVER_NAME", None)
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="hvl-bench-") as tmp:
        env["GRADIO_TEMP_DIR"] = tmp
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited: {proc.stderr.read().decode()[-2000:]}")
                if time.perf_counter() - t0 > timeout_s:
                    raise RuntimeError(f"app.py did not serve within {timeout_s:.0f} s")
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.1)
            serve_s = time.perf_counter() - t0
            uri = "data:image/jpeg;base64," + base64.b64encode(image.read_bytes()).decode()
            t1 = time.perf_counter()
            answer = rest_predict(url, uri)
            first_s = time.perf_counter() - t1
            later, via_client = [], []
            for _ in range(later_requests):
                t1 = time.perf_counter()
                rest_predict(url, uri)
                later.append(time.perf_counter() - t1)
            client = Client(url, verbose=False, analytics_enabled=False)
            client.predict(uri, api_name="/predict")  # its own first call: the stream's opening
            for _ in range(later_requests):
                t1 = time.perf_counter()
                client.predict(uri, api_name="/predict")
                via_client.append(time.perf_counter() - t1)
            enc = []
            for _ in range(encoder_repeats):
                t2 = time.perf_counter()
                model.encode_crops(crops)
                enc.append(time.perf_counter() - t2)
        finally:
            proc.terminate()
            proc.wait(30)
    encoder_s = statistics.median(enc)
    later_s = statistics.median(later)
    return {
        "backbone": backbone,
        "start_to_serve_s": round(serve_s, 2),
        "first_analysis_s": round(first_s, 2),
        "later_analysis_s": round(later_s, 2),
        "first_over_later": round(first_s / later_s, 3),
        "first_analysis_encoder_s": round(encoder_s, 2),
        "first_analysis_over_encoder": round(first_s / encoder_s, 3),
        "later_analysis_gradio_client_s": round(statistics.median(via_client), 2),
        "first_verdict": answer["verdict"],
    }


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average": round(os.getloadavg()[0], 2),
        "malloc_set": sorted(k for k, v in MALLOC.items() if v),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def summary(results: list[dict], env: dict) -> str:
    rows = "\n".join(
        f"| {r['backbone']} | {r['n']} | {r['crops']} | {r['app_redecide_ms']:.1f} (max {r['app_redecide_ms_max']:.1f}) | "
        f"{r['redecide_head_ms']:.1f} | {r['upload_handler_ms']:,.0f} | {r['upload_draw_ms']:.0f} | {r['bare_encoder_ms']:,.0f} | {r['upload_to_decision_over_encoder']:.3f} "
        f"({r['upload_to_decision_over_encoder_range'][0]:.2f}–{r['upload_to_decision_over_encoder_range'][1]:.2f}) | "
        f"{', '.join(r['redecide_redraws']) or 'none'} | {r['batch_redecide_ms']:.1f} (max {r['batch_redecide_ms_max']:.1f}) |"
        for r in results
    )
    return (
        f"# Demo latency (`bench/app_bench.py`)\n\nCPU {env['cpu']}, {env['threads']} torch threads on {env['cores']} "
        f"cores, load average {env['load_average']} at start; torch {env['torch']}, Python {env['python']}; "
        f"{env['date']}; malloc set as the server's ({', '.join(env['malloc_set']) or 'none'}), every model call on the model's thread. Image: `assets/{results[0]['image']}`; {results[0]['repeats']} upload rounds (interleaved "
        f"with the bare encoder), {results[0]['redecides']} K changes.\n\n"
        f"| backbone | n | crops | K change → all outputs, ms (goal ≤ {GOALS['app_redecide_ms']:.0f}) | of which the "
        f"head (`service.decide`), ms | upload → all outputs, ms | of which drawing every output, ms | bare encoder, ms | "
        f"upload / encoder (goal ≤ {GOALS['upload_to_decision_over_encoder']}) | redrawn on a K change | "
        f"batch of {BATCH_SIZE}: threshold move → table, histogram, flips, ms (goal ≤ {GOALS['batch_redecide_ms']:.0f}) |\n"
        f"|---|---|---|---|---|---|---|---|---|---|---|\n{rows}\n\n"
        "Handler time on the server (Python), from the event's inputs to all its outputs; the browser's part "
        "(transfer, decoding the pictures) is not included.\n\n"
        f"| backbone | batch tab: analyse {BATCH_SIZE} images, ms per image | ÷ one upload (goal ≤ "
        f"{GOALS['batch_per_image_over_single']}) | `python app.py` → page answers, s (goal ≤ {GOALS['start_to_serve_s']:.0f}) | "
        f"its first `/predict`, s | a later one, s | bare encoder, s | first ÷ bare encoder (goal ≤ "
        f"{GOALS['first_analysis_over_encoder']}) | a later one through `gradio_client`, s |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {r['backbone']} | {r['batch_per_image_ms']:,.0f} | {r['batch_per_image_over_single']:.3f} | "
            f"{r.get('start_to_serve_s', '–')} | {r.get('first_analysis_s', '–')} | {r.get('later_analysis_s', '–')} | "
            f"{r.get('first_analysis_encoder_s', '–')} | {r.get('first_analysis_over_encoder', '–')} | "
            f"{r.get('later_analysis_gradio_client_s', '–')} |"
            for r in results
        )
        + "\n\n`/predict` through gradio's REST route as curl sends it (the call posted, its event stream read to "
        "the end); `gradio_client` adds its own wait (its message loop looks every 50 ms)." + "\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench/app_bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder: bench.json gets the keys, app.md the summary")
    ap.add_argument(
        "--backbone",
        nargs="+",
        default=["medmnist-densenet121"],
        help="backbones to measure (the first gives the headline keys)",
    )
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--repeats", type=int, default=7, help="upload rounds")
    ap.add_argument("--redecides", type=int, default=30, help="K changes")
    ap.add_argument("--json-name", default="bench.json", help="the JSON file in --out to merge the keys into")
    ap.add_argument(
        "--starts",
        type=int,
        default=3,
        help="fresh starts of app.py, medians kept (0: skip start_to_serve_s, first analysis)",
    )
    args = ap.parse_args(argv)
    env = environment()
    # first: quiet
    start = None if not args.starts else model_thread.run(measure_starts, args.backbone[0], args.image, args.starts)
    results = [model_thread.run(measure, b, args.image, args.repeats, args.redecides) for b in args.backbone]
    if start is not None:
        results[0].update(start)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / args.json_name
    data = json.loads(path.read_text()) if path.is_file() else {}
    head = results[0]
    keys = {k: head[k] for k in GOALS if k in head}
    data.update(keys)
    data["app"] = {"environment": env, "goals": GOALS, "results": results}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    (args.out / (Path(args.json_name).stem.replace("bench", "app") + ".md")).write_text(summary(results, env))
    print(json.dumps(keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
