"""Numba kernel of the rubble's screen-space ambient occlusion (stages/render.py says why).

The estimator is McGuire et al.'s scalable ambient obscurance ("SAO", HPG 2012), on the
depth buffer alone: each pixel's view-space point and normal (from its neighbours'
depths, taking the side with the smaller depth step so an outline does not bend the
normal), and a fixed spiral of samples in a disc of a fixed radius in metres around it.
A sample on the point's own tangent plane occludes nothing, so a flat face, whatever its
slant, stays fully lit; a sample rising above the plane (the next lump of the pile, the
slab a piece lies under) occludes by how far it rises toward the normal, fading out at
the radius so a wall metres behind a piece does not darken it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, nogil=True)


def spiral(n: int, turns: float = 7.0) -> np.ndarray:
    """n sample offsets in the unit disc: a spiral whose radii grow as the square root
    of the index (the disc covered evenly), `turns` times round (no two on one ray)."""
    k = (np.arange(n) + 0.5) / n
    a = 2.0 * np.pi * turns * k
    return np.stack([np.sqrt(k) * np.cos(a), np.sqrt(k) * np.sin(a)], 1).astype(np.float32)


@njit(inline="always", **_OPTS)
def _point(z, x, y, f, cx, cy):
    return (x + 0.5 - cx) * z / f, -(y + 0.5 - cy) * z / f, -z


@njit(inline="always", **_OPTS)
def _tangent(z, zp, px, py, pz, xa, ya, xb, yb, f, cx, cy):
    """The step along the surface from the point (px, py, pz) at depth zp to its
    neighbour after it (xb, yb) or from the one before it (xa, ya), whichever's depth
    steps less: (found, dx, dy, dz)."""
    za, zb = z[ya, xa], z[yb, xb]
    if zb > 0.0 and (za <= 0.0 or abs(zb - zp) < abs(za - zp)):
        qx, qy, qz = _point(zb, xb, yb, f, cx, cy)
        return True, qx - px, qy - py, qz - pz
    if za > 0.0:
        qx, qy, qz = _point(za, xa, ya, f, cx, cy)
        return True, px - qx, py - qy, pz - qz
    return False, 0.0, 0.0, 0.0


@njit(parallel=True, **_OPTS)
def obscurance(z, f, cx, cy, radius_m, bias, offsets, min_px, max_px, out):
    """out[y, x]: how obscured each pixel's surface is (0: open to the whole sky; about
    0.25 in a right-angled crevice), from view depths z (0: nothing there)."""
    H, W = z.shape
    K = offsets.shape[0]
    r2 = radius_m * radius_m
    for y in prange(H):
        for x in range(W):
            zp = z[y, x]
            if zp <= 0.0:
                out[y, x] = 0.0
                continue
            px, py, pz = _point(zp, x, y, f, cx, cy)
            # Tangents toward the neighbour whose depth steps least (an outline's other
            # side is another surface).
            ok, tx, ty, tz = _tangent(z, zp, px, py, pz, max(x - 1, 0), y, min(x + 1, W - 1), y, f, cx, cy)
            ok2, sx, sy, sz = _tangent(z, zp, px, py, pz, x, max(y - 1, 0), x, min(y + 1, H - 1), f, cx, cy)
            if not (ok and ok2):
                out[y, x] = 0.0
                continue
            nx, ny, nz = ty * sz - tz * sy, tz * sx - tx * sz, tx * sy - ty * sx
            nl = np.sqrt(nx * nx + ny * ny + nz * nz)
            if nl < 1e-12:
                out[y, x] = 0.0
                continue
            nx, ny, nz = nx / nl, ny / nl, nz / nl
            if nx * px + ny * py + nz * pz > 0.0:          # facing the camera (at the origin)
                nx, ny, nz = -nx, -ny, -nz
            rad = min(max(radius_m * f / zp, min_px), max_px)
            # The spiral turned per pixel (Jimenez's interleaved gradient noise, fixed by
            # the pixel: the same frame twice is the same), the blur below evening it
            # out: one spiral for every pixel drew its pattern as stripes across a face.
            ang = 6.283185307 * ((52.9829189 * ((0.06711056 * x + 0.00583715 * y) % 1.0)) % 1.0)
            ca, sa = np.cos(ang), np.sin(ang)
            acc = 0.0
            for k in range(K):
                ox = offsets[k, 0] * ca - offsets[k, 1] * sa
                oy = offsets[k, 0] * sa + offsets[k, 1] * ca
                sxp = int(x + ox * rad + 0.5)
                syp = int(y + oy * rad + 0.5)
                if sxp < 0 or syp < 0 or sxp >= W or syp >= H:
                    continue
                zs = z[syp, sxp]
                if zs <= 0.0:
                    continue
                qx, qy, qz = _point(zs, sxp, syp, f, cx, cy)
                vx, vy, vz = qx - px, qy - py, qz - pz
                vv = vx * vx + vy * vy + vz * vz
                if vv >= r2 or vv < 1e-12:
                    continue
                # (McGuire's estimator: the rise over the plane over the squared distance,
                # so a lump touching the spot shades it most)
                rise = vx * nx + vy * ny + vz * nz - bias * radius_m
                if rise > 0.0:
                    acc += rise * radius_m / (vv + 0.01 * r2) * (1.0 - vv / r2)
            out[y, x] = acc / K


@njit(parallel=True, **_OPTS)
def smoothed(ob, z, half, tol, out):
    """ob averaged over a (2 half + 1)^2 window, only over pixels of about the same
    depth (within tol of it, relative): the per-pixel turn's noise evened out without
    bleeding a crevice's shade across an outline onto the surface behind."""
    H, W = ob.shape
    for y in prange(H):
        for x in range(W):
            zp = z[y, x]
            if zp <= 0.0:
                out[y, x] = 0.0
                continue
            acc, n = 0.0, 0.0
            for j in range(max(0, y - half), min(H, y + half + 1)):
                for i in range(max(0, x - half), min(W, x + half + 1)):
                    zs = z[j, i]
                    if zs > 0.0 and abs(zs - zp) <= tol * zp:
                        acc += ob[j, i]
                        n += 1.0
            out[y, x] = acc / n
