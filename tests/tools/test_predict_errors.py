"""``hvl predict`` on a checkpoint whose config names a backbone it cannot build: one sentence
and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hvl_core
from hvl_core.checkpoint import CONFIG_NAME

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def passwd_checkpoint(tmp_path, tiny_backbone):
    """A checkpoint whose config names ``ViT-B-16:<a local file that is not weights>``."""
    not_weights = tmp_path / "passwd"
    not_weights.write_text("root:x:0:0:root:/root:/bin/bash\n" * 20)
    model = hvl_core.load_model(tiny_backbone, classes=["melanoma", "nevus"], device="cpu")
    d = hvl_core.save_checkpoint(tmp_path / "ck", model.head, "tiny-clip-random", model.classes)
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["backbone"] = f"ViT-B-16:{not_weights}"
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    return d, not_weights


def test_checkpoint_naming_a_file_that_is_not_weights_is_one_sentence(passwd_checkpoint, tmp_path):
    """It ended in a 40-line torch.load traceback (IndexError in the weights-only unpickler), exit 1."""
    d, not_weights = passwd_checkpoint
    img = ROOT / "assets" / "skin_nevus_closeup.jpg"
    out = subprocess.run(
        [sys.executable, "-m", "hvl_tools.cli", "predict", "--checkpoint", str(d), str(img)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.startswith("hvl: error:")]
    assert len(lines) == 1 and f"{not_weights} is not a readable weights file" in lines[0], out.stderr[-2000:]


def test_unreadable_weights_errors_from_torch_are_one_sentence(monkeypatch, capsys):
    from hvl_tools.commands import common

    def broken(**kw):
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(hvl_core, "load_model", broken)
    args = common.argparse.Namespace(
        backbone="ViT-B-16:/data/w.bin", checkpoint=None, classes=None, preset="dermatology-isic4",
        untrained=True, n=None, k=None, score=None, detail="upsample", device="cpu", default_backbone="x",
        default_preset="dermatology-isic4",
    )  # fmt: skip
    with pytest.raises(SystemExit) as e:
        common.model_from_args(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not build the backbone ViT-B-16:/data/w.bin" in err
