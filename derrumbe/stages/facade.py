"""Reading a facade's rulers: its bays, window rows, storey period and doors, in pixels.

Everything is measured on the facade rectified by its keystone (see keystone.py), so a
pixel here is a pixel of the plate's base row wherever it lies, and at a working size
(the facade about WORK_PX tall) that keeps the whole analysis well under a second.

The facade is a lattice: bays repeat along the street, storeys repeat up it. Nothing here
segments windows by colour alone (glass reflects the sky, frames split it into panes,
curtains and signs fool thresholds). Instead:

- the bay period is the lag at which the rows' intensity repeats (their autocorrelation,
  summed over the facade), checked against its harmonics;
- folding the facade at that period (averaging all bays into one) gives where in a bay
  the window sits; comparing those columns with the piers, row by row, gives a profile
  that is high across window rows and low across the wall between them. Its bands are
  the window rows (their height is a ruler), and its period is the storey's;
- doors are tall openings that stand on the base row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from derrumbe.stages.keystone import Keystone, estimate_keystone, rectify, vertical_segments

WORK_PX = 600            # the rectified facade's height at which it is analysed
MIN_REPEATS = 1.8        # a period must show at least this many times along its profile
MIN_BAYS = 2.8           # a row of windows shows its rhythm in three of them, not two
PHASE_BINS = 32
MIN_ROW_CONTRAST = 1.5   # OpenCV 8-bit L (0-255): rows that vary less than this along the facade are plain wall
MIN_BELOW = 0.05         # the facade must go on this far below the matte (of its height) to count
FOOT_SEARCH = (0.08, 0.05)   # facade_foot: verticals' lower ends this far above and below the matte's bottom
FOOT_MIN_LEN = 0.15          # ...of at least this share of its height (at 0.12 a leg's 69 px, ending
                             # above the feet, counted on the demo)


@dataclass
class Period:
    px: float            # base-row pixels
    score: float         # 0..1: how well its multiples repeat too (comb test)


@dataclass
class WindowRows:
    bay: Period
    width_px: float                      # window width in base-row pixels (from the folded bay)
    bands: list                          # (top, bottom) of each complete window row, base-row pixels from the facade top
    cut: list                            # bands cut by the facade's top or bottom edge
    contrast: float                      # window against pier, OpenCV 8-bit Lab distance
    profile: np.ndarray = field(repr=False, default=None)   # window-against-pier contrast per working row


@dataclass
class FacadeView:
    """The facade rectified and resampled for analysis."""
    lab: np.ndarray           # working image, CIELAB float32
    gray: np.ndarray          # float32
    mask: np.ndarray          # bool, the building (each row filled between its outer edges)
    s: float                  # working pixels per base-row pixel
    top: int                  # the facade's top and bottom working rows
    bot: int
    x0: int                   # columns where the building holds in most rows
    x1: int
    keystone: Keystone
    wall: np.ndarray          # the wall's Lab colour
    difference: np.ndarray | None = field(default=None, repr=False)   # from the wall's colour, cached

    @property
    def height_px(self) -> float:
        """Facade height in base-row pixels."""
        return (self.bot - self.top) / self.s


def _fill_rows(m: np.ndarray) -> np.ndarray:
    """Each row of the matte filled between its leftmost and rightmost pixel: holes in a
    matte are objects in front or facade GrabCut missed, and the facade goes on behind."""
    out = np.zeros_like(m)
    rows = np.nonzero(m.any(axis=1))[0]
    if not len(rows):
        return out
    first = np.argmax(m[rows], axis=1)
    last = m.shape[1] - 1 - np.argmax(m[rows, ::-1], axis=1)
    cols = np.arange(m.shape[1])
    out[rows] = (cols[None] >= first[:, None]) & (cols[None] <= last[:, None])
    return out


def wall_colour(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The facade's own colour: the median of its smooth pixels (wall, not openings)."""
    L = lab[..., 0]
    g = np.hypot(cv2.Sobel(L, cv2.CV_32F, 1, 0), cv2.Sobel(L, cv2.CV_32F, 0, 1))
    smooth = mask & (g < np.percentile(g[mask], 50))
    return np.median(lab[smooth if smooth.any() else mask], axis=0)


def facade_view(srgb: np.ndarray, building: np.ndarray, segments: np.ndarray | None = None,
                keystone: Keystone | None = None) -> FacadeView:
    """The facade rectified for its keystone (estimated here unless given), at the working
    size. `segments`: the plate's vertical segments where they are already found."""
    m = building > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    top = float(ys.min())
    k = keystone if keystone is not None else estimate_keystone(cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY), m, segments)
    img, _ = rectify(srgb, k, top)
    mr, _ = rectify(m.astype(np.uint8), k, top, cv2.INTER_NEAREST)
    rows = np.nonzero(mr.any(axis=1))[0]
    s = min(1.0, WORK_PX / max(1, rows.max() - rows.min() + 1))
    size = (max(8, round(img.shape[1] * s)), max(8, round(img.shape[0] * s)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    mr = cv2.resize(mr, size, interpolation=cv2.INTER_NEAREST) > 0
    mr = _fill_rows(mr)
    rows = np.nonzero(mr.any(axis=1))[0]
    t, b = int(rows.min()), int(rows.max()) + 1
    held = np.nonzero(mr[t:b].mean(axis=0) > 0.6)[0]
    if not len(held):
        held = np.nonzero(mr[t:b].any(axis=0))[0]
    lab = cv2.cvtColor(cv2.GaussianBlur(img, (0, 0), 1.0), cv2.COLOR_RGB2LAB).astype(np.float32)
    gray = lab[..., 0].copy()
    return FacadeView(lab, gray, mr, s, t, b, int(held.min()), int(held.max()) + 1, k, wall_colour(lab, mr))


# ---------------------------------------------------------------- periods

def autocorr(p: np.ndarray) -> np.ndarray:
    """Autocorrelation of a profile, Hann-windowed, divided by the window's own overlap
    so a lag does not score lower merely for being long."""
    n = len(p)
    win = np.hanning(n)
    q = (p - p.mean()) * win
    size = 1 << int(np.ceil(np.log2(2 * n)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(q, size)) ** 2, size)[:n]
    w = np.fft.irfft(np.abs(np.fft.rfft(win, size)) ** 2, size)[:n]
    return ac / max(ac[0], 1e-12) * (w[0] / np.maximum(w, 0.2 * w[0]))


def comb_periods(ac: np.ndarray, lo: float, hi: float) -> list[Period]:
    """Candidate periods of an autocorrelation, scored by a comb: a true period repeats
    at 2x and 3x too, and its half-period partner at 1.5x does not. A half period (window
    tops and bottoms) fails at its 1.5x (= 3/4 of the true period, a trough), a double
    period scores no better than the period itself and loses the tie to it."""
    n = len(ac)
    lo, hi = max(3, int(lo)), min(int(hi), n - 2)
    out = []
    for p in range(lo, hi):
        if not (ac[p] >= ac[p - 1] and ac[p] >= ac[p + 1] and ac[p] > 0.05):
            continue
        mult = [ac[int(round(k * p))] for k in (1, 2, 3) if k * p < 0.75 * n]
        half = ac[int(round(1.5 * p))] if 1.5 * p < 0.75 * n else 0.0
        score = float(np.mean(mult)) - 0.5 * max(0.0, float(half))
        out.append(Period(_subpixel(ac, p), score))
    # A multiple of a period that scores nearly as well is that period seen twice: the
    # shorter one goes first, the multiple keeps a lower score as an option.
    for c in out:
        for q in out:
            k = c.px / q.px
            if k > 1.5 and abs(k - round(k)) < 0.08 * round(k) and q.score >= 0.75 * c.score:
                c.score = min(c.score, 0.9 * q.score)
    out.sort(key=lambda c: -c.score)
    return out


def _subpixel(ac: np.ndarray, i: int) -> float:
    a, b, c = ac[i - 1], ac[i], ac[i + 1]
    d = a - 2 * b + c
    return float(i + 0.5 * (a - c) / d) if d < 0 else float(i)


def facade_rows(view: FacadeView) -> np.ndarray:
    """The facade's gray level, masked rows filled with the row's mean (so the matte's edge
    does not read as a period), working pixels."""
    g = view.gray[view.top:view.bot, view.x0:view.x1]
    mm = view.mask[view.top:view.bot, view.x0:view.x1]
    mean = (g * mm).sum(1) / np.maximum(mm.sum(1), 1)
    return np.where(mm, g, mean[:, None]).astype(np.float32)


def bay_periods(view: FacadeView) -> list[Period]:
    """Candidates for the bay (window axis to window axis along the street): the lag at
    which the rows repeat, their autocorrelations summed (rows through windows count most,
    plain wall rows hardly at all)."""
    g = facade_rows(view)
    n = g.shape[1]
    if n < 24:
        return []
    win = np.hanning(n)
    q = (g - g.mean(1, keepdims=True)) * win[None]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(q, size, axis=1)) ** 2, size, axis=1)[:, :n].sum(0)
    w = np.fft.irfft(np.abs(np.fft.rfft(win, size)) ** 2, size)[:n]
    ac = ac / max(ac[0], 1e-12) * (w[0] / np.maximum(w, 0.2 * w[0]))
    cands = comb_periods(ac, max(6, n / 40), n / MIN_REPEATS)
    return [Period(c.px / view.s, c.score) for c in cands]


# ---------------------------------------------------------------- window rows

def _difference(view: FacadeView) -> np.ndarray:
    """How far each facade pixel is from the wall's colour (Lab distance), working pixels."""
    if view.difference is None:
        lab = view.lab[view.top:view.bot, view.x0:view.x1] - view.wall
        view.difference = np.sqrt(np.einsum("...c,...c->...", lab, lab))
    return view.difference


def _runs(on: np.ndarray) -> list[list[int]]:
    edges = np.diff(np.r_[0, on.astype(np.int8), 0])
    return [[int(a), int(b)] for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0])]


def window_rows(view: FacadeView, bay: Period) -> WindowRows | None:
    """Window rows by folding the facade at its bay period (see the module's note)."""
    d = _difference(view)
    mm = view.mask[view.top:view.bot, view.x0:view.x1]
    h, n = d.shape
    p = bay.px * view.s
    if p < 6 or p > n / MIN_BAYS:
        return None
    # Where in a bay the window sits: the folded column profile of the upper facade
    # (shop fronts below keep their own rhythm).
    up = slice(0, max(4, int(0.75 * h)))
    col = (d[up] * mm[up]).sum(0) / np.maximum(mm[up].sum(0), 1)
    phase = (np.arange(n) % p) / p
    bins = np.minimum((phase * PHASE_BINS).astype(int), PHASE_BINS - 1)
    fold = np.bincount(bins, col, PHASE_BINS) / np.maximum(np.bincount(bins, None, PHASE_BINS), 1)
    fold = np.convolve(np.r_[fold[-1:], fold, fold[:1]], np.ones(3) / 3, "same")[1:-1]
    lo, hi = float(fold.min()), float(fold.max())
    on = fold > 0.5 * (lo + hi)
    if on.all() or not on.any():
        return None
    # The longest run of "window" phases, around the circle.
    start = int(np.argmin(on))          # a pier phase: unroll the circle from there
    runs = _runs(np.roll(on, -start))
    a, b = max(runs, key=lambda r: r[1] - r[0])
    frac = (b - a) / PHASE_BINS
    centre = ((a + b) / 2 + start) / PHASE_BINS % 1.0
    dist = np.abs((phase - centre + 0.5) % 1.0 - 0.5)
    win = dist < 0.35 * frac
    pier = dist > 0.5 * frac + 0.1 * (1 - frac)
    if win.sum() < 2 or pier.sum() < 2:
        return None
    inside = (d[:, win] * mm[:, win]).sum(1) / np.maximum(mm[:, win].sum(1), 1)
    outside = (d[:, pier] * mm[:, pier]).sum(1) / np.maximum(mm[:, pier].sum(1), 1)
    prof = cv2.GaussianBlur((inside - outside)[:, None].astype(np.float32), (0, 0), max(1.0, h / 200)).ravel()
    peak = float(np.percentile(prof, 97))
    if peak <= 0:
        return None
    # A window row is where the profile stands above half its own height (rows differ:
    # glass reflecting the sky stands out less than glass in shade), among runs above a
    # quarter of the facade's peak; a bright sash or a transom splits one window into two
    # runs a small gap apart. Surrounds (architraves, pediments, keystones) differ less
    # from the wall than the opening and stay out.
    bands = []
    for r in _runs(prof > 0.25 * peak):
        seg = prof[r[0]:r[1]]
        if seg.max() < 0.4 * peak:
            continue
        tall = np.nonzero(seg >= 0.5 * seg.max())[0]
        b = [r[0] + int(tall[0]), r[0] + int(tall[-1]) + 1]
        if bands and b[0] - bands[-1][1] < max(0.02 * h, 0.15 * (b[1] - bands[-1][0])):
            bands[-1][1] = b[1]
        else:
            bands.append(b)
    bands = [r for r in bands if r[1] - r[0] > 0.04 * h]
    edge = max(2, int(0.01 * h))
    whole = [r for r in bands if r[0] > edge and r[1] < h - edge]
    cut = [r for r in bands if not (r[0] > edge and r[1] < h - edge)]
    to_base = lambda rs: [(a_ / view.s, b_ / view.s) for a_, b_ in rs]
    return WindowRows(bay, frac * bay.px, to_base(whole), to_base(cut), hi - lo, prof)


def best_window_rows(view: FacadeView, bays: list[Period]) -> WindowRows | None:
    """Of the bay candidates, the one whose folded windows stand out most from the piers
    in the most rows: letters or rustication repeat too, but do not fold into windows."""
    best, best_score = None, 0.0
    for bay in bays[:4]:
        rows = window_rows(view, bay)
        if rows is None or not (rows.bands or rows.cut):
            continue
        score = rows.contrast * max(0.0, bay.score)
        # The comb's order stands unless a later bay folds into windows far better.
        if score > (1.5 if best is not None else 1.0) * best_score:
            best, best_score = rows, score
    return best


def storey_periods(view: FacadeView, rows: WindowRows | None) -> list[Period]:
    """Candidates for the storey period: window rows repeat once a storey. Read from the
    window-row profile (which rustication and string courses do not disturb) and, where
    there is none, from the rows' darkness."""
    h = view.bot - view.top
    if rows is not None and rows.profile is not None:
        prof = rows.profile
    else:
        g = facade_rows(view)
        prof = -g.mean(1)
        prof = cv2.GaussianBlur(prof[:, None], (0, 0), max(1.0, h / 150)).ravel()
    prof = prof - cv2.GaussianBlur(prof[:, None].astype(np.float32), (0, 0), max(3.0, h / 4)).ravel()
    if rows is None and float(np.std(prof)) < MIN_ROW_CONTRAST:
        return []         # a plain wall: its noise has no period worth reading
    ac = autocorr(prof)
    cands = comb_periods(ac, max(6, h / 14), h / MIN_REPEATS)
    return [Period(c.px / view.s, c.score) for c in cands]


# ---------------------------------------------------------------- the street

def _long_verticals(srgb: np.ndarray, segments: np.ndarray | None, tall: float) -> np.ndarray:
    """The plate's vertical segments (given, or found) longer than a 25th of a facade
    `tall` pixels high: jambs, pilasters, pipes, not the texture's short strokes."""
    seg = vertical_segments(cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY)) if segments is None else segments
    return seg[np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) > max(12.0, tall / 25.0)]


def street_row(srgb: np.ndarray, building: np.ndarray, segments: np.ndarray | None = None) -> float:
    """The row where the building meets the street: the matte's bottom, or further down
    where the facade visibly goes on below it (a box that stopped above the pavement).
    The facade goes on where verticals (jambs, pilasters, door frames, pipes) cross the
    matte's bottom and run on, and only as far as the rows keep the colours of the
    facade's lowest band."""
    m = building > 0.5
    h = m.shape[0]
    ys = np.nonzero(m.any(axis=1))[0]
    top, bot = int(ys.min()), int(ys.max()) + 1
    tall = bot - top
    if bot >= h - 2 or tall < 20:
        return float(bot)
    held = np.nonzero(m[top:bot].mean(axis=0) > 0.3)[0]
    if len(held) < 8:
        return float(bot)
    x0, x1 = int(held.min()), int(held.max()) + 1
    seg = _long_verticals(srgb, segments, tall)
    reach = _verticals_reach(seg, bot, x0, x1, gap=max(3.0, 0.02 * tall))
    if reach < bot + MIN_BELOW * tall:
        return float(bot)
    band = slice(max(top, bot - max(4, tall // 8)), bot)
    cols = np.arange(x0, x1)
    lab = cv2.cvtColor(cv2.GaussianBlur(srgb, (0, 0), 1.5), cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = lab[band][:, cols].reshape(-1, 3)
    rng = np.random.default_rng(0)
    ref = ref[rng.choice(len(ref), min(3000, len(ref)), replace=False)]
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(ref, 6, None, crit, 2, cv2.KMEANS_PP_CENTERS)
    own = np.min(np.linalg.norm(ref[:, None] - centres[None], axis=-1), axis=1)
    thr = 1.5 * float(np.percentile(own, 90)) + 4.0
    below = lab[bot:min(h, int(reach) + 1)][:, cols]
    dist = np.min(np.linalg.norm(below[..., None, :] - centres[None, None], axis=-1), axis=-1)
    like = cv2.GaussianBlur((dist < thr).mean(axis=1)[:, None].astype(np.float32), (0, 0), 2.0).ravel()
    off = np.nonzero(like < 0.5)[0]
    stop = int(off[0]) if len(off) else len(like)
    return float(bot + stop) if stop > MIN_BELOW * tall else float(bot)


def facade_foot(srgb: np.ndarray, building: np.ndarray, segments: np.ndarray | None = None) -> float:
    """The row the facade stands on when a box ran past it onto the pavement: the lowest
    end of its long verticals (door jambs, pilasters, shop fronts' frames, pipes: over
    FOOT_MIN_LEN of the matte's height, longer than a passer-by's legs) within FOOT_SEARCH
    of the matte's bottom, when none reaches that bottom; the matte's bottom otherwise,
    and where fewer than two such verticals, a twentieth of the width apart, end there. The
    demo's box ends at the kerb, 20 px under its shop fronts: its pavement was taken for
    ground floor, the facade stood 4 m nearer than it is, and the people and cars on the
    pavement, by their contacts on that line, 2 m in front of it, inside the cloud and
    behind the debris thrown out of the wall."""
    m = building > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    if not len(ys):
        return float(m.shape[0])
    top, bot = int(ys.min()), int(ys.max()) + 1
    tall = bot - top
    held = np.nonzero(m[top:bot].mean(axis=0) > 0.3)[0]
    if tall < 40 or len(held) < 8:
        return float(bot)
    x0, x1 = int(held.min()), int(held.max()) + 1
    seg = _long_verticals(srgb, segments, tall)
    if len(seg) < 2:
        return float(bot)
    ln = _chain(seg, gap=0.02 * tall, dx=max(3.0, 0.006 * srgb.shape[1]))
    ln = ln[(ln[:, 0] >= x0) & (ln[:, 0] < x1) & (ln[:, 2] - ln[:, 1] > FOOT_MIN_LEN * tall)
            & (ln[:, 2] > bot - FOOT_SEARCH[0] * tall) & (ln[:, 2] < bot + FOOT_SEARCH[1] * tall)]
    if len(ln) < 2 or np.ptp(ln[:, 0]) < 0.05 * (x1 - x0):
        return float(bot)
    return float(min(bot, np.ceil(ln[:, 2].max())))


def _verticals_reach(seg: np.ndarray, bot: float, x0: int, x1: int, gap: float) -> float:
    """How far down verticals run on from the row `bot`, following segments that continue
    one another (LSD breaks a long jamb into pieces). Each step needs two verticals at
    different places, so one lamp post or person does not carry the facade down."""
    lo_end = np.maximum(seg[:, 1], seg[:, 3])
    hi_end = np.minimum(seg[:, 1], seg[:, 3])
    xm = (seg[:, 0] + seg[:, 2]) / 2
    inside = (xm >= x0) & (xm < x1)
    reach = float(bot)
    while True:
        go = inside & (hi_end < reach + gap) & (lo_end > reach + 1)
        if go.sum() < 2:
            return reach
        ends = np.sort(lo_end[go])[::-1]
        xs = xm[go][np.argsort(lo_end[go])[::-1]]
        far = np.abs(xs - xs[0]) > 0.05 * (x1 - x0)
        if not far.any():
            return reach
        reach = float(ends[int(np.argmax(far))])       # the second verticals' end


def extend_to_street(building: np.ndarray, street: float) -> np.ndarray:
    """The facade whose rulers are read: each of the building's columns filled from its top
    down to the street row. A matte's lower edge is ragged where GrabCut lost a shop front
    or a car stands in front, and a box may stop above the pavement; the facade goes on
    behind and below them. Columns the building holds in under a third of its rows
    (a sliver of a neighbour, a chimney) are left as they are."""
    m = building > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    top, bot = int(ys.min()), int(ys.max()) + 1
    foot = max(bot, int(round(street)))
    held = m[top:bot].mean(axis=0) > 1 / 3
    first = np.argmax(m, axis=0)
    rows = np.arange(m.shape[0])[:, None]
    out = m.copy()
    out |= held[None] & (rows >= first[None]) & (rows < foot)
    return out


# ---------------------------------------------------------------- doors

@dataclass
class Door:
    x0: float
    x1: float
    top: float
    bottom: float         # plate rows

    @property
    def height_px(self) -> float:
        return self.bottom - self.top


def _chain(seg: np.ndarray, gap: float, dx: float) -> np.ndarray:
    """Collinear vertical segments joined (LSD breaks a long jamb at every glint):
    (x, top, bottom) rows."""
    xm = (seg[:, 0] + seg[:, 2]) / 2
    yt = np.minimum(seg[:, 1], seg[:, 3])
    yb = np.maximum(seg[:, 1], seg[:, 3])
    lines: list[list[float]] = []
    for i in np.argsort(yt):
        for ln in lines:
            if abs(ln[0] - xm[i]) < dx and yt[i] < ln[2] + gap and yb[i] > ln[1] - gap:
                ln[1], ln[2] = min(ln[1], yt[i]), max(ln[2], yb[i])
                break
        else:
            lines.append([float(xm[i]), float(yt[i]), float(yb[i])])
    return np.array(lines, float).reshape(-1, 3)


def find_doors(srgb: np.ndarray, building: np.ndarray, street: float,
               segments: np.ndarray | None = None) -> list[Door]:
    """Doors: two jambs that stand on the street (or a step or two above it), as tall as
    each other, 0.3-0.8 of their height apart (a single leaf to a double door) with no
    third one between them (that would be a shop front's mullions)."""
    m = building > 0.5
    ys = np.nonzero(m.any(axis=1))[0]
    top = float(ys.min())
    tall = street - top
    held = np.nonzero(m[int(top):int(street)].mean(axis=0) > 0.3)[0]
    if tall < 40 or len(held) < 8:
        return []
    x0, x1 = held.min(), held.max() + 1
    seg = _long_verticals(srgb, segments, tall)
    if not len(seg):
        return []
    ln = _chain(seg, gap=0.02 * tall, dx=max(3.0, 0.006 * srgb.shape[1]))
    length = ln[:, 2] - ln[:, 1]
    stands = (ln[:, 2] > street - 0.07 * tall) & (ln[:, 2] < street + max(5.0, 0.03 * tall))
    ln = ln[stands & (ln[:, 0] >= x0) & (ln[:, 0] < x1) & (length > 0.1 * tall) & (length < 0.6 * tall)]
    ln = ln[np.argsort(ln[:, 0])]
    doors = []
    for i in range(len(ln)):
        for j in range(i + 1, len(ln)):
            a, b = ln[i], ln[j]
            h = 0.5 * ((a[2] - a[1]) + (b[2] - b[1]))
            w = b[0] - a[0]
            if abs(a[2] - b[2]) > 0.03 * tall or abs(a[1] - b[1]) > 0.06 * h or not 0.3 <= w / h <= 0.8:
                continue
            inner = ln[(ln[:, 0] > a[0] + 0.1 * w) & (ln[:, 0] < b[0] - 0.1 * w)]
            if ((inner[:, 2] - inner[:, 1]) > 0.5 * h).any():
                continue
            doors.append(Door(a[0], b[0], min(a[1], b[1]), max(a[2], b[2])))
    # Overlapping pairs are one door seen through its leaf and its frame: keep the outer.
    doors.sort(key=lambda d: -(d.x1 - d.x0))
    kept: list[Door] = []
    for d in doors:
        if all(d.x1 <= k.x0 or d.x0 >= k.x1 for k in kept):
            kept.append(d)
    return kept
