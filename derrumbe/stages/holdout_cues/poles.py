"""Poles and posts: long near-vertical pairs of edges that run down to the street,
traced row by row."""

from __future__ import annotations

import cv2
import numpy as np

WIDTH_ROWS = 5        # a pole's width: the median of its last this many rows of it
WIDEN = 1.6           # a row wider than this times that width is something touching it
BULGE = 1.3           # a traced row wider than this times the rows around it: something it touches


def poles(bgr: np.ndarray, gray: np.ndarray, base: float, seed: int) -> list[tuple[np.ndarray, str, float]]:
    """Poles and posts: two long near-vertical edges a narrow band apart that run down
    to the street (the frame's bottom, or well below the building's base line). A
    drainpipe or a pilaster ends on the facade; a window's jambs are short."""
    h, w = gray.shape
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    strong = (np.abs(gx) > 40) & (np.abs(gx) > 2 * np.abs(gy))
    L = max(15, int(0.12 * h))
    found = []
    bottom_ok = max(h - 0.03 * h, base + 0.6 * (h - base))
    lines = []
    for sign in (1, -1):
        e = (strong & (np.sign(gx) == sign)).astype(np.uint8)
        e = cv2.dilate(e, np.ones((1, 3), np.uint8))
        e = cv2.morphologyEx(e, cv2.MORPH_OPEN, np.ones((L, 1), np.uint8))
        n, lab, stats, _ = cv2.connectedComponentsWithStats(e, connectivity=8)
        segs = [(stats[i][0] + stats[i][2] / 2.0, stats[i][1], stats[i][1] + stats[i][3]) for i in range(1, n)
                if stats[i][2] < 0.04 * w]
        for x, y0, y1 in segs:
            if y1 < bottom_ok:
                continue
            # Ornaments and brackets break a pole's edges: follow it up across short gaps.
            grew = True
            while grew:
                grew = False
                for xo, yo0, yo1 in segs:
                    if yo0 < y0 and y0 - 0.12 * h <= yo1 <= y0 + 2 and abs(xo - x) < 0.012 * w:
                        y0, grew = yo0, True
            lines.append((x, y0, y1, sign))
    used = set()
    for i, (xa, ya0, ya1, sa) in enumerate(lines):
        for j, (xb, yb0, yb1, sb) in enumerate(lines):
            if i >= j or sa == sb or i in used or j in used:
                continue
            gap = abs(xa - xb)
            if not (0.004 * w <= gap <= 0.07 * w):
                continue
            overlap = min(ya1, yb1) - max(ya0, yb0)
            if overlap < 0.6 * min(ya1 - ya0, yb1 - yb0):
                continue
            xl, xr = min(xa, xb), max(xa, xb)
            y0 = min(ya0, yb0)           # the edge followed furthest up
            # The band must differ from both sides: a pole, not the edge of a lit pilaster.
            band = bgr[y0:h, int(xl) + 1:int(xr)].reshape(-1, 3).astype(np.float32)
            lft = bgr[y0:h, max(0, int(xl - gap)):int(xl) - 1].reshape(-1, 3).astype(np.float32)
            rgt = bgr[y0:h, int(xr) + 2:min(w, int(xr + gap) + 1)].reshape(-1, 3).astype(np.float32)
            if min(len(band), len(lft), len(rgt)) == 0:
                continue
            c = np.median(band, 0)
            if min(np.linalg.norm(c - np.median(lft, 0)), np.linalg.norm(c - np.median(rgt, 0))) < 25:
                continue
            m = _trace_pole(bgr, c, int(y0), int(xl) + 1, int(xr))
            if m is None:
                continue
            used |= {i, j}
            found.append((m, "pole", 0.7))
    return found


def _run_at(row: np.ndarray, x: float) -> tuple[int, int] | None:
    """The run of True in `row` that holds x, else the nearest one: (start, end)."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    if idx.size == 0:
        return None
    runs = idx.reshape(-1, 2)
    dist = np.maximum(runs[:, 0] - x, x - runs[:, 1]).clip(0)
    i = int(np.argmin(dist))
    return (int(runs[i, 0]), int(runs[i, 1])) if dist[i] <= 3 else None


def _trace_pole(bgr: np.ndarray, colour: np.ndarray, y_seed: int, xl: int, xr: int) -> np.ndarray | None:
    """A pole's silhouette, followed row by row from where its edges were found, up and
    down: in each row, the run of pixels of the pole's colour that continues the run below
    (or above), as wide as the pole has been so far (a canopy or a sign touching it is not
    the pole), across short gaps where it passes in front of something of its own colour.
    A pole leans and tapers; a GrabCut of its box leaks into what it touches. Its width
    is the median of its last few rows', its line moves only with rows of that width: a
    trace begun at a lamp post's broad foot kept the foot's width up the shaft, took in
    the dark canopy the post passes and followed it off the post (img_288: 62 px where the
    shaft is 20, and the old wall hung round the post in a box once the building fell)."""
    h, w = bgr.shape[:2]
    img = bgr.astype(np.float32)
    near = np.linalg.norm(img - colour, axis=2) < 40
    mask = np.zeros((h, w), bool)
    width = float(max(2, xr - xl))
    rows = 0
    for step in (-1, 1):
        c, widths, gap = (xl + xr) / 2.0, [width], 0
        y = y_seed if step < 0 else y_seed + 1
        while 0 <= y < h and gap <= 0.08 * h:
            wd = float(np.median(widths[-WIDTH_ROWS:]))
            a, b = int(max(0, c - wd - 3)), int(min(w, c + wd + 4))
            run = _run_at(near[y, a:b], c - a)
            if run is not None and run[1] - run[0] >= max(2, 0.4 * wd):
                r0, r1 = run[0] + a, run[1] + a
                if r1 - r0 > WIDEN * wd:          # something touching it: the pole as it was
                    r0, r1 = c - 0.5 * wd, c + 0.5 * wd
                else:
                    c = 0.7 * c + 0.3 * (r0 + r1) / 2.0
                    widths.append(r1 - r0)
                mask[y, int(max(0, r0)):int(np.ceil(r1))] = True
                gap, rows = 0, rows + 1
            else:
                gap += 1
            y += step
    if rows < 0.25 * h:
        return None
    mask = _no_bulges(mask, max(5, int(0.08 * h)))
    # Short gaps bridged: the pole is one piece.
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((int(0.08 * h) | 1, 1), np.uint8)) > 0


def _no_bulges(mask: np.ndarray, k: int) -> np.ndarray:
    """Rows of a traced pole wider than BULGE times the rows around them (the median
    over k rows up and down) cut to that width about the pole's line. Near its foot the
    trace's own width is still the foot's, and a dark canopy touching the post there fits
    in it (img_288); a pole's taper and its foot change over many rows, a bulge of fewer
    than k rows is something it touches."""
    ys = np.nonzero(mask.any(axis=1))[0]
    if len(ys) < 3:
        return mask
    x0 = mask[ys].argmax(axis=1).astype(float)
    x1 = mask.shape[1] - mask[ys, ::-1].argmax(axis=1).astype(float)
    win = lambda v: np.lib.stride_tricks.sliding_window_view(np.pad(v, k, mode="edge"), 2 * k + 1)
    width = np.median(win(x1 - x0), axis=1)
    centre = np.median(win((x0 + x1) / 2.0), axis=1)
    out = mask.copy()
    for y, a, b, wd, c in zip(ys, x0, x1, width, centre):
        if b - a > BULGE * wd:
            out[y, :int(max(0, np.floor(c - 0.5 * BULGE * wd)))] = False
            out[y, int(np.ceil(c + 0.5 * BULGE * wd)):] = False
    return out
