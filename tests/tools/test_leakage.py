"""Benchmarks refuse a backbone that already knows the split's OOD classes (hvl_tools.leakage)."""

import pytest

from hvl_tools.data import DatasetError
from hvl_tools.leakage import check_overlap, find_overlap, parse_negatives, with_negatives


class _Classifier:
    """A label-only backbone like medmnist-densenet121: resolves names (aliases too) to its labels."""

    name = "toy-classifier"
    labels = ("adipose", "lymphocytes", "melanoma", "basal cell carcinoma")
    aliases = {"adi": 0, "bcc": 3}

    def indices(self, names):
        out = []
        for n in names:
            k = n.strip().lower()
            if k in self.aliases:
                out.append(self.aliases[k])
            elif k in self.labels:
                out.append(self.labels.index(k))
            else:
                raise ValueError(f"no class {n!r}")
        return out


class _Clip:
    name = "toy-clip"  # no labels, no name resolution


def test_ood_classes_among_negatives_and_training_classes_are_found():
    ov = find_overlap(_Classifier(), ["ADI", "debris", "BCC"], negatives=["adipose", "lymphocytes"])
    assert ov == {"negatives": ["ADI"], "training": ["ADI", "BCC"]}
    assert find_overlap(_Classifier(), ["debris"], negatives=["adipose"]) == {"negatives": [], "training": []}


def test_a_text_backbone_has_no_training_classes_but_negatives_still_count():
    ov = find_overlap(_Clip(), ["Background", "tumour"], negatives=["background"])
    assert ov == {"negatives": ["Background"], "training": []}


def test_overlap_is_refused_by_default_and_marked_when_allowed():
    with pytest.raises(DatasetError, match=r"refusing to benchmark.*\['BCC'\].*--allow-overlap"):
        check_overlap(_Classifier(), ["BCC"], negatives=[])
    said = []
    leak = check_overlap(_Classifier(), ["BCC"], negatives=[], allow=True, log=said.append)
    assert leak["training"] == ["BCC"] and "NOT A FAIR BENCHMARK" in leak["message"]
    assert said and said[0].startswith("WARNING — NOT A FAIR BENCHMARK")
    assert check_overlap(_Classifier(), ["debris"], negatives=[]) is None


def test_medmnist_backbone_is_refused_on_the_shipped_nct_crc_task(tmp_path):
    """The real case: nct-crc-task1 holds out adipose, lymphocytes, normal mucosa — labels the
    medmnist network was trained on and, by default, negative classes of every softmax."""
    from hvl_core.backbones.medmnist import MedMNISTDenseNet121

    bb = MedMNISTDenseNet121.__new__(MedMNISTDenseNet121)  # name resolution only: no weights needed
    ood = ["adipose", "lymphocytes", "normal colon mucosa"]
    known = [
        "debris",
        "mucus",
        "smooth muscle",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
        "background",
    ]
    ov = find_overlap(bb, ood, negatives=bb.negative_classes(known))
    assert ov["negatives"] == ood and ov["training"] == ood
    with pytest.raises(DatasetError, match="--negatives none"):
        check_overlap(bb, ood, bb.negative_classes(known))
    # without negatives the training classes still leak
    assert find_overlap(bb, ood, negatives=[])["training"] == ood


def test_negatives_option():
    assert parse_negatives(None) == "auto" and parse_negatives("AUTO") == "auto"
    assert parse_negatives("none") == "none"
    assert parse_negatives("debris, mucus") == ["debris", "mucus"]
    with pytest.raises(DatasetError):
        parse_negatives(" , ")
    from hvl_core.presets import class_set_from_names

    cs = class_set_from_names(["a", "b"])
    assert with_negatives(cs, None, "none")[1] == {"num_negatives": 0}
    cs2, opts = with_negatives(cs, None, ["c"])
    assert cs2.negatives == ("c",) and opts == {"num_negatives": 1}
    with pytest.raises(DatasetError, match="known classes"):
        with_negatives(cs, None, ["A"])


def test_explicit_negatives_reach_the_model(tiny_backbone):
    from hvl_core.presets import class_set_from_names
    from hvl_tools.leakage import build_model

    m = build_model(tiny_backbone, class_set_from_names(["nevus", "melanoma"]), ["background"], device="cpu")
    assert m.classes.negatives == ("background",) and m.head.config.num_negatives == 1
    assert m.text.shape[0] == 3


def test_compare_refuses_medmnist_style_overlap_on_the_command_line(synth, tmp_path, capsys):
    """The synthetic split's OOD classes are named after ISIC classes; a backbone whose negative
    classes include them is refused before anything is trained."""
    from hvl_tools.cli import main

    rc = None
    with pytest.raises(SystemExit) as e:
        rc = main(
            [
                "compare",
                "--split",
                str(synth / "split.json"),
                "--data-root",
                str(synth),
                "--backbone",
                "tiny-clip-random",
                "--negatives",
                "basal cell carcinoma",
                "--variants",
                "mcm",
                "--out",
                str(tmp_path / "c"),
                "--no-cache",
                "--no-progress",
            ]
        )
    assert rc is None and e.value.code == 2
    err = capsys.readouterr().err
    assert "refusing to benchmark" in err and "basal cell carcinoma" in err


@pytest.mark.slow
def test_compare_with_allow_overlap_marks_every_table(synth, tmp_path):
    import json

    from hvl_tools.cli import main

    out = tmp_path / "c"
    assert (
        main(
            [
                "compare",
                "--split",
                str(synth / "split.json"),
                "--data-root",
                str(synth),
                "--backbone",
                "tiny-clip-random",
                "--negatives",
                "basal cell carcinoma",
                "--allow-overlap",
                "--variants",
                "mcm",
                "zero-shot-hvl",
                "--metric-convention",
                "mcm",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--no-progress",
            ]
        )
        == 0
    )
    md = (out / "summary.md").read_text()
    assert "NOT A FAIR BENCHMARK" in md and "`mcm` convention" in md and "MCM at T = 1" in md
    doc = json.loads((out / "summary.json").read_text())
    assert doc["negatives"] == ["basal cell carcinoma"] and doc["convention"] == "mcm" and doc["mcm_tau"] == 1.0
    run = next(iter(doc["overlap"].values()))
    assert run["negatives"] == ["basal cell carcinoma"]
    m = json.loads(next(out.rglob("mcm/metrics.json")).read_text())
    assert m["convention"] == "mcm" and m["head_config"]["tau"] == 1.0 and m["head_config"]["num_negatives"] == 1


def test_evaluate_names_its_convention_and_uses_mcm_temperature(synth, tmp_path):
    import json

    from hvl_tools.cli import main

    out = tmp_path / "e"
    assert (
        main(
            [
                "evaluate",
                "--backbone",
                "tiny-clip-random",
                "--device",
                "cpu",
                "--split",
                str(synth / "split.json"),
                "--data-root",
                str(synth),
                "--method",
                "mcm",
                "--metric-convention",
                "openood",
                "--out",
                str(out),
                "--no-plots",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--no-progress",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["convention"] == "openood" and m["head_config"]["tau"] == 1.0 and m["overlap"] is None
    assert "`openood` convention" in (out / "report.md").read_text()
