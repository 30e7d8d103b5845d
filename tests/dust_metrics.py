"""Image measures of a rendered cloud, as they are made on photographs: the width of its
dense edges and the slope of its luminance power spectrum."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def edge_ramps(alpha: np.ndarray, dense: float = 0.9, beside: float = 0.5, max_px: int = 12,
               where: np.ndarray | None = None) -> np.ndarray:
    """10-90 % ramp widths (px) across the cloud's dense edges: from each pixel on the rim of
    the dense region (alpha > dense), the alpha profile is read along the alpha gradient
    outward; what lies beside the edge is the profile's median from 2/3 of max_px out to
    max_px (clear air, or a thinner haze round the cloud), and where that is under
    `beside` (an edge, not a dip between lumps), the distance from the last sample above
    90 % of the step from it to the cloud to the first below 10 % is measured (linearly
    interpolated). Measured down to clear air alone, an edge whose haze was cut away
    beside it (a dark outline round the cloud) read as sharper than one that meets its
    haze. where: the pixels to measure at (e.g. the cloud against the sky, as photographs
    of clouds are measured; not where the street in front cuts it off)."""
    a = alpha.astype(np.float64)
    s = ndimage.gaussian_filter(a, 1.0)
    gy, gx = np.gradient(s)
    dense_m = a > dense
    rim = dense_m & ~ndimage.binary_erosion(dense_m)
    ys, xs = np.nonzero(rim & (True if where is None else where))
    out = []
    H, W = a.shape
    steps = np.arange(-3.0, max_px + 0.25, 0.25)
    far = steps >= 2.0 * max_px / 3.0
    for y, x in zip(ys, xs):
        g = np.hypot(gx[y, x], gy[y, x])
        if g < 1e-4:
            continue
        dx, dy = -gx[y, x] / g, -gy[y, x] / g            # downhill: out of the cloud
        px, py = x + dx * steps, y + dy * steps
        if px.min() < 0 or px.max() > W - 1 or py.min() < 0 or py.max() > H - 1:
            continue
        prof = ndimage.map_coordinates(a, [py, px], order=1)
        level = float(np.median(prof[far]))
        if level >= beside:
            continue
        top = max(float(prof[0]), dense)
        hi = np.nonzero(prof > level + 0.9 * (top - level))[0]
        lo = np.nonzero(prof < level + 0.1 * (top - level))[0]
        if not len(hi) or not len(lo):
            continue
        i_lo = lo[0]
        above = hi[hi < i_lo]
        if not len(above):
            continue
        out.append((i_lo - above[-1]) * 0.25)
    return np.array(out)


def spectrum_slope(lum: np.ndarray, alpha: np.ndarray, size: int = 96, dense: float = 0.98) -> float:
    """Slope of the radially averaged luminance power spectrum, P(k) ~ k^slope, in the
    largest square patches (size px) that lie wholly inside the dense cloud (alpha >
    dense), averaged over up to 8 such patches; fitted between 3 cycles a patch and a
    quarter of the sampling rate (above which the image's own filtering dominates)."""
    inside = ndimage.binary_erosion(alpha > dense, iterations=size // 2)
    ys, xs = np.nonzero(inside)
    if not len(ys):
        return float("nan")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ys), size=min(8, len(ys)), replace=False)
    win = np.outer(np.hanning(size), np.hanning(size))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")) * size
    kb = np.arange(3, size // 4 + 1)
    spec = np.zeros(len(kb))
    for i in pick:
        y, x = ys[i] - size // 2, xs[i] - size // 2
        patch = lum[y:y + size, x:x + size]
        p = np.abs(np.fft.fft2((patch - patch.mean()) * win)) ** 2
        spec += np.array([p[(k >= b - 0.5) & (k < b + 0.5)].mean() for b in kb])
    return float(np.polyfit(np.log(kb), np.log(spec / len(pick)), 1)[0])
