"""Cars seen from the side: a pair of dark tyres on one ground line, the body grown
from them by GrabCut."""

from __future__ import annotations

import cv2
import numpy as np

from derrumbe.stages.holdout_cues.cutout import Found, cut


def _wheels(full_bgr: np.ndarray, base: float) -> list[tuple[float, float, float, float, bool]]:
    """Tyres on the street: circles (OpenCV's gradient Hough transform) whose ring is
    dark (rubber, the darkest thing at a car's foot) and whose bottom meets the ground at
    or below the facade's base line. (x, y, tyre radius, darkness, street seen below it)
    in plate pixels."""
    H, W = full_bgr.shape[:2]
    y0, y1 = int(max(0, base - 0.15 * H)), int(min(H, base + 0.12 * H))
    if y1 - y0 < 16:
        return []
    g = cv2.cvtColor(full_bgr[y0:y1], cv2.COLOR_BGR2GRAY)
    rmin, rmax = max(4, int(0.01 * H)), max(6, int(0.045 * H))
    c = cv2.HoughCircles(cv2.GaussianBlur(g, (0, 0), 1.2), cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=rmin,
                         param1=60, param2=0.3, minRadius=rmin, maxRadius=rmax)
    if c is None:
        return []
    gf = g.astype(np.float32)
    street = float(np.median(gf[int(np.clip(base - y0, 0, len(gf) - 1)):]))
    out = []
    for x, y, r in c[0]:
        R = int(r + 2)
        xa, xb, ya, yb = int(max(0, x - R)), int(min(W, x + R + 1)), int(max(0, y - R)), int(min(len(gf), y + R + 1))
        yy, xx = np.mgrid[ya:yb, xa:xb]
        d = np.hypot(xx - x, yy - y) / r
        ring = gf[ya:yb, xa:xb][(d > 0.62) & (d < 0.95)]
        if ring.size < 8:
            continue
        dark = float(np.median(ring))
        bottom = y + y0 + r
        # The street below a tyre, past the contact shadow, is lighter than the rubber (a
        # car reflected in a shop window stands on the window's dark frame).
        ground = gf[int(y + 1.15 * r):int(y + 1.9 * r) + 1, int(max(0, x - 0.5 * r)):int(x + 0.5 * r) + 1]
        lighter = ground.size > 4 and float(np.median(ground)) > dark + 25
        if dark < min(70.0, 0.55 * street) and base - 0.03 * H <= bottom <= base + 0.12 * H:
            out.append((float(x), float(y + y0), float(r), street - dark, lighter))
    return out


def vehicles(full_bgr: np.ndarray, base: float, seed: int) -> list[Found]:
    """Cars seen from the side: two tyres of one size on one ground line a wheelbase apart
    (5.5 to 10 tyre radii), the body grown from them by GrabCut. A pair is a car only when
    the cut is car-shaped: about 1.3 to 2.3 wheelbases long, 0.35 to 0.9 of one high,
    standing on the tyres, holding both."""
    wheels = sorted(_wheels(full_bgr, base), key=lambda t: t[0])
    pairs = []
    for i, (xa, ya, ra, sa, ga) in enumerate(wheels):
        for xb, yb, rb, sb, gb in wheels[i + 1:]:
            r, d = (ra + rb) / 2, xb - xa
            if abs(ra - rb) < 0.3 * r and abs((ya + ra) - (yb + rb)) < 0.7 * r and 5.5 * r <= d <= 10 * r \
                    and (ga or gb):
                pairs.append((sa + sb, xa, xb, max(ya + ra, yb + rb), r))
    found, taken = [], []
    for score, xa, xb, bottom, r in sorted(pairs, reverse=True)[:4]:
        if any(xa < t1 and xb > t0 for t0, t1 in taken):
            continue
        d = xb - xa
        rect = (xa - 0.6 * d, bottom - 0.8 * d, xb + 0.6 * d, bottom + 0.1 * r)
        tyres = [(x - 0.5 * r, bottom - 1.5 * r, x + 0.5 * r, bottom - 0.5 * r) for x in (xa, xb)]
        sill = (xa + 1.2 * r, bottom - 2.6 * r, xb - 1.2 * r, bottom - 1.6 * r)
        piece = cut(full_bgr, rect, tyres + [sill], seed)
        if piece is None:
            continue
        ys, xs = np.nonzero(piece.mask)
        length, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        foot = piece.y + ys.max() + 1
        fill = ys.size / float(length * height)
        if 1.3 * d <= length <= 2.3 * d and 0.35 * d <= height <= 0.9 * d and abs(foot - bottom) < 0.6 * r \
                and fill > 0.55:
            found.append(Found(piece.x, piece.y, piece.mask, "vehicle", float(min(1.0, score / 200.0))))
            taken.append((piece.x + xs.min(), piece.x + xs.max()))
    return found
