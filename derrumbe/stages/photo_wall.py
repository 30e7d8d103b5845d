"""A wall behind the building made of the plate's own facade, whole storeys and bays of it.

What the collapse reveals behind a street building (the wings round its courtyards) is
not in the photo. Drawn as a plain render with windows drawn or pasted in, every review
read those walls as CG boxes with window decals, and asked for photographic material in
the plate's perspective, resolution, grain and light. The one photographed wall at hand
is the building's own upper floors: stood upright, cut to whole storeys and bays (the
periods at which its openings repeat), it continues itself by translation, so a wing of
any size is that facade carried on from an offset of its own, shrunk to the wing's
distance and recoloured to its render. A block's courtyard wings share their street
front's window rhythm and period, so they read as its neighbours; the ground floor (shop
fronts, signs) is left out, and a facade with no openings (a plain wall, a curtain of
glass) gives none: the clean plate draws its walls instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter

from derrumbe.colour import luminance
from derrumbe.stages.keystone import lean_scale
from derrumbe.stages.plate_texture import facade_texture

MIN_CELLS = 1            # fewer whole cells than this: too little facade to continue
GROUND_MARGIN = 0.15     # storeys over the ground floor also left out: a shop sign's top stands there
PIER = 0.3               # a wing's piers are up to this share of a bay wider than the facade's
STOREY_PAD = 0.12        # ... and its storeys up to this share taller
ODD = 1.5                # a cell this many times its storey's median difference from the rest is odd
TIE = 0.05               # lags whose difference is this close to the least are as good (period)
OPENINGS = (0.02, 0.6)   # the share of a facade's tile darker than its wall: windows, not a plain wall
MIN_STOREY = 0.6         # less of a storey than this over the ground floor: too little facade
WALLNESS = 0.35          # a pixel this far from the wall's brightness (share) takes none of the new colour
EDGE_KEEP = 0.06         # the facade's outer columns left out (share of its width): corners, drainpipes
# A downpipe or a cable down the facade: a run of columns at most PIPE_W of a storey wide
# that stands out from the wall round it (by PIPE_DIFF[0] of the wall's brightness) over
# PIPE_ROWS of the facade's height (a window's jamb: over the window's height only), with
# the columns beside it that differ by PIPE_DIFF[1] as often (its shadow, its brackets).
# On img_181 the pipe's columns stand out over 92-93 % of the rows, a window's mullion
# over at most 79 % (its storey's window and the rustication's grooves).
PIPE_W = 0.1
PIPE_DIFF = (0.25, 0.08)
PIPE_ROWS = 0.85


@dataclass
class Cells:
    """The facade's upper floors, upright, cut to whole storeys and bays (plate pixels at
    the facade, linear RGB): a tile that continues itself by translation, storey_px x
    bay_px a cell; ref: the wall's median colour, to recolour it from."""
    tile: np.ndarray          # (ny * storey_px, nx * bay_px, 3)
    storey_px: int
    bay_px: int
    ref: np.ndarray           # (3,)


def upright(img: np.ndarray, cx: float, vp_row: float, base_row: float) -> np.ndarray:
    """The inverse of cleanplate._lean: a leaning plate's verticals stood upright (each row
    scaled about cx so its verticals no longer run toward (cx, vp_row))."""
    h, w = img.shape[:2]
    rows = np.arange(h, dtype=np.float32)[:, None]
    k = lean_scale(h, vp_row, base_row)
    map_x = (cx + (np.arange(w, dtype=np.float32)[None, :] - cx) / k).astype(np.float32)
    map_y = np.broadcast_to(rows, (h, w)).astype(np.float32)
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def facade_cells(lin: np.ndarray, inside: np.ndarray, holdout: np.ndarray, storey_px: float,
                 ground_px: float, keystone: tuple[float, float] | None, cx: float) -> Cells | None:
    """The building's upper floors as a tile of whole storeys and bays (None where too
    little of them shows). storey_px: a storey's height at the facade (the scale
    estimate's); ground_px: the ground floor's, left out with GROUND_MARGIN of a storey
    over it (the shop fronts' signs stand there)."""
    if keystone is not None:
        lin, inside, holdout = (upright(a.astype(np.float32), cx, *keystone) for a in (lin, inside, holdout))
    m = inside > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    if not len(ys) or storey_px < 8:
        return None
    tex = facade_texture(lin, m.astype(np.float32), holdout)
    held = np.nonzero(m[ys.min():ys.max() + 1].mean(axis=0) > 0.6)[0]
    if len(held) < 8:
        return None
    keep = int(EDGE_KEEP * len(held))
    x0, x1 = int(held.min()) + keep, int(held.max()) + 1 - keep
    y0, y1 = int(ys.min()), int(ys.max() + 1 - ground_px - GROUND_MARGIN * storey_px)
    if y1 - y0 < MIN_STOREY * storey_px or x1 - x0 < storey_px:
        return None
    up = tex[y0:y1, x0:x1]
    if y1 - y0 < storey_px:
        up = _whole_storey(up, int(round(storey_px)))
    # The periods of the openings (what is much darker than the wall), not of the
    # wall's own finish: img_270's ceramic tiles repeat every 0.4 m, and a bay of 0.4 m
    # dealt a wall of slivers.
    lum = luminance(up)
    lum = cv2.GaussianBlur((lum < 0.6 * np.median(lum)).astype(np.float32), (0, 0), max(1.0, 0.03 * storey_px))
    sp = period(lum, 0.85 * storey_px, 1.15 * storey_px) if len(up) >= 1.7 * storey_px \
        else min(len(up), int(round(storey_px)))
    bp = period(lum.T, 0.4 * storey_px, 1.4 * storey_px)
    if sp < 6 or bp < 6:
        return None
    up = _without_pipes(up, storey_px, bp)
    ny, nx = len(up) // sp, (x1 - x0) // bp
    if ny * nx < MIN_CELLS:
        return None
    # From the top down: the rows left over at the bottom are the ones nearest the shop
    # fronts (a sign's top over the ground floor came out on every wing, img_270).
    tile = _typical(up[:ny * sp, :nx * bp], ny, nx)
    ref = np.median(up.reshape(-1, 3), axis=0).astype(np.float32)
    lum = luminance(tile)
    if not OPENINGS[0] < float((lum < 0.6 * np.median(lum)).mean()) < OPENINGS[1]:
        return None             # a plain wall (no windows to show) or no wall at all (a curtain of glass)
    return Cells(np.ascontiguousarray(tile, np.float32), int(sp), int(bp), ref)


def _without_pipes(up: np.ndarray, storey_px: float, bay_px: int) -> np.ndarray:
    """The facade with its downpipes and cables painted out by the wall beside them. The
    tile repeats every bay and every wing: one pipe became a pipe every few metres of
    every courtyard wall, and where a wing's piers were widened by their plainest column
    the pipe was that column, a band of bright metal down a wall (img_181 at 100 %).
    It is painted out by the same columns a bay or two along, the same pier without it."""
    k = max(3, int(round(PIPE_W * storey_px)))
    spans, anywhere = _pipe_spans(luminance(up), k)
    out = up.copy()
    for lo, hi in spans:
        out[:, lo:hi] = _bay_along(up, anywhere, lo, hi, bay_px)
    return out


def _pipe_spans(lum: np.ndarray, k: int) -> tuple[list, np.ndarray]:
    """The column spans (lo, hi) to paint out, each a pipe's run with its shadow and
    brackets, and where any pipe's run is. A pipe runs the facade's whole height, past
    the window rows: lighter (or darker) than the wall k columns either side of it in
    every row. A window's jamb differs from one side only, its mullion over the window's
    height only, and a window's column is its dark frame in some rows and its light
    curtain in others."""
    cores = []
    for sign in (1.0, -1.0):
        d = [sign * (lum / np.maximum(np.roll(lum, s, axis=1), 1e-6) - 1.0) > PIPE_DIFF[0] for s in (k, -k)]
        c = (d[0] & d[1]).mean(axis=0) > PIPE_ROWS
        c[:2] = c[-2:] = False
        cores.append(c)
    ref = median_filter(np.median(lum, axis=0), size=6 * k + 1, mode="nearest")
    share = (np.abs(lum / np.maximum(ref, 1e-6)[None, :] - 1.0) > PIPE_DIFF[1]).mean(axis=0)
    spans = []
    # (a light pipe and its dark shadow are two runs, each as narrow as a pipe)
    for core in cores:
        edges = np.flatnonzero(np.diff(np.r_[0, core.astype(np.int8), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a > k:
                continue                      # a pilaster or a shopfront's bay, wider than a pipe
            lo, hi = a, b
            while lo > max(a - k, 1) and share[lo - 1] > PIPE_ROWS:
                lo -= 1
            while hi < min(b + k, len(share) - 1) and share[hi] > PIPE_ROWS:
                hi += 1
            spans.append((max(lo - 3, 0), min(hi + 3, lum.shape[1])))
    return spans, cores[0] | cores[1]


def _bay_along(up: np.ndarray, core: np.ndarray, a: int, b: int, bay_px: int) -> np.ndarray:
    """Columns a..b as the facade has them a whole number of bays along (the nearest such
    span inside the facade with no pipe in it), feathered into the columns they join.
    (Wall taken from beside the pipe brought half a window with it where the pier
    between two windows was hardly wider than the pipe and its shadow, img_181.)"""
    n, w = b - a, up.shape[1]
    for m in (1, -1, 2, -2, 3, -3):
        p = a + m * bay_px
        if 0 <= p and p + n <= w and not core[max(p - 2, 0):p + n + 2].any():
            # Brought to the light each side of the gap (a facade is often lit unevenly
            # along its length: the patch from a bay over showed as a lighter strip).
            patch = up[:, p:p + n]
            g = [_gain(up[:, max(a - 3, 0):max(a, 1)], patch[:, :3]), _gain(up[:, b:b + 3], patch[:, -3:])]
            patch = patch * np.linspace(g[0], g[1], n)[None, :, None]
            f = np.clip(np.minimum(np.arange(n) + 1.0, n - np.arange(n)) / 2.0, 0.0, 1.0)[None, :, None]
            return patch * f + up[:, a:b] * (1 - f)
    return up[:, a:b]


def _gain(want: np.ndarray, have: np.ndarray) -> float:
    """How much brighter the columns `want` are than `have` (their median, within 2x)."""
    if not want.size:
        return 1.0
    return float(np.clip(np.median(luminance(want)) / max(float(np.median(luminance(have))), 1e-6), 0.5, 2.0))


def period(a: np.ndarray, lo: float, hi: float) -> int:
    """The lag (rows of a) at which the whole of a best repeats itself, among lo..hi: of
    the dips of its mean difference, the smallest within TIE of the deepest, so twice the
    period never wins over it. (plate_texture's edge-band match compares a few rows at
    the edge; over a plain band between window rows any lag matched there.)"""
    n = len(a)
    lags = np.arange(int(max(2, np.floor(lo))), int(min(np.ceil(hi), 0.8 * n)) + 1)
    if not len(lags):
        return int(max(2, min(n, round(lo))))
    err = np.array([np.mean(np.abs(a[k:] - a[:-k])) for k in lags])
    # Only a dip counts: at the range's low end any image differs least from itself
    # shifted a little, and the least difference there is no period.
    dip = np.r_[False, (err[1:-1] <= err[:-2]) & (err[1:-1] <= err[2:]), False]
    if not dip.any():
        return int(lags[int(np.argmin(err))])
    best = err[dip].min()
    return int(lags[np.nonzero(dip & (err <= best * (1 + TIE) + 1e-9))[0][0]])


def _typical(tile: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """The tile with its odd cells (a sign across some bays, a one-off balcony, a
    drainpipe's bracket) replaced by their storey's most typical cell: each cell against
    the median of its storey's cells, odd past ODD times that storey's median difference.
    A sign on an upper floor (img_100's KARCHER over its second floor) was carried onto
    every wing. Fewer than three bays cannot tell the odd one out."""
    if nx < 3:
        return tile
    sp, bp = tile.shape[0] // ny, tile.shape[1] // nx
    out = tile.copy()
    for j in range(ny):
        cells = np.stack([tile[j * sp:(j + 1) * sp, i * bp:(i + 1) * bp] for i in range(nx)])
        dev = np.abs(cells - np.median(cells, axis=0)).mean(axis=(1, 2, 3))
        typical = cells[int(np.argmin(dev))]
        for i in np.nonzero(dev > ODD * np.median(dev) + 1e-6)[0]:
            out[j * sp:(j + 1) * sp, i * bp:(i + 1) * bp] = typical
    return out


def _whole_storey(band: np.ndarray, storey_px: int) -> np.ndarray:
    """Less than a storey of facade shows over the ground floor (the frame cuts the
    building): the band made a storey tall by plain wall under it, each column the
    band's own median (its pier or the wall under its window), so it repeats at the
    storey's period, not the band's."""
    plain = np.median(band, axis=0, keepdims=True)
    return np.concatenate([band, np.repeat(plain, storey_px - len(band), axis=0)]).astype(np.float32)


def _varied(cells: Cells, rng) -> Cells:
    """The tile as another building of the block would have it: mirrored or not, its
    piers wider and its storeys taller by wall of its own (each bay's and each storey's
    plainest column and row repeated, up to PIER and STOREY_PAD of them). Every wing
    continued the one tile as it is, and a review read them as copies of the facade."""
    t, sp, bp = cells.tile, cells.storey_px, cells.bay_px
    if rng.random() < 0.5:
        t = t[:, ::-1]
    ny, nx = t.shape[0] // sp, t.shape[1] // bp
    kx, ky = int(round(rng.uniform(0, PIER) * bp)), int(round(rng.uniform(0, STOREY_PAD) * sp))
    dark = luminance(t) < 0.6 * float(np.median(luminance(t)))
    if kx:
        parts = []
        for i in range(nx):
            c = i * bp + int(np.argmin(dark[:, i * bp:(i + 1) * bp].mean(axis=0)))
            parts += [t[:, i * bp:c], np.repeat(t[:, c:c + 1], kx, axis=1), t[:, c:(i + 1) * bp]]
        t, bp = np.concatenate(parts, axis=1), bp + kx
    if ky:
        dark = luminance(t) < 0.6 * float(np.median(luminance(t)))
        parts = []
        for j in range(ny):
            r = j * sp + int(np.argmin(dark[j * sp:(j + 1) * sp].mean(axis=1)))
            parts += [t[j * sp:r], np.repeat(t[r:r + 1], ky, axis=0), t[r:(j + 1) * sp]]
        t, sp = np.concatenate(parts, axis=0), sp + ky
    return Cells(np.ascontiguousarray(t, np.float32), sp, bp, cells.ref)


def photo_wall(cells: Cells, up: np.ndarray, along: np.ndarray, px_per_m: float, scale: float,
               colour: np.ndarray, seed) -> np.ndarray:
    """A wall whose rows stand up (m above the courtyard) and whose columns lie along (m
    along the wall), continued from the facade's tile (px_per_m: the facade's pixels a
    metre) from an offset of whole storeys and bays of its own (seed), shrunk by scale
    (the wall's distance against the facade's) first, so it is filtered, not aliased.
    Recoloured from the facade's render to `colour` where a pixel is wall; glass, frames
    and shadows keep their own. seed: the wall's own (anything numpy's generators take)."""
    rng = np.random.default_rng(seed)
    cells = _varied(cells, rng)
    th, tw = cells.tile.shape[:2]
    sh, sw = max(2, int(round(th * scale))), max(2, int(round(tw * scale)))
    small = cv2.resize(cells.tile, (sw, sh), interpolation=cv2.INTER_AREA)
    ky, kx = px_per_m * sh / th, px_per_m * sw / tw          # the shrunk tile's pixels a metre
    oy = int(rng.integers(0, max(1, th // cells.storey_px))) * cells.storey_px * sh / th
    ox = int(rng.integers(0, max(1, tw // cells.bay_px))) * cells.bay_px * sw / tw
    rows = np.floor(np.mod(np.asarray(up) * ky + oy, sh)).astype(np.int64)
    cols = np.floor(np.mod(np.asarray(along) * kx + ox, sw)).astype(np.int64)
    out = small[(sh - 1) - np.clip(rows, 0, sh - 1)][:, np.clip(cols, 0, sw - 1)]
    lum = luminance(out)
    ref_l = max(float(luminance(cells.ref[None, None])[0, 0]), 1e-6)
    wall = np.clip(1 - np.abs(lum / ref_l - 1) / WALLNESS, 0, 1)[..., None]
    gain = np.asarray(colour, np.float32) / np.maximum(cells.ref, 1e-6)
    return (out * (1 + wall * (gain - 1))).astype(np.float32)
