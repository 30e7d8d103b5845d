"""Facades drawn in metres for the scale tests: a known storey, bay, window and door, so a
test knows the answer without asking the code under test."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Drawn:
    srgb: np.ndarray          # H x W x 3 uint8
    matte: np.ndarray         # H x W float32, the building
    m_per_px: float           # at the facade's base row
    storey_px: float
    base_row: int
    top_row: int
    height_m: float           # base to top of the matte


def draw_facade(storey_m=3.3, storeys=5, ground_m=4.2, bay_m=2.7, bays=8, window_h_m=1.65, window_w_m=1.15,
                m_per_px=0.025, vents=0.0, string_course=0.0, door=True, plain=False, street_px=80,
                sky_px=60, seed=0) -> Drawn:
    """A street facade seen square on: wall with plaster noise, window rows one storey
    apart, a ground floor with shop windows and a door, a street below, sky above.
    `vents`: square openings of this size (metres) half a storey off the windows, a second
    row at the half period; `string_course`: a dark band this tall (metres) half a storey
    off the windows, right across the facade (a balcony slab's shadow, a cornice)."""
    rng = np.random.default_rng(seed)
    px = 1.0 / m_per_px
    height_m = ground_m + (storeys - 1) * storey_m
    w = int(round(bays * bay_m * px))
    h_fac = int(round(height_m * px))
    H, W = sky_px + h_fac + street_px, w + 80
    img = np.zeros((H, W, 3), np.float32)
    img[:] = (0.62, 0.72, 0.86)                                   # sky
    img[sky_px + h_fac:] = (0.42, 0.42, 0.43)                     # street
    x0, top, base = 40, sky_px, sky_px + h_fac
    wall = np.array([0.78, 0.70, 0.56])
    img[top:base, x0:x0 + w] = wall
    if not plain:
        _openings(img, rng, x0, base, px, storey_m, storeys, ground_m, bay_m, bays, window_h_m, window_w_m,
                  vents, string_course, door)
    noise = rng.normal(0, 0.02, (H, W, 1)).astype(np.float32)
    img = np.clip(img + noise + 0.015 * rng.normal(0, 1, (H, W, 3)).astype(np.float32), 0, 1)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    matte = np.zeros((H, W), np.float32)
    matte[top:base, x0:x0 + w] = 1
    return Drawn((img * 255 + 0.5).astype(np.uint8), matte, m_per_px, storey_m * px, base, top, h_fac * m_per_px)


def _openings(img, rng, x0, base, px, storey_m, storeys, ground_m, bay_m, bays, window_h_m, window_w_m,
              vents, string_course, door):
    def rect(xa, ya, xb, yb, colour):          # metres: x from the facade's left, y up from the street
        img[int(round(base - yb * px)):int(round(base - ya * px)),
            int(round(x0 + xa * px)):int(round(x0 + xb * px))] = colour

    frame = (0.86, 0.85, 0.82)
    for k in range(1, storeys):
        floor = ground_m + (k - 1) * storey_m
        sill = floor + 0.9
        if string_course:
            mid = sill + 0.5 * window_h_m - 0.5 * storey_m
            rect(0, mid - string_course / 2, bays * bay_m, mid + string_course / 2, (0.2, 0.18, 0.17))
        for b in range(bays):
            c = (b + 0.5) * bay_m
            rect(c - window_w_m / 2 - 0.08, sill - 0.08, c + window_w_m / 2 + 0.08, sill + window_h_m + 0.08, frame)
            tint = 0.12 + 0.1 * rng.random()
            rect(c - window_w_m / 2, sill, c + window_w_m / 2, sill + window_h_m, (tint, tint + 0.02, tint + 0.05))
            rect(c - 0.03, sill, c + 0.03, sill + window_h_m, frame)                  # mullion
            if vents:
                vy = sill + window_h_m / 2 + storey_m / 2
                rect(c - vents / 2, vy - vents / 2, c + vents / 2, vy + vents / 2, (0.2, 0.2, 0.22))
    # Ground floor: shop windows on a stall riser, and a door on the street.
    for b in range(bays):
        c = (b + 0.5) * bay_m
        if door and b == 1:
            rect(c - 0.55, 0.0, c + 0.55, 2.3, (0.30, 0.20, 0.12))
            continue
        rect(c - 0.45 * bay_m, 0.7, c + 0.45 * bay_m, ground_m - 0.8, (0.16, 0.17, 0.2))


def pitch_view(d: Drawn, pitch_deg: float, f_px: float = 1000.0):
    """The drawn facade seen by a pinhole camera tilted up by `pitch_deg` (its verticals
    converge). Returns the image, its matte, the analytic vanishing row of the verticals,
    metres per pixel at the base row, and the base and top rows."""
    H, W = d.srgb.shape[:2]
    t = np.radians(pitch_deg)
    z = 1.2 * H                                   # the camera's distance, in facade pixels
    eye = 0.15 * (d.base_row - d.top_row)         # and its height above the street
    cx, cy = W / 2, H / 2
    # Camera coordinates as linear functions of the drawing's pixel (X, Y, 1): x right,
    # y up from the eye, depth z; tilted up by t; then projected.
    x = np.array([1.0, 0.0, -W / 2])
    y = np.array([0.0, -1.0, d.base_row - eye])
    depth = np.array([0.0, 0.0, z])
    yc = y * np.cos(t) - depth * np.sin(t)
    zc = y * np.sin(t) + depth * np.cos(t)
    hm = np.stack([f_px * x + cx * zc, -f_px * yc + cy * zc, zc])
    img = cv2.warpPerspective(d.srgb, hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=(150, 170, 200))
    matte = cv2.warpPerspective(d.matte, hm, (W, H), flags=cv2.INTER_NEAREST)
    vp_row = cy - f_px / np.tan(t)          # where the direction straight up projects

    def row(Y):
        p = hm @ np.array([W / 2, Y, 1.0])
        return p[1] / p[2]
    m_base = d.m_per_px / abs(row(d.base_row - 1.0) - row(d.base_row))
    return img, matte, vp_row, m_base, row(d.base_row), row(d.top_row)
