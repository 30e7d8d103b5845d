"""Debris particles: the grit and small chunks a collapse throws, too small to fracture.

Every bond failure and every hard landing sprays fragments: most are grit of a
centimetre or two, a few are fist- to head-sized chunks. They leave with the velocity
of the piece they came off plus a spray, fly under gravity and air drag (small grit
slows quickly, chunks carry), bounce on the street and come to rest. They are
rendered with the debris (stages/render.py) as motion-blurred streaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derrumbe.kernels.ballistics import fly
from derrumbe.stages.simulate import G, SimResult

GRIT_DENSITY = 2000.0       # kg/m^3
AIR_DENSITY = 1.2
DRAG_CD = 1.0
R_MIN, R_MAX = 0.008, 0.3   # m: grit to fist- and head-sized chunks
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

    @property
    def n(self) -> int:
        return len(self.radius)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions at time t (linear between samples) and which particles exist."""
        ts = self.times
        k = int(np.clip(np.searchsorted(ts, t) - 1, 0, len(ts) - 2))
        a = float(np.clip((t - ts[k]) / (ts[k + 1] - ts[k]), 0.0, 1.0))
        return self.pos[k] * (1 - a) + self.pos[k + 1] * a, self.born <= t


def emit_particles(sim: SimResult, volume: np.ndarray, face_albedo, count: int, seed: int) -> Particles:
    rng = np.random.default_rng([seed, 53])
    t = sim.times
    T = len(t)
    if count <= 0 or T < 3:
        return Particles(t, np.zeros((T, 0, 3), np.float32), np.zeros(0), np.zeros(0), np.zeros((0, 3)))
    p = sim.pos.astype(np.float64)
    v = np.zeros_like(p)
    v[1:-1] = (p[2:] - p[:-2]) / (t[2:] - t[:-2])[:, None, None]
    m = sim.mass.astype(np.float64)
    r_piece = np.cbrt(3 * np.maximum(volume, 1e-6) / (4 * np.pi))

    # Where fragments come from, and how many from each: breaks (mass x speed) and hard
    # landings (energy lost near the ground).
    ev_k, ev_i, ev_w, ev_kind = [], [], [], []
    if sim.breaks is not None and len(sim.breaks):
        k = np.clip(np.searchsorted(t, sim.breaks[:, 0]), 0, T - 1)
        i = sim.breaks[:, 1].astype(int)
        k2 = np.clip(k + 2, 0, T - 1)
        ev_k.append(k2)
        ev_i.append(i)
        ev_w.append(m[i] * (np.linalg.norm(v[k2, i], axis=1) + 1.0))
        ev_kind.append(np.zeros(len(i), int))
    e = 0.5 * m * (v ** 2).sum(2) + m * G * p[:, :, 1]
    loss = np.maximum(e[:-1] - e[1:], 0.0)
    near_ground = p[1:, :, 1] < r_piece + 1.0
    kk, ii = np.nonzero((loss > 1e-3 * max(loss.max(), 1e-9)) & near_ground)
    if len(kk):
        ev_k.append(kk)
        ev_i.append(ii)
        ev_w.append(loss[kk, ii])
        ev_kind.append(np.ones(len(kk), int))
    if not ev_k:
        return Particles(t, np.zeros((T, 0, 3), np.float32), np.zeros(0), np.zeros(0), np.zeros((0, 3)))
    ev_k, ev_i, ev_w, ev_kind = map(np.concatenate, (ev_k, ev_i, ev_w, ev_kind))
    # Breaks and landings share the particles half and half, each by its own weights.
    share = np.where(ev_kind == 0, 0.5 / max(ev_w[ev_kind == 0].sum(), 1e-12),
                     0.5 / max(ev_w[ev_kind == 1].sum(), 1e-12)) * ev_w
    share /= share.sum()
    pick = rng.choice(len(ev_k), size=count, p=share)
    k, i, kind = ev_k[pick], ev_i[pick], ev_kind[pick]
    born = t[k] + rng.uniform(0, t[1] - t[0], count)

    # Sizes: a power law, mostly grit, a few chunks.
    radius = R_MIN * (R_MAX / R_MIN) ** (rng.random(count) ** 2.5)
    d = rng.normal(size=(count, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    start = p[k, i] + d * r_piece[i, None] * rng.uniform(0.3, 0.9, (count, 1))
    start[:, 1] = np.maximum(start[:, 1], radius)
    base_v = v[k, i]
    speed = np.where(kind == 0, rng.lognormal(np.log(3.0), 0.6, count),
                     np.clip(0.35 * np.linalg.norm(v[np.maximum(k - 2, 0), i], axis=1), 1.0, 12.0)
                     * rng.lognormal(0.0, 0.4, count))
    spray = d.copy()
    spray[:, 1] = np.abs(spray[:, 1]) * np.where(kind == 1, 1.0, 0.5) + np.where(kind == 1, 0.4, 0.0)
    spray /= np.linalg.norm(spray, axis=1, keepdims=True)
    vel0 = base_v * np.where(kind == 1, 0.2, 0.9)[:, None] + spray * speed[:, None]
    tint = rng.uniform(0.55, 1.25, (count, 1)) * np.asarray(face_albedo)[None] * rng.uniform(0.92, 1.08, (count, 3))

    pos = _integrate(t, born, start, vel0, radius)
    return Particles(t, pos.astype(np.float32), radius, born, tint.astype(np.float32))


def _integrate(t: np.ndarray, born: np.ndarray, x0: np.ndarray, v0: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Gravity, quadratic drag, bounces on the street; positions at every sample time."""
    out = np.empty((len(t), len(born), 3))
    drag = 3 * AIR_DENSITY * DRAG_CD / (8 * GRIT_DENSITY * radius)       # 1/m
    sub = max(1, int(np.ceil((t[1] - t[0]) * SUBSTEP_HZ)))
    fly(t.astype(np.float64), born.astype(np.float64), x0.astype(np.float64), v0.astype(np.float64),
        radius.astype(np.float64), drag.astype(np.float64), G, RESTITUTION, GROUND_FRICTION, sub, out)
    return out
