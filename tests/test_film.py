"""Film: motion blur from the shutter, measured on a piece and a grain of grit of known
speed, and grain matched to the plate's own noise in level and size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from derrumbe.pipeline import shutter_seconds
from derrumbe.stages.camera import Camera

W, H, F_PX = 320, 180, 300.0
DEPTH = 20.0            # m from the camera
SPEED = 40.0            # m/s, to the right
FPS = 24


def _cube_scene(speed=SPEED, side=1.0):
    """One cube, side `side` m, on the camera's axis at DEPTH, flying right at `speed`."""
    from derrumbe.stages.fracture import BREAK, Fracture
    from derrumbe.stages.simulate import SimResult
    h = side / 2
    v = np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)], np.float32)
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = np.array([t for a, b, c, d in faces for t in ((a, b, c), (a, c, d))], np.int32)
    # Outward winding: flip a triangle whose normal points to the centre.
    for i, (a, b, c) in enumerate(tris):
        if np.dot(np.cross(v[b] - v[a], v[c] - v[a]), v[a] + v[b] + v[c]) < 0:
            tris[i] = (a, c, b)
    centre = np.array([[0.0, 1.6, -DEPTH]])
    one = np.zeros(1, np.int64)
    fr = Fracture(centroid=centre, verts=[v], tris=[tris], kinds=[np.full(len(tris), BREAK, np.int32)],
                  volume=np.array([side ** 3]), inside=np.ones(1), element=one, element_kind=one, storey=one,
                  piece=one, cluster=one, bonds=np.zeros((0, 2), np.int64), bond_area=np.zeros(0),
                  box_lo=centre[0] - 5, box_hi=centre[0] + 5, facade_z=-DEPTH, floor_y=np.zeros(1))
    times = np.arange(0, 1.0, 1 / 240)
    pos = centre[None] + np.array([speed, 0, 0])[None, None] * (times - 0.5)[:, None, None]
    quat = np.tile(np.array([1.0, 0, 0, 0]), (len(times), 1, 1))
    sim = SimResult(times=times, pos=pos, quat=quat, dissipated=np.zeros(len(times)), released=np.zeros(1),
                    mass=np.ones(1), info={})
    return fr, sim


def _renderer(fr, sim):
    from derrumbe.stages.render import DebrisRenderer, Lighting
    cam = Camera(W, H, F_PX, W / 2, H / 2, 1.6)
    plate = np.full((H, W, 3), 0.3, np.float32)
    light = Lighting(sun_dir=np.array([0.3, 0.8, 0.5]) / np.linalg.norm([0.3, 0.8, 0.5]),
                     sun_col=np.ones(3), amb_col=np.full(3, 0.3), facade_albedo=np.full(3, 0.5))
    rest = sim.pos[0] - np.array([[0, 0, 100.0]])      # its rest pose far away: it is "moving"
    # The matte says where the building stood: everywhere here (a piece outside it is not drawn).
    return DebrisRenderer(fr, cam, plate, np.ones((H, W), np.float32), light, np.full(3, 0.6), 0.5, rest,
                          sim.quat[0])


def _spread_px(alpha_row: np.ndarray) -> float:
    """Standard deviation (px) of the coverage along a row: a box of width w has w²/12,
    a box blurred over a travel L has (w² + L²)/12."""
    x = np.arange(len(alpha_row))
    a = np.clip(alpha_row, 0, None)
    m = (a * x).sum() / a.sum()
    return float(np.sqrt((a * (x - m) ** 2).sum() / a.sum()))


@pytest.mark.parametrize("deg", [90.0, 180.0, 360.0])
def test_a_piece_blurs_over_its_travel_during_the_shutter(deg):
    fr, sim = _cube_scene()
    r = _renderer(fr, sim)
    try:
        sharp = r.render(sim, 0.5, 0.0, 1).debris[..., 3]
        blurred = r.render(sim, 0.5, shutter_seconds(deg, FPS), 64, None, 1.0).debris[..., 3]
    finally:
        r.release()
    row = int(H / 2)
    s0, s1 = _spread_px(sharp[row]), _spread_px(blurred[row])
    measured = np.sqrt(12 * (s1 ** 2 - s0 ** 2))
    expected = F_PX * SPEED / DEPTH * deg / 360 / FPS         # px travelled while the shutter is open
    assert abs(measured - expected) < 0.06 * expected + 0.5, (deg, measured, expected)
    # The blur keeps the piece's coverage: it spreads, it does not fade or grow (within a
    # pixel: each sub-frame is rasterised without anti-aliasing).
    assert abs(blurred[row].sum() - sharp[row].sum()) <= 1.0


def test_grit_streaks_over_the_shutter():
    from derrumbe.stages.particles import Particles
    fr, sim = _cube_scene()
    times = sim.times
    start = np.array([0.0, 1.6, -DEPTH])
    pos = (start + np.array([SPEED, 0, 0]) * (times - 0.5)[:, None])[:, None, :]
    grit = Particles(times=times, pos=pos.astype(np.float32), radius=np.array([0.05]), born=np.zeros(1),
                     albedo=np.full((1, 3), 0.5))
    fr.centroid[:] = [[0, -50.0, -DEPTH]]              # the cube out of view: the grain of grit alone
    sim.pos[:] = fr.centroid[None]
    r = _renderer(fr, sim)
    try:
        a180 = r.render(sim, 0.5, shutter_seconds(180, FPS), 8, grit, 3.0).debris[..., 3]
        a0 = r.render(sim, 0.5, 0.0, 1, grit, 3.0).debris[..., 3]
    finally:
        r.release()
    length = lambda a: np.ptp(np.nonzero(a.max(axis=0) > 0.02)[0]) + 1
    expected = F_PX * SPEED / DEPTH / 2 / FPS
    assert abs((length(a180) - length(a0)) - expected) < 0.15 * expected + 2, (length(a180), length(a0), expected)


def test_shutter_is_a_spec_field_in_the_frames_key_and_the_manifest(tiny_shot):
    from derrumbe.pipeline import shot_keys
    from derrumbe.spec import ShotSpec, check_field
    from derrumbe.errors import DerrumbeError
    _, manifest = tiny_shot
    assert manifest["spec"]["shutter"] == 180.0 and manifest["render"]["shutter_deg"] == 180.0
    assert manifest["render"]["shutter_s"] == pytest.approx(0.5 / manifest["fps"], abs=1e-6)
    for bad in (-1, 361, "inf"):
        with pytest.raises(DerrumbeError):
            check_field("shutter", bad)
    spec = ShotSpec(plate="p.png", box=[0, 0, 10, 10], fps=24, duration=2.0)
    digests = dict(plate="x", mask=None, holdout=None)
    a = shot_keys(spec, digests, (64, 36))
    b = shot_keys(ShotSpec(**{**spec.__dict__, "shutter": 90.0}), digests, (64, 36))
    assert [k for k in a if a[k] != b[k]] == ["frames"]
    assert json.dumps(ShotSpec.from_toml(spec.to_toml()).to_dict()) == json.dumps(spec.to_dict())
