"""The malloc settings of the server and the CLI (hvl_core/allocator.py): one arena and the encoder's activations kept
in the heap, unless the operator chose otherwise."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from hvl_core import allocator

VARIABLES = [variable for _, _, variable, _ in allocator.SETTINGS]


@pytest.fixture
def clean_env(monkeypatch):
    for variable in [*VARIABLES, "GLIBC_TUNABLES"]:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_every_setting_is_made_on_glibc(clean_env):
    assert allocator.tune_malloc() == dict.fromkeys(VARIABLES, True)


def test_the_operators_settings_stand(clean_env):
    clean_env.setenv("MALLOC_ARENA_MAX", "4")
    clean_env.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    got = allocator.tune_malloc()
    assert got["MALLOC_ARENA_MAX"] is False and got["MALLOC_TRIM_THRESHOLD_"] is False


def test_the_heap_keeps_twice_what_it_stops_mapping():
    # glibc's own dynamic rule (trim threshold = 2 × mmap threshold), and a threshold above a
    # DenseNet-121 pass's largest blocks (21 crops × 64 channels × 112² float32 = 67 MB)
    assert allocator.TRIM_THRESHOLD == 2 * allocator.MMAP_THRESHOLD
    assert allocator.MMAP_THRESHOLD > 21 * 64 * 112 * 112 * 4


def test_app_py_sets_them_before_anything_else_starts():
    text = (Path(__file__).resolve().parents[2] / "app.py").read_text()
    assert text.index("tune_malloc()") < text.index("private_upload_dir()") < text.index("import ipaddress")


def test_the_command_line_sets_them_first(monkeypatch):
    from hvl_tools import cli

    calls = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda: calls.append("tuned"))
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert calls == ["tuned"]
