"""The built-in demo plate: a street with a multi-storey building, drawn by derrumbe itself.

The plate is laid out in metres with the same pinhole camera the pipeline assumes
(level camera at eye height, 26 mm equivalent lens), so the pipeline's estimates of
height, horizon and scale can be checked against what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.colour import rec709_to_u8

W, H = 1280, 720
FOCAL_MM = 26.0
EYE_M = 1.6
FLOOR_M = 3.2
FLOORS = 8
DIST_M = 46.0          # camera to the building's front face
BASE_ROW = 610         # where the building meets the pavement


@dataclass
class DemoPlate:
    srgb: np.ndarray       # H x W x 3 uint8
    box: list[int]         # a rough user box around the hero building
    holdout: np.ndarray    # H x W uint8, 255 = foreground object (car, lamp post)
    height_m: float        # ground truth, for tests
    windows: list = None   # ground truth: the hero facade's upper-floor window openings (x0, y0, x1, y1 px)


def _noise(rng, shape, scales=(4, 16, 64), weights=(0.5, 0.3, 0.2)):
    """Multi-octave value noise in -1..1, for weathering and sky texture."""
    out = np.zeros(shape, np.float32)
    for s, w in zip(scales, weights):
        small = rng.standard_normal((max(2, shape[0] // s), max(2, shape[1] // s))).astype(np.float32)
        out += w * cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return out / max(1e-6, np.abs(out).max())


def make_demo_plate(seed: int = 7) -> DemoPlate:
    rng = np.random.default_rng(seed)
    f = W * FOCAL_MM / 36.0
    horizon = BASE_ROW - EYE_M * f / DIST_M
    cx = W / 2

    def px(x_m, y_m, z_m=DIST_M):
        return cx + f * x_m / z_m, horizon - f * (y_m - EYE_M) / z_m

    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)

    # Sky: deeper blue at the zenith, hazy near the horizon, faint cloud texture.
    t = np.clip(yy / horizon, 0, 1)[..., None]
    zenith, haze = np.array([0.16, 0.30, 0.62]), np.array([0.62, 0.70, 0.80])
    img[:] = zenith * (1 - t) ** 1.3 + haze * (1 - (1 - t) ** 1.3)
    clouds = np.clip(_noise(rng, (H, W), (24, 64, 160), (0.2, 0.4, 0.4)) * 1.6 - 0.4, 0, 1)[..., None]
    img = img * (1 - 0.5 * clouds) + 0.85 * 0.5 * clouds

    sun = np.array([1.0, 0.93, 0.82])
    ambient = np.array([0.42, 0.46, 0.55])
    # The sun comes from the upper left: fronts get a fixed share of it.
    front_light = ambient * 0.55 + sun * 0.62

    openings = []

    def facade(x0_m, x1_m, floors, albedo, window_tint, z_m=DIST_M, storey=FLOOR_M, bay=2.6, ground_floor=4.2,
               cornice=True, balconies=False):
        found = []
        u0, v_top = px(x0_m, ground_floor + (floors - 1) * storey, z_m)
        u1, v_base = px(x1_m, 0.0, z_m)
        u0, u1, v_top, v_base = int(u0), int(u1), int(v_top), int(v_base)
        h, w = v_base - v_top, u1 - u0
        ppm = f / z_m
        wall = np.array(albedo, np.float32) * (1 + 0.12 * _noise(rng, (h, w), (2, 8, 32))[..., None])
        streaks = 0.06 * np.clip(_noise(rng, (1, w), (1, 3, 9)), -1, 1)[0][None, :, None]
        wall = wall * (1 - streaks * np.linspace(0.3, 1, h)[:, None, None])
        region = wall * front_light
        glass_sky = img[max(0, v_top - h):max(1, v_top), u0:u1]
        n_bays = max(1, int(round((x1_m - x0_m) / bay)))
        bay_px = w / n_bays
        for fl in range(floors):
            y_lo = 0.0 if fl == 0 else ground_floor + (fl - 1) * storey
            y_hi = ground_floor if fl == 0 else y_lo + storey
            for b in range(n_bays):
                bu0 = b * bay_px
                if fl == 0:
                    wx0, wx1 = bu0 + 0.10 * bay_px, bu0 + 0.90 * bay_px
                    wy0, wy1 = (y_lo + 0.25) * ppm, (y_hi - 0.9) * ppm
                    tint = np.array([0.05, 0.05, 0.05])
                else:
                    wx0, wx1 = bu0 + 0.27 * bay_px, bu0 + 0.73 * bay_px
                    wy0, wy1 = (y_lo + 0.9 - 0.0) * ppm, (y_lo + 2.6) * ppm
                    tint = np.array(window_tint)
                r0, r1 = int(h - wy1), int(h - wy0)
                c0, c1 = int(wx0), int(wx1)
                if r1 - r0 < 2 or c1 - c0 < 2:
                    continue
                if fl > 0:
                    found.append([u0 + c0, v_top + r0, u0 + c1, v_top + r1])
                # Glass: dark interior plus a reflection of the sky, brighter to the top.
                refl = np.linspace(0.55, 0.15, r1 - r0)[:, None, None]
                sky_c = glass_sky.mean(axis=(0, 1)) if glass_sky.size else np.array([0.5, 0.6, 0.7])
                jitter = 0.7 + 0.6 * rng.random()
                glass = tint * jitter + refl * sky_c * 0.6
                region[r0:r1, c0:c1] = glass
                fr = max(1, int(0.07 * ppm))
                frame_col = np.array([0.80, 0.80, 0.78]) * front_light
                region[r0:r0 + fr, c0:c1] = frame_col
                region[r1 - fr:r1, c0:c1] = frame_col
                region[r0:r1, c0:c0 + fr] = frame_col
                region[r0:r1, c1 - fr:c1] = frame_col
                mid = (c0 + c1) // 2
                region[r0:r1, mid:mid + fr] = frame_col
                # Reveal shadow: the sun from the upper left shades the left and top jambs.
                sh = max(1, int(0.18 * ppm))
                region[r0:r0 + sh, c0:c1] *= 0.55
                region[r0:r1, c0:c0 + sh] *= 0.6
                sill = max(1, int(0.12 * ppm))
                region[r1:r1 + sill, c0 - fr:c1 + fr] = np.array(albedo) * 1.1 * front_light
                region[r1 + sill:r1 + 2 * sill, c0 - fr:c1 + fr] *= 0.6
                if balconies and fl >= 2 and b % 2 == 1:
                    br0 = int(h - (y_lo + 1.05) * ppm)
                    rail = region[br0:r1 + sill, c0 - 2 * fr:c1 + 2 * fr]
                    rail[:, ::max(2, int(0.15 * ppm))] *= 0.25
                    rail[:max(1, fr), :] *= 0.3
            # String course between floors, with the shadow it casts.
            if fl >= 1:
                r = int(h - y_lo * ppm)
                band = max(1, int(0.22 * ppm))
                region[r - band:r] = np.array(albedo) * 1.08 * front_light
                region[r:r + band] *= 0.7
        if cornice:
            c = max(2, int(0.6 * ppm))
            region[:c] = np.array(albedo) * 1.15 * front_light
            region[c:c + c // 2 + 1] *= 0.5
        img[v_top:v_base, u0:u1] = region
        openings[:] = found
        return u0, v_top, u1, v_base

    # Distant skyline behind the gap, hazy.
    for x0 in np.arange(-40, 40, 7.0):
        hgt = 10 + 25 * rng.random()
        u0, vt = px(x0, hgt, 140.0)
        u1, vb = px(x0 + 6.5, 0.0, 140.0)
        img[int(vt):int(vb), int(u0):int(u1)] = np.array([0.40, 0.45, 0.52]) * (0.9 + 0.1 * rng.random())

    facade(-26.0, -10.2, 5, [0.55, 0.42, 0.32], [0.06, 0.07, 0.08], storey=3.5)
    facade(12.0, 30.0, 4, [0.60, 0.58, 0.52], [0.05, 0.06, 0.07], storey=3.4)
    hero = facade(-10.0, 10.0, FLOORS, [0.62, 0.55, 0.45], [0.05, 0.06, 0.08], balconies=True)
    hero_windows = list(openings)
    height_m = 4.2 + (FLOORS - 1) * FLOOR_M

    # Pavement and road below the buildings, in perspective.
    ground = yy > BASE_ROW - 0.5
    depth = np.where(yy > horizon + 1, EYE_M * f / np.maximum(yy - horizon, 1e-3), 1e6)
    xw = (xx - cx) * depth / f
    asphalt = np.array([0.10, 0.10, 0.11]) * (1 + 0.25 * _noise(rng, (H, W), (1, 2, 6))[..., None])
    paving = np.array([0.32, 0.30, 0.28]) * (1 + 0.10 * _noise(rng, (H, W), (1, 3, 9))[..., None])
    slab = ((np.floor(xw / 1.2) + np.floor(depth / 1.2)) % 2)[..., None] * 0.05
    road = (depth < DIST_M - 5.0) & (depth > DIST_M - 19.0)
    g = np.where(road[..., None], asphalt, paving * (1 - slab)) * front_light * 0.9
    lane = road & (np.abs(depth - (DIST_M - 12.0)) < 0.12 * depth / 10) & ((xw % 6.0) < 3.0)
    g[lane] = np.array([0.7, 0.7, 0.66]) * front_light
    curb = (np.abs(depth - (DIST_M - 5.0)) < 0.25)
    g[curb] = np.array([0.45, 0.44, 0.42]) * front_light
    img = np.where(ground[..., None], g, img)
    # Contact shadow along the building base (the sun is behind-left, shadows fall forward-right).
    base_band = (yy > BASE_ROW) & (yy < BASE_ROW + 5)
    img[base_band] *= 0.6

    holdout = np.zeros((H, W), np.uint8)

    # Lamp post at 12 m, to the right of centre.
    lz, lx = 13.0, 4.2
    u, v0 = px(lx, 0.0, lz)
    _, v1 = px(lx, 6.5, lz)
    pole_w = max(3, int(0.14 * f / lz))
    cv2.rectangle(img, (int(u) - pole_w // 2, int(v1)), (int(u) + pole_w // 2, int(v0)), (0.03, 0.035, 0.04), -1)
    cv2.rectangle(holdout, (int(u) - pole_w // 2, int(v1)), (int(u) + pole_w // 2, int(v0)), 255, -1)
    arm_end = int(u - 0.9 * f / lz)
    cv2.rectangle(img, (arm_end, int(v1)), (int(u), int(v1) + pole_w // 2), (0.03, 0.035, 0.04), -1)
    cv2.rectangle(holdout, (arm_end, int(v1)), (int(u), int(v1) + pole_w // 2), 255, -1)
    cv2.ellipse(img, (arm_end, int(v1) + pole_w), (pole_w * 2, pole_w), 0, 0, 360, (0.9, 0.85, 0.7), -1)
    cv2.ellipse(holdout, (arm_end, int(v1) + pole_w), (pole_w * 2, pole_w), 0, 0, 360, 255, -1)

    # A parked car on the near side, left of centre.
    cz = 16.0
    s = f / cz
    cu0, cb = px(-7.5, 0.0, cz)
    body = np.array([0.35, 0.04, 0.04])
    car = np.zeros((H, W), np.uint8)
    x0, x1 = int(cu0), int(cu0 + 4.4 * s)
    cv2.rectangle(car, (x0, int(cb - 1.05 * s)), (x1, int(cb - 0.25 * s)), 255, -1)
    cabin = np.array([[x0 + 0.9 * s, cb - 1.05 * s], [x0 + 1.4 * s, cb - 1.5 * s],
                      [x0 + 3.0 * s, cb - 1.5 * s], [x0 + 3.6 * s, cb - 1.05 * s]], np.int32)
    cv2.fillPoly(car, [cabin], 255)
    shade = np.clip((yy - (cb - 1.5 * s)) / (1.3 * s), 0, 1)[..., None]
    car_col = body * front_light * (1.25 - 0.6 * shade)
    img = np.where(car[..., None] > 0, car_col, img)
    win = np.zeros_like(car)
    cv2.fillPoly(win, [cabin + np.array([[4, 4], [4, 4], [-4, 4], [-4, 4]], np.int32)], 255)
    img[win > 0] = np.array([0.07, 0.09, 0.12]) + 0.15 * img[win > 0] * 0
    for wx in (x0 + 0.85 * s, x0 + 3.5 * s):
        cv2.circle(img, (int(wx), int(cb - 0.33 * s)), int(0.34 * s), (0.015, 0.015, 0.015), -1)
        cv2.circle(car, (int(wx), int(cb - 0.33 * s)), int(0.34 * s), 255, -1)
    under = (xx > x0) & (xx < x1) & (yy > cb - 0.25 * s) & (yy < cb + 2)
    img[under & (car == 0)] *= 0.35
    holdout = np.maximum(holdout, car)

    # Camera: a touch of sensor noise, so grain matching has something to match.
    img = np.clip(img, 0, 1) * (1 + 0.02 * rng.standard_normal((H, W, 1)).astype(np.float32))
    srgb = rec709_to_u8(img)
    u0, v_top, u1, v_base = hero
    box = [u0 - 18, v_top - 25, u1 + 20, v_base + 12]
    return DemoPlate(srgb=srgb, box=box, holdout=holdout, height_m=height_m, windows=hero_windows)
