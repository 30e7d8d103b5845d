"""The art-direction loop: what re-runs after a change, resume after a kill, damaged
caches, two commands on one folder, `derrumbe cache`."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from derrumbe.cli import main
from tests.conftest import read_rgb

# A shot small enough to run many times: 1 s at 8 fps, 40 pieces.
SMALL = ["--size", "160", "--duration", "1.5", "--start", "0.3", "--fps", "8", "--pieces", "300", "--shake", "0", "-q"]


def _args(demo_files, out, *extra):
    d, p = demo_files
    return ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "-o", str(out)] + SMALL + list(extra)


def _stages(out):
    return json.loads((out / "manifest.json").read_text())["cache"]["stages"]


UPSTREAM = ("matte", "camera", "fracture", "simulate", "particles", "dust")


def _would_run(demo_files, out, capsys, *extra) -> list[str]:
    """The upstream stages `--explain` says a change would run (it runs nothing)."""
    capsys.readouterr()
    assert main(_args(demo_files, out, *extra, "--explain")) == 0
    said = capsys.readouterr().out
    assert all(f"{s}: cached" in said or f"{s}: will run" in said for s in UPSTREAM), said
    return [s for s in UPSTREAM if f"{s}: will run" in said]


def test_a_change_reruns_exactly_the_stages_that_depend_on_it(demo_files, tmp_path, capsys):
    out = tmp_path / "shot"
    assert main(_args(demo_files, out)) == 0
    assert all(_stages(out)[s] == "ran" for s in UPSTREAM)
    first = {f: read_rgb(out / f) for f in json.loads((out / "manifest.json").read_text())["frames"]}

    # The same command again: nothing is computed, the frames are the same.
    assert main(_args(demo_files, out)) == 0
    st = _stages(out)
    assert all(st[s] == "cached" for s in UPSTREAM)
    assert st["frames"].startswith(f"{len(first)} reused, 0 rendered")
    assert all(np.array_equal(read_rgb(out / f), img) for f, img in first.items())

    # Output size, grain, dust colour: only the frames. One of them is rendered, the
    # others asked of --explain, which reads the same cache keys (a render each is 4 s).
    assert main(_args(demo_files, out, "--grain", "0.5")) == 0
    st = _stages(out)
    assert all(st[s] == "cached" for s in UPSTREAM), st
    assert st["frames"].endswith(f"0 reused, {len(first)} rendered"), st
    for extra in (["--size", "128"], ["--dust-color", "150,140,120"]):
        assert _would_run(demo_files, out, capsys, "--grain", "0.5", *extra) == [], extra

    # The wind: the dust again, not the collapse.
    assert main(_args(demo_files, out, "--wind", "6,0")) == 0
    st = _stages(out)
    assert [s for s in UPSTREAM if st[s] == "ran"] == ["dust"]

    # The style or the seed: everything from the fracture (the seed also re-mattes).
    assert main(_args(demo_files, out, "--style", "topple")) == 0
    st = _stages(out)
    assert [s for s in UPSTREAM if st[s] == "ran"] == ["fracture", "simulate", "particles", "dust"]
    assert _would_run(demo_files, out, capsys, "--seed", "9") == list(UPSTREAM)


def test_explain_says_what_would_run_and_why(demo_files, tmp_path, capsys):
    out = tmp_path / "shot"
    assert main(_args(demo_files, out)) == 0
    capsys.readouterr()
    assert main(_args(demo_files, out, "--size", "128", "--explain")) == 0
    said = capsys.readouterr().out
    assert "simulate: cached" in said and "dust: cached" in said
    assert "to render (changed: size 160 -> 128)" in said
    assert main(_args(demo_files, out, "--material", "masonry", "--explain")) == 0
    said = capsys.readouterr().out
    assert "fracture: will run (upstream changed: material (changed: material auto -> masonry))" in said
    assert "simulate: will run (upstream changed: fracture, material)" in said
    assert "particles: will run (upstream changed: simulate, fracture, material)" in said
    # --explain ran nothing: the folder still holds the first render's frames.
    assert _stages(out)["frames"].endswith("rendered")


def test_a_killed_render_resumes_to_the_frames_of_an_uninterrupted_one(demo_files, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert main(_args(demo_files, ref)) == 0
    n = len(json.loads((ref / "manifest.json").read_text())["frames"])
    cmd = [sys.executable, "-m", "derrumbe"] + _args(demo_files, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # Kill it (SIGKILL: no cleanup at all) once it is half-way through the frames.
    while time.time() < deadline and len(list(out.glob("shot_v001.*.png"))) < n // 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    written = len(list(out.glob("shot_v001.*.png")))
    assert 0 < written < n
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    st = _stages(out)
    assert all(st[s] == "cached" for s in UPSTREAM)
    reused = int(st["frames"].split()[0])
    assert reused >= written - 2          # the last one or two may have been mid-write
    m = json.loads((out / "manifest.json").read_text())
    for f in m["frames"]:
        assert np.array_equal(read_rgb(out / f), read_rgb(ref / f)), f
    assert not list(out.glob(".*tmp*"))


def test_a_damaged_cache_file_is_detected_and_recomputed(demo_files, tmp_path):
    out = tmp_path / "shot"
    assert main(_args(demo_files, out)) == 0
    frames = {f: read_rgb(out / f) for f in json.loads((out / "manifest.json").read_text())["frames"]}
    sim = next((out / ".derrumbe" / "stages" / "simulate").glob("*.pkl"))
    data = bytearray(sim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    sim.write_bytes(bytes(data))
    dust_frame = sorted((out / ".derrumbe" / "dust").glob("*/0005.npz.z"))[0]
    dust_frame.write_bytes(dust_frame.read_bytes()[:100])            # cut short
    last = out / sorted(frames)[-1]
    last.write_bytes(last.read_bytes()[:-50])                         # a damaged frame
    assert main(_args(demo_files, out)) == 0
    st = _stages(out)
    assert "checksum" in st["simulate"] and "checksum" in st["dust"]
    assert st["fracture"] == "cached"
    for f, img in frames.items():
        assert np.array_equal(read_rgb(out / f), img), f


def test_two_commands_on_one_folder_leave_a_valid_folder(demo_files, tmp_path):
    out = tmp_path / "shot"
    cmd = [sys.executable, "-m", "derrumbe"] + _args(demo_files, out)
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ra, rb = a.wait(300), b.wait(300)
    errs = [p.stderr.read() for p in (a, b)]
    assert 0 in (ra, rb)
    for rc, err in zip((ra, rb), errs):
        if rc != 0:
            assert rc == 2 and len(err.strip().splitlines()) == 1 and "being rendered" in err
    m = json.loads((out / "manifest.json").read_text())
    assert all((out / f).exists() for f in m["frames"])
    import av
    with av.open(str(out / m["movie"])) as c:
        assert len(list(c.decode(video=0))) == len(m["frames"])


def test_cache_ls_and_clean(demo_files, tmp_path, capsys):
    out = tmp_path / "shot"
    assert main(_args(demo_files, out, "--seed", "3")) == 0
    assert main(_args(demo_files, out, "--seed", "4")) == 0
    capsys.readouterr()
    assert main(["cache", "ls", str(out)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("stale") >= 6 and listing.count("current") >= 6
    assert "simulate" in listing and "MB" in listing
    assert main(["cache", "clean", str(out)]) == 0
    capsys.readouterr()
    assert main(["cache", "ls", str(out)]) == 0
    assert "stale" not in capsys.readouterr().out
    # What the last render used survived: running it again computes nothing.
    assert main(_args(demo_files, out, "--seed", "4")) == 0
    assert all(_stages(out)[s] == "cached" for s in UPSTREAM)
    assert main(["cache", "clean", str(out), "--all"]) == 0
    assert not list((out / ".derrumbe" / "stages").glob("*/*.pkl"))


def test_cache_on_a_folder_without_one_is_one_line(tmp_path, capsys):
    assert main(["cache", "ls", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no derrumbe cache" in err[0]


@pytest.mark.parametrize("stage", ["simulate"])
def test_keys_do_not_depend_on_the_output_size(demo_files, stage):
    from derrumbe.pipeline import shot_keys
    from derrumbe.spec import ShotSpec, resolve_timing
    from derrumbe.stages.plate import open_plate
    d, p = demo_files
    src = open_plate(str(d / "plate.png"))
    spec = resolve_timing(ShotSpec(plate=str(d / "plate.png"), box=p.box).validate(), src.n_frames, src.rate)
    digests = dict(plate=src.digest(), mask=None, holdout=None)
    a = shot_keys(spec, digests, (640, 360))
    b = shot_keys(spec, digests, (1280, 720))
    assert a[stage] == b[stage] and a["dust"] == b["dust"] and a["frames"] != b["frames"]
