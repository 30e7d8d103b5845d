"""Simulation stage: the collapse as rigid bodies in MuJoCo, at real scale, g = 9.81 m/s^2.

Every piece is a free body with a convex mesh (shrunk 1.5 cm so touching neighbours
start without contacts). Three states a piece can be in:
- held: kinematically at its pose (the intact building before activation, and sleeping
  pieces). Held pieces are reset to their pose each step, so an intact building neither
  sags nor jitters, as a soft weld to the world would let it.
- clustered: welded to its cluster's anchor piece (a star of MuJoCo weld equalities),
  so a cluster falls as one block; a weld breaks when its force exceeds the material's
  bond strength times the piece's weight, and a piece cut off from its anchor in the
  bond graph is let go, so blocks crumble from where they hit.
- free: plain rigid body.
The style only decides when which pieces are released and with what initial motion:
it is an activation timeline, the physics does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from derrumbe.materials import Material
from derrumbe.stages.camera import STOREY_M
from derrumbe.stages.fracture import PART_CORE, PART_FACADE, Fracture

G = 9.81
SHRINK_M = 0.015
SIM_HZ = 240.0

# What happened during the collapse, one record per event, sorted by time: the dust is
# sourced from these (and only these). t: s; pos: world m (x right, y up, z toward the
# camera, street at y = 0) where it happened; vel: m/s of the body involved at that
# moment; energy: J dissipated or released by the event; mass: kg of the body involved;
# piece: a leaf piece index or -1.
EVENT_DTYPE = np.dtype([("t", "f8"), ("pos", "f4", 3), ("vel", "f4", 3), ("energy", "f4"),
                        ("mass", "f4"), ("kind", "i1"), ("piece", "i4")])
# BREAK: a connection failed (a cluster split); IMPACT: body-body hit; GROUND: a hit on the
# street; CRUSH: a storey crushed by the block above (energy = potential energy released).
EV_BREAK, EV_IMPACT, EV_GROUND, EV_CRUSH = 0, 1, 2, 3


@dataclass
class SimResult:
    times: np.ndarray        # (T,) seconds
    pos: np.ndarray          # (T, N, 3) body origin in the world
    quat: np.ndarray         # (T, N, 4) w, x, y, z
    dissipated: np.ndarray   # (T,) J of mechanical energy lost since the previous sample
    released: np.ndarray     # (N,) time each piece was first let go (inf = never)
    mass: np.ndarray         # (N,)
    info: dict
    breaks: np.ndarray = None  # (B, 2) time and piece of every bond failure
    events: np.ndarray = None  # EVENT_DTYPE records sorted by t (dust comes from these)


@dataclass
class Release:
    time: float
    pieces: np.ndarray           # indices
    clustered: bool              # keep cluster welds on (falls as a block)
    lin_vel: np.ndarray          # (k, 3) world
    ang_vel: np.ndarray          # (k, 3) world (= local at rest)


def _mjcf(fr: Fracture, mat: Material, dt: float) -> str:
    assets, bodies = [], []
    for i in range(fr.n):
        v = fr.verts[i].astype(np.float64)
        r = np.linalg.norm(v, axis=1)
        v = v * np.clip(1.0 - SHRINK_M / np.maximum(r, 1e-3), 0.5, 1.0)[:, None]
        assets.append(f'<mesh name="m{i}" vertex="{" ".join(f"{x:.4f}" for x in v.ravel())}"/>')
        c = fr.centroid[i]
        rho = mat.density * max(0.05, fr.inside[i])
        bodies.append(f'<body name="p{i}" pos="{c[0]:.5f} {c[1]:.5f} {c[2]:.5f}"><freejoint/>'
                      f'<geom type="mesh" mesh="m{i}" density="{rho:.2f}"/></body>')
    return f"""<mujoco>
  <compiler inertiafromgeom="true"/>
  <option timestep="{dt:.7f}" gravity="0 {-G} 0" integrator="implicitfast" cone="pyramidal"
          solver="Newton" iterations="20" ls_iterations="6" jacobian="sparse"/>
  <default><geom friction="{mat.friction} 0.01 0.001" condim="3" solref="0.006 1" solimp="0.9 0.99 0.002"/></default>
  <asset>{''.join(assets)}</asset>
  <worldbody>
    <geom name="ground" type="plane" size="1000 1000 1" quat="0.70710678 -0.70710678 0 0"/>
    {''.join(bodies)}
  </worldbody>
  <equality>{{welds}}</equality>
</mujoco>"""


def plan_releases(fr: Fracture, style: str, direction: str, start: float, seed: int) -> list:
    """The activation timeline of a style."""
    rng = np.random.default_rng(seed + 101)
    c = fr.centroid
    H = fr.box_hi[1]
    x_mid = 0.5 * (fr.box_lo[0] + fr.box_hi[0])
    z_mid = 0.5 * (fr.box_lo[2] + fr.box_hi[2])
    n = fr.n
    releases = []
    zero = lambda k: np.zeros((k, 3))

    def cluster_motion(idx, omega, pivot):
        r = c[idx] - pivot
        return np.cross(omega, r), np.broadcast_to(omega, (len(idx), 3)).copy()

    if style == "implosion":
        y_fail = max(STOREY_M * 1.2, 0.18 * H)
        fail = np.nonzero(c[:, 1] < y_fail)[0]
        upper = np.nonzero(c[:, 1] >= y_fail)[0]
        # The base fails from the ground up within a quarter second; the front wall blows out.
        t = start + 0.25 * c[fail, 1] / y_fail + rng.uniform(0, 0.05, len(fail))
        for k, i in enumerate(fail):
            out = 1.5 + 2.5 * rng.random() if fr.part[i] == PART_FACADE else 0.0
            v = np.array([rng.normal(0, 0.6), rng.normal(0.2, 0.4), out + rng.normal(0, 0.4)])
            v[0] += -0.8 * np.sign(c[i, 0] - x_mid) * (fr.part[i] == PART_CORE)   # folds in
            releases.append(Release(t[k], np.array([i]), False, v[None], rng.normal(0, 1.5, (1, 3))))
        # The upper part drops as a block, tilting a few degrees.
        tilt = np.array([rng.normal(0, 0.02), 0.0, rng.choice([-1, 1]) * rng.uniform(0.04, 0.08)])
        lv, av = cluster_motion(upper, tilt, np.array([x_mid, y_fail, z_mid]))
        releases.append(Release(start + 0.12, upper, True, lv, av))
    elif style == "topple":
        sign = {"left": -1.0, "right": 1.0, "toward": 1.0, "away": -1.0}[direction]
        lateral = direction in ("left", "right")
        y_cut = max(STOREY_M, 0.15 * H)
        coord = c[:, 0] - x_mid if lateral else c[:, 2] - z_mid
        low = c[:, 1] < y_cut
        wedge = np.nonzero(low & (coord * sign > -0.1 * abs(coord).max()))[0]
        hinge = np.nonzero(low & ~np.isin(np.arange(n), wedge))[0]
        upper = np.nonzero(~low)[0]
        for i in wedge:
            releases.append(Release(start + rng.uniform(0, 0.15), np.array([i]), False,
                                    rng.normal(0, 0.5, (1, 3)), rng.normal(0, 1.0, (1, 3))))
        if lateral:
            pivot = np.array([fr.box_lo[0] if sign > 0 else fr.box_hi[0], y_cut, z_mid])
            omega = np.array([0.0, 0.0, -0.35 * sign])
        else:
            pivot = np.array([x_mid, y_cut, fr.box_lo[2] if sign > 0 else fr.box_hi[2]])
            omega = np.array([0.35 * sign, 0.0, 0.0])
        lv, av = cluster_motion(upper, omega, pivot)
        releases.append(Release(start + 0.1, upper, True, lv, av))
        releases.append(Release(start + 1.4, hinge, False, zero(len(hinge)), zero(len(hinge))))
    elif style == "facade":
        fac = np.nonzero(fr.part == PART_FACADE)[0]
        band = np.floor(c[fac, 1] / (2 * STOREY_M)).astype(int)
        top = band.max()
        for b in range(top, -1, -1):
            idx = fac[band == b]
            if not len(idx):
                continue
            # Each band of the wall hinges outward about its own foot, top bands first.
            pivot = np.array([x_mid, c[idx, 1].min(), fr.facade_z])
            omega = np.array([0.5 + 0.3 * rng.random(), 0.0, rng.normal(0, 0.05)])
            lv, av = cluster_motion(idx, omega, pivot)
            releases.append(Release(start + 0.3 * (top - b) + rng.uniform(0, 0.1), idx, True, lv, av))
    else:
        raise ValueError(style)
    releases.sort(key=lambda r: r.time)
    return releases


def cluster_anchors(fr: Fracture) -> np.ndarray:
    """Anchor of each piece's cluster: the piece nearest the cluster's centroid."""
    anchor = np.full(fr.n, -1)
    for cl in np.unique(fr.cluster):
        idx = np.nonzero(fr.cluster == cl)[0]
        anchor[idx] = idx[np.argmin(((fr.centroid[idx] - fr.centroid[idx].mean(0)) ** 2).sum(1))]
    return anchor


def build_model(fr: Fracture, mat: Material, dt: float, anchor: np.ndarray) -> tuple[mujoco.MjModel, np.ndarray]:
    """The MuJoCo model of the pieces; returns it and each piece's weld index (-1: anchor)."""
    weld_of = np.full(fr.n, -1)
    welds = []
    for i in range(fr.n):
        if anchor[i] != i:
            weld_of[i] = len(welds)
            welds.append(f'<weld name="w{i}" body1="p{i}" body2="p{anchor[i]}" active="false" solref="0.01 1"/>')
    xml = _mjcf(fr, mat, dt).replace("{welds}", "".join(welds))
    return mujoco.MjModel.from_xml_string(xml), weld_of


def simulate(fr: Fracture, mat: Material, style: str, direction: str, start: float, duration: float,
             sample_hz: float, seed: int, progress=None, releases: list | None = None) -> SimResult:
    """Runs the collapse; `releases` replaces the style's timeline (tests drop single pieces)."""
    steps_per_sample = max(1, int(np.ceil(SIM_HZ / sample_hz)))
    dt = 1.0 / (sample_hz * steps_per_sample)
    anchor = cluster_anchors(fr)
    if releases is None:
        releases = plan_releases(fr, style, direction, start, seed)
    n = fr.n
    # One weld per non-anchor piece to its cluster's anchor; all off until released.
    model, weld_of = build_model(fr, mat, dt, anchor)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    mass = model.body_mass[1:].copy()
    qadr = model.jnt_qposadr[:n]
    vadr = model.jnt_dofadr[:n]
    rest_q = data.qpos.copy()

    held = np.ones(n, bool)          # kinematically held (intact, or asleep)
    held_q = rest_q.copy()
    in_cluster = np.zeros(n, bool)
    released_at = np.full(n, np.inf)
    slow_since = np.full(n, np.inf)
    limit = mat.bond_g * mass * G    # weld force at which a piece breaks off
    bond_pairs = fr.bonds
    same_cluster = fr.cluster[bond_pairs[:, 0]] == fr.cluster[bond_pairs[:, 1]]
    cl_bonds = bond_pairs[same_cluster]

    n_samples = int(round(duration * sample_hz)) + 1
    times = np.arange(n_samples) / sample_hz
    pos = np.empty((n_samples, n, 3), np.float32)
    quat = np.empty((n_samples, n, 4), np.float32)
    dissipated = np.zeros(n_samples, np.float32)
    lin_vel = np.zeros((n_samples, n, 3), np.float32)       # for the event log
    clustered = np.zeros((n_samples, n), bool)
    xpos0 = data.xpos[1:].astype(np.float32)
    xquat0 = data.xquat[1:].astype(np.float32)

    def energy():
        v = data.qvel.reshape(n, 6)[:, :3]
        return float((0.5 * mass * (v * v).sum(1)).sum() + (mass * G * data.xpos[1:, 1]).sum())

    def hold_indices(mask):
        idx = np.nonzero(mask)[0]
        q = (qadr[idx, None] + np.arange(7)).ravel()
        v = (vadr[idx, None] + np.arange(6)).ravel()
        return q, v

    def reconnect():
        """Pieces of a cluster no longer joined to their anchor through intact welds go free."""
        live = in_cluster | (anchor == np.arange(n))
        ok = live[cl_bonds[:, 0]] & live[cl_bonds[:, 1]]
        e = cl_bonds[ok]
        g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        lost = in_cluster & (comp != comp[anchor])
        if lost.any():
            model.eq_active0[weld_of[lost]] = 0
            data.eq_active[weld_of[lost]] = 0
            in_cluster[lost] = False
            breaks.extend((data.time, i) for i in np.nonzero(lost)[0])
        return int(lost.sum())

    next_rel = 0
    k0 = int(np.searchsorted(times, releases[0].time if releases else duration + 1))
    pos[:k0] = xpos0
    quat[:k0] = xquat0
    data.time = times[k0 - 1] if k0 > 0 else 0.0
    e_prev = energy()
    broken = 0
    breaks: list = []
    sleeping_events = 0
    hq, hv = hold_indices(held)
    for k in range(max(k0, 0), n_samples):
        t_target = times[k]
        while data.time < t_target - 1e-9:
            dirty = False
            while next_rel < len(releases) and releases[next_rel].time <= data.time + 1e-9:
                r = releases[next_rel]
                idx = r.pieces
                held[idx] = False
                released_at[idx] = np.minimum(released_at[idx], data.time)
                for j, i in enumerate(idx):
                    data.qvel[vadr[i]:vadr[i] + 3] = r.lin_vel[j]
                    data.qvel[vadr[i] + 3:vadr[i] + 6] = r.ang_vel[j]
                if not r.clustered:
                    breaks.extend((data.time, i) for i in idx)
                if r.clustered:
                    members = idx[weld_of[idx] >= 0]
                    members = members[np.isin(anchor[members], idx)]
                    data.eq_active[weld_of[members]] = 1
                    in_cluster[members] = True
                next_rel += 1
                dirty = True
            if dirty:
                hq, hv = hold_indices(held)
            mujoco.mj_step(model, data)
            if len(hq):
                data.qpos[hq] = held_q[hq]
                data.qvel[hv] = 0.0
            # Welds carrying more than their bond strength break.
            if in_cluster.any():
                rows = np.nonzero(data.efc_type[:data.nefc] == mujoco.mjtConstraint.mjCNSTR_EQUALITY)[0]
                if len(rows):
                    ids = data.efc_id[rows]
                    f = np.zeros(model.neq)
                    np.add.at(f, ids, data.efc_force[rows] ** 2)
                    welded = np.nonzero(in_cluster)[0]
                    over = welded[np.sqrt(f[weld_of[welded]]) > limit[welded]]
                    if len(over):
                        data.eq_active[weld_of[over]] = 0
                        in_cluster[over] = False
                        breaks.extend((data.time, i) for i in over)
                        broken += len(over) + reconnect()
        # Sleep: free pieces that stayed slow for half a second are held where they lie;
        # anything fast nearby wakes them again.
        v = data.qvel.reshape(n, 6)
        speed = np.linalg.norm(v[:, :3], axis=1)
        spin = np.linalg.norm(v[:, 3:], axis=1)
        active = ~held & ~in_cluster & np.isfinite(released_at)
        slow = active & (speed < 0.12) & (spin < 0.4)
        slow_since[~slow] = np.inf
        slow_since[slow & ~np.isfinite(slow_since)] = data.time
        asleep = slow & (data.time - slow_since > 0.5)
        fast = ~held & (speed > 2.0)
        wake = np.zeros(n, bool)
        sleepers = np.nonzero(held & np.isfinite(released_at))[0]
        if fast.any() and len(sleepers):
            tree = cKDTree(data.xpos[1:][sleepers])
            for hits in tree.query_ball_point(data.xpos[1:][fast], r=2.5):
                wake[sleepers[hits]] = True
        if asleep.any() or wake.any():
            held[asleep] = True
            sleeping_events += int(asleep.sum())
            q, _ = hold_indices(asleep)
            held_q[q] = data.qpos[q]
            held[wake] = False
            hq, hv = hold_indices(held)
        pos[k] = data.xpos[1:]
        quat[k] = data.xquat[1:]
        lin_vel[k] = v[:, :3]
        clustered[k] = in_cluster
        e = energy()
        dissipated[k] = max(0.0, e_prev - e)
        e_prev = e
        if progress:
            progress(k + 1, n_samples)
    info = dict(pieces=n, dt=dt, welds=int((weld_of >= 0).sum()), broken_welds=int(broken), sleep_events=sleeping_events,
                released=int(np.isfinite(released_at).sum()))
    breaks = np.array(breaks, np.float64).reshape(-1, 2)
    events = stand_in_events(times, pos, lin_vel, clustered, mass, fr.volume, breaks)
    info["events"] = {name: int((events["kind"] == k).sum())
                      for name, k in (("break", EV_BREAK), ("impact", EV_IMPACT), ("ground", EV_GROUND),
                                      ("crush", EV_CRUSH))}
    return SimResult(times, pos, quat, dissipated, released_at, mass, info, breaks, events)


MAX_LOSS_EVENTS = 12_000


def stand_in_events(times, pos, vel, clustered, mass, volume, breaks) -> np.ndarray:
    """The event list recovered from the sampled motion (a stand-in until the solver
    records its contacts itself): every bond failure; each piece's loss of mechanical
    energy between two samples as an impact (on the street when the piece is down on
    it); and a crushed storey each time the building's centre of mass has come down half
    a storey (the potential energy that releases)."""
    ev = []
    r = np.cbrt(3 * np.maximum(volume, 1e-6) / (4 * np.pi))
    for t, i in breaks:
        k = min(int(np.searchsorted(times, t)), len(times) - 1)
        i = int(i)
        ev.append((t, pos[k, i], vel[k, i], 0.5 * mass[i] * float((vel[k, i] ** 2).sum()), mass[i], EV_BREAK, i))
    e = 0.5 * mass * (vel.astype(np.float64) ** 2).sum(2) + mass * G * pos[:, :, 1]
    loss = np.maximum(e[:-1] - e[1:], 0.0)
    moving = np.linalg.norm(vel[:-1], axis=2) > 0.3
    loss[~moving] = 0.0
    if loss.any():
        # The largest losses, down to a floor: a few thousand events carry nearly all of it.
        flat = loss.ravel()
        keep = min(MAX_LOSS_EVENTS, int((flat > 0).sum()))
        floor = max(np.partition(flat, len(flat) - keep)[len(flat) - keep], 1e-3 * flat.max())
        kk, ii = np.nonzero(loss >= floor)
        for k, i in zip(kk, ii):
            p = pos[k + 1, i]
            kind = EV_GROUND if p[1] < r[i] + 0.4 else EV_IMPACT
            ev.append((times[k + 1], p, vel[k, i], loss[k, i], mass[i], kind, i))
    # Crushing: in a pancake collapse each crushed storey lowers the building's centre of
    # mass by half a storey, releasing M g (storey / 2); the crushing happens where the
    # falling mass meets what is below it (the bottom of the falling pieces).
    m_all = float(mass.sum())
    com = (mass[None, :] * pos[:, :, 1]).sum(1) / m_all
    y_done = com[0]
    for k in range(1, len(times)):
        while y_done - com[k] >= 0.5 * STOREY_M:
            y_done -= 0.5 * STOREY_M
            fall = vel[k, :, 1] < -1.0
            if fall.sum() < 3:
                fall = np.ones(len(mass), bool)
            m = mass[fall]
            p = (m[:, None] * pos[k, fall]).sum(0) / m.sum()
            p[1] = float(np.percentile(pos[k, fall, 1], 10))
            v = (m[:, None] * vel[k, fall]).sum(0) / m.sum()
            ev.append((times[k], p, v, m_all * G * 0.5 * STOREY_M, float(m.sum()), EV_CRUSH, -1))
    out = np.array(ev, EVENT_DTYPE) if ev else np.zeros(0, EVENT_DTYPE)
    return out[np.argsort(out["t"], kind="stable")]
