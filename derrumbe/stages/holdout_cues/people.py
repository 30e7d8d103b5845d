"""People: OpenCV's shipped HOG people detector (Dalal-Triggs) or the local pedestrian
network, each figure cut out by GrabCut seeded with its centre line."""

from __future__ import annotations

import cv2
import numpy as np

from derrumbe.stages import pedestrian_net
from derrumbe.stages.holdout_cues.cutout import Found, cut, nms

FIGURE_PX = 96           # a figure's height inside HOG's 64x128 window
MIN_FIGURE = 0.07        # the smallest passer-by looked for, as a share of the frame's height
NET_MIN_SCORE = 0.5      # the pedestrian network's score a person must reach


def _hog():
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def find_people(bgr: np.ndarray, min_score: float = 0.5, up: float = 1.0) -> list[tuple[np.ndarray, float]]:
    """HOG people boxes (x0, y0, x1, y1, in `bgr`'s pixels) with their SVM margin, each
    group of overlapping windows one box. The detector's window is 64x128 px with the
    figure about 96 px tall in it: the image is scaled by `up` first so that the smallest
    figure looked for fills it."""
    img = cv2.resize(bgr, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR if up > 1 else cv2.INTER_AREA) \
        if up != 1.0 else bgr
    rects, weights = _hog().detectMultiScale(img, hitThreshold=0.0, winStride=(8, 8), padding=(16, 16), scale=1.05)
    boxes = [(np.array([x, y, x + ww, y + hh], np.float32) / up, float(s))
             for (x, y, ww, hh), s in zip(rects, np.ravel(weights)) if s >= min_score]
    return nms(boxes, 0.4)


def _net_people(full_bgr: np.ndarray, base: float) -> list[tuple[np.ndarray, float]]:
    """People boxes (plate pixels, tight around the figure) from the wheel's SSDLite
    network, run on square tiles along the building's base line at three sizes (a quarter,
    half and all of the frame's height): a passer-by 10 % of the frame high fills a
    quarter-height tile as the network's training images filled its input."""
    H, W = full_bgr.shape[:2]
    tiles = []
    for frac in (0.25, 0.5, 1.0):
        side = int(min(H, W, round(frac * H)))
        # One row of tiles, the base line at four fifths of their height (feet on it),
        # overlapping by a quarter: more than a standing figure's width at that size.
        y = int(np.clip(base - 0.8 * side, 0, H - side))
        xs = list(range(0, max(1, W - side + 1), max(1, (3 * side) // 4)))
        if xs[-1] != W - side:
            xs.append(W - side)
        tiles += [(x, y, side) for x in xs]
    res = pedestrian_net.detect([full_bgr[y:y + s, x:x + s] for x, y, s in tiles], NET_MIN_SCORE)
    boxes = [(b + np.array([x, y, x, y], np.float32), sc) for (x, y, _), r in zip(tiles, res) for b, sc in r]
    return nms(boxes, 0.4)


def _hog_people(full_bgr: np.ndarray, base: float) -> list[tuple[np.ndarray, float]]:
    """OpenCV's HOG people boxes, shrunk from the detector's padded window to the figure.
    Only the band where a standing figure's feet can be (the base line and the street in
    front) and its body (up to half the frame above) is searched, at the plate's own
    resolution scaled so that a figure MIN_FIGURE of the frame high fills the detector's
    window: a passer-by 70 px tall in a 1080-line frame is lost when the whole frame is
    first shrunk to a working size."""
    H, W = full_bgr.shape[:2]
    y0, y1 = int(max(0, base - 0.5 * H)), int(min(H, base + 0.15 * H))
    if y1 - y0 < 32:
        return []
    up = float(np.clip(FIGURE_PX / (MIN_FIGURE * H), 0.3, 1.6))
    out = []
    for b, sc in find_people(full_bgr[y0:y1], up=up):
        x0, by0, x1, by1 = b
        bw, bh = x1 - x0, by1 - by0
        out.append((np.array([x0 + 0.12 * bw, y0 + by0 + 0.05 * bh, x1 - 0.12 * bw, y0 + by1 - 0.1 * bh],
                             np.float32), sc))
    return out


def people(full_bgr: np.ndarray, base: float, seed: int) -> list[Found]:
    """People whose feet stand on the street (at or below the facade's base line, less a
    tolerance: a passer-by against the wall stands on it; a figure in a shop window or on
    a balcony does not), cut out by GrabCut seeded with the figure's centre line."""
    H, W = full_bgr.shape[:2]
    net = pedestrian_net.available()
    found = []
    for box, score in (_net_people(full_bgr, base) if net else _hog_people(full_bgr, base)):
        x0, y0, x1, y1 = [float(v) for v in box]
        bh, bw = y1 - y0, x1 - x0
        if bh < 0.03 * H or y1 < base - 0.08 * bh or bh < 1.3 * bw:
            continue
        # The centre line from the head to the feet is the figure for sure (the legs too,
        # which GrabCut alone loses against a dark shop front).
        core = (x0 + 0.42 * bw, y0 + 0.08 * bh, x1 - 0.42 * bw, y1 - 0.04 * bh)
        piece = cut(full_bgr, (x0 - 0.05 * bw, y0, x1 + 0.05 * bw, min(H, y1 + 0.02 * bh)), [core], seed,
                    sure_bg=_lit_behind(full_bgr, (x0, y0, x1, y1)))
        if piece is not None and _figure_like(piece.mask, bh * bw, strict=not net):
            conf = float(score if net else min(1.0, 0.5 + score / 4))
            found.append(Found(piece.x, piece.y, piece.mask, "person", conf))
    return found


LIT_OVER = 1.6         # a lit window behind a figure: this much brighter than the figure's centre line ...
LIT_WARM = 1.25        # ... and warm (R over B): shop and room light, not a pale coat or the sky
HEAD_HALF = 0.09       # the head's half-width, in the figure's heights: never taken for a window


def _lit_behind(full_bgr: np.ndarray, box) -> np.ndarray:
    """What is certainly not the figure: lit window pixels (bright against the figure's
    centre line, and warm) beside its head and over its shoulders, in the top 60 % of its box. A
    shop window behind a passer-by is one bright region GrabCut gives the figure, and it
    glowed in the rubble once the shop had gone (the demo plate's bakery)."""
    H, W = full_bgr.shape[:2]
    x0, y0, x1, y1 = [int(round(v)) for v in box]
    bh = y1 - y0
    out = np.zeros((H, W), bool)
    r0, r1 = max(0, y0 - bh // 4), max(0, min(H, y0 + int(0.6 * bh)))
    c0, c1 = max(0, x0 - bh // 4), min(W, x1 + bh // 4)
    if r1 <= r0 or c1 <= c0:
        return out
    # The figure's own brightness: its centre line's (the box's median is the window's
    # where the window fills the box behind it).
    core = full_bgr[max(0, y0):min(H, y1), max(0, int(x0 + 0.42 * (x1 - x0))):min(W, int(x1 - 0.42 * (x1 - x0)) + 1)]
    if core.size == 0:
        return out
    ref = float(np.median(core.astype(np.float32).mean(axis=2)))
    sub = full_bgr[r0:r1, c0:c1].astype(np.float32)
    lum = sub.mean(axis=2)
    lit = (lum > LIT_OVER * max(ref, 8.0)) & (sub[..., 2] > LIT_WARM * np.maximum(sub[..., 0], 1.0))
    cols = np.arange(c0, c1)
    lit &= (np.abs(cols - 0.5 * (x0 + x1)) > HEAD_HALF * bh)[None, :]
    out[r0:r1, c0:c1] = lit
    return out


def _figure_like(m: np.ndarray, box_area: float, strict: bool = True) -> bool:
    """A standing figure is taller than wide and far from filling its own box; a window
    or a door that fooled the detector comes back from GrabCut as a full rectangle. The
    network's boxes are tight, so only the rectangle test applies to them (a walker's
    stride makes a figure wide)."""
    ys, xs = np.nonzero(m)
    if ys.size < 0.12 * box_area:
        return False
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return ys.size < 0.8 * bh * bw and (not strict or bh > 1.6 * bw)
