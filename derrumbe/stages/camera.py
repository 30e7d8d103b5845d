"""Camera/ground stage: a pinhole camera, the ground plane and the building's real scale.

World frame: metres, x right, y up, z toward the camera; ground is y = 0. The camera
is level (facade photos keep verticals vertical), so the horizon is the principal
point's row: a shifted lens, which USD and every DCC can express as an aperture offset.
Scale comes from the scale stage (scale.py): every ruler on the facade, people and cars
in front of it, the horizon, or a given height. Real scale gives real timing (sqrt(2h/g)).
A plate shot looking up (keystone) is placed with the level camera that shows the
building's true height over its pixel height, so the fall is timed by the real height.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from derrumbe.stages.facade import facade_foot, find_doors
from derrumbe.stages.holdouts import TALLEST_M, drop_too_tall
from derrumbe.stages.keystone import vertical_segments
from derrumbe.stages.scale import Scale, Standing, estimate_scale

STOREY_M = 3.2
GROUND_FLOOR_M = 4.0
EYE_HEIGHT_M = 1.6
DEFAULT_FOCAL_MM = 26.0   # a phone's main camera, 35 mm equivalent
FILM_WIDTH_MM = 36.0
HIDDEN_SHARE = 1.25        # a building cut by the frame's top: about this much of what it shows, in all
PARAPET_M = 0.9           # the wall standing over the roof's slab at its edge


@dataclass
class Camera:
    width: int            # plate pixels
    height: int
    f_px: float           # focal length in plate pixels
    cx: float
    cy: float             # = horizon row
    eye_m: float          # camera height above the ground

    @property
    def focal_mm(self) -> float:
        return self.f_px * FILM_WIDTH_MM / self.width

    def project(self, p: np.ndarray) -> np.ndarray:
        """World points (..., 3) to plate pixels (..., 2)."""
        zc = np.maximum(-p[..., 2], 1e-4)
        u = self.cx + self.f_px * p[..., 0] / zc
        v = self.cy - self.f_px * (p[..., 1] - self.eye_m) / zc
        return np.stack([u, v], -1)

    def scaled(self, w: int, h: int) -> "Camera":
        s = w / self.width
        return Camera(w, h, self.f_px * s, self.cx * s, self.cy * s, self.eye_m)


@dataclass
class Placement:
    """Where the building stands in the world, from its silhouette."""
    depth_m: float        # camera to the front face
    x0_m: float
    x1_m: float
    height_m: float       # visible height, base to the top of the matte
    proxy_height_m: float  # plus hidden floors when the matte runs off the top of the frame
    base_row: float
    top_row: float
    floors: float         # visible storeys from the street (the ground floor counted once)
    height_source: str    # the estimate, its uncertainty and the cue that won
    storey_m: float = STOREY_M
    ground_floor_m: float = GROUND_FLOOR_M   # of the structure, which stands on the matte's base
    height_sigma: float = 0.0                # 1-sigma of the height, in log
    ground_row: float | None = None          # the street's row where the facade goes on below the matte
    scale: dict = field(default_factory=dict)   # the scale estimate, every cue included (for the manifest)

    @property
    def storeys(self) -> float:
        return self.floors


def describe(est: Scale, given: bool) -> str:
    if given:
        read = [c.name for c in est.cues if c.agrees and c.name in ("storey period", "window height")]
        how = f"read from the {read[0]}" if read else "assumed"
        return f"{est.height_m:.1f} m given (--height-m), {est.storeys:.1f} storeys of {est.storey_m:.1f} m {how}"
    return est.describe()


# How far an automatic detection is trusted to be what it says: the holdouts stage's own
# benchmark finds HOG "people" on windows and signs and cars in fragments (benchmarks/
# README.md), so a detection is weighed at half its confidence.
DETECTION_TRUST = 0.5


def standing_objects(holdouts) -> list[Standing]:
    """The holdouts stage's people and vehicles as rulers for the scale: only those whose
    feet are in frame (one cut by the frame's edge shows part of its height)."""
    return [Standing(o.kind, float(o.pixel_height), float(o.contact_row), DETECTION_TRUST * float(o.confidence))
            for o in holdouts.objects if o.kind in ("person", "vehicle") and o.contact_row is not None]


def too_tall_by_the_facade(srgb: np.ndarray):
    """A check for the matte stage (compute_matte's `judge`): the holdouts too tall for
    their class at their contact's depth under the scale the facade's own rulers give (no
    people, no given values), dropped before they are cut out of the building. A pilaster
    HOG took for a 4 m "person" must stay part of the building, not leave a standing hole."""
    def judge(hs, building: np.ndarray) -> list:
        if not any(o.kind in TALLEST_M for o in hs.objects) or not (building > 0.5).any():
            return []
        cam, place = place_building(srgb, building, None, None, None)
        return drop_too_tall(hs, cam.f_px, cam.cy, cam.eye_m, place.depth_m)
    return judge


FOOT_TOL = 0.01      # the matte stops at the facade's foot when it lies this share of the frame above its bottom


def stop_at_the_foot(srgb: np.ndarray, building: np.ndarray) -> np.ndarray:
    """For the matte stage (compute_matte's `foot`: the facade's analysis is this stage's,
    so it is handed in). The matte ends at the facade's foot (facade.facade_foot) where a
    box ran past it onto the pavement by over FOOT_TOL of the frame: the pavement is no
    ground floor. (The holdouts are looked for before, along the box's bottom as drawn:
    the street cues' bands start there, and the demo's pavement taken into the street's
    rows joined its white van and the car at the frame's foot into one blob.)"""
    rows = np.nonzero((building > 0.5).any(axis=1))[0]
    if not rows.size:
        return building
    segments = vertical_segments(cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY))
    bottom, tol = rows.max() + 1, max(3.0, FOOT_TOL * building.shape[0])
    foot = facade_foot(srgb, building, segments)
    if foot >= bottom - tol:
        return building
    # Only where a door stands there: the verticals of a glazed front end at its sill, and
    # img_263's, over a stone plinth its box stops short of, would have cut off its sill.
    doors = find_doors(srgb, building, float(bottom), segments)
    if not any(abs(d.bottom - foot) <= tol for d in doors):
        return building
    out = building.copy()
    out[int(foot):] = 0.0
    return out


def hidden_roof(visible_m: float, ground_floor_m: float, storey_m: float) -> float:
    """The roof of a building whose matte runs off the frame's top: about a quarter more
    building than the frame shows (never less than the storey the frame cuts through),
    in whole storeys, and a parapet over the last. A roof at an arbitrary height cut the
    hidden top storey's windows in half: falling into view, the block ended in a ruler
    line through a row of windows (img_270, img_190)."""
    upper = (visible_m - ground_floor_m) / storey_m
    n = max(int(np.ceil(upper - 0.05)), int(round((HIDDEN_SHARE * visible_m - ground_floor_m) / storey_m)), 1)
    return ground_floor_m + n * storey_m + PARAPET_M


def place_building(srgb: np.ndarray, building: np.ndarray, focal_mm: float | None, horizon_y: float | None,
                   height_m: float | None, people=None) -> tuple[Camera, Placement]:
    """`people`: objects standing near the facade, (kind, pixel height[, foot row]), from
    the holdouts stage; they are one more ruler for the scale."""
    h, w = building.shape
    f_px = w * (focal_mm or DEFAULT_FOCAL_MM) / FILM_WIDTH_MM
    ys, xs = np.nonzero(building > 0.5)
    top, bot = float(ys.min()), float(ys.max() + 1)
    left, right = float(xs.min()), float(xs.max() + 1)
    h_px = bot - top
    cut_top = top <= 1.0

    est = estimate_scale(srgb, building, people=people, height_m=height_m, horizon_y=horizon_y)
    H = est.height_m
    # A given height is the storeys' too: the count follows it, the storey height stays read.
    depth = f_px * H / h_px
    if horizon_y is not None:
        cy = float(horizon_y)
        eye = max(0.3, (bot - cy) * depth / f_px)
    else:
        eye = EYE_HEIGHT_M
        cy = bot - eye * f_px / depth
    cam = Camera(w, h, f_px, w / 2.0, cy, eye)
    x0 = (left - cam.cx) * depth / f_px
    x1 = (right - cam.cx) * depth / f_px
    # The structure stands on the matte's base; where the street is lower, part of the
    # ground floor is below the matte and the first floor line is that much nearer.
    below = est.ground_height_m - est.height_m
    ground_floor = max(0.6 * est.storey_m, est.ground_floor_m - below)
    proxy_h = hidden_roof(H, ground_floor, est.storey_m) if cut_top else H
    return cam, Placement(depth, x0, x1, H, proxy_h, bot, top, est.storeys, describe(est, height_m is not None),
                          storey_m=est.storey_m, ground_floor_m=ground_floor, height_sigma=est.sigma,
                          ground_row=est.ground_row if est.ground_row > bot + 1 else None, scale=est.to_dict())
