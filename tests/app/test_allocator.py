"""The server's malloc arenas are limited (glibc's per-thread arenas grew it with every session),
unless the operator chose a number."""

from __future__ import annotations

import platform

import pytest

from app import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_arenas_are_limited_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert allocator.limit_malloc_arenas() is True


def test_the_operators_malloc_arena_max_stands(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert allocator.limit_malloc_arenas() is False


def test_app_py_limits_them_before_anything_else_starts():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "app.py").read_text()
    assert text.index("limit_malloc_arenas()") < text.index("private_upload_dir()") < text.index("import ipaddress")
