"""USD export: the plate camera and every debris piece, animated, for a TD to open in a DCC.

The stage is y-up, in metres (metersPerUnit 1), one time code per plate frame starting at
the shot's first frame, so it lines up with the rendered frames and the plate. Each piece
is one Mesh whose points stay in the piece's local frame and whose pose is a translate +
orient pair, sampled at frame times with the same interpolation the renderer uses; a
DCC then sees rigid bodies it can retime, instance or re-simulate, not a vertex cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pxr import Gf, Sdf, Tf, Usd, UsdGeom, UsdVol, Vt

from derrumbe.stages.camera import FILM_WIDTH_MM, Camera
from derrumbe.stages.fracture import Fracture
from derrumbe.files import publish, temp_path
from derrumbe.stages.poses import sample_pose
from derrumbe.stages.simulate import SimResult

# UsdGeomCamera measures focal length and filmback in tenths of a scene unit (mm only on
# a centimetre stage). This stage is in metres, so 26 mm is authored as 0.26: importers
# that follow the schema (usdview, Blender, Omniverse) get the right lens; the framing
# depends only on ratios and is right in any case. The lens in mm is also kept as
# derrumbe:lens:focalLengthMM for a reader that wants the familiar number.
LENS_UNITS_PER_MM = 0.01

# Held pieces are bit-for-bit still in the solver, so tiny tolerances suffice; anything
# that truly moves moves by far more than these within a shot.
STILL_M = 1e-5
STILL_Q = 1e-6

CLIP_RANGE_M = (0.1, 10000.0)
CONCRETE_GREY = (0.5, 0.5, 0.48)
FORMATS = {".usda": ".usda", ".usdc": ".usdc", ".usd": ".usdc"}


def write_usd(path: Path, fr: Fracture, sim: SimResult, cam: Camera, fps: int, first_frame: int,
              n_frames: int, name: str, vdb_files: dict | None = None) -> dict:
    """Writes the stage atomically to `path` (.usda text, .usdc/.usd binary); returns manifest facts.
    vdb_files: frame number -> path of that frame's dust .vdb, relative to the USD file."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"USD path must end in .usda, .usdc or .usd: {path}")
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1")

    stage = Usd.Stage.CreateInMemory()
    root_name = Tf.MakeValidIdentifier(name or "shot")
    end_frame = first_frame + n_frames - 1
    pos, quat = _frame_poses(sim, fps, n_frames)
    moving = _moving(pos, quat)

    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetStartTimeCode(first_frame)
    stage.SetEndTimeCode(end_frame)
    stage.SetTimeCodesPerSecond(fps)
    stage.SetFramesPerSecond(fps)
    root = UsdGeom.Xform.Define(stage, f"/{root_name}")
    stage.SetDefaultPrim(root.GetPrim())
    stage.GetRootLayer().documentation = f"derrumbe destruction export: {name}"
    _write_camera(stage, f"/{root_name}/camera", cam)
    UsdGeom.Xform.Define(stage, f"/{root_name}/pieces")
    gone = _gone_frame(sim, fps, n_frames)
    _write_pieces(stage, f"/{root_name}/pieces", fr, pos, quat, moving, first_frame, gone)
    if vdb_files:
        _write_dust(stage, f"/{root_name}/dust", vdb_files)

    _export_atomically(stage.GetRootLayer(), path, fmt)
    return {
        "file": path.name,
        "format": fmt.lstrip("."),
        "default_prim": f"/{root_name}",
        "camera": f"/{root_name}/camera",
        "pieces": int(fr.n),
        "pieces_animated": int(moving.sum()),
        "dust_volume": f"/{root_name}/dust" if vdb_files else None,
        "pieces_pulverised": int((gone < n_frames).sum()),
        "start_time_code": int(first_frame),
        "end_time_code": int(end_frame),
        "fps": int(fps),
        "meters_per_unit": 1.0,
        "up_axis": "Y",
    }


def _frame_poses(sim: SimResult, fps: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Poses at frame times exactly as the renderer samples them, quaternions kept continuous."""
    ps, qs = zip(*(sample_pose(sim, i / fps) for i in range(n_frames)))
    pos = np.asarray(ps, np.float64)
    quat = np.asarray(qs, np.float64)
    # q and -q are the same rotation, but a sign flip between samples makes slerp (or a
    # DCC's component-wise lerp) spin the long way round: keep each one in the previous
    # one's hemisphere.
    if n_frames > 1:
        flip = np.einsum("fnk,fnk->fn", quat[1:], quat[:-1]) < 0
        sign = np.concatenate([np.ones((1, quat.shape[1])), np.cumprod(np.where(flip, -1.0, 1.0), 0)])
        quat *= sign[..., None]
    return pos, quat


def _gone_frame(sim: SimResult, fps: int, n_frames: int) -> np.ndarray:
    """The first frame at which each fragment has been pulverised (n_frames: never)."""
    n = sim.pos.shape[1]
    if sim.hidden is None:
        return np.full(n, n_frames)
    return np.minimum(np.ceil(sim.hidden * fps - 1e-9), n_frames).astype(int)


def _moving(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """Pieces whose pose changes at all over the shot: only these need time samples."""
    dp = np.abs(pos - pos[:1]).max(axis=(0, 2))
    dq = np.abs(quat - quat[:1]).max(axis=(0, 2))
    return (dp > STILL_M) | (dq > STILL_Q)


def _write_dust(stage: Usd.Stage, prim_path: str, vdb_files: dict) -> None:
    """The dust as a UsdVol Volume whose fields are the .vdb sequence's grids (file path
    time-sampled per frame; the grids are already in the stage's world space)."""
    vol = UsdVol.Volume.Define(stage, prim_path)
    for grid in ("density", "temperature", "velocity"):
        asset = UsdVol.OpenVDBAsset.Define(stage, f"{prim_path}/{grid}")
        asset.CreateFieldNameAttr(grid)
        attr = asset.CreateFilePathAttr()
        for frame, rel in sorted(vdb_files.items()):
            attr.Set(Sdf.AssetPath(str(rel)), float(frame))
        vol.CreateFieldRelationship(grid, asset.GetPath())


def _write_camera(stage: Usd.Stage, prim_path: str, cam: Camera) -> None:
    c = UsdGeom.Camera.Define(stage, prim_path)
    mm_per_px = FILM_WIDTH_MM / cam.width
    s = LENS_UNITS_PER_MM
    c.CreateProjectionAttr(UsdGeom.Tokens.perspective)
    c.CreateFocalLengthAttr(float(cam.focal_mm * s))
    c.CreateHorizontalApertureAttr(float(FILM_WIDTH_MM * s))
    c.CreateVerticalApertureAttr(float(cam.height * mm_per_px * s))
    # An offset moves the film window against the lens axis, in film coordinates, x right
    # and y UP. A principal point right of the image centre leaves more film to the left
    # of the axis: a negative x offset. Image rows grow DOWN, so a principal point below
    # the centre (cy > h/2) leaves more film above the axis: a positive y offset.
    c.CreateHorizontalApertureOffsetAttr(float((cam.width / 2 - cam.cx) * mm_per_px * s))
    c.CreateVerticalApertureOffsetAttr(float((cam.cy - cam.height / 2) * mm_per_px * s))
    c.CreateClippingRangeAttr(Gf.Vec2f(*CLIP_RANGE_M))
    # A level camera looking down -z with y up is USD's rest orientation: only a lift.
    c.AddTranslateOp().Set(Gf.Vec3d(0.0, float(cam.eye_m), 0.0))
    prim = c.GetPrim()
    # The plate's pixel intrinsics, so a matchmove check needs no unit conversion.
    for key, value in (("width", cam.width), ("height", cam.height)):
        prim.CreateAttribute(f"derrumbe:plate:{key}", Sdf.ValueTypeNames.Int, custom=True).Set(int(value))
    for key, value in (("focalPx", cam.f_px), ("cx", cam.cx), ("cy", cam.cy)):
        prim.CreateAttribute(f"derrumbe:plate:{key}", Sdf.ValueTypeNames.Double, custom=True).Set(float(value))
    prim.CreateAttribute("derrumbe:lens:focalLengthMM", Sdf.ValueTypeNames.Double, custom=True).Set(
        float(cam.focal_mm))


def _write_pieces(stage: Usd.Stage, parent: str, fr: Fracture, pos: np.ndarray, quat: np.ndarray,
                  moving: np.ndarray, first_frame: int, gone: np.ndarray) -> None:
    layer = stage.GetRootLayer()
    times = [float(first_frame + i) for i in range(len(pos))]
    grey = Vt.Vec3fArray([Gf.Vec3f(*CONCRETE_GREY)])
    # Gf.Quatf is laid out (x, y, z, w) in memory: reorder once for FromNumpy.
    quat_xyzw = np.ascontiguousarray(quat[..., [1, 2, 3, 0]], np.float32)
    pos = np.ascontiguousarray(pos)
    animated = []
    for i in range(fr.n):
        v = np.ascontiguousarray(fr.verts[i], np.float32)
        t = np.ascontiguousarray(fr.tris[i], np.int32)
        mesh = UsdGeom.Mesh.Define(stage, f"{parent}/piece_{i:04d}")
        mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(v))
        mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(t), 3, np.int32)))
        mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(t.ravel()))
        # The fracture winds triangles counter-clockwise seen from outside (positive
        # signed volume), which is exactly USD's rightHanded convention: no flip needed.
        mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        mesh.CreateDoubleSidedAttr(False)
        mesh.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.stack([v.min(0), v.max(0)])))
        mesh.CreateDisplayColorPrimvar(UsdGeom.Tokens.constant).Set(grey)
        # Double-precision translate: pieces can be 100 m from the origin, where float
        # steps are ~8 µm and rounding would make resting rubble shimmer.
        t_op = mesh.AddTranslateOp(UsdGeom.XformOp.PrecisionDouble)
        r_op = mesh.AddOrientOp(UsdGeom.XformOp.PrecisionFloat)
        if gone[i] < len(pos):
            # Ground to dust under the crush front: it disappears, as in the render.
            vis = mesh.CreateVisibilityAttr()
            vis.Set(UsdGeom.Tokens.inherited, float(first_frame))
            vis.Set(UsdGeom.Tokens.invisible, float(first_frame + gone[i]))
        if moving[i]:
            animated.append((i, t_op.GetAttr().GetPath(), r_op.GetAttr().GetPath()))
        else:
            t_op.Set(Gf.Vec3d(*map(float, pos[0, i])))
            r_op.Set(Gf.Quatf(*map(float, quat[0, i])))

    # The samples go straight into the layer under one change block: UsdAttribute.Set
    # would resolve, validate and send a change notice per call, and 500 pieces x 144
    # frames x 2 ops is 10^5 calls. (Prims are defined above, outside the block, because
    # the Usd API must see each new prim composed before it can author on it.)
    with Sdf.ChangeBlock():
        for i, t_path, r_path in animated:
            ps = Vt.Vec3dArray.FromNumpy(pos[:, i])
            qs = Vt.QuatfArray.FromNumpy(quat_xyzw[:, i])
            for f, tc in enumerate(times):
                layer.SetTimeSample(t_path, tc, ps[f])
                layer.SetTimeSample(r_path, tc, qs[f])


def _export_atomically(layer: Sdf.Layer, path: Path, fmt: str) -> None:
    # USD picks the file format from the extension, so the temporary name keeps it.
    tmp = temp_path(path, fmt)
    try:
        if not layer.Export(str(tmp)):
            raise OSError(f"USD could not write {tmp.name}")
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
