"""The reference set's shipped encodings: written and read back exactly, used only when they fit
the backbone's weights, n, detail and every example file, and the one shipped for the server's
default model fits it (so start-up encodes nothing)."""

from __future__ import annotations

import shutil

import pytest
import torch

from app import reference as rf
from app.examples import load_examples
from app.service import ModelService, Spec
from hvl_core import load_image


@pytest.fixture
def service(tiny_backbone):
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    return svc


def test_shipped_encodings_round_trip_and_refuse_what_does_not_fit(service, tmp_path):
    model = service.preload(Spec())
    examples = rf.ReferenceSet(load_examples()).examples[:3]
    encoded = model.encode_batch([load_image(e["path"]) for e in examples])
    path = rf.save_shipped(model, examples, encoded, tmp_path)
    assert path.name == "tiny-clip-random-n2-upsample.safetensors"
    back = rf.load_shipped(model, examples, tmp_path)
    for a, b in zip(encoded, back):
        assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("v0", "v1", "v2"))
    ref = rf.ReferenceSet(examples)
    assert ref.warm(model, tmp_path) and ref.encode_calls == 0
    pred = model.predict(examples[0]["path"])
    scores = ref.scores(model, pred, "skin")
    assert ref.encode_calls == 0 and scores.scores[0] == pytest.approx(pred.score, abs=1e-5)
    # another n, another example file, other weights: not used
    assert rf.load_shipped(service.model(Spec(n=1)), examples, tmp_path) is None
    changed = [dict(e) for e in examples]
    changed[1]["path"] = str(tmp_path / "other.jpg")
    shutil.copy(examples[2]["path"], changed[1]["path"])
    assert rf.load_shipped(model, changed, tmp_path) is None
    with torch.no_grad():
        w = next(iter(model.backbone.modules()[0].parameters()))
        kept = w.clone()  # restored bit for bit: the backbone is shared by the whole session
        w.add_(1.0)
        try:
            assert rf.load_shipped(model, examples, tmp_path) is None
        finally:
            w.copy_(kept)
    assert not rf.ReferenceSet(examples).warm(service.model(Spec(n=1)), tmp_path)  # nothing there: nothing encoded


def test_the_default_models_encodings_ship_and_fit():
    model = ModelService(device="cpu").preload(Spec())  # the server's default backbone, offline weights
    examples = rf.ReferenceSet(load_examples()).examples
    shipped = rf.load_shipped(model, examples)
    assert shipped is not None, f"re-run python -m app.reference: {rf.shipped_path(model)} is missing or stale"
    assert len(shipped) == len(examples) and shipped[0].v2.shape == (4 * model.n**2, model.backbone.embed_dim)
