"""hvl score --engine ray: Ray Data on a private local instance (127.0.0.1, 2 CPUs, no dashboard)
gives the same scores as the local engine."""

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'hvl-demo[ray]'")

from hvl_tools.bench.timing import synthetic_images  # noqa: E402
from hvl_tools.score import ModelSpec, score_archive  # noqa: E402
from hvl_tools.score.results import read_scores  # noqa: E402

SPEC = ModelSpec(backbone="tiny-clip-random", preset="dermatology-isic4", device="cpu")


@pytest.mark.slow
def test_ray_and_local_engines_give_the_same_scores(tmp_path, tiny_model):
    synthetic_images(tmp_path / "in", 7, (96, 80), seed=2)
    (tmp_path / "in" / "notes.png").write_text("not an image")
    local = score_archive(
        [str(tmp_path / "in")], tmp_path / "local", SPEC, batch_size=3, workers=0, progress=False, model=tiny_model
    )
    remote = score_archive(
        [str(tmp_path / "in")],
        tmp_path / "ray",
        SPEC,
        engine="ray",
        batch_size=3,
        progress=False,
        ray_options={"num_cpus": 2, "actors": 1},
    )
    assert not ray.is_initialized()  # the private instance is shut down
    a = {r["path"]: r for r in read_scores(tmp_path / "local" / "scores.csv")}
    b = {r["path"]: r for r in read_scores(tmp_path / "ray" / "scores.csv")}
    assert sorted(a) == sorted(b) and len(a) == 8
    for p in a:
        assert (a[p]["label"], a[p]["known"], a[p]["error"]) == (b[p]["label"], b[p]["known"], b[p]["error"])
        if not a[p]["error"]:
            assert a[p]["msp"] == b[p]["msp"] and a[p]["score"] == b[p]["score"]
    assert remote["run"]["engine"] == "ray" and (remote["scored"], remote["errors"]) == (local["scored"], 1) == (7, 1)
    assert remote["model"] == local["model"]  # same model, same settings, same decoder


@pytest.mark.slow
def test_the_private_instance_listens_on_loopback_only():
    import re
    import subprocess

    import psutil

    from hvl_tools.score.ray_engine import ray_instance

    with ray_instance(None, num_cpus=1) as r:
        assert [n["NodeManagerAddress"] for n in r.nodes()] == ["127.0.0.1"]
        ours = {p.pid for p in psutil.Process().children(recursive=True)} | {psutil.Process().pid}
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
        mine = [line for line in listening if ours & {int(x) for x in re.findall(r"pid=(\d+)", line)}]
        assert len(mine) >= 3  # GCS, raylet, workers
        local = [line.split()[3] for line in mine]
        assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in local), local
    assert not r.is_initialized()
