"""Holdouts stage: what stands between the camera and the building, found without help.

A compositor's roto: people, vehicles, poles, signs, street furniture and overhead wires
that stand in front of the facade must stay in front of the debris and the dust. Each is
found by a cue that does not need a trained network downloaded at run time, one module
each under holdout_cues/:
- people: OpenCV's shipped HOG people detector (Dalal-Triggs) on the band around the
  base line at the plate's resolution, then GrabCut in the box (people.py);
- cars seen from the side: pairs of dark tyres on one ground line, GrabCut (vehicles.py);
- things on the street (cars cut by the frame, signs): the ground in front of the
  building is one surface whose colour changes slowly along a row; what the row's own
  statistics explain badly and stands on it is an object, grown up over the facade by
  GrabCut (street.py);
- street furniture at the wall (bins, bollards, boards): patches that break the ground
  floor's repetition along the row, stand on the base line and end below the facade that
  continues above them (furniture.py);
- poles and posts: long, straight, near-vertical pairs of edges whose band reaches the
  street below the building's base line (a drainpipe ends on the facade's plinth) (poles.py);
- overhead wires and lamp arms: thin dark straight ridges that cross the building's
  silhouette and run on above it (wires.py).
A cut that leaked into the facade is trimmed where the facade continues from above it
(cutout.trim_continuation). Each object's matte is softened with a guided filter on the
plate (hair, wires, mesh fences get partial alpha instead of a staircase). The detections
are data (class, box, ground contact, pixel height, confidence) so the camera can use
people and cars as scale cues; their depth comes from the camera later (`assign_depths`),
which also drops a person or a vehicle too tall for its class at that depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from derrumbe.stages.holdout_cues.cutout import Found, from_small, overlap, union
from derrumbe.stages.holdout_cues.furniture import furniture
from derrumbe.stages.holdout_cues.people import people
from derrumbe.stages.holdout_cues.poles import poles
from derrumbe.stages.holdout_cues.street import street_objects
from derrumbe.stages.holdout_cues.vehicles import vehicles
from derrumbe.stages.holdout_cues.wires import wires

VERSION = 16             # bump when detection changes: the matte stage's cache key holds it
WORK_PX = 800            # long side of the analysis; GrabCut's and HOG's cost grow with pixels
PERSON_M = 1.7           # scale cues for the camera: typical heights
VEHICLE_M = 1.5
# The tallest a detection of each class can be at its ground contact's depth: a tall man,
# a bus, with the camera's scale uncertain by about a factor of 1.4 (two sigma). A
# "person" 4 m tall is a pilaster HOG took for one. No lower bound: a figure half hidden
# behind a car is short and real.
TALLEST_M = {"person": 2.6, "vehicle": 5.0}


@dataclass
class Holdout:
    """One foreground object. `alpha` is its soft matte over `bbox` (plate pixels)."""
    id: int
    kind: str                     # person, vehicle, pole, furniture, object, wire, moving, user
    bbox: tuple[int, int, int, int]   # x0, y0, x1, y1 in plate pixels (x1, y1 exclusive)
    contact_row: float | None     # lowest row where it meets the ground; None: hidden or cut by the frame
    pixel_height: float
    confidence: float
    alpha: np.ndarray             # float32 (y1-y0) x (x1-x0), 0..1
    depth_m: float | None = None  # view depth of its ground contact (assign_depths)
    depth_source: str = ""

    def as_dict(self) -> dict:
        """The detection as data (manifest, web page, scale cues)."""
        return {"id": self.id, "kind": self.kind, "bbox": [int(v) for v in self.bbox],
                "contact_row": None if self.contact_row is None else round(float(self.contact_row), 1),
                "pixel_height": round(float(self.pixel_height), 1), "confidence": round(float(self.confidence), 3),
                "depth_m": None if self.depth_m is None else round(float(self.depth_m), 2),
                "depth_source": self.depth_source, "area_px": int((self.alpha > 0.5).sum())}

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        x0, y0, x1, y1 = self.bbox
        out[y0:y1, x0:x1] = self.alpha
        return out


@dataclass
class HoldoutSet:
    objects: list[Holdout] = field(default_factory=list)
    shape: tuple[int, int] = (0, 0)

    def matte(self) -> np.ndarray:
        """Union of every object's alpha (the over of independent mattes)."""
        keep = np.ones(self.shape, np.float32)
        for o in self.objects:
            x0, y0, x1, y1 = o.bbox
            keep[y0:y1, x0:x1] *= 1.0 - o.alpha
        return 1.0 - keep

    def depth_map(self, far: float = np.inf) -> np.ndarray:
        """Per pixel the depth of the nearest object covering it (far where none)."""
        z = np.full(self.shape, far, np.float32)
        for o in self.objects:
            if o.depth_m is None:
                continue
            x0, y0, x1, y1 = o.bbox
            cov = o.alpha > 0.02
            sub = z[y0:y1, x0:x1]
            sub[cov] = np.minimum(sub[cov], o.depth_m)
        return z

    def as_list(self) -> list[dict]:
        return [o.as_dict() for o in self.objects]


def base_tolerance(height: int) -> float:
    """How far above the facade's base line a ground contact may lie and still be on the
    pavement in front of it: the matte's bottom edge is uncertain by about a hundredth of
    the frame."""
    return max(2.0, 0.01 * height)


def in_front(hs: HoldoutSet, building: np.ndarray) -> np.ndarray:
    """The matte of the holdouts that stand in front of the building, by the rule
    `assign_depths` applies once the camera is known (its base line is the matte's bottom
    row): every artist's holdout, every object cut by the frame's bottom, every object
    whose ground contact is on or below the base line. A figure in a window is not."""
    return standing_in_front(hs, building).matte()


def standing_in_front(hs: HoldoutSet, building: np.ndarray) -> HoldoutSet:
    """The holdouts `in_front` keeps, as a set (the page lists what the render keeps)."""
    rows = np.nonzero((building > 0.5).any(axis=1))[0]
    base = float(rows.max() + 1) if rows.size else float(building.shape[0])
    tol = base_tolerance(building.shape[0])
    return HoldoutSet([o for o in hs.objects if o.kind == "user" or o.contact_row is None
                       or o.contact_row >= base - tol], hs.shape)


def _merge(found: list[Found]) -> list[Found]:
    """One object found by two cues is one holdout: masks of one class that mostly
    overlap merge; of two classes, the more specific cue's cut is kept as it is (a
    person's legs found again as a patch on the pavement do not widen the person)."""
    rank = {"person": 0, "vehicle": 1, "pole": 2, "furniture": 3, "object": 4, "wire": 5}
    out: list[Found] = []
    for f in sorted(found, key=lambda t: rank.get(t.kind, 9)):
        for i, o in enumerate(out):
            if overlap(o, f) > 0.5 * min(o.mask.sum(), f.mask.sum()):
                if o.kind == f.kind:
                    out[i] = union(o, f)
                break
        else:
            out.append(f)
    return out


def soft_alpha(bgr: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """A binary cut made soft where the plate says the edge is soft: a guided filter of
    the mask with the plate as guide (He et al.) follows colour edges, so hair and wires
    get partial alpha and a hard edge stays hard."""
    m = mask.astype(np.float32)
    try:
        # eps in the guide's squared 8-bit units: edges weaker than ~3 % of full scale blur.
        a = cv2.ximgproc.guidedFilter(bgr, m, radius, (0.03 * 255) ** 2)
    except AttributeError:          # plain OpenCV without the contrib modules
        a = cv2.GaussianBlur(m, (0, 0), radius / 2.0)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def find_holdouts(srgb: np.ndarray, building: np.ndarray, seed: int = 0) -> HoldoutSet:
    """Every foreground object in front of the building, as soft mattes at plate size."""
    H, W = building.shape
    s = min(1.0, WORK_PX / max(H, W))
    size = (max(16, int(round(W * s))), max(16, int(round(H * s))))
    full_bgr = cv2.cvtColor(srgb, cv2.COLOR_RGB2BGR)
    bgr = cv2.resize(full_bgr, size, interpolation=cv2.INTER_AREA) if s < 1 else full_bgr
    b = cv2.resize(building.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    rows = np.nonzero(b.any(axis=1))[0]
    base = float(rows.max() + 1) if rows.size else float(b.shape[0])
    base_full = base * H / b.shape[0]
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    small = street_objects(bgr, lab, base, seed) + poles(bgr, gray, base, seed) + wires(gray, b)
    found = people(full_bgr, base_full, seed) + vehicles(full_bgr, base_full, seed) + \
        furniture(full_bgr, bgr, base, seed) + [f for f in (from_small(m, k, c, (H, W)) for m, k, c in small) if f]
    objects = []
    radius = max(2, int(round(2.0 / s)))
    for f in _merge(found):
        ys, xs = np.nonzero(f.mask)
        pad = 2 * radius + 2
        x0, y0 = max(0, f.x + xs.min() - pad), max(0, f.y + ys.min() - pad)
        x1, y1 = min(W, f.x + xs.max() + 1 + pad), min(H, f.y + ys.max() + 1 + pad)
        big = np.zeros((y1 - y0, x1 - x0), bool)
        fx0, fy0 = max(f.x, x0), max(f.y, y0)
        fx1, fy1 = min(f.box[2], x1), min(f.box[3], y1)
        big[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] = f.mask[fy0 - f.y:fy1 - f.y, fx0 - f.x:fx1 - f.x]
        alpha = soft_alpha(full_bgr[y0:y1, x0:x1], big, radius)
        bottom = float(f.y + ys.max() + 1)
        # A wire hangs: it has no ground contact to place it by.
        contact = None if bottom >= H - 1 or f.kind == "wire" else bottom
        objects.append(Holdout(len(objects) + 1, f.kind, (int(x0), int(y0), int(x1), int(y1)), contact,
                               float(ys.max() - ys.min() + 1), f.conf, alpha))
    return HoldoutSet(objects, (H, W))


def add_user_holdouts(hs: HoldoutSet, mask: np.ndarray) -> None:
    """The artist's mask, used as given (no blur: it would eat into what it covers):
    each connected part is one object, with its own ground contact for its depth."""
    H, W = hs.shape
    m = (mask > 0.5).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    for i in range(1, n):
        x, y, ww, hh, a = stats[i]
        alpha = np.where(lab[y:y + hh, x:x + ww] == i, np.clip(mask[y:y + hh, x:x + ww], 0, 1), 0).astype(np.float32)
        bottom = float(y + hh)
        hs.objects.append(Holdout(len(hs.objects) + 1, "user", (int(x), int(y), int(x + ww), int(y + hh)),
                                  None if bottom >= H - 1 else bottom, float(hh), 1.0, alpha))


FRONT_MARGIN_M = 2.0      # an object whose contact is unseen: this far in front of the facade
AT_WALL_M = 0.4           # an object whose contact is on the base line stands at least this far in front of it


def contact_depth(row: float, f_px: float, cy: float, eye_m: float) -> float | None:
    """View depth of a point on the ground plane seen at image row `row` by a level
    pinhole camera eye_m above the ground (horizon at cy): z = f * eye / (row - cy)."""
    if row <= cy + 0.5:
        return None
    return f_px * eye_m / (row - cy)


def _plausible(o: Holdout, z: float, f_px: float) -> bool:
    """Whether the detection's height in metres at depth z is one its class can have."""
    return o.pixel_height * z / f_px <= TALLEST_M[o.kind]


def drop_too_tall(hs: HoldoutSet, f_px: float, cy: float, eye_m: float, facade_m: float) -> list[Holdout]:
    """Take out of `hs` the people and vehicles too tall for their class at the depth of
    their ground contact (no nearer than the facade's), and return them."""
    out = []
    for o in hs.objects:
        if o.kind in TALLEST_M and o.contact_row is not None:
            z = contact_depth(o.contact_row, f_px, cy, eye_m)
            if not _plausible(o, min(z or facade_m, facade_m), f_px):
                out.append(o)
    hs.objects = [o for o in hs.objects if o not in out]
    return out


# How far back from its near face each kind of object stands (a car's width parked along
# the street, a person's body); the rest (a pole, a bin) as a post.
OBSTACLE_DEPTH_M = {"vehicle": 1.8, "person": 0.45}
OBSTACLE_OTHER_M = 0.3
OBSTACLE_KINDS = ("vehicle", "person", "user", "object", "pole", "furniture")
CUT_ON_M = 3.0            # an object cut by the frame's side or bottom runs on this far past it
LENS_CLEAR_M = 0.5        # ...but never into the lens
TRUNK_SHARE = 0.2         # a pole's trunk: the width this share of its matte's rows are narrower than


def obstacles(objects, cam, facade_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The world-space boxes (lo, hi corners; x right, y up, z toward the camera) of the
    holdouts that stand on the ground in front of the building, for the simulation:
    debris hits a parked car instead of passing through it to land between it and the
    lens. Each is its silhouette's box at its depth, as tall as its top row there, as
    deep as its kind; one cut by the frame's side runs on past it, one cut by its bottom
    runs on toward the lens (its depth is the bottom row's ground: the car's bonnet is
    nearer, and rubble thrown over it landed between it and the lens, over its wheels,
    img_140 and img_190); never into the facade."""
    out = []
    for o, z, left, right, top in _standing(objects, cam):
        deep = min(OBSTACLE_DEPTH_M.get(o.kind, OBSTACLE_OTHER_M), facade_m - 0.3 - z)
        if deep <= 0.05 or top <= 0.05:
            continue
        x0, _, x1, y1 = o.bbox
        left -= CUT_ON_M if x0 <= 0 else 0.0
        right += CUT_ON_M if x1 >= cam.width else 0.0
        # (a post cut by the frame's bottom is still a post: run on toward the lens, a
        # lamp post was a wall down the pavement)
        near = max(LENS_CLEAR_M, z - CUT_ON_M) if y1 >= cam.height and o.kind != "pole" else z
        out.append((np.array([left, 0.0, -z - deep]), np.array([right, top, -near])))
    return out


def dust_points(objects, cam) -> list[tuple[int, np.ndarray]]:
    """Where each holdout standing on the ground takes the dust that settles on it: its
    silhouette's centre at its depth, halfway up it (at most a metre up: a car's body, a
    person's chest), as (id, world point)."""
    return [(int(o.id), np.array([0.5 * (left + right), float(np.clip(0.5 * top, 0.3, 1.0)), -z]))
            for o, z, left, right, top in _standing(objects, cam)]


def _standing(objects, cam):
    """The holdouts standing on the ground, with where their silhouette's box lies at
    their depth: (object, depth m, left x m, right x m, top y m)."""
    for o in objects:
        if o.depth_m is None or o.kind not in OBSTACLE_KINDS:
            continue
        z = float(o.depth_m)
        x0, y0, x1, _ = o.bbox
        if o.kind == "pole":
            x0, x1 = _trunk(o)
        yield o, z, (x0 - cam.cx) * z / cam.f_px, (x1 - cam.cx) * z / cam.f_px, cam.eye_m - (y0 - cam.cy) * z / cam.f_px


def _trunk(o: Holdout) -> tuple[float, float]:
    """A pole's trunk, in plate columns: its matte's narrowest rows (TRUNK_SHARE of them
    are narrower), centred where most of its rows are. Its box holds the lamp's arms, the
    signs on it and what its cut took with it; as wide as that, the obstacle held a
    column of rubble 7 m tall standing against a lamp post (img_288)."""
    a = o.alpha > 0.5
    n = a.sum(axis=1)
    rows = np.nonzero(n)[0]
    if rows.size == 0:
        return float(o.bbox[0]), float(o.bbox[2])
    cols = np.arange(a.shape[1], dtype=np.float32)
    mid = float(np.median((a[rows] * cols).sum(axis=1) / n[rows]))
    half = 0.5 * max(float(np.percentile(n[rows], 100 * TRUNK_SHARE)), 1.0)
    return o.bbox[0] + mid - half, o.bbox[0] + mid + half + 1.0


def assign_depths(hs: HoldoutSet, f_px: float, cy: float, eye_m: float, facade_m: float) -> list[Holdout]:
    """Each holdout's depth from where it meets the ground; returns the automatic ones
    dropped because their contact is not in front of the building or because, at the
    depth of their contact, they are not the size of what they were taken for.

    An automatic detection whose ground contact lies above the facade's base line (a
    figure on a balcony or in a shop window, an ornament) does not stand in front: it is
    dropped. One whose contact is on the base line, within the line's own uncertainty (a
    hundredth of the frame: the matte's bottom edge), stands on the pavement against the
    wall: it goes where its contact says, between FRONT_MARGIN_M and AT_WALL_M in front of
    the facade (a bin at the wall set 2 m out stood over the rubble heaped round its foot
    as a black square, img_100 at 20 %: the pile at the wall was behind it). A contact
    cut by the frame's bottom edge is nearer than the bottom row's ground. The artist's
    own holdouts are never dropped: theirs falls back to the facade's depth less a margin.
    Each says which it was (depth_source)."""
    near_facade = max(0.5, facade_m - FRONT_MARGIN_M)
    bottom = contact_depth(float(hs.shape[0]), f_px, cy, eye_m)
    base_row = cy + f_px * eye_m / facade_m
    tol = base_tolerance(hs.shape[0])
    dropped = drop_too_tall(hs, f_px, cy, eye_m, facade_m)
    kept = []
    for o in hs.objects:
        if o.kind == "wire":
            o.depth_m = near_facade
            o.depth_source = f"hangs in front of the facade, no ground contact: {FRONT_MARGIN_M:g} m in front of it"
        elif o.contact_row is None:
            o.depth_m = near_facade if bottom is None else min(bottom, near_facade)
            o.depth_source = "contact below the frame: the bottom row's ground depth"
        else:
            z = contact_depth(o.contact_row, f_px, cy, eye_m)
            if z is not None and z < near_facade:
                o.depth_m, o.depth_source = float(z), "ground contact"
            elif o.kind != "user" and o.contact_row < base_row - tol:
                dropped.append(o)
                continue
            elif o.kind != "user":
                at_wall = max(near_facade, facade_m - AT_WALL_M)
                o.depth_m = at_wall if z is None else float(min(max(z, near_facade), at_wall))
                o.depth_source = f"contact on the facade's base line: {facade_m - o.depth_m:.1f} m in front of it"
            else:
                o.depth_m = near_facade
                o.depth_source = f"contact not in front of the facade: {FRONT_MARGIN_M:g} m in front of it"
        kept.append(o)
    hs.objects = kept
    return dropped
