"""Wedges and batches: variants share the stages they have in common; a labelled contact
sheet and a side-by-side movie; a batch's summary table."""

import csv
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from derrumbe.cli import main
from tests.conftest import read_rgb

TINY = dict(size="160", duration=1.0, start=0.3, fps=12, pieces=300, shake=0.0)


@pytest.fixture(scope="module")
def spec_file(demo_files, tmp_path_factory):
    import tomli_w
    d, p = demo_files
    f = tmp_path_factory.mktemp("wedge") / "shot.toml"
    f.write_text(tomli_w.dumps(dict(plate=str(d / "plate.png"), box=list(p.box), **TINY)))
    return f


def _stages(v):
    return json.loads((v / "manifest.json").read_text())["cache"]["stages"]


def test_a_wedge_shares_its_simulation_between_variants_that_differ_downstream(spec_file, tmp_path):
    out = tmp_path / "w"
    assert main(["wedge", str(spec_file), "--vary", "wind=1:90,6:0", "--vary", "grain=0,1.5", "-o", str(out),
                 "-q"]) == 0
    info = json.loads((out / "wedge.json").read_text())
    labels = [v["label"] for v in info["variants"]]
    assert labels == ["wind=1.0:90.0 grain=0.0", "wind=1.0:90.0 grain=1.5", "wind=6.0:0.0 grain=0.0",
                      "wind=6.0:0.0 grain=1.5"]
    dirs = [out / v["folder"] for v in info["variants"]]
    collapse = ("matte", "camera", "fracture", "simulate", "particles")
    st = [_stages(d) for d in dirs]
    assert all(st[0][s] == "ran" for s in collapse + ("dust",))
    # The grain is downstream of everything: the second variant computes no stage.
    assert all(st[1][s] == "cached" for s in collapse + ("dust", "cleanplate"))
    # The wind is downstream of the collapse: the dust again, the simulation not.
    assert all(st[2][s] == "cached" for s in collapse) and st[2]["dust"] == "ran"
    assert all(st[3][s] == "cached" for s in collapse + ("dust",))
    cache = out / ".derrumbe"
    assert len(list((cache / "stages" / "simulate").glob("*.pkl"))) == 1
    assert len([p for p in (cache / "dust").iterdir() if p.is_dir()]) == 2
    # A shared cache changes no pixel: the first variant is the shot rendered on its own.
    alone = tmp_path / "alone"
    assert main(["shot", "--spec", str(spec_file), "--wind", "1,90", "--grain", "0", "-o", str(alone), "-q"]) == 0
    m = json.loads((alone / "manifest.json").read_text())
    for f in m["frames"]:
        assert (alone / f).read_bytes() == (dirs[0] / f).read_bytes(), f
    # The grain and the wind show: the variants' last frames differ.
    last = m["frames"][-1]
    assert not np.array_equal(read_rgb(dirs[0] / last), read_rgb(dirs[1] / last))
    assert not np.array_equal(read_rgb(dirs[0] / last), read_rgb(dirs[2] / last))

    # The contact sheet: the four variants side by side at 60 % of the shot, each labelled
    # on a dark band over its own frame.
    sheet = read_rgb(out / "wedge_sheet.png")
    tile_h = 480 * 90 // 160
    assert sheet.shape == (tile_h, 4 * 480, 3)
    frame = cv2.resize(read_rgb(dirs[2] / m["frames"][int(len(m["frames"]) * 0.6)]), (480, tile_h),
                       interpolation=cv2.INTER_AREA)
    tile = sheet[:, 2 * 480:3 * 480]
    band = 480 // 18
    assert np.array_equal(tile[band + 1:], frame[band + 1:])
    assert tile[:band].mean() < 60 and (tile[:band] > 200).any()          # light text on a dark band
    # The review movie: every frame, the four variants in a row.
    with av.open(str(out / "wedge_review.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == len(m["frames"]) and frames[0].shape[1] == 4 * 480


def test_a_wedge_on_a_cluster_runs_each_shared_stage_once(spec_file, tmp_path):
    """Two variants differing in the grain on a LocalCluster of 2 workers: one task for
    each of the 7 cached stages (matte to dust, the clean plate), not one a variant, and
    the frames of the local wedge."""
    pytest.importorskip("distributed", reason="the farm extra")
    local, cl = tmp_path / "local", tmp_path / "cluster"
    vary = ["--vary", "grain=0,1.5"]
    assert main(["wedge", str(spec_file), *vary, "-o", str(local), "-q"]) == 0
    assert main(["wedge", str(spec_file), *vary, "-o", str(cl), "-q", "--scheduler", "local", "--workers", "2"]) == 0
    info = json.loads((cl / "wedge.json").read_text())
    for v in info["variants"]:
        m = json.loads((cl / v["folder"] / "manifest.json").read_text())
        assert m["runner"]["kind"] == "dask" and m["runner"]["stage_tasks_in_run"] == 7
        for f in m["frames"]:
            assert (cl / v["folder"] / f).read_bytes() == (local / v["folder"] / f).read_bytes(), f


def test_bad_vary_is_one_line(spec_file, tmp_path, capsys):
    for bad in ("seed", "seed=1..", "pieces=10", "style=melt", "plate=x.png", "seed=1..500"):
        assert main(["wedge", str(spec_file), "--vary", bad, "-o", str(tmp_path / "w"), "-q"]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("derrumbe: error:"), (bad, err)


def test_a_batch_renders_its_shots_and_a_summary_table(spec_file, demo_files, tmp_path):
    d, p = demo_files
    b = tmp_path / "shots.toml"
    b.write_text(f"""[defaults]
box = {list(p.box)}
size = "160"
duration = 1.0
fps = 12
pieces = 300
dust = 0.0

[[shot]]
out = "a"
name = "sh010"
plate = "{d / 'plate.png'}"

[[shot]]
out = "b"
name = "sh020"
plate = "missing.png"
""")
    assert main(["batch", str(b), "-q"]) == 1          # one shot failed: the batch says so
    rows = list(csv.DictReader((tmp_path / "batch_summary.csv").open()))
    assert [r["shot"] for r in rows] == ["sh010", "sh020"]
    assert rows[0]["status"] == "done" and float(rows[0]["seconds"]) > 0 and rows[0]["frames"] == "12"
    assert (tmp_path / "a" / "sh010_v001.mp4").exists() and rows[0]["movie"].endswith("sh010_v001.mp4")
    assert rows[0]["manifest"].endswith("sh010_v001.manifest.json") and Path(rows[0]["manifest"]).is_file()
    assert rows[1]["status"].startswith("failed:") and "missing.png" in rows[1]["status"]
    md = (tmp_path / "batch_summary.md").read_text()
    assert "| sh010 | " in md and "| sh020 | " in md
