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
FRINGE_DIFF = 0.05          # linear: a background changed this much behind a holdout's edge shows its own colour
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
def layers(plate, clean, matte, static, ground, debris, deb_z, hold, hold_z, hold_col, front, back, near, far,
           sun_share, has_dust, out, debris_pass, dust_pass, touched):
    """Clean plate + debris + dust + holdouts in depth order; writes the linear beauty,
    the two passes as seen, and whether each pixel differs from the plate.

    Per pixel the holdout (the plate's own foreground, at hold_z) goes in front of the
    debris where it is nearer than the nearest piece (deb_z, 0 where none), else behind
    it; the dust was split by the renderer at the nearer of the two, so its front part
    covers the holdout and its back part is hidden by it. hold_col: the holdout's own
    colour at its edge (the plate's there carries the old background); it takes over as
    far as what now lies behind the holdout differs from the plate (_fringe), so an edge
    over an unchanged background stays the plate's."""
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
                hc = hold_col[y, x, c]
                if has_dust:
                    # A holdout under the cloud is in its shade as the debris is (left as
                    # shot, a white car glowed in the dust's shadow amid darkened rubble).
                    behind = st * base + (1 - st) * (back[y, x, c] + (1 - ba) * base)
                    behind = hb * _fringe(p, hc, behind) * fn + (1 - hb) * behind
                    xf = deb + (1 - da) * behind
                    v = front[y, x, c] + (1 - fa) * (hf * _fringe(p, hc, xf) * fn + (1 - hf) * xf)
                    dust_pass[y, x, c] = front[y, x, c] + seen_back * back[y, x, c]
                else:
                    behind = hb * _fringe(p, hc, base) + (1 - hb) * base
                    xf = deb + (1 - da) * behind
                    v = hf * _fringe(p, hc, xf) + (1 - hf) * xf
                    dust_pass[y, x, c] = 0.0
                debris_pass[y, x, c] = deb * (1 - fa) * (1 - hf)
                out[y, x, c] = v
                diff = max(diff, abs(v - p))
            debris_pass[y, x, 3] = da * (1 - fa) * (1 - hf)
            dust_pass[y, x, 3] = (fa + seen_back * ba) if has_dust else 0.0
            touched[y, x] = diff > 1e-6


@njit(inline="always", **_OPTS)
def _fringe(p, hc, under):
    """A holdout's colour over what now lies under it: the plate's, moving to its own
    edge colour hc as far as that differs from the plate by FRINGE_DIFF or more."""
    w = min(abs(under - p) / FRINGE_DIFF, 1.0)
    return p + (hc - p) * w


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


# Edge anti-aliasing on the rendered pieces (Lottes' FXAA 3.11, "quality" variant, on the
# CPU): thresholds on perceptual luma, as its reference.
FXAA_EDGE_REL = 0.125       # local contrast below this share of the brightest neighbour: no edge
FXAA_EDGE_MIN = 0.0312      # nor below this absolute contrast (dark noise)
FXAA_SUBPIX = 0.75          # how much a one-pixel detail is blended toward its surround
FXAA_SEARCH = 16            # pixels walked each way along an edge to find its ends


@njit(inline="always", **_OPTS)
def _edge_mid(luma, y, x, dy, dx, H, W):
    """Luma halfway between (y, x) and its neighbour across the edge, clamped to the frame."""
    y0, x0 = min(max(y, 0), H - 1), min(max(x, 0), W - 1)
    y1, x1 = min(max(y + dy, 0), H - 1), min(max(x + dx, 0), W - 1)
    return 0.5 * (luma[y0, x0] + luma[y1, x1])


@njit(inline="always", **_OPTS)
def _walk(luma, y, x, sy, sx, dy, dx, avg, gs, H, W):
    """Steps along the edge (sy, sx) until the luma on its midline leaves the edge's
    average by gs: the distance to that end and the luma found there."""
    e = avg
    for i in range(1, FXAA_SEARCH + 1):
        e = _edge_mid(luma, y + sy * i, x + sx * i, dy, dx, H, W)
        if abs(e - avg) >= gs:
            return float(i), e
    return float(FXAA_SEARCH), e


@njit(parallel=True, **_OPTS)
def fxaa(img, luma, mask, out):
    """img H x W x C filtered into out where mask is set: each pixel on an edge is blended
    with its neighbour across it by how far along the edge's stair-step it lies, so a
    staircase one sample a pixel reads as the straight edge it samples; a lone bright
    or dark pixel is blended toward its surround by FXAA_SUBPIX."""
    H, W = luma.shape
    C = img.shape[2]
    for y_ in prange(H):
        y = np.int64(y_)
        for x in range(W):
            for c in range(C):
                out[y, x, c] = img[y, x, c]
            if not mask[y, x] or y == 0 or x == 0 or y == H - 1 or x == W - 1:
                continue
            m, n, s, w, e = luma[y, x], luma[y - 1, x], luma[y + 1, x], luma[y, x - 1], luma[y, x + 1]
            hi = max(max(max(m, n), max(s, w)), e)
            rng = hi - min(min(min(m, n), min(s, w)), e)
            if rng < max(FXAA_EDGE_MIN, hi * FXAA_EDGE_REL):
                continue
            nw, ne, sw, se = luma[y - 1, x - 1], luma[y - 1, x + 1], luma[y + 1, x - 1], luma[y + 1, x + 1]
            eh = abs(nw + sw - 2 * w) + 2 * abs(n + s - 2 * m) + abs(ne + se - 2 * e)
            ev = abs(nw + ne - 2 * n) + 2 * abs(w + e - 2 * m) + abs(sw + se - 2 * s)
            horz = eh >= ev                 # the edge runs along x: step across it in y
            l1, l2 = (n, s) if horz else (w, e)
            g1, g2 = abs(l1 - m), abs(l2 - m)
            step = -1 if g1 >= g2 else 1
            other = l1 if g1 >= g2 else l2
            avg = 0.5 * (m + other)
            gs = 0.25 * max(g1, g2)
            dy, dx = (step, 0) if horz else (0, step)
            sy, sx = (0, 1) if horz else (1, 0)
            dn, en = _walk(luma, y, x, -sy, -sx, dy, dx, avg, gs, H, W)
            dp, ep = _walk(luma, y, x, sy, sx, dy, dx, avg, gs, H, W)
            near_end = en if dn < dp else ep
            # Only the end where the edge turns toward this pixel's side shifts it.
            if (m - avg < 0) == (near_end - avg < 0):
                off = 0.0
            else:
                off = 0.5 - min(dn, dp) / (dn + dp)
            local = (2 * (n + s + w + e) + nw + ne + sw + se) / 12.0
            a = min(abs(local - m) / rng, 1.0)
            b = (-2 * a + 3) * a * a
            off = max(off, b * b * FXAA_SUBPIX)
            for c in range(C):
                out[y, x, c] = img[y, x, c] * (1 - off) + img[y + dy, x + dx, c] * off
