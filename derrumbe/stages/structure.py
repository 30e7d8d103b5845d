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

FACADE, BACK, SIDE, SLAB, CROSS, GLASS = range(6)
KIND_NAMES = ("facade", "back wall", "party wall", "slab", "cross wall", "glass")
SLAB_M = 0.25
CROSS_WALL_M = 0.2
ROOM_M = 6.0          # cross walls about every this many metres along the street
MIN_DEPTH_M, MAX_DEPTH_M = 6.0, 16.0
GLASS_M = 0.008       # a pane's thickness (float glass is 4-6 mm; a little more keeps its hull sound)
MIN_WINDOW_M = (0.35, 0.6)    # narrower or lower openings are not windows (lettering, vents)


@dataclass
class Element:
    """One wall or slab of one storey: an axis-aligned box with a thickness axis."""
    kind: int
    storey: int
    lo: np.ndarray
    hi: np.ndarray
    axis: int             # the thickness axis (0 x, 1 y, 2 z)
    outer: int            # +1 / -1: the exterior face is at hi / lo along axis; 0: no exterior face
    # Window openings through a facade wall: (K, 4) x0, y0, x1, y1 in metres on its plane.
    # The wall is solid elsewhere; each opening holds a GLASS element (its pane).
    openings: np.ndarray | None = None

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


def build_structure(place: Placement, material: Material, windows: np.ndarray | None = None) -> Building:
    """`windows`: (K, 4) x0, y0, x1, y1 on the facade plane (metres), found in the plate;
    each becomes an opening in its storey's facade wall with a pane of glass set back
    in it."""
    width = place.x1_m - place.x0_m
    depth = float(np.clip(0.6 * width, MIN_DEPTH_M, MAX_DEPTH_M))
    zf = -place.depth_m
    b = Building(place.x0_m, place.x1_m, zf, depth, floor_levels(place))
    tf, tw = material.wall_m, material.party_wall_m
    x0, x1, zb = b.x0, b.x1, zf - depth
    n_rooms = max(1, int(round(width / ROOM_M)))
    panes = []
    for k in range(b.storeys):
        y0, y1 = b.floor_y[k], b.floor_y[k + 1]
        ys = y1 - SLAB_M             # walls stand on the slab below and carry the one above
        add = b.elements.append
        fac = Element(FACADE, k, np.array([x0, y0, zf - tf]), np.array([x1, y1, zf]), 2, +1)
        add(fac)
        fac.openings = _openings(windows, x0, x1, y0, y1)
        # The pane sits in the opening, set back from the wall's face as real windows are.
        back = min(0.1, 0.4 * tf)
        panes += [Element(GLASS, k, np.array([ox0, oy0, zf - back - GLASS_M]), np.array([ox1, oy1, zf - back]), 2, +1)
                  for ox0, oy0, ox1, oy1 in fac.openings]
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
    # Last, so a plate without windows breaks exactly as before (elements seed their cells by index).
    b.elements += panes
    return b


def _openings(windows, x0, x1, y0, y1, margin=0.08) -> np.ndarray:
    """The windows that fall in one storey's facade, clipped to it (a window that runs
    through a slab is cut at it), without overlaps and without slivers."""
    out = []
    for wx0, wy0, wx1, wy1 in (() if windows is None else windows):
        a, b = max(wx0, x0 + margin), min(wx1, x1 - margin)
        c, d = max(wy0, y0 + margin), min(wy1, y1 - SLAB_M - margin)
        if b - a < MIN_WINDOW_M[0] or d - c < MIN_WINDOW_M[1]:
            continue
        if any(a < o[2] and o[0] < b and c < o[3] and o[1] < d for o in out):
            continue
        out.append((a, c, b, d))
    return np.array(out, float).reshape(-1, 4)
