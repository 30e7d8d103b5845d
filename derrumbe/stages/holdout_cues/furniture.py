"""Street furniture standing on the ground line in front of the facade: bins, bollards,
boards, café tables, flower boxes.

Along a row the facade's ground floor and the pavement repeat: plinth, wall, doors,
windows and paving slabs recur along the street, so each pixel of a row is well explained
by the median of the row around it (a window of a bay or so). A thing standing in front
breaks that: it is a compact patch the row explains badly, and it stands on the ground,
so the patch reaches down to the facade's base line or below it and rises above it over
the facade. What the facade itself puts near the ground (doors, shop windows, drainpipes)
continues upward past the height of street furniture; a thing standing at the wall ends
well below the first floor, with the facade continuing above it. A thing standing further
out (its foot on the pavement clearly below the base line) is nearer the camera and may
rise higher. Each patch is then cut out at the plate's resolution by GrabCut, seeded with
its core.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from derrumbe.stages.holdout_cues.cutout import Found, cut
from derrumbe.stages.plate import line_segments

BAND_UP = 0.2           # a thing standing at the wall ends within this share of the frame above the base line
BAND_DOWN = 0.1         # the pavement in front searched below the base line, share of the frame
ROW_WINDOW = 0.12       # the row median's window, share of the width (about a bay: a thing is narrower)
ANOMALY = 2.0           # deviation from the row median, in robust spreads, that marks a thing
MAX_WIDTH = 0.12        # wider things are cars or awnings (the vehicle and street cues)
REACH_TOP = 0.12        # a cut whose full width starts this share of its rectangle under its top reaches the top
RISE_MAX = 0.3          # a thing out on the pavement rises at most this share of the frame above the base line
FRAME_REACH = 1.0       # a board's frame edge lies within this share of the cut's width outside it...
FRAME_INSIDE = 0.3      # ...or this share inside it
FRAME_LEN = 0.3         # and runs at least this share of the cut's height
FRAME_GROUP_PX = 6.0    # the segments of one edge lie within this many pixels of its outermost
FRAME_SLANT = 0.18      # an edge of a frame leans at most this (about 10 degrees) off the vertical
TALL_AT_WALL = 0.1      # a patch at the wall taller than this share of the frame is a door's height...
ABOVE_UP = 0.5          # ...and is looked at above, over this share of its height...
OPENING_DARK = 0.5      # ...where darker than this share of the lit wall it is inside an opening


def row_anomaly(lab: np.ndarray, window: int) -> np.ndarray:
    """How badly the row around each pixel explains it: the colour distance to the row's
    running median over `window` columns, in units of that distance's median along the
    whole row (its robust spread, floored so a flat wall's noise is not a thing). The
    spread is the row's, not the window's: a door beside a bin must not hide it."""
    med = np.stack([ndimage.median_filter(lab[..., c], size=(1, window), mode="reflect") for c in range(3)], -1)
    dev = np.linalg.norm(lab - med, axis=2)
    spread = np.median(dev, axis=1, keepdims=True)
    return dev / (1.5 * spread + 8.0)


def _standing(stats, band_top: int, base: float, h: int, w: int) -> bool:
    """A patch is a thing standing in front when its foot is on the ground (at the base
    line or below it), it rises over the facade, it is not wider than street furniture,
    and, when its foot is at the wall, the facade continues above it (it ends inside the
    band: a door or a shop window reaches the band's top)."""
    x, y, ww, hh, area = stats
    foot, top = y + hh, y
    tol = max(2.0, 0.01 * h)
    return (foot >= base - tol and top <= base - 0.01 * h and ww <= MAX_WIDTH * w and hh >= 0.02 * h
            and area >= 0.3 * ww * hh and (not _at_wall(foot, base, h) or top > band_top + 1))


def _at_wall(foot: float, base: float, h: int) -> bool:
    """Whether a patch's foot is on the facade's base line rather than out on the pavement."""
    return foot < base + 0.03 * h


def _inside_an_opening(gray: np.ndarray, stats, lit_wall: float) -> bool:
    """Whether a patch at the wall is as tall as a door and has darkness just above it:
    then it is the lit part of a doorway or a passage (its side wall, an open leaf, a
    pram parked in it), which falls with the building, not a thing standing in front
    (img_140's doorway stood as a black bar in the rubble, img_288's café door as a dark
    slab). Street furniture is lower; a bollard or a bin in front of a shop window's dark
    glass is too short to be taken for one. `gray` is the plate's luminance at the
    analysis size, `lit_wall` the band's upper quartile of it."""
    x, y, ww, hh, _ = stats
    if hh < TALL_AT_WALL * gray.shape[0]:
        return False
    strip = gray[max(0, int(y - ABOVE_UP * hh)):y, x:x + ww]
    return strip.size > 0 and float(np.median(strip)) < OPENING_DARK * lit_wall


def furniture(full_bgr: np.ndarray, bgr: np.ndarray, base: float, seed: int) -> list[Found]:
    """Things standing on the ground line in front of the facade, as plate-size cuts.
    `bgr` is the plate at the analysis size and `base` the building's base line in it."""
    h, w = bgr.shape[:2]
    s = full_bgr.shape[0] / h
    top, bottom = int(max(0, base - BAND_UP * h)), int(min(h, base + BAND_DOWN * h))
    if bottom - top < 8 or base >= h + 1:
        return []
    lab = cv2.cvtColor(cv2.GaussianBlur(bgr[top:bottom], (0, 0), 1.0), cv2.COLOR_BGR2LAB).astype(np.float32)
    m = (row_anomaly(lab, int(ROW_WINDOW * w) | 1) > ANOMALY).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    # A thing and the door or pier behind it are both unlike the row: the colour edge
    # between them (its outline) keeps them apart.
    whole_gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    m[cv2.Canny(whole_gray[top:bottom], 40, 100) > 0] = 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
    lit_wall = float(np.percentile(whole_gray[top:max(top + 1, int(base))], 75))
    found = []
    for i in range(1, n):
        st = stats[i].copy()
        st[1] += top
        if not _standing(st, top, base, h, w):
            continue
        if _at_wall(st[1] + st[3], base, h) and _inside_an_opening(whole_gray, st, lit_wall):
            continue
        x, y, ww, hh, _ = st
        # The foot may be darker than the body (its shadow, a plinth's base) and lost by the
        # row test: the cut may reach a little below the patch, to the pavement in front.
        foot = max(y + 1.05 * hh, min(h, base + 0.02 * h))
        rect = ((x - 0.15 * ww) * s, (y - 0.25 * hh) * s, (x + 1.15 * ww) * s, foot * s)
        core = ((x + 0.35 * ww) * s, (y + 0.3 * hh) * s, (x + 0.65 * ww) * s, (y + 0.8 * hh) * s)
        piece = cut(full_bgr, rect, [core], seed)
        # Out on the pavement, its foot clearly below the base line, and whole in the frame
        # (a strip the frame's side cuts is as likely a piece of what stands behind).
        out_front = y + hh > base + 0.03 * h and x > 1 and x + ww < w - 1
        if piece is not None and out_front:
            piece = _grown_up(full_bgr, piece, rect, (base - RISE_MAX * h) * s, seed)
            piece = _framed(piece, full_bgr, base * s)
        if piece is None or not _thing_like(piece, hh * ww * s * s, base * s, full_bgr.shape[0], out_front):
            continue
        if _seen_through_an_opening(full_bgr, piece):
            continue
        found.append(Found(piece.x, piece.y, piece.mask, "furniture", 0.5))
    return found


def _thing_like(piece: Found, patch_area: float, base: float, h: int, out_front: bool = False) -> bool:
    """The cut keeps the patch (GrabCut did not lose it to the facade), stays on the
    ground, and is not a rectangle filling its box (a door, a plinth's panel, a shop window:
    street furniture is rounded, tapered or open: a bollard's cap, a bin, a table's legs),
    unless it stands out on the pavement (out_front): a door or a shop window stands in
    the wall, and a board out on the pavement is a rectangle (img_100's SALE board)."""
    ys, xs = np.nonzero(piece.mask)
    if ys.size < 0.4 * patch_area:
        return False
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return piece.y + ys.max() + 1 >= base - max(2.0, 0.01 * h) and (out_front or ys.size < 0.9 * bh * bw)


def _grown_up(full_bgr: np.ndarray, piece: Found, rect, top_min: float, seed: int) -> Found:
    """A thing out on the pavement whose cut fills the top row of its rectangle runs on
    above it: the row test found only its lower part, where it stood out from what is
    behind it (img_100's SALE board, red like the awning behind its top, was cut to its
    foot). Cut again in a rectangle reaching half as high again (no higher than top_min,
    the tallest a thing on the pavement stands), seeded with the part already found,
    while the cut still fills the rectangle's top; kept only where it grew."""
    x0, y0, x1, y1 = rect
    for _ in range(4):
        ys, xs = np.nonzero(piece.mask)
        widths = piece.mask.sum(axis=1)
        full = np.nonzero(widths >= 0.5 * np.median(widths[widths > 0]))[0]
        # (GrabCut tapers a cut thing's top over the few rows under the rectangle's edge)
        if y0 <= top_min or piece.y + full[0] > y0 + REACH_TOP * (y1 - y0):
            return piece
        core = (piece.x + np.percentile(xs, 30), piece.y + np.percentile(ys, 30),
                piece.x + np.percentile(xs, 70), piece.y + np.percentile(ys, 80))
        # Half as far again each time (a full step up took the awning over a board's top
        # with it), and a quarter wider each side: the row test missed its sides as well.
        y0 = max(top_min, y0 - 0.5 * (y1 - y0))
        w = x1 - x0
        grown = cut(full_bgr, (x0 - 0.25 * w, y0, x1 + 0.25 * w, y1), [core], seed)
        if grown is None or grown.mask.sum() <= piece.mask.sum():
            return piece
        piece = grown
    return piece


def _verticals(full_bgr: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Near-vertical line segments (x0, y0, x1, y1, plate pixels) in a crop of the plate."""
    H, W = full_bgr.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return np.zeros((0, 4))
    seg = line_segments(cv2.cvtColor(full_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)) + [x0, y0, x0, y0]
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    return seg[(np.abs(dx) < FRAME_SLANT * np.abs(dy)) & (np.abs(dy) > 6.0)]


def _framed(piece: Found, full_bgr: np.ndarray, base: float) -> Found:
    """A board or a kiosk out on the pavement is a framed rectangle, and GrabCut keeps
    only what differs most from the street behind it: img_100's SALE board was cut to
    its red poster, its grey frame and its top taken for the facade (half of it went
    see-through, then under the rubble). Its frame's two side edges are long straight
    verticals just outside the cut, and at least one runs on down past the facade's
    foot to the pavement it stands on: the cut is completed to the rectangle between
    them, from the edges' highest top to their lowest foot. Without such a pair it is
    left as cut."""
    ys, xs = np.nonzero(piece.mask)
    x0, x1 = piece.x + xs.min(), piece.x + xs.max() + 1
    y0, y1 = piece.y + ys.min(), piece.y + ys.max() + 1
    pw, ph = x1 - x0, y1 - y0
    segs = _verticals(full_bgr, int(x0 - 1.5 * pw), int(y0 - ph), int(x1 + 1.5 * pw), int(y1 + ph))
    sx = 0.5 * (segs[:, 0] + segs[:, 2])
    top, bot = np.minimum(segs[:, 1], segs[:, 3]), np.maximum(segs[:, 1], segs[:, 3])
    on_rows = (bot > y0) & (top < y1) & (bot - top >= FRAME_LEN * ph)

    def edge(lo, hi, outer):
        pick = on_rows & (sx >= lo) & (sx <= hi)
        if not pick.any():
            return None
        xo = outer(sx[pick])
        grp = pick & (np.abs(sx - xo) <= FRAME_GROUP_PX)
        return xo, top[grp].min(), bot[grp].max()
    left = edge(x0 - FRAME_REACH * pw, x0 + FRAME_INSIDE * pw, np.min)
    right = edge(x1 - FRAME_INSIDE * pw, x1 + FRAME_REACH * pw, np.max)
    if left is None or right is None or max(left[2], right[2]) < base + 0.02 * full_bgr.shape[0]:
        return piece
    bx0, bx1 = int(np.floor(left[0])), int(np.ceil(right[0])) + 1
    by0, by1 = int(np.floor(min(left[1], right[1], y0))), int(np.ceil(max(left[2], right[2], y1)))
    X0, Y0 = min(piece.x, bx0), min(piece.y, by0)
    X1, Y1 = max(piece.x + piece.mask.shape[1], bx1), max(piece.y + piece.mask.shape[0], by1)
    m = np.zeros((Y1 - Y0, X1 - X0), bool)
    m[piece.y - Y0:piece.y - Y0 + piece.mask.shape[0], piece.x - X0:piece.x - X0 + piece.mask.shape[1]] = piece.mask
    m[by0 - Y0:by1 - Y0, bx0 - X0:bx1 - X0] = True
    return Found(int(X0), int(Y0), m, piece.kind, piece.conf)


def _seen_through_an_opening(full_bgr: np.ndarray, piece: Found) -> bool:
    """A bright patch framed by darkness above and at both sides is light seen through an
    opening (the courtyard at the end of a gateway's dark passage, a lit room behind a
    dark window), behind the facade, not a thing standing in front of it: that would show
    the wall around it too (img_140: a gateway's lit end stood in the rubble). The frame
    is a ring a sixth of the patch's width wide, its lower third left out (a thing's foot
    stands on whatever is there), darker than half the patch and than 0.6 of the rows'
    own median."""
    ys, xs = np.nonzero(piece.mask)
    bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    k = max(3, int(bw / 6))
    y0, x0 = max(0, piece.y - k), max(0, piece.x - k)
    y1 = min(full_bgr.shape[0], piece.y + piece.mask.shape[0] + k)
    x1 = min(full_bgr.shape[1], piece.x + piece.mask.shape[1] + k)
    lum = cv2.cvtColor(full_bgr[y0:y1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    mask = np.zeros(lum.shape, bool)
    mask[piece.y - y0:piece.y - y0 + piece.mask.shape[0], piece.x:piece.x + piece.mask.shape[1]] = piece.mask
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
    ring &= ~mask
    ring[int(piece.y - y0 + ys.min() + 0.67 * bh):] = False
    ring[:, :x0] = False
    ring[:, x1:] = False
    if ring.sum() < 10:
        return False
    inside, around = float(np.median(lum[mask])), float(np.median(lum[ring]))
    rows = float(np.median(lum[piece.y - y0 + ys.min():piece.y - y0 + ys.max() + 1]))
    return around < 0.5 * inside and around < 0.6 * rows
