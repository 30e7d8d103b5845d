"""What a pipeline receives: EXRs read back, the USD stage, the review movies, the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from derrumbe import colour
from derrumbe.cli import main
from derrumbe.stages.exr import FAR_Z, read_exr
from derrumbe.stages.plate import read_plate, resize_linear
from tests.conftest import TINY, read_rgb

CHANNELS = {"R", "G", "B", "A", "debris.R", "debris.G", "debris.B", "debris.A", "dust.R", "dust.G", "dust.B",
            "dust.A", "dust.Z", "matte.building", "matte.holdout", "matte.effect", "depth.Z", "forward.u", "forward.v"}
DEPTHS = {"depth.Z", "dust.Z"}


@pytest.fixture(scope="module")
def full_shot(demo_files, tmp_path_factory):
    d, p = demo_files
    out = tmp_path_factory.mktemp("deliver")
    rc = main(["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "--holdout", str(d / "holdout.png"),
               "-o", str(out), "--exr", "--usd", "--vdb", "--prores", "--burn-in", "--passes", "--version", "7"]
              + TINY)
    assert rc == 0
    return out, json.loads((out / "manifest.json").read_text())


def _rgb(ch):
    return np.stack([ch["R"], ch["G"], ch["B"]], -1).astype(np.float32)


def test_one_exr_a_frame_from_1001_with_the_layers_and_windows(full_shot):
    out, m = full_shot
    W, H = m["size"]
    files = sorted((out / "exr").glob("*.exr"))
    assert [f.name for f in files] == [f"shot_v007.{1001 + i:04d}.exr" for i in range(len(m["frames"]))]
    hdr, ch = read_exr(files[len(files) // 2])
    # Plus one holdout.<id> layer per foreground object the manifest lists.
    ids = {f"holdout.{o['id']:03d}" for o in m["holdouts"]["objects"]}
    assert set(ch) == CHANNELS | ids and ids
    for name, a in ch.items():
        assert a.shape == (H, W), name
        # Depths are 32-bit (Nuke's depth.Z; a half loses centimetres along the street),
        # the colour, mattes and vectors half.
        assert a.dtype == (np.float32 if name in DEPTHS else np.float16), name
    for win in ("dataWindow", "displayWindow"):
        lo, hi = hdr[win]
        assert list(lo) == [0, 0] and list(hi) == [W - 1, H - 1]
    assert hdr["colorSpace"] == "ACEScg"
    assert np.allclose(hdr["chromaticities"][:2], (0.713, 0.293), atol=1e-4)     # AP1 red primary
    assert str(hdr["compression"]).endswith("ZIP_COMPRESSION")


def test_the_manifest_says_what_the_exrs_are_and_names_no_absolute_path(full_shot, demo_files):
    out, m = full_shot
    d, _ = demo_files
    hdr, _ = read_exr(out / "exr" / "shot_v007.1001.exr")
    # The compression the manifest names is the one in every file's header.
    assert str(hdr["compression"]).split(".")[-1] == f"{m['exr']['compression']}_COMPRESSION"
    for f in m["exr"]["files"][::5]:
        assert str(read_exr(out / f)[0]["compression"]) == str(hdr["compression"])
    # Paths relative to the shot folder: nothing of the machine's layout, and the
    # manifest still finds its plate when read back as a spec.
    text = (out / "manifest.json").read_text()
    assert str(d) not in text and str(out) not in text
    for k in ("plate", "holdout"):
        assert not Path(m["spec"][k]).is_absolute()
        assert (out / m["spec"][k]).resolve() == (d / Path(m["spec"][k]).name).resolve()
    from derrumbe.spec import ShotSpec
    assert ShotSpec.load(out / "manifest.json").plate == str((d / "plate.png").resolve())
    # The material the shot was built of, which `auto` leaves to the facade: the generated
    # plate's grey render with 3 m storeys is concrete.
    assert m["spec"]["material"] == "auto" and m["estimates"]["material"] == "concrete"


def test_exr_beauty_is_the_plate_in_acescg_where_nothing_happens(full_shot, demo_files):
    out, m = full_shot
    d, _ = demo_files
    W, H = m["size"]
    plate = resize_linear(read_plate(str(d / "plate.png")).linear(), (W, H))
    hdr, first = read_exr(out / "exr" / "shot_v007.1001.exr")
    assert np.abs(_rgb(first) - plate).max() < 2e-3 * max(1.0, plate.max())     # half float, nothing else
    assert (first["A"] == 1).all() and (first["debris.A"] == 0).all() and (first["dust.A"] == 0).all()
    assert (first["forward.u"] == 0).all() and (first["forward.v"] == 0).all()
    _, late = read_exr(out / "exr" / f"shot_v007.{1000 + len(m['frames']):04d}.exr")
    still = (late["matte.effect"] == 0) & (late["matte.holdout"] == 0)
    assert still.mean() > 0.1
    err = np.abs(_rgb(late) - plate)[still]
    assert np.percentile(err, 99.9) < 2e-3
    # The display frame is the EXR beauty through the display transform, under the
    # still's fresh grain: equal where the effect is absent once the grain is averaged.
    png = read_rgb(out / f"shot_v007.{1000 + len(m['frames']):04d}.png")
    diff = colour.linear_to_u8(_rgb(late)).astype(np.float32) - png
    away = np.abs(cv2.blur(diff, (9, 9)))[cv2.erode(still.astype(np.uint8), np.ones((9, 9))) > 0]
    assert away.mean() < 0.6 and away.max() < 3.0             # the degrain's bias: a code value or two


def test_exr_depth_is_metres_along_the_lens_axis(full_shot):
    out, m = full_shot
    W, H = m["size"]
    _, ch = read_exr(out / "exr" / "shot_v007.1001.exr")
    cam = m["estimates"]
    z = ch["depth.Z"]
    # The street: a level camera at eye height e sees the ground at depth f*e/(row - cy).
    f_px = cam["focal_mm"] / 36.0 * W
    cy = cam["horizon_y"] * W / m["plate"]["size"][0]
    rows = np.arange(H) + 0.5
    col = z[:, 3]                       # far left column: street and sky, no building
    below = rows > cy + 0.1 * H
    eye = 1.6
    expect = f_px * eye / (rows[below] - cy)
    assert np.allclose(col[below], expect, rtol=0.03)
    # Stored as float32: the street's depths keep what a half would round away (up to
    # 1/2048 of the value: centimetres at street distances).
    assert col.dtype == np.float32
    assert (col[below] != col[below].astype(np.float16).astype(np.float32)).mean() > 0.5
    # The sky, found from the plate's own pixels: the demo draws its neighbours below the
    # top quarter, so there, bright blue pixels off the building are sky. No surface:
    # exactly the documented FAR_Z of 10000 m (not merely "far").
    import cv2
    plate = cv2.resize(read_plate(str(out / m["spec"]["plate"])).srgb, (W, H), interpolation=cv2.INTER_AREA)
    plate = plate.astype(int)
    sky = (plate[..., 2] > plate[..., 0] + 25) & (plate.max(axis=2) > 120) & (rows[:, None] < 0.25 * H) \
        & (ch["matte.building"] == 0)
    assert sky.sum() > 0.15 * W * H
    assert FAR_Z == 10000.0 and (z[sky] == FAR_Z).all()
    # The standing building is at its estimated distance.
    bm = ch["matte.building"] > 0.5
    assert abs(np.median(z[bm]) / cam["distance_m"] - 1) < 0.15


def test_forward_vectors_carry_each_pixel_to_where_its_surface_is_next_frame(full_shot):
    """The debris layer's colour warped along the vectors matches the next frame's far
    better than left in place: the vectors point where the pieces go (u right, v up,
    pixels). (Colour, not depth: a facade falling as a block stays at one depth.)"""
    out, m = full_shot
    n = len(m["frames"])
    best = []
    falling = []
    for i in range(n // 2, n - 1):
        _, a = read_exr(out / "exr" / f"shot_v007.{1001 + i:04d}.exr")
        _, b = read_exr(out / "exr" / f"shot_v007.{1002 + i:04d}.exr")
        u, v = a["forward.u"].astype(np.float32), a["forward.v"].astype(np.float32)
        ca, cb = _rgb({k[7:]: a[k] for k in a if k.startswith("debris.")}), \
            _rgb({k[7:]: b[k] for k in b if k.startswith("debris.")})
        moving = (np.hypot(u, v) > 1.0) & (a["debris.A"] > 0.99)
        if moving.sum() < 30:
            continue
        ys, xs = np.nonzero(moving)
        x1 = np.clip(np.rint(xs + u[ys, xs]).astype(int), 0, u.shape[1] - 1)
        y1 = np.clip(np.rint(ys - v[ys, xs]).astype(int), 0, u.shape[0] - 1)      # v is up, rows go down
        lum = lambda c: c.mean(-1)
        warped = np.median(np.abs(lum(cb[y1, x1]) - lum(ca[ys, xs])))
        still = np.median(np.abs(lum(cb[ys, xs]) - lum(ca[ys, xs])))
        best.append((warped, still))
        falling.append(np.median(v[moving]))
    assert len(best) >= 3
    warped, still = np.array(best).T
    assert np.median(warped) < 0.5 * np.median(still)
    assert np.median(falling) < 0            # a collapse moves down the screen


def test_manifest_lists_every_file_with_its_checksum(full_shot):
    out, m = full_shot
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)}
    on_disk -= {"manifest.json", "shot_v007.manifest.json"}       # the manifests themselves
    assert set(m["files"]) == on_disk
    for rel, digest in m["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel
    for kind in ("exr/", "passes/", "shot_v007.mp4", "shot_v007.mov", "shot_v007.usdc", "shot_v007.1001.png"):
        assert any(k.startswith(kind) for k in m["files"]), kind


def test_review_movies_h264_and_prores_hq_with_a_burn_in_frames_without(full_shot):
    import av
    out, m = full_shot
    n = len(m["frames"])
    with av.open(str(out / "shot_v007.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.colorspace == 1
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == n
    with av.open(str(out / "shot_v007.mov")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "prores" and s.codec_context.pix_fmt == "yuv422p10le"
        assert "HQ" in str(s.codec_context.profile)
        pro = [f for f in c.decode(video=0)]
    assert len(pro) == n
    png = read_rgb(out / "shot_v007.1001.png")
    H = png.shape[0]
    band = slice(0, 8)
    mid = slice(H // 3, 2 * H // 3)
    # The burn-in darkens a band and writes the name there; the frames have neither.
    assert frames[0][band].mean() < 0.6 * png[band].mean()
    assert np.abs(frames[0][mid].astype(int) - png[mid]).mean() < 3
    # ProRes carries the picture at 10 bits: luma of the middle within a code of BT.709's.
    y10 = np.frombuffer(pro[0].planes[0], np.uint16).reshape(H, -1)[:, :png.shape[1]].astype(np.float64)
    rgb = png.astype(np.float64) / 255
    y = 64 + 876 * (rgb @ np.array([0.2126, 0.7152, 0.0722]))
    # (swscale's 8-to-10-bit conversion is not exactly rounded: within an 8-bit code.)
    assert np.abs(y10[mid] - y[mid]).mean() < 4


def test_usd_stage_reads_back_with_camera_pieces_and_time_samples(full_shot):
    from pxr import Usd, UsdGeom
    out, m = full_shot
    st = Usd.Stage.Open(str(out / "shot_v007.usdc"))
    n = len(m["frames"])
    assert UsdGeom.GetStageUpAxis(st) == UsdGeom.Tokens.y and UsdGeom.GetStageMetersPerUnit(st) == 1.0
    assert (st.GetStartTimeCode(), st.GetEndTimeCode()) == (1001, 1000 + n)
    assert st.GetTimeCodesPerSecond() == m["fps"]
    cams = [p for p in st.Traverse() if p.IsA(UsdGeom.Camera)]
    meshes = [p for p in st.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(cams) == 1 and len(meshes) == m["fracture"]["fragments"]
    cam = UsdGeom.Camera(cams[0])
    # Lens in tenths of a scene unit (metres): mm / 100.
    assert cam.GetFocalLengthAttr().Get() * 100 == pytest.approx(m["estimates"]["focal_mm"], rel=1e-3)
    animated = [p for p in meshes if any(op.GetAttr().GetNumTimeSamples() == n
                                         for op in UsdGeom.Xformable(p).GetOrderedXformOps())]
    assert len(animated) == m["usd"]["pieces_animated"] > 0
    # The building comes down: its pieces are lower at the end than at the start.
    drop = [UsdGeom.Xformable(p).ComputeLocalToWorldTransform(1000 + n).ExtractTranslation()[1]
            - UsdGeom.Xformable(p).ComputeLocalToWorldTransform(1001).ExtractTranslation()[1] for p in animated]
    assert np.median(drop) < -1.0


def test_video_options_in_the_manifest(full_shot):
    out, m = full_shot
    assert m["movies"] == ["shot_v007.mp4", "shot_v007.mov"] and m["burn_in"] and m["spec"]["version"] == 7
    assert m["colour"]["working"] == "ACEScg" and m["exr"]["colourspace"] == "ACEScg"
    assert m["plate"]["kind"] == "still"


def test_fast_half_conversion_is_numpys_bit_for_bit():
    from derrumbe.stages.exr import _half
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((64, 80, 4)) * np.logspace(-8, 5, 80)[None, :, None]).astype(np.float32)
    a[0, 0] = [np.inf, -np.inf, 1e9, 65519.0]
    with np.errstate(over="ignore"):
        ref = a.astype(np.float16)
    assert np.array_equal(_half(a).view(np.uint16), ref.view(np.uint16))
    assert np.array_equal(_half(a[..., 1]).view(np.uint16), ref[..., 1].view(np.uint16))


def test_dust_depth_is_the_clouds_front_and_far_where_there_is_no_dust(full_shot):
    out, m = full_shot
    # The frame with the most dense dust off the debris (the tiny shot's cloud is small:
    # its last frame alone held a few dozen dense pixels; the frame with the most dense
    # dust overall, once the cloud opened into lumps, had 31 of them off the debris).
    chans = [read_exr(out / f)[1] for f in m["exr"]["files"]]
    ch = max(chans, key=lambda c: int(((c["dust.A"] > 0.3) & (c["debris.A"] == 0)).sum()))
    a, dz, z = ch["dust.A"], ch["dust.Z"], ch["depth.Z"]
    assert (dz[a == 0] == FAR_Z).all()
    dense = a > 0.3
    assert dense.sum() > 60                                      # enough of it to judge its depth by
    # The cloud's front lies in front of what it covers (never behind the street or the
    # walls): checked off the debris, whose EXR depth is the frame time's while the
    # march splits the dust at the pieces' motion-blurred mean depth.
    bare = dense & (ch["debris.A"] == 0)
    assert bare.sum() > 25
    assert (dz[bare] <= z[bare] * 1.02 + 0.5).mean() > 0.99
    assert (dz[dense] > 0.3).all() and np.median(dz[dense]) < 3 * m["estimates"]["distance_m"]


def test_the_dust_volume_is_a_vdb_sequence_read_back_with_the_same_values(full_shot):
    """Written by derrumbe's own writer (no published Python writer installs), read back by
    an independent reader (tinyvdb): the same voxels, values and transform; and the USD
    stage references the sequence."""
    tinyvdb = pytest.importorskip("tinyvdb")
    from derrumbe.cache import StageCache
    from derrumbe.stages.vdb import dust_grids
    out, m = full_shot
    n = len(m["frames"])
    files = sorted((out / "vdb").glob("*.vdb"))
    assert [f.name for f in files] == [f"shot_v007.{1001 + i:04d}.vdb" for i in range(n)]
    assert m["vdb"]["files"] == [f"vdb/{f.name}" for f in files]
    i = n - 1
    state = StageCache(out).load_dust_frame(m["cache"]["keys"]["dust"], i)
    grids, origin, h = dust_grids(state)
    with tinyvdb.open(str(files[i])) as f:
        assert f.header["file_version"] >= 222
        f.read_grids()
        names = [f.grid(k).name for k in range(f.grid_count)]
        assert names == ["density", "temperature", "velocity"]
        g = f.grid(0)
        tr = g.transform
        assert np.allclose(tr["voxel_size"], h, rtol=1e-6)
        assert np.allclose(tr["translation"], np.asarray(origin) + 0.5 * h, atol=1e-5)
        dens = grids["density"]
        assert g.active_voxel_count() == int((dens > 1e-5).sum()) > 0
        for k, name in enumerate(names):
            expect = grids[name]
            got = _vdb_dense(f.grid(k), dens > 1e-5, 3 if name == "velocity" else 1)
            want = np.moveaxis(expect, 0, -1) if name == "velocity" else expect[..., None]
            assert np.array_equal(got, np.where((dens > 1e-5)[..., None], want, 0)), name
    from pxr import Usd, UsdVol
    stage = Usd.Stage.Open(str(out / "shot_v007.usdc"))
    vol = UsdVol.Volume(stage.GetPrimAtPath(m["usd"]["dust_volume"]))
    fields = vol.GetFieldPaths()
    assert set(fields) == {"density", "temperature", "velocity"}
    asset = UsdVol.OpenVDBAsset(stage.GetPrimAtPath(fields["density"]))
    assert asset.GetFilePathAttr().Get(1000 + n).path == f"vdb/shot_v007.{1000 + n:04d}.vdb"
    assert asset.GetFieldNameAttr().Get() == "density"


def _vdb_dense(grid, active, comp):
    """A grid's leaves, as tinyvdb parses them, laid into a dense (z, y, x, comp) array.
    tinyvdb 0.9.0 reports every leaf's origin as (0, 0, 0) and drops voxels in to_sparse
    when an internal node has more than 64 leaves (fixed upstream), so the leaves are
    placed in the order OpenVDB's format stores them: the 8^3 blocks that hold an active
    voxel, by 128^3 internal node, then by offset in it, each leaf's values x-major
    (coordToOffset)."""
    nz, ny, nx = active.shape
    px, py, pz = (-(-n // 8) for n in (nx, ny, nz))
    act = np.zeros((pz * 8, py * 8, px * 8), bool)
    act[:nz, :ny, :nx] = active
    has = act.reshape(pz, 8, py, 8, px, 8).any(axis=(1, 3, 5))           # (bz, by, bx)
    blocks = [(x, y, z) for x in range(px) for y in range(py) for z in range(pz) if has[z, y, x]]
    key = lambda c: (((c[0] // 16) << 10) + ((c[1] // 16) << 5) + (c[2] // 16),
                     ((c[0] % 16) << 8) + ((c[1] % 16) << 4) + (c[2] % 16))
    leaves = [grid.tree.node(k) for k in range(grid.tree.num_nodes)]
    leaves = [nd for nd in leaves if nd.type == "leaf"]
    assert len(leaves) == len(blocks)
    out = np.zeros((px * 8, py * 8, pz * 8, comp), np.float32)
    for c, nd in zip(sorted(blocks, key=key), leaves):
        out[c[0] * 8:c[0] * 8 + 8, c[1] * 8:c[1] * 8 + 8, c[2] * 8:c[2] * 8 + 8] = \
            np.frombuffer(nd.data, np.float32).reshape(8, 8, 8, comp)
    return np.transpose(out[:nx, :ny, :nz], (2, 1, 0, 3))
