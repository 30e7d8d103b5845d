"""Matte stage: the building's silhouette and the foreground objects in front of it.

From a rough box, GrabCut refines the silhouette: outside the box is background, the
sky inside the box is probable background, the rest probable building. Foreground
objects (cars, lamp posts, people) are found by holdouts.py and kept in front of the
debris and the dust by depth; a user holdout mask adds to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter

from derrumbe.errors import DerrumbeError
from derrumbe.spec import BOX_CLAMP_PX
from derrumbe.stages.holdouts import HoldoutSet, add_user_holdouts, find_holdouts, in_front

WORK_PX = 480  # GrabCut's cost grows with pixels; the silhouette is refined at this size


@dataclass
class Matte:
    building: np.ndarray   # H x W float32 0..1 at plate size
    holdout: np.ndarray    # H x W float32 0..1, foreground objects that stay in front
    auto_holdout_px: int   # pixels of holdout found automatically (for the log)
    objects: HoldoutSet    # each holdout on its own (class, box, ground contact, soft matte)


def box_in_image(box, size) -> tuple[int, int, int, int]:
    w, h = size
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise DerrumbeError(f"--box {x0},{y0},{x1},{y1} lies outside the {w}x{h} plate", field="box")
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if (x1 - x0) < 8 or (y1 - y0) < 8:
        raise DerrumbeError(f"--box {box[0]},{box[1]},{box[2]},{box[3]} covers less than 8x8 pixels of the plate")
    return x0, y0, x1, y1


def check_box(box, size, tolerance: int = BOX_CLAMP_PX) -> tuple[list[int], str | None]:
    """A box as given (X0,Y0,X1,Y1 in plate pixels from the top-left corner) checked
    against the plate: a corner at most `tolerance` pixels past an edge (a hand-drawn
    overshoot) is clamped to it, with a warning to print; further is an error that says
    which edge and by how much. Returns the box to use and the warning (or None)."""
    w, h = size
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise DerrumbeError(f"--box {x0},{y0},{x1},{y1} has zero area (need X1 > X0 and Y1 > Y0)", field="box")
    past = {"left": -x0, "top": -y0, "right": x1 - w, "bottom": y1 - h}
    far = {edge: d for edge, d in past.items() if d > tolerance}
    if far:
        edges = " and ".join(f"the {edge} edge by {d} px" for edge, d in far.items())
        raise DerrumbeError(f"--box {x0},{y0},{x1},{y1} lies outside the {w}x{h} plate, past {edges}; a box is "
                            f"X0,Y0,X1,Y1 in plate pixels from the top-left corner, within 0,0,{w},{h}", field="box")
    clamped = [max(0, x0), max(0, y0), min(w, x1), min(h, y1)]
    box_in_image(clamped, size)
    over = {edge: d for edge, d in past.items() if d > 0}
    if not over:
        return clamped, None
    edges = ", ".join(f"{d} px past the {edge} edge" for edge, d in over.items())
    return clamped, (f"--box {x0},{y0},{x1},{y1} clamped to {','.join(map(str, clamped))} ({edges} of the "
                     f"{w}x{h} plate)")


def sky_likelihood(srgb: np.ndarray) -> np.ndarray:
    """0..1: bright, low-texture, bluish or grey pixels connected to the top edge.

    Overhead wires cut a street's sky into strips, and only the top strip touches the
    frame's edge: when the top strip is as bright as a sky is (among the picture's
    brightest), a strip of the same colour that lies within a wire's width or so of
    the sky found so far is sky too (grown a few times, so every strip between the
    wires joins). The wires count as sky: thin things seen against it."""
    img = srgb.astype(np.float32) / 255.0
    hsv = cv2.cvtColor(srgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    val = img.max(axis=2)
    grad = cv2.Laplacian(cv2.GaussianBlur(img.mean(axis=2), (0, 0), 1.0), cv2.CV_32F)
    texture = cv2.GaussianBlur(np.abs(grad), (0, 0), 3.0)
    blueish = (img[..., 2] >= img[..., 0] - 0.02) | (hsv[..., 1] < 40)
    cand = ((val > 0.45) & (texture < 0.012) & blueish).astype(np.uint8)
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand)
    sky = np.isin(labels, list(set(np.unique(labels[0])) - {0}))
    if not sky.any():
        return sky.astype(np.float32)
    lab = cv2.cvtColor(srgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    if lab[sky, 0].mean() < 0.9 * np.percentile(lab[..., 0], 99):
        return sky.astype(np.float32)     # a dim strip along the top: a facade, not a sky to follow
    reach = np.ones((int(0.025 * max(srgb.shape[:2])) | 1,) * 2, np.uint8)     # a square: separable, fast
    min_area = 5e-4 * cand.size
    counts = np.maximum(np.bincount(labels.ravel(), minlength=n), 1)
    means = np.stack([np.bincount(labels.ravel(), lab[..., c].ravel(), n) for c in range(3)], 1) / counts[:, None]
    for _ in range(12):
        ref = lab[sky].mean(axis=0)
        near = cv2.dilate(sky.astype(np.uint8), reach).astype(bool) & ~sky
        ids = np.unique(labels[near & (labels > 0)])
        ids = ids[(stats[ids, cv2.CC_STAT_AREA] >= min_area) & (np.linalg.norm(means[ids] - ref, axis=1) < 20)]
        if not len(ids):
            break
        sky |= np.isin(labels, ids)
    # The wires between the strips: thin gaps closed, never a wide one.
    k = max(3, int(round(0.012 * max(srgb.shape[:2])))) | 1
    closed = cv2.morphologyEx(sky.astype(np.uint8), cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return np.maximum(sky, closed > 0).astype(np.float32)


TOP_REACH = 0.25      # _up_to_frame_top: a matte starting this share of the box's height below the frame's top


def refine_box(srgb: np.ndarray, box, seed: int) -> np.ndarray:
    h, w = srgb.shape[:2]
    x0, y0, x1, y1 = box_in_image(box, (w, h))
    scale = min(1.0, WORK_PX / max(w, h))
    small = cv2.resize(srgb, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    bx0, by0 = int(x0 * scale), int(y0 * scale)
    bx1, by1 = max(bx0 + 2, int(np.ceil(x1 * scale))), max(by0 + 2, int(np.ceil(y1 * scale)))
    gc = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
    sky = cv2.resize(sky_likelihood(srgb), (sw, sh), interpolation=cv2.INTER_AREA) > 0.5
    inside = np.zeros_like(sky)
    inside[by0:by1, bx0:bx1] = True
    gc[sky & inside] = cv2.GC_PR_BGD
    # The box's centre is the building for sure: it stops GrabCut from eating the facade.
    cxm, cym = (bx0 + bx1) // 2, (by0 + by1) // 2
    rw, rh = max(1, (bx1 - bx0) // 6), max(1, (by1 - by0) // 6)
    gc[cym - rh:cym + rh, cxm - rw:cxm + rw] = cv2.GC_FGD
    has_bg = (gc == cv2.GC_BGD).sum() + (gc == cv2.GC_PR_BGD).sum() > 50
    if has_bg:
        cv2.setRNGSeed(seed)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(small, gc, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
        m = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    else:
        m = inside.astype(np.uint8)
    # Keep the component under the box centre, fill holes (windows are building too).
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m)
    if n > 1:
        lab = labels[cym, cxm] or 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        m = (labels == lab).astype(np.uint8)
    m = _fill_holes(m)
    # A rough box cuts the building: its roof may rise above the box and its ground
    # floor run on below it. Both belong to the building (else a roof hangs in the sky
    # after the collapse and a strip of facade stays standing on the pavement).
    lab_img = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    base = _base_row(lab_img, m, by0, by1, seed)
    m = _down_to_base(m, base)
    m = _grow_roof(lab_img, m, sky, seed)
    if by0 == 0:
        m = _up_to_frame_top(m, (bx0, bx1), by1)
    sides = _side_walls(m, sky, base, (bx0, bx1))
    m = _straight_sides(m, sky, base, (bx0, bx1))
    m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    m = (cv2.GaussianBlur(m, (0, 0), 0.7 / scale) > 0.5).astype(np.float32)
    clip = np.zeros((h, w), np.float32)
    clip[:int(np.ceil(base / scale)) if base > by1 else y1, x0:x1] = 1
    # A side wall seen against the sky belongs to the building even past a rough box.
    clip = np.maximum(clip, cv2.resize(sides.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5)
    m *= clip
    if m.sum() < 64:
        raise DerrumbeError("could not find a building inside the box; draw the box tighter or give --mask")
    return m


SIGN_SAT = (0.45, 0.25)   # a sign's panel: at least this saturated and this bright (HSV)
SIGN_MAX = (0.02, 0.25)   # ... at most this share of the frame's area, and of its height or width
SIGN_OUT = 0.08           # ... reaching at most this share of the width past the box's side


def signs_across_the_edge(srgb: np.ndarray, m: np.ndarray, box_x: tuple[int, int]) -> np.ndarray:
    """A sign hanging off the building across the box's side (a shop's panel on its
    bracket at the corner): the whole of its panel, to go with the building. Cut at the
    box's edge, a sliver of it stayed hanging in the air beside the neighbour once the
    building fell (img_190's AVTO sign, judge 31). A panel is a saturated, compact patch
    (at least SIGN_SAT), small (SIGN_MAX), mostly over the matte and reaching only a
    little past the box (SIGN_OUT)."""
    h, w = m.shape
    hsv = cv2.cvtColor(srgb, cv2.COLOR_RGB2HSV)
    sat = ((hsv[..., 1] > SIGN_SAT[0] * 255) & (hsv[..., 2] > SIGN_SAT[1] * 255)).astype(np.uint8)
    # A panel's coloured rim, band and lettering as one patch (its white face is not saturated).
    k = max(3, int(0.015 * w)) | 1
    sat = cv2.morphologyEx(sat, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sat, connectivity=8)
    out = np.zeros((h, w), np.float32)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        crosses = [e for e in box_x if 0 < e < w and x < e <= x + bw - 1]
        if not crosses or area > SIGN_MAX[0] * h * w or bh > SIGN_MAX[1] * h or bw > SIGN_MAX[1] * w:
            continue
        comp = labels[y:y + bh, x:x + bw] == i
        on = (m[y:y + bh, x:x + bw] > 0.5) & comp
        out_px = (crosses[0] - x) if crosses[0] == box_x[0] else (x + bw - crosses[0])
        if area < 0.3 * bw * bh or on.sum() < 0.3 * area or out_px > SIGN_OUT * w:
            continue
        out[y:y + bh, x:x + bw] = 1.0
    return out


def _centres(pix: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k colour clusters (Lab) of a sample: a small model of a region's palette."""
    pix = np.ascontiguousarray(pix[np.random.default_rng(seed).permutation(len(pix))[:4000]], np.float32)
    cv2.setRNGSeed(seed)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    return cv2.kmeans(pix, min(k, len(pix)), None, crit, 2, cv2.KMEANS_PP_CENTERS)[2]


def _dist(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each pixel's Lab distance to the nearest of the centres."""
    return np.sqrt(((lab[..., None, :] - centres) ** 2).sum(-1)).min(-1)


def _extent(m: np.ndarray):
    cols = np.nonzero(m.any(axis=0))[0]
    top = m[:, cols].argmax(axis=0)
    bottom = m.shape[0] - 1 - m[::-1, cols].argmax(axis=0)
    return cols, top, bottom


def _base_row(lab: np.ndarray, m: np.ndarray, by0: int, by1: int, seed: int) -> int:
    """The row where the facade meets the street (a level camera sees it level): rows
    below the box's bottom edge that still look like the facade's lower floors (the box's
    lower rows, whatever GrabCut kept of them) rather than like the street at the frame's
    bottom join the building. The box's own edge when no street shows below it."""
    sh = m.shape[0]
    cols = np.nonzero(m.any(axis=0))[0]
    hb = by1 - by0
    street_rows = max(3, int(0.04 * sh))
    if len(cols) < 8 or by1 > sh - 2 * street_rows:
        return by1
    face = lab[by1 - int(0.3 * hb):by1 - int(0.05 * hb), cols].reshape(-1, 3)
    street = lab[sh - street_rows:, cols].reshape(-1, 3)
    if len(face) < 50:
        return by1
    d_face = _dist(lab[by1:, cols], _centres(face, 6, seed))
    d_street = _dist(lab[by1:, cols], _centres(street, 4, seed))
    frac = cv2.GaussianBlur((d_face < d_street).mean(axis=1).astype(np.float32)[:, None], (1, 5), 0).ravel()
    stop = min(sh - street_rows, by1 + int(0.35 * hb)) - by1
    below = np.nonzero(frac[:stop] < 0.8)[0]
    return by1 + (int(below[0]) if len(below) else stop)


def _down_to_base(m: np.ndarray, base: int) -> np.ndarray:
    """A facade has no gaps between its top and the street: each column the matte holds
    runs down to the base row (GrabCut drops a ground floor whose colour differs from the
    floors above); nothing of the building lies below it."""
    out = m.copy()
    out[base:] = 0
    cols, top, _ = _extent(m)
    for x, t in zip(cols, top):
        if t < base and m[t:base, x].mean() >= 0.3:
            out[t:base, x] = 1
    return out


def _up_to_frame_top(m: np.ndarray, box_x: tuple[int, int], by1: int) -> np.ndarray:
    """A box drawn up to the frame's top edge says the facade runs on out of frame: a
    column whose matte starts just below the edge, between columns that reach it, is
    building up to the edge too. GrabCut leaves out a top row of panes that reflect the
    sky (img_263's curtain wall; the sky test takes them for sky), and they stayed in the
    clean plate as a ghost of the facade to the end of the shot. A roof below the frame's
    top has open sky above it all along, with no column reaching the edge on both sides."""
    out = m.copy()
    reach = int(TOP_REACH * by1)
    at_top = np.nonzero(m[0, box_x[0]:box_x[1]])[0] + box_x[0]
    if len(at_top) < 2:
        return out
    cols, top, _ = _extent(m)
    for x, t in zip(cols, top):
        if at_top[0] < x < at_top[-1] and 0 < t <= reach:
            out[:t, x] = 1
    return out


def _grow_roof(lab: np.ndarray, m: np.ndarray, sky: np.ndarray, seed: int) -> np.ndarray:
    """The building's roof or parapet above the matte: pixels that continue the colours
    just above the matte's top edge (the eaves) rather than those of what stands behind
    (further up), grown upward from the edge column by column, up to half the building's
    height, never into the sky. Colours both share (grey roofs, grey walls) count as
    roof: what decides then is that the roof runs on unbroken from the eaves."""
    cols, top, bottom = _extent(m)
    if len(cols) < 8:
        return m
    hb = float(np.median(bottom - top)) + 1
    k, up = max(2, int(hb / 40)), int(0.45 * hb)
    if sky.any():
        # The sky mask stops short of edges (its texture test): sky-coloured pixels just
        # beside it are sky too. (Not further: a snowy roof has the sky's colour.)
        halo = cv2.dilate(sky.astype(np.uint8), np.ones((2 * k + 1,) * 2, np.uint8)) > 0
        sky = sky | (halo & (np.linalg.norm(lab - lab[sky].mean(axis=0), axis=-1) < 15))
    yy = np.arange(m.shape[0])[:, None]
    edge = (yy < top[None, :]) & (yy >= top[None, :] - k) & ~sky[:, cols]
    if edge.sum() < 0.3 * k * len(cols):
        return m                            # the top edge meets the sky: no roof to follow
    sub = lab[:, cols]
    roof = _centres(sub[edge], 5, seed)
    d_roof = _dist(sub, roof)
    like = ~sky[:, cols] & (d_roof < 30)
    upper = (yy < top[None, :] - up // 2) & (yy >= top[None, :] - up) & ~sky[:, cols]
    if upper.sum() > 20:
        behind = _centres(sub[upper], 6, seed)
        behind = behind[_dist(behind[None], roof)[0] > 15]
        if len(behind):
            like &= d_roof < _dist(sub, behind)
    like = cv2.morphologyEx(like.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8)).astype(bool)
    height = np.zeros(len(cols), np.int64)
    for i, t in enumerate(top):
        run = like[max(0, t - up):t, i][::-1]
        height[i] = len(run) if run.all() else int(np.argmin(run))
    # Chimneys, aerials and wires make spikes and notches: the roof line is a running
    # median. A roof seen from the front keeps its height along the facade (a level
    # ridge): no stretch rises far above the typical one (that is a wall behind).
    height = median_filter(height, size=max(3, int(0.05 * len(cols)) | 1), mode="nearest")
    if (height > 0).any():
        height = np.minimum(height, int(1.15 * np.median(height[height > 0])) + 1)
    out = m.copy()
    for x, t, hgt in zip(cols, top, height):
        col = slice(max(0, t - hgt), t)
        out[col, x] = ~sky[col, x]
    return out


def _side_walls(m: np.ndarray, sky: np.ndarray, base: int, box_x: tuple[int, int]) -> np.ndarray:
    """Adds to m (in place) and returns the strip between the matte's side and the sky:
    GrabCut stops at a downpipe or a corner and leaves the side wall seen in perspective
    (shaded, unlike the facade), which would stand in the sky after the collapse. Where
    the sky lies within a few percent of the width beside the matte, its edge is the
    building's silhouette; a building's edge is straight, so the line fitted to those
    edge points is followed down to the base row, past the sky too (a neighbour stands
    behind there). What lies between the matte and that line (up to 15 % of the width
    from the matte: GrabCut also leaves out a shaded corner of the facade below), and is
    not sky, is wall. The silhouette itself must lie inside the box's columns, clear
    of its edge (its edge against the sky is what the user boxed; sky-like at or past the
    box's edge may be a neighbour's glass reflecting the sky); only below may the wall
    run past a rough box."""
    h, w = m.shape
    gap = max(3, int(0.06 * w))
    tol = max(2, int(0.01 * w))
    grown = np.zeros_like(m, dtype=bool)
    rows = np.nonzero(m[:base].any(axis=1))[0]
    if len(rows) < 16:
        return grown
    for flip in (False, True):
        mm, ss = (m[:, ::-1], sky[:, ::-1]) if flip else (m, sky)
        limit = (w - 1 - box_x[0] if flip else box_x[1]) - tol      # well inside the box's edge on this side
        edge = _outer_columns(mm, rows)
        line = _silhouette_line(rows, edge, ss, gap, limit)
        if line is None:
            continue
        a, b, y_top = line
        out = grown[:, ::-1] if flip else grown
        for y, r in zip(rows, edge):
            if y < y_top:
                continue
            x_end = min(w, int(np.ceil(a * y + b)))
            if r + 1 < x_end <= r + 1 + 2.5 * gap:
                out[y, r + 1:x_end] = ~ss[y, r + 1:x_end].astype(bool)
    m[grown] = 1
    return grown


def _outer_columns(m: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The matte's outermost column on its right in each of the rows (flip it for the left)."""
    w = m.shape[1]
    return np.array([w - 1 - np.argmax(m[y, ::-1]) for y in rows])


SIDE_FILL = 0.3    # at most this share of the width is added to a row that falls short of its side's line


def _straight_sides(m: np.ndarray, sky: np.ndarray, base: int, box_x: tuple[int, int]) -> np.ndarray:
    """A facade meets its neighbour along one straight edge from its top to the street.
    GrabCut follows colour: where the facade's margin looks like the neighbour's wall it
    stops short of that edge for a run of rows. img_190's upper storeys lost 110 px of
    their margin beside the neighbour's quoins, and that strip stood in the clean plate
    after the collapse, a notch cut into the party wall. Where no sky lies beside a side
    (a silhouette against the sky is _side_walls'), the rows that fall short of the
    straight line through the side's outer half are filled out to it, never past the box
    and never into the sky."""
    h, w = m.shape
    rows = np.nonzero(m[:base].any(axis=1))[0]
    out = m.copy()
    if len(rows) < 16:
        return out
    gap = max(3, int(0.06 * w))
    for flip in (False, True):
        mm, ss = (out[:, ::-1], sky[:, ::-1]) if flip else (out, sky)     # views: writes land in out
        limit = (w - 1 - box_x[0]) if flip else box_x[1] - 1
        edge = _outer_columns(mm, rows)
        if np.median(edge) >= w - 2 or np.mean([ss[y, r + 1:r + 1 + gap].any() for y, r in zip(rows, edge)]) > 0.3:
            continue                        # the facade runs out of the frame, or stands against the sky
        outer = edge >= np.median(edge)
        a, b = np.polyfit(rows[outer], edge[outer], 1)
        if abs(a) > 0.1:
            continue                        # no straight side to follow
        line = np.minimum(np.round(a * rows + b).astype(int), limit)
        for y, r, x_end in zip(rows, edge, line):
            if r + 1 < x_end <= r + 1 + SIDE_FILL * w:
                mm[y, r + 1:x_end + 1] = np.maximum(mm[y, r + 1:x_end + 1], ~ss[y, r + 1:x_end + 1])
    return out


def _silhouette_line(rows, edge, sky, gap: int, limit: int):
    """The line x = a y + b through the first sky pixel beyond the matte's outer column
    in each row where one lies within `gap` (and not past `limit`), and the first row it
    holds from; None when too few rows show such an edge or it is far from vertical."""
    pts = []
    for y, r in zip(rows, edge):
        run = sky[y, r + 1:r + 1 + gap]
        if run.any() and 0 < np.argmax(run) and r + 1 + np.argmax(run) <= limit:
            pts.append((y, r + 1 + int(np.argmax(run))))
    need = max(8, 0.1 * len(rows))
    if len(pts) < need:
        return None
    ys, xs = np.array(pts, np.float64).T
    keep = np.ones(len(ys), bool)
    for _ in range(3):                        # robust to stray points: refit to those near the line
        a, b = np.polyfit(ys[keep], xs[keep], 1)
        keep = np.abs(xs - (a * ys + b)) < 2.0
        if keep.sum() < 8:
            break
    if keep.sum() < need or abs(a) > 0.5:
        return None
    return a, b, ys[keep].min()


def _fill_holes(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    ff = np.pad(m, 1).astype(np.uint8) * 255
    cv2.floodFill(ff, None, (0, 0), 128)
    holes = ff[1:-1, 1:-1] == 0
    return (m.astype(bool) | holes).astype(np.uint8)


def compute_matte(srgb: np.ndarray, box, mask: np.ndarray | None, holdout: np.ndarray | None,
                  seed: int, auto_holdouts: bool = True, judge=None, foot=None) -> Matte:
    """The building's silhouette, and what stays in front of it: the automatic holdouts
    (holdouts.py) plus the user's mask, each connected part of which is one more object.

    What stands in front of the facade is not the facade: the holdouts in front are taken
    out of the building's matte, so no fragment is cut from a car or a passer-by (fracture
    drops fragments where the matte is 0) and they stay the plate's own pixels, layered by
    depth against the debris and the dust. `judge(holdouts, building)` may first drop
    detections that cannot be what they were taken for (camera.too_tall_by_the_facade: the
    scale is a later stage's, so it is handed in); `foot(srgb, building)` may stop a
    matte that a box ran past the facade's foot (camera.stop_at_the_foot), after the
    holdouts are found along the box as drawn."""
    h, w = srgb.shape[:2]
    building = (mask > 0.5).astype(np.float32) if mask is not None else refine_box(srgb, box, seed)
    found = find_holdouts(srgb, building, seed) if auto_holdouts else HoldoutSet([], (h, w))
    if mask is None and foot is not None:
        building = foot(srgb, building)
    if judge is not None and found.objects:
        judge(found, building)
    if mask is None:
        # After the holdouts: a sign's panel sticking out past the silhouette's side is
        # no top of the building, and read as one it made a cable running along the
        # facade below it an overhead wire, left hanging in the air (img_190).
        building = np.maximum(building, signs_across_the_edge(srgb, building, box_in_image(box, (w, h))[::2]))
    auto_px = int((found.matte() > 0.5).sum())
    if holdout is not None:
        add_user_holdouts(found, holdout)
    building = (building * (1.0 - in_front(found, building))).astype(np.float32)
    return Matte(building=building, holdout=found.matte(), auto_holdout_px=auto_px, objects=found)
