"""A whole shot through the CLI: files, untouched plate pixels, determinism, re-render."""

import av
import numpy as np

from derrumbe.cli import main
from derrumbe.colour import linear_to_u8, u8_to_linear
from derrumbe.stages.plate import resize_linear
from tests.conftest import TINY, read_rgb


def _plate_at(manifest, demo_files):
    d, p = demo_files
    w, h = manifest["size"]
    return linear_to_u8(resize_linear(u8_to_linear(p.srgb), (w, h)))


def test_shot_writes_numbered_frames_movie_and_manifest(tiny_shot):
    out, m = tiny_shot
    n = round(2.0 * 12)
    assert m["frames"] == [f"shot_v001.{1001 + i:04d}.png" for i in range(n)]
    assert all((out / f).exists() for f in m["frames"])
    assert m["spec"]["seed"] == 1 and m["derrumbe_version"]
    for stage in ("plate", "matte", "camera", "cleanplate", "fracture", "simulate", "render", "comp", "write"):
        assert stage in m["timings_s"]
    with av.open(str(out / m["movie"])) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == n
    assert (frames[0].width, frames[0].height) == tuple(m["size"])
    assert not list(out.glob(".*tmp*"))


def _blurred_diff(a, b, k=7):
    """|a - b| after a k x k box blur: the picture's change with the grain averaged away."""
    import cv2
    return np.abs(cv2.blur(a.astype(np.float32) - b.astype(np.float32), (k, k)))


def test_frames_before_the_collapse_are_the_plate_under_fresh_grain(tiny_shot, demo_files):
    out, m = tiny_shot
    plate = _plate_at(m, demo_files)
    before = [read_rgb(out / f) for i, f in enumerate(m["frames"]) if i / 12 < 0.5]
    assert len(before) >= 2
    for f in before:
        assert _blurred_diff(f, plate).max() < 6          # the plate's picture
        assert np.percentile(np.abs(f.astype(int) - plate), 99.9) <= 16   # grain, not change
    assert not np.array_equal(before[0], before[1])


def test_pixels_nothing_covers_stay_the_plate_and_the_building_falls(tiny_shot, demo_files):
    out, m = tiny_shot
    plate = _plate_at(m, demo_files)
    d, p = demo_files
    w, h = m["size"]
    s = w / p.srgb.shape[1]
    x0, y0, x1, y1 = [int(v * s) for v in p.box]
    changed_any = np.zeros((h, w), bool)
    for f in m["frames"]:
        changed_any |= (_blurred_diff(read_rgb(out / f), plate, 5) > 6).any(axis=2)
    # The sky above the building's roof and left of its box is never touched.
    assert not changed_any[: max(1, y0 - 6), : max(1, x0 - 40)].any()
    assert not changed_any[: max(1, y0 - 6), x1 + 40:].any()
    # The building region did change: it fell.
    assert changed_any[y0:y1, x0:x1].mean() > 0.5
    last = read_rgb(out / m["frames"][-1])
    upper = slice(y0 + 4, y0 + (y1 - y0) // 3)
    assert (_blurred_diff(last, plate, 5)[upper, x0:x1] > 6).any(axis=2).mean() > 0.5


def test_holdout_stays_in_front(demo_files, tmp_path):
    # Without dust: dust whose front reaches a holdout's depth covers it, by design
    # (tests/test_holdouts.py); the debris never may. Without grain: the still's pixels
    # are then its own, bit for bit, wherever nothing covers them.
    import json

    import cv2
    d, p = demo_files
    out = tmp_path / "o"
    assert main(["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "--holdout",
                 str(d / "holdout.png"), "-o", str(out), "--dust", "0", "--grain", "0"] + TINY) == 0
    m = json.loads((out / "manifest.json").read_text())
    plate = _plate_at(m, demo_files)
    hold = cv2.resize(p.holdout, tuple(m["size"]), interpolation=cv2.INTER_AREA) > 250
    for f in m["frames"]:
        assert np.array_equal(read_rgb(out / f)[hold], plate[hold])


def test_same_spec_and_seed_give_identical_frames_and_manifest_rerenders(tiny_shot, tmp_path):
    out, m = tiny_shot
    again = tmp_path / "again"
    assert main(["shot", "--spec", str(out / "manifest.json"), "-o", str(again), "-q"]) == 0
    for f in m["frames"]:
        assert np.array_equal(read_rgb(out / f), read_rgb(again / f)), f


def test_help_lists_every_option_with_default_and_unit(capsys):
    try:
        main(["shot", "--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    for opt in ("--box", "--mask", "--holdout", "--style", "--direction", "--start", "--height-m", "--material",
                "--pieces", "--focal-mm", "--horizon-y", "--shake", "--grain", "--seed", "--fps", "--duration",
                "--size", "--preview", "--spec", "-q"):
        assert opt in text, opt
    assert "0..600 s" in text and "else 24" in text


def test_other_styles_render(demo_files, tmp_path):
    d, p = demo_files
    box = ",".join(map(str, p.box))
    for style in ("topple", "facade"):
        out = tmp_path / style
        args = ["shot", str(d / "plate.png"), "--box", box, "-o", str(out), "--style", style, "--direction", "right"]
        assert main(args + TINY) == 0
        assert (out / "manifest.json").exists()




def test_the_dust_is_in_the_shot_and_in_the_manifest(tiny_shot, demo_files):
    out, m = tiny_shot
    dust = m["dust"]
    assert dust["enabled"] and dust["mass_kg"] > 0 and dust["front_m"] > 0
    assert m["particles"]["count"] > 0
    for stage in ("particles", "dust", "dust_render"):
        assert stage in m["timings_s"]
    # At the end the base of the building is hidden in a grey-beige cloud: the street in
    # front of it changed, and it is less saturated than the plate there.
    plate = _plate_at(m, demo_files)
    d, p = demo_files
    w, h = m["size"]
    s = w / p.srgb.shape[1]
    x0, y0, x1, y1 = [int(v * s) for v in p.box]
    base = (slice(y1 - (y1 - y0) // 6, y1), slice(x0, x1))
    last = read_rgb(out / m["frames"][-1]).astype(float)
    assert (last[base] != plate[base]).any(axis=2).mean() > 0.8
    chroma = lambda a: (a.max(axis=2) - a.min(axis=2)).mean()
    assert chroma(last[base]) < chroma(plate[base].astype(float)) + 5


def test_no_dust_when_asked(demo_files, tmp_path):
    d, p = demo_files
    box = ",".join(map(str, p.box))
    args = ["shot", str(d / "plate.png"), "--box", box, "-o", str(tmp_path / "o"), "--dust", "0",
            "--size", "160", "--duration", "1.0", "--start", "0.3", "--fps", "8", "--pieces", "300", "-q"]
    assert main(args) == 0
    import json
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["dust"] == {"enabled": False}
    assert m["spec"]["dust"] == 0


def test_passes_hold_the_dust_and_debris_layers_and_the_dust_matte(demo_files, tmp_path):
    import cv2
    d, p = demo_files
    out = tmp_path / "o"
    args = ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "-o", str(out), "--passes",
            "--size", "160", "--duration", "2.0", "--start", "0.3", "--fps", "8", "--pieces", "300", "-q"]
    assert main(args) == 0
    import json
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["passes"]) == 4 * len(m["frames"])          # debris, dust, dust matte, holdout
    assert all((out / f).exists() for f in m["passes"])
    last = 1000 + len(m["frames"])
    dust = cv2.imread(str(out / "passes" / f"shot_v001.dust.{last}.png"), cv2.IMREAD_UNCHANGED)
    matte = cv2.imread(str(out / "passes" / f"shot_v001.dust_matte.{last}.png"), cv2.IMREAD_UNCHANGED)
    first = cv2.imread(str(out / "passes" / "shot_v001.dust_matte.1001.png"), cv2.IMREAD_UNCHANGED)
    assert dust.dtype == np.uint16 and dust.shape[2] == 4 and matte.dtype == np.uint16 and matte.ndim == 2
    assert np.array_equal(dust[..., 3], matte)            # the matte is the dust layer's alpha
    # Dust at the end (1.7 s into the collapse, the first storey crushed: a fifth opaque or
    # more somewhere; the pieces' first hits on the street alone raise a tenth), none
    # before the collapse.
    assert matte.max() > 0.2 * 65535 and first.max() == 0
