"""A box as a closed triangle mesh, for tests that render or simulate one piece."""

import numpy as np


def box_mesh(hx: float, hy: float, hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (8, 3) of a box of half sizes hx, hy, hz about the origin and its 12
    triangles, wound outward."""
    v = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (-hz, hz)], np.float32)
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = np.array([t for a, b, c, d in faces for t in ((a, b, c), (a, c, d))], np.int32)
    for i, (a, b, c) in enumerate(tris):
        if np.dot(np.cross(v[b] - v[a], v[c] - v[a]), v[a] + v[b] + v[c]) < 0:
            tris[i] = (a, c, b)
    return v, tris
