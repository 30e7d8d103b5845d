"""Fracture stage: the building's structure broken into a hierarchy, as destruction tools do.

Levels, coarse to fine: building > storeys > clusters > pieces > fragments (the leaves).
Only the fragments have geometry: each is a convex Voronoi cell of one wall or slab, with
its seeds near the element's mid-plane so the cells run through the thickness with
slightly slanted break faces. A piece is a group of neighbouring fragments (nearest coarse
seed), so pieces are irregular, non-convex chunks; a cluster is a bay of facade, a slab
panel or a wall segment of one storey. The simulation keeps every intact group as ONE
rigid body made of its fragments' hulls and splits it into its children when something
breaks it (Unreal's Chaos geometry collections and Houdini's glued packed pieces work
this way). Fragment sizes are patchy (a log-normal density) and finer on the facade the
camera sees, down to a few pixels at the plate's resolution; below that the particles
stage takes over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull, Voronoi, cKDTree

from derrumbe.materials import Material
from derrumbe.stages.camera import Camera, Placement
from derrumbe.stages.structure import BACK, CROSS, FACADE, GLASS, SIDE, SLAB, Building, Element, build_structure

FRONT, SIDE_FACE, BREAK, INTERIOR = 0, 1, 2, 3   # face kinds, as the renderer shades them
# A pane's two faces, and a window opening's jambs, sill and head (the plate saw them at
# rest, as it saw the front; moved, they are rendered wall).
GLASS_FACE, REVEAL = 4, 5
PART_FACADE, PART_CORE = 0, 1                   # kept for the dust and the particles
# Share of the fragment budget per square metre of element, by kind: the camera sees the
# facade; slabs show when it opens; the back and the cross walls mostly never.
DETAIL = {FACADE: 4.0, SLAB: 0.9, SIDE: 0.8, BACK: 0.35, CROSS: 0.45}
PIECE_M = {FACADE: 1.3, SLAB: 2.2, SIDE: 2.0, BACK: 2.6, CROSS: 2.4, GLASS: 0.25}     # piece size in the plane
CLUSTER_M = {FACADE: 3.6, SLAB: 5.0, SIDE: 12.0, BACK: 6.0, CROSS: 12.0, GLASS: 50.0}  # cluster length along the element
CELL_PER_WINDOW = 0.6       # facade cells coarser than this share of a window's width get no openings
GLASS_SHARE = 0.08          # at most this share of the fragment budget goes to glass
SHARD_M2 = 0.1              # a pane breaks into shards of about this area (a final's fragment count)
MIN_FRAGMENT_PX = 4.0       # a fragment spans at least this many plate pixels
THICK_JITTER = 0.2          # seeds' spread across the thickness, as a share of it: slanted break faces


@dataclass
class Fracture:
    centroid: np.ndarray                 # (N,3) rest position of each fragment's body frame
    verts: list                          # N arrays (k,3) float32, local to the centroid
    tris: list                           # N arrays (m,3) int32, outward winding
    kinds: list                          # N arrays (m,) face kind
    volume: np.ndarray                   # (N,) m^3
    inside: np.ndarray                   # (N,) share of the fragment inside the matte
    element: np.ndarray                  # (N,) index into elements
    element_kind: np.ndarray             # (N,) FACADE..CROSS
    storey: np.ndarray                   # (N,)
    piece: np.ndarray                    # (N,) piece id
    cluster: np.ndarray                  # (N,) cluster id
    bonds: np.ndarray                    # (M,2) fragment pairs that touch
    bond_area: np.ndarray                # (M,) m^2
    box_lo: np.ndarray
    box_hi: np.ndarray
    facade_z: float
    floor_y: np.ndarray                  # floor heights of the storeys
    elements: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    face_neighbour: list = None          # N arrays (m,): the fragment whose face covers this one (-1: none)

    @property
    def n(self) -> int:
        return len(self.verts)

    @property
    def part(self) -> np.ndarray:
        """Facade fragments and the rest (the core), as the dust and particles see them."""
        return np.where(self.element_kind == FACADE, PART_FACADE, PART_CORE)

    @property
    def extent(self) -> np.ndarray:
        """Bounding radius of each fragment about its centroid (what it can reach)."""
        return np.array([np.linalg.norm(v, axis=1).max() for v in self.verts])

    @property
    def radius(self) -> np.ndarray:
        """Equivalent-sphere radius of each fragment."""
        return np.cbrt(3 * np.maximum(self.volume, 1e-9) / (4 * np.pi))


def fracture_building(cam: Camera, place: Placement, building_matte: np.ndarray, style: str, direction: str,
                      material: Material, n_fragments: int, seed: int, hierarchy_fragments: int | None = None,
                      windows: np.ndarray | None = None) -> Fracture:
    """`n_fragments` sets the leaves; the storeys, clusters and pieces follow from
    `hierarchy_fragments` (the final's count), so a preview with coarser leaves breaks
    along the same lines as the final and moves like it. `windows`: openings on the
    facade plane (x0, y0, x1, y1 in metres; stages/windows.py finds them in the plate),
    glazed with panes that break into shards."""
    b = build_structure(place, material)
    budget = _budgets(b, cam, place, n_fragments)
    fac = [n / el.area for el, n in zip(b.elements, budget) if el.kind == FACADE]
    spacing = float(np.sqrt(1.0 / np.median(fac))) if fac else np.inf
    # Windows are cut only where the facade breaks finer than they are wide: coarser
    # cells would shatter into slivers around every opening (a coarse preview has none).
    if windows is not None and len(windows) and spacing <= CELL_PER_WINDOW * np.median(windows[:, 2] - windows[:, 0]):
        b = build_structure(place, material, windows)
        budget = _budgets(b, cam, place, n_fragments)
    plan = _budgets(b, cam, place, hierarchy_fragments or n_fragments)
    cells = []
    for ei, (el, n, n_plan) in enumerate(zip(b.elements, budget, plan)):
        cells.append(_fracture_element(el, n, n_plan, style, b, [seed, ei]))
    return _assemble(b, cells, cam, building_matte)


def _budgets(b: Building, cam: Camera, place: Placement, total: int) -> np.ndarray:
    """Fragments per element: by area and how much the camera sees of its kind, but never
    smaller than a few pixels on screen (smaller belongs to the grit)."""
    glass = np.array([el.kind == GLASS for el in b.elements])
    w = np.array([0.0 if g else el.area * DETAIL[el.kind] for el, g in zip(b.elements, glass)])
    px_m = place.depth_m / cam.f_px
    min_cell = MIN_FRAGMENT_PX * px_m
    cap = np.array([el.area / min_cell ** 2 for el in b.elements])
    # Panes break into shards on top of the budget: a few per pane in a preview, more
    # in a final, never fewer than two.
    shards = np.where(glass, [el.area / SHARD_M2 * min(1.0, total / 4000) for el in b.elements], 0.0)
    if shards.sum() > GLASS_SHARE * total:          # many big windows: coarser shards, not a heavier shot
        shards *= GLASS_SHARE * total / shards.sum()
    shards = np.where(glass, np.clip(shards, 2, 24), 0.0)
    # The shards come out of the walls' share: the count asked for is the count made.
    n = (total - shards.sum()) * w / w.sum()
    n = np.where(glass, shards, n)
    return np.maximum(2, np.round(np.minimum(n, cap))).astype(int)


def _density(rng, el: Element, style: str, b: Building):
    """Seed density: patchy (log-normal), finer low down where an implosion starts; a
    pane is finest where it was struck and coarser toward its frame (radial cracks)."""
    if el.kind == GLASS:
        hit = rng.uniform(el.lo + 0.25 * el.size, el.hi - 0.25 * el.size)
        r = max(0.15, 0.35 * float(np.delete(el.size, el.axis).min()))
        return lambda p: 0.15 + np.exp(-(np.delete(p - hit, el.axis, axis=1) ** 2).sum(1) / (2 * r * r))
    blobs = rng.uniform(el.lo, el.hi, (6, 3))
    amp = rng.normal(0, 0.7, 6)
    rad = np.maximum(el.size.max() * rng.uniform(0.15, 0.35, 6), 0.5)

    def dens(p):
        d = np.exp(sum(a * np.exp(-((p - c) ** 2).sum(1) / (2 * r * r)) for a, c, r in zip(amp, blobs, rad)))
        if style == "implosion":
            d = d * (1 + 1.5 * np.exp(-p[:, 1] / max(b.floor_y[1], 1.0)))
        return d
    return dens


def _seeds(rng, el: Element, n: int, dens) -> np.ndarray:
    out = np.zeros((0, 3))
    dmax = dens(rng.uniform(el.lo, el.hi, (500, 3))).max() * 1.3
    while len(out) < n:
        p = rng.uniform(el.lo, el.hi, (4 * n + 8, 3))
        out = np.vstack([out, p[rng.random(len(p)) < dens(p) / dmax]])
    out = out[:n]
    mid = 0.5 * (el.lo[el.axis] + el.hi[el.axis])
    out[:, el.axis] = mid + rng.uniform(-1, 1, n) * THICK_JITTER * el.thickness
    return out


def _fracture_element(el: Element, n: int, n_plan: int, style: str, b: Building, seed: list) -> dict:
    dens = _density(np.random.default_rng(seed + [1]), el, style, b)
    seeds = _seeds(np.random.default_rng(seed + [2]), el, n, dens)
    polys, ridges = _voronoi_in_box(seeds, el.lo, el.hi)
    # Pieces: fragments grouped around coarse seeds in the element's plane; a random
    # stretch per piece makes their outlines irregular rather than a second Voronoi.
    # A piece is about a dozen of the final's fragments and a cluster a few pieces:
    # levels that differ little in size would read as one size of rubble.
    rng = np.random.default_rng(seed + [3])
    in_plane = [a for a in range(3) if a != el.axis]
    spacing = np.sqrt(el.area / max(n_plan, 1))
    piece_m = max(PIECE_M[el.kind], 3.4 * spacing)
    n_pieces = max(1, int(round(el.area / piece_m ** 2)))
    coarse = _seeds(rng, el, n_pieces, dens)[:, in_plane]
    stretch = rng.uniform(0.7, 1.4, (len(coarse), 2))
    d = (((seeds[:, None, in_plane] - coarse[None]) * stretch[None]) ** 2).sum(-1)
    piece = np.argmin(d, axis=1)
    # Clusters: consecutive lengths along the element's longest in-plane axis.
    long_ax = in_plane[int(np.argmax(el.size[in_plane]))]
    n_cl = max(1, int(round(el.size[long_ax] / max(CLUSTER_M[el.kind], 2.2 * piece_m))))
    cl_of_piece = np.minimum(((coarse[:, in_plane.index(long_ax)] - el.lo[long_ax]) / el.size[long_ax]
                              * n_cl).astype(int), n_cl - 1)
    out = dict(polys=polys, ridges=ridges, piece=piece, cluster=cl_of_piece[piece])
    if el.openings is not None and len(el.openings):
        out = _carve_openings(out, el.openings)
    return out


def _carve_openings(c: dict, openings: np.ndarray) -> dict:
    """Cuts the window openings out of a facade's cells. A cell that an opening crosses
    becomes up to four convex parts around it (beside, below, above); the parts keep
    their cell's piece and cluster, bond to each other and to the parts of the cell's
    neighbours they touch."""
    polys, piece, cluster = [], [], []
    parts_of = []
    for i, v in enumerate(c["polys"]):
        parts = [v]
        for o in openings:
            parts = [q for p in parts for q in _around(p, o)]
        parts_of.append(list(range(len(polys), len(polys) + len(parts))))
        polys += parts
        piece += [c["piece"][i]] * len(parts)
        cluster += [c["cluster"][i]] * len(parts)
    lo = np.array([p.min(0) for p in polys])
    hi = np.array([p.max(0) for p in polys])
    touch = lambda a, b: bool(np.all(lo[a] <= hi[b] + 1e-4) and np.all(lo[b] <= hi[a] + 1e-4))
    pairs, areas = [], []
    (old_pairs, old_areas) = c["ridges"]
    for (p, q), a in zip(old_pairs, old_areas):
        linked = [(x, y) for x in parts_of[p] for y in parts_of[q] if touch(x, y)]
        pairs += linked
        areas += [a / max(1, len(linked))] * len(linked)
    for parts in parts_of:
        for j, x in enumerate(parts):
            for y in parts[j + 1:]:
                if touch(x, y):
                    pairs.append((x, y))
                    areas.append(float(np.prod(np.sort(np.minimum(hi[x], hi[y]) - np.maximum(lo[x], lo[y]))[1:])))
    return dict(polys=polys, ridges=(np.array(pairs, int).reshape(-1, 2), np.array(areas)),
                piece=np.array(piece), cluster=np.array(cluster))


def _around(v: np.ndarray, o) -> list:
    """A convex cell (its vertices) minus an opening (x0, y0, x1, y1, through the
    wall): the cell itself when they do not meet, else its convex parts in the eight
    bands around the opening, so that each face of a part is either all reveal (jamb,
    sill, head) or all inside the wall."""
    x0, y0, x1, y1 = o
    if v[:, 0].min() >= x1 or v[:, 0].max() <= x0 or v[:, 1].min() >= y1 or v[:, 1].max() <= y0:
        return [v]
    cols = [_clip(v, 0, x0, -1), _clip(_clip(v, 0, x0, +1), 0, x1, -1), _clip(v, 0, x1, +1)]
    if _volume(_clip(_clip(cols[1], 1, y0, +1), 1, y1, -1)) < 1e-7:
        return [v]
    parts = []
    for j, col in enumerate(cols):
        rows = [_clip(col, 1, y0, -1), _clip(_clip(col, 1, y0, +1), 1, y1, -1), _clip(col, 1, y1, +1)]
        parts += [r for i, r in enumerate(rows) if not (i == 1 and j == 1)]
    return [p for p in parts if _volume(p) > 1e-7]


def _clip(v: np.ndarray, axis: int, at: float, side: int) -> np.ndarray:
    """The convex hull of v cut by a plane: what lies on `side` (+1 above, -1 below) of
    coordinate `at` along `axis`. Each crossing segment between two vertices adds its
    crossing point: the edges' crossings are among them, the rest lie inside the cut."""
    if len(v) == 0:
        return v
    d = (v[:, axis] - at) * side
    keep, out = v[d >= -1e-9], v[d < -1e-9]
    if len(out) == 0 or len(keep) == 0:
        return keep
    dk, do = d[d >= -1e-9], d[d < -1e-9]
    t = dk[:, None] / (dk[:, None] - do[None, :])
    cross = keep[:, None, :] + t[..., None] * (out[None, :, :] - keep[:, None, :])
    pts = np.vstack([keep, cross.reshape(-1, 3)])
    pts[:, axis] = np.where(np.abs(pts[:, axis] - at) < 1e-9, at, pts[:, axis])
    pts = np.unique(np.round(pts, 9), axis=0)
    try:                            # only the hull's corners: the rest would compound cut after cut
        return pts[ConvexHull(pts).vertices]
    except Exception:               # flat: nothing of volume is left on that side
        return pts[:0]


def _volume(v: np.ndarray) -> float:
    if len(v) < 4:
        return 0.0
    try:
        return float(ConvexHull(v).volume)
    except Exception:               # flat or degenerate: nothing left
        return 0.0


def _voronoi_in_box(seeds, lo, hi):
    """Voronoi cells of seeds inside a box (mirror seeds across its six faces bound every
    cell by the box); returns each cell's vertices and the touching pairs with areas."""
    n = len(seeds)
    mirrored = [seeds]
    for axis in range(3):
        for bound in (lo[axis], hi[axis]):
            m = seeds.copy()
            m[:, axis] = 2 * bound - m[:, axis]
            mirrored.append(m)
    vor = Voronoi(np.vstack(mirrored))
    polys = [np.clip(vor.vertices[vor.regions[vor.point_region[i]]], lo, hi) for i in range(n)]
    pairs, areas = [], []
    for (a, c), rv in zip(vor.ridge_points, vor.ridge_vertices):
        if a < n and c < n and -1 not in rv:
            poly = vor.vertices[rv]
            m = poly.mean(0)
            area = 0.5 * np.linalg.norm(np.cross(poly - m, np.roll(poly, -1, 0) - m), axis=1).sum()
            if area > 1e-4:
                pairs.append((a, c))
                areas.append(area)
    return polys, (np.array(pairs, int).reshape(-1, 2), np.array(areas))


def _hull(v):
    hull = ConvexHull(v)
    tris = hull.simplices.copy()
    nrm = hull.equations[:, :3]
    a, b_, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    flip = (np.cross(b_ - a, c - a) * nrm).sum(1) < 0
    tris[flip] = tris[flip][:, [0, 2, 1]]
    used = np.unique(tris)
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    return v[used], remap[tris], nrm, hull.volume


def _face_kinds(v, tris, nrm, el: Element, eps=1e-3) -> np.ndarray:
    """Which faces are the element's outside (the plate or a wall's exterior), its inside
    (plaster, floors, ceilings), a window's reveal, glass, or broken material
    (everything else, ends included)."""
    a = v[tris][:, :, el.axis]
    on = lambda val: np.all(np.abs(a - val) < eps, axis=1)
    kinds = np.full(len(tris), BREAK)
    if el.kind == GLASS:
        kinds[on(el.lo[el.axis]) | on(el.hi[el.axis])] = GLASS_FACE
        return kinds
    for x0, y0, x1, y1 in (() if el.openings is None else el.openings):
        t = v[tris]
        within = lambda ax, lo_, hi_: np.all((t[:, :, ax] > lo_ - eps) & (t[:, :, ax] < hi_ + eps), axis=1)
        at = lambda ax, val: np.all(np.abs(t[:, :, ax] - val) < eps, axis=1)
        kinds[((at(0, x0) | at(0, x1)) & within(1, y0, y1)) | ((at(1, y0) | at(1, y1)) & within(0, x0, x1))] = REVEAL
    out_val = el.hi[el.axis] if el.outer >= 0 else el.lo[el.axis]
    in_val = el.lo[el.axis] if el.outer >= 0 else el.hi[el.axis]
    kinds[on(in_val)] = INTERIOR
    if el.outer == 0:
        kinds[on(out_val)] = INTERIOR
    else:
        kinds[on(out_val)] = FRONT if el.kind == FACADE else SIDE_FACE
    return kinds


def _assemble(b: Building, cells: list, cam: Camera, matte: np.ndarray) -> Fracture:
    h, w = matte.shape
    verts, tris, kinds, cent, vol, inside = [], [], [], [], [], []
    elem, piece, cluster, storey = [], [], [], []
    bonds, areas = [], []
    piece_base = cluster_base = 0
    for ei, (el, c) in enumerate(zip(b.elements, cells)):
        keep = {}
        for i, poly in enumerate(c["polys"]):
            try:
                v, t, nrm, volume = _hull(poly)
            except Exception:          # a degenerate sliver cell: nothing to draw or simulate
                continue
            uv = cam.project(np.vstack([v, v.mean(0, keepdims=True)]))
            # Matte lookups clamp at the frame's edges: a matte cut by the top edge carries
            # the building up into the hidden floors above the frame.
            ui = np.clip(uv[:, 0].astype(int), 0, w - 1)
            vi = np.clip(uv[:, 1].astype(int), 0, h - 1)
            frac = float((matte[vi, ui] > 0.5).mean())
            if frac == 0.0:
                continue
            keep[i] = len(verts)
            ctr = v.mean(0)
            verts.append((v - ctr).astype(np.float32))
            tris.append(t.astype(np.int32))
            kinds.append(_face_kinds(v, t, nrm, el).astype(np.int32))
            cent.append(ctr)
            vol.append(volume)
            inside.append(frac)
            elem.append(ei)
            piece.append(piece_base + c["piece"][i])
            cluster.append(cluster_base + c["cluster"][i])
            storey.append(el.storey)
        pairs, ar = c["ridges"]
        for (p, q), a in zip(pairs, ar):
            if p in keep and q in keep:
                bonds.append((keep[p], keep[q]))
                areas.append(a)
        piece_base += int(c["piece"].max()) + 1
        cluster_base += int(c["cluster"].max()) + 1
    cent = np.array(cent)
    elem = np.array(elem)
    more_b, more_a = _joints(b, cent, np.array(vol), elem)
    bonds = np.array(bonds + more_b, int).reshape(-1, 2)
    areas = np.array(areas + more_a)
    # Renumber groups densely (matte carving leaves holes in the id ranges).
    _, piece = np.unique(piece, return_inverse=True)
    _, cluster = np.unique(cluster, return_inverse=True)
    kinds_el = np.array([b.elements[e].kind for e in elem])
    neighbours = _face_neighbours(verts, tris, cent, bonds)
    return Fracture(
        centroid=cent, verts=verts, tris=tris, kinds=kinds, volume=np.array(vol), inside=np.array(inside),
        element=elem, element_kind=kinds_el, storey=np.array(storey), piece=piece, cluster=cluster,
        bonds=bonds, bond_area=areas, box_lo=b.box_lo, box_hi=b.box_hi, facade_z=b.z_front,
        floor_y=b.floor_y.copy(), elements=b.elements, face_neighbour=neighbours,
        info=dict(depth_m=round(b.depth, 2), storeys=b.storeys, fragments=len(verts),
                  windows=sum(el.kind == GLASS for el in b.elements),
                  pieces=int(piece.max() + 1), clusters=int(cluster.max() + 1),
                  elements=len(b.elements), floor_y=[round(float(y), 2) for y in b.floor_y]))


def _face_neighbours(verts, tris, cent, bonds, eps=2e-3) -> list:
    """For every face, the fragment that covers it entirely (its three corners lie on
    that fragment's closed hull), or -1. While two such fragments move as one, the face
    between them is inside the body and the renderer skips it: an intact storey is
    drawn as its outer skin, not as its thousands of inner faces."""
    planes = []
    for v, t in zip(verts, tris):
        a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
        nrm = np.cross(b - a, c - a)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        planes.append((nrm, -(nrm * a).sum(1)))
    nbrs = [[] for _ in verts]
    for i, j in bonds:
        nbrs[i].append(j)
        nbrs[j].append(i)
    out = []
    for i, (v, t) in enumerate(zip(verts, tris)):
        corners = v[t] + (cent[i] - 0.0)                      # (m, 3, 3) in the building's frame
        nb = np.full(len(t), -1)
        for j in nbrs[i]:
            n_j, d_j = planes[j]
            local = corners - cent[j]
            inside = (local @ n_j.T + d_j <= eps).all(axis=(1, 2))
            nb[(nb < 0) & inside] = j
        out.append(nb.astype(np.int32))
    return out


def _joints(b: Building, cent, vol, elem) -> tuple[list, list]:
    """Connections between fragments of different elements that touch (a wall carrying a
    slab, two walls at a corner): fragments within a fragment's size of each other."""
    r = np.cbrt(np.maximum(vol, 1e-9))
    tree = cKDTree(cent)
    pairs = tree.query_pairs(float(np.percentile(r, 90)) * 1.2, output_type="ndarray")
    if not len(pairs):
        return [], []
    cross = elem[pairs[:, 0]] != elem[pairs[:, 1]]
    pairs = pairs[cross]
    d = np.linalg.norm(cent[pairs[:, 0]] - cent[pairs[:, 1]], axis=1)
    close = d < 0.75 * (r[pairs[:, 0]] + r[pairs[:, 1]])
    pairs = pairs[close]
    area = (0.5 * np.minimum(r[pairs[:, 0]], r[pairs[:, 1]])) ** 2
    return [tuple(p) for p in pairs], list(area)
