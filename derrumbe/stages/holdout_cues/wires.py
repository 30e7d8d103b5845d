"""Overhead wires and lamp arms: long, thin, straight dark lines that cross the building's
silhouette and go on beyond it.

A line seen over the building's pixels is in front of it (one behind would be hidden),
and one that continues past the silhouette into the sky or the next building is not the
facade's own (a cornice or a moulding ends where the building ends). Thin dark lines are
the ridges of the plate's black top-hat (closing minus plate: what is darker than its
surroundings and narrower than the kernel); the straight ones among them are found by the
probabilistic Hough transform, and each is kept as the ridge's own pixels along it, so the
matte follows a sagging wire's few pixels rather than a ruled band.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_WIDTH_PX = 4          # a wire or an arm is at most this thick at the analysis size
MIN_LENGTH = 0.15         # share of the frame's width a wire runs straight for, at least
RIDGE = 12                # black top-hat response (8-bit levels) of a dark line
MAX_TILT_DEG = 65         # steeper lines are poles and edges (the pole cue's)
DEEP = 0.03               # share of the frame's height a wire reaches into and out of the silhouette


def ridges(gray: np.ndarray) -> np.ndarray:
    """Thin dark lines: the black top-hat with a kernel a little wider than a wire."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MAX_WIDTH_PX + 1, 2 * MAX_WIDTH_PX + 1))
    return cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k)


def _samples(x0, y0, x1, y1, shape) -> tuple[np.ndarray, np.ndarray]:
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.clip(np.round(np.linspace(x0, x1, n)).astype(int), 0, shape[1] - 1)
    ys = np.clip(np.round(np.linspace(y0, y1, n)).astype(int), 0, shape[0] - 1)
    return xs, ys


def _top_profile(building: np.ndarray) -> np.ndarray:
    """Per column the building's top row; columns without building take its highest."""
    has = building.any(axis=0)
    first = np.argmax(building, axis=0).astype(np.float32)
    first[~has] = first[has].min() if has.any() else building.shape[0]
    return first


def wires(gray: np.ndarray, building: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
    """Masks (at `gray`'s size) of the straight thin dark lines that cross the building's
    silhouette: between a tenth and nine tenths of each lies over the building, reaching
    well into it and well out of it, the part outside runs above the building, and the
    ridge runs along most of it (a line of texture is broken)."""
    h, w = gray.shape
    r = ridges(gray)
    on = (r > RIDGE).astype(np.uint8)
    min_len = MIN_LENGTH * w
    segs = cv2.HoughLinesP(on, 1, np.pi / 360, threshold=int(0.5 * min_len), minLineLength=min_len,
                           maxLineGap=max(3, int(0.01 * w)))
    if segs is None:
        return []
    near = cv2.dilate(on, np.ones((3, 3), np.uint8)) > 0
    b = building.astype(np.uint8)
    depth_in = cv2.distanceTransform(b, cv2.DIST_L2, 3)
    depth_out = cv2.distanceTransform(1 - b, cv2.DIST_L2, 3)
    top = _top_profile(building)
    deep = DEEP * h
    found, taken = [], np.zeros((h, w), bool)
    for x0, y0, x1, y1 in segs.reshape(-1, 4):      # (N, 1, 4) in OpenCV 4, (N, 4) in 5
        tilt = np.degrees(np.arctan2(abs(y1 - y0), abs(x1 - x0)))
        if tilt > MAX_TILT_DEG:
            continue
        xs, ys = _samples(x0, y0, x1, y1, (h, w))
        inside = building[ys, xs]
        if not 0.1 <= inside.mean() <= 0.9 or near[ys, xs].mean() < 0.8 or taken[ys, xs].mean() > 0.5:
            continue
        # It crosses the silhouette (goes deep on both sides, not along the roof's edge),
        # and beyond it runs mostly above the building (a cornice goes on into the next facade).
        if depth_in[ys, xs].max() < deep or depth_out[ys, xs].max() < deep \
                or (ys[~inside] < top[xs[~inside]]).mean() < 0.5:
            continue
        band = np.zeros((h, w), np.uint8)
        cv2.line(band, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=MAX_WIDTH_PX)
        m = (band > 0) & (on > 0)
        taken |= cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        found.append((m, "wire", float(min(1.0, r[ys, xs].mean() / (4 * RIDGE)))))
    return found
