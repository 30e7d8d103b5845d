"""Numba kernels of the comp: the per-pixel layer maths in one pass over the frame.

Written as numpy expressions the comp made a dozen full-frame temporaries a frame and
cost more than the render; fused here it is one read of every input and one write of
every output. stages/comp.py says what is composited and why; this is only how fast.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, nogil=True)

_LUT_N = 4096
# sRGB encoding tabulated on sqrt(linear), where it is smooth; interpolated it is within
# 1e-5 of the exact curve everywhere.
_x = (np.arange(_LUT_N + 1, dtype=np.float64) / _LUT_N) ** 2
SRGB_LUT = np.where(_x <= 0.0031308, _x * 12.92, 1.055 * np.power(_x, 1 / 2.4) - 0.055).astype(np.float32)


@njit(inline="always", **_OPTS)
def _encode(x, lut):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    f = np.sqrt(x) * (lut.shape[0] - 1)
    i = int(f)
    a = f - i
    return lut[i] * (1 - a) + lut[i + 1] * a


@njit(inline="always", **_OPTS)
def _shadow(ts, tk, sun_share):
    return sun_share * np.exp(-ts) + (1 - sun_share) * (0.3 + 0.7 * np.exp(-0.35 * tk))


@njit(parallel=True, **_OPTS)
def layers(plate, clean, matte, static, ground, debris, deb_z, hold, hold_z, front, back, near, far, sun_share,
           has_dust, out, debris_pass, dust_pass, touched):
    """Clean plate + debris + dust + holdouts in depth order; writes the linear beauty,
    the two passes as seen, and whether each pixel differs from the plate.

    Per pixel the holdout (the plate's own foreground, at hold_z) goes in front of the
    debris where it is nearer than the nearest piece (deb_z, 0 where none), else behind
    it; the dust was split by the renderer at the nearer of the two, so its front part
    covers the holdout and its back part is hidden by it."""
    H, W = matte.shape
    for y_ in prange(H):
        y = np.int64(y_)
        for x in range(W):
            st = min(max(static[y, x], 0.0), 1.0)
            k = matte[y, x] * (1 - st)
            gm = 1 - (1 - ground[y, x]) * (1 - st)
            da = debris[y, x, 3]
            h = hold[y, x]
            zd = deb_z[y, x]
            hf = h if (zd <= 0.0 or hold_z[y, x] <= zd) else 0.0     # holdout in front of the debris
            hb = h - hf                                                  # behind it (a piece landed in front)
            if has_dust:
                fn = _shadow(near[y, x, 0], near[y, x, 1], sun_share)
                ff = _shadow(far[y, x, 0], far[y, x, 1], sun_share)
                sh = st * fn + (1 - st) * ff
                fa = front[y, x, 3]
                ba = back[y, x, 3]
                seen_back = (1 - fa) * (1 - hf) * (1 - da) * (1 - hb) * (1 - st)
            else:
                fn = 1.0
                sh = 1.0
                fa = 0.0
                ba = 0.0
                seen_back = 0.0
            diff = 0.0
            for c in range(3):
                p = plate[y, x, c]
                base = (p + (clean[y, x, c] - p) * k) * gm * sh
                deb = debris[y, x, c] * fn
                if has_dust:
                    behind = st * base + (1 - st) * (back[y, x, c] + (1 - ba) * base)
                    behind = hb * p + (1 - hb) * behind
                    v = front[y, x, c] + (1 - fa) * (hf * p + (1 - hf) * (deb + (1 - da) * behind))
                    dust_pass[y, x, c] = front[y, x, c] + seen_back * back[y, x, c]
                else:
                    v = hf * p + (1 - hf) * (deb + (1 - da) * (hb * p + (1 - hb) * base))
                    dust_pass[y, x, c] = 0.0
                debris_pass[y, x, c] = deb * (1 - fa) * (1 - hf)
                out[y, x, c] = v
                diff = max(diff, abs(v - p))
            debris_pass[y, x, 3] = da * (1 - fa) * (1 - hf)
            dust_pass[y, x, 3] = (fa + seen_back * ba) if has_dust else 0.0
            touched[y, x] = diff > 1e-6


@njit(inline="always", **_OPTS)
def _band_sigma(sigma, band_lum, lum, c):
    """The grain's sigma of channel c at display luminance lum: linear between the
    luminance bands' own (shadows, mid-tones, highlights), held beyond the outer ones."""
    if lum <= band_lum[0]:
        return sigma[0, c]
    for b in range(1, band_lum.shape[0]):
        if lum <= band_lum[b]:
            a = (lum - band_lum[b - 1]) / max(band_lum[b] - band_lum[b - 1], 1e-6)
            return sigma[b - 1, c] * (1 - a) + sigma[b, c] * a
    return sigma[band_lum.shape[0] - 1, c]


@njit(parallel=True, **_OPTS)
def encode(lin, noise, soft, sigma, band_lum, plate_u8, touched, lut, to_display, out_u8):
    """Display encoding (working space -> Rec.709 primaries -> sRGB curve) with grain
    where the effect touched the picture, each channel's at the level the plate has at
    that pixel's luminance; elsewhere the plate's own 8-bit values, so untouched pixels
    stay bit-identical."""
    H, W = touched.shape
    for y_ in prange(H):
        y = np.int64(y_)
        e = np.empty(3, np.float32)
        for x in range(W):
            s = soft[y, x]
            if not touched[y, x] and s <= 1e-3:
                for c in range(3):
                    out_u8[y, x, c] = plate_u8[y, x, c]
                continue
            l0, l1, l2 = lin[y, x, 0], lin[y, x, 1], lin[y, x, 2]
            for c in range(3):
                d = to_display[c, 0] * l0 + to_display[c, 1] * l1 + to_display[c, 2] * l2
                e[c] = _encode(d, lut)
            lum = 0.2126 * e[0] + 0.7152 * e[1] + 0.0722 * e[2]
            for c in range(3):
                v = e[c] + noise[y, x, c] * _band_sigma(sigma, band_lum, lum, c) * s
                out_u8[y, x, c] = np.uint8(min(max(np.floor(v * 255.0 + 0.5), 0.0), 255.0))
