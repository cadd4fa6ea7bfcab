"""The hvl command line: in-process through ``main`` (exit status, stdout, stderr as a user sees
them), and in a fresh interpreter where the process itself is what is tested."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from hvl_tools.cli import COMMANDS, main

HVL = [sys.executable, "-m", "hvl_tools.cli"]


@pytest.fixture
def run(capsys):
    """``run(*args)`` → (returncode, stdout, stderr) of ``hvl ARGS`` in this process."""

    def _run(*args):
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return _run


@pytest.fixture
def images(tmp_path):
    good = tmp_path / "lesion.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "report.png"
    bad.write_text("this is not a png")
    return good, bad


def test_predict_json_reports_each_image_and_the_exit_status(images, run):
    good, bad = images
    r = run(
        "predict",
        "--backbone",
        "tiny-clip-random",
        "--preset",
        "dermatology-isic4",
        "--json",
        str(good),
        str(bad),
        str(good),
    )
    assert r.returncode == 1, r.stderr  # one file failed
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["path"]).name for x in rows] == ["report.png", "lesion.png", "lesion.png"]
    assert "not an image" in rows[0]["error"]
    ok = rows[1]
    assert {"path", "label", "msp", "known"} <= set(ok)
    assert ok["label"] in ("melanocytic nevus", "melanoma", "dermatofibroma", "vascular lesion")
    assert ok["score_name"] == "msp" and ok["score"] == ok["msp"]
    assert ok["known"] == (ok["score"] >= ok["threshold"]) and rows[2]["score"] == ok["score"]
    assert sum(ok["probs"].values()) <= 1 + 1e-6


def test_predict_all_good_exits_0_and_threshold_decides(images, run):
    good, _ = images
    r = run(
        "predict", "--backbone", "tiny-clip-random", "--classes", "cat", "dog", "--threshold", "0", "--json", str(good)
    )
    assert r.returncode == 0
    row = json.loads(r.stdout)
    assert row["known"] is True and row["label"] in ("cat", "dog")
    r = run("predict", "--backbone", "tiny-clip-random", "--classes", "cat", "dog", "--threshold", "1", str(good))
    assert r.returncode == 0 and "Unknown — refer to a specialist" in r.stdout


@pytest.mark.e2e
def test_clip_offline_fails_with_one_clear_sentence(images):
    import os

    good, _ = images
    r = subprocess.run(
        [*HVL, "predict", "--backbone", "clip-vit-b16", "--json", str(good)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 2 and r.stdout == ""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hvl: error: Cannot load clip-vit-b16")
    assert "Traceback" not in r.stderr


def test_unknown_preset_is_a_clear_error(images, run):
    good, _ = images
    r = run("predict", "--backbone", "tiny-clip-random", "--preset", "cardiology", str(good))
    assert r.returncode == 2 and "unknown preset 'cardiology'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.e2e
def test_help_of_every_command_answers_without_loading_torch():
    code = f"""
import sys
from hvl_tools.cli import build_parser
parser = build_parser()
for argv in [["--help"]] + [[c, "--help"] for c in {COMMANDS!r}]:
    try:
        parser.parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, argv
print(sorted(m for m in ("torch", "numpy", "gradio", "open_clip") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: hvl predict" in r.stdout and "usage: hvl train" in r.stdout


def test_an_output_folder_that_cannot_be_written_stops_before_any_work(run, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    r = run("evaluate", "--backbone", "tiny-clip-random", "--id-dir", str(tmp_path), "--out", str(tmp_path / "taken"))
    assert r.returncode == 2 and r.stdout == ""
    assert (
        r.stderr.strip() == f"hvl: error: the output folder {tmp_path / 'taken'} cannot be written "
        "(File exists); choose a folder you can write to"
    )
    r = run("synth", "/proc/hvl-synth")
    assert r.returncode == 2 and "cannot be written" in r.stderr and "Traceback" not in r.stderr


def test_predict_json_states_the_score_and_where_the_mass_went(images, run):
    good, _ = images
    r = run(
        "predict",
        "--backbone",
        "tiny-clip-random",
        "--classes",
        "cat",
        "dog",
        "--score",
        "maxlogit",
        "--threshold",
        "-100",
        "--json",
        str(good),
    )
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["score_name"] == "maxlogit" and row["threshold"] == -100 and row["threshold_source"] == "given"
    assert row["known"] is True and row["score"] >= -100
    assert sum(row["probs"].values()) + row["p_other"] + row["p_dropped"] == pytest.approx(1, abs=1e-5)


def test_a_threshold_outside_the_scores_range_stops_before_encoding(images, run):
    good, _ = images
    r = run("predict", "--backbone", "tiny-clip-random", "--classes", "cat", "dog", "--threshold", "1.5", str(good))
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "1.5" in r.stderr


@pytest.mark.e2e
def test_an_offline_hub_backbone_fails_before_torch_is_loaded(images, tmp_path):
    import os

    good, _ = images
    code = f"""
import sys
from hvl_tools.cli import main
try:
    main(["predict", "--backbone", "biomedclip", {str(good)!r}])
except SystemExit as e:
    print(e.code, "torch" in sys.modules)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert r.stderr.startswith("hvl: error: Cannot load biomedclip: the Hugging Face hub is unreachable")
    assert len(r.stderr.strip().splitlines()) == 1
