"""hvl score: inputs, the batched crops, the local engine against the model's own predict, the
resumable scores.csv (a kill -9 of a real process), the summary, the CLI and the device decoder."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvl_core.geometry import hierarchical_crops, square_view
from hvl_tools.bench.timing import synthetic_images
from hvl_tools.score import COLUMNS, InputError, ModelSpec, ResumeError, collect_inputs, score_archive
from hvl_tools.score.results import ScoresFile, read_scores
from hvl_tools.score.views import crops_of_views, decode_item, decode_jpegs, decode_view

SPEC = ModelSpec(backbone="tiny-clip-random", preset="dermatology-isic4", device="cpu")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Nine JPEGs in two sub-folders, a PNG, and a file that is not an image."""
    root = tmp_path_factory.mktemp("archive")
    synthetic_images(root / "a", 5, (120, 90), seed=0)
    synthetic_images(root / "b" / "deeper", 4, (90, 130), seed=10)
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (70, 80, 3), dtype=np.uint8)).save(root / "b" / "x.png")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def _rows(out) -> dict:
    return {r["path"]: r for r in read_scores(Path(out) / "scores.csv")}


# --------------------------------------------------------------------------- inputs


def test_inputs_from_folders_globs_and_manifests(archive, tmp_path):
    folder = collect_inputs([str(archive)])
    assert len(folder) == 11 and folder == sorted(folder)  # recursive, sorted, non-images by extension only
    jpgs = collect_inputs([str(archive / "**" / "*.jpg")])
    assert len(jpgs) == 9 and all(p.endswith(".jpg") for p in jpgs)
    man = tmp_path / "list.csv"
    rel = os.path.relpath(archive / "a" / "bench_001.jpg", tmp_path)
    man.write_text(f"label,path\nmelanoma,{rel}\nnevus,{archive / 'b' / 'x.png'}\n")
    got = collect_inputs([str(man), str(archive / "b" / "x.png")])  # the second is a duplicate
    assert got == [str(tmp_path / rel), str(archive / "b" / "x.png")]
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([str(tmp_path / "missing")])
    with pytest.raises(InputError, match="matches no images"):
        collect_inputs([str(tmp_path / "*.tif")])


def test_folder_scan_reads_what_predict_reads_and_reports_every_unreadable_file(tmp_path, tiny_model):
    """A folder of 58 files gave 57 rows: .dcm, .svs, .ndpi and broken links were left out."""
    from tests.wsi_files import dicom_bytes

    root = tmp_path / "scan"
    synthetic_images(root, 2, (64, 64), seed=1)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    (root / "scan.dcm").write_bytes(dicom_bytes(rgb))
    (root / "slide.svs").write_bytes(b"not a slide")
    (root / "slide.ndpi").write_bytes(b"II*\x00 truncated")
    (root / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "notes.txt").write_text("not an image")  # not a kind predict reads: not scanned
    paths = collect_inputs([str(root)])
    assert sorted(Path(p).name for p in paths) == sorted(
        [*(p.name for p in root.glob("*.jpg")), "scan.dcm", "slide.svs", "slide.ndpi", "gone.png"]
    )
    assert collect_inputs([str(root / "*")]) == paths  # a glob takes the same files
    s = score_archive([str(root)], tmp_path / "out", SPEC, batch_size=4, workers=1, progress=False, model=tiny_model)
    rows = _rows(tmp_path / "out")
    assert len(rows) == len(paths) == 6 and (s["files"], s["scored"], s["errors"]) == (6, 3, 3)
    dcm = rows[str(root / "scan.dcm")]
    assert dcm["error"] == "" and dcm["label"] == tiny_model.predict(str(root / "scan.dcm")).label
    for name in ("slide.svs", "slide.ndpi", "gone.png"):
        assert rows[str(root / name)]["error"].startswith(name), rows[str(root / name)]


def test_an_unreadable_image_type_and_a_folder_named_like_an_image_get_rows(tmp_path, tiny_model):
    """vector.svg and a folder named x.png were left out without a row."""
    root = tmp_path / "scan"
    synthetic_images(root, 1, (64, 64), seed=1)
    (root / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "x.png").mkdir()
    (root / "notes.txt").write_text("not an image")  # not named like an image: not scanned
    paths = collect_inputs([str(root)])
    assert sorted(Path(p).name for p in paths) == sorted([*(p.name for p in root.glob("*.jpg")), "vector.svg", "x.png"])
    s = score_archive([str(root)], tmp_path / "out", SPEC, batch_size=4, workers=1, progress=False, model=tiny_model)
    rows = _rows(tmp_path / "out")
    assert (s["files"], s["errors"]) == (len(paths), 2)
    assert rows[str(root / "vector.svg")]["error"].startswith("vector.svg is not an image")
    assert rows[str(root / "x.png")]["error"] == "x.png is a folder, not an image"


# --------------------------------------------------------------------------- crops of a batch of views


@pytest.mark.parametrize("n", [1, 2])
def test_crops_of_views_equal_hierarchical_crops(rgb_image, n):
    S = 32
    other = rgb_image.rotate(90, expand=True)
    views = torch.stack([torch.from_numpy(np.array(square_view(im, S))).permute(2, 0, 1) for im in (rgb_image, other)])
    got = crops_of_views(views, n)
    assert got.shape == (2, 1 + 5 * n * n, 3, S, S)
    for i, im in enumerate((rgb_image, other)):
        assert torch.equal(got[i], hierarchical_crops(im, n, S))


def test_crops_of_views_cut_row_major_cells():
    # a view whose left half is black and right half white: after 2x upsampling, cells (0,0), (1,0)
    # are black and (0,1), (1,1) white (bicubic keeps a constant area constant away from the edge,
    # so the two columns next to the middle are left out)
    S = 16
    v = torch.zeros(1, 3, S, S, dtype=torch.uint8)
    v[..., S // 2 :] = 255
    c = crops_of_views(v, 1)[0]  # 1 + 1 + 4 crops
    assert torch.equal(c[0], v[0].float() / 255) and torch.equal(c[1], c[0])
    high = c[2:]
    assert high[0][..., :-2].max() < 0.01 and high[2][..., :-2].max() < 0.01
    assert high[1][..., 2:].min() > 0.99 and high[3][..., 2:].min() > 0.99


# --------------------------------------------------------------------------- the local engine


def test_local_engine_matches_predict_and_reports_bad_files(archive, tmp_path, tiny_model):
    s = score_archive([str(archive)], tmp_path / "out", SPEC, batch_size=4, workers=1, progress=False, model=tiny_model)
    rows = _rows(tmp_path / "out")
    paths = collect_inputs([str(archive)])
    assert list(rows) == paths  # one row per input, in input order
    good = [p for p in paths if not p.endswith("broken.png")]
    for p, pred in zip(good, tiny_model.predict_batch(good, batch_size=3)):
        r = rows[p]
        assert r["label"] == pred.label and r["known"] == pred.known and r["error"] == ""
        assert r["msp"] == pytest.approx(pred.msp, abs=1e-6) and r["score"] == r["msp"]
    bad = rows[str(archive / "b" / "broken.png")]
    assert "broken.png" in bad["error"] and np.isnan(bad["score"]) and bad["label"] == ""
    assert (s["files"], s["scored"], s["errors"]) == (11, 10, 1)
    assert s["known"] + s["unknown"] == 10 and s["known"] == sum(r["known"] for r in rows.values())
    assert s["run"]["scored_now"] == 11 and s["score"] == "msp"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scored"] == 10
    assert (tmp_path / "out" / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "out" / "scores.csv", newline="") as f:
        assert next(csv.reader(f)) == list(COLUMNS)


def test_rerun_skips_done_rows_and_ends_as_one_run(archive, tmp_path, tiny_model):
    full = tmp_path / "full"
    score_archive([str(archive)], full, SPEC, batch_size=3, workers=0, progress=False, model=tiny_model)
    part = tmp_path / "part"
    score_archive(
        [str(archive)], part, SPEC, batch_size=3, workers=0, progress=False, model=tiny_model, limit_batches=2
    )
    assert len(_rows(part)) == 6
    s = score_archive([str(archive)], part, SPEC, batch_size=3, workers=0, progress=False, model=tiny_model)
    assert s["run"]["skipped_as_done"] == 6 and s["run"]["scored_now"] == 5
    a, b = _rows(full), _rows(part)
    assert list(a) == list(b) and len((part / "scores.csv").read_text().splitlines()) == 12  # header + 11
    for p in a:
        assert (a[p]["label"], a[p]["known"], a[p]["error"]) == (b[p]["label"], b[p]["known"], b[p]["error"])
        assert a[p]["msp"] == b[p]["msp"] or (np.isnan(a[p]["msp"]) and np.isnan(b[p]["msp"]))


def test_rerun_with_another_model_is_refused(archive, tmp_path, tiny_model):
    out = tmp_path / "out"
    score_archive([str(archive / "a")], out, SPEC, batch_size=8, workers=0, progress=False, model=tiny_model)
    other = ModelSpec(**{**SPEC.to_dict(), "threshold": 0.1})
    with pytest.raises(ResumeError, match="threshold"):
        score_archive([str(archive / "a")], out, other, batch_size=8, workers=0, progress=False)


def test_a_torn_last_line_is_cut_on_reopen(tmp_path):
    with ScoresFile(tmp_path) as f:
        f.append(
            [
                {
                    "path": "a.jpg",
                    "label": "x",
                    "score": 0.5,
                    "msp": 0.5,
                    "p_value": 0.2,
                    "outcome": "known",
                    "known": True,
                    "error": "",
                }
            ]
        )
    with open(tmp_path / "scores.csv", "a") as fh:
        fh.write("b.jpg,x,0.2")  # a write cut short by a kill
    with ScoresFile(tmp_path) as f:
        assert list(f.done) == ["a.jpg"]
        f.append(
            [
                {
                    "path": "b.jpg",
                    "label": "y",
                    "score": 0.25,
                    "msp": 0.25,
                    "p_value": float("nan"),
                    "outcome": "unknown",
                    "known": False,
                    "error": "",
                }
            ]
        )
    rows = read_scores(tmp_path / "scores.csv")
    assert [
        (r["path"], r["label"], r["score"], r["outcome"], r["p_value"] if r["p_value"] == r["p_value"] else None)
        for r in rows
    ] == [("a.jpg", "x", 0.5, "known", 0.2), ("b.jpg", "y", 0.25, "unknown", None)]


@pytest.mark.slow
def test_kill_9_loses_at_most_the_batch_in_flight(tmp_path):
    """A real process, killed with SIGKILL while scoring: every row on disk is whole, and a rerun
    completes the file with each image once and the same scores as an uninterrupted run."""
    files = synthetic_images(tmp_path / "in", 40, (64, 64), seed=5)
    cmd = [
        sys.executable,
        "-m",
        "hvl_tools.cli",
        "score",
        str(tmp_path / "in"),
        "--backbone",
        "tiny-clip-random",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd + ["--out", str(tmp_path / "killed")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scores = tmp_path / "killed" / "scores.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if scores.exists() and len(scores.read_text().splitlines()) >= 5:  # header + two batches
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = scores.read_text().splitlines()
    assert 5 <= len(lines) < 41
    kept = read_scores(scores)
    assert len(kept) in (len(lines) - 1, len(lines) - 2)  # at most a torn last line
    assert all(r["label"] and not r["error"] for r in kept)
    done = subprocess.run(
        cmd + ["--out", str(tmp_path / "killed")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} already done" in done.stderr
    ref = subprocess.run(
        cmd + ["--out", str(tmp_path / "ref")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert ref.returncode == 0, ref.stderr
    a, b = _rows(tmp_path / "killed"), _rows(tmp_path / "ref")
    assert sorted(a) == sorted(b) == sorted(str(f) for f in files)
    assert len(read_scores(scores)) == 40  # each image once
    assert all(a[p]["msp"] == b[p]["msp"] and a[p]["label"] == b[p]["label"] for p in a)


# --------------------------------------------------------------------------- the command


def test_cli_exit_status_and_message(archive, tmp_path, capsys):
    from hvl_tools.cli import main

    code = main(
        [
            "score",
            str(archive / "b"),
            "--out",
            str(tmp_path / "o"),
            "--backbone",
            "tiny-clip-random",
            "--device",
            "cpu",
            "--no-progress",
            "--workers",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1  # broken.png
    assert "5 scored" in err and "1 unreadable" in err and "scores.csv" in err
    with pytest.raises(SystemExit) as e:
        main(["score", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "o2"), "--backbone", "tiny-clip-random"])
    assert e.value.code == 2 and "no such file or folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- the device decoder (runs on the CPU here)


def test_device_decoder_takes_plain_jpegs_only(archive):
    jpg = str(archive / "a" / "bench_000.jpg")
    d = decode_item(jpg, 32, 2, "upsample", on_device=True)
    assert d.jpeg is not None and d.view is None and d.jpeg.tobytes() == Path(jpg).read_bytes()
    png = decode_item(str(archive / "b" / "x.png"), 32, 2, "upsample", on_device=True)
    assert png.jpeg is None and png.view.shape == (32, 32, 3)
    assert decode_item(str(archive / "b" / "broken.png"), 32, 2, "upsample", on_device=True).error
    assert decode_item(jpg, 32, 2, "upsample", on_device=False).jpeg is None


def test_tensor_decoder_view_is_close_to_pil(archive):
    jpg = archive / "a" / "bench_002.jpg"
    d = decode_item(str(jpg), 64, 2, "upsample", on_device=True)
    (view,) = decode_jpegs([d.jpeg], 64, torch.device("cpu"))
    ref = decode_view(str(jpg), 64).view
    diff = (view.permute(1, 2, 0).int() - torch.from_numpy(ref).int()).abs().float()
    assert view.shape == (3, 64, 64) and view.dtype == torch.uint8
    assert diff.mean() < 2.0  # resampling rounding, not a different picture


def test_scores_with_the_tensor_decoder_are_close(archive, tmp_path, tiny_model):
    a = score_archive(
        [str(archive / "a")],
        tmp_path / "pil",
        SPEC,
        batch_size=5,
        workers=0,
        progress=False,
        model=tiny_model,
        decode="cpu",
    )
    b = score_archive(
        [str(archive / "a")],
        tmp_path / "dev",
        SPEC,
        batch_size=5,
        workers=0,
        progress=False,
        model=tiny_model,
        decode="device",
    )
    assert a["model"]["decoder"] == "cpu" and b["model"]["decoder"] == "device"
    ra, rb = _rows(tmp_path / "pil"), _rows(tmp_path / "dev")
    assert max(abs(ra[p]["msp"] - rb[p]["msp"]) for p in ra) < 0.02
