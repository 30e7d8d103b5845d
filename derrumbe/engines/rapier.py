"""The rigid-body engine: Rapier (dimforge's `rapier3d` bindings), behind a small interface.

Why Rapier: a destruction hierarchy adds and splits compound bodies all through a shot.
Rapier has no model to compile (MuJoCo's compile grows with the square of the body count,
0.5 s for 1000 bodies, 5.7 s for 4000, so its bodies would all have to exist up front), a
compound body is just a body with many colliders, a collider costs ~10 us to create, and
stepping is deterministic (the same bits across runs and thread counts, measured here).
benchmarks/README.md has the numbers against MuJoCo.

The solver in stages/simulate.py sees bodies as groups of fragments with a rest-to-world
transform: a fragment's world pose is M_body applied to its rest pose, and M is the
identity while the building stands. A body's Rapier frame sits at its group's rest centre
of mass c, so M = P o Trans(-c) for the Rapier pose P.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rapier3d as rp

FIXED, DYNAMIC, KINEMATIC = "fixed", "dynamic", "kinematic"
CONTACT_HZ = 60.0
PUSH_MAX_M = 0.1       # push_apart: the deepest overlap it believes, and the furthest it moves a body
# Collision groups: which bodies touch which.
GROUND, STANDING, DEBRIS, CRUSHED, BLOCK, TIPPING = (rp.Group.GROUP_0, rp.Group.GROUP_1, rp.Group.GROUP_2,
                                                     rp.Group.GROUP_3, rp.Group.GROUP_4, rp.Group.GROUP_5)
_TOUCHES = {
    "ground": (GROUND, DEBRIS | CRUSHED | TIPPING),
    "standing": (STANDING, DEBRIS | TIPPING),
    "debris": (DEBRIS, GROUND | STANDING | DEBRIS | CRUSHED | TIPPING),
    # What a crushing block leaves inside its own footprint: the block passes through it
    # (it is the storey being pulverised), everything else still lands on it.
    "crushed": (CRUSHED, GROUND | DEBRIS | CRUSHED),
    # A block tipping over its hinge: the charges pulverised what was under its other
    # side, so it does not rest on that rubble.
    "tipping": (TIPPING, GROUND | STANDING | DEBRIS),
    "block": (BLOCK, rp.Group.NONE),
}
_TYPES = {FIXED: rp.RigidBodyType.FIXED, DYNAMIC: rp.RigidBodyType.DYNAMIC,
          KINEMATIC: rp.RigidBodyType.KINEMATIC_POSITION_BASED}


@dataclass
class Contact:
    """One contact pair that pushed hard enough to matter, after a step."""
    body_a: int          # solver body keys (-1: the ground)
    body_b: int
    impulse: float       # N s, over the step
    colliders: tuple     # the pair, to ask for the contact point only when it is needed


class Unstable(RuntimeError):
    """The engine neutralised a body whose state became non-finite."""


class RapierWorld:
    def __init__(self, dt: float, friction: float, restitution: float, event_dv: float, iterations: int = 4):
        self.w = rp.PhysicsWorld(gravity=(0.0, -9.81, 0.0))
        self.w.set_num_threads(1)       # measured: no faster on 2 cores, and one thread is simplest to reason about
        ip = self.w.integration_parameters
        ip.dt = dt
        ip.num_solver_iterations = iterations
        # Stiffer contacts than Rapier's default (30 Hz): heavy pieces landing on each
        # other at 10 m/s otherwise end up sunk into each other by decimetres, and
        # friction holds them there (measured: 16-21 pairs deeper than 2 cm in a
        # settled pile at 30 Hz, 2 at 60 Hz).
        ip.contact_softness = rp.SpringCoefficients(CONTACT_HZ, 10.0)
        self.dt = dt
        self.friction, self.restitution = friction, restitution
        self.event_dv = event_dv        # a contact is reported when it changes a body's speed by this
        self.bodies: dict[int, rp.RigidBodyHandle] = {}
        self.colliders: dict[int, list] = {}
        self.com: dict[int, np.ndarray] = {}
        self.mass: dict[int, float] = {}
        self._key_of_collider: dict = {}
        self._next = 0
        self._contacts: list = []
        self.w.event_handler = self
        # The street is a thick slab, not a half-space: Rapier's half-space contacts keep
        # stale manifold points while a piece lying on the ground turns, and a heavy wall
        # piece sank 1.3 m into the street (measured); polyhedron-box contacts do not.
        g = rp.Collider.cuboid(4000.0, 5.0, 4000.0).translation((0.0, -5.0, 0.0)).friction(friction)
        self.ground = self.w.add_collider(g.collision_groups(self._groups("ground")))
        self._key_of_collider[self.ground] = -1

    def add_obstacle(self, lo, hi) -> None:
        """A fixed box (world metres, lo/hi corners) that the debris hits like the street:
        a parked car or a person the plate shows in front of the building."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        half, mid = tuple(map(float, 0.5 * (hi - lo))), tuple(map(float, 0.5 * (hi + lo)))
        c = rp.Collider.cuboid(*half).translation(mid).friction(self.friction)
        self._key_of_collider[self.w.add_collider(c.collision_groups(self._groups("ground")))] = -1

    @staticmethod
    def _groups(role: str):
        member, filt = _TOUCHES[role]
        return rp.InteractionGroups(member, filt)

    # ---- bodies ---------------------------------------------------------------------
    def add_body(self, hulls: list, rest_com: np.ndarray, masses: np.ndarray, mode: str, role: str,
                 R: np.ndarray, t: np.ndarray, linvel=(0.0, 0.0, 0.0), angvel=(0.0, 0.0, 0.0)) -> int:
        """A body of convex hulls given in rest world coordinates, placed by the rest-to-world
        transform (R, t); returns its key."""
        pos = R @ rest_com + t
        q = _quat_from_matrix(R)
        builder = rp.RigidBody.new_body(_TYPES[mode]).translation(tuple(map(float, pos))) \
            .rotation(tuple(map(float, _scaled_axis(q)))).linvel(tuple(map(float, linvel))) \
            .angvel(tuple(map(float, angvel)))
        h = self.w.add_body(builder)
        key = self.reserve_key()
        groups = self._groups(role)
        threshold = float(self.event_dv * masses.sum() / self.dt)
        handles = []
        for hull, m in zip(hulls, masses):
            c = rp.Collider.convex_hull(hull - rest_com).mass(float(m)).friction(self.friction) \
                .restitution(self.restitution).collision_groups(groups) \
                .active_events(rp.ActiveEvents.CONTACT_FORCE_EVENTS).contact_force_event_threshold(threshold)
            ch = self.w.add_collider(c, parent=h)
            self._key_of_collider[ch] = key
            handles.append(ch)
        self.bodies[key] = h
        self.colliders[key] = handles
        self.com[key] = np.asarray(rest_com, float)
        self.mass[key] = float(masses.sum())
        return key

    def reserve_key(self) -> int:
        """A key no body of this world will ever have (also for bodies kept outside it)."""
        self._next += 1
        return self._next - 1

    def remove_body(self, key: int) -> None:
        for c in self.colliders.pop(key):
            self._key_of_collider.pop(c, None)
        self.w.remove_body(self.bodies.pop(key))
        self.com.pop(key)
        self.mass.pop(key)

    def remove_colliders(self, key: int, idx) -> None:
        """Takes some of a body's hulls away (by their order at creation, as kept); the
        engine recomputes its mass, the body's frame stays where it was."""
        handles = self.colliders[key]
        drop = set(int(i) for i in idx)
        for i in sorted(drop):
            self._key_of_collider.pop(handles[i], None)
            self.w.remove_collider(handles[i])
        self.colliders[key] = [h for i, h in enumerate(handles) if i not in drop]
        self.mass[key] = float(self.w.rigid_bodies[self.bodies[key]].mass)

    def set_mode(self, key: int, mode: str) -> None:
        self.w.rigid_bodies[self.bodies[key]].body_type = _TYPES[mode]

    def mode(self, key: int) -> str:
        t = self.w.rigid_bodies[self.bodies[key]].body_type
        return {v: k for k, v in _TYPES.items()}[t]

    def set_velocity(self, key: int, linvel, angvel) -> None:
        rb = self.w.rigid_bodies[self.bodies[key]]
        rb.linvel = tuple(map(float, linvel))
        rb.angvel = tuple(map(float, angvel))

    def move_kinematic(self, key: int, R: np.ndarray, t: np.ndarray) -> None:
        """Where a kinematic body is to be at the end of the next step (as a rest-to-world transform)."""
        pos = R @ self.com[key] + t
        iso = rp.Isometry3(tuple(map(float, pos)), rp.Rotation3.from_scaled_axis(
            tuple(map(float, _scaled_axis(_quat_from_matrix(R))))))
        self.w.rigid_bodies[self.bodies[key]].set_next_kinematic_position(iso)

    # ---- state ----------------------------------------------------------------------
    def transform(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        """The body's rest-to-world transform (R, t)."""
        rb = self.w.rigid_bodies[self.bodies[key]]
        q = rb.rotation
        R = quat_to_matrix(np.array([q.w, q.i, q.j, q.k]))
        p = rb.translation
        return R, np.array([p.x, p.y, p.z]) - R @ self.com[key]

    def states(self, keys) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rest-to-world transforms, velocities, kinetic energies (rotation included) and
        centre-of-mass heights of many bodies at once: R (K,3,3), t (K,3), v (K,3), w (K,3),
        KE (K,), y (K,). One pass over the bodies, then numpy."""
        rows = []
        bodies = self.w.rigid_bodies
        for k in keys:
            rb = bodies[self.bodies[k]]
            q, p, v, w = rb.rotation, rb.translation, rb.linvel, rb.angvel
            rows.append((q.w, q.i, q.j, q.k, p.x, p.y, p.z, v.x, v.y, v.z, w.x, w.y, w.z, rb.kinetic_energy(),
                         rb.center_of_mass.y))
        a = np.array(rows, float).reshape(-1, 15)
        R = quat_to_matrix(a[:, :4])
        com = np.array([self.com[k] for k in keys]).reshape(-1, 3)
        t = a[:, 4:7] - np.einsum("kij,kj->ki", R, com)
        return R, t, a[:, 7:10], a[:, 10:13], a[:, 13], a[:, 14]

    def velocity(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        rb = self.w.rigid_bodies[self.bodies[key]]
        v, w = rb.linvel, rb.angvel
        return np.array([v.x, v.y, v.z]), np.array([w.x, w.y, w.z])

    def kinetic_energy(self, key: int) -> float:
        """Translational plus rotational kinetic energy (J)."""
        return float(self.w.rigid_bodies[self.bodies[key]].kinetic_energy())

    def is_moving(self, key: int) -> bool:
        rb = self.w.rigid_bodies[self.bodies[key]]
        return rb.is_dynamic() and not rb.is_sleeping()

    # ---- stepping -------------------------------------------------------------------
    def step(self) -> list[Contact]:
        self._contacts = []
        self.w.step()
        if not self.w.quarantine.is_empty():
            raise Unstable(f"{len(self.w.quarantine.bodies)} bodies reached a non-finite state")
        return self._contacts

    def handle_contact_force_event(self, dt, bodies, colliders, pair, total_force):
        # Called from inside the step for every hard contact: kept as small as can be.
        c1, c2 = pair.collider1, pair.collider2
        a = self._key_of_collider.get(c1, -2)
        b = self._key_of_collider.get(c2, -2)
        if a != -2 and b != -2:
            self._contacts.append(Contact(a, b, total_force * dt, (c1, c2)))

    def contact_point(self, contact: Contact) -> np.ndarray | None:
        """Where the pair touches (its deepest point), in the world."""
        c1, c2 = contact.colliders
        if c1 not in self._key_of_collider or c2 not in self._key_of_collider:
            return None                      # one side was split away since the step
        pair = self.w.narrow_phase.contact_pair(c1, c2)
        deep = pair.find_deepest_contact() if pair is not None else None
        if deep is None:
            return None
        # Read the point off a piece's side: on the street's 8 km slab the solver's local
        # point can be a far corner of the slab (an event at x = 3975 m was recorded).
        side, local = (pair.collider1, deep.local_p1)
        if self._key_of_collider.get(side, -1) == -1:
            side, local = (pair.collider2, deep.local_p2)
        return np.array(self.w.colliders[side].position.transform_point(local).to_tuple())

    def _pairs(self, key: int):
        """(collider, contact pair) for every pair a collider of the body is in."""
        for c in self.colliders[key]:
            for pair in self.w.narrow_phase.contact_pairs_with(c):
                yield c, pair

    def sunk_into(self, key: int, depth: float) -> set:
        """Keys of the bodies (-1: the street) the body's hulls overlap by more than depth."""
        out = set()
        for c, pair in self._pairs(key):
            d = pair.find_deepest_contact()
            if d is not None and d.dist < -depth:
                other = pair.collider2 if pair.collider1 == c else pair.collider1
                out.add(self._key_of_collider.get(other, -1))
        return out

    def push_apart(self, key: int, depth: float) -> bool:
        """Moves a body half of the way out of each neighbour its hulls overlap by more
        than depth (along the contact's normal, by half the overlap past depth; a
        neighbour doing the same moves the other half): the solver cannot free a lump
        wedged between others, and friction holds it sunk by centimetres. Whether it
        moved. (A contact reported deeper than PUSH_MAX_M is the engine's misreading, not an
        overlap: one with the street was once reported 1168 m deep; and a push moves at
        most that far.)"""
        shift = np.zeros(3)
        for c, pair in self._pairs(key):
            for man in pair.manifolds:
                d = min((p.dist for p in man.points), default=0.0)
                if -PUSH_MAX_M < d < -depth:
                    n = np.array(man.data.normal.to_tuple())        # from collider1 toward collider2
                    shift += (-n if pair.collider1 == c else n) * 0.5 * (-d - depth)
        size = float(np.linalg.norm(shift))
        if size == 0.0:
            return False
        shift *= min(1.0, PUSH_MAX_M / size)
        rb = self.w.rigid_bodies[self.bodies[key]]
        p = rb.translation
        rb.translation = (p.x + float(shift[0]), p.y + float(shift[1]), p.z + float(shift[2]))
        return True

    def centre_of_mass(self, key: int) -> np.ndarray:
        return np.array(self.w.rigid_bodies[self.bodies[key]].center_of_mass.to_tuple())


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of unit quaternions (..., 4) as w, x, y, z."""
    q = np.asarray(q, float)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(0.0, 1.0 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + R[0, 0] - R[1, 1] - R[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - R[0, 0] + R[1, 1] - R[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - R[0, 0] - R[1, 1] + R[2, 2])) / 2
    x = np.copysign(x, R[2, 1] - R[1, 2])
    y = np.copysign(y, R[0, 2] - R[2, 0])
    z = np.copysign(z, R[1, 0] - R[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def _scaled_axis(q: np.ndarray) -> np.ndarray:
    w, v = q[0], q[1:]
    s = np.linalg.norm(v)
    if s < 1e-12:
        return np.zeros(3)
    angle = 2 * np.arctan2(s, w)
    return v / s * angle
