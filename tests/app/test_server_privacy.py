"""What the server keeps: an upload folder of its own that is gone when it stops, and a log
without upload names or the file readers' messages."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app import logs, uploads

ROOT = Path(__file__).resolve().parents[2]

_SERVER = """
import sys, time
from app.uploads import private_upload_dir
folder = private_upload_dir(sys.argv[1])
(folder / "abc").mkdir()
(folder / "abc" / "Jane Doe.dcm").write_bytes(b"DICM")
print(folder, flush=True)
time.sleep(60)
"""


def _start(parent: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRADIO_TEMP_DIR", None)
    p = subprocess.Popen([sys.executable, "-c", _SERVER, str(parent)], env=env, stdout=subprocess.PIPE, text=True)
    return p, Path(p.stdout.readline().strip())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_upload_folder_is_private_and_gone_after_a_stop(tmp_path, sig):
    """Uploads (one a DICOM under a patient's name) used to stay in a shared folder after a stop."""
    proc, folder = _start(tmp_path)
    try:
        assert folder.parent == tmp_path and folder.name.startswith(f"hvl-uploads-{proc.pid}-")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert (folder / "abc" / "Jane Doe.dcm").exists()
        proc.send_signal(sig)
        proc.wait(20)
    finally:
        proc.kill()
    assert not folder.exists()


def test_two_servers_have_two_folders_and_a_start_keeps_the_live_ones(tmp_path):
    """Each start-up sweep used to delete the live uploads of the other servers on the host."""
    a, fa = _start(tmp_path)
    try:
        b, fb = _start(tmp_path)
        try:
            assert fa != fb and (fa / "abc" / "Jane Doe.dcm").exists() and (fb / "abc" / "Jane Doe.dcm").exists()
        finally:
            b.kill()
            b.wait(20)
        # b was killed (no clean-up): its folder is stale; a's owner still runs
        assert fb.exists() and uploads.owner_gone(fb) and not uploads.owner_gone(fa)
        assert uploads.remove_stale(tmp_path) == 1
        assert not fb.exists() and (fa / "abc" / "Jane Doe.dcm").exists()
    finally:
        a.kill()
        a.wait(20)


def test_folders_that_are_not_a_servers_are_never_removed(tmp_path):
    other = tmp_path / "hvl-uploads-notapid-x"
    other.mkdir()
    mine = tmp_path / f"hvl-uploads-{os.getpid()}-abc"
    mine.mkdir()
    (tmp_path / "unrelated").mkdir()
    assert uploads.remove_stale(tmp_path) == 0
    assert other.exists() and mine.exists() and (tmp_path / "unrelated").exists()


def test_private_folder_becomes_gradios_upload_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    monkeypatch.setattr(uploads, "remove_at_exit", lambda folder: None)
    folder = uploads.private_upload_dir(tmp_path)
    from gradio.utils import get_upload_folder

    assert get_upload_folder() == str(folder) == os.environ["GRADIO_TEMP_DIR"]
    assert uploads.upload_dir() == folder


def _log_text(filt: logs.PrivateFilter, emit) -> str:
    import io

    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(logging.Formatter(logs.LOG_FORMAT))
    h.addFilter(filt)
    root = logging.getLogger()
    root.addHandler(h)
    try:
        emit()
    finally:
        root.removeHandler(h)
    return buf.getvalue()


def test_log_holds_no_upload_path_and_readers_in_one_line(tmp_path):
    """wsidicom and tifffile logged upload paths; pydicom logged whole tracebacks."""
    up = tmp_path / "hvl-uploads-1-x"
    path = f"{up}/0a1b2c/Jane Doe 1961-02-03.svs"
    filt = logs.PrivateFilter([up])

    def emit():
        logging.getLogger("wsidicom.instance").warning("Could not open %s as DICOM", path)
        logging.getLogger("tifffile").error("<tifffile.TiffFile %r> invalid page offset", path)
        try:
            raise ValueError(f"bad tag in {path}")
        except ValueError:
            logging.getLogger("pydicom.filereader").exception("reading failed")
            logging.getLogger("app.handlers").exception("analysis failed for %s", path)

    text = _log_text(filt, emit)
    assert "Jane" not in text and "Doe" not in text and "1961" not in text and str(up) not in text
    lines = text.strip().splitlines()
    assert (
        lines[0] == "WARNING wsidicom.instance: wsidicom warning while reading a file (details withheld: they name it)"
    )
    assert lines[2].startswith("ERROR pydicom.filereader: pydicom error") and "Traceback" not in "".join(lines[:3])
    assert "analysis failed for <upload>" in text and "bad tag in <upload>" in text  # our own: redacted, kept


def test_warnings_quoted_names_and_data_uris_never_reach_the_log(tmp_path):
    """Warnings kept their message (the filter matched "py", not "py.warnings"); a name with a
    quote was cut at the quote; a data: URI went whole into the log."""
    up = tmp_path / "hvl-uploads-1-x"
    filt = logs.PrivateFilter([up])
    path = f"{up}/0a1b/it's DOE^JOHN MRN 12345.png"
    uri = "data:image/png;base64," + "QUJD" * 100_000

    def emit():
        logging.getLogger("py.warnings").warning("%s: UserWarning: odd tag in DOE^JOHN", path)
        logging.getLogger("app.api").error("failed on '%s' and %s", path, uri)
        logging.getLogger("app.api").error("x" * (logs.MAX_CHARS + 10))

    text = _log_text(filt, emit)
    lines = text.strip().splitlines()
    assert lines[0] == "WARNING py.warnings: a warning while reading a file (details withheld: they name it)"
    assert lines[1] == "ERROR app.api: failed on '<upload>' and data:<withheld>"
    assert "DOE" not in text and "QUJD" not in text and lines[2].endswith("(74 characters withheld)")
    cut = lines[2].removeprefix("ERROR app.api: ")
    assert len(cut) <= logs.MAX_CHARS and filt.redact(cut) == cut  # a second filter leaves it as it is


def test_configure_logging_quietens_the_readers_and_redacts_the_console(tmp_path, capsys):
    import sys

    up = tmp_path / "hvl-uploads-1-x"
    streams = sys.stdout, sys.stderr
    filt = logs.configure_logging(up)
    try:
        assert all(logging.getLogger(n).level == logging.WARNING for n in logs.READERS)
        assert any(filt in h.filters for h in logging.getLogger().handlers)
        # what gradio prints for a raw call with too few values: the upload's path and the data
        print(f'Received inputs:\n    [{{"path": "{up}/ab/it\'s DOE^JOHN.png"}}, "data:image/png;base64,QUJDRA=="]')
        print("x" * (logs.MAX_CHARS + 5), file=sys.stderr)
    finally:
        sys.stdout, sys.stderr = streams
        for h in logging.getLogger().handlers:
            h.removeFilter(filt)
        logging.captureWarnings(False)
    out, err = capsys.readouterr()
    assert "DOE" not in out and "QUJD" not in out and "<upload>" in out and "data:<withheld>" in out
    assert "(69 characters withheld)" in err and len(err) <= logs.MAX_CHARS + 1


_HANDLED = """
import os, signal, sys, time
from pathlib import Path
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
from app.uploads import remove_at_exit
d = Path(sys.argv[1]); d.mkdir()
remove_at_exit(d)
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGINT) if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else None
time.sleep(0.2)
print(got == [signal.SIGTERM], d.exists())
"""


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_the_folder_stays_while_the_process_runs_and_goes_when_it_ends(tmp_path, sigint):
    """A handled or ignored signal that does not end the process used to delete the folder while
    the server went on serving (``app.py &`` from a script ignores SIGINT)."""
    folder = tmp_path / "u"
    out = subprocess.run(
        [sys.executable, "-c", _HANDLED, str(folder)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None,
    )
    assert out.stdout.split() == ["True", "True"], out.stderr  # the handler ran; the folder is there
    assert not folder.exists()  # and gone once the process ended
