"""What the renderer draws of the fracture: one triangle soup with the attributes its
shaders need, and the reinforcing bars that stick out of broken concrete.

Per vertex: the fragment-local position and normal, the rest position (the plate is
projected from it, the procedural materials are evaluated at it, so texture sticks to
the piece), the face kind, the fragment, the element kind, how deep the point lies in its
wall (the plaster and render skins are the first centimetres of either face) and its
distance to each of the triangle's three edges in metres, where only real edges of the
fragment count (not the diagonals that split a flat face into triangles): the shaders
chip and bevel along those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derrumbe.stages.fracture import BREAK, Fracture
from derrumbe.stages.structure import GLASS, SLAB

FLOATS = 17                   # per vertex: pos 3, nrm 3, rest 3, kind, id, edge 3, elem, d_out, d_in
LAYOUT = "3f 3f 3f 1f 1f 3f 1f 1f 1f"
NAMES = ("in_pos", "in_nrm", "in_rest", "in_kind", "in_id", "in_edge", "in_elem", "in_dout", "in_din")
FAR_EDGE = 1e3                # the "distance" to an edge that is not one
COPLANAR = 0.9995             # two triangles this parallel are one face of the hull

# Broken faces are not the flat planes of the solver's convex hulls: every drawn point
# is moved by one smooth field of rest position (the same for every fragment, so pieces
# that still touch meet along the same ragged seam), faces cast flat (the wall's outside
# and inside, slabs' tops, glass) only within their own plane, so a wall stays flat and
# its photo unstretched while its broken outline and every break are ragged. Drawn as
# the hulls, pieces read as Voronoi cells and clean blocks ("puzzle pieces", img_263).
ROUGH_M = 0.12                # the field's amplitude (broken masonry and concrete: cm to dm)
ROUGH_WAVE_M = 0.3            # its longest wavelength, about the cut edges' length, so a break
                              # zigzags (at 0.55 m it waved: slabs read as rubber, img_263);
                              # a second octave at half, half as strong
ROUGH_SPLITS = 3              # every triangle's edges cut in this many, the same everywhere
ROUGH_FULL_M = 0.3            # a fragment smaller than this is moved in proportion (no folding)
ROUGH_IN_PLANE = 0.4          # a point of a flat face moves this share within it: the outline of a
                              # wall's face zigzags, its small cut triangles do not fold over

BAR_SPACING_M = 0.35          # slab reinforcement grid
BAR_COVER_M = 0.035           # concrete cover over the bottom and top layers
BAR_RADIUS_M = 0.007          # a 14 mm bar
BAR_OUT_M = (0.06, 0.5)       # how far a bar sticks out of a break
BAR_CHANCE = 0.25             # share of bar ends at a break that pull out of the concrete


def triangle_soup(fr: Fracture, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(V, FLOATS) float32 vertices, three a triangle, fragment by fragment; the fragment
    of each triangle; the face kind of each triangle; the hull triangle (index into the
    fragments' triangles, in order) each was cut from."""
    chunks, frag, kinds, parent = [], [], [], []
    sub = _split_weights(ROUGH_SPLITS)                                # (s, 3 corners, 3 weights)
    first = 0
    for i in range(fr.n):
        v, t, k = fr.verts[i].astype(np.float64), fr.tris[i], fr.kinds[i]
        a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
        nrm = np.cross(b - a, c - a)
        area2 = np.linalg.norm(nrm, axis=1)
        nrm /= np.maximum(area2, 1e-12)[:, None]
        tri = np.stack([a, b, c], 1)                                  # (m, 3 corners, 3)
        # Height of each corner over its opposite edge: the distance to that edge is
        # linear over the triangle, that height at the corner and 0 on the edge.
        opp = np.stack([np.linalg.norm(c - b, axis=1), np.linalg.norm(a - c, axis=1),
                        np.linalg.norm(b - a, axis=1)], 1)
        h = area2[:, None] / np.maximum(opp, 1e-12)
        real = _real_edges(t, nrm)                                     # (m, 3): edge opposite each corner
        edge = np.zeros((len(t), 3, 3))
        for j in range(3):
            edge[:, j, j] = h[:, j]
        edge = np.where(real[:, None, :], edge, FAR_EDGE)
        # Cut, then moved by the roughness field at rest (see ROUGH_M).
        m, s = len(t), len(sub)
        tri = np.einsum("scw,mwx->mscx", sub, tri).reshape(m * s, 3, 3)
        edge = np.einsum("scw,mwe->msce", sub, edge).reshape(m * s, 3, 3)
        el = fr.elements[fr.element[i]] if fr.elements else None
        cast = k != BREAK
        # (glass breaks along straight lines: its shards keep their hull's edges)
        amount = 0.0 if fr.element_kind[i] == GLASS else min(1.0, float(np.ptp(v, axis=0).max()) / ROUGH_FULL_M)
        rest = _ragged(tri + fr.centroid[i], amount, el, nrm[cast], (nrm[cast] * a[cast]).sum(1) + nrm[cast] @ fr.centroid[i],
                       seed)
        tri = rest - fr.centroid[i]
        n_sub = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n_sub /= np.maximum(np.linalg.norm(n_sub, axis=1), 1e-12)[:, None]
        d_out, d_in = _wall_depth(rest, el)
        rows = np.empty((m * s, 3, FLOATS), np.float32)
        rows[..., 0:3] = tri
        rows[..., 3:6] = np.where(np.repeat(cast, s)[:, None, None], np.repeat(nrm, s, axis=0)[:, None, :],
                                  _smooth_normals(tri, n_sub, np.repeat(nrm, s, axis=0)))
        rows[..., 6:9] = rest
        rows[..., 9] = np.repeat(k, s)[:, None]
        rows[..., 10] = i
        rows[..., 11:14] = edge
        rows[..., 14] = fr.element_kind[i]
        rows[..., 15] = d_out
        rows[..., 16] = d_in
        chunks.append(rows.reshape(-1, FLOATS))
        frag.append(np.full(m * s, i))
        kinds.append(np.repeat(k, s))
        parent.append(np.repeat(np.arange(first, first + m), s))
        first += m
    return np.vstack(chunks), np.concatenate(frag), np.concatenate(kinds), np.concatenate(parent)


def _smooth_normals(tri: np.ndarray, n_sub: np.ndarray, face_n: np.ndarray) -> np.ndarray:
    """(m, 3 corners, 3) normals of the cut triangles `tri` (m, 3, 3), each corner's the
    area-weighted mean of the triangles of its hull face (face_n: the face's normal) that
    meet there. The roughness field bends a broken face; lit triangle by triangle, it was
    a crumpled sheet of flat facets a decimetre across (the rubble near img_190's lens
    read as low-poly crystals). Averaged within a face, the face undulates smoothly and
    its edges with the fragment's other faces stay sharp."""
    area_n = n_sub * 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)[:, None]
    # (a point shared by two cut triangles of one face is the same point: the cut and the
    # field are functions of position)
    key = np.hstack([np.repeat(np.round(face_n, 3), 3, axis=0), np.round(tri.reshape(-1, 3), 5)])
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    acc = np.zeros((inv.max() + 1, 3))
    np.add.at(acc, inv, np.repeat(area_n, 3, axis=0))
    out = acc[inv]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.reshape(tri.shape)


def _ragged(rest: np.ndarray, amount: float, el, cast_n: np.ndarray, cast_off: np.ndarray, seed: int) -> np.ndarray:
    """Rest corners (m, 3, 3) moved by the roughness field (times amount), flat as cast
    within the fragment's cast faces' planes (cast_n . x = cast_off) and its element's box
    planes (a wall's coping, its corners, its foot, its storey's lines: a roofline drawn
    ragged waved like cloth, img_270). The box's planes hold for every fragment of the
    element whether or not it has a face there, so two neighbours move a shared point
    alike."""
    pts = rest.reshape(-1, 3)
    bn, bo = _box_planes(el)
    shift = _in_cast_planes(_roughness(pts, seed) * amount, pts, np.vstack([bn, cast_n]), np.concatenate([bo, cast_off]))
    return rest + shift.reshape(rest.shape)


def _box_planes(el) -> tuple[np.ndarray, np.ndarray]:
    """The six planes of an element's box (normals, offsets); none without elements."""
    if el is None:
        return np.zeros((0, 3)), np.zeros(0)
    n = np.vstack([np.eye(3), np.eye(3)])
    return n, np.concatenate([np.asarray(el.lo, float), np.asarray(el.hi, float)])


def _split_weights(n: int) -> np.ndarray:
    """A triangle cut into n^2, as barycentric weights of each small one's corners: (n^2,
    3, 3), wound as the triangle. An edge's points lie at i/n along it from either end, so
    two triangles sharing an edge cut it at the same points."""
    out = []
    for i in range(n):
        for j in range(n - i):
            w = lambda p, q: (1.0 - (p + q) / n, p / n, q / n)
            out.append((w(i, j), w(i + 1, j), w(i, j + 1)))
            if i + j < n - 1:
                out.append((w(i + 1, j), w(i + 1, j + 1), w(i, j + 1)))
    return np.array(out)


def _roughness(p: np.ndarray, seed: int) -> np.ndarray:
    """(n, 3) displacement of rest points p (n, 3): two octaves of smooth value noise,
    each component its own, about ROUGH_M at its largest."""
    out = np.zeros_like(p)
    for octave, (wave, amp) in enumerate(((ROUGH_WAVE_M, 1.0), (0.5 * ROUGH_WAVE_M, 0.5))):
        for c in range(3):
            out[:, c] += amp * _value_noise(p / wave, seed * 31 + octave * 3 + c)
    return out * (ROUGH_M / 1.5)


def _value_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Smooth noise in [-1, 1] over 3D points (lattice values hashed from their cell,
    blended with a quintic): the same point always gives the same value."""
    base = np.floor(p)
    f = p - base
    f = f * f * f * (f * (f * 6 - 15) + 10)
    b = base.astype(np.int64)
    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                h = (b[:, 0] + dx) * 73856093 ^ (b[:, 1] + dy) * 19349663 ^ (b[:, 2] + dz) * 83492791 ^ seed * 2654435761
                h = (h ^ (h >> 13)) * 1274126177
                val = ((h ^ (h >> 16)) & 0xFFFF) / 32767.5 - 1.0
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * val
    return out


def _in_cast_planes(d: np.ndarray, p: np.ndarray, n: np.ndarray, off: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """The displacements d of points p with their part across every cast plane (n . x =
    off) the point lies on taken out: a point of a flat face moves only within it, one on
    the edge of two only along it."""
    if not len(n):
        return d
    # Unique planes (a flat face is several triangles).
    key = np.round(np.hstack([n, off[:, None]]), 5)
    _, idx = np.unique(key, axis=0, return_index=True)
    n, off = n[idx], off[idx]
    on = np.abs(p @ n.T - off[None, :]) < eps                  # (points, planes)
    cnt = on.sum(axis=1)
    d = d.copy()
    first = on.argmax(axis=1)
    one = cnt == 1
    d[one] -= (d[one] * n[first[one]]).sum(1, keepdims=True) * n[first[one]]
    two = cnt == 2
    if two.any():
        last = on.shape[1] - 1 - on[:, ::-1].argmax(axis=1)
        line = np.cross(n[first[two]], n[last[two]])
        line /= np.maximum(np.linalg.norm(line, axis=1, keepdims=True), 1e-12)
        d[two] = (d[two] * line).sum(1, keepdims=True) * line
    d[cnt > 2] = 0.0                                           # a corner of three stays put
    d[cnt > 0] *= ROUGH_IN_PLANE
    return d


def _real_edges(t: np.ndarray, nrm: np.ndarray) -> np.ndarray:
    """(m, 3) whether the edge opposite each corner is an edge of the solid: the
    triangle across it is not coplanar (a hull's flat faces are fans of triangles)."""
    m = len(t)
    a = np.stack([t[:, 1], t[:, 2], t[:, 0]], 1)                     # edge opposite corner j: (j+1, j+2)
    b = np.stack([t[:, 2], t[:, 0], t[:, 1]], 1)
    lo, hi = np.minimum(a, b).ravel(), np.maximum(a, b).ravel()
    key = lo.astype(np.int64) * (t.max() + 1) + hi
    owner = np.repeat(np.arange(m), 3)
    order = np.argsort(key, kind="stable")
    k_s, o_s = key[order], owner[order]
    other = np.full(3 * m, -1)
    same = np.nonzero(k_s[1:] == k_s[:-1])[0]
    other[order[same]] = o_s[same + 1]
    other[order[same + 1]] = o_s[same]
    flat = (other >= 0) & ((nrm[owner] * nrm[np.maximum(other, 0)]).sum(1) > COPLANAR)
    return ~flat.reshape(m, 3)


def _wall_depth(rest: np.ndarray, el) -> tuple[np.ndarray, np.ndarray]:
    """Depth of each point under the element's outer and inner faces (metres)."""
    if el is None:
        big = np.full(rest.shape[:2], 1.0)
        return big, big
    ax = el.axis
    lo, hi = el.lo[ax], el.hi[ax]
    x = rest[..., ax]
    if el.outer >= 0:
        return hi - x, x - lo
    return x - lo, hi - x


@dataclass
class Bars:
    """Reinforcing bars out of broken concrete: (B,) segments in their fragment's frame."""
    a: np.ndarray            # (B, 3) fragment-local start
    b: np.ndarray            # (B, 3) fragment-local end
    frag: np.ndarray         # (B,) fragment

    @property
    def n(self) -> int:
        return len(self.frag)


def rebar(fr: Fracture, seed: int = 0, timber_floors: bool = False) -> Bars:
    """Bars where a slab broke: the two layers of a slab's reinforcement mesh cross each
    slab fragment; where a bar leaves the fragment through a break (not through a cast
    face), it often pulls out of the neighbour's concrete and stands out, bent by the
    blow. Only the parts outside the fragment are made: inside, the concrete hides them.
    Old masonry buildings' floors are timber: no bars."""
    rng = np.random.default_rng([seed, 77])
    A, B, F = [], [], []
    for i in np.nonzero(fr.element_kind == SLAB)[0] if not timber_floors else []:
        el = fr.elements[fr.element[i]]
        v = fr.verts[i].astype(np.float64) + fr.centroid[i]
        n, off = _planes(v, fr.tris[i])
        lo, hi = v.min(0), v.max(0)
        p0, d = _bar_lines(el, lo, hi)
        if not len(p0):
            continue
        # Every bar line against every face plane at once: where it enters and leaves.
        nd = d @ n.T
        dist = off[None, :] - p0 @ n.T
        par = np.abs(nd) < 1e-9
        t = dist / np.where(par, 1.0, nd)
        enter = np.where(~par & (nd < 0), t, -np.inf)
        leave = np.where(~par & (nd > 0), t, np.inf)
        f_in, f_out = enter.argmax(1), leave.argmin(1)
        t_in, t_out = enter.max(1), leave.min(1)
        ok = (t_out - t_in > 1e-3) & ~(par & (dist < 0)).any(1)
        for j in np.nonzero(ok)[0]:
            for t_end, face, sgn in ((t_in[j], f_in[j], -1.0), (t_out[j], f_out[j], 1.0)):
                if fr.kinds[i][face] != BREAK or rng.random() > BAR_CHANCE:
                    continue
                for a, b in _bent_bar(p0[j] + t_end * d[j], sgn * d[j], rng):
                    A.append(a - fr.centroid[i])
                    B.append(b - fr.centroid[i])
                    F.append(i)
    if not F:
        return Bars(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    return Bars(np.array(A, np.float32), np.array(B, np.float32), np.array(F))


def _bar_lines(el, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The slab's bars (both layers, both directions) that cross a box: points and directions."""
    P, D = [], []
    for y in (el.lo[1] + BAR_COVER_M, el.hi[1] - BAR_COVER_M):
        for axis, across in ((0, 2), (2, 0)):
            cs = np.arange(np.ceil(lo[across] / BAR_SPACING_M), np.floor(hi[across] / BAR_SPACING_M) + 1) * BAR_SPACING_M
            for c in cs:
                p, d = np.zeros(3), np.zeros(3)
                p[1], p[across], d[axis] = y, c, 1.0
                P.append(p)
                D.append(d)
    return np.array(P).reshape(-1, 3), np.array(D).reshape(-1, 3)


def _planes(v: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n, (n * a).sum(1)


def _bent_bar(start, d, rng) -> list:
    """A bar pulled out of concrete: straight for a while, then bent off by the blow that
    broke the slab (mostly down: the slab sagged before it broke)."""
    length = rng.uniform(*BAR_OUT_M)
    k = rng.uniform(0.3, 0.8)
    knee = start + d * length * k
    side = np.cross(d, [0.0, 1.0, 0.0])
    bend = rng.uniform(0.3, 1.2)
    turn = np.array([0.0, -1.0, 0.0]) * rng.uniform(0.4, 1.0) + side * rng.normal(0, 0.6)
    d2 = d * np.cos(bend) + turn / max(np.linalg.norm(turn), 1e-6) * np.sin(bend)
    return [(start, knee), (knee, knee + d2 * length * (1 - k))]


__all__ = ["triangle_soup", "rebar", "Bars", "FLOATS", "LAYOUT", "NAMES", "BAR_RADIUS_M"]
