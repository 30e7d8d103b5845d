"""Camera/ground stage: a pinhole camera, the ground plane and the building's real scale.

World frame: metres, x right, y up, z toward the camera; ground is y = 0. The camera
is level (facade photos keep verticals vertical), so the horizon is the principal
point's row: a shifted lens, which USD and every DCC can express as an aperture offset.
Scale comes from the building's height: given, or floors counted from the periodic
window rows times a storey height. Real scale gives real timing (sqrt(2h/g)).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

STOREY_M = 3.2
GROUND_FLOOR_M = 4.0
EYE_HEIGHT_M = 1.6
DEFAULT_FOCAL_MM = 26.0   # a phone's main camera, 35 mm equivalent
FILM_WIDTH_MM = 36.0


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
    floors: float
    height_source: str
    storey_m: float = STOREY_M
    ground_floor_m: float = GROUND_FLOOR_M


def estimate_floor_period(srgb: np.ndarray, building: np.ndarray) -> float | None:
    """Pixels per storey from the facade's vertical periodicity (window rows)."""
    ys, xs = np.nonzero(building > 0.5)
    top, bot = ys.min(), ys.max()
    h = bot - top + 1
    if h < 40:
        return None
    gray = cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # Row darkness: window rows are dark bands one storey apart. Smoothing by a fraction
    # of a storey hides rustication and brick courses, which repeat much faster.
    cols = building[top:bot + 1].sum(axis=1)
    prof = (gray * (building > 0.5))[top:bot + 1].sum(axis=1) / np.maximum(cols, 1)
    prof = cv2.GaussianBlur(prof[:, None], (0, 0), max(1.0, h / 90)).ravel()
    prof = prof - cv2.GaussianBlur(prof[:, None], (0, 0), h / 6).ravel()
    prof = (prof - prof.mean()) * np.hanning(len(prof))
    ac = np.correlate(prof, prof, "full")[len(prof) - 1:]
    ac /= max(ac[0], 1e-9)
    lo, hi = max(6, int(h / 30)), int(h / 1.6)
    if hi <= lo + 2:
        return None
    seg = ac[lo:hi]
    peaks = [i for i in range(1, len(seg) - 1) if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1] and seg[i] > 0.15]
    if not peaks:
        return None
    # A storey repeats every feature of the facade (sills, lintels, string courses), so
    # its lag scores highest; window top and bottom edges alone give weaker sub-periods.
    # Of peaks within 10 % of the best, the shortest is taken (longer ones are multiples).
    best = max(seg[p] for p in peaks)
    first = next(p for p in peaks if seg[p] > 0.9 * best)
    return float(lo + first)


def place_building(srgb: np.ndarray, building: np.ndarray, focal_mm: float | None, horizon_y: float | None,
                   height_m: float | None) -> tuple[Camera, Placement]:
    h, w = building.shape
    f_px = w * (focal_mm or DEFAULT_FOCAL_MM) / FILM_WIDTH_MM
    ys, xs = np.nonzero(building > 0.5)
    top, bot = float(ys.min()), float(ys.max() + 1)
    left, right = float(xs.min()), float(xs.max() + 1)
    h_px = bot - top
    cut_top = top <= 1.0

    period = estimate_floor_period(srgb, building)
    if height_m is not None:
        H, source, floors = float(height_m), "given", float(height_m) / STOREY_M
    elif period is not None:
        floors = h_px / period
        H = floors * STOREY_M + (GROUND_FLOOR_M - STOREY_M)  # ground floors run taller
        source = f"{floors:.1f} window rows of {period:.0f} px at {STOREY_M} m"
    else:
        floors = 5.0
        H = GROUND_FLOOR_M + 4 * STOREY_M
        source = "no window rows found; assumed 5 storeys"
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
    # A matte cut by the frame's top edge hides floors: a quarter more building above.
    proxy_h = H * 1.25 if cut_top else H
    return cam, Placement(depth, x0, x1, H, proxy_h, bot, top, floors, source)
