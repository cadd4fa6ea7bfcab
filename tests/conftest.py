"""Shared fixtures: models are built once per session (building a backbone takes seconds)."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_backbone():
    from hvl_core import create_backbone

    return create_backbone("tiny-clip-random")


@pytest.fixture(scope="session")
def tiny_model(tiny_backbone):
    from hvl_core import load_model

    return load_model(tiny_backbone, preset="dermatology-isic4", device="cpu")


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A small synthetic benchmark (hvl_tools.synthetic), generated once per session."""
    from hvl_tools.synthetic import generate

    root = tmp_path_factory.getbasetemp() / "hvl-synth-small"
    generate(root, seed=1, train_per_class=8, test_per_class=4, ood_per_class=4, size=64)
    return root
