"""Debris particles: the grit and small chunks a collapse throws, too small to fracture.

They come from the simulation's recorded events (stages/simulate.py): every break, every
hard blow between bodies or on the street, every crushed storey sprays fragments in
proportion to the energy it released. They leave from where it happened with the
velocity of the body involved plus a spray, fly under gravity and air drag (small grit
slows quickly, chunks carry), bounce on the street and come to rest. They are rendered
with the debris (stages/render.py) as motion-blurred streaks.

Sizes continue the rigid debris below its smallest fragment: the simulation's final
bodies are measured for the exponent D of their cumulative count N(>r) ~ r^-D, and the
grit is drawn from the same law down to R_MIN. Each drawn particle stands for `weight`
real ones (the law calls for far more grit than is worth drawing), so the whole debris
- bodies and grit - is one heavy-tailed distribution (Turcotte 1986: D of 1.9-2.6 for
impact and explosive fragmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derrumbe.kernels.ballistics import fly
from derrumbe.stages.fracture import Fracture
from derrumbe.stages.simulate import EV_BREAK, EV_CRUSH, EV_GROUND, EV_SINK, G, SimResult

GRIT_DENSITY = 2000.0       # kg/m^3
AIR_DENSITY = 1.2
DRAG_CD = 1.0
R_MIN = 0.008               # m: the finest grit drawn
D_RANGE = (1.6, 2.6)        # the exponent the grit continues, clipped to what fragmentation gives
RESTITUTION = 0.3
GROUND_FRICTION = 0.6       # tangential speed kept at a bounce
SUBSTEP_HZ = 240.0


@dataclass
class Particles:
    times: np.ndarray        # (T,) the simulation's sample times
    pos: np.ndarray          # (T, P, 3) world positions (at birth before they are born)
    radius: np.ndarray       # (P,) m
    born: np.ndarray         # (P,) s
    albedo: np.ndarray       # (P, 3) linear
    weight: np.ndarray = None  # (P,) how many real fragments each drawn particle stands for

    @property
    def n(self) -> int:
        return len(self.radius)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions at time t (linear between samples) and which particles exist."""
        ts = self.times
        k = int(np.clip(np.searchsorted(ts, t) - 1, 0, len(ts) - 2))
        a = float(np.clip((t - ts[k]) / (ts[k + 1] - ts[k]), 0.0, 1.0))
        return self.pos[k] * (1 - a) + self.pos[k + 1] * a, self.born <= t


def _empty(t) -> Particles:
    return Particles(t, np.zeros((len(t), 0, 3), np.float32), np.zeros(0), np.zeros(0), np.zeros((0, 3)),
                     np.zeros(0))


def debris_exponent(sim: SimResult, fr: Fracture) -> tuple[float, float, int]:
    """D of the final rigid debris (N(>r) ~ r^-D), the smallest body's radius, and how
    many bodies lie above it."""
    kept = sim.final_body >= 0               # pulverised fragments are grit already
    _, inv = np.unique(sim.final_body[kept], return_inverse=True)
    r = np.sort(np.cbrt(3 * np.bincount(inv, weights=fr.volume[kept]) / (4 * np.pi)))[::-1]
    n = np.arange(1, len(r) + 1)
    keep = (n > 0.02 * len(r)) & (n < 0.98 * len(r))
    if keep.sum() < 5:
        return 2.0, float(r.min()), len(r)
    D = -np.polyfit(np.log(r[keep]), np.log(n[keep]), 1)[0]
    return float(D), float(r[keep].min()), int(n[keep][-1])


def debris_sizes(sim: SimResult, fr: Fracture, grit: Particles) -> dict:
    """The whole debris' size law: N(>r) ~ r^-D fitted over rigid bodies and grit
    together (grit weighted by the fragments each drawn particle stands for)."""
    kept = sim.final_body >= 0
    _, inv = np.unique(sim.final_body[kept], return_inverse=True)
    r_b = np.cbrt(3 * np.bincount(inv, weights=fr.volume[kept]) / (4 * np.pi))
    radii = np.concatenate([r_b, grit.radius])
    w = np.concatenate([np.ones(len(r_b)), grit.weight if grit.weight is not None else np.ones(grit.n)])
    order = np.argsort(radii)
    r_lo = radii[order][np.searchsorted(np.cumsum(w[order]), 0.02 * w.sum())]
    r_hi = np.sort(r_b)[-min(50, len(r_b))]
    if r_hi <= r_lo * 1.5:
        return dict(bodies=int(len(r_b)))
    r = np.geomspace(r_lo, r_hi, 24)
    n = np.array([w[radii > x].sum() for x in r])
    D = -np.polyfit(np.log(r), np.log(np.maximum(n, 1e-9)), 1)[0]
    return dict(bodies=int(len(r_b)), D=round(float(D), 3), decades=round(float(np.log10(r_hi / r_lo)), 2),
                r_min_m=round(float(r_lo), 4), r_max_m=round(float(r_hi), 3))


def emit_particles(sim: SimResult, fr: Fracture, face_albedo, count: int, seed: int) -> Particles:
    rng = np.random.default_rng([seed, 53])
    t = sim.times
    ev = sim.events
    if count <= 0 or len(t) < 3 or len(ev) == 0:
        return _empty(t)
    # Each event's share of the grit: the energy it released.
    w = np.maximum(ev["energy"].astype(np.float64), 0.0)
    if w.sum() <= 0:
        return _empty(t)
    pick = rng.choice(len(ev), size=count, p=w / w.sum())
    e = ev[pick]
    born = e["t"] + rng.uniform(0, t[1] - t[0], count)
    kind = e["kind"]

    D, r_top, n_top = debris_exponent(sim, fr)
    D = float(np.clip(D, *D_RANGE))
    # Inverse-CDF draw of a power law p(r) ~ r^-(D+1) between R_MIN and the smallest body.
    u = rng.random(count)
    lo, hi = R_MIN ** -D, r_top ** -D
    radius = (hi + u * (lo - hi)) ** (-1 / D)
    # How many real fragments each drawn one stands for: the law's count between R_MIN
    # and r_top, continuing the bodies' count n_top at r_top.
    real = n_top * ((r_top / R_MIN) ** D - 1)
    weight = np.full(count, real / count)

    d = rng.normal(size=(count, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    src_r = np.clip(np.cbrt(np.maximum(e["mass"], 1.0) / 2400.0), 0.2, 2.0)
    start = e["pos"].astype(np.float64) + d * src_r[:, None] * rng.uniform(0.2, 0.7, (count, 1))
    start[:, 1] = np.maximum(start[:, 1], radius)
    base_v = e["vel"].astype(np.float64)
    ground = (kind == EV_GROUND) | (kind == EV_CRUSH) | (kind == EV_SINK)
    # Speed of the spray: a share of the energy per unit mass the event released.
    spec = np.sqrt(2 * e["energy"] / np.maximum(e["mass"], 1.0))
    speed = np.clip(0.6 * spec, 1.0, 14.0) * rng.lognormal(0.0, 0.45, count)
    spray = d.copy()
    spray[:, 1] = np.abs(spray[:, 1]) * np.where(ground, 1.0, 0.6) + np.where(ground, 0.35, 0.0)
    spray /= np.linalg.norm(spray, axis=1, keepdims=True)
    vel0 = base_v * np.where(ground, 0.15, 0.85)[:, None] + spray * speed[:, None]
    tint = rng.uniform(0.55, 1.25, (count, 1)) * np.asarray(face_albedo)[None] * rng.uniform(0.92, 1.08, (count, 3))
    pos = _integrate(t, born, start, vel0, radius)
    return Particles(t, pos.astype(np.float32), radius, born, tint.astype(np.float32), weight)


def _integrate(t: np.ndarray, born: np.ndarray, x0: np.ndarray, v0: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Gravity, quadratic drag, bounces on the street; positions at every sample time."""
    out = np.empty((len(t), len(born), 3))
    drag = 3 * AIR_DENSITY * DRAG_CD / (8 * GRIT_DENSITY * radius)       # 1/m
    sub = max(1, int(np.ceil((t[1] - t[0]) * SUBSTEP_HZ)))
    fly(t.astype(np.float64), born.astype(np.float64), x0.astype(np.float64), v0.astype(np.float64),
        radius.astype(np.float64), drag.astype(np.float64), G, RESTITUTION, GROUND_FRICTION, sub, out)
    return out
