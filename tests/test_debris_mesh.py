"""The pieces as drawn: broken faces ragged at the centimetre-to-decimetre scale of
broken masonry, cast faces flat, every piece closed, and pieces that still touch
meeting along one seam (the roughness is one field of rest position)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from derrumbe.stages.debris_mesh import ROUGH_M, triangle_soup
from derrumbe.stages.fracture import BREAK, FRONT
from tests.test_debris_look import _building


@pytest.fixture(scope="module")
def drawn():
    fr = _building(300)
    data, frag, kinds, parent = triangle_soup(fr, seed=1)
    return fr, data[:, 6:9].reshape(-1, 3, 3).astype(np.float64), frag, kinds, parent


def _area(t, n):
    """Signed area along n: a triangle folded over counts against, so the sum is the area
    the faces' outline encloses, whatever moved inside it."""
    return 0.5 * (np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]) @ n).sum()


def test_every_piece_is_drawn_closed(drawn):
    """Each edge of a piece's drawn mesh is shared by exactly two of its triangles: no
    crack opens where a broken face meets the flat wall beside it."""
    fr, rest, frag, _, _ = drawn
    for i in range(0, fr.n, 7):
        c = Counter()
        for tri in np.round(rest[frag == i], 5):
            for a, b in ((0, 1), (1, 2), (2, 0)):
                c[tuple(sorted((tuple(tri[a]), tuple(tri[b]))))] += 1
        assert set(c.values()) == {2}, i


def test_broken_faces_are_ragged_and_the_walls_face_stays_flat(drawn):
    """Break faces leave their hull's plane by up to about ROUGH_M; the facade's outer face
    keeps its plane to the micrometre (the plate is projected onto it) and its area, so
    the pieces still tile the facade: no gap or overlap between neighbours' seams."""
    fr, rest, frag, kinds, parent = drawn
    hull = np.concatenate([fr.verts[i][fr.tris[i]] + fr.centroid[i] for i in range(fr.n)]).astype(np.float64)
    n = np.cross(hull[:, 1] - hull[:, 0], hull[:, 2] - hull[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    off = np.abs(((rest - hull[parent][:, :1]) * n[parent][:, None, :]).sum(-1))       # distance off the hull's plane
    brk, front = kinds == BREAK, kinds == FRONT
    assert np.percentile(off[brk].max(axis=1), 95) > 0.4 * ROUGH_M
    assert off[brk].max() < 1.5 * ROUGH_M
    assert off[front].max() < 1e-5
    z = np.array([0.0, 0.0, 1.0])
    assert abs(_area(rest[front], z) / _area(hull[np.isin(np.arange(len(hull)), parent[front])], z) - 1) < 1e-4
    flipped = np.cross(rest[front][:, 1] - rest[front][:, 0], rest[front][:, 2] - rest[front][:, 0]) @ z < 0
    assert flipped.mean() < 0.01                          # the photo's face is not folded over
