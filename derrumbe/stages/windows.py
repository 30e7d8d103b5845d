"""Window openings of the facade, found in the plate: what breaks into glass shards.

A facade is mostly one material (render, brick, stone) with windows cut into it in a
regular grid. A window differs from the wall around it (dark glass, a reflection of the
sky, white curtains and frames): pixels far, in colour, from the wall's own colour form
near-rectangular blobs of a storey's scale that line up in rows and columns. The
detector keeps blobs that are

- about as far from the wall's colour as the facade's windows are (Otsu's threshold on
  the colour distance inside the building's matte),
- rectangular (they fill most of their bounding box after closing over glazing bars),
- of a window's size for the building and of a window's shape (not a thin sign or a
  pipe), and
- regular: sharing a row (top and bottom) or a column (left and right) with another.

A glass curtain wall is all window and nothing stands out from "the wall": there the
panes are the cells of the grid of dark mullions and transoms (`curtain_panes`) that
hold smooth, cool glass.

Returns boxes in plate pixels. Classical and cheap (tens of milliseconds); it takes a
shop sign in a row of windows for one when it is shaped like one.
"""

from __future__ import annotations

import cv2
import numpy as np

from derrumbe.stages.keystone import estimate_keystone
from derrumbe.stages.material import glass_like


WORK_PX = 900                 # detection runs on the building at about this size


def detect_windows(srgb: np.ndarray, building: np.ndarray) -> np.ndarray:
    """(K, 4) window boxes x0, y0, x1, y1 in plate pixels (float), top to bottom."""
    m = building > 0.5
    ys, xs = np.nonzero(m)
    if len(ys) < 400:
        return np.zeros((0, 4))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    s = min(1.0, WORK_PX / max(y1 - y0, x1 - x0))
    crop = cv2.resize(srgb[y0:y1, x0:x1], None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    mc = cv2.resize(m[y0:y1, x0:x1].astype(np.uint8), (crop.shape[1], crop.shape[0]),
                    interpolation=cv2.INTER_NEAREST) > 0
    boxes, dist = _candidates(crop, mc)
    boxes = _grid(_regular(boxes), dist, mc)
    if len(boxes) < 4:
        k = estimate_keystone(cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY), m)
        vp = None if k.vp_row is None else ((k.vp_x - x0) * s, (k.vp_row - y0) * s)
        curtain = curtain_panes(crop, mc, vp)
        if len(curtain) > len(boxes):
            boxes = curtain
    if not len(boxes):
        return np.zeros((0, 4))
    out = boxes / s + np.array([x0, y0, x0, y0])
    return out[np.argsort(out[:, 1], kind="stable")]


def _candidates(rgb: np.ndarray, inside: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (0, 0), 0.8), cv2.COLOR_RGB2LAB)
    # Sizes are judged against the building, not a storey period: a wrong period would
    # throw every window away, while the row/column test below is strict anyway.
    ref = float(np.sqrt(inside.sum()))
    # The wall's colour around each pixel: a median over a few windows' width (windows
    # are a minority of any such patch; the wall's own shading and weathering change
    # its colour across the facade more than a window differs from it).
    k = min(255, int(ref * 0.25) | 1)
    wall = np.stack([cv2.medianBlur(lab[..., c], k) for c in range(3)], -1).astype(np.float32)
    dist = np.sqrt((((lab.astype(np.float32) - wall) * np.array([0.6, 1.0, 1.0])) ** 2).sum(-1))
    d8 = np.clip(dist * 4.0, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(d8[inside], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ((d8 > max(t, 32)) & inside).astype(np.uint8)
    # Close over glazing bars and frames, open away wires, pipes and lettering.
    k_close = 3
    k_open = max(3, int(ref * 0.015)) | 1
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k_close, k_close), np.uint8))
    mask = _fill_holes(mask, (0.2 * ref) ** 2)    # a frame round glass that matches the wall
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k_open, k_open), np.uint8))
    n, lab_, stats, _ = cv2.connectedComponentsWithStats(mask)
    H, W = mask.shape
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if h < 0.03 * ref or h > 0.35 * ref or w < 0.015 * ref or w > 0.3 * ref:
            continue
        if not 0.45 <= h / w <= 3.5 or area < 0.62 * w * h:
            continue
        # A blob against the matte's edge is sky or a neighbour, not an opening.
        if x <= 1 or y <= 1 or x + w >= W - 1 or y + h >= H - 1:
            continue
        ring = cv2.dilate((lab_[max(0, y - 3):y + h + 3, max(0, x - 3):x + w + 3] == i).astype(np.uint8),
                          np.ones((5, 5), np.uint8))
        if not inside[max(0, y - 3):y + h + 3, max(0, x - 3):x + w + 3][ring > 0].all():
            continue
        out.append((x, y, x + w, y + h))
    return np.array(out, float).reshape(-1, 4), dist


def _fill_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats((mask == 0).astype(np.uint8))
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    small = np.nonzero(stats[:, cv2.CC_STAT_AREA] < max_area)[0]
    return np.where(np.isin(lab, np.setdiff1d(small, edge)), 1, mask).astype(np.uint8)


def _regular(boxes: np.ndarray) -> np.ndarray:
    """Boxes that share a row or a column with another of about their size: windows
    come in grids."""
    if len(boxes) < 2:
        return np.zeros((0, 4))
    tol = 0.15 * np.median(boxes[:, 3] - boxes[:, 1])
    keep = np.zeros(len(boxes), bool)
    for i, b in enumerate(boxes):
        row = (np.abs(boxes[:, 1] - b[1]) < tol) & (np.abs(boxes[:, 3] - b[3]) < tol)
        col = (np.abs(boxes[:, 0] - b[0]) < tol) & (np.abs(boxes[:, 2] - b[2]) < tol)
        keep[i] = row.sum() >= 2 or col.sum() >= 2
    return boxes[keep]


def _clusters(lo: np.ndarray, hi: np.ndarray, tol: float) -> list:
    """Groups intervals by their centres; each group's extent is its members' typical
    one (a window found only in part stretches to its row's or column's full size).
    Returns (lo, hi, member indices) per group."""
    c = 0.5 * (lo + hi)
    order = np.argsort(c)
    groups, cur = [], [order[0]]
    for i in order[1:]:
        if c[i] - c[cur[-1]] < tol:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    return [(float(np.percentile(lo[g], 25)), float(np.percentile(hi[g], 75)), np.array(g)) for g in groups]


def _grid(boxes: np.ndarray, dist: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The rows and columns the windows found define a grid; every cell of it that
    stands out from the wall around it is a window (found in part or missed, it is
    completed; a patch of wall that happened to pass is dropped)."""
    if len(boxes) < 2:
        return np.zeros((0, 4))
    hmed = np.median(boxes[:, 3] - boxes[:, 1])
    wmed = np.median(boxes[:, 2] - boxes[:, 0])
    rows = _clusters(boxes[:, 1], boxes[:, 3], 0.5 * hmed)
    cols = _clusters(boxes[:, 0], boxes[:, 2], 0.5 * wmed)
    if len(rows) > 1:
        # A column is one where windows of two storeys share it: a ground floor's
        # shopfronts (or their halves either side of a mullion) keep their own bays, which
        # the storeys above need not follow.
        row_of = np.empty(len(boxes), int)
        for k, (_, _, g) in enumerate(rows):
            row_of[g] = k
        cols = [c for c in cols if len(np.unique(row_of[c[2]])) >= 2]
    H, W = dist.shape
    out = []
    for y0, y1, _ in rows:
        for x0, x1, _ in cols:
            a, b, c, d = int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))
            if c - a < 3 or d - b < 3:
                continue
            # The ring of wall around the cell, past its frame and sill.
            mw, mh = max(1, (c - a) // 5), max(1, (d - b) // 6)
            pw, ph = mw + max(2, (c - a) // 3), mh + max(2, (d - b) // 4)
            A, B, C, D = max(0, a - pw), max(0, b - ph), min(W, c + pw), min(H, d + ph)
            if not inside[B:D, A:C].all():
                continue
            ring = np.ones((D - B, C - A), bool)
            ring[max(0, b - mh - B):d + mh - B, max(0, a - mw - A):c + mw - A] = False
            core = dist[b + (d - b) // 8:d - (d - b) // 8, a + (c - a) // 8:c - (c - a) // 8]
            if ring.any() and core.mean() > 1.25 * dist[B:D, A:C][ring].mean() + 2.0:
                out.append((x0, y0, x1, y1))
    return np.array(out, float).reshape(-1, 4)


MULLION_RUN = 0.4             # a mullion is darker than the glass either side over this share of its run
MIN_LINES = (3, 2)            # vertical and horizontal lines a curtain wall shows at least
MAX_SPACING_CV = 0.45         # their spacings vary at most this much (a module grid)
PANE_SPREAD = 0.05            # the panes' brightness (0..1) varies at least this much between them


def curtain_panes(rgb: np.ndarray, inside: np.ndarray, vp: tuple | None = None) -> np.ndarray:
    """The panes of a glass curtain wall: the cells of its grid of dark mullions
    (vertical, converging on the vanishing point `vp` (x, y) when the camera looks up)
    and transoms (horizontal), each a thin dark line over much of its run, whose cell is
    glass (smooth and cool, `material.glass_like`: a granite pier beside
    the glazing is no pane). (K, 4) boxes in `rgb`'s pixels, each the upright box inside
    its cell, inset by a mullion's half width."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    H, W = gray.shape
    k = max(5, int(0.02 * max(H, W)) | 1)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    # Each pixel's mullion coordinate: where the line through it and the vanishing point
    # crosses the bottom row (a level camera: its own column).
    u = xx if vp is None else vp[0] + (xx - vp[0]) * (H - vp[1]) / (yy - vp[1])
    hat_v = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, np.ones((1, k), np.uint8))
    hat_h = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, np.ones((k, 1), np.uint8))
    img = rgb.astype(np.float32) / 255.0
    glass = glass_like(rgb) & inside
    # A mullion holds glass on at least one side (the stripes of a granite pier do not).
    xs = _beside_glass(_dark_lines(u, hat_v, inside, W), u, glass, inside, W)
    ys = _dark_lines(yy, hat_h, inside, H)
    if len(xs) < MIN_LINES[0] or len(ys) < MIN_LINES[1]:
        return np.zeros((0, 4))
    sp = np.diff(xs)
    if sp.std() > MAX_SPACING_CV * sp.mean():
        return np.zeros((0, 4))
    # The frame's own edges bound the cells it cuts (a curtain wall taller than the shot)
    # when they lie at least half a module beyond the last line.
    my = np.median(np.diff(ys)) if len(ys) > 1 else H
    rows = np.nonzero(inside.any(axis=1))[0]
    ys = np.concatenate([[rows.min()] if ys[0] - rows.min() > 0.5 * my else [], ys,
                         [rows.max() + 1] if rows.max() + 1 - ys[-1] > 0.5 * my else []])
    def at(u0, y):                       # the column of mullion u0 at row y
        return u0 if vp is None else vp[0] + (u0 - vp[0]) * (y - vp[1]) / (H - vp[1])
    inset = max(1.0, 0.04 * float(np.median(sp)))
    min_h = 0.4 * float(np.median(np.diff(ys)))
    cells, ok, tone = [], [], []
    for r, (y0, y1) in enumerate(zip(ys[:-1], ys[1:])):
        for q, (u0, u1) in enumerate(zip(xs[:-1], xs[1:])):
            a = max(at(u0, y0), at(u0, y1)) + inset
            c = min(at(u1, y0), at(u1, y1)) - inset
            b, d = y0 + inset, y1 - inset
            ia, ib, ic, id_ = int(np.ceil(a)), int(np.ceil(b)), int(c), int(d)
            if ic - ia < 4 or id_ - ib < max(4.0, min_h) or not inside[ib:id_, ia:ic].mean() > 0.95:
                continue
            cells.append((r, q, (a, b, c, d)))
            ok.append(glass[ib:id_, ia:ic].mean() > 0.5)
            tone.append(float(img[ib:id_, ia:ic].max(axis=2).mean()))
    # Glass panes differ from one another (sky, rooms, blinds behind them); a grid of
    # frames on one even paint does not (img_190's smooth pale green render).
    if not cells or np.std(tone) < PANE_SPREAD:
        return np.zeros((0, 4))
    # A bay of the grid is glazed when most of its cells read as glass; then all of them
    # are panes (a pane reflecting trees, or a lit room behind it, is not smooth and cool).
    ok = np.array(ok)
    bay = np.array([q for _, q, _ in cells])
    glazed = {q for q in set(bay.tolist()) if ok[bay == q].mean() >= 0.5}
    if not glazed or ok[np.isin(bay, list(glazed))].mean() < 0.5:
        return np.zeros((0, 4))
    return np.array([box for _, q, box in cells if q in glazed], float).reshape(-1, 4)


def _along_lines(coord: np.ndarray, mask: np.ndarray, inside: np.ndarray, size: int) -> tuple:
    """Per line (`coord` binned by pixel, 0..size): how many of the building's pixels lie
    on it, and how many of those are in `mask`."""
    c = np.round(coord).astype(int)
    ok = inside & (c >= 0) & (c < size)
    run = np.bincount(c[ok], minlength=size).astype(np.float32)
    return run, np.bincount(c[ok], weights=mask[ok].astype(np.float32), minlength=size)


def _beside_glass(lines: np.ndarray, coord: np.ndarray, glass: np.ndarray, inside: np.ndarray,
                  size: int) -> np.ndarray:
    """The lines with glass over half of a strip a fifteenth of the facade wide on one
    side or the other."""
    run, hit = _along_lines(coord, glass, inside, size)
    g = max(3, size // 15)
    keep = []
    for x in lines.astype(int):
        left = hit[max(0, x - g):max(0, x - 2)].sum() / max(run[max(0, x - g):max(0, x - 2)].sum(), 1.0)
        right = hit[x + 3:x + g].sum() / max(run[x + 3:x + g].sum(), 1.0)
        if max(left, right) > 0.5:
            keep.append(x)
    return np.array(keep, float)


def _dark_lines(coord: np.ndarray, hat: np.ndarray, inside: np.ndarray, size: int) -> np.ndarray:
    """Positions (in `coord`, binned by pixel) of thin dark lines: where the black top-hat
    (how much darker a pixel is than the facade a module's fiftieth either side) is high
    over at least MULLION_RUN of the line's run inside the building. Peaks of that share,
    at least a twenty-fifth of the facade apart."""
    dark = hat > max(8.0, 2.0 * float(np.median(hat[inside])))
    run, hit = _along_lines(coord, dark, inside, size)
    share = np.where(run > 0.3 * float(run.max()), hit / np.maximum(run, 1.0), 0.0)
    peaks = [i for i in range(1, size - 1) if share[i] > MULLION_RUN and share[i] >= share[i - 1]
             and share[i] >= share[i + 1]]
    gap = max(2, size // 25)
    out = []
    for i in sorted(peaks, key=lambda i: -share[i]):
        if all(abs(i - j) >= gap for j in out):
            out.append(i)
    return np.array(sorted(out), float)


def to_facade(boxes_px: np.ndarray, cam, depth_m: float) -> np.ndarray:
    """Plate boxes to rectangles on the facade plane: (K, 4) x0, y0, x1, y1 in metres
    (y up, so y0 is the sill and y1 the head)."""
    if not len(boxes_px):
        return np.zeros((0, 4))
    x = (boxes_px[:, [0, 2]] - cam.cx) * depth_m / cam.f_px
    y = cam.eye_m - (boxes_px[:, [3, 1]] - cam.cy) * depth_m / cam.f_px
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)
