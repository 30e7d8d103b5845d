"""Cutting one object out of the plate: GrabCut seeded from a detector's cores, its
connected part and filled holes, and the boxes and masks the detectors hand on."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# An object's own GrabCut runs at full size up to this many pixels (its soft edge is then
# refined at full size by the guided filter).
CUT_PX = 50_000


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-6)


def nms(boxes, thr):
    out = []
    for b, s in sorted(boxes, key=lambda t: -t[1]):
        if all(box_iou(b, o) < thr for o, _ in out):
            out.append((b, s))
    return out


def grabcut(bgr: np.ndarray, rect, sure_fg: np.ndarray | None, prob_bg: np.ndarray | None, seed: int,
            iters: int = 3) -> np.ndarray:
    """GrabCut in `rect` (x0, y0, x1, y1, clipped, with a margin of certain background
    around it) seeded with certain-foreground pixels; returns a bool mask of the frame."""
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = [int(round(v)) for v in rect]
    mx, my = max(6, (x1 - x0) // 4), max(6, (y1 - y0) // 4)
    cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    sub = np.ascontiguousarray(bgr[cy0:cy1, cx0:cx1])
    gc = np.full(sub.shape[:2], cv2.GC_BGD, np.uint8)
    gc[max(0, y0 - cy0):y1 - cy0, max(0, x0 - cx0):x1 - cx0] = cv2.GC_PR_FGD
    if prob_bg is not None:
        gc[(gc == cv2.GC_PR_FGD) & prob_bg[cy0:cy1, cx0:cx1]] = cv2.GC_PR_BGD
    if sure_fg is not None:
        gc[sure_fg[cy0:cy1, cx0:cx1] & (gc != cv2.GC_BGD)] = cv2.GC_FGD
    out = np.zeros((h, w), bool)
    if (gc == cv2.GC_BGD).sum() < 30 or not ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any():
        return out
    cv2.setRNGSeed(seed)
    bgm, fgm = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(sub, gc, None, bgm, fgm, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return out
    out[cy0:cy1, cx0:cx1] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return out


def largest(mask: np.ndarray, anchor: np.ndarray | None = None) -> np.ndarray:
    """The connected part of `mask` that holds most of `anchor` (else the largest)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(bool)
    if anchor is not None and anchor.any():
        votes = np.bincount(lab[anchor & mask], minlength=n)
        votes[0] = 0
        if votes.max() > 0:
            return lab == int(np.argmax(votes))
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    ff = np.pad(mask, 1).astype(np.uint8) * 255
    cv2.floodFill(ff, None, (0, 0), 128)
    return mask | (ff[1:-1, 1:-1] == 0)


@dataclass
class Found:
    """One detection before its soft edge: a bool mask over a crop at (x, y), plate pixels."""
    x: int
    y: int
    mask: np.ndarray
    kind: str
    conf: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.mask.shape[1], self.y + self.mask.shape[0]


def cut(full_bgr: np.ndarray, rect, cores, seed: int, prob_bg=None, sure_bg=None) -> Found | None:
    """GrabCut of one object in its own crop of the plate (at full size, or shrunk to
    CUT_PX pixels): `rect` (x0, y0, x1, y1) is probably the object, a margin of a quarter of
    it around is certain background, `cores` (rectangles) are certainly the object, and so
    is `sure_bg` (a frame-sized mask), where given, certainly not. The part connected to
    the cores, holes filled."""
    H, W = full_bgr.shape[:2]
    x0, y0, x1, y1 = rect
    mx, my = max(4.0, (x1 - x0) / 4), max(4.0, (y1 - y0) / 4)
    cx0, cy0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
    cx1, cy1 = int(min(W, x1 + mx)), int(min(H, y1 + my))
    if cx1 - cx0 < 4 or cy1 - cy0 < 4:
        return None
    s = min(1.0, np.sqrt(CUT_PX / ((cx1 - cx0) * (cy1 - cy0))))
    crop = full_bgr[cy0:cy1, cx0:cx1]
    sub = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else np.ascontiguousarray(crop)
    h, w = sub.shape[:2]

    def px(r):
        return [int(np.clip(round(v), 0, n)) for v, n in
                zip(((r[0] - cx0) * s, (r[1] - cy0) * s, (r[2] - cx0) * s, (r[3] - cy0) * s), (w, h, w, h))]
    gc = np.full((h, w), cv2.GC_BGD, np.uint8)
    a, b, c, d = px(rect)
    gc[b:d, a:c] = cv2.GC_PR_FGD
    if prob_bg is not None:
        pb = cv2.resize(prob_bg[cy0:cy1, cx0:cx1].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        gc[(gc == cv2.GC_PR_FGD) & pb] = cv2.GC_PR_BGD
    if sure_bg is not None:
        sb = cv2.resize(sure_bg[cy0:cy1, cx0:cx1].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        gc[sb] = cv2.GC_BGD
    seeds = np.zeros((h, w), bool)
    for core in cores:
        a, b, c, d = px(core)
        seeds[b:max(d, b + 1), a:max(c, a + 1)] = True
    gc[seeds & (gc != cv2.GC_BGD)] = cv2.GC_FGD
    if (gc == cv2.GC_BGD).sum() < 30 or not (gc == cv2.GC_FGD).any():
        return None
    cv2.setRNGSeed(seed)
    bgm, fgm = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(sub, gc, None, bgm, fgm, 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    m = fill_holes(largest((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), seeds))
    if s < 1:
        m = cv2.resize(m.astype(np.uint8), (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR) > 0
    return Found(cx0, cy0, m, "", 0.0) if m.any() else None


def from_small(m: np.ndarray, kind: str, conf: float, shape: tuple[int, int]) -> Found | None:
    """A mask found at the analysis size as a crop at the plate's size."""
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return None
    H, W = shape
    sy, sx = H / m.shape[0], W / m.shape[1]
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    X0, Y0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
    X1, Y1 = min(W, int(np.ceil(x1 * sx))), min(H, int(np.ceil(y1 * sy)))
    big = cv2.resize(m[y0:y1, x0:x1].astype(np.float32), (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_LINEAR) > 0.5
    return Found(X0, Y0, big, kind, conf) if big.any() else None


def overlap(a: Found, b: Found) -> int:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    return int((a.mask[y0 - a.y:y1 - a.y, x0 - a.x:x1 - a.x] & b.mask[y0 - b.y:y1 - b.y, x0 - b.x:x1 - b.x]).sum())


def union(a: Found, b: Found) -> Found:
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1, y1 = max(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    m = np.zeros((y1 - y0, x1 - x0), bool)
    for f in (a, b):
        m[f.y - y0:f.box[3] - y0, f.x - x0:f.box[2] - x0] |= f.mask
    return Found(x0, y0, m, a.kind, max(a.conf, b.conf))


def trim_continuation(lab: np.ndarray, mask: np.ndarray, top: int, tol: float = 14.0) -> np.ndarray:
    """Take off a cut what is the facade continued from above. A cut limited to rows from
    `top` down that still touches `top` has leaked into something the limit cut through: a
    door, a sign or a window that goes on above it. Down each such column the pixels that
    keep the colour of the facade just above the limit (followed slowly, for shading) are
    that facade; the thing in front starts where the colour breaks."""
    h = mask.shape[0]
    k = max(3, int(0.02 * h))
    if top < k or top >= h:
        return mask
    cols = np.flatnonzero(mask[top])
    if cols.size == 0:
        return mask
    img = lab.astype(np.float32)
    ref = img[top - k:top, cols].mean(axis=0)
    out = mask.copy()
    live = np.ones(cols.size, bool)
    for y in range(top, h):
        px = img[y, cols]
        same = live & mask[y, cols] & (np.linalg.norm(px - ref, axis=1) < tol)
        out[y, cols[same]] = False
        ref[same] = 0.9 * ref[same] + 0.1 * px[same]
        live = same
        if not live.any():
            break
    return out
