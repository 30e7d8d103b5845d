"""What derrumbe will assume about a plate, said before anything renders.

The camera stage's scale (storeys, height and its uncertainty, distance), the lens and
the horizon, the sun the renderer will light with, the automatic holdouts and the
material the facade looks like: the numbers `derrumbe shot --explain` prints and the
web page shows as editable fields, so a wrong guess (a mullion taken for a pole, a glass
wall taken for concrete) is caught before a render, not after it.

It calls the same stage functions the pipeline runs (camera.place_building,
lighting.estimate_lighting, windows.detect_windows), so what it says is what the render will use.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from derrumbe.colour import linear_to_u8
from derrumbe.stages import camera as camera_stage
from derrumbe.stages.holdouts import assign_depths
from derrumbe.stages.matte import Matte, sky_likelihood
from derrumbe.stages.plate import resize_linear
from derrumbe.stages.material import suggest_material
from derrumbe.stages.windows import detect_windows
from derrumbe.stages.lighting import estimate_lighting



def estimate(srgb: np.ndarray, lin: np.ndarray, matte: Matte, spec, out_size: tuple[int, int] | None = None) -> dict:
    """The estimates of a plate with its matte, under the spec's given values. The sun is
    estimated at the frame size the render will have (out_size, the plate's by default),
    from the same pixels the renderer reads."""
    cam, place = camera_stage.place_building(srgb, matte.building, spec.focal_mm, spec.horizon_y, spec.height_m,
                                             people=camera_stage.standing_objects(matte.objects))
    # Each holdout's depth from its ground contact, and the detections the render drops.
    assign_depths(matte.objects, cam.f_px, cam.cy, cam.eye_m, place.depth_m)
    h, w = matte.building.shape
    lin_o, bm, sky = _light_inputs(srgb, lin, matte.building, out_size)
    # The windows' shading reads the sun's side (as in the render), at the frame's size.
    windows = detect_windows(srgb, matte.building) * (lin_o.shape[1] / w)
    _, light = estimate_lighting(lin_o, bm, sky, spec.sun_azimuth, spec.sun_elevation, windows)
    given = spec.height_m is not None
    # The scale stage's own uncertainty (1 sigma in log), from the cues that agreed.
    sigma = 0.0 if given else float(place.height_sigma)
    H = float(place.height_m)
    storey, ground = float(place.storey_m), float(place.ground_floor_m)
    material, why = suggest_material(srgb, matte.building, storey)
    return {
        "storeys": round(float(place.floors), 1),
        "storey_m": round(storey, 2),
        "ground_floor_m": round(ground, 2),
        "height_m": round(H, 1),
        "height_range_m": [round(H * math.exp(-sigma), 1), round(H * math.exp(sigma), 1)],
        "height_source": str(place.height_source),
        "height_given": given,
        "distance_m": round(float(place.depth_m), 1),
        "focal_mm": round(float(cam.focal_mm), 1),
        "focal_given": spec.focal_mm is not None,
        "horizon_y": round(float(cam.cy), 1),
        "horizon_given": spec.horizon_y is not None,
        "sun_azimuth": light["sun_azimuth_deg"],
        "sun_elevation": light["sun_elevation_deg"],
        "sun_azimuth_given": spec.sun_azimuth is not None,
        "sun_elevation_given": spec.sun_elevation is not None,
        # What the page needs to keep storeys, height and distance in step as one is edited.
        "building_rows": [round(float(place.top_row), 1), round(float(place.base_row), 1)],
        "f_px_per_mm": round(w / camera_stage.FILM_WIDTH_MM, 4),
        "plate_size": [int(w), int(h)],
        "material": material,
        "material_why": why,
        "holdouts": matte.objects.as_list(),
    }


def _light_inputs(srgb, lin, building, out_size):
    """The plate, building matte and sky as the pipeline hands them to the renderer's
    lighting estimate: at the output size, the matte grown by a pixel."""
    h, w = building.shape
    if out_size is None or tuple(out_size) == (w, h):
        lin_o, u8 = lin, srgb
    else:
        lin_o = resize_linear(lin, tuple(out_size))
        u8 = linear_to_u8(lin_o)
    bm = cv2.resize(building, (u8.shape[1], u8.shape[0]), interpolation=cv2.INTER_AREA) > 0.5
    bm = cv2.dilate(bm.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    return lin_o, bm, sky_likelihood(u8)


def describe(est: dict, material: str | None = None) -> list[str]:
    """The estimates as `--explain` prints them, one fact a line, with the option that
    overrides each."""
    lo, hi = est["height_range_m"]
    rng = "" if est["height_given"] else f" (likely {lo:g}-{hi:g} m)"
    src = "given (--height-m)" if est["height_given"] else est["height_source"]
    how = lambda given, opt: f"given ({opt})" if given else f"estimated; {opt} overrides"
    lines = [
        f"building: {est['storeys']:g} storeys, {est['height_m']:g} m tall{rng}: {src}",
        f"distance: {est['distance_m']:g} m to the facade (from the height and the lens)",
        f"lens: {est['focal_mm']:g} mm, 35 mm equivalent ({how(est['focal_given'], '--focal-mm')})",
        f"horizon: row {est['horizon_y']:g} of {est['plate_size'][1]} from the top "
        f"({how(est['horizon_given'], '--horizon-y')})",
        f"sun: azimuth {est['sun_azimuth']:g} deg ({how(est['sun_azimuth_given'], '--sun-azimuth')}), "
        f"elevation {est['sun_elevation']:g} deg (" + ("given (--sun-elevation)" if est["sun_elevation_given"]
                                                      else "assumed; --sun-elevation sets it") + ")",
    ]
    objs = est["holdouts"]
    lines.append(f"holdouts: {len(objs)} kept in front" + (": " + ", ".join(
        f"{o['kind']} at x {o['bbox'][0]}-{o['bbox'][2]}"
        + (f", {o['depth_m']:g} m away" if o.get("depth_m") else "") for o in objs[:12]) if objs else ""))
    chosen = "; --material auto (the default) builds with it" if material == "auto" else \
        f"; this shot uses --material {material}" if material and material != est["material"] else ""
    lines.append(f"material: {est['material']} suggested ({est['material_why']}){chosen}")
    return lines
