"""The rubble's crevices (stages/render.py, crevices_darkened; kernels/occlusion.py):
screen-space ambient obscurance on the depth buffer, checked on depth images whose
geometry is known: planes that shade nothing, a block on the street that shades the
street at its foot, and the block's own open faces."""

from __future__ import annotations

import numpy as np
import pytest

from derrumbe.kernels.occlusion import obscurance, smoothed, spiral
from derrumbe.stages import render
from derrumbe.stages.camera import Camera

W, H, F = 320, 240, 300.0
EYE = 1.6


def _rays():
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    return (xs + 0.5 - W / 2) / F, -(ys + 0.5 - H / 2) / F        # x and y over the view depth


def _ob(z):
    raw, out = np.zeros(z.shape, np.float32), np.zeros(z.shape, np.float32)
    z = z.astype(np.float32)
    obscurance(z, F, W / 2, H / 2, render.AO_RADIUS_M, render.AO_BIAS, spiral(render.AO_SAMPLES), 2.0, 40.0, raw)
    smoothed(raw, z, 2, 0.03, out)
    return out


@pytest.mark.parametrize("tilt", [0.0, 0.5, 1.2])
def test_a_plane_shades_nothing_at_any_slant(tilt):
    """A flat face, whatever it turns toward, has nothing rising over it: its samples lie
    on its own plane. (The classic depth-only estimate darkens any slanted plane by half;
    this one must not, or every wall piece would go grey.)"""
    rx, ry = _rays()
    # The plane z = 8 + tilt * x (metres): turned about the vertical, seen at 8 m.
    z = 8.0 / (1.0 - tilt * rx)
    z = np.where(z > 0, z, 0.0)
    assert _ob(z).max() < 0.02


def test_a_block_on_the_street_shades_the_street_at_its_foot_not_far_from_it():
    """A block 1 m tall standing on the street 8 m away: the street right in front of its
    foot sees half its sky through the block and must be darkened; 2 m in front of it,
    past the sampling radius, not at all; the block's face toward the camera is open."""
    rx, ry = _rays()
    street = np.where(ry < -1e-6, EYE / np.maximum(-ry, 1e-6), 0.0)     # the ground plane, y = 0
    face = np.where(np.abs(rx * 8.0) < 2.0, 8.0, np.inf)                  # the block's face at z = 8 ...
    height = EYE + ry * 8.0                                              # ... height of the ray there
    block = np.where(height <= 1.0, face, np.inf)
    z = np.where(street > 0, np.minimum(street, block), np.where(np.isfinite(block), block, 0.0))
    ob = _ob(z)
    row_of = lambda d: int(round(H / 2 + F * EYE / d - 0.5))             # the street row at depth d
    col = W // 2
    foot = ob[row_of(7.9), col]
    assert foot > 0.03, foot
    vis_foot = 1.0 - render.AO_STRENGTH * foot
    assert vis_foot < 0.85                                               # a visible contact shade
    assert ob[row_of(6.0), col] < 0.005                                  # 2 m out: the open street
    face_row = int(round(H / 2 - F * (0.5 - EYE) / 8.0))                 # half way up the block's face
    assert ob[face_row, col] < 0.01


def test_crevices_darken_the_drawn_pieces_not_the_plates_own_pixels():
    """The shade goes on the drawn pieces' colour only: where a standing part shows the
    photo (static), the photo's own shading is kept."""
    from derrumbe.stages.render import FrameLayers
    rx, ry = _rays()
    street = np.where(ry < -1e-6, EYE / np.maximum(-ry, 1e-6), 0.0)
    block = np.where((np.abs(rx * 8.0) < 2.0) & (EYE + ry * 8.0 <= 1.0), 8.0, np.inf)
    z = np.where(street > 0, np.minimum(street, block), 0.0).astype(np.float32)
    col = np.ones((H, W, 4), np.float32)
    static = np.zeros((H, W), np.float32)
    static[:, : W // 2] = 1.0                                            # the left half: the plate's own
    layers = FrameLayers(col.copy(), static, np.ones((H, W), np.float32), 1, z.copy(), np.ones((H, W), np.float32))
    render.crevices_darkened(layers, Camera(W, H, F, W / 2, H / 2, EYE))
    out = layers.debris[..., 0]
    assert np.array_equal(out[:, : W // 2], col[:, : W // 2, 0])
    assert out[:, W // 2:].min() < 0.9 and (layers.debris[..., 3] == 1.0).all()
