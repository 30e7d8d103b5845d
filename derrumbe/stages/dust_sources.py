"""Where the dust comes from: the simulation's recorded events, turned into emissions.

Dust is made where energy is spent breaking concrete: comminution makes new surface in
proportion to the energy it takes (Rittinger's law), so each event gives off fine dust
and coarse load in proportion to the energy it released, and nothing happens before the
first event. What each kind of event does to the air:

- GROUND: a piece hitting the street throws a ring of dusty air outward and a little up
  (a splash), its own puff;
- IMPACT: pieces hitting each other in the air shed dust that moves on with them;
- BREAK: a connection failing puffs a little dust out of the crack;
- CRUSH: a storey crushed by the block above squeezes the storey's air out through its
  openings, around the whole footprint at the crushing level, in the time the storey takes
  to close: this jet, heavy with dust, is what starts the gravity current along the street;
- SINK: the blown base, closing under the block from the moment it lets go: the same, over
  the base's whole height, at the pace of a block coming down from rest (the air and dust
  leave as the storey closes, slowly at first).

Emissions are binned per solver step (a CRUSH is spread over its closing time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derrumbe.stages.camera import STOREY_M
from derrumbe.stages.collapse_styles import COMPACTION
from derrumbe.stages.simulate import EV_BREAK, EV_CRUSH, EV_GROUND, EV_IMPACT, EV_SINK

# How much fine dust an event makes, from the mass of concrete it breaks up:
# - the mass an event crushes is the energy it dissipates over the specific energy crushing
#   concrete takes, CRUSH_J_PER_KG (~1.1 kWh/t, the low end of what jaw crushers recycling
#   concrete draw; like the collapse, a crusher spends most of it as heat), never more than
#   the mass of the body that took the blow, and never more, all events together, than the
#   building holds;
# - FINE_FRACTION of the crushed mass is fines that lift free of the pile and stay airborne
#   through the shot (up to ~30 um, which settle at a few cm/s). What a crusher makes of
#   concrete is aggregate: the share under 0.063 mm is a few percent (EN 12620 caps it at
#   3-4 % for recycled aggregate), about half of it under 30 um, and much of that stays
#   stuck to the rubble: 1 % (our estimate; 3 % was set before on the WTC's settled dust,
#   itself already the finest part of what was crushed, of which PM2.5 was ~1 %, Lioy et
#   al. 2002, and it hid a 3-storey building behind opaque dust within 1.2 s of the start).
# Together 2.5 g of fines per kJ. The event lists record one blow several times (the
# blow, the break it causes, each bounce): a break's and an impact's share is small for
# that reason (GRIND below), and all events together never crush more than the released
# energy can (tests/test_dust.py).
CRUSH_J_PER_KG = 4000.0
FINE_FRACTION = 0.01
LOAD_PER_FINE = 6.0          # coarse airborne grit (50-300 um) per gram of fines: most of the
                             # early airborne mass, and what makes the cloud a dense current
# Share of an event's energy that grinds concrete into dust, by kind: crushing and hits on
# the street pulverise. A crack opening or pieces knocking together in the air mostly
# chip: the energy recorded at a break is the separating pieces' motion, which they spend
# again (and are counted again) when they hit the pile or the street, while the crack
# itself costs concrete's fracture energy, ~100 J/m^2 (a square metre of new crack for
# the 100 J it takes; Bazant & Planas 1998). An intact-looking facade veiled in puffs
# before it visibly moves is the classic fake: 0.05 of a break's energy, not 0.3.
# A piece hitting the street is one blow, not a crusher's grinding: it breaks into a few
# lumps (the simulation's fragments, the heap's rubble) and bounces, and only the crushed
# zone at the contact turns to fines; 0.3 of its energy (our estimate). At 1.0 the shop
# fronts blown into the street at the start raised 1.3 kg of fines and 7.6 kg of grit in
# half a second, an opaque white bank in front of the demo's parked cars before anything
# above had moved (judged "a blob pasted over the cars").
GRIND = {EV_GROUND: 0.3, EV_CRUSH: 1.0, EV_SINK: 1.0, EV_IMPACT: 0.05, EV_BREAK: 0.05}
LOBES = 1.6                  # log-spread of how much dust and air leave at each stretch of the walls
OPENING_M = 2.5              # ...which varies over about a window's spacing
PILE_S = 0.6                 # a crushed storey's dust keeps welling out of the pile over this long
PILE_SHARE = 0.5             # ...this share of it (the rest leaves while the storey closes)
JET_PULL = 0.7               # how firmly a blown base's air is turned out level through its openings
# The share of each wall that is open for the air and the dust to leave by (doors,
# windows, shopfronts): a street's terraced buildings (every shared plate) stand wall to
# wall with their neighbours, and a party wall has no openings; the street front's
# ground storey is shopfronts and doors over most of its length, the courtyard side has a
# back wall's doors and windows; above the ground storey front and back have windows
# alike. (Spread evenly round the footprint, two thirds of the blown base's dust left
# through the sides and the back, and the camera saw it only through the breach its
# front opened: a cloud cut to the outline of the hole, img_270 and img_100 at 20 %.)
OPEN_BASE = {"front": 0.6, "back": 0.3, "side": 0.05}
OPEN_STOREY = {"front": 0.35, "back": 0.35, "side": 0.05}
JET_REACH_M = 4.0            # ...whose core carries the dust this far out, at most ...
JET_REACH_S = 0.15           # ...or as far as it goes in this long
JET_MAX_MS = 40.0            # the fastest such jet (~1 kPa over the openings, far under the block's weight per area)
HEAT_K_M3_PER_J = 2.5e-4     # the lift of the collapse's warm, turbulent air (K m^3 per J)


@dataclass
class Emissions:
    """Everything emitted, sorted by solver step: dust (g), coarse load (g), heat (K m^3),
    a soft sphere pulling the air toward a velocity, and air appearing at the point (m^3
    in the step: a crushed storey's air, pushed out)."""
    step: np.ndarray         # (E,)
    pos: np.ndarray          # (E, 3) world m
    radius: np.ndarray       # (E,) m
    fine_g: np.ndarray
    load_g: np.ndarray
    heat: np.ndarray
    vel: np.ndarray          # (E, 3) m/s
    pull: np.ndarray         # (E,) 0..1
    flux: np.ndarray = None  # (E,) m^3

    def __post_init__(self):
        if self.flux is None:
            self.flux = np.zeros(len(self.step))

    @staticmethod
    def empty() -> "Emissions":
        z = np.zeros(0)
        return Emissions(z.astype(int), np.zeros((0, 3)), z, z, z, z, np.zeros((0, 3)), z, z)

    def first_time(self, dt: float) -> float:
        return float(self.step.min()) * dt if len(self.step) else np.inf


def puff_radius(energy_j: np.ndarray, cell_m: float) -> np.ndarray:
    """A puff's size grows as the cube root of its energy (its volume with the energy):
    ~1.5 m for 100 kJ; never smaller than the grid resolves."""
    return np.clip(1.5 * np.cbrt(np.maximum(energy_j, 0.0) / 1e5), 0.8 * cell_m, 8.0)


def _ring(centre, n, radius, rng):
    """n directions in the horizontal plane, evenly spread from a random start."""
    a = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.zeros(n), np.sin(a)], 1)


def fines_g(energy_j: np.ndarray, mass_kg: np.ndarray, building_kg: float) -> np.ndarray:
    """Fine dust (g) of each event, in time order: FINE_FRACTION of the concrete it crushes
    (its energy over CRUSH_J_PER_KG, at most the body's own mass), until the building's
    whole mass has been crushed."""
    crushed = np.minimum(np.maximum(energy_j, 0.0) / CRUSH_J_PER_KG, np.maximum(mass_kg, 0.0))
    left = np.maximum(building_kg - np.concatenate([[0.0], np.cumsum(crushed)[:-1]]), 0.0)
    return 1000.0 * FINE_FRACTION * np.minimum(crushed, left)


def event_emissions(events: np.ndarray, footprint: tuple, step_dt: float, cell_m: float, amount: float,
                    seed: int, n_steps: int, building_kg: float = np.inf) -> Emissions:
    """footprint: (lo, hi) corners of the building's box (world m); building_kg: its mass
    (what all the events together can crush at most). Events are in time order."""
    if events is None or not len(events) or amount <= 0:
        return Emissions.empty()
    rng = np.random.default_rng([seed, 31])
    lo, hi = (np.asarray(a, float) for a in footprint)
    out = []

    def add(t, p, r, fine, heat, v, pull, flux=0.0):
        t = np.atleast_1d(t)
        out.append((t, np.atleast_2d(p), np.atleast_1d(r), np.atleast_1d(fine),
                    np.atleast_1d(heat), np.atleast_2d(v), np.atleast_1d(pull), np.broadcast_to(flux, t.shape)))

    e = events
    energy = np.maximum(e["energy"].astype(float), 0.0)
    grind = np.array([GRIND.get(int(k), 1.0) for k in e["kind"]])
    fine = fines_g(energy * grind, e["mass"].astype(float), building_kg) * amount
    heat = HEAT_K_M3_PER_J * energy * amount
    for k in range(len(e)):
        kind, t, p, v = int(e["kind"][k]), float(e["t"][k]), e["pos"][k].astype(float), e["vel"][k].astype(float)
        if energy[k] <= 0:
            continue
        r = float(puff_radius(energy[k], cell_m))
        speed = float(np.linalg.norm(v))
        if kind == EV_GROUND:
            # A splash: a ring of puffs thrown outward along the street, the piece's own
            # horizontal motion carried on.
            n = 4
            d = _ring(p, n, r, rng)
            s = np.clip(0.5 * speed, 2.0, 14.0)
            vel = d * s + 0.4 * np.array([v[0], 0.0, v[2]]) + np.array([0.0, 0.25 * s, 0.0])
            pp = p + d * 0.6 * r
            pp[:, 1] = max(0.6 * r, 0.5 * cell_m)
            add(np.full(n, t), pp, np.full(n, r * 0.8), np.full(n, fine[k] / n), np.full(n, heat[k] / n), vel,
                np.full(n, 0.7))
        elif kind in (EV_CRUSH, EV_SINK):
            _crush(add, t, p, v, energy[k], fine[k], heat[k], lo, hi, cell_m, step_dt, rng, kind == EV_SINK)
        else:
            # IMPACT / BREAK: dust shed where it happened, moving on with the pieces,
            # a crack's puff jetting a little out of the building.
            jet = p[[0, 2]] - 0.5 * (lo[[0, 2]] + hi[[0, 2]])
            jet = jet / max(float(np.linalg.norm(jet)), 1e-6)
            out_v = np.array([jet[0], 0.3, jet[1]]) * (3.0 if kind == EV_BREAK else 1.5)
            add(t, p, r, fine[k], heat[k], 0.5 * v + out_v, 0.4 if kind == EV_IMPACT else 0.5)
    if not out:
        return Emissions.empty()
    cat = [np.concatenate([o[i] for o in out]) for i in range(8)]
    t, p, r, f, h, v, pull, flux = cat
    step = np.clip(np.floor(t / step_dt + 1e-6).astype(int), 0, n_steps - 1)
    order = np.argsort(step, kind="stable")
    return Emissions(step[order], p[order], r[order], f[order], f[order] * LOAD_PER_FINE, h[order], v[order],
                     pull[order], flux[order])


def _crush(add, t, p, v, energy, fine, heat, lo, hi, cell_m, step_dt, rng, sink=False):
    """A crushed storey: its air (storey height x footprint) leaves through the openings
    around the footprint at the crushing level while the storey closes, and its dust
    keeps pouring out of the pile for a while after.

    The air is what the storey loses, a volume source at the openings (the solver's
    projection makes the flow that carries it away), so the street gets that volume's
    outflow and momentum, no more, and each jet slows as it spreads from the walls (as a
    point source's; a real wall jet entraining still air, ~1/sqrt(distance), Launder &
    Rodi 1981). A few metres out the gravity current of the dusty air carries the dust on
    (dust.py). Openings blow out unevenly (windows, doors, a failed wall), so both the air
    and the dust leave in jets a few metres apart: the front leaves the building in lobes
    and clefts rather than as one even wall along the street. Only part of the dust
    leaves while the storey closes: the rest is shaken out of the settling pile over
    the next second or so (PILE_S), as footage of collapses shows the cloud still
    welling up from the base after the building is down."""
    height, closed, closing = crush_closing(p, v, sink)
    volume = (hi[0] - lo[0]) * (hi[2] - lo[2]) * closed
    spacing = max(1.5 * cell_m, 2.0)
    ring, normal = _footprint_ring(lo, hi, 0.5 * spacing, spacing)
    radius = max(1.2 * cell_m, 1.5)
    y = float(np.clip(p[1], 0.5 * STOREY_M, None))
    w = _openings(normal, np.exp(LOBES * _smooth_ring(rng.normal(0, 1, len(ring)), OPENING_M / spacing)),
                  OPEN_BASE if sink else OPEN_STOREY, lo, hi)
    still = np.zeros((len(ring), 3))
    n_close = max(1, int(round(closing / step_dt)))
    n_all = n_close + int(round(3.0 * PILE_S / step_dt))
    # The dust's release over time: PILE_SHARE over the closing, at the pace the storey
    # closes (evenly under a block already moving; as the square of time under one
    # coming down from rest), the rest decaying over PILE_S after it. The air leaves at
    # the same pace.
    edges = np.arange(n_close + 1) / n_close
    pace = np.diff(edges ** 2) if sink else np.diff(edges)
    share = np.zeros(n_all)
    share[:n_close] = (1.0 - PILE_SHARE) * pace
    tail = np.exp(-np.arange(n_all - n_close) * step_dt / PILE_S)
    share[n_close:] = PILE_SHARE * tail / max(tail.sum(), 1e-9)
    for s in range(n_all):
        ts = t + s * step_dt
        pp = ring.copy()
        if s >= n_close:
            pp[:, 1] = rng.uniform(0.3, 1.0, len(ring)) * STOREY_M
        elif sink:
            # Under the block's descending underside: the gap left open shrinks as the
            # base closes, so the last of its air leaves low along the street.
            gap = height - closed * edges[s] ** 2
            pp[:, 1] = rng.uniform(0.1, 0.9, len(ring)) * gap
        else:
            pp[:, 1] = y + rng.uniform(-0.4, 0.4, len(ring)) * STOREY_M
        flux = volume * w * pace[s] if s < n_close else np.zeros(len(ring))
        vel, pull = still, np.zeros(len(ring))
        if sink and s < n_close:
            # Out through the ground storey's doors and windows, level with the street,
            # as jets: the air closed in the step over the openings' area (OPEN_BASE of
            # each wall over the base's height). One pressure drives them all, so they
            # leave at one speed; the lobes are wider openings, carrying more dust. Over
            # the whole wall they left at 3 m/s and the base's dust hung within 2.5 m of
            # the walls (img_100 at 20 %); as a volume source outside the walls the air
            # went up as much as out (img_100 at 15 %).
            speed = min(volume * pace[s] / step_dt / (open_length(lo, hi, OPEN_BASE) * height), JET_MAX_MS)
            vel, pull, flux = normal * speed, np.full(len(ring), JET_PULL), np.zeros(len(ring))
            # The jet's dust along its core, which the grid cannot carry: a jet an opening
            # wide is a cell or two across, and the solver's diffusion stopped its dust
            # within a metre of the wall, where the wall's falling pieces stood in front
            # of all of it (img_100 at 20 %: the cloud cut to the outline of the breach).
            pp[:, [0, 2]] += normal[:, [0, 2]] * rng.uniform(0.0, min(JET_REACH_M, speed * JET_REACH_S),
                                                             (len(ring), 1))
        add(np.full(len(ring), ts), pp, np.full(len(ring), radius), fine * w * share[s], heat * w * share[s],
            vel, pull, flux)


def crush_closing(p, v, sink: bool) -> tuple[float, float, float]:
    """The storey's height and how much of it closes (m), and in how long (s). A sink's
    event is at the middle of the base's whole height, which closes to its rubble."""
    if sink:
        height = 2.0 * float(p[1])
        closed = (1.0 - COMPACTION) * height
        return height, closed, float(np.clip(closed / max(abs(float(v[1])), 0.1), 0.08, 2.0))
    return STOREY_M, STOREY_M, float(np.clip(STOREY_M / max(abs(float(v[1])), 1.0), 0.08, 1.0))


def _footprint_ring(lo, hi, offset, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Points around the building's footprint, just outside its walls, and the walls'
    outward normals there."""
    x0, x1, z0, z1 = lo[0] - offset, hi[0] + offset, lo[2] - offset, hi[2] + offset
    pts, normals = [], []
    for a, b, out in (((x0, z0), (x1, z0), (0, 0, -1)), ((x1, z0), (x1, z1), (1, 0, 0)),
                      ((x1, z1), (x0, z1), (0, 0, 1)), ((x0, z1), (x0, z0), (-1, 0, 0))):
        n = max(2, int(np.hypot(b[0] - a[0], b[1] - a[1]) / spacing))
        s = (np.arange(n) + 0.5) / n
        pts.append(np.stack([a[0] + (b[0] - a[0]) * s, np.zeros(n), a[1] + (b[1] - a[1]) * s], 1))
        normals.append(np.tile(np.array(out, float), (n, 1)))
    return np.vstack(pts), np.vstack(normals)


def _openings(normal: np.ndarray, lobes: np.ndarray, shares: dict, lo, hi) -> np.ndarray:
    """Per point of the footprint's ring, its share of what leaves the storey: its wall's
    open share, spread along the wall in lobes (wider openings) that move it along the
    wall but never between walls (left to chance, the back got more than the street front
    on some seeds). The camera looks down -z: the street front faces +z."""
    wall = np.where(normal[:, 2] > 0.5, 0, np.where(normal[:, 2] < -0.5, 1, 2 + (normal[:, 0] > 0)))
    open_m = _walls_open_m(lo, hi, shares)
    w = np.zeros(len(normal))
    for k in range(4):
        on = wall == k
        if on.any():
            w[on] = lobes[on] / lobes[on].sum() * open_m[k]
    return w / w.sum()


def _walls_open_m(lo, hi, shares: dict) -> np.ndarray:
    """Each wall's open length (m): its length times its open share (front, back, the
    two sides)."""
    across, deep = float(hi[0] - lo[0]), float(hi[2] - lo[2])
    return np.array([shares["front"] * across, shares["back"] * across, shares["side"] * deep, shares["side"] * deep])


def open_length(lo, hi, shares: dict) -> float:
    """The walls' open length (m) all round the footprint."""
    return float(_walls_open_m(lo, hi, shares).sum())


def _smooth_ring(x: np.ndarray, width: float) -> np.ndarray:
    """Circular Gaussian smoothing of values around the footprint's perimeter."""
    n = len(x)
    k = np.arange(n)
    d = np.minimum(k, n - k)
    kern = np.exp(-0.5 * (d / max(width, 1e-3)) ** 2)
    y = np.real(np.fft.ifft(np.fft.fft(x) * np.fft.fft(kern / kern.sum())))
    return y / max(float(y.std()), 1e-9)
