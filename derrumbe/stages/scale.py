"""How big the building is: metres per pixel at the facade, from every ruler the plate offers.

Scale is the first thing an eye reads in a collapse: a building estimated twice too tall
falls sqrt(2) too slowly and reads as a giant. Each cue reads a ruler on the plate (a
length in pixels whose size in metres is known within a spread) and gives metres per
pixel with an uncertainty (1-sigma, in log). They are combined robustly, since a cue can
be wrong by a factor of two rather than by its sigma (a half period, a sign taken for a
window row): the answer is the mode of the product of the cues' likelihoods, each a
Gaussian in log scale plus a floor for "this cue is wrong" (EPS); the cues near the mode
are then averaged with inverse-variance weights. The result names the cue that carried
it, those that agree and those that were overruled.

Cues (their pixel rulers come from facade.py, read on the facade rectified for keystone):
- storey period: floor-to-floor height, read as the period of the window rows (checked
  against its harmonics; every plausible harmonic stays an option the other cues choose
  among);
- window height: the window rows' height;
- window bays: the window axis spacing along the street;
- ground floor: the base to the sills of the first row of windows above it;
- doors: two jambs standing on the street;
- people and cars standing near the facade (from the holdouts stage);
- the horizon, when known: a hand-held camera's eye is ~1.7 m above the street;
- a given height (--height-m) overrides all of them.

The keystone (facade.py's vertical vanishing row) is itself checked by the rulers: read at
different heights, they agree only under the right one, so the level camera is read too
and the reading with the better agreement wins (estimate_scale).

Priors (median metres, spread) and where the numbers come from; none was fitted to the
test plates:
- storey 3.5 m, sigma 0.15: floor-to-floor heights of 2.8-3.2 m in post-war housing
  (CTBUH's height calculator uses 3.1 m for residential), 3.9 m in offices, 3.6-4.5 m in
  19th-century European blocks (Gruenderzeit, Haussmann, St Petersburg); +-2 sigma spans
  2.6-4.7 m.
- window height 1.8 m, sigma 0.20: openings of 1.4-1.6 m under 2.1-2.3 m heads in
  post-war housing, 1.8-2.6 m in 19th-century storeys (about half the storey in both);
  +-2 sigma spans 1.2-2.7 m. What is measured is the opening with its frame.
- bay 2.8 m, sigma 0.30: window axes of 2.4-3.6 m in masonry blocks, panel modules of
  2.7-3.6 m in post-war housing, 1.35-1.8 m mullion grids in curtain walls (hence the
  wide spread).
- door 2.4 m, sigma 0.15: leaves of 2.0-2.4 m (DIN 18101's 2.0 and 2.125 m, shop doors
  2.1-2.4 m), old entrance doors and doors with a transom 2.5-3.0 m.
- ground floor plus sill 4.8 m, sigma 0.20: ground floors of 3.5-5 m (shops, high
  ceilings, a plinth) and sills 0.8-1.0 m above the floor.
- person 1.70 m, sigma 0.07 (adult stature, men and women, ~1.6-1.8 m, NCD-RisC 2016;
  posture, shoes, hats); car 1.50 m, sigma 0.12 (hatchbacks and saloons 1.4-1.5 m, MPVs
  and SUVs 1.6-1.8 m, and kerbside cars stand 2-4 m in front of the facade); van 2.2 m,
  bus 3.1 m, truck 3.4 m (EU maximum 4 m), sigma 0.15.
- eye height 1.7 m, sigma 0.35: 1.5-1.7 m hand-held, ~2.5 m for street-view cars,
  more from a window or a tram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

from derrumbe.stages import facade as fa
from derrumbe.stages.keystone import Keystone, vertical_segments


class Prior(NamedTuple):
    metres: float
    sigma: float      # 1-sigma in log


STOREY = Prior(3.5, 0.15)
WINDOW = Prior(1.8, 0.20)
BAY = Prior(2.8, 0.30)
DOOR = Prior(2.4, 0.15)
GROUND_SILL = Prior(4.8, 0.20)
EYE = Prior(1.7, 0.35)
OBJECTS = {
    "person": Prior(1.70, 0.07),
    "car": Prior(1.50, 0.12),
    "van": Prior(2.20, 0.15),
    "bus": Prior(3.10, 0.15),
    "truck": Prior(3.40, 0.15),
}
STOREY_RANGE_M = (2.5, 5.0)  # floor to floor, the lowest and highest a street building has
KIND_ALIASES = {"vehicle": "car"}   # the holdouts stage's name for what stands on the street on wheels
BOX_SIGMA = 0.15           # an automatic detection's box height against the object's (holdouts' boxes)
NEAR_FACADE = 0.04         # of the facade's height: feet this close to its foot stand at it
SILL_M = 0.9               # sill above its floor, to place the first floor line
FALLBACK_STOREYS = 4       # nothing to read: an ordinary street building of four storeys
FALLBACK_SIGMA = 0.40
DOUBT = 0.3                # likelihood floor added for a ruler that may not be one (trust < 1)
EPS = 0.05                 # likelihood floor of a cue that is wrong (relative to a 1-sigma-0.2 peak of ~2)
SIGMA_FLOOR = 0.06         # cues share the building's era (tall storeys, tall windows): never surer than this
MAX_DOORS = 3
KEYSTONE_CHECK_CUES = 3   # agreeing cues needed, both ways, to check the keystone against the rulers
MIN_PERSON_PX = 8          # smaller objects are not measured well enough


class Standing(NamedTuple):
    """An object standing near the facade, from the holdouts stage: its kind ("person",
    "car" or "vehicle", "van", "bus", "truck"; others are ignored), its height in plate
    pixels, and the row its feet or wheels stand on (None: at the facade's foot)."""
    kind: str
    height_px: float
    foot_row: float | None = None
    trust: float = 1.0          # how likely it is what its kind says (an automatic detection's is lower)


@dataclass
class Cue:
    name: str
    m_per_px: float                 # at the street row
    sigma: float                    # 1-sigma in log(m_per_px)
    detail: str
    options: list = field(default_factory=list)   # other readings (m_per_px, weight): harmonics
    agrees: bool = True             # set by the combination
    ruler_m: float = 0.0            # what the ruler is taken to measure, for reports
    needs: str = ""                 # a cue whose finding this one reads (dropped if that one is overruled)
    trust: float = 1.0              # the chance the ruler is what it is taken for (see combine)

    def readings(self) -> list[tuple[float, float]]:
        return self.options or [(self.m_per_px, 1.0)]


@dataclass
class Scale:
    m_per_px: float                 # metres per pixel at the facade's foot (the street row)
    sigma: float                    # 1-sigma in log (of m_per_px and of every height)
    height_m: float                 # the matte: base row to top row, keystone accounted for
    storeys: float                  # visible storeys from the street, the ground floor counted once
    storey_m: float
    ground_floor_m: float
    source: str                     # the cue that won, and those agreeing
    cues: list = field(default_factory=list)
    base_row: float = 0.0           # the matte's bottom and top rows
    top_row: float = 0.0
    ground_row: float = 0.0         # the street: the base row, or below it where the facade goes on
    ground_height_m: float = 0.0    # street to the matte's top
    vanishing_row: float | None = None   # of the verticals (None: level camera)

    @property
    def height_range(self) -> tuple[float, float]:
        return self.height_m * np.exp(-self.sigma), self.height_m * np.exp(self.sigma)

    def describe(self) -> str:
        lo, hi = self.height_range
        return (f"{self.height_m:.1f} m ± {0.5 * (hi - lo):.1f} m, {self.storeys:.1f} storeys of "
                f"{self.storey_m:.1f} m, from {self.source}")

    def to_dict(self) -> dict:
        return {
            "height_m": round(self.height_m, 2), "height_sigma_log": round(self.sigma, 3),
            "height_range_m": [round(v, 2) for v in self.height_range],
            "m_per_px": round(self.m_per_px, 5), "storeys": round(self.storeys, 2),
            "storey_m": round(self.storey_m, 2), "ground_floor_m": round(self.ground_floor_m, 2),
            "ground_row": round(self.ground_row, 1), "ground_height_m": round(self.ground_height_m, 2),
            "vanishing_row": None if self.vanishing_row is None else round(self.vanishing_row, 1),
            "source": self.source,
            "cues": [{"name": c.name, "m_per_px": round(float(c.m_per_px), 5), "sigma_log": round(float(c.sigma), 3),
                      "agrees": bool(c.agrees), "detail": c.detail} for c in self.cues],
        }


# ---------------------------------------------------------------- cues from the facade

def window_cue(rows: fa.WindowRows | None, facade_px: float) -> Cue | None:
    if rows is None or not rows.bands:
        return None
    bands = np.array(rows.bands)
    centres = bands.mean(axis=1)
    # Shop fronts at the bottom keep their own sizes: upper rows where there are some.
    upper = bands[centres < 0.8 * facade_px]
    heights = (upper if len(upper) else bands)[:, 1] - (upper if len(upper) else bands)[:, 0]
    h = float(np.median(heights))
    spread = float(np.std(np.log(heights))) if len(heights) > 1 else 0.0
    sigma = float(np.hypot(WINDOW.sigma, spread / np.sqrt(len(heights))))
    # A weak fold (the bay barely repeats) may have found something other than windows.
    sigma *= 1.0 + max(0.0, 0.15 - rows.bay.score) * 4
    return Cue("window height", WINDOW.metres / h, sigma,
               f"{len(heights)} window row{'s' * (len(heights) > 1)} {h:.0f} px tall at {WINDOW.metres} m",
               ruler_m=WINDOW.metres)


def storey_cue(periods: list[fa.Period], window_px: float | None, facade_px: float) -> Cue | None:
    """All plausible harmonics stay options; the comb score weighs them. A period seen
    fewer than ~3 times (two window rows) is one spacing, not a checked period."""
    ok = [p for p in periods if p.score > 0.05 and (window_px is None or p.px > 1.25 * window_px)]
    if not ok or ok[0].score < 0.15:
        return None
    best = ok[0]
    repeats = facade_px / best.px
    sigma = float(np.hypot(STOREY.sigma, 0.25 * (1 - min(best.score, 1.0))))
    sigma *= 1.0 + 0.3 * max(0.0, 3.0 - repeats)
    # Other readings are other harmonics (half, double, ...), not neighbours of the best:
    # a neighbour within a third of it is the same period read less well.
    alts = [p for p in ok[1:] if not 0.75 < p.px / best.px < 1.33][:2]
    options = [(STOREY.metres / p.px, p.score) for p in [best] + alts] if alts else []
    others = ", ".join(f"{p.px:.0f}" for p in alts)
    return Cue("storey period", STOREY.metres / best.px, sigma,
               f"{best.px:.0f} px a storey, {repeats:.1f} in view (comb {best.score:.2f}"
               f"{'; also ' + others if others else ''}) at {STOREY.metres} m", options, ruler_m=STOREY.metres)


def door_cue(doors: list, keystone) -> Cue | None:
    """A facade has a door or a few; a row of many openings on the street is a shop
    front or an arcade, whose height is no door's."""
    if not doors or len(doors) > MAX_DOORS:
        return None
    px = np.array([d.height_px / float(keystone.scale_at(0.5 * (d.top + d.bottom))) for d in doors])
    h = float(np.median(px))
    return Cue("door", DOOR.metres / h, DOOR.sigma,
               f"{len(px)} door{'s' * (len(px) > 1)} {h:.0f} px tall at {DOOR.metres} m", ruler_m=DOOR.metres)


def bay_cue(rows: fa.WindowRows | None, bays: list[fa.Period]) -> Cue | None:
    bay = rows.bay if rows is not None else (bays[0] if bays and bays[0].score > 0.15 else None)
    if bay is None or bay.score < 0.05:
        return None
    sigma = float(np.hypot(BAY.sigma, 0.25 * (1 - min(bay.score, 1.0))))
    return Cue("window bays", BAY.metres / bay.px, sigma,
               f"{bay.px:.0f} px a bay (comb {bay.score:.2f}) at {BAY.metres} m", ruler_m=BAY.metres)


def ground_floor_cue(rows: fa.WindowRows | None, facade_px: float, storey_px: float | None) -> Cue | None:
    """The first window row clearly above the base: its sills stand a ground floor plus a
    sill above the street. Rows low in the ground floor (shop windows) are skipped."""
    if rows is None or not rows.bands:
        return None
    above = [facade_px - b for _, b in rows.bands]          # sill heights above the base, px
    low = 0.18 * facade_px if storey_px is None else 0.5 * storey_px
    cand = sorted(a for a in above if a > low)
    if not cand:
        return None
    px = cand[0]
    return Cue("ground floor", GROUND_SILL.metres / px, GROUND_SILL.sigma,
               f"first sills {px:.0f} px above the street at {GROUND_SILL.metres} m", ruler_m=GROUND_SILL.metres,
               needs="window height")


def object_cues(people, keystone, street: float, tall: float, horizon_y: float | None) -> list[Cue]:
    """People and vehicles standing near the facade: one cue for each kind. Their sizes vary
    independently, so n that agree are surer than one (down to the bias they share, of
    standing a little in front of the facade). One that disagrees (a child, a false
    detection) is left out; where they split into equal camps, each camp is an option and
    the other cues choose.

    An object whose feet stand lower in the frame than the facade's foot is nearer the
    camera and looks larger: with the horizon known it is scaled back by the ratio of the
    two rows' distances below the horizon; without it, only objects standing within
    NEAR_FACADE of the facade's height from its foot are used."""
    by_kind: dict[str, list[float]] = {}
    for obj in people or []:
        o = Standing(*obj)
        kind = KIND_ALIASES.get(o.kind, o.kind)
        if kind not in OBJECTS or not np.isfinite(o.height_px) or o.height_px < MIN_PERSON_PX:
            continue
        near = 1.0
        if o.foot_row is not None:
            if horizon_y is not None and o.foot_row - horizon_y > 4 and street - horizon_y > 4:
                near = (o.foot_row - horizon_y) / (street - horizon_y)
            elif abs(o.foot_row - street) > NEAR_FACADE * tall:
                continue
        row = street if o.foot_row is None else o.foot_row - 0.5 * o.height_px
        m = OBJECTS[kind].metres / o.height_px * near * float(keystone.scale_at(min(row, street)))
        by_kind.setdefault(kind, []).append((m, float(np.clip(o.trust, 0.0, 1.0))))
    cues = []
    for kind, found in by_kind.items():
        prior = OBJECTS[kind]
        ms, trust = np.array(found).T
        # A detector's box is not a tape measure: its height is a few tens of percent off.
        spread = float(np.hypot(prior.sigma, BOX_SIGMA)) if trust.min() < 1 else prior.sigma
        logs = np.log(ms)
        camps = [np.nonzero(np.abs(logs - x) < 2.5 * spread)[0] for x in logs]
        most = max(len(c) for c in camps)
        picked = {tuple(c) for c in camps if len(c) == most}
        means = sorted(float(np.mean(logs[list(c)])) for c in picked)
        sigma = float(np.hypot(spread / np.sqrt(most), 0.03))
        options = [(float(np.exp(x)), 1.0) for x in means] if len(means) > 1 else []
        camp_trust = float(np.mean([trust[list(c)].mean() for c in picked]))
        px = prior.metres / np.exp(means[0])
        left_out = len(ms) - most if len(means) == 1 else 0
        detail = f"{most} {kind}{'s' * (most > 1)} {px:.0f} px tall at {prior.metres} m"
        if camp_trust < 1:
            detail += f" (detected, trusted {camp_trust:.2f})"
        if left_out > 0:
            detail += f" ({left_out} of other sizes left out)"
        if options:
            detail += f" (or the other {len(means) - 1} camp{'s' * (len(means) > 2)} of the same size)"
        cues.append(Cue(kind if len(ms) == 1 else f"{kind}s", float(np.exp(means[0])), sigma, detail, options,
                        ruler_m=prior.metres, trust=camp_trust))
    return cues


def horizon_cue(horizon_y: float | None, ground_row: float) -> Cue | None:
    if horizon_y is None or ground_row - horizon_y < 4:
        return None
    px = ground_row - horizon_y
    return Cue("horizon", EYE.metres / px, EYE.sigma, f"street {px:.0f} px below the horizon, eye at {EYE.metres} m")


# ---------------------------------------------------------------- combination

def combine(cues: list[Cue]) -> tuple[float, float, str]:
    """The mode of the cues' robust joint likelihood, then the inverse-variance mean of the
    readings that agree with it (see the module's note). A cue read off another cue's
    finding (the ground floor off the window rows) goes when that one is overruled."""
    exact = [c for c in cues if c.sigma == 0.0]
    if exact:
        # A given size wins; the facade's cues that agree with it still tell the storeys.
        given = exact[0].m_per_px
        for c in cues:
            logs = np.log(np.array(c.readings())[:, 0])
            near = logs[int(np.argmin(np.abs(logs - np.log(given))))]
            c.agrees = bool(c is exact[0] or abs(near - np.log(given)) < 2.0 * c.sigma)
            if c.agrees:
                c.m_per_px = float(np.exp(near))
        return given, 0.0, exact[0].name
    result = _combine(cues)
    names = {c.name for c in cues}
    orphans = [c for c in cues if c.needs and (c.needs not in names or not next(
        d for d in cues if d.name == c.needs).agrees)]
    if orphans and len(orphans) < len(cues):
        kept = [c for c in cues if c not in orphans]
        result = _combine(kept)
        for c in orphans:
            c.agrees = False
            c.detail += f" (not used: {c.needs} overruled)"
    return result


def _log_likelihood(c: Cue, x: np.ndarray) -> np.ndarray:
    """One cue's robust log-likelihood of log(metres per pixel) `x` (see the module's note)."""
    r = np.array(c.readings())
    w = r[:, 1] / r[:, 1].sum()
    dens = (w[:, None] * np.exp(-0.5 * ((np.atleast_1d(x)[None] - np.log(r[:, 0])[:, None]) / c.sigma) ** 2)).sum(0)
    # A ruler that may not be one at all (a detector's "person" on a window) has a
    # floor that much higher: it can pull the answer, never carry it alone.
    return np.log(EPS + (1 - c.trust) * DOUBT + c.trust * dens / (c.sigma * np.sqrt(2 * np.pi)))


def agreement(cues: list[Cue], m_per_px: float) -> float:
    """How well the cues agree on `m_per_px`: their joint robust log-likelihood there."""
    return float(sum(_log_likelihood(c, np.log(m_per_px))[0] for c in cues))


def _combine(cues: list[Cue]) -> tuple[float, float, str]:
    mus = np.log([m for c in cues for m, _ in c.readings()])
    x = np.arange(mus.min() - 1.0, mus.max() + 1.0, 0.002)
    logp = sum(_log_likelihood(c, x) for c in cues)
    mode = x[int(np.argmax(logp))]
    picked, weights = [], []
    for c in cues:
        logs = np.log(np.array(c.readings())[:, 0])
        near = logs[int(np.argmin(np.abs(logs - mode)))]
        c.agrees = bool(abs(near - mode) < 2.0 * c.sigma)
        if c.agrees:
            if abs(near - np.log(c.m_per_px)) > 1e-9 and c.ruler_m:
                c.detail += f"; read as {c.ruler_m / np.exp(near):.0f} px, the harmonic the others agree with"
            c.m_per_px = float(np.exp(near))
            picked.append(near)
            weights.append(1 / c.sigma ** 2)
    picked, weights = np.array(picked), np.array(weights)
    mean = float((weights * picked).sum() / weights.sum())
    sigma = 1 / np.sqrt(weights.sum())
    if len(picked) > 1:       # cues that scatter more than their sigmas say are less sure together
        chi2 = float((weights * (picked - mean) ** 2).sum() / (len(picked) - 1))
        sigma *= max(1.0, np.sqrt(chi2))
    sigma = max(float(sigma), SIGMA_FLOOR)
    best = max((c for c in cues if c.agrees), key=lambda c: 1 / c.sigma ** 2)
    agree = [c.name for c in cues if c.agrees and c is not best]
    overruled = [c.name for c in cues if not c.agrees and not c.needs]
    source = best.name
    if agree:
        source += f" ({', '.join(agree)} agreeing)"
    if overruled:
        source += f"; overruled: {', '.join(overruled)}"
    return float(np.exp(mean)), sigma, source


# ---------------------------------------------------------------- the estimate

def estimate_scale(srgb: np.ndarray, building_matte: np.ndarray, people=None, height_m: float | None = None,
                   horizon_y: float | None = None) -> Scale:
    """Metres per pixel at the facade, the storeys and the height of the building in the
    matte. `people`: Standing objects (or (kind, pixel height[, foot row]) tuples) near the
    facade; `height_m`: a known height (matte base to top) that overrides every cue;
    `horizon_y`: the horizon's row where known.

    The keystone is a hypothesis the rulers check. The verticals' vanishing row sets how
    much larger a pixel is at the top than at the street, and a wrong one (a lens's
    distortion, a facade that leans back, a misfit) stretches the facade's top by tens of
    percent while the base scale stays right. Rulers read at different heights (doors and
    ground floor low, window rows and storeys higher) agree only under the right one, so
    where enough of them are read both ways, the level camera is tried too and the
    reading they agree with better is kept; the other's height widens the uncertainty by
    its posterior weight."""
    m = building_matte > 0.5
    if not m.any():
        raise ValueError("the building matte is empty")
    ys = np.nonzero(m.any(axis=1))[0]
    top, base = float(ys.min()), float(ys.max() + 1)
    gray = cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY)
    segments = vertical_segments(gray)            # jambs, pilasters, pipes
    street = fa.street_row(srgb, m, segments)
    facade = fa.extend_to_street(m, street)      # the rulers are read down to the street
    found = fa.estimate_keystone(gray, facade, segments)   # its base row is the street's
    readings = [_read(srgb, facade, segments, found, top, base, street, people, height_m, horizon_y)]
    if found.vp_row is not None and height_m is None:
        level = Keystone(found.base_row, None, lines=found.lines)
        readings.append(_read(srgb, facade, segments, level, top, base, street, people, None, horizon_y))
    return _choose_keystone(readings)


def _read(srgb, facade, segments, k, top, base, street, people, height_m, horizon_y) -> Scale:
    """Every cue read on the facade rectified with keystone `k`, combined."""
    view = fa.facade_view(srgb, facade, segments, keystone=k)
    facade_px = float(k.height_px(top))           # street to top, in street-row pixels
    matte_px = facade_px - float(k.height_px(base))
    bays = fa.bay_periods(view)
    rows = fa.best_window_rows(view, bays)
    win = window_cue(rows, facade_px)
    window_px = None if win is None else WINDOW.metres / win.m_per_px
    storeys = storey_cue(fa.storey_periods(view, rows), window_px, facade_px)
    storey_px = None if storeys is None else STOREY.metres / storeys.m_per_px
    found = [storeys, win, bay_cue(rows, bays), door_cue(fa.find_doors(srgb, facade, street, segments), k),
             ground_floor_cue(rows, facade_px, storey_px), horizon_cue(horizon_y, street)]
    cues = [c for c in found if c is not None] + object_cues(people, k, street, street - top, horizon_y)
    if height_m is not None:
        cues.insert(0, Cue("given height", float(height_m) / matte_px, 0.0, f"--height-m {height_m:g}"))
    if not cues:
        fallback = GROUND_SILL.metres - SILL_M + (FALLBACK_STOREYS - 1) * STOREY.metres
        cues.append(Cue(f"assumed {FALLBACK_STOREYS} storeys", fallback / facade_px, FALLBACK_SIGMA,
                        "no window rows, doors, people or cars found"))
    m_px, sigma, source = combine(cues)
    return _describe_building(m_px, sigma, source, cues, k, top, base, street, facade_px, matte_px)


def _choose_keystone(readings: list[Scale]) -> Scale:
    """The reading whose cues agree better (see estimate_scale). Only readings with the same
    cues, at least KEYSTONE_CHECK_CUES of them agreeing in each, are compared: fewer
    cannot tell a keystone from a ruler's own spread, and a different set of cues is a
    different question."""
    first = readings[0]
    if len(readings) < 2:
        return first
    other = readings[1]
    names = lambda r: sorted(c.name for c in r.cues)
    agreeing = lambda r: sum(c.agrees for c in r.cues)
    if names(first) != names(other) or min(agreeing(first), agreeing(other)) < KEYSTONE_CHECK_CUES:
        return first
    fit = np.array([agreement(r.cues, r.m_per_px) for r in readings])
    w = np.exp(fit - fit.max())
    w /= w.sum()
    best = int(np.argmax(w))
    pick, alt = readings[best], readings[1 - best]
    # A mixture of the two readings: its variance in log height is the chosen one's plus
    # the other's weight times the squared gap between them.
    gap = np.log(alt.height_m / pick.height_m)
    pick.sigma = float(np.sqrt(pick.sigma ** 2 + w[1 - best] * gap ** 2))
    if best == 1:
        pick.source += (f"; keystone: level camera (the rulers agree {w[1] / w[0]:.1f}x better than with the "
                        f"verticals' vanishing row {first.vanishing_row:.0f})")
    else:
        pick.source += f"; keystone: vanishing row {pick.vanishing_row:.0f} (the rulers agree {w[0] / w[1]:.1f}x better than level)"
    return pick


def _describe_building(m_px, sigma, source, cues, k, top, base, street, facade_px, matte_px) -> Scale:
    """Heights, storey height and count from the scale and the cues that agreed with it."""
    def agreeing(name):
        return next((c for c in cues if c.name == name and c.agrees), None)
    storey, win, gf = agreeing("storey period"), agreeing("window height"), agreeing("ground floor")
    if storey is not None:
        # A harmonic the other cues pulled too far is still not a 6 m storey.
        storey_m = float(np.clip(STOREY.metres * m_px / storey.m_per_px, *STOREY_RANGE_M))
    elif win is not None:
        # Windows are about half a storey (see the priors).
        storey_m = float(np.clip(STOREY.metres * m_px / win.m_per_px, 2.7, 4.8))
    else:
        storey_m = STOREY.metres
    ground_floor = storey_m + 0.5
    if gf is not None:
        measured = GROUND_SILL.metres * m_px / gf.m_per_px - SILL_M
        if 0.8 * storey_m < measured < 2.0 * storey_m:
            ground_floor = measured
    street_height = m_px * facade_px
    storeys = 1.0 + max(0.0, street_height - ground_floor) / storey_m
    # The structure stands on the matte's base: its ground floor is what shows above it.
    return Scale(m_px, sigma, m_px * matte_px, storeys, storey_m, ground_floor, source, cues, base, top, street,
                 street_height, k.vp_row)
