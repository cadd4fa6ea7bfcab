"""Image folders, split files and deterministic partitions (hvl_tools.data). No images are decoded
here: partitions only list files, so empty '.png' files stand in for images."""

import hashlib
import json

import pytest

from hvl_tools import data as D


def touch(root, rel, n):
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / f"{rel.replace('/', '_')}_{i:03d}.png").write_bytes(b"")
    return d


def test_folders_match_class_names_case_insensitively(tmp_path):
    touch(tmp_path, "Melanocytic_Nevus", 3)
    touch(tmp_path, "MELANOMA", 2)
    touch(tmp_path, "other", 1)
    report = D.DataReport()
    items = D.labelled_items(tmp_path, ["melanocytic nevus", "melanoma"], report=report, name="train")
    assert sorted((it.label, it.group) for it in items) == [(0, "Melanocytic_Nevus")] * 3 + [(1, "MELANOMA")] * 2
    assert report.counts["train"] == 5
    assert any("other" in n for n in report.notes)  # an unused folder is noted, not silently dropped


def test_missing_class_folder_is_a_clear_error(tmp_path):
    touch(tmp_path, "melanoma", 2)
    touch(tmp_path, "nevus_typo", 2)
    with pytest.raises(D.DatasetError) as e:
        D.labelled_items(tmp_path, ["melanocytic nevus", "melanoma"])
    msg = str(e.value)
    assert "'melanocytic nevus'" in msg and "nevus_typo" in msg and "melanoma" in msg


def test_empty_class_is_a_clear_error(tmp_path):
    touch(tmp_path, "a", 2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(D.DatasetError, match="no images.*'b'"):
        D.labelled_items(tmp_path, ["a", "b"])


def test_folder_items_labelled_flat_and_mismatched(tmp_path):
    touch(tmp_path, "lab/Melanoma", 2)
    touch(tmp_path, "lab/melanocytic-nevus", 1)
    (tmp_path / "lab" / "dermatofibroma").mkdir()
    report = D.DataReport()
    items, labelled = D.folder_items(tmp_path / "lab", ["melanocytic nevus", "melanoma", "dermatofibroma"], report)
    assert labelled and sorted(it.label for it in items) == [0, 1, 1]
    assert any("'dermatofibroma' not evaluated" in n for n in report.notes)  # an empty class is reported
    touch(tmp_path, "flat", 3)
    items, labelled = D.folder_items(tmp_path / "flat", ["melanoma"])
    assert not labelled and [it.label for it in items] == [None] * 3
    touch(tmp_path, "bad/psoriasis", 1)
    with pytest.raises(D.DatasetError, match="psoriasis.*not classes of the model"):
        D.folder_items(tmp_path / "bad", ["melanocytic nevus", "melanoma"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DatasetError, match="no images"):
        D.folder_items(tmp_path / "empty", ["melanoma"])


def test_fold_is_the_sha256_of_the_file_name():
    h = int(hashlib.sha256(b"ISIC_0000001.jpg").hexdigest(), 16)
    assert D.fold_of("/any/where/ISIC_0000001.jpg", 5) == h % 5
    assert D.fold_of("ISIC_0000001.jpg", 5) == D.fold_of("/other/root/NV/ISIC_0000001.jpg", 5)


def test_validation_split_is_stratified_deterministic_and_disjoint(tmp_path):
    touch(tmp_path, "a", 20)
    touch(tmp_path, "b", 3)
    touch(tmp_path, "c", 1)
    items = D.labelled_items(tmp_path, ["a", "b", "c"])
    tr, va = D.split_validation(items, 0.1)
    assert sorted(it.label for it in va) == [0, 0, 1]  # round(2.0), at least one of b, none of a 1-image class
    assert {str(i.path) for i in tr}.isdisjoint(str(i.path) for i in va)
    assert len(tr) + len(va) == len(items)
    tr2, va2 = D.split_validation(list(reversed(items)), 0.1)
    assert sorted(str(i.path) for i in va2) == sorted(str(i.path) for i in va)
    assert D.split_validation(items, 0)[1] == []
    with pytest.raises(ValueError):
        D.split_validation(items, 1.0)


def test_shipped_splits_are_valid_and_documented():
    names = D.list_splits()
    assert {"isic4", "skin40", "nct-crc-task1", "nct-crc-task2", "nct-crc-task3"} <= set(names)
    held_out = []
    for n in names:
        spec = D.load_split(n)
        assert "OURS" in spec["provenance"]  # where the original splits are unknown, say so
        if n.startswith("nct-crc"):
            assert len(spec["id_classes"]) == 6 and len(spec["ood_classes"]) == 3
            held_out += [c["folder"] for c in spec["ood_classes"]]
    assert sorted(held_out) == sorted(["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"])
    isic = D.load_split("isic4")
    assert [c["folder"] for c in isic["id_classes"]] == ["NV", "MEL", "DF", "VASC"]
    assert D.split_folds(isic) == 5


def test_isic4_five_folds_partition_the_id_images(tmp_path):
    for c in ("NV", "MEL", "DF", "VASC"):
        touch(tmp_path, c, 30)
    for c in ("BCC", "AK", "BKL", "SCC"):
        touch(tmp_path, c, 4)
    plans = [D.plan_split("isic4", tmp_path, fold=f) for f in range(5)]
    tests = [{str(it.path) for it in p.test} for p in plans]
    assert sum(len(t) for t in tests) == 120 and len(set().union(*tests)) == 120  # each image tested once
    for p, t in zip(plans, tests):
        assert t.isdisjoint(str(it.path) for it in p.train)
        assert len(p.train) + len(p.test) == 120
        assert len(p.ood) == 16  # every OOD image in every fold
        assert p.class_names == ["melanocytic nevus", "melanoma", "dermatofibroma", "vascular lesion"]
        assert all(it.label is None for it in p.ood)
    with pytest.raises(D.DatasetError, match="choose one"):
        D.plan_split("isic4", tmp_path)
    with pytest.raises(D.DatasetError, match="out of range"):
        D.plan_split("isic4", tmp_path, fold=5)


def test_skin40_takes_the_40_largest_classes(tmp_path):
    for i in range(45):
        touch(tmp_path, f"class{i:02d}", 5 + (i % 7))  # sizes 5..11
    p = D.plan_split("skin40", tmp_path)
    sizes = {f"class{i:02d}": 5 + (i % 7) for i in range(45)}
    ranked = sorted(sizes, key=lambda k: (-sizes[k], k))
    assert sorted(p.class_folders) == sorted(ranked[:40])
    assert sorted(it.group for it in p.ood) == sorted(g for g in ranked[40:] for _ in range(sizes[g]))
    assert len(p.train) + len(p.test) == sum(sizes[k] for k in ranked[:40])


def test_nct_crc_folders_rule(tmp_path):
    for split, n in (("NCT-CRC-HE-100K", 4), ("CRC-VAL-HE-7K", 2)):
        for c in ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"):
            touch(tmp_path, f"{split}/{c}", n)
    p = D.plan_split("nct-crc-task1", tmp_path)
    assert len(p.train) == 6 * 4 and len(p.test) == 6 * 2 and len(p.ood) == 3 * 2
    assert {it.group for it in p.ood} == {"ADI", "LYM", "NORM"}
    assert all("CRC-VAL-HE-7K" in str(it.path) for it in p.test + p.ood)
    cs = D.class_set_for(p.class_names, p.preset)  # preset prompts for a subset of its classes
    assert cs.prompts[0] == "background of a histology slide"


def test_tasks_and_bad_split_files(tmp_path):
    touch(tmp_path, "tr/a", 2), touch(tmp_path, "tr/b", 2), touch(tmp_path, "te/a", 1), touch(tmp_path, "te/b", 1)
    spec = {
        "format": "hvl-split",
        "name": "t",
        "partition": {"rule": "folders", "train": "tr", "test": "te"},
        "tasks": [
            {"name": "one", "id_classes": ["a"], "ood_classes": ["b"]},
            {"name": "two", "id_classes": ["b"], "ood_classes": ["a"]},
        ],
    }
    f = tmp_path / "s.json"
    f.write_text(json.dumps(spec))
    p = D.plan_split(str(f), tmp_path, task="two")
    assert p.class_names == ["b"] and len(p.train) == 2 and {it.group for it in p.ood} == {"a"}
    with pytest.raises(D.DatasetError, match="choose one"):
        D.plan_split(str(f), tmp_path)
    f.write_text("{not json")
    with pytest.raises(D.DatasetError, match="not valid JSON"):
        D.load_split(str(f))
    f.write_text(json.dumps({"format": "something"}))
    with pytest.raises(D.DatasetError, match="not an HVL split"):
        D.load_split(str(f))
    with pytest.raises(D.DatasetError, match="no such file"):
        D.load_split("no-such-split")
