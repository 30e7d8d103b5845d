"""The declared stage graph: the same frames as the hand-written pipeline it replaced,
keys derived from the declarations, --explain naming the field that changed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derrumbe.cli import main
from tests.conftest import read_rgb

ROOT = Path(__file__).resolve().parents[1]
# The last commit of the hand-written pipeline (pipeline._run_locked, shot_keys by hand):
# main as merged into this branch (debris look, scale, dust from crushed mass, round grit).
# Each merge of main that changes a stage body moves it to that main's commit.
REF = "30094b9"
# The stage bodies: while none differs from REF's, REF's frames are the reference for the
# runner. (Merges that change a stage's look make REF's frames differ for that reason
# alone; the test then says so and skips, and the cluster tests hold the runner to the
# in-process one from there on.)
BODIES = ["derrumbe/kernels", "derrumbe/engines", "derrumbe/colour.py", "derrumbe/materials.py"] + [
    f"derrumbe/stages/{m}.py" for m in ("camera", "cleanplate", "collapse_styles", "comp", "dust", "dust_render",
                                        "dust_sources", "fracture", "holdouts", "matte", "moving_holdouts",
                                        "particles", "scale", "simulate", "structure", "debris_mesh",
                                        "debris_shaders", "facade", "keystone", "lighting", "windows")]
TINY = ["--size", "160", "--duration", "1", "--start", "0.3", "--fps", "12", "--pieces", "300", "--shake", "0", "-q"]


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def _reference_tree() -> Path:
    if shutil.which("git") is None or _git("cat-file", "-e", f"{REF}^{{commit}}").returncode != 0:
        pytest.skip(f"the reference commit {REF} is not in this clone")
    if _git("diff", "--quiet", REF, "--", *BODIES).returncode != 0:
        pytest.skip(f"stage code changed since {REF}: its frames are no longer the reference")
    # Kept between runs (numba caches its kernels beside their sources).
    tree = ROOT / ".pytest_cache" / f"derrumbe-{REF}"
    if not (tree / "derrumbe" / "pipeline.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        arch = subprocess.run(["git", "archive", REF, "derrumbe"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=arch, check=True)
    return tree


def test_the_graph_renders_the_frames_of_the_hand_written_pipeline(demo_files, tmp_path):
    tree = _reference_tree()
    d, p = demo_files
    args = ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "--holdout", str(d / "holdout.png"),
            "--exr"] + TINY
    env = dict(os.environ, PYTHONPATH=str(tree))
    old = tmp_path / "old"
    r = subprocess.run([sys.executable, "-c", "import sys, derrumbe.cli as c; assert 'pytest_cache' in c.__file__; "
                        "sys.exit(c.main(sys.argv[1:]))", *args, "-o", str(old)], env=env, capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)    # not the repository: its derrumbe/ comes first
    assert r.returncode == 0, r.stderr
    new = tmp_path / "new"
    assert main(args + ["-o", str(new)]) == 0
    a, b = json.loads((old / "manifest.json").read_text()), json.loads((new / "manifest.json").read_text())
    assert a["frames"] == b["frames"] and len(a["frames"]) == 12
    for f in a["frames"]:
        assert (old / f).read_bytes() == (new / f).read_bytes(), f
    # The EXRs too (every layer, depth and vectors), and the movie made from the frames.
    for f in a["exr"]["files"]:
        assert (old / f).read_bytes() == (new / f).read_bytes(), f
    assert (old / a["movie"]).read_bytes() == (new / b["movie"]).read_bytes()
    assert a["files"] == b["files"]


def test_every_key_comes_from_the_declaration():
    """A stage's key changes with each spec field it declares and with nothing else."""
    from derrumbe.pipeline import shot_keys
    from derrumbe.spec import ShotSpec
    spec = ShotSpec(plate="p.png", box=[0, 0, 10, 10], fps=24, duration=2.0)
    digests = dict(plate="x", mask=None, holdout=None)
    base = shot_keys(spec, digests, (64, 36))
    everything = set(base)
    collapse = {"fracture", "simulate", "particles", "dust", "frames"}
    # What re-runs after each change (the README's table), written out, not derived.
    expected = {"grain": {"frames"}, "dust_color": {"frames"}, "shutter": {"frames"}, "size": {"view", "cleanplate",
                "lighting", "frames"}, "wind": {"dust", "frames"}, "start": collapse - {"fracture"},
                "style": collapse, "material": collapse | {"material"}, "pieces": collapse,
                "focal_mm": everything - {"matte", "windows"}, "seed": everything, "no_auto_holdouts": everything}
    values = {"grain": 0.5, "dust_color": [100, 100, 100], "shutter": 90.0, "size": "32", "wind": [5.0, 0.0],
              "start": 1.0, "style": "topple", "material": "masonry", "pieces": 900, "focal_mm": 35.0, "seed": 2,
              "no_auto_holdouts": True}
    for field, value in values.items():
        k = shot_keys(ShotSpec(**{**spec.__dict__, field: value}), digests, (64, 36))
        assert {s for s in k if k[s] != base[s]} == expected[field], field
    # A file's content, not its name.
    assert shot_keys(spec, dict(digests, plate="y"), (64, 36))["matte"] != base["matte"]


def test_explain_names_the_field_that_changed(demo_files, tmp_path, capsys):
    d, p = demo_files
    args = ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "-o", str(tmp_path / "s"), "--dust",
            "0"] + TINY
    assert main(args) == 0
    capsys.readouterr()
    assert main(args + ["--material", "masonry", "--explain"]) == 0
    said = capsys.readouterr().out
    assert "fracture: will run (upstream changed: material (changed: material auto -> masonry))" in said
    assert "matte: cached" in said and "camera: cached" in said
    assert main(args + ["--wind", "4,0", "--explain"]) == 0          # no dust: the wind changes nothing
    said = capsys.readouterr().out
    assert "frames 1001-1012 as shot_v001.####.png: 12 of 12 reused, 0 to render" in said
    assert main(args + ["--grain", "0.25", "--explain"]) == 0
    assert "to render (changed: grain 1.0 -> 0.25)" in capsys.readouterr().out
