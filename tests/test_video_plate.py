"""Moving plates: a video file or an image sequence; the collapse over every plate frame."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from derrumbe.cli import main
from derrumbe.stages.exr import read_exr
from derrumbe.stages.plate import open_plate
from tests.conftest import read_rgb

W, H, N = 320, 180, 24


def _frames(demo_files):
    """The demo plate with a block (a bus, a passer-by) crossing the street in front."""
    d, p = demo_files
    base = cv2.resize(p.srgb, (W, H), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(N):
        f = base.copy()
        x = 4 + i * 12
        f[150:170, x:x + 18] = (30 + 8 * i, 60, 200)
        out.append(f)
    return out


def _box(demo_files):
    d, p = demo_files
    s = W / p.srgb.shape[1]
    return ",".join(str(int(round(v * s))) for v in p.box)


def _encode(path, frames, codec, pix_fmt, options=None):
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = W, H, pix_fmt
        s.options = options or {}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.fixture(scope="module")
def video_plate(demo_files, tmp_path_factory):
    """H.264 4:2:0, what a phone or a camera gives."""
    return _encode(tmp_path_factory.mktemp("video") / "plate.mp4", _frames(demo_files), "libx264", "yuv420p",
                   {"crf": "12"})


@pytest.fixture(scope="module")
def lossless_plate(demo_files, tmp_path_factory):
    """QuickTime PNG, lossless: every decoded frame is exactly the frame it was made from,
    so the test's expectation is the generating frames themselves, not a decode by the
    code under test."""
    return _encode(tmp_path_factory.mktemp("video") / "plate.mov", _frames(demo_files), "png", "rgb24")


@pytest.fixture(scope="module")
def video_shot(lossless_plate, demo_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("video_shot")
    rc = main(["shot", str(lossless_plate), "--box", _box(demo_files), "-o", str(out), "--start", "0.2",
               "--pieces", "300", "--dust", "0", "--shake", "0", "--exr", "-q"])
    assert rc == 0
    return out, json.loads((out / "manifest.json").read_text())


def test_video_plate_sets_length_and_rate(video_shot):
    out, m = video_shot
    assert len(m["frames"]) == N and m["fps"] == 24
    assert m["plate"]["kind"] == "video" and m["plate"]["frames"] == N
    assert len(list(out.glob("shot_v001.*.png"))) == N


def test_every_frame_is_its_own_plate_frame_where_the_effect_is_absent(video_shot, demo_files):
    out, m = video_shot
    plate = _frames(demo_files)                  # what the video was made of
    crossing = 0
    for i in range(N):
        png = read_rgb(out / f"shot_v001.{1001 + i:04d}.png")
        _, ch = read_exr(out / "exr" / f"shot_v001.{1001 + i:04d}.exr")
        free = ch["matte.effect"] == 0
        assert free.mean() > 0.3
        assert np.array_equal(png[free], plate[i][free]), i
        # The block crossing the street is in the shot, frame by frame, where it was drawn.
        x = 4 + i * 12
        if free[150:170, x:x + 18].all():
            crossing += 1
            assert np.array_equal(png[160, x + 9], (30 + 8 * i, 60, 200))
    assert crossing >= N // 3


def test_an_h264_plate_reads_as_an_independent_decoder_reads_it(video_plate, demo_files):
    """PyAV through the plate stage against OpenCV's own FFmpeg decode and conversion, and
    both against the frames the video was made from (crf 12: a few code values)."""
    made = _frames(demo_files)
    cap = cv2.VideoCapture(str(video_plate))
    src = open_plate(str(video_plate))
    try:
        assert src.n_frames == N and src.size == (W, H)
        for i in range(N):
            ok, bgr = cap.read()
            assert ok
            ours = src.frame(i).srgb.astype(int)
            theirs = bgr[..., ::-1].astype(int)
            assert np.abs(ours - theirs).max() <= 3 and np.abs(ours - theirs).mean() < 0.6, i
            assert np.abs(ours - made[i]).mean() < 2.5, i
        assert not cap.read()[0]                # and no frame more
    finally:
        src.close()
        cap.release()


def test_the_analysis_sees_the_street_without_the_passing_block(video_plate, demo_files):
    src = open_plate(str(video_plate))
    ref = src.reference()
    src.close()
    street = cv2.resize(demo_files[1].srgb, (W, H), interpolation=cv2.INTER_AREA)
    # Where the block was in frame 0, the median is the street (as drawn), not the block.
    assert np.abs(ref.srgb[155:165, 6:20].astype(int) - street[155:165, 6:20]).mean() < 4
    assert _frames(demo_files)[0][160, 10, 2] - ref.srgb[155:165, 6:20, 2].mean() > 60


def test_image_sequence_plate_and_its_errors(demo_files, tmp_path):
    frames = _frames(demo_files)[:10]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"plate.{1001 + i:04d}.png"), f[..., ::-1])
    src = open_plate(str(tmp_path / "plate.####.png"))
    assert src.kind == "sequence" and src.n_frames == 10 and src.size == (W, H)
    assert np.array_equal(src.frame(3).srgb, frames[3])
    out = tmp_path / "out"
    rc = main(["shot", str(tmp_path / "plate.####.png"), "--box", _box(demo_files), "-o", str(out),
               "--start", "0.1", "--pieces", "300", "--dust", "0", "--shake", "0", "--duration", "0.25", "-q"])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["frames"]) == 6 and m["fps"] == 24            # --duration given: 0.25 s of the plate
    (tmp_path / "plate.1005.png").unlink()
    with pytest.raises(Exception, match="gap"):
        open_plate(str(tmp_path / "plate.####.png"))


@pytest.mark.parametrize("extra, message", [
    (["--duration", "3"], "longer than the plate"),
    (["--fps", "30"], "differs from the plate"),
])
def test_bad_timing_for_a_video_plate_is_a_one_line_error(video_plate, demo_files, tmp_path, capsys, extra, message):
    rc = main(["shot", str(video_plate), "--box", _box(demo_files), "-o", str(tmp_path / "o"), "-q"] + extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_a_file_that_is_not_a_video_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "plate.mov"
    bad.write_bytes(b"not a movie at all" * 10)
    rc = main(["shot", str(bad), "--box", "0,0,10,10", "-o", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a readable video" in err and len(err.strip().splitlines()) == 1


def test_exr_still_plate_is_read_as_acescg(demo_files, tmp_path):
    import OpenEXR
    from derrumbe import colour
    d, p = demo_files
    lin = colour.u8_to_linear(cv2.resize(p.srgb, (W, H), interpolation=cv2.INTER_AREA))
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {c: lin[..., i].astype(np.float32) for i, c in enumerate("RGB")}) as f:
        f.write(str(tmp_path / "plate.exr"))
    src = open_plate(str(tmp_path / "plate.exr"))
    ref = src.reference()
    assert np.allclose(ref.linear(), lin, atol=1e-6)
    assert np.abs(ref.srgb.astype(int) - colour.linear_to_u8(lin)).max() == 0
