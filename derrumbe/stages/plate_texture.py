"""The facade's texture as the pieces carry it: the plate, filled out past the building's
matte, and continued past the frame's edges.

A building is often taller (or wider) than the frame: the proxy holds storeys the camera
never saw, and once the upper block drops they come into view. Mirroring the plate past
the frame's edge doubles cornices and sills about a seam; what a facade does beyond the
frame is repeat, so the texture is continued by translation: by the storey period up and
down, by the bay period left and right, each the lag at which the facade's edge rows (or
columns) best continue themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MATCH = 0.85             # row profiles (standardised) a lag apart differing by less than this: a storey
KEYSTONE = 0.65          # a camera tilted up sees the top storeys this much shorter than its rulers' storey
MAX_PAD = 1.0            # the texture reaches at most this share of the frame past each edge


def facade_texture(plate_lin: np.ndarray, matte: np.ndarray, holdout: np.ndarray | None = None) -> np.ndarray:
    """The plate with the building's own pixels pushed out past its matte (and over the
    foreground objects in front of it): what a piece carries must be facade to its very
    edge, never the sky beside it or a lamp post before it. Pull-push: the building's
    pixels averaged down a pyramid, then each level's holes filled from the coarser one."""
    m = cv2.erode((matte > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0
    if holdout is not None:
        m &= cv2.dilate((holdout > 0.05).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    if m.sum() < 16:
        return plate_lin.astype(np.float32)
    w = m.astype(np.float32)
    levels = [(plate_lin.astype(np.float32) * w[..., None], w)]
    while min(levels[-1][1].shape) > 4:
        c, a = levels[-1]
        size = (max(1, c.shape[1] // 2), max(1, c.shape[0] // 2))
        levels.append((cv2.resize(c, size, interpolation=cv2.INTER_AREA), cv2.resize(a, size, interpolation=cv2.INTER_AREA)))
    c, a = levels[-1]
    fill = c / np.maximum(a, 1e-6)[..., None]
    for c, a in reversed(levels[:-1]):
        up = cv2.resize(fill, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR)
        k = np.clip(a * 4.0, 0.0, 1.0)[..., None]        # a level's own colour where it has enough of it
        fill = k * (c / np.maximum(a, 1e-6)[..., None]) + (1 - k) * up
    return np.where(m[..., None], plate_lin, fill).astype(np.float32)


def repeat_period(edge: np.ndarray, lo: float, hi: float, expect: float | None = None) -> int:
    """The lag, in rows, at which the image's first rows repeat (edge: rows from the edge
    inward, H x W x C), among lo..hi: the lag at which the image's row profile (each row's
    brightness and how much it changes along the row: window rows are dark and busy)
    best matches itself over a whole period, or as much of one as the image holds. A
    profile, not the pixels: no two windows are alike, but their rows are. Matched over a
    band of pixels a few rows deep, img_270's lag landed on any two stretches of plain
    wall, 24 rows long, and drew a strip of window tops between every two storeys. Where
    no lag matches (its profiles differ by more than MATCH standard deviations, where
    unrelated ones differ by 1.13), the image cannot tell the period and expect (the
    rulers' reading) stands: img_288 shows one storey over its shop signs, and a lag
    'found' 10 px short of its 137 px storey cut every window above the frame off at its
    sill, in a ruler line."""
    n = len(edge)
    lo, hi = int(max(2, lo)), int(min(hi, n - 3))
    if hi <= lo:
        return max(1, min(n, int(round(lo if expect is None else expect))))
    lags = np.arange(lo, hi + 1)
    spans = np.minimum(lags, n - lags)
    keep = spans >= max(3, lo // 3)
    lags, spans = lags[keep], spans[keep]
    if not len(lags):
        return max(1, min(n, int(round(lo if expect is None else expect))))
    prof = _standardised(_row_profile(edge))
    err = np.array([np.mean(np.abs(prof[k:k + m] - prof[:m])) for k, m in zip(lags, spans)])
    if expect is not None and err.min() > MATCH:
        return int(min(round(expect), n))
    return int(lags[int(np.argmin(err))])


def _row_profile(img: np.ndarray) -> np.ndarray:
    """(rows, 2): each row's log brightness and how much it changes along the row."""
    n = len(img)
    lum = np.log(np.maximum(img.astype(np.float32).reshape(n, img.shape[1], -1).mean(axis=2), 1e-4))
    return np.stack([lum.mean(axis=1), np.abs(np.diff(lum, axis=1)).mean(axis=1)], 1)


def _standardised(prof: np.ndarray) -> np.ndarray:
    return (prof - prof.mean(axis=0)) / (prof.std(axis=0) + 1e-6)


TYPICAL_OF = 3           # storeys under the frame's top compared to pick the one repeated above it


def typical_storey(top: np.ndarray, p: int, lo: float, hi: float) -> np.ndarray:
    """The p rows repeated above the frame (top: the frame's rows above the ground floor,
    top down; p: their period at the frame's top): of the first TYPICAL_OF storeys down
    from the frame's top, each taken at its own period (a camera tilted up sees them
    taller further down) and brought to p rows, the one whose row profile is nearest the
    others'. The storey the frame's top cuts is often the odd one (a top floor without the
    balconies below it): repeated over the storeys the frame never saw, a sinking block
    lost its balconies as it dropped, a building swapped for another (img_270 at 40 %).
    With fewer storeys in the frame, or storeys all alike, the top one."""
    storeys, start, lag = [], 0, p
    while len(storeys) < TYPICAL_OF and start + lag <= len(top):
        storeys.append(top[start:start + lag])
        start += lag
        lag = repeat_period(top[start:], lo, hi, expect=p) if len(top) - start > 3 else p
    if len(storeys) < TYPICAL_OF:
        return top[:p]
    tiles = [_to_rows(t, p) for t in storeys]
    profs = _standardised(np.concatenate([_row_profile(t) for t in tiles])).reshape(len(tiles), p, 2)
    cost = [sum(float(np.abs(a - b).mean()) for b in profs) for a in profs]
    return tiles[int(np.argmin(cost))]


def _to_rows(img: np.ndarray, n: int) -> np.ndarray:
    """img resampled to n rows (its columns as they are)."""
    if len(img) == n:
        return img
    return cv2.resize(img, (img.shape[1], n), interpolation=cv2.INTER_AREA).reshape((n,) + img.shape[1:])


@dataclass
class Atlas:
    image: np.ndarray        # (y1 - y0) x (x1 - x0) x C: the texture, rows top down
    x0: int                  # plate pixel of its first column (negative: past the left edge)
    y0: int                  # plate pixel of its first row (negative: above the frame)

    def uv_window(self, width: int, height: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """(lo, span) such that atlas uv = (frame uv - lo) / span, frame uv with y up (GL)."""
        h, w = self.image.shape[:2]
        y1 = self.y0 + h
        return (self.x0 / width, (height - y1) / height), (w / width, h / height)


def continue_past_frame(tex: np.ndarray, lo, hi, storey_px: float | None = None,
                        upper_rows: int | None = None) -> Atlas:
    """tex continued by translation to cover plate pixels lo = (x0, y0) .. hi = (x1, y1),
    which may lie past the frame (at most MAX_PAD of it on each side). Up and down it
    repeats with the storey period (searched about storey_px when given), left and right
    with the bay period. upper_rows: the frame's rows above the ground floor; what is
    continued above the frame comes from them only (a frame showing one upper storey and
    the shop front had the shop's sign repeated over the roofline)."""
    H, W = tex.shape[:2]
    x0 = int(np.clip(np.floor(lo[0]), -MAX_PAD * W, 0))
    y0 = int(np.clip(np.floor(lo[1]), -MAX_PAD * H, 0))
    x1 = int(np.clip(np.ceil(hi[0]), W, (1 + MAX_PAD) * W))
    y1 = int(np.clip(np.ceil(hi[1]), H, (1 + MAX_PAD) * H))
    if storey_px and storey_px > 4:
        v_lo, v_hi = KEYSTONE * storey_px, 1.08 * storey_px    # the rulers' reading, refined
        h_lo, h_hi = 0.4 * storey_px, 1.3 * storey_px
    else:
        v_lo, v_hi, h_lo, h_hi = H / 8, 0.6 * H, W / 10, 0.6 * W
    top = tex if upper_rows is None else tex[:max(2, min(int(upper_rows), H))]
    expect = storey_px if storey_px and storey_px > 4 else None
    img = tex[_indices(0, y1, H, None, lambda: repeat_period(tex[::-1], v_lo, v_hi, expect))]
    if y0 < 0:
        p = repeat_period(top, v_lo, v_hi, expect)
        img = np.concatenate([typical_storey(top, p, v_lo, v_hi)[np.mod(np.arange(y0, 0), p)], img])
    cols = _indices(x0, x1, W, lambda: repeat_period(tex.transpose(1, 0, 2), h_lo, h_hi),
                    lambda: repeat_period(tex.transpose(1, 0, 2)[::-1], h_lo, h_hi))
    return Atlas(np.ascontiguousarray(img[:, cols]), x0, y0)


def _indices(a: int, b: int, n: int, period_first, period_last) -> np.ndarray:
    """Source indices for a..b over an axis of n: inside, themselves; before 0, shifted by
    whole periods into the first period; past n, into the last."""
    i = np.arange(a, b)
    if a < 0:
        p = period_first()
        i = np.where(i < 0, np.mod(i, p), i)
    if b > n:
        q = period_last()
        i = np.where(i >= n, n - q + np.mod(i - n, q), i)
    return i


COPING_M = 0.12          # the stone or metal cap along a parapet's top
DRIP_M = 0.08            # the shadow line under the coping's overhang
CORNICE_M = 0.8          # the crown cornice under the coping: its corona, dentils and soffit
DENTIL_M = 0.16          # a dentil's width (and the gap between two)
SOFFIT_SHADE = 0.5       # the cornice's underside, lit by the street's bounce only
EAVE_SHADOW_M = 0.3      # how far the cornice's overhang shades the frieze below it
WALL_SPAN_M = 0.6        # the band's wall colour varies along the front over this, no finer
SNAP_STOREYS = 0.35      # the parapet's foot looks this far (in storeys) below it for a plain row


def roof_parapet(atlas: Atlas, roof_row: float, px_per_m: float, storey_px: float, parapet_m: float,
                 cornice: bool = True) -> Atlas:
    """The parapet of a roof the frame never saw (roof_row: the proxy's top on the facade,
    a plate row above the frame). The continued texture would run its window rows right
    up to the roof and stop in a ruler line through them; a real roofline ends in plain
    wall under a crown cornice. The band runs from the roof down to the first plain row at
    least a parapet below it (so the top storey's windows stay whole): a lighter coping,
    the cornice's corona, dentils and shaded soffit, the shadow its overhang casts, then
    the facade's own wall, column by column, with a plaster's mottling. Rows of the plate
    tiled upward drew stripes (img_190's window heads); one flat wall colour across the
    whole width, under a thin coping line, read as a grey concrete beam once it fell
    (img_190, img_100 at 40 %). A modern front (`cornice` False: a curtain wall, a
    concrete frame) ends in a plain parapet under its metal coping: a classical cornice's
    dentils on one fell as rows of square teeth (img_263)."""
    img = atlas.image
    parapet_px = parapet_m * px_per_m
    r0 = int(round(roof_row)) - atlas.y0
    if roof_row >= 0 or r0 < 0 or parapet_px < 2 or len(img) - r0 < parapet_px + 4:
        return atlas
    lum = np.log(np.maximum(img.mean(axis=2), 0.0) + 1e-3)
    # At least the coping and the cornice: a crown cut above its soffit is a plain band.
    crown_m = COPING_M + (CORNICE_M if cornice else 0.0)
    lo, b = _parapet_foot(lum, r0, max(parapet_px, crown_m * px_per_m), storey_px, -atlas.y0)
    n, w = b - r0, img.shape[1]
    rows = slice(lo, min(len(img), lo + int(np.ceil(max(storey_px, 4.0)))))
    wall = _wall_columns(img[rows], lum[rows], WALL_SPAN_M * px_per_m)
    rng = np.random.default_rng(7)
    mottle = lambda sigma, amp: amp * cv2.GaussianBlur(rng.normal(0, 1, (n, w)).astype(np.float32), (0, 0), sigma) \
        * sigma ** 0.5
    # About 3 % at three scales, as weathered render shows it (at a third of that the band
    # read as a flat grey card where the texture had run out, img_190).
    plaster = 1.0 + mottle(1.0, 0.08) + mottle(5.0, 0.12) + mottle(20.0, 0.2)
    # Rain off the coping streaks the parapet's face: faint, column by column.
    streak = cv2.GaussianBlur(rng.normal(0, 1, (1, w)).astype(np.float32), (0, 0), 1.5)[0]
    fade = np.exp(-np.arange(n, dtype=np.float32) / max(n / 2.0, 1.0))
    grime = 1.0 - 0.08 * np.clip(streak, 0, None)[None, :] * fade[:, None]
    out = img.copy()
    shade = _crown_shade(n, w, px_per_m) if cornice else _coping_shade(n, w, px_per_m)
    out[r0:b] = wall[None] * (plaster * shade * grime)[..., None]
    # Its foot is a moulding: lit, over its own shadow on the facade below, so the band
    # reads as architecture where it crosses the top storey's pattern. Where the band runs
    # on below the crown (no plain row near it), a second one marks the roof's slab and
    # the rest is a frieze: one tall blank band read as a grey slab (img_181, img_190).
    cop, drip = max(1, int(round(COPING_M * px_per_m))), max(1, int(round(DRIP_M * px_per_m)))
    slab = max(lo, r0 + int(round((crown_m + 2 * EAVE_SHADOW_M) * px_per_m)))
    feet = [b] + ([slab] if b - slab > 4 * drip + 2 * cop else [])
    for f in feet:
        out[max(r0, f - cop):f] *= 1.12
        t = np.arange(max(0, min(len(out) - f, 4 * drip, -atlas.y0 - f)), dtype=np.float32)
        out[f:f + len(t)] *= (1.0 - 0.5 * np.exp(-t / drip))[:, None, None]
    return Atlas(out, atlas.x0, atlas.y0)


def _parapet_foot(lum: np.ndarray, r0: int, parapet_px: float, storey_px: float, frame_top: int) -> tuple[int, int]:
    """(a parapet below the roof's row r0, the first plain row at or under it within a
    third of a storey). Ties abound on a plain wall: the last of them was a storey down; a
    facade with few plain rows got a storey-high blank attic (img_190). Never into the
    frame (frame_top): what the camera saw stays as it saw it."""
    score = np.convolve(np.abs(np.diff(lum, axis=1)).mean(axis=1), np.ones(3) / 3, mode="same")
    lo = min(r0 + int(np.ceil(parapet_px - 1e-6)), frame_top)
    hi = min(len(lum) - 2, lo + int(np.ceil(max(SNAP_STOREYS * storey_px, 2.0))), frame_top)
    win = score[lo:hi + 1]
    b = lo + int(np.argmax(win <= win.min() + 0.2 * (np.median(win) - win.min()) + 1e-6)) if hi > lo else lo
    return lo, b


def _wall_columns(img: np.ndarray, lum: np.ndarray, span_px: float) -> np.ndarray:
    """The wall's colour in each column (w x C) over a storey of the facade: its plain
    pixels, the middle of them (the shade under cornices and sills is plain too, and so
    are the pale window surrounds), so the light across the front and a change of paint
    run on up into the band. A column with too few of them (all glass) takes the
    facade's."""
    gy, gx = np.gradient(lum)
    grad = np.hypot(gx, gy)
    plain = grad <= np.percentile(grad, 30)
    lit = plain & (lum >= np.percentile(lum[plain], 25)) & (lum <= np.percentile(lum[plain], 75))
    pick = lit if lit.any() else plain
    whole = np.median(img[pick], axis=0)
    cols = np.tile(whole, (img.shape[1], 1)).astype(np.float32)
    counts = pick.sum(axis=0)
    for x in np.nonzero(counts >= 3)[0]:
        cols[x] = np.median(img[pick[:, x], x], axis=0)
    # Smoothed over span_px: the light across the front and a change of paint carry on
    # up, a window's pale surround does not (it drew a pale stripe over every window).
    k = np.clip(counts / 8.0, 0.0, 1.0)[:, None]
    cols = k * cols + (1 - k) * whole
    return cv2.GaussianBlur(cols[None], (0, 0), max(span_px, 1.0))[0]


def _coping_shade(n: int, w: int, px_per_m: float) -> np.ndarray:
    """Light on a plain parapet's rows, top down (n x w): the coping's lit cap and its
    overhang's drip shadow on the wall under it."""
    y = np.arange(n, dtype=np.float32)[:, None] / px_per_m
    under = np.clip(y - COPING_M, 0.0, None)
    shade = np.where(y < COPING_M, 1.15, 1.0 - 0.35 * np.exp(-under / DRIP_M))
    return cv2.GaussianBlur(np.broadcast_to(shade, (n, w)).astype(np.float32), (0, 0), 0.6)


def _crown_shade(n: int, w: int, px_per_m: float) -> np.ndarray:
    """Light on the crown's rows, top down (n x w): a lit coping, the cornice's corona, a
    row of dentils over their own shadow, the soffit in shade, then the shadow its
    overhang casts on the wall below. A cornice is what a street facade ends in; a thin
    coping line over plain wall read as a beam."""
    m = lambda metres: int(round(metres * px_per_m))
    y = np.arange(n, dtype=np.float32)[:, None] / px_per_m
    shade = np.ones((n, w), np.float32)
    cop, corona = COPING_M, COPING_M + 0.55 * CORNICE_M
    dent, soffit = corona + 0.25 * CORNICE_M, COPING_M + CORNICE_M
    x = np.arange(w, dtype=np.float32)[None, :] / px_per_m
    teeth = np.mod(x, 2 * DENTIL_M) < DENTIL_M
    shade = np.where(y < cop, 1.15, shade)
    shade = np.where((y >= corona) & (y < dent), np.where(teeth, 0.92, 0.6), shade)
    shade = np.where((y >= dent) & (y < soffit), SOFFIT_SHADE, shade)
    below = np.clip(y - soffit, 0.0, None)
    shade = np.where(y >= soffit, 1.0 - 0.4 * np.exp(-below / (EAVE_SHADOW_M / 2)), shade)
    # Too small on screen to carry teeth: one shaded band under the corona.
    if m(DENTIL_M) < 2:
        shade = np.where((y >= corona) & (y < soffit), 0.7, shade)
    return cv2.GaussianBlur(shade, (0, 0), 0.6)
