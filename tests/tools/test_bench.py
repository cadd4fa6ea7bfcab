"""hvl bench: the JSON contract, the summary, and the helpers' arithmetic. No timed assertions:
only structure, sanity (ratios > 0, finite) and what the checks must find."""

import json
import math
import time

import numpy as np
import pytest

from hvl_tools.bench import BenchSettings, report, run_bench, settings, timing


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick CLI run (tiny-clip-random, n=2), shared by the tests below."""
    from hvl_tools.cli import main

    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out), "--name", "quick"]) == 0
    return out, json.loads((out / "quick.json").read_text())


def test_json_has_the_contract_keys(quick_run):
    _, r = quick_run
    for key in settings.REQUIRED_KEYS:
        assert key in r, key
    assert r["schema"] == settings.SCHEMA
    assert r["device"].startswith("cpu: ")
    assert r["partial"] is False
    assert r["headline"] == {"backbone": "tiny-clip-random", "n": 2}
    for key in (
        "hvl_over_encoder",
        "hvl_over_single_scale",
        "cached_train_speedup",
        "threshold_update_ms",
        "peak_memory_mb",
        "train_100_epochs_s",
        "score_over_encoder",
        "score_images_per_s",
    ):
        assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (key, r[key])
    assert set(r["targets_met"]) == {"hvl_over_encoder", "cached_train_speedup", "score_over_encoder"}
    assert r["targets_met"]["hvl_over_encoder"] == (r["hvl_over_encoder"] <= settings.TARGET_HVL_OVER_ENCODER)
    assert r["targets_met"]["score_over_encoder"] == (r["score_over_encoder"] >= settings.TARGET_SCORE_OVER_ENCODER)
    sc = r["runs"][0]["score"]
    assert sc["images"] == 4 and sc["score_over_encoder"] == r["score_over_encoder"]
    assert sc["score_images_per_s"] == pytest.approx(4 / sc["raw_s"]["score"][0], rel=0.01)  # one round


def test_run_entries_are_consistent(quick_run):
    _, r = quick_run
    (run,) = r["runs"]
    assert (run["backbone"], run["n"], run["embed_dim"]) == ("tiny-clip-random", 2, 64)
    lat = run["latency"]
    assert lat["crops"] == 21
    assert set(lat["ms"]) == {"hvl_pipeline", "encoder", "single_scale_forward", "single_scale_pipeline"}
    assert all(len(v) == r["settings"]["repeats"] for v in lat["raw_s"].values())
    # the headline ratio is the median of per-round ratios of the raw times
    raw = lat["raw_s"]
    expect = float(np.median([a / b for a, b in zip(raw["hvl_pipeline"], raw["encoder"])]))
    assert lat["hvl_over_encoder"] == pytest.approx(expect, rel=1e-3)
    assert run["hvl_over_encoder"] == r["hvl_over_encoder"] == lat["hvl_over_encoder"]
    assert run["peak_memory_mb"] == run["memory_single"]["rss_peak_mb"] >= run["memory_single"]["rss_before_mb"] > 0
    tp = run["throughput"]
    assert tp["images"] == 2 and tp["batch_size"] == 2
    assert tp["predict_images_per_s"] > 0 and tp["features_images_per_s"] > 0 and tp["encoder_images_per_s"] > 0
    tr = run["training"]
    assert tr["trainer"] == "hvl_tools.train.train_head"
    assert tr["train_images"] == 64 and tr["dim"] == 64
    raw = tr["raw_s"]
    assert len(raw["cached_epoch"]) == len(raw["e2e_epoch"]) == tr["rounds"] == r["settings"]["train_epochs"]
    expect = float(np.median([e / c for e, c in zip(raw["e2e_epoch"], raw["cached_epoch"])]))
    assert tr["cached_train_speedup"] == pytest.approx(expect, rel=0.02)
    assert tr["cached_epoch_minimal_loop_s"] > 0  # the headline n also times the bare loop
    assert "extrapolated" in tr["train_100_epochs_note"]
    assert tr["train_100_epochs_s"] == pytest.approx(tr["cached_epoch_s"] * 100, rel=0.01)


def test_structural_checks_hold(quick_run):
    """All crops of an image in one encoder call, a batch in ceil(B·M/256) calls, text cached,
    inference mode, frozen encoder."""
    _, r = quick_run
    c = r["runs"][0]["checks"]
    assert c["encoder_calls_per_image"] == 1
    assert c["encoder_calls_per_batch"] == c["encoder_calls_per_batch_expected"] == 1
    assert c["text_encoder_calls_on_reuse"] == 0
    assert c["encoder_output_is_inference_tensor"] is True
    assert c["encoder_frozen"] is True


def test_markdown_summary_is_written(quick_run):
    out, r = quick_run
    md = (out / "quick.md").read_text()
    assert md.startswith("# HVL benchmark — cpu: ")
    assert "## Headline (tiny-clip-random, n=2)" in md
    raw = r["runs"][0]["latency"]["raw_s"]
    rs = [a / b for a, b in zip(raw["hvl_pipeline"], raw["encoder"])]
    assert f"| {r['hvl_over_encoder']:.3f} ({min(rs):.2f}–{max(rs):.2f}) |" in md
    for section in ("## Latency per image", "## Throughput", "## Training", "## Checks"):
        assert section in md
    assert md == report.render_markdown(r)


def test_markdown_explains_a_missed_target(quick_run):
    _, r = quick_run
    r = json.loads(json.dumps(r))
    run = r["runs"][0]
    run["hvl_over_encoder"] = r["hvl_over_encoder"] = 1.5
    r["targets_met"]["hvl_over_encoder"] = False
    md = report.render_markdown(r)
    assert "| 1.500 (" in md and " | ≤ 1.10 ❌ |" in md
    assert "the time outside the encoder goes to" in md
    run["hvl_over_encoder"] = r["hvl_over_encoder"] = 1.05
    r["targets_met"]["hvl_over_encoder"] = True
    md = report.render_markdown(r)
    assert "| 1.050 (" in md and " | ≤ 1.10 ✅ |" in md and "the time outside the encoder goes to" not in md


def test_ratio_median_is_the_median_of_per_round_ratios():
    assert timing.ratio_median([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0
    assert timing.ratio_median([3.0, 1.0], [1.0, 1.0]) == 2.0  # even count: mean of the middle two
    # not the ratio of medians: median(a)/median(b) would be 10/5 = 2
    assert timing.ratio_median([1.0, 10.0, 100.0], [1.0, 5.0, 10.0]) == 2.0
    assert timing.ratio_median([1.0, 12.0, 100.0], [1.0, 5.0, 10.0]) == 2.4


def test_interleaved_rotates_the_order_and_warms_up():
    import torch

    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    t = timing.interleaved(fns, repeats=3, warmup=1, device=torch.device("cpu"))
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab"
    assert {k: len(v) for k, v in t.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(x >= 0 for v in t.values() for x in v)


def test_count_calls_counts_and_restores():
    class Thing:
        def f(self, x):
            return x + 1

    obj = Thing()
    with timing.count_calls(obj, "f") as box:
        assert obj.f(1) == 2 and obj.f(2) == 3
    assert box["calls"] == 2
    assert "f" not in obj.__dict__ and obj.f(5) == 6


def test_peak_rss_sees_an_allocation():
    import mmap

    with timing.PeakRSS() as m:
        # fresh anonymous pages, every one touched: the allocator cannot serve them from memory it kept
        block = mmap.mmap(-1, 150 * 2**20)
        block.write(b"\x01" * len(block))
        time.sleep(0.5)  # held long enough for the sampler thread to run on a loaded machine
        block.close()
    assert m.peak - m.before > 100


def test_synthetic_images_are_deterministic(tmp_path):
    from hvl_core import load_image

    a = timing.synthetic_images(tmp_path / "a", 2, (64, 48), seed=3)
    b = timing.synthetic_images(tmp_path / "b", 2, (64, 48), seed=3)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != a[1].read_bytes()
    assert load_image(a[0]).image.size == (64, 48)


def test_settings_resolve_by_device_and_refuse_nonsense():
    import torch

    cpu = BenchSettings().resolved(torch.device("cpu"))
    gpu = BenchSettings().resolved(torch.device("cuda"))
    assert (cpu.images, cpu.batch_size, cpu.full_train, cpu.e2e_images, cpu.train_epochs) == (2, 2, False, 2, 2)
    assert (gpu.images, gpu.batch_size, gpu.full_train, gpu.e2e_images, gpu.train_epochs) == (256, 32, True, 32, 3)
    assert BenchSettings(images=7).resolved(torch.device("cuda")).images == 7
    with pytest.raises(ValueError, match="n must be >= 1"):
        BenchSettings(ns=[0]).validate()
    with pytest.raises(ValueError, match="repeats"):
        BenchSettings(repeats=0).validate()
    with pytest.raises(ValueError, match="at least one backbone"):
        BenchSettings(backbones=[]).validate()


def test_cli_refuses_bad_options(capsys):
    from hvl_tools.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--quick", "--n", "0", "--out", "unused"])
    assert e.value.code == 2
    assert "n must be >= 1" in capsys.readouterr().err


def test_unknown_backbone_is_reported_not_crashed():
    s = BenchSettings.quick_settings(backbones=["no-such-backbone"])
    with pytest.raises(ValueError, match="no backbone could be benchmarked: unknown backbone 'no-such-backbone'"):
        run_bench(s)


def test_render_rewrites_the_summary_from_json(quick_run, tmp_path, capsys):
    from hvl_tools.cli import main

    out, r = quick_run
    js = tmp_path / "copy.json"
    js.write_text(json.dumps(r))
    assert main(["bench", "--render", str(js)]) == 0
    assert (tmp_path / "copy.md").read_text() == (out / "quick.md").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    with pytest.raises(SystemExit) as e:
        main(["bench", "--render", str(bad)])
    assert e.value.code == 2 and "not an hvl bench result" in capsys.readouterr().err
