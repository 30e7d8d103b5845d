"""Holdouts stage: what stands between the camera and the building, found without help.

A compositor's roto: people, vehicles, poles, signs, street furniture and overhead wires
that stand in front of the facade must stay in front of the debris and the dust. Each is
found by a cue that does not need a trained network downloaded at run time:
- people: OpenCV's shipped HOG people detector (Dalal-Triggs), then GrabCut in the box;
- things standing on the street (cars, signs, bins, tables): the ground in front of the
  building is one surface whose colour changes slowly along a row; what the row's own
  statistics explain badly and stands on it is an object, grown up over the facade by
  GrabCut (the facade above it is the background model);
- poles and posts: long, straight, near-vertical pairs of edges whose band reaches the
  street below the building's base line (a drainpipe ends on the facade's plinth);
- overhead wires: long thin dark ridges that sag or slant across the sky and the roof
  line (the facade's own mouldings are level and straight).
Each object's matte is softened with a guided filter on the plate (hair, wires, mesh
fences get partial alpha instead of a staircase). The detections are data (class, box,
ground contact, pixel height, confidence) so the camera can use people and cars as
scale cues; their depth comes from the camera later (`assign_depths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

VERSION = 1              # bump when detection changes: the matte stage's cache key holds it
WORK_PX = 800            # long side of the analysis; GrabCut's and HOG's cost grow with pixels
PERSON_M = 1.7           # scale cues for the camera: typical heights
VEHICLE_M = 1.5


@dataclass
class Holdout:
    """One foreground object. `alpha` is its soft matte over `bbox` (plate pixels)."""
    id: int
    kind: str                     # person, vehicle, pole, object, wire, moving, user
    bbox: tuple[int, int, int, int]   # x0, y0, x1, y1 in plate pixels (x1, y1 exclusive)
    contact_row: float | None     # lowest row where it meets the ground; None: hidden or cut by the frame
    pixel_height: float
    confidence: float
    alpha: np.ndarray             # float32 (y1-y0) x (x1-x0), 0..1
    depth_m: float | None = None  # view depth of its ground contact (assign_depths)
    depth_source: str = ""

    def as_dict(self) -> dict:
        """The detection as data (manifest, web page, scale cues)."""
        return {"id": self.id, "kind": self.kind, "bbox": [int(v) for v in self.bbox],
                "contact_row": None if self.contact_row is None else round(float(self.contact_row), 1),
                "pixel_height": round(float(self.pixel_height), 1), "confidence": round(float(self.confidence), 3),
                "depth_m": None if self.depth_m is None else round(float(self.depth_m), 2),
                "depth_source": self.depth_source, "area_px": int((self.alpha > 0.5).sum())}

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        x0, y0, x1, y1 = self.bbox
        out[y0:y1, x0:x1] = self.alpha
        return out


@dataclass
class HoldoutSet:
    objects: list[Holdout] = field(default_factory=list)
    shape: tuple[int, int] = (0, 0)

    def matte(self) -> np.ndarray:
        """Union of every object's alpha (the over of independent mattes)."""
        keep = np.ones(self.shape, np.float32)
        for o in self.objects:
            x0, y0, x1, y1 = o.bbox
            keep[y0:y1, x0:x1] *= 1.0 - o.alpha
        return 1.0 - keep

    def depth_map(self, far: float = np.inf) -> np.ndarray:
        """Per pixel the depth of the nearest object covering it (far where none)."""
        z = np.full(self.shape, far, np.float32)
        for o in self.objects:
            if o.depth_m is None:
                continue
            x0, y0, x1, y1 = o.bbox
            cov = o.alpha > 0.02
            sub = z[y0:y1, x0:x1]
            sub[cov] = np.minimum(sub[cov], o.depth_m)
        return z

    def as_list(self) -> list[dict]:
        return [o.as_dict() for o in self.objects]


# --- the cues -----------------------------------------------------------------------------

def _base_row(building: np.ndarray) -> float:
    """Where the facade meets the street: the median of the building matte's per-column
    bottom (a few columns reaching lower, e.g. through a door, do not move it)."""
    cols = building > 0.5
    has = cols.any(axis=0)
    if not has.any():
        return float(building.shape[0])
    bottoms = building.shape[0] - 1 - np.argmax(cols[::-1], axis=0)
    return float(np.median(bottoms[has]) + 1)


def _hog():
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def find_people(bgr: np.ndarray, min_score: float = 0.5) -> list[tuple[np.ndarray, float]]:
    """HOG people boxes (x0, y0, x1, y1) with their SVM margin, overlapping boxes merged.
    The detector's window is 64x128 px: small figures are found on an upscaled copy."""
    h, w = bgr.shape[:2]
    up = 1.0
    if h < 700:
        up = 700.0 / h
    img = cv2.resize(bgr, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR) if up != 1.0 else bgr
    rects, weights = _hog().detectMultiScale(img, hitThreshold=0.0, winStride=(8, 8), padding=(16, 16), scale=1.08)
    boxes = [(np.array([x, y, x + ww, y + hh], np.float32) / up, float(s))
             for (x, y, ww, hh), s in zip(rects, np.ravel(weights)) if s >= min_score]
    return _nms(boxes, 0.4)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-6)


def _nms(boxes, thr):
    out = []
    for b, s in sorted(boxes, key=lambda t: -t[1]):
        if all(_iou(b, o) < thr for o, _ in out):
            out.append((b, s))
    return out


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


def _grabcut(bgr: np.ndarray, rect, sure_fg: np.ndarray | None, prob_bg: np.ndarray | None, seed: int,
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


def _largest(mask: np.ndarray, anchor: np.ndarray | None = None) -> np.ndarray:
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


def _fill(mask: np.ndarray) -> np.ndarray:
    ff = np.pad(mask, 1).astype(np.uint8) * 255
    cv2.floodFill(ff, None, (0, 0), 128)
    return mask | (ff[1:-1, 1:-1] == 0)


def _people(bgr: np.ndarray, base: float, seed: int) -> list[tuple[np.ndarray, str, float]]:
    """People: HOG boxes whose feet stand on the street (at or below the facade's base
    line: a balcony or a window that looks like a figure does not), cut out by GrabCut
    seeded with the torso's centre line."""
    h, w = bgr.shape[:2]
    found = []
    for box, score in find_people(bgr):
        x0, y0, x1, y1 = box
        bh, bw = y1 - y0, x1 - x0
        feet = y1 - 0.1 * bh                     # the window pads the figure by about an eighth
        if feet < base - 0.12 * bh:
            continue
        rect = (x0 + 0.12 * bw, y0 + 0.05 * bh, x1 - 0.12 * bw, min(h, y1 - 0.02 * bh))
        core = np.zeros((h, w), bool)
        cx = int((x0 + x1) / 2)
        core[int(y0 + 0.3 * bh):int(y0 + 0.75 * bh), max(0, cx - max(1, int(0.05 * bw))):cx + max(2, int(0.05 * bw))] = True
        m = _grabcut(bgr, rect, core, None, seed)
        m = _fill(_largest(m, core))
        if _figure_like(m, bh * bw):
            found.append((m, "person", float(min(1.0, 0.5 + score / 4))))
    return found


def _figure_like(m: np.ndarray, box_area: float) -> bool:
    """A standing figure is taller than wide and far from filling its own box; a window
    or a door that fooled the detector comes back from GrabCut as a full rectangle."""
    ys, xs = np.nonzero(m)
    if ys.size < 0.12 * box_area:
        return False
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return bh > 1.6 * bw and ys.size < 0.8 * bh * bw


def _street_objects(bgr: np.ndarray, lab: np.ndarray, base: float, seed: int) -> list[tuple[np.ndarray, str, float]]:
    """Things standing on the street in front of the building: blobs of the street
    anomaly grown upward by GrabCut against the facade around them."""
    h, w = bgr.shape[:2]
    top = int(min(h, base - 0.01 * h))
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
        core = cv2.erode((lab_ == i).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if core.sum() < 10:
            continue
        street_h = y + hh - max(y, top)
        # Reach up over the facade as far as the object is likely to stand: cars and
        # people are about as tall above the base line as they are deep below it, signs
        # more; GrabCut trims what is facade.
        reach = max(2.5 * street_h, 0.6 * ww, 0.06 * h)
        rect = (x - 0.1 * ww, max(0, min(y, top - reach)), x + 1.1 * ww, y + hh)
        g = _grabcut(bgr, rect, core, None, seed)
        g = _fill(_largest(g, core))
        if g.sum() < 1.5 * core.sum() * 0.5 or g.sum() > 0.3 * h * w:
            continue
        ys, xs = np.nonzero(g)
        bw_, bh_ = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        kind = "vehicle" if bw_ > 1.3 * bh_ and bw_ > 0.08 * w else "object"
        found.append((g, kind, float(min(1.0, score[lab_ == i].mean() / 5))))
    return found


def _poles(bgr: np.ndarray, gray: np.ndarray, base: float, seed: int) -> list[tuple[np.ndarray, str, float]]:
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
            core = np.zeros((h, w), bool)
            cx = int((xl + xr) / 2)
            core[int(y0):h, max(0, cx - max(1, int(gap / 5))):cx + max(2, int(gap / 5))] = True
            rect = (xl - gap, max(0, y0 - 0.05 * h), xr + gap, h)
            m = _grabcut(bgr, rect, core, None, seed)
            m = _largest(m, core)
            used |= {i, j}
            found.append((m, "pole", 0.7))
    return found


def _merge(found: list[tuple[np.ndarray, str, float]]) -> list[tuple[np.ndarray, str, float]]:
    """One object found by two cues is one holdout: masks that mostly overlap merge,
    keeping the more specific class (a person over an object)."""
    rank = {"person": 0, "vehicle": 1, "pole": 2, "object": 3, "wire": 4}
    out: list[list] = []
    for m, kind, conf in sorted(found, key=lambda t: rank.get(t[1], 9)):
        for o in out:
            inter = (o[0] & m).sum()
            if inter > 0.5 * min(o[0].sum(), m.sum()):
                o[0] = o[0] | m
                o[2] = max(o[2], conf)
                break
        else:
            out.append([m, kind, conf])
    return [tuple(o) for o in out]


def soft_alpha(bgr: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """A binary cut made soft where the plate says the edge is soft: a guided filter of
    the mask with the plate as guide (He et al.) follows colour edges, so hair and wires
    get partial alpha and a hard edge stays hard."""
    m = mask.astype(np.float32)
    try:
        # eps in the guide's squared 8-bit units: edges weaker than ~3 % of full scale blur.
        a = cv2.ximgproc.guidedFilter(bgr, m, radius, (0.03 * 255) ** 2)
    except AttributeError:          # plain OpenCV without the contrib modules
        a = cv2.GaussianBlur(m, (0, 0), radius / 2.0)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def find_holdouts(srgb: np.ndarray, building: np.ndarray, seed: int = 0) -> HoldoutSet:
    """Every foreground object in front of the building, as soft mattes at plate size."""
    H, W = building.shape
    s = min(1.0, WORK_PX / max(H, W))
    size = (max(16, int(round(W * s))), max(16, int(round(H * s))))
    bgr = cv2.cvtColor(cv2.resize(srgb, size, interpolation=cv2.INTER_AREA) if s < 1 else srgb, cv2.COLOR_RGB2BGR)
    b = cv2.resize(building.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    h, w = b.shape
    rows = np.nonzero(b.any(axis=1))[0]
    base = float(rows.max() + 1) if rows.size else float(h)
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = _people(bgr, base, seed) + _street_objects(bgr, lab, base, seed) + _poles(bgr, gray, base, seed)
    objects = []
    full_bgr = cv2.cvtColor(srgb, cv2.COLOR_RGB2BGR)
    radius = max(2, int(round(2.0 / s)))
    for k, (m, kind, conf) in enumerate(_merge(found)):
        big = cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR) > 0.5
        ys, xs = np.nonzero(big)
        if ys.size == 0:
            continue
        pad = 2 * radius + 2
        x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
        x1, y1 = min(W, xs.max() + 1 + pad), min(H, ys.max() + 1 + pad)
        alpha = soft_alpha(full_bgr[y0:y1, x0:x1], big[y0:y1, x0:x1], radius)
        bottom = float(ys.max() + 1)
        contact = None if bottom >= H - 1 else bottom
        objects.append(Holdout(len(objects) + 1, kind, (int(x0), int(y0), int(x1), int(y1)), contact,
                               float(ys.max() - ys.min() + 1), conf, alpha))
    return HoldoutSet(objects, (H, W))


def add_user_holdouts(hs: HoldoutSet, mask: np.ndarray) -> None:
    """The artist's mask, used as given (no blur: it would eat into what it covers):
    each connected part is one object, with its own ground contact for its depth."""
    H, W = hs.shape
    m = (mask > 0.5).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    for i in range(1, n):
        x, y, ww, hh, a = stats[i]
        alpha = np.where(lab[y:y + hh, x:x + ww] == i, np.clip(mask[y:y + hh, x:x + ww], 0, 1), 0).astype(np.float32)
        bottom = float(y + hh)
        hs.objects.append(Holdout(len(hs.objects) + 1, "user", (int(x), int(y), int(x + ww), int(y + hh)),
                                  None if bottom >= H - 1 else bottom, float(hh), 1.0, alpha))


FRONT_MARGIN_M = 2.0      # an object whose contact is unseen: this far in front of the facade


def contact_depth(row: float, f_px: float, cy: float, eye_m: float) -> float | None:
    """View depth of a point on the ground plane seen at image row `row` by a level
    pinhole camera eye_m above the ground (horizon at cy): z = f * eye / (row - cy)."""
    if row <= cy + 0.5:
        return None
    return f_px * eye_m / (row - cy)


def assign_depths(hs: HoldoutSet, f_px: float, cy: float, eye_m: float, facade_m: float) -> list[Holdout]:
    """Each holdout's depth from where it meets the ground; returns the automatic ones
    dropped because their contact is not in front of the building.

    An automatic detection whose ground contact reads as at or behind the facade (a
    figure on a balcony, an ornament) does not stand in front: it is dropped. A contact
    cut by the frame's bottom edge is nearer than the bottom row's ground. The artist's
    own holdouts are never dropped: theirs falls back to the facade's depth less a
    margin. Each says which it was (depth_source)."""
    near_facade = max(0.5, facade_m - FRONT_MARGIN_M)
    bottom = contact_depth(float(hs.shape[0]), f_px, cy, eye_m)
    kept, dropped = [], []
    for o in hs.objects:
        if o.contact_row is None:
            o.depth_m = near_facade if bottom is None else min(bottom, near_facade)
            o.depth_source = "contact below the frame: the bottom row's ground depth"
        else:
            z = contact_depth(o.contact_row, f_px, cy, eye_m)
            if z is not None and z < facade_m:
                o.depth_m, o.depth_source = float(z), "ground contact"
            elif o.kind != "user":
                dropped.append(o)
                continue
            else:
                o.depth_m = near_facade
                o.depth_source = f"contact not in front of the facade: {FRONT_MARGIN_M:g} m in front of it"
        kept.append(o)
    hs.objects = kept
    return dropped
