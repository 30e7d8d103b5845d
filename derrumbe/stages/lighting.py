"""Lighting: the sun and sky of the plate, estimated once a shot from the plate and the matte.

Both renderers (debris and dust) and the comp light with what this finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derrumbe.colour import rec709_to_working, working_to_rec709


@dataclass
class Lighting:
    sun_dir: np.ndarray      # unit vector toward the sun (world)
    sun_col: np.ndarray      # linear RGB irradiance share of the sun
    amb_col: np.ndarray      # linear RGB of the sky's ambient
    facade_albedo: np.ndarray



def estimate_lighting(lin: np.ndarray, building: np.ndarray, skyness: np.ndarray,
                      azimuth: float | None, elevation: float | None) -> tuple[Lighting, dict]:
    """Sun and sky from the plate. The sun's side comes from which half of the facade is
    brighter (light falls off across a lit wall); the sky colour from the plate's sky or
    its brightest neutral pixels."""
    lum = lin.mean(axis=2)
    ys, xs = np.nonzero(building > 0.5)
    xm = xs.mean()
    left = lum[ys[xs < xm], xs[xs < xm]].mean()
    right = lum[ys[xs >= xm], xs[xs >= xm]].mean()
    est_az = float(np.clip(120.0 * (right - left) / max(left + right, 1e-4) * 4, -60, 60))
    az = np.radians(est_az if azimuth is None else azimuth)
    el = np.radians(40.0 if elevation is None else elevation)
    # Azimuth 0 = sun behind the camera (lighting the facade), 90 = from the right.
    sun_dir = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    if (skyness > 0.5).sum() > 500:
        sky = lin[skyness > 0.5].mean(axis=0)
    else:
        bright = working_to_rec709(lin[lum > np.percentile(lum, 98)].mean(axis=0))
        sky = rec709_to_working(bright * np.array([0.85, 0.92, 1.1]))
    sky = sky / max(sky.max(), 1e-4)
    facade = lin[building > 0.5].mean(axis=0)
    # Front wall irradiance = amb * 0.6 + sun * cos(angle); split so the sun carries 60 %.
    cos_front = max(0.05, sun_dir[2])
    amb = sky * 0.35
    sun = rec709_to_working(np.array([1.0, 0.95, 0.86])) * 0.6 / cos_front * 0.9
    irr = amb * 0.6 + sun * cos_front
    albedo = np.clip(facade / np.maximum(irr, 1e-3), 0.02, 0.9)
    info = dict(sun_azimuth_deg=round(float(np.degrees(az)), 1), sun_elevation_deg=round(float(np.degrees(el)), 1),
                sun_estimated=azimuth is None)
    return Lighting(sun_dir, sun, amb, albedo), info
