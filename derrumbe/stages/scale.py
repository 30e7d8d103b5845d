"""How big the building is: metres per pixel on the facade, from every cue the plate offers.

Scale is the first thing an eye reads in a collapse: a building estimated twice too tall
falls sqrt(2) too slowly and reads as a miniature's opposite, a giant. Each cue gives
metres per pixel with an uncertainty, and they are combined in log space (independent
estimates, inverse-variance weights), so the answer says which cue carried it and how
sure it is:

- storey period: the facade repeats every storey (sills, lintels, window rows). The
  period is the lag of the row profiles' autocorrelation whose multiples also repeat (a
  comb test): half the true period (window tops and bottoms) fails at 3/2 of it, twice
  the period scores no better than the period itself. Floor-to-floor heights of street
  buildings: 2.9-3.2 m in post-war blocks, 3.6-4.5 m in 19th-century ones.
- window height: the dark bands of the window rows; 1.5 m (post-war) to 2.4 m (old).
- people and cars the holdouts stage found standing near the facade (1.7 m, 1.5 m).
- a given height (--height-m) overrides all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# Priors: (metres, 1-sigma in log) for what a pixel size is read against.
STOREY_PRIOR = (3.5, 0.14)
WINDOW_PRIOR = (1.9, 0.18)
BAY_PRIOR = (3.3, 0.15)     # window axis to window axis along the street
PERSON_PRIOR = (1.7, 0.07)
CAR_PRIOR = (1.5, 0.09)
GROUND_FLOOR_M = 4.2
MIN_PERIODS = 1.8           # the profile must show the period this many times


@dataclass
class Cue:
    name: str
    m_per_px: float
    sigma: float              # 1-sigma in log(m_per_px)
    detail: str


@dataclass
class Scale:
    m_per_px: float
    sigma: float                      # 1-sigma in log
    height_m: float                   # the matte's height (base row to top row) in metres
    storeys: float                    # storeys of the visible part (the ground floor counted once)
    storey_m: float
    source: str
    cues: list = field(default_factory=list)

    @property
    def height_range(self) -> tuple[float, float]:
        return self.height_m * np.exp(-self.sigma), self.height_m * np.exp(self.sigma)

    def describe(self) -> str:
        lo, hi = self.height_range
        return (f"{self.height_m:.1f} m ({lo:.1f}-{hi:.1f}), {self.storeys:.1f} storeys of {self.storey_m:.1f} m; "
                f"from {self.source}")


def facade_profiles(srgb: np.ndarray, building: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Row profiles of the facade inside the matte: darkness and horizontal-edge energy
    (both detrended), with the matte's top and bottom rows."""
    m = building > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    top, bot = int(ys.min()), int(ys.max())
    gray = cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # Only the central columns of each row: the building's sides are often sky or neighbours.
    cols = m[top:bot + 1].sum(axis=1)
    dark = -(gray * m)[top:bot + 1].sum(axis=1) / np.maximum(cols, 1)
    gy = np.abs(cv2.Sobel(cv2.GaussianBlur(gray, (0, 0), 1.0), cv2.CV_32F, 0, 1, ksize=3))
    edge = (gy * m)[top:bot + 1].sum(axis=1) / np.maximum(cols, 1)
    h = bot - top + 1
    out = []
    for p in (dark, edge):
        p = cv2.GaussianBlur(p[:, None].astype(np.float32), (0, 0), max(1.0, h / 150)).ravel()
        p = p - cv2.GaussianBlur(p[:, None], (0, 0), max(3.0, h / 5)).ravel()
        out.append(p)
    return out[0], out[1], top, bot


def _autocorr(p: np.ndarray) -> np.ndarray:
    p = (p - p.mean()) * np.hanning(len(p))
    n = 1 << int(np.ceil(np.log2(2 * len(p))))
    f = np.fft.rfft(p, n)
    ac = np.fft.irfft(f * np.conj(f), n)[:len(p)]
    return ac / max(ac[0], 1e-9)


def bay_profile(srgb: np.ndarray, building: np.ndarray) -> np.ndarray:
    """Column profile of the facade's vertical edges (window jambs, pilasters) over its
    upper part, where the bays repeat most regularly (shop fronts below vary)."""
    m = building > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    top, bot = int(ys.min()), int(ys.max())
    band = slice(top, top + max(8, int(0.7 * (bot - top + 1))))
    gray = cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = np.abs(cv2.Sobel(cv2.GaussianBlur(gray, (0, 0), 1.0), cv2.CV_32F, 1, 0, ksize=3))
    mm = m[band]
    rows = mm.sum(axis=0)
    prof = (gx[band] * mm).sum(axis=0) / np.maximum(rows, 1)
    xs = np.nonzero(rows > 0.5 * rows.max())[0]
    prof = prof[xs.min():xs.max() + 1]
    w = len(prof)
    prof = cv2.GaussianBlur(prof[:, None].astype(np.float32), (0, 0), max(1.0, w / 300)).ravel()
    return prof - cv2.GaussianBlur(prof[:, None], (0, 0), max(3.0, w / 5)).ravel()


def bay_period(prof: np.ndarray) -> tuple[float | None, float]:
    return comb_period([prof], max_reps=40)


def storey_period(dark: np.ndarray, edge: np.ndarray) -> tuple[float | None, float]:
    """The facade's vertical period in pixels and its comb score (0..1), or None."""
    return comb_period([dark, edge], max_reps=14)


def comb_period(profiles: list, max_reps: int) -> tuple[float | None, float]:
    """The period of a profile whose multiples repeat too (see the module's note)."""
    h = len(profiles[0])
    ac = np.mean([_autocorr(p) for p in profiles], axis=0)
    lo, hi = max(8, int(h / max_reps)), int(h / MIN_PERIODS)
    if hi <= lo + 2:
        return None, 0.0
    peaks = [i for i in range(lo, hi) if ac[i] >= ac[i - 1] and ac[i] >= ac[i + 1] and ac[i] > 0.05]
    best, best_score = None, 0.0
    for p in peaks:
        mult = [k * p for k in (1, 2, 3) if k * p < 0.8 * h]
        # The windowed autocorrelation falls with lag; compare against that fall.
        score = float(np.mean([ac[int(round(m))] / (1 - m / h) for m in mult]))
        half = ac[int(round(1.5 * p))] / (1 - 1.5 * p / h) if 1.5 * p < 0.8 * h else 0.0
        score -= 0.5 * max(0.0, half)
        # Prefer the shorter of two periods that score alike: the longer is a multiple.
        if best is None or score > best_score * 1.1:
            best, best_score = float(p), score
    if best is None or best_score < 0.12:
        return None, best_score
    # Sub-pixel peak.
    i = int(best)
    if 1 <= i < len(ac) - 1:
        a, b, c = ac[i - 1], ac[i], ac[i + 1]
        d = a - 2 * b + c
        if d < 0:
            best = i + 0.5 * (a - c) / d
    return best, best_score


def detect_windows(srgb: np.ndarray, building: np.ndarray) -> np.ndarray:
    """Window openings: blobs that differ from the facade's own colour, filled and
    rectangular, of one common size (shop fronts, signs and doors are the odd ones out).
    Returns boxes (k, 4) as x0, y0, x1, y1."""
    m = building > 0.5
    ys, xs = np.nonzero(m)
    h_px, w_px = np.ptp(ys) + 1, np.ptp(xs) + 1
    lab = cv2.cvtColor(cv2.GaussianBlur(srgb, (0, 0), 1.2), cv2.COLOR_RGB2LAB).astype(np.float32)
    base = np.median(lab[m], axis=0)
    # Openings are darker than the wall or of another colour (glass, frames, curtains).
    diff = np.maximum(base[0] - lab[..., 0], 0) + 0.6 * np.linalg.norm(lab[..., 1:] - base[1:], axis=-1)
    vals = diff[m]
    thr = max(12.0, float(np.percentile(vals, 60)) + 0.5 * float(np.std(vals)))
    on = ((diff > thr) & m).astype(np.uint8)
    k = max(1, int(round(min(h_px, w_px) / 200)))
    on = cv2.morphologyEx(on, cv2.MORPH_CLOSE, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    on = cv2.morphologyEx(on, cv2.MORPH_OPEN, np.ones((k + 1, k + 1), np.uint8))
    n, lab_, stats, _ = cv2.connectedComponentsWithStats(on)
    area_box = float(h_px * w_px)
    boxes = []
    for i in range(1, n):
        x, y, ww, hh, a = stats[i]
        if not (area_box / 3000 < ww * hh < area_box / 12):
            continue
        if a < 0.45 * ww * hh or not (0.7 < hh / ww < 3.2):
            continue
        boxes.append((x, y, x + ww, y + hh))
    boxes = np.array(boxes, float).reshape(-1, 4)
    if len(boxes) < 2:
        return boxes
    # The common size: windows of a facade are alike; keep those near the median.
    hh = boxes[:, 3] - boxes[:, 1]
    ww = boxes[:, 2] - boxes[:, 0]
    med_h, med_w = np.median(hh), np.median(ww)
    keep = (np.abs(np.log(hh / med_h)) < 0.35) & (np.abs(np.log(ww / med_w)) < 0.45)
    return boxes[keep]


def window_rows(boxes: np.ndarray) -> np.ndarray:
    """The rows' centres (sorted), grouping windows whose centres lie within half a window."""
    if not len(boxes):
        return np.zeros(0)
    cy = np.sort(0.5 * (boxes[:, 1] + boxes[:, 3]))
    tol = 0.5 * np.median(boxes[:, 3] - boxes[:, 1])
    rows, cur = [], [cy[0]]
    for y in cy[1:]:
        if y - cur[-1] > tol:
            rows.append(np.mean(cur))
            cur = []
        cur.append(y)
    rows.append(np.mean(cur))
    return np.array(rows)


def estimate_scale(srgb: np.ndarray, building: np.ndarray, people: list | None = None,
                   height_m: float | None = None) -> Scale:
    """`people`: (kind, pixel height) of objects standing near the facade ("person", "car")."""
    dark, edge, top, bot = facade_profiles(srgb, building)
    h_px = bot - top + 1
    cues: list[Cue] = []
    period, score = storey_period(dark, edge)
    if period is not None:
        s, sig = STOREY_PRIOR
        # A weak comb is less sure of itself.
        cues.append(Cue("storey period", s / period, float(np.hypot(sig, 0.25 * (1 - min(score, 1)))),
                        f"{period:.0f} px a storey (comb {score:.2f}) at {s} m"))
    boxes = detect_windows(srgb, building)
    if len(boxes) >= 3:
        win = float(np.median(boxes[:, 3] - boxes[:, 1]))
        w, sig = WINDOW_PRIOR
        cues.append(Cue("window height", w / win, sig, f"{len(boxes)} windows {win:.0f} px tall at {w} m"))
        rows = window_rows(boxes)
        if len(rows) >= 2:
            gap = float(np.median(np.diff(rows)))
            s_, sig_ = STOREY_PRIOR
            cues.append(Cue("window rows", s_ / gap, sig_, f"{len(rows)} rows {gap:.0f} px apart at {s_} m"))
    bay, bay_score = bay_period(bay_profile(srgb, building))
    if bay is not None:
        b_, sig_ = BAY_PRIOR
        cues.append(Cue("window bays", b_ / bay, float(np.hypot(sig_, 0.25 * (1 - min(bay_score, 1)))),
                        f"{bay:.0f} px a bay (comb {bay_score:.2f}) at {b_} m"))
    for kind, px in people or []:
        size, sig = PERSON_PRIOR if kind == "person" else CAR_PRIOR
        if px > 8:
            cues.append(Cue(kind, size / px, sig, f"a {kind} {px:.0f} px tall at {size} m"))
    if height_m is not None:
        m = height_m / h_px
        cues = [Cue("given height", m, 0.0, f"--height-m {height_m:g}")]
    if not cues:
        # Nothing repeats and nothing stands in front: an ordinary four-storey street building.
        cues.append(Cue("assumed 4 storeys", (GROUND_FLOOR_M + 3 * STOREY_PRIOR[0]) / h_px, 0.35,
                        "no window rows, people or cars found"))
    m_px, sigma, source = _combine(cues)
    height = m_px * h_px
    storey = STOREY_PRIOR[0] if period is None else m_px * period
    storeys = 1 + max(0.0, height - GROUND_FLOOR_M) / storey
    return Scale(m_px, sigma, height, storeys, storey, source, cues)


def _combine(cues: list[Cue]) -> tuple[float, float, str]:
    exact = [c for c in cues if c.sigma == 0.0]
    if exact:
        return exact[0].m_per_px, 0.0, exact[0].name
    w = np.array([1 / c.sigma ** 2 for c in cues])
    logm = np.array([np.log(c.m_per_px) for c in cues])
    mean = float((w * logm).sum() / w.sum())
    best = cues[int(np.argmax(w))]
    names = best.name if len(cues) == 1 else f"{best.name} ({', '.join(c.name for c in cues if c is not best)} agreeing)"
    return float(np.exp(mean)), float(1 / np.sqrt(w.sum())), names
