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

from derrumbe.errors import DerrumbeError
from derrumbe.stages.holdouts import HoldoutSet, add_user_holdouts, find_holdouts

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
        raise DerrumbeError(f"--box {x0},{y0},{x1},{y1} lies outside the {w}x{h} plate")
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if (x1 - x0) < 8 or (y1 - y0) < 8:
        raise DerrumbeError(f"--box {box[0]},{box[1]},{box[2]},{box[3]} covers less than 8x8 pixels of the plate")
    return x0, y0, x1, y1


def sky_likelihood(srgb: np.ndarray) -> np.ndarray:
    """0..1: bright, low-texture, bluish or grey pixels connected to the top edge."""
    img = srgb.astype(np.float32) / 255.0
    hsv = cv2.cvtColor(srgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    val = img.max(axis=2)
    grad = cv2.Laplacian(cv2.GaussianBlur(img.mean(axis=2), (0, 0), 1.0), cv2.CV_32F)
    texture = cv2.GaussianBlur(np.abs(grad), (0, 0), 3.0)
    blueish = (img[..., 2] >= img[..., 0] - 0.02) | (hsv[..., 1] < 40)
    cand = (val > 0.45) & (texture < 0.012) & blueish
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels = cv2.connectedComponents(cand)
    top = set(np.unique(labels[0])) - {0}
    sky = np.isin(labels, list(top)) if top else np.zeros(cand.shape, bool)
    return sky.astype(np.float32)


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
    m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    m = (cv2.GaussianBlur(m, (0, 0), 0.7 / scale) > 0.5).astype(np.float32)
    clip = np.zeros((h, w), np.float32)
    clip[y0:y1, x0:x1] = 1
    m *= clip
    if m.sum() < 64:
        raise DerrumbeError("could not find a building inside the box; draw the box tighter or give --mask")
    return m


def _fill_holes(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    ff = np.pad(m, 1).astype(np.uint8) * 255
    cv2.floodFill(ff, None, (0, 0), 128)
    holes = ff[1:-1, 1:-1] == 0
    return (m.astype(bool) | holes).astype(np.uint8)


def compute_matte(srgb: np.ndarray, box, mask: np.ndarray | None, holdout: np.ndarray | None,
                  seed: int, auto_holdouts: bool = True) -> Matte:
    """The building's silhouette, and what stays in front of it: the automatic holdouts
    (holdouts.py) plus the user's mask, each connected part of which is one more object."""
    h, w = srgb.shape[:2]
    building = (mask > 0.5).astype(np.float32) if mask is not None else refine_box(srgb, box, seed)
    found = find_holdouts(srgb, building, seed) if auto_holdouts else HoldoutSet([], (h, w))
    auto_px = int((found.matte() > 0.5).sum())
    if holdout is not None:
        add_user_holdouts(found, holdout)
    return Matte(building=building, holdout=found.matte(), auto_holdout_px=auto_px, objects=found)
