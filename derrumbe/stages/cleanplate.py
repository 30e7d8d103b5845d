"""Clean-plate stage: what stands behind the building once it is gone.

Built in layers, back to front, all in scene-linear light:
1. sky: a smooth quadratic fitted to the plate's own sky (so its gradient continues),
   or, with no sky in frame, one synthesised from the plate's white balance;
2. a hazy distant skyline along the horizon, coloured from the plate's buildings
   and pushed toward the sky colour (aerial perspective);
3. neighbouring walls continued into the gap by mirroring their own texture (windows
   continue; no smear), fading out within a few metres;
4. the ground below the horizon continued from the rows beneath the building.
"""

from __future__ import annotations

import cv2
import numpy as np

from derrumbe.colour import luminance, rec709_to_working, working_to_rec709
from derrumbe.stages.camera import Camera


def _fit_sky(lin: np.ndarray, sky: np.ndarray) -> np.ndarray | None:
    """Vertical gradient fitted to the plate's sky; None when too little sky shows."""
    ys, xs = np.nonzero(sky > 0.5)
    h, w = sky.shape
    if ys.size < 0.03 * h * w:
        return None
    sel = np.random.default_rng(0).choice(ys.size, min(20000, ys.size), replace=False)
    y = ys[sel] / h
    vals = lin[ys[sel], xs[sel]]
    A = np.stack([np.ones_like(y), y], 1)
    coef, *_ = np.linalg.lstsq(A, vals, rcond=None)
    yy = (np.arange(h, dtype=np.float32) / h)[:, None]
    col = np.stack([np.ones_like(yy), yy], -1) @ coef.astype(np.float32)
    # Never extrapolate beyond what the sky itself shows.
    col = np.clip(col, vals.min(axis=0) * 0.9, vals.max(axis=0) * 1.1)
    return np.broadcast_to(col, (h, w, 3)).astype(np.float32).copy()


def _match_rows(lin, building, sky_mask, sky_model, band=24):
    """Bends the sky model, row by row, to the real sky left and right of the gap, so the
    fill meets the plate's sky without a seam (the plate's sky varies across too)."""
    h, w = building.shape
    out = sky_model.copy()
    inside = building > 0.5
    cols = np.arange(w, dtype=np.float32)
    for y in np.nonzero(inside.any(axis=1))[0]:
        xs = np.nonzero(inside[y])[0]
        l0, r0 = xs.min(), xs.max()
        lm = sky_mask[y, max(0, l0 - band):l0] > 0.5
        rm = sky_mask[y, r0 + 1:r0 + 1 + band] > 0.5
        lv = lin[y, max(0, l0 - band):l0][lm].mean(0) - sky_model[y, l0] if lm.sum() > 3 else None
        rv = lin[y, r0 + 1:r0 + 1 + band][rm].mean(0) - sky_model[y, r0] if rm.sum() > 3 else None
        if lv is None and rv is None:
            continue
        lv = rv if lv is None else lv
        rv = lv if rv is None else rv
        a = np.clip((cols - l0) / max(1, r0 - l0), 0, 1)[:, None]
        out[y] = sky_model[y] + lv * (1 - a) + rv * a
    # Rows are matched independently: smooth the correction vertically against banding.
    corr = cv2.GaussianBlur(out - sky_model, (0, 0), sigmaX=0.1, sigmaY=4)
    return np.clip(sky_model + corr, 0, None)


def _synth_sky(lin: np.ndarray, cam: Camera) -> np.ndarray:
    h, w = lin.shape[:2]
    # White balance of the plate: the average of its brightest pixels tells the light's tint.
    lum = luminance(lin)
    bright = working_to_rec709(lin[lum > np.percentile(lum, 97)].mean(axis=0))
    tint = bright / max(bright.mean(), 1e-4)
    # A clear sky's colours, as Rec.709 values, tinted there and carried to the working space.
    horizon = rec709_to_working(np.array([0.62, 0.68, 0.76]) * tint)
    zenith = rec709_to_working(np.array([0.25, 0.38, 0.65]) * tint)
    level = np.clip(np.percentile(lum, 95) * 1.3, 0.3, 1.2)
    t = np.clip((np.arange(h, dtype=np.float32) - (cam.cy - 2.5 * h)) / (2.5 * h), 0, 1)[:, None, None]
    sky = (zenith * (1 - t) + horizon * t) * level
    return np.broadcast_to(sky, (h, w, 3)).astype(np.float32).copy()


def _skyline(lin, building, cam: Camera, rng) -> tuple[np.ndarray, np.ndarray]:
    """Distant blocks 150-400 m away: low, hazy, under the building's silhouette only."""
    h, w = building.shape
    col = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    facade = lin[building > 0.5].mean(axis=0)
    x = 0
    while x < w:
        bw = int(rng.uniform(0.04, 0.12) * w)
        dist = rng.uniform(150, 400)
        hm = rng.uniform(10, 45)
        top = int(cam.cy - cam.f_px * (hm - cam.eye_m) / dist)
        bottom = int(cam.cy + cam.f_px * cam.eye_m / dist) + 1
        haze = 1 - np.exp(-dist / 250)
        c = facade * rng.uniform(0.6, 0.9)
        t0, t1 = max(0, top), max(0, bottom)
        # Faint window rows and a lit side keep the blocks from reading as flat cards.
        rows = 1 - 0.08 * (np.arange(t1 - t0) % 3 == 0)[:, None, None]
        side = np.linspace(1.05, 0.92, min(bw, w - x))[None, :, None]
        col[t0:t1, x:x + bw] = c * rows * side
        alpha[max(0, top):max(0, bottom), x:x + bw] = 1 - 0.85 * haze
        x += bw
    return col, alpha


def _continue_neighbours(lin, building, skyness, reach_px: int, holdout) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the walls beside the building into the gap, row by row, fading out."""
    h, w = building.shape
    out = np.zeros_like(lin)
    wgt = np.zeros((h, w), np.float32)
    inside = building > 0.5
    for y in np.nonzero(inside.any(axis=1))[0]:
        xs = np.nonzero(inside[y])[0]
        left, right = int(xs.min()), int(xs.max())
        k = min(reach_px, right - left + 1)
        i = np.arange(k)
        for src_edge, dst, step in ((left - 1, left + i, -1), (right + 1, right - i, 1)):
            n = (src_edge + 1) if step < 0 else (w - src_edge)
            n = min(n, reach_px)
            if n < 2:
                continue
            m = i % (2 * n)
            m = np.where(m < n, m, 2 * n - 1 - m)          # reflect, so texture continues
            src = src_edge + step * m
            fade = (1.0 - i / reach_px) ** 0.7 * (1.0 - skyness[y, src]) * (1.0 - holdout[y, src])
            out[y, dst] += lin[y, src] * fade[:, None]
            wgt[y, dst] += fade
    return out, wgt


def make_cleanplate(lin: np.ndarray, building: np.ndarray, holdout: np.ndarray, skyness: np.ndarray,
                    cam: Camera, metres_px: float, seed: int) -> np.ndarray:
    """The plate with the building replaced by what plausibly stands behind it."""
    h, w = building.shape
    rng = np.random.default_rng(seed)
    outside_sky = skyness * (building < 0.5)
    sky = _fit_sky(lin, outside_sky)
    if sky is None:
        sky = _synth_sky(lin, cam)
    fill = _match_rows(lin, building, outside_sky, sky)
    far, far_a = _skyline(lin, building, cam, rng)
    fill = fill * (1 - far_a[..., None]) + far * far_a[..., None]
    reach = int(max(4, 3.0 * metres_px))   # a party wall shows a few metres at most
    nb, nw = _continue_neighbours(lin, building, skyness, reach, holdout)
    a = np.clip(nw, 0, 1)[..., None]
    fill = fill * (1 - a) + nb / np.maximum(nw, 1e-6)[..., None] * a
    # Ground behind the building: rows between the horizon and the base, mirrored up
    # from the pavement in front (or its mean colour where the base is the frame's edge).
    ys = np.nonzero(building.max(axis=1) > 0.5)[0]
    base = int(ys.max()) + 1
    g0 = int(np.clip(np.ceil(cam.cy), 0, h))
    if g0 < base:
        rows = np.arange(g0, base)
        below = h - base
        if below >= 0.08 * h:
            src = base + (base - 1 - rows) % below
            ground = lin[src]
        else:
            ground = np.broadcast_to(lin[-max(1, h // 20):].mean(axis=(0, 1)), (len(rows), w, 3))
        fade = np.clip((rows - g0) / max(1.0, 0.15 * (base - g0) + 1), 0, 1)[:, None, None]
        fill[g0:base] = fill[g0:base] * (1 - fade) + ground * fade
    m = building[..., None]
    return (lin * (1 - m) + fill * m).astype(np.float32)
