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


def test_a_broken_face_is_shaded_as_one_bent_surface_and_its_edges_stay_sharp():
    """The roughness field bends each broken face; the drawn normals follow the bend
    smoothly (the cut triangles meeting at a point of one face share its normal there, so
    no facet a decimetre across shows: lit triangle by triangle, the rubble near img_190's
    lens read as low-poly crystals), while where two faces of a piece meet, at its edges,
    each keeps its own: the edge stays a crease."""
    fr = _building(300)
    data, frag, kinds, parent = triangle_soup(fr, seed=1)
    rest = data[:, 6:9].astype(np.float64)
    nrm = data[:, 3:6].astype(np.float64)
    brk = np.repeat(kinds == BREAK, 3)
    hull = np.concatenate([np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
                           for v, t in zip(fr.verts, fr.tris)]).astype(np.float64)
    hull /= np.linalg.norm(hull, axis=1, keepdims=True)
    # Cut triangles of one hull triangle (surely one face) meeting at a point: one normal.
    at = np.hstack([np.repeat(parent, 3)[:, None], np.round(rest, 5)])
    same_face, spread_in_face, across_edges = {}, [], []
    for key, n in zip(map(tuple, at[brk]), nrm[brk]):
        same_face.setdefault(key, []).append(n)
    for ns in same_face.values():
        ns = np.array(ns)
        spread_in_face.append(np.abs(ns - ns[0]).max())
    assert max(spread_in_face) < 1e-3
    # The drawn triangles of a face do bend (the field is there to shade) ...
    tri = rest.reshape(-1, 3, 3)[kinds == BREAK]
    own = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    own /= np.maximum(np.linalg.norm(own, axis=1, keepdims=True), 1e-12)
    tilt = np.degrees(np.arccos(np.clip((own * hull[parent][kinds == BREAK]).sum(1), -1, 1)))
    assert np.percentile(tilt, 90) > 5.0
    # ... and a point on an edge, shared by two faces, has two normals far apart.
    by_point = {}
    point = np.hstack([np.repeat(frag, 3)[:, None], np.round(rest, 5)])
    face = np.repeat(np.round(hull[parent], 2), 3, axis=0)
    for key, n, f in zip(map(tuple, point[brk]), nrm[brk], map(tuple, face[brk])):
        by_point.setdefault(key, {})[f] = n
    for faces in by_point.values():
        if len(faces) >= 2:
            a, b = list(faces.values())[:2]
            across_edges.append(np.degrees(np.arccos(np.clip(a @ b, -1, 1))))
    assert len(across_edges) > 100 and np.median(across_edges) > 30.0
