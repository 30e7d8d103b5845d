"""Dust stage: the dust cloud as a 3D smoke grid driven by the rigid-body collapse.

What the eye believes in footage of a collapse is the dust: a heavy grey-beige mass
that jets out of the failing floors, rolls along the street faster than the building
falls and climbs to a good part of the building's height. The solver is stable fluids
(semi-Lagrangian advection, pressure projection, vorticity confinement) on a grid that
covers the building, the street in front of it up to the camera and a few building
widths to each side, clipped to what the camera sees. The kernels are in
kernels/fluid.py; this module decides where dust and air come from:

- bond breaks: dust in proportion to mass x speed of the piece that broke off;
- energy the pieces lose (grinding past each other, hitting each other or the
  ground): dust and heat where it is lost; on the ground the splash is thrown outward;
- the "piston": as the floors come down, the air between them is squeezed out of the
  building's sides at street level; this is what drives the front outward at
  ~15 m/s in recorded collapses;
- trails behind the biggest, fastest pieces;
- the pieces themselves push the air (they are moving solids in the grid), the
  standing building blocks it, and the wind drifts everything.

Dust is heavier than air (it slumps and spreads as a gravity current); the warm,
turbulent collapse air is lighter (it lifts the cloud). Density is in g/m^3 of
airborne dust; the renderer turns it into extinction with a mass extinction
coefficient for ~10 um mineral dust.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.kernels import fluid as K
from derrumbe.stages.camera import STOREY_M, Camera
from derrumbe.stages.fracture import Fracture
from derrumbe.stages.simulate import G, SimResult

DUST_FRACTION = 0.004      # share of the falling mass that becomes airborne dust
EXTINCTION_M2_PER_G = 0.1  # fine mineral dust, ~10 um: 3 / (2 rho_p r)
AIR_G_PER_M3 = 1200.0
HEAT_DECAY_S = 3.0
# Heat is carried in grams of dust it can lift: dust from the crushing zone comes with
# more than its own weight of lift, so it boils up; the piston's dust hugs the ground.
LIFT = dict(breaks=8.0, energy=8.0, piston=0.3, trails=0.0)
VORTICITY = 2.0            # confinement strength, 1/s
REGEN_S = 1.2              # the render's detail coordinates are renewed this often
PRESSURE_ITERATIONS = 50
LIGHT_SIGMA_CAP = 0.5      # 1/m, see DustSim.advance_to
SHARES = dict(breaks=0.08, energy=0.54, piston=0.33, trails=0.05)


@dataclass
class Grid:
    origin: np.ndarray   # world position of the grid's corner (m)
    h: float             # cell size (m)
    shape: tuple         # (nz, ny, nx)

    @property
    def size_m(self) -> np.ndarray:
        nz, ny, nx = self.shape
        return np.array([nx, ny, nz], float) * self.h

    def cells(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, float) - self.origin) / self.h

    def centres(self) -> np.ndarray:
        nz, ny, nx = self.shape
        k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        return self.origin + (np.stack([i, j, k], -1) + 0.5) * self.h


def dust_grid(fr: Fracture, cam: Camera, target_cells: int) -> Grid:
    """The simulation box: the building, a few widths to each side, the street up to the
    camera, the height the cloud can climb to; clipped to the camera's view."""
    lo, hi = fr.box_lo.astype(float), fr.box_hi.astype(float)
    width, height = hi[0] - lo[0], hi[1]
    reach = float(np.clip(max(2.5 * width, 0.6 * height + width), 30.0, 110.0))
    z0 = lo[2] - min(0.4 * reach, 30.0)
    z1 = min(hi[2] + reach, -1.0)
    far = -z0
    # What the lens sees at the back of the box, plus a margin for dust drifting in.
    xl = (0 - cam.cx) / cam.f_px * far * 1.1
    xr = (cam.width - cam.cx) / cam.f_px * far * 1.1
    x0 = max(lo[0] - reach, xl)
    x1 = min(hi[0] + reach, xr)
    if x1 - x0 < width + 10:
        x0, x1 = lo[0] - 5, hi[0] + 5
    y1 = max(1.1 * height, 20.0)
    ext = np.array([x1 - x0, y1, z1 - z0])
    h = float(max(0.35, (np.prod(ext) / target_cells) ** (1 / 3)))
    nx, ny, nz = np.maximum(np.ceil(ext / h).astype(int), 4)
    return Grid(np.array([x0, 0.0, z0]), h, (int(nz), int(ny), int(nx)))


def street_walls(grid: Grid, fr: Fracture, cam: Camera, building: np.ndarray, skyness: np.ndarray,
                 facade_depth: float) -> np.ndarray:
    """Cells inside the neighbouring buildings, as solids: (nz, ny, nx) bool.

    The plate shows how tall the street's walls are beside the building (the first sky
    pixel above the horizon in each column); they stand on the street line and are
    assumed as deep as the building. The dust cannot go into them, so it is channelled
    along the street and out toward the camera, as in footage, and dust hidden behind
    their facades is never simulated in the first place."""
    H, W = skyness.shape
    cy = int(np.clip(round(cam.cy), 1, H - 1))
    b = cv2.dilate((building > 0.5).astype(np.uint8), np.ones((1, 9), np.uint8)) > 0
    sky = skyness > 0.5
    top = np.full(W, float(cy))
    for u in range(W):
        if b[:cy, u].any():
            top[u] = np.nan                      # the building itself: no wall
            continue
        col = sky[:cy, u]
        idx = np.nonzero(col)[0]
        top[u] = (idx.max() + 1) if len(idx) else 0.0
    height = cam.eye_m + (cam.cy - top) / cam.f_px * facade_depth             # metres, per column
    xs = (np.arange(W) + 0.5 - cam.cx) / cam.f_px * facade_depth
    nz, ny, nx = grid.shape
    gx = grid.origin[0] + (np.arange(nx) + 0.5) * grid.h
    ok = np.isfinite(height)
    if not ok.any():
        return np.zeros(grid.shape, bool)
    # Beyond the frame, the walls continue as they leave it.
    hx = np.interp(gx, xs[ok], height[ok], left=height[ok][0], right=height[ok][-1])
    hx[(gx > fr.box_lo[0] - 1.0) & (gx < fr.box_hi[0] + 1.0)] = 0.0           # the building's own gap
    depth = fr.box_hi[2] - fr.box_lo[2]
    gz = grid.origin[2] + (np.arange(nz) + 0.5) * grid.h
    gy = (np.arange(ny) + 0.5) * grid.h
    behind = (gz < fr.facade_z - 0.5) & (gz > fr.facade_z - depth - 2.0)
    return behind[:, None, None] & (gy[None, :, None] < hx[None, None, :] - 0.5)


@dataclass
class Sources:
    """Everything that emits, binned per solver step: dust (g), heat, and velocity
    targets (a soft sphere pulling the air toward a velocity)."""
    step_of: np.ndarray       # (E,) solver step of each emission
    pos: np.ndarray           # (E, 3) world
    radius: np.ndarray        # (E,) m
    dust_g: np.ndarray        # (E,)
    heat: np.ndarray          # (E,) lift, in grams of dust it can carry
    vel: np.ndarray           # (E, 3) m/s, the velocity the air is pulled toward
    pull: np.ndarray          # (E,) 0..1, how hard


def piece_velocities(sim: SimResult) -> np.ndarray:
    """Central-difference velocity of every piece at every sample (T, N, 3)."""
    p = sim.pos.astype(np.float64)
    t = sim.times
    v = np.zeros_like(p)
    if len(t) > 2:
        v[1:-1] = (p[2:] - p[:-2]) / (t[2:] - t[:-2])[:, None, None]
        v[0], v[-1] = v[1], v[-2]
    return v


def collapse_sources(fr: Fracture, sim: SimResult, grid: Grid, step_dt: float, amount: float,
                     seed: int) -> Sources:
    rng = np.random.default_rng([seed, 31])
    t = sim.times
    n_steps_total = int(np.ceil(t[-1] / step_dt)) + 1
    vel = piece_velocities(sim)
    m = sim.mass.astype(np.float64)
    released = np.isfinite(sim.released)
    total_dust = DUST_FRACTION * float(m[released].sum()) * 1000.0 * amount     # g
    lo, hi = fr.box_lo.astype(float), fr.box_hi.astype(float)
    centre = 0.5 * (lo + hi)
    r_piece = np.cbrt(3 * np.maximum(fr.volume, 1e-6) / (4 * np.pi))
    ev = []   # (time, pos, radius, weight-in-share, share name, heat, vel, pull)

    def add(name, times, pos, radius, weight, heat, v, pull):
        ev.append((name, np.asarray(times, float), np.asarray(pos, float), np.asarray(radius, float),
                   np.asarray(weight, float), np.asarray(heat, float), np.asarray(v, float), np.asarray(pull, float)))

    def outward(p, speed):
        d = p[:, [0, 2]] - centre[[0, 2]]
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
        return np.stack([d[:, 0] * speed, np.zeros(len(p)), d[:, 1] * speed], 1)

    # In a pancake collapse the dust is made where the falling mass meets what is
    # below it, not all over a block riding down in one piece: energy losses are
    # emitted no higher than two storeys above the bottom of the falling mass.
    falling = vel[:, :, 1] < -3.0
    # (the bottom of the falling mass: a low percentile, so a few stray pieces near the
    # ground do not pin it there)
    yf = np.where(falling, sim.pos[:, :, 1], np.nan)
    has = falling.sum(axis=1) >= 3
    y_front = np.zeros(len(t))
    if has.any():
        y_front[has] = np.nanpercentile(yf[has], 15, axis=1)
    cl = fr.cluster
    ucl, inv = np.unique(cl, return_inverse=True)

    def at_contact(k, i, p):
        p = p.copy()
        p[:, 1] = np.minimum(p[:, 1], y_front[k] + 2 * STOREY_M)
        return p

    # Bond breaks: a piece let go, or torn off its block.
    bt, bi = sim.breaks[:, 0], sim.breaks[:, 1].astype(int)
    if len(bt):
        k = np.clip(np.searchsorted(t, bt), 0, len(t) - 1)
        k2 = np.clip(k + 2, 0, len(t) - 1)
        speed = np.linalg.norm(vel[k2, bi], axis=1)
        # (a real bond failure: dust where it happens, at any height)
        p = sim.pos[k, bi].astype(float)
        jet = outward(p, 4.0) + vel[k2, bi] * 0.5 + np.array([0, 1.0, 0])
        # (weighted by mass x speed; the first creak of a block starting to move, below
        # ~2 m/s, makes next to none, or the whole facade would be veiled at once)
        ramp = np.clip((speed - 1.0) / 2.0, 0.0, 1.0)
        add("breaks", bt, p, np.maximum(1.2 * r_piece[bi], grid.h), m[bi] * speed * ramp,
            np.ones(len(bt)), jet, 0.5 * np.ones(len(bt)))

    # Energy lost per piece between samples (translational kinetic + potential).
    ke = 0.5 * m * (vel ** 2).sum(2)
    pe = m * G * sim.pos[:, :, 1]
    loss = np.maximum((ke + pe)[:-1] - (ke + pe)[1:], 0.0)             # (T-1, N)
    kk, ii = np.nonzero(loss > 1e-4 * max(loss.max(), 1e-9))
    if len(kk):
        p = at_contact(kk + 1, ii, sim.pos[kk + 1, ii].astype(float))
        e = loss[kk, ii]
        on_ground = p[:, 1] < r_piece[ii] + 1.0
        v_before = vel[kk, ii]
        sp = np.linalg.norm(v_before, axis=1)
        splash = outward(p, np.clip(0.8 * sp, 2.0, 16.0)) + np.c_[v_before[:, 0], np.zeros(len(p)), v_before[:, 2]] * 0.5
        splash[:, 1] = np.clip(0.6 * sp, 1.0, 12.0)   # the crushed pile boils up
        v = np.where(on_ground[:, None], splash, v_before * 0.4)
        pos = p.copy()
        pos[on_ground, 1] = np.maximum(0.5 * grid.h, 0.6)
        add("energy", t[kk + 1], pos, np.maximum(1.5 * r_piece[ii], grid.h), e,
            np.ones(len(e)), v, np.where(on_ground, 0.6, 0.3))

    # The piston: air squeezed out of the collapsing floors at street level.
    hc = (m[None] * sim.pos[:, :, 1]).sum(1) / m.sum()
    rate = np.maximum(-np.gradient(hc, t), 0.0)
    area = (hi[0] - lo[0]) * (hi[2] - lo[2])
    perim = 2 * ((hi[0] - lo[0]) + (hi[2] - lo[2]))
    # The air leaves through the window openings of the storey being crushed (about half
    # of a storey's wall), so it jets out much faster than the floors come down.
    exit_h = max(STOREY_M, 1.5 * grid.h)
    q = area * 2.0 * rate                                              # m^3/s
    gust = np.clip(q / (perim * STOREY_M * 0.5), 0.0, 30.0)
    # Two rings, just outside the walls and a few metres out: the jets leave as a layer
    # thick enough for the grid to carry their momentum.
    ring = np.vstack([_ring(lo, hi, grid.h * 1.5, max(grid.h * 1.5, 1.5)),
                      _ring(lo, hi, grid.h * 3.5, max(grid.h * 1.5, 1.5))])
    # Some openings blow out harder than others, and that changes as floors go: the
    # front comes out in lobes, not as one even wall.
    # (smooth along the walls over ~8 m: neighbouring windows share a floor's fate)
    vent = _smooth_ring(rng.normal(0.0, 1.0, len(ring)), 8.0 / max(grid.h * 1.5, 1.5))
    vent = np.exp(0.6 * vent / max(vent.std(), 1e-9))
    phase = _smooth_ring(rng.normal(0.0, 1.0, len(ring)), 8.0 / max(grid.h * 1.5, 1.5)) * 3.0
    for k in np.nonzero(q > 0.02 * max(q.max(), 1e-9))[0]:
        p = ring.copy()
        p[:, 1] = rng.uniform(0.4, exit_h, len(p))
        n = len(p)
        f = vent * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t[k] + phase))
        f /= f.mean()
        add("piston", np.full(n, t[k]), p, np.full(n, max(grid.h * 1.2, 1.2)), q[k] / n * f,
            np.ones(n), outward(p, np.clip(gust[k] * f, 0, 30.0)) + np.array([0, 0.8, 0]), np.full(n, 0.9))

    # Trails: dust streaming off the biggest pieces while they fly fast and on their own
    # (not riding along with the rest of their block).
    big = np.nonzero(fr.volume >= np.quantile(fr.volume, 0.93))[0]
    cl_vel = np.stack([vel[:, inv == c].mean(axis=1) for c in range(len(ucl))], 1)   # (T, C, 3)
    rel = np.linalg.norm(vel[:, big] - cl_vel[:, inv[big]], axis=2)
    sp = np.linalg.norm(vel[:, big], axis=2)
    kk, jj = np.nonzero((sp > 6.0) & (rel > 4.0))
    if len(kk):
        ii = big[jj]
        add("trails", t[kk], sim.pos[kk, ii].astype(float), np.full(len(kk), max(grid.h * 0.8, 0.8)),
            sp[kk, jj] * r_piece[ii] ** 2, np.zeros(len(kk)), np.zeros((len(kk), 3)), np.zeros(len(kk)))

    if not ev:
        z = np.zeros(0)
        return Sources(z.astype(int), np.zeros((0, 3)), z, z, z, np.zeros((0, 3)), z)
    # Each kind gets its share of the dust budget, spread by its own weights; a kind
    # with nothing to emit hands its share to the others.
    # (in SHARES' fixed order: a set's order changes from process to process, and the
    # order of emissions is the order of floating-point sums)
    present = [n for n in SHARES if any(e[0] == n for e in ev)]
    norm = sum(SHARES[n] for n in present)
    parts = {n: [] for n in present}
    for e in ev:
        parts[e[0]].append(e)
    out = []
    for name, items in parts.items():
        wsum = sum(float(it[4].sum()) for it in items)
        for (_, tt, pp, rr, ww, hh, vv, pl) in items:
            dust = total_dust * SHARES[name] / norm * ww / max(wsum, 1e-12)
            out.append((tt, pp, rr, dust, dust * LIFT[name] * hh, vv, pl))
    cat = [np.concatenate([o[i] for o in out]) for i in range(7)]
    tt, pp, rr, dust, hh, vv, pl = cat
    step = np.clip(np.round(tt / step_dt).astype(int), 0, n_steps_total - 1)
    order = np.argsort(step, kind="stable")
    return Sources(step[order], pp[order], rr[order], dust[order], hh[order], vv[order], pl[order])


def _smooth_ring(x: np.ndarray, width: float) -> np.ndarray:
    """Circular Gaussian smoothing of values around the footprint's perimeter."""
    n = len(x)
    k = np.arange(n)
    d = np.minimum(k, n - k)
    kern = np.exp(-0.5 * (d / max(width, 1e-3)) ** 2)
    return np.real(np.fft.ifft(np.fft.fft(x) * np.fft.fft(kern / kern.sum())))


def _ring(lo, hi, offset, spacing) -> np.ndarray:
    """Points around the building's footprint, just outside its walls."""
    x0, x1, z0, z1 = lo[0] - offset, hi[0] + offset, lo[2] - offset, hi[2] + offset
    pts = []
    for a, b in (((x0, z0), (x1, z0)), ((x1, z0), (x1, z1)), ((x1, z1), (x0, z1)), ((x0, z1), (x0, z0))):
        n = max(2, int(np.hypot(b[0] - a[0], b[1] - a[1]) / spacing))
        s = (np.arange(n) + 0.5) / n
        pts.append(np.stack([a[0] + (b[0] - a[0]) * s, np.zeros(n), a[1] + (b[1] - a[1]) * s], 1))
    return np.vstack(pts)


def advect_conserving(q, q_tmp, u, v, w, dt_h, zero_outside):
    """Advects the stacked scalars (q[0] is the dust) and puts back the dust mass the
    semi-Lagrangian step invents or loses: the total afterwards is the total before
    minus what flowed out through the open sides (upwind flux). Trilinear sampling
    never creates negative density, and the scale factor is positive, so the dust
    stays >= 0. Returns (new q, the spare buffer)."""
    before = float(q[0].sum(dtype=np.float64))
    out = K.outflow(q[0], u, v, w, dt_h)
    K.advect_scalars(q, q_tmp, u, v, w, dt_h, zero_outside)
    after = float(q_tmp[0].sum(dtype=np.float64))
    if after > 0 and before > 0:
        q_tmp[0] *= np.float32(np.clip(max(before - out, 0.0) / after, 0.5, 2.0))
    return q_tmp, q


@dataclass
class DustFrame:
    """What the renderer needs of the cloud at one frame."""
    sigma: np.ndarray        # (nz, ny, nx) extinction, 1/m
    tau_sun: np.ndarray      # optical depth toward the sun
    tau_sky: np.ndarray      # optical depth straight up
    coords: np.ndarray       # (2, 3, nz, ny, nx) advected detail coordinates (m)
    coord_w: tuple           # blend weights of the two coordinate sets
    time: float


class DustSim:
    """Steps the cloud forward frame by frame; `advance_to(t)` returns the state of the
    frame at t (stored in the shot's cache, lit at render time by `dust_frame`)."""

    def __init__(self, fr: Fracture, sim: SimResult, cam: Camera, *, amount: float,
                 wind_speed: float, wind_heading_deg: float, seed: int, target_cells: int, steps_per_second: float,
                 walls=None):
        """walls: a function of the grid giving solid cells (see street_walls), or None."""
        self.grid = grid = dust_grid(fr, cam, target_cells)
        self.fr, self.sim = fr, sim
        self.dt = 1.0 / steps_per_second
        nz, ny, nx = grid.shape
        self.u = np.zeros((nz, ny, nx + 1), np.float32)
        self.v = np.zeros((nz, ny + 1, nx), np.float32)
        self.w = np.zeros((nz + 1, ny, nx), np.float32)
        # Stacked scalars: dust (g/m^3), heat, two sets of detail coordinates (x, y, z).
        self.q = np.zeros((8, nz, ny, nx), np.float32)
        self.q_tmp = np.zeros_like(self.q)
        self.zero_outside = np.array([True, True] + [False] * 6)
        self.p = np.zeros((nz, ny, nx), np.float32)
        self.div = np.zeros_like(self.p)
        self.cvel = np.zeros((3, nz, ny, nx), np.float32)
        self.force = np.zeros_like(self.cvel)
        self.omega = np.zeros_like(self.cvel)
        self.tmp3 = [np.zeros_like(self.u), np.zeros_like(self.v), np.zeros_like(self.w)]
        self.bfecc = [[np.zeros_like(self.u), np.zeros_like(self.v), np.zeros_like(self.w)] for _ in range(2)]
        self.centres = grid.centres().astype(np.float32)                # (nz, ny, nx, 3)
        for s in range(2):
            self.q[2 + 3 * s: 5 + 3 * s] = np.moveaxis(self.centres, -1, 0)
        self.solid = walls(grid) if walls is not None else np.zeros(grid.shape, bool)
        self.solid_w = self.solid.astype(np.float32)
        self.any_solid = bool(self.solid.any())
        self.sources = collapse_sources(fr, sim, grid, self.dt, amount, seed)
        self.src_start = np.searchsorted(self.sources.step_of, np.arange(int(np.ceil(sim.times[-1] / self.dt)) + 2))
        heading = np.radians(wind_heading_deg)
        # Heading 0 blows toward the camera, 90 to the right (as the sun azimuth).
        self.wind = np.array([np.sin(heading), 0.0, np.cos(heading)]) * wind_speed
        y = self.centres[..., 1]
        self.wind_profile = (np.clip(y / 10.0, 0.05, 3.0) ** 0.14).astype(np.float32)   # log-law-ish
        # The breeze blows before anything falls (a log-law-like profile over the street).
        prof = self.wind_profile[0, :, 0]
        self.u[:] = (self.wind[0] * prof)[None, :, None]
        self.w[:] = (self.wind[2] * prof)[None, :, None]
        self.vel_vol = np.cbrt(3 * np.maximum(fr.volume, 1e-6) / (4 * np.pi)) * 1.1
        self.step_i = 0
        self.t = 0.0
        self.steps_run = 0

    # ---- one solver step ---------------------------------------------------------------
    def step(self):
        g, dt = self.grid, self.dt
        h = g.h
        dt_h = dt / h
        nz, ny, nx = g.shape
        i = min(self.step_i, len(self.src_start) - 2)
        active = self.q[0].any() or self.src_start[i + 1] > self.src_start[i]
        if active:
            self._emit()
            self._solids()
            self._forces()
            self._walls()
            self._project()
            K.advect_velocity(self.u, self.v, self.w, *self.tmp3, dt_h, self.bfecc)
            self.u, self.tmp3[0] = self.tmp3[0], self.u
            self.v, self.tmp3[1] = self.tmp3[1], self.v
            self.w, self.tmp3[2] = self.tmp3[2], self.w
            self._project()
            self._walls()
            self.q, self.q_tmp = advect_conserving(self.q, self.q_tmp, self.u, self.v, self.w, dt_h,
                                                   self.zero_outside)
            self.q[1] *= np.float32(np.exp(-dt / HEAT_DECAY_S))
            if self.any_solid:
                self.q[0][self.solid] = 0.0
                self.q[1][self.solid] = 0.0
            self.steps_run += 1
        self.step_i += 1
        self.t = self.step_i * dt
        self._regenerate()

    def _emit(self):
        s = self.sources
        i = min(self.step_i, len(self.src_start) - 2)
        a, b = self.src_start[i], self.src_start[i + 1]
        if b <= a:
            return
        g = self.grid
        cell_vol = g.h ** 3
        pts = g.cells(s.pos[a:b])
        rad = s.radius[a:b] / g.h
        # Dust and heat spread over each source's sphere (a few points, so a puff is not a cube).
        rng = np.random.default_rng([int(self.step_i), 7])
        off = rng.normal(0, 0.45, (b - a, 4, 3)) * rad[:, None, None]
        P = (pts[:, None, :] + off).reshape(-1, 3)
        dust = np.repeat(s.dust_g[a:b] / 4 / cell_vol, 4)
        heat = np.repeat(s.heat[a:b] / 4 / cell_vol, 4)
        K.deposit(P, dust.astype(np.float64), self.q[0])
        K.deposit(P, heat.astype(np.float64), self.q[1])
        wsum = np.zeros(g.shape, np.float32)
        acc = np.zeros((3,) + g.shape, np.float32)
        K.splat_spheres(pts, rad, s.vel[a:b], wsum, acc, s.pull[a:b])
        self._pull(wsum, acc)

    def _pull(self, wsum, acc):
        m = wsum > 0
        if not m.any():
            return
        target = np.zeros_like(acc)
        target[:, m] = acc[:, m] / wsum[m]
        K.blend_faces(self.u, self.v, self.w, target, np.minimum(wsum, 1.0).astype(np.float32))

    def _solids(self):
        """Pieces are solids that drag the air with them; the standing ones block it."""
        sim, g = self.sim, self.grid
        t = self.t
        k = int(np.clip(np.searchsorted(sim.times, t), 1, len(sim.times) - 1))
        a = (t - sim.times[k - 1]) / (sim.times[k] - sim.times[k - 1])
        p = sim.pos[k - 1] * (1 - a) + sim.pos[k] * a
        v = (sim.pos[k] - sim.pos[k - 1]) / (sim.times[k] - sim.times[k - 1])
        # A rubble pile is porous: pieces at rest once they have fallen do not hold the
        # air; the intact building does, and moving pieces drag it along.
        speed = np.linalg.norm(v, axis=1)
        pull = np.where(~(sim.released <= t), 0.5, np.clip(speed / 2.0, 0.0, 1.0) * 0.8)
        keep = pull > 0.01
        if not keep.any():
            return
        wsum = np.zeros(g.shape, np.float32)
        acc = np.zeros((3,) + g.shape, np.float32)
        K.splat_spheres(g.cells(p[keep]), self.vel_vol[keep] / g.h, v[keep].astype(np.float64), wsum, acc,
                        pull[keep])
        self._pull(wsum, acc)

    def _walls(self):
        if self.any_solid:
            K.blend_faces(self.u, self.v, self.w, np.zeros((3,) + self.grid.shape, np.float32), self.solid_w)

    def _forces(self):
        dt = self.dt
        K.buoyancy(self.v, self.q[0], self.q[1], dt, G / AIR_G_PER_M3, G / AIR_G_PER_M3)
        K.cell_velocity(self.u, self.v, self.w, self.cvel)
        K.vorticity_force(self.cvel, self.force, VORTICITY, self.omega)
        # The air relaxes toward the breeze (or to rest) over a few seconds.
        for c in range(3):
            self.force[c] += (self.wind[c] * self.wind_profile - self.cvel[c]) / 8.0
        K.add_cell_force(self.u, self.v, self.w, self.force, dt)

    def _project(self):
        K.divergence(self.u, self.v, self.w, self.div)
        K.pressure_solve(self.p, self.div, PRESSURE_ITERATIONS)
        K.subtract_gradient(self.u, self.v, self.w, self.p)

    def _regenerate(self):
        """Each detail-coordinate set is reset to the rest position when its blend weight
        is zero, so the noise it carries never stretches for long."""
        for s in range(2):
            age_prev = (self.t - self.dt + s * REGEN_S / 2) % REGEN_S
            age = (self.t + s * REGEN_S / 2) % REGEN_S
            if age < age_prev:
                self.q[2 + 3 * s: 5 + 3 * s] = np.moveaxis(self.centres, -1, 0)

    def coord_weights(self) -> tuple:
        w = []
        for s in range(2):
            age = (self.t + s * REGEN_S / 2) % REGEN_S
            w.append(1.0 - abs(2.0 * age / REGEN_S - 1.0))
        return tuple(w)

    # ---- frames -------------------------------------------------------------------------
    def advance_to(self, t: float) -> dict:
        """Steps to time t; returns the frame's state as stored in the cache (float16:
        extinction and detail coordinates). The render always reads this quantised
        state, so a frame rendered from the cache equals one rendered live."""
        while self.t < t - 1e-9:
            self.step()
        return self.snapshot()

    def snapshot(self) -> dict:
        sigma = self.q[0] * np.float32(EXTINCTION_M2_PER_G)
        if not sigma.any():
            return dict(empty=np.ones(1, np.uint8), t=np.array([self.t]), w=np.array(self.coord_weights()))
        return dict(sigma=sigma.astype(np.float16), coords=self.q[2:8].astype(np.float16),
                    t=np.array([self.t]), w=np.array(self.coord_weights()))


    def mass_g(self) -> float:
        return float(self.q[0].sum(dtype=np.float64)) * self.grid.h ** 3

    def extent(self, threshold_g: float = 1.0) -> dict:
        """Where the cloud is: its reach along the ground and its height (m)."""
        d = self.q[0]
        g = self.grid
        cen = 0.5 * (self.fr.box_lo + self.fr.box_hi)
        if not (d > threshold_g).any():
            return dict(front_m=0.0, height_m=0.0, width_m=0.0)
        low = d[:, : max(1, int(2.0 / g.h) + 1)].max(axis=1) > threshold_g          # (nz, nx) near ground
        kz, ix = np.nonzero(low)
        x = g.origin[0] + (ix + 0.5) * g.h
        z = g.origin[2] + (kz + 0.5) * g.h
        front = float(np.hypot(x - cen[0], z - cen[2]).max()) if len(x) else 0.0
        cols = (d > threshold_g).any(axis=(0, 2))
        height = float((np.nonzero(cols)[0].max() + 1) * g.h)
        width = float(x.max() - x.min() + g.h) if len(x) else 0.0
        return dict(front_m=round(front, 2), height_m=round(height, 2), width_m=round(width, 2))


def dust_frame(state: dict, grid: Grid, sun_dir: np.ndarray) -> DustFrame:
    """A stored dust state, lit: optical depths toward the sun and the sky.

    The grid cannot resolve the few-centimetre lit skin of a dense cloud: a cell-centred
    optical depth would put every visible surface in shadow. Light is attenuated
    through a saturated extinction instead, so the sunlit side glows and the shadow
    builds up over metres, as it does in footage."""
    shape = grid.shape
    if "empty" in state:
        z = np.zeros(shape, np.float32)
        return DustFrame(z, z, z, np.zeros((2, 3) + shape, np.float32), tuple(state["w"]), float(state["t"][0]))
    sigma = state["sigma"].astype(np.float32)
    s_light = (LIGHT_SIGMA_CAP * (1.0 - np.exp(-sigma / LIGHT_SIGMA_CAP))).astype(np.float32)
    tau_sun = np.empty_like(sigma)
    tau_sky = np.empty_like(sigma)
    d = np.asarray(sun_dir, float)
    K.sun_depth(s_light, tau_sun, d / np.linalg.norm(d), grid.h)
    K.sky_depth(s_light, tau_sky, grid.h)
    coords = state["coords"].astype(np.float32).reshape((2, 3) + shape)
    return DustFrame(sigma, tau_sun, tau_sky, coords, tuple(state["w"]), float(state["t"][0]))
