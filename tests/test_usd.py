"""The USD export read back through USD itself: stage metadata, a camera that frames the
plate pixel for pixel, rigid pieces that sit exactly where the synthetic motion put them.

Expectations come from first principles, not from derrumbe's own helpers: the plate's
pinhole (a level camera at eye height looking down -Z, rows running down), the drop's
half g t squared and the spin's axis-angle rotation (Rodrigues)."""

import os

import numpy as np
import pytest
from pxr import Gf, Usd, UsdGeom

from derrumbe.materials import MATERIALS
from derrumbe.stages.camera import Camera, Placement
from derrumbe.stages.fracture import fracture_building
from derrumbe.stages.simulate import SimResult
from derrumbe.stages.usd_export import write_usd

G = 9.81
FILM_WIDTH_MM = 36.0               # 35 mm-equivalent filmback (README)
USD_UNITS_PER_MM = 0.01            # lens in tenths of a metre scene unit: 26 mm -> 0.26 (README)

FPS, FIRST, N_FRAMES = 24, 1001, 36
DROP_T = 0.25                      # the falling piece lets go here
SPIN = 3.0                         # rad/s about AXIS once it falls
AXIS = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
# Principal point off-centre on BOTH axes, so a wrong aperture-offset sign cannot pass.
CAM = Camera(640, 360, 460.0, 300.0, 330.0, 1.6)


def _scene():
    place = Placement(depth_m=40.0, x0_m=-6, x1_m=6, height_m=15.0, proxy_height_m=15.0,
                      base_row=348, top_row=175, floors=4.5, height_source="test")
    fr = fracture_building(CAM, place, np.ones((360, 640), np.float32), "implosion", "toward",
                           MATERIALS["concrete"], 40, 3)
    falling = int(np.argmax(fr.centroid[:, 1]))
    resting = int(np.argmin(fr.centroid[:, 1]))
    # Sampled at 96 Hz, denser than the frames, as the solver hands it over.
    times = np.arange(0.0, N_FRAMES / FPS + 0.1, 1 / 96)
    T, N = len(times), fr.n
    pos = np.repeat(fr.centroid[None].astype(np.float64), T, 0)
    quat = np.zeros((T, N, 4))
    quat[..., 0] = 1.0
    dt = np.maximum(times - DROP_T, 0.0)
    pos[:, falling, 1] -= 0.5 * G * dt ** 2
    half = SPIN * dt / 2
    quat[:, falling, 0] = np.cos(half)
    quat[:, falling, 1:] = np.sin(half)[:, None] * AXIS
    # q and -q are one rotation: the solver may hand either, so alternate them.
    quat[1::2, falling] *= -1
    sim = SimResult(times, pos, quat, np.zeros(T), np.full(N, np.inf), np.ones(N), {})
    return fr, sim, falling, resting


@pytest.fixture(scope="module")
def scene():
    return _scene()


@pytest.fixture(scope="module", params=[".usda", ".usdc"])
def written(request, scene, tmp_path_factory):
    fr, sim, _, _ = scene
    path = tmp_path_factory.mktemp("usd") / f"shot{request.param}"
    info = write_usd(path, fr, sim, CAM, FPS, FIRST, N_FRAMES, "my shot-01")
    stage = Usd.Stage.Open(str(path))
    assert stage, f"USD could not open {path}"
    return path, info, stage


def _pinhole(p):
    """World point to plate pixels: u = cx + f X / -Z, v = cy - f (Y - eye) / -Z."""
    depth = -p[2]
    return np.array([CAM.cx + CAM.f_px * p[0] / depth, CAM.cy - CAM.f_px * (p[1] - CAM.eye_m) / depth])


def _rotation(axis, angle):
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _piece(stage, i):
    return stage.GetPrimAtPath(f"/my_shot_01/pieces/piece_{i:04d}")


def _usd_project(stage, p, tc):
    """World point to plate pixels through USD's own camera maths (row vectors, NDC y up)."""
    gf = UsdGeom.Camera(stage.GetPrimAtPath("/my_shot_01/camera")).GetCamera(Usd.TimeCode(tc))
    fru = gf.frustum
    c = Gf.Vec4d(*map(float, p), 1.0) * (fru.ComputeViewMatrix() * fru.ComputeProjectionMatrix())
    x, y = c[0] / c[3], c[1] / c[3]
    return np.array([(x + 1) / 2 * CAM.width, (1 - y) / 2 * CAM.height])


def test_stage_metadata_and_layout(written):
    path, info, stage = written
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert stage.GetStartTimeCode() == FIRST
    assert stage.GetEndTimeCode() == FIRST + N_FRAMES - 1
    assert stage.GetTimeCodesPerSecond() == FPS
    assert stage.GetFramesPerSecond() == FPS
    root = stage.GetDefaultPrim()
    assert root.GetPath() == "/my_shot_01" and root.IsA(UsdGeom.Xform)
    assert stage.GetPrimAtPath("/my_shot_01/camera").IsA(UsdGeom.Camera)
    assert stage.GetPrimAtPath("/my_shot_01/pieces").IsValid()
    assert info["file"] == path.name
    assert (info["start_time_code"], info["end_time_code"], info["fps"]) == (FIRST, FIRST + N_FRAMES - 1, FPS)
    assert info["default_prim"] == "/my_shot_01"


def test_camera_lens_and_projection_match_the_plate(written):
    _, _, stage = written
    cam = UsdGeom.Camera(stage.GetPrimAtPath("/my_shot_01/camera"))
    s = USD_UNITS_PER_MM
    assert cam.GetFocalLengthAttr().Get() == pytest.approx(CAM.f_px * FILM_WIDTH_MM / CAM.width * s, rel=1e-6)
    assert cam.GetHorizontalApertureAttr().Get() == pytest.approx(FILM_WIDTH_MM * s, rel=1e-6)
    assert cam.GetVerticalApertureAttr().Get() == pytest.approx(FILM_WIDTH_MM * CAM.height / CAM.width * s, rel=1e-6)
    near, far = cam.GetClippingRangeAttr().Get()
    assert near == pytest.approx(0.1) and far >= 1000
    eye = cam.ComputeLocalToWorldTransform(Usd.TimeCode(FIRST)).ExtractTranslation()
    assert np.allclose(eye, [0, CAM.eye_m, 0])
    # Points all over the frame and at several depths land on the plate's pixels.
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(-15, 15, 20), rng.uniform(0, 25, 20), rng.uniform(-80, -5, 20)])
    pts = np.vstack([pts, [[0, CAM.eye_m, -30]]])          # on the axis: the principal point
    for p in pts:
        for tc in (FIRST, FIRST + N_FRAMES - 1):
            assert np.allclose(_usd_project(stage, p, tc), _pinhole(p), atol=1e-3), p
    assert np.allclose(_usd_project(stage, pts[-1], FIRST), [CAM.cx, CAM.cy], atol=1e-3)


def test_one_closed_outward_triangle_mesh_per_piece(written, scene):
    fr, _, _, _ = scene
    _, _, stage = written
    meshes = [p for p in stage.GetPrimAtPath("/my_shot_01/pieces").GetChildren() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == fr.n
    for i in range(fr.n):
        m = UsdGeom.Mesh(_piece(stage, i))
        pts = np.array(m.GetPointsAttr().Get())
        idx = np.array(m.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3)
        assert np.all(np.array(m.GetFaceVertexCountsAttr().Get()) == 3)
        assert np.allclose(pts, fr.verts[i], atol=1e-6)
        assert m.GetSubdivisionSchemeAttr().Get() == UsdGeom.Tokens.none
        assert m.GetOrientationAttr().Get() == UsdGeom.Tokens.rightHanded
        # Right-handed winding of an outward-facing closed mesh encloses positive volume.
        a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
        assert (a * np.cross(b, c)).sum() / 6 == pytest.approx(fr.volume[i], rel=1e-3)
        lo, hi = np.array(m.GetExtentAttr().Get())
        assert np.all(pts >= lo - 1e-6) and np.all(pts <= hi + 1e-6)
        colour = m.GetDisplayColorPrimvar()
        assert colour.GetInterpolation() == UsdGeom.Tokens.constant and len(colour.Get()) == 1


def test_falling_piece_follows_the_renderers_pose(written, scene):
    fr, sim, falling, _ = scene
    _, _, stage = written
    xf = UsdGeom.Xformable(_piece(stage, falling))
    ops = xf.GetOrderedXformOps()
    assert [op.GetOpType() for op in ops] == [UsdGeom.XformOp.TypeTranslate, UsdGeom.XformOp.TypeOrient]
    assert all(op.GetNumTimeSamples() == N_FRAMES for op in ops)
    local = fr.verts[falling].astype(np.float64)
    for f in (0, 5, 6, 12, 21, N_FRAMES - 1):
        t = f / FPS                     # frames fall on the 96 Hz samples: no interpolation
        dt = max(t - DROP_T, 0.0)
        p = fr.centroid[falling] - [0.0, 0.5 * G * dt ** 2, 0.0]
        M = np.array(xf.ComputeLocalToWorldTransform(Usd.TimeCode(FIRST + f)))
        assert np.allclose(M[3, :3], p, atol=1e-4), f
        # Every vertex where the motion put it: R v + p (USD multiplies row vectors).
        world = np.c_[local, np.ones(len(local))] @ M
        want = local @ _rotation(AXIS, SPIN * dt).T + p
        assert np.allclose(world[:, :3], want, atol=1e-4), f
    assert fr.centroid[falling, 1] - M[3, 1] > 5.0        # it really fell


def test_rotation_samples_are_continuous_and_turn_the_short_way(written, scene):
    # The sim alternates q and -q; between two frames USD must still turn by SPIN/FPS, not
    # by nearly a full turn, or motion blur and retimes in a DCC would whirl.
    fr, sim, falling, _ = scene
    _, _, stage = written
    xf = UsdGeom.Xformable(_piece(stage, falling))
    # USD's own slerp takes the short arc whatever the signs, but importers that lerp
    # components or convert to Euler do not: the samples themselves must be continuous.
    orient = xf.GetOrderedXformOps()[1]
    q = np.array([[v.GetReal(), *v.GetImaginary()] for v in
                  (orient.Get(Usd.TimeCode(tc)) for tc in orient.GetTimeSamples())])
    assert np.all((q[1:] * q[:-1]).sum(1) > 0.9)
    for f in (10, 20, 30):
        Ma = np.array(xf.ComputeLocalToWorldTransform(Usd.TimeCode(FIRST + f)))[:3, :3]
        Mh = np.array(xf.ComputeLocalToWorldTransform(Usd.TimeCode(FIRST + f + 0.5)))[:3, :3]
        angle = np.degrees(np.arccos(np.clip((np.trace(Ma.T @ Mh) - 1) / 2, -1, 1)))
        assert angle == pytest.approx(np.degrees(SPIN / FPS / 2), abs=0.05)


def test_resting_pieces_have_one_value_and_no_time_samples(written, scene):
    fr, _, falling, resting = scene
    _, info, stage = written
    assert info["pieces"] == fr.n and info["pieces_animated"] == 1
    xf = UsdGeom.Xformable(_piece(stage, resting))
    ops = xf.GetOrderedXformOps()
    assert len(ops) == 2 and all(op.GetNumTimeSamples() == 0 for op in ops)
    for tc in (FIRST, FIRST + 17, FIRST + N_FRAMES - 1):
        M = np.array(xf.ComputeLocalToWorldTransform(Usd.TimeCode(tc)))
        assert np.allclose(M[3, :3], fr.centroid[resting], atol=1e-5)
        assert np.allclose(M[:3, :3], np.eye(3), atol=1e-6)
    animated = [i for i in range(fr.n)
                if UsdGeom.Xformable(_piece(stage, i)).GetOrderedXformOps()[0].GetNumTimeSamples()]
    assert animated == [falling]


def test_both_formats_write_atomically_and_leave_no_temp_files(scene, tmp_path, monkeypatch):
    fr, sim, _, _ = scene
    args = (fr, sim, CAM, FPS, FIRST, N_FRAMES, "shot")
    write_usd(tmp_path / "a.usda", *args)
    write_usd(tmp_path / "b.usdc", *args)
    write_usd(tmp_path / "c.usd", *args)
    write_usd(tmp_path / "a.usda", *args)          # over an existing file
    assert sorted(os.listdir(tmp_path)) == ["a.usda", "b.usdc", "c.usd"]
    assert (tmp_path / "a.usda").read_bytes().startswith(b"#usda")
    assert (tmp_path / "b.usdc").read_bytes().startswith(b"PXR-USDC")
    assert (tmp_path / "c.usd").read_bytes().startswith(b"PXR-USDC")
    for name in ("a.usda", "b.usdc", "c.usd"):
        assert Usd.Stage.Open(str(tmp_path / name)).GetDefaultPrim().GetPath() == "/shot"

    # A failure at the last step leaves the previous file whole and no temporary behind.
    before = (tmp_path / "b.usdc").read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_usd(tmp_path / "b.usdc", *args)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["a.usda", "b.usdc", "c.usd"]
    assert (tmp_path / "b.usdc").read_bytes() == before
    with pytest.raises(ValueError):
        write_usd(tmp_path / "d.abc", *args)
    assert sorted(os.listdir(tmp_path)) == ["a.usda", "b.usdc", "c.usd"]
