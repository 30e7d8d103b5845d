"""Keystone: where the facade's verticals converge, and the facade seen as if level.

A camera tilted up at a building makes its verticals meet at a vanishing point above
the frame, and a storey near the top looks smaller than one at the base: on a 7-storey
block shot from the pavement the top storey can span 2/3 of the pixels of the first.
Every ruler on the facade (storey period, window, door) must be read at its own row.

For a vertical plane and a pinhole camera, the metres a pixel row spans go as
1 / (v - v_vp)^2, v_vp being the vanishing point's row (a 1-D projective map whose pole is
the vanishing point). The rectification here warps the facade so that its scale is the
base row's everywhere: verticals vertical, storeys equal. Horizontal and vertical scales
then differ by cos(phi - pitch) / cos(phi), under 5 % for pitches up to ~18 degrees, which
is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.stages.plate import line_segments

NEAR_VERTICAL_DEG = 12.0    # segments this close to vertical are taken as the facade's verticals
INLIER_DEG = 1.0            # a segment agrees with a vanishing point within this angle
MIN_LINES = 8               # fewer verticals than this: too few to tell a tilt
MAX_STRETCH = 2.5           # rectifying more than this (a vanishing point close to the frame) is refused
LEVEL_FAR = 25.0            # a vanishing point further than this many facade heights: a level camera


@dataclass
class Keystone:
    base_row: float           # rows are those of the plate
    vp_row: float | None      # the verticals' vanishing row; None: a level camera (parallel verticals)
    vp_x: float = 0.0
    lines: int = 0            # vertical segments that agreed with it

    def scale_at(self, row) -> np.ndarray:
        """Metres per pixel at `row` over metres per pixel at the base row (vertical lengths)."""
        if self.vp_row is None:
            return np.ones_like(np.asarray(row, float))
        return ((self.base_row - self.vp_row) / (np.asarray(row, float) - self.vp_row)) ** 2

    def height_px(self, row) -> np.ndarray:
        """Base-row pixels between `row` and the base: the facade's height above the base
        in units of the base row's pixel size."""
        d = self.base_row - np.asarray(row, float)
        if self.vp_row is None:
            return d
        return d * (self.base_row - self.vp_row) / (np.asarray(row, float) - self.vp_row)

    def homography(self) -> np.ndarray:
        """Plate pixels to rectified pixels (same base row and scale, verticals vertical)."""
        if self.vp_row is None:
            return np.eye(3)
        b, p, x = self.base_row, self.vp_row, self.vp_x
        # x' = x_vp + (x - x_vp)(b - p) / (v - p): lines through the vanishing point stand up;
        # v' = b - (b - p)(b - v) / (v - p): height above the base in base-row pixels.
        return np.array([[b - p, x, -x * b],
                         [0.0, 2 * b - p, -b * b],
                         [0.0, 1.0, -p]])


def vertical_segments(gray: np.ndarray) -> np.ndarray:
    """Near-vertical line segments (x0, y0, x1, y1) of the whole plate, from OpenCV's LSD
    detector at a working size of about 800 px (short ones included; users filter)."""
    h, w = gray.shape
    s = min(1.0, 800.0 / max(h, w))
    small = cv2.resize(gray, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    seg = line_segments(small) / s
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    upright = np.degrees(np.arctan2(np.abs(dx), np.abs(dy))) < NEAR_VERTICAL_DEG
    return seg[upright & (np.hypot(dx, dy) > 6.0)]


def on_facade(seg: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The segments whose middle lies on the matte and that are longer than 1/25 of it."""
    ys = np.nonzero(matte.any(axis=1))[0]
    tall = max(12.0, (ys.max() - ys.min()) / 25.0)
    h, w = matte.shape
    xm = np.clip(((seg[:, 0] + seg[:, 2]) / 2).astype(int), 0, w - 1)
    ym = np.clip(((seg[:, 1] + seg[:, 3]) / 2).astype(int), 0, h - 1)
    long = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) > tall
    return seg[long & (matte[ym, xm] > 0.5)]


def _angle_errors(vp: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Degrees between each segment and the direction from its midpoint to the
    homogeneous point `vp` (a point at infinity included)."""
    mid = (p + q) / 2
    d = vp[None, :2] - mid * vp[2]
    u = q - p
    cos = np.abs((d * u).sum(1)) / (np.linalg.norm(d, axis=1) * np.linalg.norm(u, axis=1) + 1e-12)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def lean_scale(h: int, vp_row: float, base_row: float) -> np.ndarray:
    """Per row (h x 1), how much wider the leaning plate shows a level drawing's row about
    the principal point's column: its distance from the verticals' vanishing row against
    the base row's, so the base row keeps its scale. (A camera tilted down puts the point
    below the frame: both distances negative; the keystone estimate refuses one near the
    frame, so none is near zero.)"""
    d = np.arange(h, dtype=np.float32)[:, None] - vp_row
    return np.clip((base_row - vp_row) / np.where(np.abs(d) < 1.0, np.copysign(1.0, d), d), 0.2, 5.0)


def estimate_keystone(gray: np.ndarray, matte: np.ndarray, segments: np.ndarray | None = None) -> Keystone:
    """The vertical vanishing point from the facade's near-vertical segments: RANSAC on
    pairs, then a least-squares fit of the inliers (weighted by length). `segments`: the
    plate's vertical segments where they are already found."""
    ys = np.nonzero(matte.any(axis=1))[0]
    base = float(ys.max() + 1)
    facade_h = float(ys.max() - ys.min() + 1)
    seg = on_facade(vertical_segments(gray) if segments is None else segments, matte)
    if len(seg) < MIN_LINES:
        return Keystone(base, None)
    h, w = gray.shape
    c, sc = np.array([w / 2, h / 2]), float(max(w, h))
    p, q = (seg[:, :2] - c) / sc, (seg[:, 2:] - c) / sc
    hp = np.c_[p, np.ones(len(p))]
    hq = np.c_[q, np.ones(len(q))]
    lines = np.cross(hp, hq)
    lines /= np.linalg.norm(lines[:, :2], axis=1)[:, None]
    length = np.linalg.norm(q - p, axis=1)
    rng = np.random.default_rng(0)          # deterministic: same plate, same answer
    best, best_score = None, -1.0
    for _ in range(200):
        i, j = rng.choice(len(lines), 2, replace=False)
        vp = np.cross(lines[i], lines[j])
        if np.linalg.norm(vp) < 1e-12:
            continue
        inl = _angle_errors(vp / np.linalg.norm(vp), p, q) < INLIER_DEG
        score = float(length[inl].sum())
        if score > best_score:
            best, best_score = inl, score
    if best is None or best.sum() < MIN_LINES:
        return Keystone(base, None)
    a = lines[best] * np.sqrt(length[best])[:, None]
    vp = np.linalg.svd(a)[2][-1]
    n = int(best.sum())
    if abs(vp[2]) < 1e-12:
        return Keystone(base, None, lines=n)
    vx, vy = vp[0] / vp[2] * sc + c[0], vp[1] / vp[2] * sc + c[1]
    if abs(vy - base) > LEVEL_FAR * facade_h:
        return Keystone(base, None, lines=n)
    k = Keystone(base, float(vy), float(vx), n)
    top = float(ys.min())
    # A vanishing point inside or just beyond the facade is a misfit, not a tilt.
    if not (vy < top - 0.5 * facade_h or vy > base + 0.5 * facade_h) or not (
            1 / MAX_STRETCH < float(k.scale_at(top)) < MAX_STRETCH):
        return Keystone(base, None, lines=n)
    return k


def rectify(img: np.ndarray, k: Keystone, top: float, interpolation=cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """The plate warped so its facade has the base row's scale everywhere. Returns the
    image and the 3x3 map from plate pixels to its pixels (the facade's top at row 0)."""
    h, w = img.shape[:2]
    hm = k.homography()
    corners = np.array([[0, top, 1], [w, top, 1], [0, k.base_row, 1], [w, k.base_row, 1]], float)
    wc = corners @ hm.T
    wc = wc[:, :2] / wc[:, 2:3]
    x0, y0 = np.floor(wc.min(axis=0))
    x1, y1 = np.ceil(wc.max(axis=0))
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], float)
    full = shift @ hm
    size = (int(min(x1 - x0, MAX_STRETCH * w)), int(min(y1 - y0, MAX_STRETCH * h)) + 1)
    out = cv2.warpPerspective(img, full, size, flags=interpolation, borderMode=cv2.BORDER_CONSTANT)
    return out, full
