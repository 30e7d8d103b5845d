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

from derrumbe.stages import pedestrian_net

VERSION = 2              # bump when detection changes: the matte stage's cache key holds it
WORK_PX = 800            # long side of the analysis; GrabCut's and HOG's cost grow with pixels
CUT_PX = 50_000          # an object's own GrabCut runs at full size up to this many pixels (its
                         # soft edge is then refined at full size by the guided filter)
NET_MIN_SCORE = 0.5      # the pedestrian network's score a person must reach
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

def base_tolerance(height: int) -> float:
    """How far above the facade's base line a ground contact may lie and still be on the
    pavement in front of it: the matte's bottom edge is uncertain by about a hundredth of
    the frame."""
    return max(2.0, 0.01 * height)


def in_front(hs: HoldoutSet, building: np.ndarray) -> np.ndarray:
    """The matte of the holdouts that stand in front of the building, by the rule
    `assign_depths` applies once the camera is known (its base line is the matte's bottom
    row): every artist's holdout, every object cut by the frame's bottom, every object
    whose ground contact is on or below the base line. A figure in a window is not."""
    rows = np.nonzero((building > 0.5).any(axis=1))[0]
    base = float(rows.max() + 1) if rows.size else float(building.shape[0])
    tol = base_tolerance(building.shape[0])
    front = HoldoutSet([o for o in hs.objects if o.kind == "user" or o.contact_row is None
                        or o.contact_row >= base - tol], hs.shape)
    return front.matte()


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


def _cut(full_bgr: np.ndarray, rect, cores, seed: int, prob_bg=None) -> Found | None:
    """GrabCut of one object in its own crop of the plate (at full size, or shrunk to
    CUT_PX pixels): `rect` (x0, y0, x1, y1) is probably the object, a margin of a quarter of
    it around is certain background, `cores` (rectangles) are certainly the object. The
    part connected to the cores, holes filled."""
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
    m = _fill(_largest((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), seeds))
    if s < 1:
        m = cv2.resize(m.astype(np.uint8), (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR) > 0
    return Found(cx0, cy0, m, "", 0.0) if m.any() else None


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
    return _nms(boxes, 0.4)


def _hog_people(full_bgr: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """OpenCV's HOG people boxes, shrunk from the detector's padded window to the figure."""
    H, W = full_bgr.shape[:2]
    s = min(1.0, WORK_PX / max(H, W))
    small = cv2.resize(full_bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else full_bgr
    out = []
    for b, sc in find_people(small):
        x0, y0, x1, y1 = b / s
        bw, bh = x1 - x0, y1 - y0
        out.append((np.array([x0 + 0.12 * bw, y0 + 0.05 * bh, x1 - 0.12 * bw, y1 - 0.1 * bh], np.float32), sc))
    return out


def _people(full_bgr: np.ndarray, base: float, seed: int) -> list[Found]:
    """People whose feet stand on the street (at or below the facade's base line, less a
    tolerance: a passer-by against the wall stands on it; a figure in a shop window or on
    a balcony does not), cut out by GrabCut seeded with the figure's centre line."""
    H, W = full_bgr.shape[:2]
    net = pedestrian_net.available()
    found = []
    for box, score in (_net_people(full_bgr, base) if net else _hog_people(full_bgr)):
        x0, y0, x1, y1 = [float(v) for v in box]
        bh, bw = y1 - y0, x1 - x0
        if bh < 0.03 * H or y1 < base - 0.08 * bh or bh < 1.3 * bw:
            continue
        # The centre line from the head to the feet is the figure for sure (the legs too,
        # which GrabCut alone loses against a dark shop front).
        core = (x0 + 0.42 * bw, y0 + 0.08 * bh, x1 - 0.42 * bw, y1 - 0.04 * bh)
        cut = _cut(full_bgr, (x0 - 0.05 * bw, y0, x1 + 0.05 * bw, min(H, y1 + 0.02 * bh)), [core], seed)
        if cut is not None and _figure_like(cut.mask, bh * bw, strict=not net):
            found.append(Found(cut.x, cut.y, cut.mask, "person", float(score if net else min(1.0, 0.5 + score / 4))))
    return found


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


def _wheels(full_bgr: np.ndarray, base: float) -> list[tuple[float, float, float, float, bool]]:
    """Tyres on the street: circles (OpenCV's gradient Hough transform) whose ring is
    dark (rubber, the darkest thing at a car's foot) and whose bottom meets the ground at
    or below the facade's base line. (x, y, tyre radius, darkness, street seen below it)
    in plate pixels."""
    H, W = full_bgr.shape[:2]
    y0, y1 = int(max(0, base - 0.15 * H)), int(min(H, base + 0.12 * H))
    if y1 - y0 < 16:
        return []
    g = cv2.cvtColor(full_bgr[y0:y1], cv2.COLOR_BGR2GRAY)
    rmin, rmax = max(4, int(0.01 * H)), max(6, int(0.045 * H))
    c = cv2.HoughCircles(cv2.GaussianBlur(g, (0, 0), 1.2), cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=rmin,
                         param1=60, param2=0.3, minRadius=rmin, maxRadius=rmax)
    if c is None:
        return []
    gf = g.astype(np.float32)
    street = float(np.median(gf[int(np.clip(base - y0, 0, len(gf) - 1)):]))
    out = []
    for x, y, r in c[0]:
        R = int(r + 2)
        xa, xb, ya, yb = int(max(0, x - R)), int(min(W, x + R + 1)), int(max(0, y - R)), int(min(len(gf), y + R + 1))
        yy, xx = np.mgrid[ya:yb, xa:xb]
        d = np.hypot(xx - x, yy - y) / r
        ring = gf[ya:yb, xa:xb][(d > 0.62) & (d < 0.95)]
        if ring.size < 8:
            continue
        dark = float(np.median(ring))
        bottom = y + y0 + r
        # The street below a tyre, past the contact shadow, is lighter than the rubber (a
        # car reflected in a shop window stands on the window's dark frame).
        ground = gf[int(y + 1.15 * r):int(y + 1.9 * r) + 1, int(max(0, x - 0.5 * r)):int(x + 0.5 * r) + 1]
        lighter = ground.size > 4 and float(np.median(ground)) > dark + 25
        if dark < min(70.0, 0.55 * street) and base - 0.03 * H <= bottom <= base + 0.12 * H:
            out.append((float(x), float(y + y0), float(r), street - dark, lighter))
    return out


def _vehicles(full_bgr: np.ndarray, base: float, seed: int) -> list[Found]:
    """Cars seen from the side: two tyres of one size on one ground line a wheelbase apart
    (5.5 to 10 tyre radii), the body grown from them by GrabCut. A pair is a car only when
    the cut is car-shaped: about 1.3 to 2.3 wheelbases long, 0.35 to 0.9 of one high,
    standing on the tyres, holding both."""
    wheels = sorted(_wheels(full_bgr, base), key=lambda t: t[0])
    pairs = []
    for i, (xa, ya, ra, sa, ga) in enumerate(wheels):
        for xb, yb, rb, sb, gb in wheels[i + 1:]:
            r, d = (ra + rb) / 2, xb - xa
            if abs(ra - rb) < 0.3 * r and abs((ya + ra) - (yb + rb)) < 0.7 * r and 5.5 * r <= d <= 10 * r \
                    and (ga or gb):
                pairs.append((sa + sb, xa, xb, max(ya + ra, yb + rb), r))
    found, taken = [], []
    for score, xa, xb, bottom, r in sorted(pairs, reverse=True)[:4]:
        if any(xa < t1 and xb > t0 for t0, t1 in taken):
            continue
        d = xb - xa
        rect = (xa - 0.6 * d, bottom - 0.8 * d, xb + 0.6 * d, bottom + 0.1 * r)
        tyres = [(x - 0.5 * r, bottom - 1.5 * r, x + 0.5 * r, bottom - 0.5 * r) for x in (xa, xb)]
        sill = (xa + 1.2 * r, bottom - 2.6 * r, xb - 1.2 * r, bottom - 1.6 * r)
        cut = _cut(full_bgr, rect, tyres + [sill], seed)
        if cut is None:
            continue
        ys, xs = np.nonzero(cut.mask)
        length, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        foot = cut.y + ys.max() + 1
        fill = ys.size / float(length * height)
        if 1.3 * d <= length <= 2.3 * d and 0.35 * d <= height <= 0.9 * d and abs(foot - bottom) < 0.6 * r \
                and fill > 0.55:
            found.append(Found(cut.x, cut.y, cut.mask, "vehicle", float(min(1.0, score / 200.0))))
            taken.append((cut.x + xs.min(), cut.x + xs.max()))
    return found


def _street_objects(bgr: np.ndarray, lab: np.ndarray, base: float, seed: int) -> list[tuple[np.ndarray, str, float]]:
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
        g = _grabcut(bgr, rect, core, None, seed)
        g = _fill(_largest(g, core))
        if g.sum() < 0.75 * core.sum() or g.sum() > 0.3 * h * w:
            continue
        ys, xs = np.nonzero(g)
        bw_, bh_ = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        fill = ys.size / float(bw_ * bh_)
        if fill > 0.9 or (not at_bottom and bw_ > 1.6 * ww):
            continue
        kind = "vehicle" if bw_ > 1.3 * bh_ and bw_ > 0.08 * w else "object"
        found.append((g, kind, float(min(1.0, score[blob].mean() / 5))))
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
    A pole leans and tapers; a GrabCut of its box leaks into what it touches."""
    h, w = bgr.shape[:2]
    img = bgr.astype(np.float32)
    near = np.linalg.norm(img - colour, axis=2) < 40
    mask = np.zeros((h, w), bool)
    width = float(max(2, xr - xl))
    rows = 0
    for step in (-1, 1):
        c, wd, gap = (xl + xr) / 2.0, width, 0
        y = y_seed if step < 0 else y_seed + 1
        while 0 <= y < h and gap <= 0.08 * h:
            a, b = int(max(0, c - wd - 3)), int(min(w, c + wd + 4))
            run = _run_at(near[y, a:b], c - a)
            if run is not None and run[1] - run[0] >= max(2, 0.4 * wd):
                r0, r1 = run[0] + a, run[1] + a
                if r1 - r0 > 1.6 * wd:          # something touching it: keep the pole's width
                    cc = (r0 + r1) / 2.0 if abs((r0 + r1) / 2.0 - c) < 0.5 * wd else c
                    r0, r1 = cc - 0.6 * wd, cc + 0.6 * wd
                mask[y, int(max(0, r0)):int(np.ceil(r1))] = True
                c = 0.7 * c + 0.3 * (r0 + r1) / 2.0
                wd = 0.9 * wd + 0.1 * (r1 - r0)
                gap, rows = 0, rows + 1
            else:
                gap += 1
            y += step
    if rows < 0.25 * h:
        return None
    # Short gaps bridged: the pole is one piece.
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((int(0.08 * h) | 1, 1), np.uint8)) > 0


def _from_small(m: np.ndarray, kind: str, conf: float, shape: tuple[int, int]) -> Found | None:
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


def _overlap(a: Found, b: Found) -> int:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    return int((a.mask[y0 - a.y:y1 - a.y, x0 - a.x:x1 - a.x] & b.mask[y0 - b.y:y1 - b.y, x0 - b.x:x1 - b.x]).sum())


def _union(a: Found, b: Found) -> Found:
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1, y1 = max(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    m = np.zeros((y1 - y0, x1 - x0), bool)
    for f in (a, b):
        m[f.y - y0:f.box[3] - y0, f.x - x0:f.box[2] - x0] |= f.mask
    return Found(x0, y0, m, a.kind, max(a.conf, b.conf))


def _merge(found: list[Found]) -> list[Found]:
    """One object found by two cues is one holdout: masks that mostly overlap merge,
    keeping the more specific class (a person over an object)."""
    rank = {"person": 0, "vehicle": 1, "pole": 2, "object": 3, "wire": 4}
    out: list[Found] = []
    for f in sorted(found, key=lambda t: rank.get(t.kind, 9)):
        for i, o in enumerate(out):
            if _overlap(o, f) > 0.5 * min(o.mask.sum(), f.mask.sum()):
                out[i] = _union(o, f)
                break
        else:
            out.append(f)
    return out


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
    full_bgr = cv2.cvtColor(srgb, cv2.COLOR_RGB2BGR)
    bgr = cv2.resize(full_bgr, size, interpolation=cv2.INTER_AREA) if s < 1 else full_bgr
    b = cv2.resize(building.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    rows = np.nonzero(b.any(axis=1))[0]
    base = float(rows.max() + 1) if rows.size else float(b.shape[0])
    base_full = base * H / b.shape[0]
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    small = _street_objects(bgr, lab, base, seed) + _poles(bgr, gray, base, seed)
    found = _people(full_bgr, base_full, seed) + _vehicles(full_bgr, base_full, seed) + [f for f in (_from_small(m, k, c, (H, W)) for m, k, c in small) if f]
    objects = []
    radius = max(2, int(round(2.0 / s)))
    for f in _merge(found):
        ys, xs = np.nonzero(f.mask)
        pad = 2 * radius + 2
        x0, y0 = max(0, f.x + xs.min() - pad), max(0, f.y + ys.min() - pad)
        x1, y1 = min(W, f.x + xs.max() + 1 + pad), min(H, f.y + ys.max() + 1 + pad)
        big = np.zeros((y1 - y0, x1 - x0), bool)
        fx0, fy0 = max(f.x, x0), max(f.y, y0)
        fx1, fy1 = min(f.box[2], x1), min(f.box[3], y1)
        big[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] = f.mask[fy0 - f.y:fy1 - f.y, fx0 - f.x:fx1 - f.x]
        alpha = soft_alpha(full_bgr[y0:y1, x0:x1], big, radius)
        bottom = float(f.y + ys.max() + 1)
        contact = None if bottom >= H - 1 else bottom
        objects.append(Holdout(len(objects) + 1, f.kind, (int(x0), int(y0), int(x1), int(y1)), contact,
                               float(ys.max() - ys.min() + 1), f.conf, alpha))
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


# How far back from its near face each kind of object stands (a car's width parked along
# the street, a person's body); the rest (a pole, a bin) as a post.
OBSTACLE_DEPTH_M = {"vehicle": 1.8, "person": 0.45}
OBSTACLE_OTHER_M = 0.3
OBSTACLE_KINDS = ("vehicle", "person", "user", "object", "pole")
CUT_ON_M = 3.0            # an object cut by the frame's side runs on this far past it


def obstacles(objects, cam, facade_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The world-space boxes (lo, hi corners; x right, y up, z toward the camera) of the
    holdouts that stand on the ground in front of the building, for the simulation:
    debris hits a parked car instead of passing through it to land between it and the
    lens. Each is its silhouette's box at its depth, as tall as its top row there, as
    deep as its kind; one cut by the frame's edge runs on past it; never into the
    facade."""
    out = []
    for o in objects:
        if o.depth_m is None or o.kind not in OBSTACLE_KINDS:
            continue
        z = float(o.depth_m)
        deep = min(OBSTACLE_DEPTH_M.get(o.kind, OBSTACLE_OTHER_M), facade_m - 0.3 - z)
        if deep <= 0.05:
            continue
        x0, y0, x1, _ = o.bbox
        left = (x0 - cam.cx) * z / cam.f_px - (CUT_ON_M if x0 <= 0 else 0.0)
        right = (x1 - cam.cx) * z / cam.f_px + (CUT_ON_M if x1 >= cam.width else 0.0)
        top = cam.eye_m - (y0 - cam.cy) * z / cam.f_px
        if top <= 0.05:
            continue
        out.append((np.array([left, 0.0, -z - deep]), np.array([right, top, -z])))
    return out


def assign_depths(hs: HoldoutSet, f_px: float, cy: float, eye_m: float, facade_m: float) -> list[Holdout]:
    """Each holdout's depth from where it meets the ground; returns the automatic ones
    dropped because their contact is not in front of the building.

    An automatic detection whose ground contact lies above the facade's base line (a
    figure on a balcony or in a shop window, an ornament) does not stand in front: it is
    dropped. One whose contact is on the base line, within the line's own uncertainty (a
    hundredth of the frame: the matte's bottom edge), stands on the pavement against the
    wall: it goes just in front of the facade. A contact cut by the frame's bottom edge is
    nearer than the bottom row's ground. The artist's own holdouts are never dropped: theirs
    falls back to the facade's depth less a margin. Each says which it was (depth_source)."""
    near_facade = max(0.5, facade_m - FRONT_MARGIN_M)
    bottom = contact_depth(float(hs.shape[0]), f_px, cy, eye_m)
    base_row = cy + f_px * eye_m / facade_m
    tol = base_tolerance(hs.shape[0])
    kept, dropped = [], []
    for o in hs.objects:
        if o.contact_row is None:
            o.depth_m = near_facade if bottom is None else min(bottom, near_facade)
            o.depth_source = "contact below the frame: the bottom row's ground depth"
        else:
            z = contact_depth(o.contact_row, f_px, cy, eye_m)
            if z is not None and z < near_facade:
                o.depth_m, o.depth_source = float(z), "ground contact"
            elif o.kind != "user" and o.contact_row < base_row - tol:
                dropped.append(o)
                continue
            elif o.kind != "user":
                o.depth_m = near_facade
                o.depth_source = f"contact on the facade's base line: {FRONT_MARGIN_M:g} m in front of it"
            else:
                o.depth_m = near_facade
                o.depth_source = f"contact not in front of the facade: {FRONT_MARGIN_M:g} m in front of it"
        kept.append(o)
    hs.objects = kept
    return dropped
