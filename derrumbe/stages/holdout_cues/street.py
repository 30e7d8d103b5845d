"""Things on the street in front of the building: what the street's own row statistics
explain badly, grown over the facade by GrabCut."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from derrumbe.stages.holdout_cues.cutout import fill_holes, grabcut, largest, trim_continuation


def street_anomaly(lab: np.ndarray, base: int) -> np.ndarray:
    """0..: how badly the street's own row statistics explain each pixel at and below the
    base line. The street is one surface whose colour changes slowly along a row (light,
    perspective); cars, signs and people standing on it break that."""
    h, w = lab.shape[:2]
    score = np.zeros((h, w), np.float32)
    top = int(np.clip(base, 0, h))
    if h - top < 3:
        return score
    street = lab[top:].astype(np.float32)
    # Rows smoothed a little vertically so a few rows of an object do not set their own median.
    med = np.median(street, axis=1, keepdims=True)
    med = cv2.GaussianBlur(med, (1, 0), sigmaX=0.1, sigmaY=2.0) if med.shape[0] > 4 else med
    dev = np.linalg.norm(street - med, axis=2)
    mad = np.median(dev, axis=1, keepdims=True)
    g = cv2.Laplacian(cv2.GaussianBlur(street[..., 0], (0, 0), 1.0), cv2.CV_32F)
    tex = cv2.GaussianBlur(np.abs(g), (0, 0), 2.0)
    tmed = np.median(tex, axis=1, keepdims=True)
    score[top:] = dev / (1.5 * mad + 6.0) + 0.5 * tex / (2.0 * tmed + 2.0)
    return score


def street_objects(bgr: np.ndarray, lab: np.ndarray, base: float, seed: int) -> list[tuple[np.ndarray, str, float]]:
    """Things on the street in front of the building: blobs of the street anomaly grown
    over the facade by GrabCut. A blob cut by the frame's bottom edge is the nearest thing
    in the shot (a car's bonnet, a roof): it rises about 0.6 of its width; one standing on
    the pavement rises a few times its depth on the street. A cut that fills its box like
    a rectangle is the facade's own structure (a pillar, a plinth, a shop window), not a
    thing in front of it."""
    h, w = bgr.shape[:2]
    top = int(min(h, base - 0.01 * h))
    if h - base < 0.03 * h:
        return []               # hardly any street in the shot: no row statistics to go by
    score = street_anomaly(lab, top)
    m = (score > 2.5).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    k = max(9, int(0.02 * w) | 1)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # A car's wheels, shadow and bumper are separate blobs on the street: join them along the row.
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3 * k), np.uint8))
    n, lab_, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    found = []
    for i in range(1, n):
        x, y, ww, hh, a = stats[i]
        if a < 4e-4 * h * w or ww > 0.8 * w:
            continue
        blob = lab_ == i
        core = cv2.erode(blob.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if core.sum() < 10:
            continue
        street_h = y + hh - max(y, top)
        at_bottom = y + hh >= h - 1
        rise = max(0.6 * ww - street_h, 0.0) if at_bottom else max(2.5 * street_h, 0.06 * h)
        rect = (x - 0.1 * ww, max(0, min(y, top) - rise), x + 1.1 * ww, y + hh)
        g = grabcut(bgr, rect, core, None, seed)
        if at_bottom:
            # What the frame's bottom cuts is the nearest thing in the shot, and the street
            # test sees only its darkest parts (a wheel arch, a bumper's shadow): where the
            # cut runs into a side of its box, the body goes on past it and is looked for
            # half a blob further (img_140's white car was found as its wheel arch alone;
            # its left half fell with the building).
            # (again while it does: img_140's car runs on off the frame's left edge, and a
            # single step left its door and windows to fall with the building)
            for _ in range(WIDEN_STEPS):
                g, wider = _widened(bgr, g, rect, core, 0.5 * ww, seed)
                if wider == rect:
                    break
                rect = wider
        g = trim_continuation(lab, g, int(round(rect[1])))
        g = fill_holes(largest(g, core))
        if not at_bottom and _cut_by_its_limit(g, int(round(rect[1]))):
            continue
        if at_bottom:
            g = smooth_outline(no_square_humps(rise_and_fall(g)))
        if g.sum() < 0.75 * core.sum() or g.sum() > 0.3 * h * w:
            continue
        ys, xs = np.nonzero(g)
        bw_, bh_ = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        fill = ys.size / float(bw_ * bh_)
        if fill > 0.9 or (not at_bottom and bw_ > 1.6 * ww):
            continue
        # Only a wide thing cut by the frame's bottom (a parked car's body nearest the
        # camera) is taken for a vehicle by its shape alone; one standing in the street is
        # a car when its tyres say so (vehicles.py), else an object: a "car" here would
        # be a ruler for the building's scale.
        kind = "vehicle" if at_bottom and bw_ > 1.3 * bh_ and bw_ > 0.08 * w else "object"
        found.append((g, kind, float(min(1.0, score[blob].mean() / 5))))
    return found


def _cut_by_its_limit(g: np.ndarray, top: int) -> bool:
    """Whether a cut standing on the pavement runs along the top of its search box over
    half its width or more: what it found goes on up the facade past the box (a door's
    lower panel, img_181, kept standing while the wall round it fell), where a thing in
    front of the facade (a bin, a bollard, a sign) ends within the height it was given."""
    cols = np.flatnonzero(g.any(axis=0))
    if not cols.size or top < 0 or top >= g.shape[0]:
        return False
    # (within a hundredth of the frame of it: GrabCut's edge settles a row or two inside)
    k = max(2, int(0.01 * g.shape[0]))
    return int(g[top:top + k + 1].sum(axis=1).max()) >= 0.5 * (cols.max() - cols.min() + 1)


def _widened(bgr, g, rect, core, by: float, seed: int):
    """The cut redone with each side of its box that the cut reaches moved out by `by`."""
    cols = np.nonzero(g.any(axis=0))[0]
    if not cols.size:
        return g, rect
    w = bgr.shape[1]
    x0, y0, x1, y1 = rect
    left = cols.min() <= max(0.0, x0) + 2 and x0 > 0
    right = cols.max() >= min(w - 1.0, x1) - 2 and x1 < w
    if not (left or right):
        return g, rect
    wide = (x0 - by if left else x0, y0, x1 + by if right else x1, y1)
    return grabcut(bgr, wide, core, None, seed), wide


def rise_and_fall(mask: np.ndarray) -> np.ndarray:
    """A cut of something the frame's bottom crops (a parked car's bonnet and roof, a
    passer-by) kept under an outline that rises once and falls once. GrabCut grows such a
    cut up into the facade behind where colours match (img_190: a car's cut took strips
    of the door above its bonnet, which then stood in the rubble): those show as humps
    with a dip between them and the object's own top. Of every outline that rises to one
    peak and falls and lies under the cut's own, the one keeping most of it. (A hump
    higher than all the object shows of itself stays here: no_square_humps takes img_190's
    shop-window poster beside a windshield the frame crops.)"""
    h = mask.shape[0]
    has = mask.any(axis=0)
    height = np.where(has, h - np.argmax(mask, axis=0), 0)
    best, keep = -1, height
    for p in np.flatnonzero(has):
        left = np.minimum.accumulate(height[p::-1])[::-1]
        right = np.minimum.accumulate(height[p:])
        env = np.concatenate([left[:-1], right])
        if env.sum() > best:
            best, keep = int(env.sum()), env
    rows = np.arange(h)[:, None]
    return mask & (rows >= h - keep[None, :])


WIDEN_STEPS = 3         # how many times a cut reaching a side of its box is redone wider
STEP_SHARE = 0.12       # a step in the outline of at least this share of the cut's height ...
STEP_PX = 3             # ... over at most this many columns is a wall, not a car's slope
HUMP_SHARE = 0.35       # humps walled on both sides narrower than this share of the cut go


def no_square_humps(mask: np.ndarray) -> np.ndarray:
    """A cut of something the frame's bottom crops, without the humps that stand on its
    outline with a sheer wall on each side: a car's outline slopes up its bonnet and
    windscreen, and what rises straight up from it and drops straight back within a
    third of its length is the facade behind it that GrabCut took for it (img_140: a
    square of white wall over a white car's bonnet stood in the rubble; img_190: the shop
    window's poster over a windscreen). Each such hump is cut down to the line between
    the outline's levels either side of it."""
    h = mask.shape[0]
    has = mask.any(axis=0)
    cols = np.flatnonzero(has)
    if cols.size < 4 * STEP_PX:
        return mask
    height = np.where(has, h - np.argmax(mask, axis=0), 0).astype(np.float32)
    thr = STEP_SHARE * float(height.max())
    lo, hi = int(cols.min()), int(cols.max())
    d = np.zeros_like(height)
    d[lo:hi + 1 - STEP_PX] = height[lo + STEP_PX:hi + 1] - height[lo:hi + 1 - STEP_PX]
    rises = [x for x in range(lo + 1, hi - STEP_PX) if d[x] >= thr and d[x - 1] < thr]
    for i in rises:
        falls = [x for x in range(i + 1, min(hi - STEP_PX, i + int(HUMP_SHARE * (hi - lo + 1))))
                 if d[x] <= -thr]
        if not falls:
            continue
        j = falls[-1] + STEP_PX                       # the outline's level after the drop
        a, b = height[i], height[j]
        line = a + (b - a) * (np.arange(i, j + 1) - i) / max(j - i, 1)
        height[i:j + 1] = np.minimum(height[i:j + 1], line)
    rows = np.arange(h)[:, None]
    return mask & (rows >= h - height[None, :])


OUTLINE_SMOOTH = 0.05   # a cropped car's outline is smooth over this share of its length (Gaussian sigma)


def smooth_outline(mask: np.ndarray) -> np.ndarray:
    """A cut of something the frame's bottom crops, under its outline smoothed along the
    columns: a car's bonnet and windscreen slope, but its grey bonnet against a grey
    pavement gives GrabCut no edge, and the cut snaps to the facade's horizontal lines
    instead (img_190: a shelf along the kerb, 46 px high in 5 columns, then one along a
    sill). The comp lays the dust over a holdout thinner than beside it, so each such step
    drew a stair in the cloud over the car."""
    h = mask.shape[0]
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size < 8:
        return mask
    lo, hi = int(cols.min()), int(cols.max())
    height = (h - np.argmax(mask[:, lo:hi + 1], axis=0)).astype(np.float32)
    height[~mask[:, lo:hi + 1].any(axis=0)] = 0.0
    # (its ends as they are: a car's bumper stands near vertical, and eased to the
    # frame's bottom, img_140's car lost its rear)
    smooth = gaussian_filter1d(height, OUTLINE_SMOOTH * (hi - lo + 1), mode="nearest")
    out = np.zeros_like(mask)
    out[:, lo:hi + 1] = np.arange(h)[:, None] >= h - smooth[None, :]
    return out
