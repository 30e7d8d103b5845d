"""Fracture stage: 3D Voronoi pieces of the building proxy, clusters and a bond graph.

The proxy is a box at real scale: the front wall (a thin slab, textured from the plate)
and the core behind it, fractured separately so a facade can peel off as a layer.
Seeds are denser where the failure starts and vary in density from place to place, so
sizes are heavy-tailed (a few big slabs, many small chunks). Mirroring the seeds across
the box's faces bounds every Voronoi cell by the box: each cell is a convex hull.
Pieces whose rest position projects outside the building's matte are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull, Voronoi, cKDTree

from derrumbe.materials import Material
from derrumbe.stages.camera import STOREY_M, Camera, Placement

FRONT, SIDE, BREAK, INTERIOR = 0, 1, 2, 3   # face kinds, as the renderer shades them
PART_FACADE, PART_CORE = 0, 1
CORE_SOLID = 0.6   # linear scale of core chunks inside their Voronoi cells


@dataclass
class Fracture:
    centroid: np.ndarray                 # (N, 3) rest position of each piece's body frame
    verts: list                          # N arrays (k, 3), local to the centroid
    tris: list                           # N arrays (m, 3) int, outward winding
    kinds: list                          # N arrays (m,) face kind
    volume: np.ndarray                   # (N,)
    inside: np.ndarray                   # (N,) fraction of the piece inside the matte
    part: np.ndarray                     # (N,) PART_FACADE | PART_CORE
    cluster: np.ndarray                  # (N,) cluster id (floor band x bay x part)
    bonds: np.ndarray                    # (M, 2) piece indices
    bond_area: np.ndarray                # (M,) m^2
    box_lo: np.ndarray                   # proxy bounds
    box_hi: np.ndarray
    facade_z: float                      # z of the front face
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.verts)


def _density_field(rng, lo, hi, style: str, direction: str):
    """Seed density: high where the failure starts, patchy elsewhere (log-normal)."""
    size = hi - lo
    blobs = rng.uniform(lo, hi, (12, 3))
    amp = rng.normal(0, 0.9, 12)
    rad = size.max() * rng.uniform(0.1, 0.25, 12)

    def dens(p):
        y = (p[:, 1] - lo[1]) / size[1]
        d = np.ones(len(p))
        if style in ("implosion", "topple"):
            d += 4.0 * np.exp(-y / 0.18)
        if style == "topple":
            x = (p[:, 0] - lo[0]) / size[0]
            side = {"left": 1 - x, "right": x}.get(direction, np.full(len(p), 0.5))
            d *= 0.6 + side
        if style == "facade":
            d += 1.5 * y
        patches = np.exp(sum(a * np.exp(-((p - b) ** 2).sum(1) / (2 * r * r)) for a, b, r in zip(amp, blobs, rad)))
        return d * patches
    return dens


def _seeds(rng, n, lo, hi, dens, flatten=1.0):
    out = np.zeros((0, 3))
    probe = dens(rng.uniform(lo, hi, (2000, 3)))
    dmax = probe.max() * 1.2
    while len(out) < n:
        p = rng.uniform(lo, hi, (n * 4, 3))
        keep = rng.random(len(p)) < dens(p) / dmax
        out = np.vstack([out, p[keep]])
    out = out[:n]
    if flatten > 1.0:   # glass: cells thin in depth, wide in the facade plane
        out[:, 2] = lo[2] + (out[:, 2] - lo[2]) / flatten
    return out


def _voronoi_cells(seeds, lo, hi):
    n = len(seeds)
    mirrored = [seeds]
    for axis in range(3):
        for bound in (lo[axis], hi[axis]):
            m = seeds.copy()
            m[:, axis] = 2 * bound - m[:, axis]
            mirrored.append(m)
    vor = Voronoi(np.vstack(mirrored))
    cells = []
    for i in range(n):
        region = vor.regions[vor.point_region[i]]
        v = vor.vertices[region]
        cells.append(np.clip(v, lo, hi))
    # Bonds: ridges between two real cells, with the ridge polygon's area.
    bonds, areas = [], []
    for (a, b), rv in zip(vor.ridge_points, vor.ridge_vertices):
        if a < n and b < n and -1 not in rv:
            poly = vor.vertices[rv]
            c = poly.mean(0)
            area = 0.5 * np.linalg.norm(np.cross(poly - c, np.roll(poly, -1, 0) - c), axis=1).sum()
            if area > 1e-4:
                bonds.append((a, b))
                areas.append(area)
    return cells, np.array(bonds, int).reshape(-1, 2), np.array(areas)


def _hull(v):
    hull = ConvexHull(v)
    tris = hull.simplices.copy()
    nrm = hull.equations[:, :3]
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    flip = (np.cross(b - a, c - a) * nrm).sum(1) < 0
    tris[flip] = tris[flip][:, [0, 2, 1]]
    used = np.unique(tris)
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    return v[used], remap[tris], nrm, hull.volume


def _face_kinds(v, tris, nrm, lo, hi, front_z, front_kind, eps=1e-3):
    a = v[tris]                                     # (m, 3, 3)
    kinds = np.full(len(tris), BREAK)
    on = lambda axis, val: np.all(np.abs(a[:, :, axis] - val) < eps, axis=1)
    for axis in range(3):
        for val in (lo[axis], hi[axis]):
            kinds[on(axis, val)] = SIDE
    kinds[on(2, front_z) & (nrm[:, 2] > 0.9)] = front_kind
    return kinds


def fracture_building(cam: Camera, place: Placement, building: np.ndarray, style: str, direction: str,
                      material: Material, n_pieces: int, seed: int) -> Fracture:
    rng = np.random.default_rng(seed)
    width = place.x1_m - place.x0_m
    depth = float(np.clip(0.6 * width, 6.0, 18.0))
    zf = -place.depth_m
    t = material.facade_depth_m
    lo = np.array([place.x0_m, 0.0, zf - depth])
    hi = np.array([place.x1_m, place.proxy_height_m, zf])
    parts = [
        (PART_FACADE, np.array([lo[0], lo[1], zf - t]), hi, material.facade_share, FRONT),
        (PART_CORE, lo, np.array([hi[0], hi[1], zf - t]), 1 - material.facade_share,
         INTERIOR if style == "facade" else BREAK),
    ]
    h, w = building.shape
    # Cells whose rest position projects outside the matte are dropped: seed more of them
    # in proportion, so about n_pieces survive.
    corners = cam.project(np.array([[lo[0], lo[1], zf], [hi[0], hi[1], zf]]))
    (u0, v1), (u1, v0) = corners
    u0, u1 = int(np.clip(u0, 0, w - 1)), int(np.clip(u1, 1, w))
    v0, v1 = int(np.clip(v0, 0, h - 1)), int(np.clip(v1, 1, h))
    cover = float((building[v0:v1, u0:u1] > 0.5).mean()) if v1 > v0 and u1 > u0 else 1.0
    cover = max(cover, 0.2)
    cells_all, kinds_all, verts_all, tris_all = [], [], [], []
    cent, vol, part_id, inside = [], [], [], []
    bonds_all, areas_all = [], []
    for pid, plo, phi, share, front_kind in parts:
        n = max(8, int(round(n_pieces * share / cover)))
        dens = _density_field(rng, plo, phi, style, direction)
        seeds = _seeds(rng, n, plo, phi, dens, material.shard_flatten if pid == PART_FACADE else 1.0)
        cells, bonds, areas = _voronoi_cells(seeds, plo, phi)
        front_z = zf if pid == PART_FACADE else zf - t
        keep_map = {}
        for i, c in enumerate(cells):
            v, tris, nrm, volume = _hull(c)
            pts = np.vstack([v, v.mean(0, keepdims=True)])
            uv = cam.project(pts)
            # Matte lookups clamp at the frame's edges: a matte cut by the top edge
            # carries the building up into the hidden floors above the frame.
            ui = np.clip(uv[:, 0].astype(int), 0, w - 1)
            vi = np.clip(uv[:, 1].astype(int), 0, h - 1)
            frac = float((building[vi, ui] > 0.5).mean())
            if frac == 0.0:
                continue
            keep_map[i] = len(verts_all)
            centroid = v.mean(0)
            if pid == PART_CORE:
                # A building is mostly air between slabs and walls: core chunks keep a
                # fifth of their cell's volume, so the rubble pile ends at a real height
                # and an upper block can fall through a failed floor.
                v = centroid + (v - centroid) * CORE_SOLID
                volume *= CORE_SOLID ** 3
            verts_all.append((v - centroid).astype(np.float32))
            tris_all.append(tris.astype(np.int32))
            kinds_all.append(_face_kinds(v, tris, nrm, lo, hi, front_z, front_kind).astype(np.int32))
            cent.append(centroid)
            vol.append(volume)
            part_id.append(pid)
            inside.append(frac)
        for (a, b), ar in zip(bonds, areas):
            if a in keep_map and b in keep_map:
                bonds_all.append((keep_map[a], keep_map[b]))
                areas_all.append(ar)
        cells_all.append((pid, keep_map))
    cent = np.array(cent)
    part_arr = np.array(part_id)
    # Bonds across the facade/core interface: pieces touching through the slab's back.
    fi = np.nonzero(part_arr == PART_FACADE)[0]
    ci = np.nonzero(part_arr == PART_CORE)[0]
    if len(fi) and len(ci):
        tree = cKDTree(cent[ci][:, :2])
        for i in fi:
            for j in tree.query_ball_point(cent[i][:2], r=1.5 * np.cbrt(vol[i] + 1e-6) + 0.5):
                bonds_all.append((i, ci[j]))
                areas_all.append(0.25 * np.cbrt(vol[i]) ** 2)
    # Clusters: two-storey bands x bays of about 8 m, per part; they fall as blocks.
    band = np.floor(cent[:, 1] / (2 * STOREY_M)).astype(int)
    n_bays = max(1, int(round(width / 8.0)))
    bay = np.clip(((cent[:, 0] - lo[0]) / width * n_bays).astype(int), 0, n_bays - 1)
    key = (part_arr * 1000 + band) * 100 + bay
    _, cluster = np.unique(key, return_inverse=True)
    return Fracture(
        centroid=cent.astype(np.float64), verts=verts_all, tris=tris_all, kinds=kinds_all,
        volume=np.array(vol), inside=np.array(inside), part=part_arr, cluster=cluster,
        bonds=np.array(bonds_all, int).reshape(-1, 2), bond_area=np.array(areas_all),
        box_lo=lo, box_hi=hi, facade_z=zf,
        info=dict(depth_m=depth, facade_depth_m=t, clusters=int(cluster.max() + 1)))
