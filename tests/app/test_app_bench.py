"""``bench/app_bench.py``: merges its keys into an existing bench.json, and what it measures is
the app's handlers (a K change redraws only the ΔH map), the batch tab, and ``app.py`` started
in a process of its own."""

import json

import pytest

from bench import app_bench as bench


@pytest.mark.slow
def test_bench_merges_its_keys_and_measures_the_handlers(tmp_path, capsys):
    (tmp_path / "bench.json").write_text(json.dumps({"hvl_over_encoder": 1.01}))
    assert (
        bench.main(
            [
                "--out",
                str(tmp_path),
                "--backbone",
                "tiny-clip-random",
                "--repeats",
                "1",
                "--redecides",
                "2",
                "--starts",
                "2",
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["hvl_over_encoder"] == 1.01  # what was there stays
    assert data["app_redecide_ms"] > 0 and data["upload_to_decision_over_encoder"] > 0
    r = data["app"]["results"][0]
    assert r["backbone"] == "tiny-clip-random" and r["crops"] == 21
    assert r["redecide_redraws"] == ["gain_map"]  # a K change redraws the ΔH map alone
    assert r["redecide_head_ms"] > 0 and r["upload_draw_ms"] > 0  # both parts measured (no timing is compared)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == set(bench.GOALS)  # every goal has its figure, the start-up ones included
    assert data["batch_redecide_ms"] > 0 and r["batch_size"] == 20
    assert data["batch_per_image_over_single"] > 0 and r["batch_per_image_ms"] > 0
    # app.py started in a process of its own, served, and answered a first /predict
    assert data["start_to_serve_s"] > 0 and r["first_analysis_s"] > 0 and r["first_analysis_encoder_s"] > 0
    assert r["first_verdict"] in ("known", "unknown") and data["first_analysis_over_encoder"] > 0
    assert r["later_analysis_s"] > 0 and all(x["first_over_later"] > 0 for x in r["starts"])
    assert len(r["starts"]) == 2 and min(x["start_to_serve_s"] for x in r["starts"]) <= r["start_to_serve_s"]
    md = (tmp_path / "app.md").read_text()
    assert "K change" in md and "`python app.py` → page answers" in md
