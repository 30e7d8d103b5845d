"""Building proxy: the structure of a real street building at the estimated scale.

A building is mostly air. What stands is floor slabs about a quarter of a metre thick, a
front wall, a back wall and party walls 0.25-0.6 m thick, and cross walls that divide the
rooms. The pieces of the collapse are solids of that structure, so a falling facade piece
has a real back, a crushed storey leaves a pile of realistic height, and what shows
behind a peeled facade is rooms and slab edges rather than a solid block.

World frame (as in camera.py): metres, x right, y up, z toward the camera, ground y = 0;
the facade's outer face is the plane z = -distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from derrumbe.materials import Material
from derrumbe.stages.camera import Placement

FACADE, BACK, SIDE, SLAB, CROSS = range(5)
KIND_NAMES = ("facade", "back wall", "party wall", "slab", "cross wall")
SLAB_M = 0.25
CROSS_WALL_M = 0.2
ROOM_M = 6.0          # cross walls about every this many metres along the street
MIN_DEPTH_M, MAX_DEPTH_M = 6.0, 16.0


@dataclass
class Element:
    """One wall or slab of one storey: an axis-aligned box with a thickness axis."""
    kind: int
    storey: int
    lo: np.ndarray
    hi: np.ndarray
    axis: int             # the thickness axis (0 x, 1 y, 2 z)
    outer: int            # +1 / -1: the exterior face is at hi / lo along axis; 0: no exterior face

    @property
    def size(self) -> np.ndarray:
        return self.hi - self.lo

    @property
    def area(self) -> float:
        s = np.delete(self.size, self.axis)
        return float(s[0] * s[1])

    @property
    def thickness(self) -> float:
        return float(self.size[self.axis])


@dataclass
class Building:
    x0: float
    x1: float
    z_front: float
    depth: float
    floor_y: np.ndarray           # (storeys + 1,) top of each floor: floor_y[k] is storey k's floor
    elements: list = field(default_factory=list)

    @property
    def storeys(self) -> int:
        return len(self.floor_y) - 1

    @property
    def height(self) -> float:
        return float(self.floor_y[-1])

    @property
    def box_lo(self) -> np.ndarray:
        return np.array([self.x0, 0.0, self.z_front - self.depth])

    @property
    def box_hi(self) -> np.ndarray:
        return np.array([self.x1, self.height, self.z_front])


def floor_levels(place: Placement) -> np.ndarray:
    """Floor heights: a taller ground floor, then equal storeys up to the proxy's top
    (which includes floors hidden above the frame)."""
    g, s = place.ground_floor_m, place.storey_m
    top = place.proxy_height_m
    n_upper = max(0, int(round((top - g) / s)))
    levels = [0.0, g] + [g + s * (k + 1) for k in range(n_upper)]
    levels = np.array(levels[: max(2, n_upper + 2)])
    # The last storey absorbs the rounding, so the roof is where the plate shows it.
    levels[-1] = max(levels[-2] + 0.6 * s, top)
    return levels


def build_structure(place: Placement, material: Material) -> Building:
    width = place.x1_m - place.x0_m
    depth = float(np.clip(0.6 * width, MIN_DEPTH_M, MAX_DEPTH_M))
    zf = -place.depth_m
    b = Building(place.x0_m, place.x1_m, zf, depth, floor_levels(place))
    tf, tw = material.wall_m, material.party_wall_m
    x0, x1, zb = b.x0, b.x1, zf - depth
    n_rooms = max(1, int(round(width / ROOM_M)))
    for k in range(b.storeys):
        y0, y1 = b.floor_y[k], b.floor_y[k + 1]
        ys = y1 - SLAB_M             # walls stand on the slab below and carry the one above
        add = b.elements.append
        add(Element(FACADE, k, np.array([x0, y0, zf - tf]), np.array([x1, y1, zf]), 2, +1))
        add(Element(BACK, k, np.array([x0, y0, zb]), np.array([x1, y1, zb + tw]), 2, -1))
        add(Element(SIDE, k, np.array([x0, y0, zb + tw]), np.array([x0 + tw, y1, zf - tf]), 0, -1))
        add(Element(SIDE, k, np.array([x1 - tw, y0, zb + tw]), np.array([x1, y1, zf - tf]), 0, +1))
        inner_lo = np.array([x0 + tw, ys, zb + tw])
        inner_hi = np.array([x1 - tw, y1, zf - tf])
        # The roof slab's top is an exterior face; the floors' are not.
        add(Element(SLAB, k, inner_lo, inner_hi, 1, +1 if k == b.storeys - 1 else 0))
        for r in range(1, n_rooms):
            xc = x0 + width * r / n_rooms
            add(Element(CROSS, k, np.array([xc - CROSS_WALL_M / 2, y0, zb + tw]),
                        np.array([xc + CROSS_WALL_M / 2, ys, zf - tf]), 0, 0))
    return b
