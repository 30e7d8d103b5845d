"""Simulation stage: the collapse as a destruction hierarchy of rigid bodies, at real scale.

Every intact group of fragments is ONE rigid body made of its fragments' convex hulls:
while the building stands, each cluster is a fixed body; a style (collapse_styles.py)
decides which groups let go when, and with what motion. From then on a group breaks into
its children (block > storeys > clusters > pieces > fragments) when a single contact gives
it an impulse worth more than its level's break speed (materials.py); the children keep
the parent's motion exactly (v + w x r, same spin), so a split neither adds nor removes
energy. The child nearest the blow is damaged and, on a hard enough blow, shatters a
level further at once, so high-energy impacts go down to fragments. Fragments that are
hit harder still spall grit (the particles stage). Bodies that stay slow for half a
second are frozen where they lie: a settled pile costs nothing.

Everything that matters to the dust and the particles is recorded as an event: each
break, each hard contact (with the street or with another body) and each storey crushed,
with its place, the body's velocity and mass, and the energy it released.

A step in which the engine meets a non-finite state is an instability: the shot is
simulated again with half the step, twice at most, and then fails with one line. Nothing
unstable is ever returned (so nothing unstable is ever cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from derrumbe.engines.rapier import DYNAMIC, FIXED, KINEMATIC, RapierWorld, Unstable, quat_to_matrix
from derrumbe.errors import DerrumbeError
from derrumbe.materials import GLASS_BREAK_SPEED, Material
from derrumbe.stages.fracture import Fracture
from derrumbe.stages.structure import GLASS, SLAB

G = 9.81
SHRINK_M = 0.012             # collision hulls shrink this much, so touching neighbours start apart
STEP_HZ = 96.0               # solver rate before the instability retries halve the step
SOLVER_ITERATIONS = 2        # Rapier's substeps a step: 192 Hz inside (measured: 4 gave the same piles)
EVENT_GAP_S = 0.1          # at most one contact event a body in this long
EVENT_DV = 1.5               # m/s: a contact that changes a body's speed less than this is not an event
SLEEP_SPEED, SLEEP_SPIN, SLEEP_GAIN, SLEEP_S = 0.3, 1.0, 0.08, 0.25
FREEZE_OVERLAP_M = 0.01
WAKE_GAP_M = 0.05            # wake_near: bounding spheres this close may be resting on each other
LODGED_M = 0.02              # a body that moves less than this in LODGED_S is lodged where it is
LODGED_S = 0.75
# Broken masonry and concrete do not roll: a lump tumbling edge over edge loses most of its
# spin at every face it lands on (a cube keeps a quarter of it), and what lands on the
# street grinds and skids to a stop. The solver's convex hulls roll on like wheels (one
# ran 10 m along the street at 5 m/s, past the lens of img_190), so a body on the street
# is slowed as by a tumbling friction of this many g.
TUMBLE_DECEL_G = 0.5
TUMBLE_REACH_M = 1.5         # lumps only: a slab or a block of wall bigger than this slides, it does not roll
LEVELS = ("block", "storey", "cluster", "piece", "fragment")
MAX_RETRIES = 2
# Damage a break leaves in the parts: the part that took the blow is cracked through,
# its neighbours a little; a cracked part breaks at a lower speed next time.
DAMAGE_HIT, DAMAGE_NEAR, DAMAGE_MAX = 0.25, 0.05, 0.45
GLASS_DELAY_S = (0.02, 0.4)   # a pane goes this long after the walls around it first move
RACK_MS = 0.5                 # walls moving this fast against each other rack the window frame between
GLASS_KICK = (0.8, 3.5)       # m/s out of the opening: the racking frame and the air blow panes out
GLASS_SPIN = 5.0              # rad/s: shards tumble (each turn flashes the sun)

EVENT_DTYPE = np.dtype([("t", "f8"), ("pos", "f4", 3), ("vel", "f4", 3), ("energy", "f4"),
                        ("mass", "f4"), ("kind", "i1"), ("piece", "i4")])
EV_BREAK, EV_IMPACT, EV_GROUND, EV_CRUSH = 0, 1, 2, 3
EV_SINK = 4         # a blown base closing under the block as it comes down from rest
BLOW_MARGIN_M = 2.0            # a contact point further than this beyond a body's pieces is not on it
# The fastest anything moves in a collapse: its fall from the roof plus the strongest
# charge's kick (topple's 6 m/s and its scatter), and upward no more than a bounce or a
# charge gives. Faster is the solver's doing, not the building's: a 5 kg shard squeezed
# between two 900 kg pieces came out at 50 m/s, and a slab resting on the pile whose
# contact with the street was reported 1168 m deep left at 77 m/s and ended 139 m up.
KICK_MAX_MS = 12.0
UP_SHARE, UP_KICK_MS = 0.35, 2.5


@dataclass
class SimResult:
    times: np.ndarray        # (T,) seconds
    pos: np.ndarray          # (T, N, 3) each fragment's body-frame origin (its rest centroid) in the world
    quat: np.ndarray         # (T, N, 4) w, x, y, z
    dissipated: np.ndarray   # (T,) J of mechanical energy (rotation included) lost since the previous sample
    released: np.ndarray     # (N,) time each fragment first moved (inf = never)
    mass: np.ndarray         # (N,) kg
    info: dict
    events: np.ndarray = field(default_factory=lambda: np.zeros(0, EVENT_DTYPE))
    final_body: np.ndarray = None   # (N,) which body each fragment ends in: the final debris sizes
    hidden: np.ndarray = None       # (N,) time a fragment was pulverised (gone to dust and grit; inf: never)
    shattered: np.ndarray = None    # (N,) time a pane's fragment left its frame as a shard (inf: never, or not glass)

    def visible(self, t: float) -> np.ndarray:
        return np.ones(self.pos.shape[1], bool) if self.hidden is None else self.hidden > t

    @property
    def breaks(self) -> np.ndarray:
        """(B, 2) time and fragment of every break, for consumers that want only those."""
        e = self.events[self.events["kind"] == EV_BREAK]
        return np.stack([e["t"], e["piece"].astype(np.float64)], 1) if len(e) else np.zeros((0, 2))


@dataclass
class Body:
    level: int               # index into LEVELS: what this group is
    leaves: np.ndarray       # fragment indices
    role: str                # collision role (engines/rapier.py)
    mode: str                # FIXED, DYNAMIC or KINEMATIC
    com: np.ndarray          # rest centre of mass: the body's frame origin at rest
    mass: float
    damage: float = 0.0      # 0..1: a damaged group breaks at a lower speed
    slow_since: float = np.inf
    last_event: float = -np.inf
    crushed: bool = False    # already broken by a crush front (it breaks once there)
    slow_speed: float = np.inf
    reach: float = 1.0       # m from its centre of mass to its farthest fragment's edge
    anchor: np.ndarray = None    # where it was when it last moved more than LODGED_M, and when
    anchor_t: float = 0.0
    # A kinematic body is driven by its plan and touches nothing, so it never enters the
    # engine (thousands of colliders the broad phase would otherwise track every step);
    # the plan sets its transform and velocity.
    v: np.ndarray = field(default_factory=lambda: np.zeros(3))
    w: np.ndarray = field(default_factory=lambda: np.zeros(3))


class Destruction:
    """The solver's state: bodies of fragment groups in one engine world."""

    def __init__(self, fr: Fracture, mat: Material, dt: float, fault: Callable | None = None, iterations: int = 2,
                 obstacles=()):
        self.fr, self.mat, self.dt = fr, mat, dt
        self.world = RapierWorld(dt, mat.friction, mat.restitution, EVENT_DV, iterations)
        for lo, hi in obstacles:
            self.world.add_obstacle(lo, hi)
        self.mass = (mat.density * fr.volume * np.clip(fr.inside, 0.2, 1.0)).astype(np.float64)
        self.extent = fr.extent
        self.hulls = [_shrunk(fr.centroid[i] + fr.verts[i].astype(np.float64)) for i in range(fr.n)]
        self.bodies: dict[int, Body] = {}
        self.body_of = np.full(fr.n, -1)
        self.R: dict[int, np.ndarray] = {}
        self.t: dict[int, np.ndarray] = {}
        self.time = 0.0
        self.released = np.full(fr.n, np.inf)
        self.hidden = np.full(fr.n, np.inf)
        self.shattered = np.full(fr.n, np.inf)
        self.gone: dict[int, tuple] = {}        # pulverised fragments' last transform
        self.events: list = []
        self.sinks = 0
        self.fault = fault
        self.counts = dict(splits=0, spalls=0, frozen=0, crushes=0, clamped=0)
        v_fall = float(np.sqrt(2 * G * max(float(fr.floor_y[-1]), 1.0)))
        self.v_max, self.v_up = v_fall + KICK_MAX_MS, UP_SHARE * v_fall + UP_KICK_MS
        self.glass = fr.element_kind == GLASS
        self.mechanical = 0.0

    # ---- groups -----------------------------------------------------------------------
    def children(self, level: int, leaves: np.ndarray) -> tuple[int, list]:
        """The first level below `level` at which the group falls into more than one part."""
        fr = self.fr
        keys = (None, fr.storey, fr.cluster, fr.piece, None)
        for lv in range(level + 1, len(LEVELS)):
            if lv == len(LEVELS) - 1:
                return lv, [np.array([i]) for i in leaves]
            k = keys[lv][leaves]
            parts = [leaves[k == u] for u in np.unique(k)]
            if len(parts) > 1:
                return lv, parts
        return len(LEVELS) - 1, [np.array([i]) for i in leaves]

    def add(self, leaves: np.ndarray, level: int, mode: str, role: str, R=None, t=None,
            linvel=(0, 0, 0), angvel=(0, 0, 0), damage: float = 0.0) -> int:
        R = np.eye(3) if R is None else np.asarray(R, float)
        t = np.zeros(3) if t is None else np.asarray(t, float)
        leaves = np.asarray(leaves)
        m = self.mass[leaves]
        com = (self.fr.centroid[leaves] * m[:, None]).sum(0) / m.sum()
        if mode == KINEMATIC:
            key = self.world.reserve_key()
        else:
            key = self.world.add_body([self.hulls[i] for i in leaves], com, m, mode, role, R, t, linvel, angvel)
        reach = float((np.linalg.norm(self.fr.centroid[leaves] - com, axis=1) + self.extent[leaves]).max())
        self.bodies[key] = Body(level, leaves, role, mode, com, float(m.sum()), damage, reach=reach,
                                v=np.asarray(linvel, float), w=np.asarray(angvel, float))
        self.body_of[leaves] = key
        self.R[key], self.t[key] = R, t
        if mode != FIXED:
            self.released[leaves] = np.minimum(self.released[leaves], self.time)
        return key

    def remove(self, key: int) -> Body:
        if self.bodies[key].mode != KINEMATIC:
            self.world.remove_body(key)
        self.R.pop(key)
        self.t.pop(key)
        return self.bodies.pop(key)

    def drive(self, key: int, R: np.ndarray, t: np.ndarray, v: np.ndarray, w: np.ndarray) -> None:
        """Places a kinematic body (its plan's motion)."""
        b = self.bodies[key]
        self.R[key], self.t[key], b.v, b.w = R, t, np.asarray(v, float), np.asarray(w, float)

    def motion(self, key: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """R, t, linear velocity of the centre of mass, angular velocity, and that centre."""
        b = self.bodies[key]
        if b.mode == KINEMATIC:
            R, t = self.R[key], self.t[key]
            return R, t, b.v, b.w, R @ b.com + t
        if b.mode == FIXED:
            R, t = self.R[key], self.t[key]
            return R, t, np.zeros(3), np.zeros(3), R @ b.com + t
        R, t = self.world.transform(key)
        v, w = self.world.velocity(key)
        return R, t, v, w, self.world.centre_of_mass(key)

    def detach(self, leaves: np.ndarray, level: int, mode: str, role: str, linvel=None, angvel=None) -> int:
        """Takes fragments out of the bodies they belong to (which live on with the rest)
        and makes them one body of their own. Without a velocity it keeps the motion of
        the body it came from."""
        leaves = np.asarray(leaves)
        R = t = v0 = w0 = x0 = None
        for key in np.unique(self.body_of[leaves]):
            body = self.bodies[key]
            R_, t_, v_, w_, x_ = self.motion(key)
            if R is None:
                R, t, v0, w0, x0 = R_, t_, v_, w_, x_
            gone = np.isin(body.leaves, leaves)
            if gone.all():
                self.remove(key)
                continue
            if body.mode != KINEMATIC:
                self.world.remove_colliders(key, np.nonzero(gone)[0])
            body.leaves = body.leaves[~gone]
            body.mass = float(self.mass[body.leaves].sum())
        m = self.mass[leaves]
        c = R @ ((self.fr.centroid[leaves] * m[:, None]).sum(0) / m.sum()) + t
        lv = v0 + np.cross(w0, c - x0) if linvel is None else np.asarray(linvel, float)
        av = w0 if angvel is None else np.asarray(angvel, float)
        return self.add(leaves, level, mode, role, R, t, lv, av)

    def split(self, key: int, hit: np.ndarray | None = None, dv: float = 0.0, kick=None, full: bool = False,
              shatter: bool = False) -> list[int]:
        """Breaks a body. A blow cracks it into a few parts (more, the harder it is) along
        its children's boundaries, centred on the point hit; the part that took the blow
        is damaged and, on a blow well past its strength, shatters (`shatter`): into as
        many parts as the blow's energy is over what breaks it, fine where it struck and
        coarser away from it. `full` (charges, the crush front) separates every child at
        once. The parts keep the body's motion exactly."""
        body = self.bodies[key]
        R, t, v, w, x = self.motion(key)
        child_level, parts = self.children(body.level, body.leaves)
        level = [child_level] * len(parts)
        strength = self.strength(key)
        self.remove(key)
        self.counts["splits"] += 1
        cents = [self.fr.centroid[p].mean(0) for p in parts]
        hit_rest = np.linalg.solve(R, hit - t) if hit is not None else None
        if not full and len(parts) > 2:
            n_groups = _shatter_parts(dv, strength, len(parts)) if shatter else \
                int(np.clip(round(1 + dv / max(strength, 1e-3)), 2, min(5, len(parts))))
            parts, level = self._crack(parts, np.array(cents), n_groups, hit_rest, body.level, child_level)
        nearest = None
        if hit_rest is not None:
            d = [np.min(np.linalg.norm(self.fr.centroid[p] - hit_rest, axis=1)) for p in parts]
            nearest = int(np.argmin(d))
        self._event(EV_BREAK, x, v, 0.5 * body.mass * dv * dv, body.mass, body.leaves[0])
        out = []
        for j, (p, lv_) in enumerate(zip(parts, level)):
            m = self.mass[p]
            c = R @ ((self.fr.centroid[p] * m[:, None]).sum(0) / m.sum()) + t
            lv = v + np.cross(w, c - x)
            if kick is not None:
                lv = lv + kick(p, c)
            dmg = min(DAMAGE_MAX, body.damage + (DAMAGE_HIT if j == nearest else DAMAGE_NEAR))
            role = "debris" if body.role == "tipping" else body.role
            k = self.add(p, lv_, DYNAMIC, role, R, t, lv, w, dmg)
            if j == nearest and lv_ < len(LEVELS) - 1 and dv > 2.0 * self.strength(k):
                out += self.split(k, hit, dv, shatter=True)
            else:
                out.append(k)
        return out

    def _crack(self, parts, cents, n_groups, hit_rest, parent_level, child_level):
        """Groups the children into a few connected chunks: Voronoi regions of seeds
        scattered from the point hit (or the middle), so cracks run from the blow."""
        # Seeded by the blows so far: a sink is no blow (recording one must not change
        # how the walls crack).
        rng = np.random.default_rng((len(self.events) - self.sinks) * 7919 + len(parts))
        centre = hit_rest if hit_rest is not None else cents.mean(0)
        span = np.ptp(cents, axis=0).max() + 1e-6
        seeds = centre + rng.normal(0, 0.5 * span, (n_groups, 3))
        seeds[0] = centre
        lab = np.argmin(((cents[:, None] - seeds[None]) ** 2).sum(-1), axis=1)
        groups, levels = [], []
        for g in np.unique(lab):
            members = [parts[i] for i in np.nonzero(lab == g)[0]]
            groups.append(np.concatenate(members))
            levels.append(child_level if len(members) == 1 else parent_level)
        return groups, levels

    def pulverise(self, key: int, vel) -> None:
        """A fragment ground to dust and grit under a crushing block: it leaves the
        simulation (and the picture) and becomes an event the dust and particles use."""
        b = self.bodies[key]
        R, t, v, w, x = self.motion(key)
        self.remove(key)
        self.hidden[b.leaves] = self.time
        self.body_of[b.leaves] = -1
        vel = np.asarray(vel, float)
        self._event(EV_BREAK, x, vel, 0.5 * b.mass * float(vel @ vel) + b.mass * G * 0.5, b.mass, b.leaves[0])
        self.counts["pulverised"] = self.counts.get("pulverised", 0) + len(b.leaves)
        for i in b.leaves:
            self.gone[i] = (R, t)

    def wake_near(self, pos: np.ndarray, gone: np.ndarray) -> None:
        """Frozen bodies that touched fragments now gone (pulverised) wake: they may have
        rested on them. The engine keeps no contacts between two frozen bodies, so this
        looks at the fragments' bounding spheres (pieces of a blown shop front, frozen on
        the wall's foot, hung 3.6 m up once the block had ground that foot away)."""
        if not len(gone):
            return
        frozen = [k for k, b in self.bodies.items() if b.mode == FIXED and b.role != "standing"]
        if not frozen:
            return
        idx = np.nonzero(np.isin(self.body_of, frozen))[0]
        gap = np.linalg.norm(pos[idx, None] - pos[None, gone], axis=2) - self.extent[idx, None] - self.extent[None, gone]
        for k in np.unique(self.body_of[idx[(gap < WAKE_GAP_M).any(axis=1)]]):
            self.wake(int(k))

    def wake(self, key: int) -> None:
        """A frozen body moves again (something drives into it)."""
        self.world.set_mode(key, DYNAMIC)
        self.bodies[key].mode = DYNAMIC
        self.bodies[key].slow_since = np.inf

    def strength(self, key: int) -> float:
        b = self.bodies[key]
        speeds = GLASS_BREAK_SPEED if self.glass[b.leaves].all() else self.mat.break_speed
        base = speeds[max(0, min(len(speeds) - 1, b.level - 1))]
        return base * (1.0 - b.damage)

    # ---- events -----------------------------------------------------------------------
    def _event(self, kind: int, pos, vel, energy: float, mass: float, piece: int) -> None:
        self.events.append((self.time, tuple(map(float, pos)), tuple(map(float, vel)), float(energy),
                            float(mass), kind, int(piece)))

    def crush_event(self, pos, vel, energy: float, mass: float, piece: int, kind: int = EV_CRUSH) -> None:
        self.counts["crushes"] += 1
        self.sinks += kind == EV_SINK
        self._event(kind, pos, vel, energy, mass, piece)

    # ---- stepping ---------------------------------------------------------------------
    def step(self) -> None:
        contacts = self.world.step()
        self.time += self.dt
        if self.fault is not None:
            self.fault(self)
        self._contacts(contacts)

    def _contacts(self, contacts) -> None:
        worst: dict[int, tuple] = {}
        for c in contacts:
            for key, other in ((c.body_a, c.body_b), (c.body_b, c.body_a)):
                if key < 0 or key not in self.bodies or self.bodies[key].mode != DYNAMIC:
                    continue
                dv = c.impulse / self.bodies[key].mass
                if dv < EVENT_DV:
                    continue
                if key not in worst or dv > worst[key][0]:
                    worst[key] = (dv, c, other)
        for key, (dv, c, other) in sorted(worst.items()):
            if key not in self.bodies:
                continue
            if dv > self.v_up and self.clamp(key, *self.world.velocity(key)):
                continue        # the solver's blow, not the building's: no break, no dust
            body = self.bodies[key]
            breaks = body.level < len(LEVELS) - 1 and dv > self.strength(key)
            # A body grinding on the pile reports every step; one event per blow is enough.
            if not breaks and self.time - body.last_event < EVENT_GAP_S:
                continue
            body.last_event = self.time
            p = self._blow_point(key, self.world.contact_point(c))
            v, _ = self.world.velocity(key)
            m = body.mass
            self._event(EV_GROUND if other == -1 else EV_IMPACT, p, v, 0.5 * m * dv * dv, m, body.leaves[0])
            if breaks:
                # Glass is brittle all through: a blow that breaks it shatters it.
                self.split(key, p, dv, full=bool(self.glass[body.leaves].all()))
            elif body.level == len(LEVELS) - 1 and dv > self.mat.break_speed[-1]:
                self.counts["spalls"] += 1
                self._event(EV_BREAK, p, v, 0.5 * m * dv * dv, m, body.leaves[0])

    def _blow_point(self, key: int, p) -> np.ndarray:
        """Where a body took a blow: the engine's contact point, unless it lies off the body
        (beyond its pieces' spread from its centre, plus a margin): then its centre. The
        dust and debris of the blow go there, and a contact point read off the street's
        slab once put one 3975 m down the street."""
        com = self.world.centre_of_mass(key)
        if p is None:
            return com
        cents = self.fr.centroid[self.bodies[key].leaves]
        reach = float(np.linalg.norm(cents - cents.mean(0), axis=1).max()) + BLOW_MARGIN_M
        return p if np.linalg.norm(np.asarray(p) - com) <= reach else com

    def beyond(self, v: np.ndarray, w: np.ndarray, reach: np.ndarray) -> np.ndarray:
        """Which of K bodies (velocities (K,3), spins (K,3), reaches (K,)) move faster
        than a collapse can move them, all at once (the per-sample check over every moving
        body); `plausible` brings one back within the same limits."""
        return (v[:, 1] > self.v_up) | (np.linalg.norm(v, axis=1) > self.v_max) | \
            (np.linalg.norm(w, axis=1) * reach > self.v_max)

    def plausible(self, key: int, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The body's motion brought back within what a collapse can give it: no faster
        than v_max, no faster upward than v_up, and no spin whose rim outruns v_max."""
        v = np.array(v, float)
        v[1] = min(v[1], self.v_up)
        v *= min(1.0, self.v_max / max(float(np.linalg.norm(v)), 1e-9))
        w_max = self.v_max / max(self.bodies[key].reach, 0.05)
        w = np.asarray(w, float) * min(1.0, w_max / max(float(np.linalg.norm(w)), 1e-9))
        return v, w

    def clamp(self, key: int, v: np.ndarray, w: np.ndarray) -> bool:
        """Slows a body the solver sent off faster than anything in a collapse moves
        (PhysX's max velocities do the same); True if it had to."""
        if not (np.isfinite(v).all() and np.isfinite(w).all()):
            return False        # an instability: the step's own check retries the shot
        v2, w2 = self.plausible(key, v, w)
        if np.allclose(v2, v) and np.allclose(w2, w):
            return False
        self.world.set_velocity(key, v2, w2)
        self.counts["clamped"] += 1
        return True

    def update(self, dt_sample: float) -> None:
        """Reads every moving body's pose and freezes those that have come to rest: slow
        for a while and not gaining speed over it (a block just starting to tip over its
        hinge is slow too, but it speeds up)."""
        keys = [k for k, b in self.bodies.items() if b.mode == DYNAMIC]
        self.mechanical = self._static_energy()
        if not keys:
            return
        R, t, v, w, ke, y = self.world.states(keys)
        for j in np.nonzero(self.beyond(v, w, np.array([self.bodies[k].reach for k in keys])))[0]:
            self.clamp(keys[j], v[j], w[j])
            v[j], w[j] = self.world.velocity(keys[j])
            ke[j] = self.world.kinetic_energy(keys[j])
        self.mechanical += float((ke + G * np.array([self.bodies[k].mass for k in keys]) * y).sum())
        self._tumble(keys, v, w, y, dt_sample)
        speed = np.linalg.norm(v, axis=1)
        slow = (speed < SLEEP_SPEED) & (np.linalg.norm(w, axis=1) < SLEEP_SPIN)
        for j, key in enumerate(keys):
            self.R[key], self.t[key] = R[j], t[j]
            b = self.bodies[key]
            self._unlodge(key, b, R[j] @ b.com + t[j])
            if slow[j] and self.world.push_apart(key, FREEZE_OVERLAP_M):
                continue            # sunk, so not at rest: pushed out, it may settle later
            if not slow[j] or speed[j] > b.slow_speed + SLEEP_GAIN:
                b.slow_since, b.slow_speed = np.inf, speed[j] if slow[j] else np.inf
                if slow[j]:
                    b.slow_since = self.time
                continue
            if not np.isfinite(b.slow_since):
                b.slow_since, b.slow_speed = self.time, speed[j]
            if self.time - b.slow_since > SLEEP_S:
                self._settle(key, b)

    def _tumble(self, keys: list, v: np.ndarray, w: np.ndarray, y: np.ndarray, dt: float) -> None:
        """Slows the bodies rolling on the street (their centre of mass within their reach
        of it, spinning at least half as fast as they go) by TUMBLE_DECEL_G over the
        sample's dt: along the street, and their spin in proportion. Updates v and w in
        place."""
        reach = np.array([self.bodies[k].reach for k in keys])
        along = np.hypot(v[:, 0], v[:, 2])
        # Only what rolls: a lump that slides is already held by the street's friction.
        rolling = np.linalg.norm(w, axis=1) * reach > 0.5 * along
        on = (y < reach) & (along > 1e-3) & (reach < TUMBLE_REACH_M) & rolling
        for j in np.nonzero(on)[0]:
            keep = max(0.0, along[j] - TUMBLE_DECEL_G * G * dt) / along[j]
            v[j, [0, 2]] *= keep
            w[j] *= keep
            self.world.set_velocity(keys[j], v[j], w[j])

    def _settle(self, key: int, b: Body) -> None:
        """Freezes a body at rest. One still sunk into another is not at rest, only slow:
        frozen now, it would stay sunk for the rest of the shot (update pushes it out:
        the solver leaves a lump wedged between others sunk by centimetres, lumps 4 cm
        deep in each other at the foot of the crushed storeys)."""
        if not self.world.sunk_into(key, FREEZE_OVERLAP_M) and self._lowest(key) > -FREEZE_OVERLAP_M:
            self.world.set_mode(key, FIXED)
            b.mode = FIXED
            self.counts["frozen"] += 1

    def _unlodge(self, key: int, b: Body, com: np.ndarray) -> None:
        """A body that stays where it is while still jittering (never slow long enough to
        freeze) may be lodged in a frozen neighbour, which the solver cannot push: that
        neighbour wakes so the two are pushed apart (a wall piece stayed 4 cm deep in one)."""
        if b.anchor is None or np.linalg.norm(com - b.anchor) > LODGED_M:
            b.anchor, b.anchor_t = com, self.time
            return
        if self.time - b.anchor_t < LODGED_S:
            return
        b.anchor_t = self.time
        for other in self.world.sunk_into(key, FREEZE_OVERLAP_M):
            if other in self.bodies and self.bodies[other].mode == FIXED:
                self.wake(other)

    def _lowest(self, key: int) -> float:
        """Height of the body's lowest hull point. The engine's contact with the street can
        miss a thin piece's corner (a wall piece was frozen 2.4 cm into the street with
        its contact reporting none), so the freeze looks at the hulls themselves."""
        R, t = self.R[key], self.t[key]
        return min(float((self.hulls[i] @ R[1] + t[1]).min()) for i in self.bodies[key].leaves)

    def _static_energy(self) -> float:
        """Energy of what the engine does not move: frozen bodies' height and the plan's
        kinematic block (its motion and height)."""
        e = 0.0
        for key, b in self.bodies.items():
            if b.mode == DYNAMIC:
                continue
            y = float((self.R[key] @ b.com + self.t[key])[1])
            e += b.mass * G * y + (0.5 * b.mass * float(b.v @ b.v) if b.mode == KINEMATIC else 0.0)
        return e

    def transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Every fragment's rest-to-world transform as of the last update: (N,3,3), (N,3)."""
        keys = np.array(sorted(self.bodies))
        Rs = np.stack([self.R[k] for k in keys] + [np.eye(3)])
        ts = np.stack([self.t[k] for k in keys] + [np.zeros(3)])
        idx = np.searchsorted(keys, self.body_of)
        idx[self.body_of < 0] = len(keys)
        R, t = Rs[idx], ts[idx]
        for i, (Rg, tg) in self.gone.items():
            R[i], t[i] = Rg, tg
        return R, t

    def energy(self) -> float:
        """Mechanical energy of everything that moves (J): what must never grow unbidden."""
        e = 0.0
        for key, b in self.bodies.items():
            if b.mode == FIXED:
                continue
            R, t, v, w, x = self.motion(key)
            ke = self.world.kinetic_energy(key) if b.mode == DYNAMIC else 0.5 * b.mass * float(v @ v)
            e += ke + b.mass * G * float(x[1])
        return e


class Panes:
    """Windows break first where the walls rack. A pane shatters shortly after the wall
    around it moves against the wall beside it (its storey's, or the storey above's or
    below's, at RACK_MS or more): at the failing storey, at the crush front, wherever a
    cluster breaks away. A block that drops in one piece keeps its glass until it is
    struck (every window of img_270 burst at once when the base storey went, and the
    falling block read as a facade of black holes). The shards leave the opening with the
    wall's motion there plus a throw outward and a tumble. A pane struck before that
    breaks by its own (low) strength."""

    def __init__(self, fr: Fracture):
        glass = fr.element_kind == GLASS
        idx = np.nonzero(glass)[0]
        self.panes = [idx[fr.element[idx] == e] for e in np.unique(fr.element[idx])]
        rng = np.random.default_rng([fr.n, 4242])
        self.delay = rng.uniform(*GLASS_DELAY_S, len(self.panes))
        self.near = [~glass & (np.abs(fr.storey - fr.storey[p[0]]) <= 1) for p in self.panes]
        self.done = np.zeros(len(self.panes), bool)
        self.racked = np.full(len(self.panes), np.inf)
        self.rng = rng

    def update(self, sim: "Destruction") -> None:
        vel: dict[int, np.ndarray] = {}

        def velocity(key: int) -> np.ndarray:
            if key not in vel:
                vel[key] = sim.motion(key)[2]
            return vel[key]
        for j, leaves in enumerate(self.panes):
            if self.done[j]:
                continue
            if not np.isfinite(self.racked[j]) and self._racks(sim, j, leaves, velocity):
                self.racked[j] = sim.time
            if sim.time >= self.racked[j] + self.delay[j]:
                self.done[j] = True
                self._shatter(sim, leaves)

    def _racks(self, sim: "Destruction", j: int, leaves: np.ndarray, velocity) -> bool:
        """The pane's wall moves against a wall beside it (or one was pulverised)."""
        own = int(sim.body_of[leaves[0]])
        if own < 0 or not self.near[j].any():
            return own < 0
        keys = np.unique(sim.body_of[self.near[j]])
        if (keys < 0).any():
            return True
        v0 = velocity(own)
        return any(float(np.linalg.norm(velocity(int(k)) - v0)) > RACK_MS for k in keys if k != own)

    def _shatter(self, sim: "Destruction", leaves: np.ndarray) -> None:
        fr = sim.fr
        out = np.array([0.0, 0.0, 1.0])           # panes are in the facade: out is toward the street
        throw = self.rng.uniform(*GLASS_KICK)
        for i in leaves:
            key = sim.body_of[i]
            if key < 0 or len(sim.bodies[key].leaves) == 1 and sim.bodies[key].mode == DYNAMIC:
                continue                          # pulverised, or already a loose shard
            R, t, v, w, x = sim.motion(key)
            c = R @ fr.centroid[i] + t
            kick = out * throw * self.rng.uniform(0.6, 1.2) + self.rng.normal(0, 0.4, 3)
            sim.detach(np.array([i]), len(LEVELS) - 1, DYNAMIC, "debris", linvel=v + np.cross(w, c - x) + kick,
                       angvel=w + self.rng.normal(0, GLASS_SPIN, 3))
            sim.shattered[i] = sim.time
        sim.counts["panes"] = sim.counts.get("panes", 0) + 1


def _shatter_parts(dv: float, strength: float, n_children: int) -> int:
    """How many parts a blow shatters a group into: the blow's energy over the energy that
    breaks the group, (dv / strength)^2, halved so that a blow just past twice its strength
    (where shattering starts) gives two; at about five times its strength every child of a
    piece goes its own way. (Every child at once on any hard blow: rubble comes in every
    size between a fragment and the wall it was. On img_190 this alone moved the share of
    single-fragment final bodies only from 95 % to 93 %: most come from the crush front.)"""
    return int(np.clip(round(0.5 * (dv / max(strength, 1e-3)) ** 2), 2, n_children))


def _shrunk(v: np.ndarray) -> np.ndarray:
    c = v.mean(0)
    r = np.linalg.norm(v - c, axis=1, keepdims=True)
    return c + (v - c) * np.clip(1.0 - SHRINK_M / np.maximum(r, 1e-3), 0.5, 1.0)


def simulate(fr: Fracture, mat: Material, style: str, direction: str, start: float, duration: float,
             sample_hz: float, seed: int, progress=None, plan=None, fault: Callable | None = None,
             step_hz: float = STEP_HZ, obstacles=()) -> SimResult:
    """Runs the collapse. `plan` replaces the style (tests drop single groups); `fault`
    is called after every step (tests inject instabilities through it); `obstacles`:
    (lo, hi) boxes the debris hits (holdouts.obstacles: what stands in front)."""
    from derrumbe.stages.collapse_styles import style_plan
    for attempt in range(MAX_RETRIES + 1):
        hz = step_hz * 2 ** attempt
        try:
            p = plan if plan is not None else style_plan(fr, mat, style, direction, start, seed)
            return _run(fr, mat, p, duration, sample_hz, hz, progress, fault, attempt, obstacles)
        except Unstable as e:
            last = e
    raise DerrumbeError(f"the simulation stayed unstable at a {1000 / (step_hz * 2 ** MAX_RETRIES):.2f} ms step "
                        f"({last}); try fewer --pieces or another --seed")


def _run(fr, mat, plan, duration, sample_hz, step_hz, progress, fault, attempt, obstacles=()) -> SimResult:
    sub = max(1, int(np.ceil(step_hz / sample_hz)))
    dt = 1.0 / (sample_hz * sub)
    sim = Destruction(fr, mat, dt, fault, SOLVER_ITERATIONS, obstacles)
    for cl in np.unique(fr.cluster):
        sim.add(np.nonzero(fr.cluster == cl)[0], 2, FIXED, "standing")
    n_samples = int(round(duration * sample_hz)) + 1
    times = np.arange(n_samples) / sample_hz
    pos = np.empty((n_samples, fr.n, 3), np.float32)
    quat = np.empty((n_samples, fr.n, 4), np.float32)
    mech = np.zeros(n_samples)
    actions = sorted(plan.actions, key=lambda a: a[0])
    panes = Panes(fr)
    nxt = 0
    energy = []
    peak = 0
    for k in range(n_samples):
        while sim.time < times[k] - 1e-9:
            while nxt < len(actions) and actions[nxt][0] <= sim.time + 1e-9:
                actions[nxt][1](sim)
                nxt += 1
            plan.before_step(sim)
            sim.step()
        panes.update(sim)
        sim.update(1.0 / sample_hz)
        mech[k] = sim.mechanical
        R, t = sim.transforms()
        p = np.einsum("nij,nj->ni", R, fr.centroid) + t
        if not (np.isfinite(p).all() and np.abs(p).max() < 1e5):
            raise Unstable("a body left the world")
        plan.after_sample(sim, p)
        peak = max(peak, len(sim.bodies))
        pos[k] = p
        quat[k] = _quat_of(R)
        if plan.track_energy:
            energy.append(sim.energy())
        if progress:
            progress(k + 1, n_samples)
    events = np.array(sim.events, EVENT_DTYPE) if sim.events else np.zeros(0, EVENT_DTYPE)
    events = events[np.argsort(events["t"], kind="stable")]
    # What the camera shake feels: mechanical energy lost between samples (crushing,
    # impacts, friction; rotation counted), not the energy the charges put in.
    dissipated = np.zeros(n_samples, np.float32)
    dissipated[1:] = np.maximum(mech[:-1] - mech[1:], 0.0)
    info = dict(engine="rapier3d", dt=round(dt, 6), retries=attempt, fragments=fr.n,
                released=int(np.isfinite(sim.released).sum()), bodies_peak=peak, bodies_end=len(sim.bodies),
                **sim.counts,
                events=int(len(events)), **plan.info)
    if plan.track_energy:
        info["energy_J"] = [round(e, 1) for e in energy]
    info.update(roof_timing(fr, times, pos, sim.released))
    return SimResult(times, pos, quat, dissipated, sim.released, sim.mass.astype(np.float32), info, events,
                     sim.body_of.copy(), sim.hidden.copy(), sim.shattered.copy())


ARRIVED = 0.125


def roof_timing(fr: Fracture, times: np.ndarray, pos: np.ndarray, released: np.ndarray) -> dict:
    """How long the roof takes from its first motion to the pile, against a free fall from
    its height: the number that tells a collapse of the right size from a miniature (too
    fast) or a giant (too slow). It has arrived when it is within an eighth of the
    building's height of where it ends (the pile goes on slumping for seconds after)."""
    top = fr.storey == fr.storey.max()
    roof = top & (fr.element_kind == SLAB)
    if roof.sum() < 3:
        roof = top
    y = pos[:, roof, 1].mean(axis=1)
    moved = released[roof]
    if not np.isfinite(moved).any():
        return dict(roof_height_m=round(float(y[0]), 2), roof_to_ground_s=None)
    t0 = float(np.min(moved[np.isfinite(moved)]))
    h0, h_end = float(y[0]), float(y[-1])
    near = np.nonzero((y <= h_end + max(0.5, ARRIVED * h0)) & (times >= t0))[0]
    free = float(np.sqrt(2 * h0 / G))
    t_land = float(times[near[0]]) - t0 if len(near) else None
    # Against a free fall over the drop it actually made: on a low building the pile is a
    # large share of the height, and the ratio to a fall from the roof to the street reads
    # faster than gravity although every storey slowed it.
    drop = max(h0 - (h_end + max(0.5, ARRIVED * h0)), 1e-3)
    free_drop = float(np.sqrt(2 * drop / G))
    return dict(roof_height_m=round(h0, 2), roof_final_m=round(h_end, 2), roof_first_motion_s=round(t0, 3),
                roof_to_ground_s=None if t_land is None else round(t_land, 3), free_fall_s=round(free, 3),
                roof_ratio=None if t_land is None else round(t_land / free, 3),
                roof_ratio_drop=None if t_land is None else round(t_land / free_drop, 3))


def _quat_of(R: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) of rotation matrices (N,3,3), w >= 0."""
    tr = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]
    q = np.empty((len(R), 4))
    q[:, 0] = np.sqrt(np.maximum(0, 1 + tr)) / 2
    q[:, 1] = np.copysign(np.sqrt(np.maximum(0, 1 + R[:, 0, 0] - R[:, 1, 1] - R[:, 2, 2])) / 2, R[:, 2, 1] - R[:, 1, 2])
    q[:, 2] = np.copysign(np.sqrt(np.maximum(0, 1 - R[:, 0, 0] + R[:, 1, 1] - R[:, 2, 2])) / 2, R[:, 0, 2] - R[:, 2, 0])
    q[:, 3] = np.copysign(np.sqrt(np.maximum(0, 1 - R[:, 0, 0] - R[:, 1, 1] + R[:, 2, 2])) / 2, R[:, 1, 0] - R[:, 0, 1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


__all__ = ["simulate", "SimResult", "Destruction", "EVENT_DTYPE", "EV_BREAK", "EV_IMPACT", "EV_GROUND",
           "EV_CRUSH", "EV_SINK", "quat_to_matrix", "G", "LEVELS", "KINEMATIC"]
