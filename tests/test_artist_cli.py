"""The command line as a first-time artist meets it (issue 19): a box past the plate's edge,
versions that sit side by side, frame ranges, grouped help with named values, suggestions
for mistyped names, the estimates of --explain, and the time left of every stage."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from derrumbe import eta
from derrumbe.cli import main
from derrumbe.spec import ShotSpec, resolve_timing
from tests.conftest import SHARED_PLATES

# A few seconds a render: 160 px, 1 s at 12 fps, the fewest pieces, no dust.
QUICK = ["--size", "160", "--duration", "1", "--start", "0.3", "--fps", "12", "--pieces", "200", "--dust", "0",
         "--shake", "0"]


def _cli(args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "derrumbe"] + args, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def _box(p, dx1=0):
    x0, y0, x1, y1 = p.box
    return f"{x0},{y0},{x1 + dx1},{y1}"


def _plate_w(p):
    return p.srgb.shape[1]


# ---- the box against the plate's edges ---------------------------------------------------------

def test_a_box_far_past_the_plate_is_one_line_and_exit_2(demo_files, tmp_path):
    """The issue's case: a box running 720 px past the right edge was clamped in silence
    and rendered. Now it stops before anything is written, saying which edge and by how much."""
    d, p = demo_files
    w = _plate_w(p)
    out = tmp_path / "out"
    r = _cli(["shot", str(d / "plate.png"), "--box", f"130,0,{w + 720},650", "-o", str(out)] + QUICK)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "outside" in lines[0] and "right edge by 720 px" in lines[0] and "top-left" in lines[0]
    assert not list(out.glob("*.png")) and not (out / "manifest.json").exists()


def test_a_box_a_few_pixels_over_is_clamped_with_a_warning(demo_files, tmp_path):
    d, p = demo_files
    w = _plate_w(p)
    r = _cli(["shot", str(d / "plate.png"), "--box", _box(p, w - p.box[2] + 3), "-o", str(tmp_path / "o"), "--explain"]
             + QUICK)
    assert r.returncode == 0, r.stderr
    assert f"warning: --box {p.box[0]},{p.box[1]},{w + 3},{p.box[3]} clamped to {p.box[0]},{p.box[1]},{w},{p.box[3]}" \
        in r.stdout and "3 px past the right edge" in r.stdout


def test_masks_outside_the_plate_are_errors(demo_files, tmp_path):
    import cv2
    import numpy as np
    d, p = demo_files
    h, w = p.srgb.shape[:2]
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((h, w + 40), 255, np.uint8))
    for mask in ("--mask", "--holdout"):
        args = ["shot", str(d / "plate.png"), mask, str(tmp_path / "wide.png"), "-o", str(tmp_path / "o")] + QUICK
        if mask == "--holdout":
            args += ["--box", _box(p)]
        r = _cli(args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"{w + 40}x{h}" in r.stderr and f"{w}x{h}" in r.stderr


# ---- versions side by side ------------------------------------------------------------------------

def _digests(out: Path, stem: str) -> dict:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob(f"{stem}*") if p.is_file()}


def test_versions_sit_side_by_side_and_never_overwrite(demo_files, tmp_path):
    """v1 with every output, then v2 of a changed shot into the same folder: v1's frames,
    passes, EXRs, movies, USD and manifest are byte for byte what they were."""
    d, p = demo_files
    out = tmp_path / "shot"
    base = ["shot", str(d / "plate.png"), "--box", _box(p), "-o", str(out), "--name", "tower", "-q"] + QUICK
    assert main(base + ["--passes", "--exr", "--usd", "--prores"]) == 0
    v1 = _digests(out, "tower_v001")
    m1 = json.loads((out / "tower_v001.manifest.json").read_text())
    n = len(m1["frames"])
    assert m1["frames"] == [f"tower_v001.{1001 + i}.png" for i in range(n)] and m1["stem"] == "tower_v001"
    for name in ("tower_v001.mp4", "tower_v001.mov", "tower_v001.usdc", "exr/tower_v001.1001.exr",
                 "passes/tower_v001.debris.1001.png", "passes/tower_v001.holdout.1001.png"):
        assert name in v1, name
    assert m1["movie"] == "tower_v001.mp4" and m1["usd"]["file"] == "tower_v001.usdc"

    assert main(base + ["--version", "2", "--seed", "5", "--passes", "--exr"]) == 0
    assert _digests(out, "tower_v001") == v1                        # untouched
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2["stem"] == "tower_v002" and json.loads((out / "tower_v002.manifest.json").read_text()) == m2
    assert all(f.startswith(("tower_v002", "exr/tower_v002", "passes/tower_v002")) for f in m2["files"])
    assert len([f for f in m2["files"] if f.endswith(".png") and "/" not in f]) == n
    # v1's own manifest still describes v1's files exactly.
    for rel, digest in m1["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel
    # The stage cache's frame index knows each version's frames by their own names.
    from derrumbe.cache import StageCache
    index = StageCache(out).frame_index()
    assert {f"tower_v001.{1001 + i}.png" for i in range(n)} | {f"tower_v002.{1001 + i}.png" for i in range(n)} \
        <= set(index)
    # Rendering v2 again reuses its frames and still leaves v1 alone.
    assert main(base + ["--version", "2", "--seed", "5", "--passes", "--exr"]) == 0
    m2b = json.loads((out / "manifest.json").read_text())
    assert m2b["cache"]["stages"]["frames"].startswith(f"{n} reused")
    assert _digests(out, "tower_v001") == v1


def test_a_version_without_a_number_is_explained(tmp_path):
    r = _cli(["shot", "plate.jpg", "--box", "0,0,10,10", "-o", str(tmp_path), "--version"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "version number" in r.stderr and "NAME_v003" in r.stderr and "derrumbe --version" in r.stderr
    r = _cli(["--version"])
    from derrumbe import __version__
    assert r.returncode == 0 and r.stdout.strip() == f"derrumbe {__version__}"


# ---- frame ranges ------------------------------------------------------------------------------------

def test_a_frame_range_sets_the_length_and_the_numbers():
    s = resolve_timing(ShotSpec(plate="x", box=[0, 0, 10, 10], frames="1001-1144", fps=24), 1, None)
    assert s.duration == 6.0 and s.first_frame == 1001
    s = resolve_timing(ShotSpec(plate="x", box=[0, 0, 10, 10], frames="1-48"), 1, None)
    assert s.duration == 2.0 and s.fps == 24 and s.first_frame == 1
    # A range and a length that agree are fine; ones that disagree are refused.
    resolve_timing(ShotSpec(plate="x", box=[0, 0, 10, 10], frames="1001-1048", duration=2.0), 1, None)


@pytest.mark.parametrize("args, needle", [
    (["--frames", "1144-1001"], "ends before it starts"),
    (["--frames", "1001-1144", "--duration", "3"], "give one of them"),
    (["--frames", "ten-twenty"], "FIRST-LAST"),
    (["--frames", "1-99999"], "at most"),
    (["--frames", "1001-4000", "--fps", "24"], "at most 120 s"),
])
def test_bad_frame_ranges_are_one_line(demo_files, tmp_path, args, needle):
    d, p = demo_files
    r = _cli(["shot", str(d / "plate.png"), "--box", _box(p), "-o", str(tmp_path / "o"), "-q"] + args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr


def test_a_frame_range_names_the_frames_the_exrs_and_the_usd(demo_files, tmp_path):
    from pxr import Usd
    d, p = demo_files
    out = tmp_path / "o"
    args = [a for a in QUICK]
    i = args.index("--duration")
    del args[i:i + 2]
    assert main(["shot", str(d / "plate.png"), "--box", _box(p), "-o", str(out), "--frames", "101-112", "--exr",
                 "--usd", "-q"] + args) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["first_frame"] == 101 and m["last_frame"] == 112 and m["spec"]["duration"] == 1.0
    assert m["frames"] == [f"shot_v001.{f:04d}.png" for f in range(101, 113)]
    assert sorted(q.name for q in (out / "exr").iterdir()) == [f"shot_v001.{f:04d}.exr" for f in range(101, 113)]
    st = Usd.Stage.Open(str(out / "shot_v001.usdc"))
    assert (st.GetStartTimeCode(), st.GetEndTimeCode()) == (101, 112)
    # The manifest re-renders the same range.
    assert ShotSpec.load(out / "manifest.json").frames == "101-112"


# ---- help, names and mistakes ---------------------------------------------------------------------------

def test_help_is_grouped_and_names_values_by_what_they_are():
    r = _cli(["shot", "--help"])
    assert r.returncode == 0
    text = r.stdout
    for group in ("plate and matte:", "camera and scale:", "collapse:", "dust:", "look:", "output:", "farm:"):
        assert f"\n{group}" in text, group
    for metavar in ("--box X0,Y0,X1,Y1", "--dust-color R,G,B", "--size WxH", "--wind SPEED,HEADING",
                    "--frames FIRST-LAST", "--start SECONDS", "--height-m METRES"):
        assert metavar in text, metavar
    assert "VALUE" not in text and "default: None" not in text
    assert "top-left corner" in text
    # Every option sits under the heading a compositor looks for it under.
    order = [text.index(k) for k in ("\nplate and matte:", "\n  --box", "\ncollapse:", "\n  --style", "\ndust:",
                                     "\n  --wind", "\nlook:", "\n  --grain", "\noutput:", "\n  --version", "\nfarm:",
                                     "\n  --explain")]
    assert order == sorted(order)


@pytest.mark.parametrize("args, needle", [
    (["shot", "p.jpg", "--dsut", "2", "-o", "x"], "unknown option --dsut; did you mean --dust?"),
    (["shot", "p.jpg", "--bx", "1,2,3,4", "-o", "x"], "did you mean --box?"),
    (["shoot", "p.jpg"], "unknown command 'shoot'; did you mean shot?"),
    (["shot", "p.jpg", "--style", "implsion", "-o", "x"], "did you mean implosion?"),
    (["shot", "p.jpg", "--box"], "--box needs X0,Y0,X1,Y1"),
])
def test_mistyped_names_get_the_nearest_suggested(args, needle):
    r = _cli(args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr


def test_derrumbe_alone_prints_the_help():
    r = _cli([])
    assert r.returncode == 0 and "shot" in r.stdout and "COMMAND --help" in r.stdout and not r.stderr
    r = _cli(["shot"])
    assert r.returncode == 0 and "plate and matte:" in r.stdout


# ---- --explain: the estimates before a render -------------------------------------------------------------

def _value(lines, prefix, word):
    line = next(ln for ln in lines if ln.startswith(prefix))
    toks = line.replace(",", " ").split()
    return float(toks[toks.index(word) - 1])


def test_explain_prints_the_estimates_the_render_uses(tiny_shot, demo_files, tmp_path):
    """Against the manifest of a real render of the same plate and box."""
    out, m = tiny_shot
    d, p = demo_files
    from tests.conftest import TINY
    r = _cli(["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "--holdout",
              str(d / "holdout.png"), "-o", str(tmp_path / "x"), "--explain"] + TINY)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    e = m["estimates"]
    assert _value(lines, "building:", "m") == pytest.approx(e["height_m"], abs=0.051)
    assert _value(lines, "building:", "storeys") == pytest.approx(e["floors"], abs=0.051)
    assert _value(lines, "distance:", "m") == pytest.approx(e["distance_m"], abs=0.051)
    assert _value(lines, "lens:", "mm") == pytest.approx(e["focal_mm"], abs=0.051)
    assert _value(lines, "horizon:", "of") == pytest.approx(e["horizon_y"], abs=0.051)
    assert _value(lines, "sun:", "deg") == pytest.approx(e["sun_azimuth_deg"], abs=0.051)
    assert any(ln.startswith("holdouts:") for ln in lines)
    assert any(ln.startswith("material:") and "suggested" in ln for ln in lines)
    assert "likely" in next(ln for ln in lines if ln.startswith("building:"))


@pytest.mark.skipif(not (SHARED_PLATES / "plates.json").exists(), reason="the shared plates are absent")
def test_the_material_suggestion_on_the_shared_plates():
    """Labelled by eye: the one curtain wall (img_263) is glass; the other six are
    load-bearing masonry of the 19th and early 20th century (brick, bare or rendered and
    painted, with cornices, rustication and arched heads), which `auto` builds them of.
    By colour alone, four painted ones were concrete; their 3.7-4.2 m storeys say masonry.
    None of the six punched-window facades is glass."""
    import cv2
    import numpy as np
    from derrumbe.estimates import suggest_material
    from derrumbe.stages.camera import place_building
    from derrumbe.stages.matte import compute_matte
    want = {"img_263.jpg": "glass"}
    for e in json.loads((SHARED_PLATES / "plates.json").read_text())["plates"]:
        srgb = np.ascontiguousarray(cv2.imread(str(SHARED_PLATES / e["file"]))[..., ::-1])
        m = compute_matte(srgb, e["box"], None, None, 1, auto_holdouts=False)
        _, place = place_building(srgb, m.building, None, None, None)
        got, why = suggest_material(srgb, m.building, place.storey_m)
        assert got == want.get(e["file"], "masonry"), (e["file"], why)


def test_short_storeys_of_a_plain_facade_stay_concrete():
    """The storey cue alone: the generated plate's grey facade of 3 m storeys is concrete
    at its own storey height, masonry at 4 m."""
    import numpy as np
    from derrumbe.demo import make_demo_plate
    from derrumbe.estimates import suggest_material
    p = make_demo_plate()
    b = np.zeros(p.srgb.shape[:2], np.float32)
    x0, y0, x1, y1 = p.box
    b[y0:y1, x0:x1] = 1
    assert suggest_material(p.srgb, b, 3.0)[0] == "concrete"
    assert suggest_material(p.srgb, b, 4.0)[0] == "masonry"


# ---- the time left --------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_eta_scales_the_stages_to_come_by_how_this_run_went():
    c = Clock()
    e = eta.Estimator({"simulate": 10.0, "render": 20.0}, clock=c)
    assert e.total_remaining() == 30.0
    e.start("simulate", 100)
    c.t = 20.0                                  # twice as slow as predicted
    e.advance(100, 100)
    e.end()
    assert e.factor() == pytest.approx(2.0)
    assert e.total_remaining() == pytest.approx(40.0)      # the render, predicted 20 s, now 40 s
    e.start("render", 10)
    assert e.stage_remaining() == pytest.approx(40.0)
    for i in range(1, 6):                       # then 3 s a frame, measured
        c.t = 20.0 + 3.0 * i
        e.advance(i, 10)
    assert e.stage_remaining() == pytest.approx(15.0)
    assert e.total_remaining() == pytest.approx(15.0)
    assert 0.5 < e.fraction() < 1.0
    assert eta.clock_text(83) == "1:23" and eta.clock_text(3723) == "1:02:03"


def test_eta_rates_are_this_machines_and_cached_stages_cost_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DERRUMBE_STAGE_RATES", str(tmp_path / "rates.json"))
    work = eta.workloads(1.0, 0, 0.5, 48, 1000, 2.0, 1500, 45_000)
    pred = eta.predict(work, {"simulate": 1.0, "render": 0.5})
    assert pred["simulate"] == 0.0
    assert pred["render"] == pytest.approx(work["render"] * eta.DEFAULT_RATES["render"] * 0.5)
    # A render that took 3x the default rate moves the machine's rate toward it.
    eta.record({"render": 3 * work["render"] * eta.DEFAULT_RATES["render"]}, work, {"render": 1.0})
    r = eta.load_rates()["render"]
    assert r == pytest.approx(eta.DEFAULT_RATES["render"] * (1 + 2 * eta.SMOOTHING))
    # A cached stage says nothing about the rate.
    eta.record({"simulate": 999.0}, work, {"simulate": 0.0})
    assert eta.load_rates()["simulate"] == eta.DEFAULT_RATES["simulate"]
    (tmp_path / "rates.json").write_text("not json")
    assert eta.load_rates() == eta.DEFAULT_RATES


def test_progress_json_carries_frames_and_the_time_left(demo_files, tmp_path):
    d, p = demo_files
    r = _cli(["shot", str(d / "plate.png"), "--box", _box(p), "-o", str(tmp_path / "o"), "--progress-json",
              "--frames", "1001-1012"] + [a for a in QUICK if a not in ("--duration", "1")])
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
    plan = next(e for e in events if e["event"] == "plan")
    assert plan["first_frame"] == 1001 and set(plan["stages"]) >= {"simulate", "render"}
    render = [e for e in events if e.get("stage") == "render" and e["event"] == "progress"]
    frames = [e["frame"] for e in render]
    assert frames == sorted(frames) and frames[-1] == 1012 and frames[0] >= 1001
    assert all(e["eta_stage"] is not None and e["eta_total"] is not None for e in render)
    assert render[-1]["eta_stage"] == 0.0 and render[-1]["fraction"] == 1.0
