"""The generative refinement: warped noise statistics (numpy only), and the real
`derrumbe refine` path with a tiny random Wan image-to-video model built offline (skipped
with a clear reason when the gen extra is not installed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from derrumbe.generative.noise_warp import latent_flow, splat_step, warped_noise


def _swirl_flow(h, w, t):
    """A block translating right and down, plus a rotating disc: collisions and
    disocclusions both happen."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.zeros((h, w, 2), np.float32)
    block = (xs > 5) & (xs < 25) & (ys > 5) & (ys < 20)
    f[block] = (2.0, 1.0)
    cy, cx, r = h * 0.6, w * 0.6, min(h, w) * 0.25
    disc = (ys - cy) ** 2 + (xs - cx) ** 2 < r * r
    ang = 0.3
    f[disc, 0] = (np.cos(ang) - 1) * (xs[disc] - cx) - np.sin(ang) * (ys[disc] - cy)
    f[disc, 1] = np.sin(ang) * (xs[disc] - cx) + (np.cos(ang) - 1) * (ys[disc] - cy)
    return f


def test_refine_warped_noise_stays_unit_gaussian_every_frame():
    h, w, C, T = 48, 64, 16, 12
    flows = [_swirl_flow(h, w, t) for t in range(T - 1)]
    noise = warped_noise(flows, C, (h, w), seed=3)
    assert noise.shape == (T, C, h, w) and noise.dtype == np.float32
    n = C * h * w
    for t in range(T):
        x = noise[t].ravel().astype(np.float64)
        assert abs(x.mean()) < 5 / np.sqrt(n)                         # mean 0 within 5 sigma
        assert abs(x.var() - 1) < 5 * np.sqrt(2 / n)                  # variance 1 within 5 sigma
        assert stats.kstest(x, "norm").pvalue > 1e-4                  # and Gaussian
        # No two cells share a value: copies are of distinct sources, so cells stay independent.
        assert len(np.unique(noise[t, 0])) == h * w


def test_refine_warped_noise_follows_the_motion_where_nothing_is_disoccluded():
    h, w, C = 48, 64, 4
    rng = np.random.default_rng(0)
    a = rng.standard_normal((C, h, w), dtype=np.float32)
    f = _swirl_flow(h, w, 0)
    b, carried = splat_step(a, f, rng)
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = np.rint(xs + f[..., 0]).astype(int), np.rint(ys + f[..., 1]).astype(int)
    ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    # Each target reached from exactly one source holds that source's noise.
    hits = np.zeros((h, w), int)
    np.add.at(hits, (ty[ok], tx[ok]), 1)
    single = ok & (hits[np.clip(ty, 0, h - 1), np.clip(tx, 0, w - 1)] == 1)
    assert single.sum() > 0.8 * h * w
    assert np.array_equal(b[:, ty[single], tx[single]], a[:, ys[single], xs[single]])
    # Where the block moved away, the uncovered cells are fresh: uncorrelated with before.
    fresh = ~carried
    assert fresh.sum() > 20
    r = np.corrcoef(b[:, fresh].ravel(), a[:, fresh].ravel())[0, 1]
    assert abs(r) < 0.2
    # Static cells keep their noise exactly (a locked-off plate's background does not boil).
    still = (np.abs(f).sum(-1) == 0) & carried & (hits == 1)
    assert np.array_equal(b[:, still], a[:, still])


def test_refine_latent_flow_scales_pixels_to_cells_and_flips_v():
    v = np.zeros((80, 160, 2), np.float32)
    v[..., 0], v[..., 1] = 16.0, 8.0            # 16 px right, 8 px UP
    f = latent_flow(v, (10, 20))
    assert np.allclose(f[..., 0], 2.0) and np.allclose(f[..., 1], -1.0)


# ---- the real `derrumbe refine` path, tiny random Wan model, CPU --------------------------

REFINE = ["--device", "cpu", "--model-size", "48x32", "--window", "9", "--overlap", "2", "--steps", "4", "-q"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("diffusers", reason="the gen extra (torch, diffusers) is not installed: make gen")
    from tests.tiny_wan import build_tiny_wan_i2v
    return build_tiny_wan_i2v(tmp_path_factory.mktemp("tiny_wan"))


@pytest.fixture(scope="module")
def exr_shot(demo_files, tmp_path_factory):
    from derrumbe.cli import main
    from tests.conftest import TINY
    d, p = demo_files
    out = tmp_path_factory.mktemp("refine_shot")
    rc = main(["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "--holdout", str(d / "holdout.png"),
               "-o", str(out), "--exr"] + TINY)
    assert rc == 0
    return out


def _refined(shot, tiny_model, dest, *extra):
    import shutil
    from derrumbe.cli import main
    shutil.copytree(shot, dest)
    assert main(["refine", str(dest), "--model", str(tiny_model)] + REFINE + list(extra)) == 0
    return dest, json.loads((dest / "manifest.json").read_text())


@pytest.fixture(scope="module")
def refined(exr_shot, tiny_model, tmp_path_factory):
    return _refined(exr_shot, tiny_model, tmp_path_factory.mktemp("r") / "a")


def test_refine_writes_frames_movie_and_extends_the_manifest(refined):
    import av
    import hashlib
    out, m = refined
    n, (W, H) = len(m["frames"]), m["size"]
    r = m["refine"]
    assert len(r["frames"]) == n and r["frames"][0] == "refined/shot_v001.1001.png"
    from tests.conftest import read_rgb
    assert read_rgb(out / r["frames"][-1]).shape == (H, W, 3)
    with av.open(str(out / r["movie"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == n
    assert r["device"] == "cpu" and r["dtype"] == "float32" and r["model_size"] == [48, 32]
    assert r["windows"] == [[1001, 1009], [1008, 1016], [1015, 1023], [1022, 1024]]
    for rel in r["frames"] + [r["movie"]]:
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == m["files"][rel]


def test_refine_keeps_the_plate_outside_the_effect_matte_and_changes_inside(refined):
    from derrumbe.stages.exr import read_exr
    from tests.conftest import read_rgb
    out, m = refined
    changed = 0
    for i, rel in enumerate(m["refine"]["frames"]):
        new, old = read_rgb(out / rel), read_rgb(out / m["frames"][i])
        _, ch = read_exr(out / m["exr"]["files"][i])
        outside = ch["matte.effect"] == 0
        assert np.array_equal(new[outside], old[outside]), rel
        changed += int(np.abs(new.astype(int) - old)[~outside].mean() > 1) if (~outside).any() else 0
    assert changed > len(m["frames"]) // 2


def test_refine_same_seed_same_frames_other_seed_other_frames(refined, exr_shot, tiny_model, tmp_path):
    out, m = refined
    again, _ = _refined(exr_shot, tiny_model, tmp_path / "b")
    other, _ = _refined(exr_shot, tiny_model, tmp_path / "c", "--seed", "2")
    mid = m["refine"]["frames"][len(m["frames"]) // 2]
    assert (again / mid).read_bytes() == (out / mid).read_bytes()
    assert all((again / f).read_bytes() == (out / f).read_bytes() for f in m["refine"]["frames"])
    assert (other / mid).read_bytes() != (out / mid).read_bytes()


def test_refine_is_continuous_across_window_seams(refined):
    from tests.conftest import read_rgb
    out, m = refined
    frames = [read_rgb(out / f).astype(np.float32) for f in m["refine"]["frames"]]
    steps = np.array([np.abs(b - a).mean() for a, b in zip(frames, frames[1:])])
    # Seams: the first frame of each later window follows the last window's frames.
    seams = [s - 1001 for s, _ in m["refine"]["windows"][1:]]
    typical = np.percentile(steps[steps > 0], 75)
    for s in seams:
        assert steps[s - 1] <= 2.0 * typical + 1.0, (s, steps[s - 1], typical)


def test_refine_errors_are_one_line(exr_shot, tiny_model, tmp_path, capsys):
    from derrumbe.cli import main
    cases = [
        (["refine", str(exr_shot), "--model", str(tmp_path)], "no model_index.json"),
        (["refine", str(exr_shot), "--model", str(tmp_path / "nope")], "is not a folder"),
        (["refine", str(tmp_path), "--model", str(tiny_model)], "not a finished render"),
        (["refine", str(exr_shot), "--model", str(tiny_model), "--window", "10"], "4k+1"),
        (["refine", str(exr_shot), "--model", str(tiny_model), "--strength", "2"], "--strength"),
    ]
    for argv, msg in cases:
        rc = main(argv + ["-q"])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_refine_without_the_gen_extra_names_it(exr_shot, tmp_path):
    """torch made unimportable in a fresh interpreter: one line naming the extra."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None; from derrumbe.cli import main; "
            f"raise SystemExit(main(['refine', {str(exr_shot)!r}, '--model', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    assert "pip install -e '.[gen]'" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_refine_needs_the_exr_passes(demo_files, tiny_model, tmp_path, capsys):
    from derrumbe.cli import main
    from tests.conftest import TINY
    d, p = demo_files
    rc = main(["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "-o", str(tmp_path / "s"),
               "--duration", "0.6", "--start", "0.2"] + TINY[:2] + ["--fps", "12", "--pieces", "300", "-q"])
    assert rc == 0
    capsys.readouterr()
    rc = main(["refine", str(tmp_path / "s"), "--model", str(tiny_model), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "--exr" in err


def test_refine_table_in_the_spec_runs_after_the_render(demo_files, tiny_model, tmp_path):
    import shutil
    from derrumbe.cli import main
    from derrumbe.spec import ShotSpec
    d, p = demo_files
    shutil.copytree(tiny_model, tmp_path / "weights")
    spec = ShotSpec(plate=str(d / "plate.png"), box=p.box, size="160", duration=1.0, start=0.2, fps=12, pieces=300,
                    shake=0, refine={"model": "weights", "size": "48x32", "window": 9, "overlap": 2, "steps": 3,
                                     "device": "cpu"})
    (tmp_path / "shot.toml").write_text(spec.to_toml())
    assert main(["shot", "--spec", str(tmp_path / "shot.toml"), "-o", str(tmp_path / "out"), "-q"]) == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # The model as a path relative to the shot folder (no absolute server path in a manifest).
    assert m["exr"] and m["refine"]["model"] == "../weights"
    assert (tmp_path / "out" / m["refine"]["model"]).resolve() == (tmp_path / "weights").resolve()
    assert len(m["refine"]["frames"]) == len(m["frames"]) == 12


def test_refine_table_is_checked_before_anything_runs(tmp_path, capsys):
    from derrumbe.cli import main
    (tmp_path / "shot.toml").write_text('plate = "x.png"\nbox = [0, 0, 10, 10]\n[refine]\nmodel = "w"\nstrenght = 0.5\n')
    rc = main(["shot", "--spec", str(tmp_path / "shot.toml"), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "strenght" in err and len(err.strip().splitlines()) == 1
