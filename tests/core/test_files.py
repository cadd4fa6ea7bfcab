"""File helpers: output and cache folders are checked before the work starts."""

import pytest

from hvl_core.files import OutputError, writable_dir


def test_creates_a_missing_folder(tmp_path):
    p = writable_dir(tmp_path / "a" / "b")
    assert p.is_dir() and list(p.iterdir()) == []  # the check leaves nothing behind


def test_a_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputError, match=r"the output folder .*out cannot be written"):
        writable_dir(tmp_path / "out")


def test_a_read_only_mount():
    with pytest.raises(OutputError, match="feature cache .* cannot be written"):
        writable_dir("/proc/hvl-cache", what="feature cache")


def test_a_read_only_folder(tmp_path, monkeypatch):
    """Root ignores permission bits, so the refusal the kernel would give is simulated."""
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(OutputError, match=r"\(Permission denied\)"):
        writable_dir(tmp_path)


def test_sha256_of_a_known_message(tmp_path):
    from hvl_core.files import sha256_bytes, sha256_file

    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2, "abc"
    assert sha256_bytes(b"abc") == abc
    (tmp_path / "m").write_bytes(b"abc")
    assert sha256_file(tmp_path / "m", chunk=1) == abc  # chunked reads give the same digest


def test_atomic_write_replaces_whole_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    import os

    from hvl_core.files import atomic_write

    p = tmp_path / "a.json"
    atomic_write(p, "first")
    atomic_write(p, b"second")
    assert p.read_bytes() == b"second"

    def crash(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        atomic_write(p, "third")
    assert p.read_bytes() == b"second" and sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
