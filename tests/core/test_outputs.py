"""Output and cache folders are checked before the work starts."""
import pytest

from hvl_core.outputs import OutputError, writable_dir


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
