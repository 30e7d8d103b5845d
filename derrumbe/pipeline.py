"""The recipe of a shot: read the plate, build the scene, simulate, render, comp, write.

This is the only module that knows the order of the stages; each stage module knows
only its inputs. The CLI (and later the web page and the farm) build a ShotSpec and
call run_shot.
"""

from __future__ import annotations

import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import cv2
import mujoco
import numpy as np

from derrumbe import __version__
from derrumbe.colour import linear_to_u8
from derrumbe.materials import MATERIALS
from derrumbe.spec import ShotSpec, output_size
from derrumbe.stages import outputs
from derrumbe.stages.camera import place_building
from derrumbe.stages.cleanplate import make_cleanplate
from derrumbe.stages.comp import composite, estimate_grain, shake_track
from derrumbe.stages.fracture import fracture_building
from derrumbe.stages.matte import box_in_image, compute_matte, sky_likelihood
from derrumbe.stages.plate import read_mask, read_plate, resize_linear
from derrumbe.stages.render import DebrisRenderer, estimate_lighting
from derrumbe.stages.simulate import simulate

PREVIEW_MAX_PIECES = 300     # a preview trades fracture detail for speed
SHUTTER = 0.5                # 180-degree shutter, in frames


class Progress:
    """Per-stage progress reporting; the CLI passes a rich-backed one, tests a silent one."""

    def stage(self, name: str, total: int | None = None) -> None: ...
    def advance(self, done: int, total: int) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...


def run_shot(spec: ShotSpec, out_dir: str | Path, progress: Progress | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    spec.validate()
    progress = progress or Progress()
    say = log or (lambda s: None)
    out = Path(out_dir)
    timings: dict[str, float] = {}

    @contextmanager
    def stage(name, total=None):
        progress.stage(name, total)
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 3)
        progress.end()

    # --- inputs are checked before anything is written -------------------------------
    with stage("plate"):
        plate = read_plate(spec.plate)
        size = plate.size
        mask = read_mask(spec.mask, size, "mask") if spec.mask else None
        holdout = read_mask(spec.holdout, size, "holdout mask") if spec.holdout else None
        if spec.box is not None:
            box_in_image(spec.box, size)
        out_w, out_h = output_size(spec, *size)
        outputs.prepare_dir(out)
        lin = plate.linear()

    with stage("matte"):
        matte = compute_matte(plate.srgb, spec.box, mask, holdout, spec.seed)

    with stage("camera"):
        cam, place = place_building(plate.srgb, matte.building, spec.focal_mm, spec.horizon_y, spec.height_m)
        say(f"building height {place.height_m:.1f} m ({place.height_source}); "
            f"{place.depth_m:.1f} m away; focal {cam.focal_mm:.0f} mm; horizon at row {cam.cy:.0f}")

    # Everything from here on is at the output size.
    ocam = cam.scaled(out_w, out_h)
    plate_out = resize_linear(lin, (out_w, out_h))
    plate_u8 = plate.srgb if (out_w, out_h) == size else linear_to_u8(plate_out)
    bmatte = cv2.resize(matte.building, (out_w, out_h), interpolation=cv2.INTER_AREA) > 0.5
    # One pixel of dilation: the building's anti-aliased edge goes with it.
    bmatte = cv2.dilate(bmatte.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    hold_out = np.clip(cv2.resize(matte.holdout, (out_w, out_h), interpolation=cv2.INTER_AREA), 0, 1)
    skyness = sky_likelihood(plate_u8)

    with stage("cleanplate"):
        clean = make_cleanplate(plate_out, bmatte, hold_out, skyness, ocam, ocam.f_px / place.depth_m, spec.seed)

    material = MATERIALS[spec.material]
    n_pieces = min(spec.pieces, PREVIEW_MAX_PIECES) if spec.preview else spec.pieces
    with stage("fracture"):
        fr = fracture_building(cam, place, matte.building, spec.style, spec.direction, material, n_pieces, spec.seed)
    say(f"{fr.n} pieces in {fr.info['clusters']} clusters, {len(fr.bonds)} bonds")

    sample_hz = spec.fps * (2 if spec.preview else 4)
    with stage("simulate", total=int(spec.duration * sample_hz) + 1):
        sim = simulate(fr, material, spec.style, spec.direction, spec.start, spec.duration, sample_hz, spec.seed,
                       progress=progress.advance)

    light, light_info = estimate_lighting(plate_out, bmatte, skyness, spec.sun_azimuth, spec.sun_elevation)
    n_frames = max(1, int(round(spec.duration * spec.fps)))
    frame_times = np.arange(n_frames) / spec.fps
    shutter_s = SHUTTER / spec.fps
    first_motion = float(np.min(sim.released)) if np.isfinite(sim.released).any() else np.inf
    potential = float((sim.mass * 9.81 * fr.centroid[:, 1]).sum())
    shake = shake_track(sim.times, sim.dissipated, potential, spec.shake, frame_times,
                        3.0 * out_w / 1280.0, spec.seed)
    grain_sigma = estimate_grain(plate_u8)

    timings["render"] = timings["comp"] = timings["write"] = 0.0
    renderer = DebrisRenderer(fr, ocam, plate_out, bmatte, light, material.face_albedo, material.face_rough,
                              sim.pos[0], sim.quat[0])
    movie = outputs.MovieWriter(out / f"{spec.name}.mp4", spec.fps, (out_w, out_h))
    frames, samples_used = [], []
    progress.stage("render", n_frames)
    try:
        for i, t in enumerate(frame_times):
            t0 = time.perf_counter()
            if t + shutter_s / 2 < first_motion:
                img = plate_u8          # before the collapse: the untouched plate
            else:
                layers = renderer.render(sim, float(t), shutter_s, 3 if spec.preview else 8)
                samples_used.append(layers.samples)
                t1 = time.perf_counter()
                timings["render"] += t1 - t0
                rng = np.random.default_rng([spec.seed, i])
                img = composite(plate_out, plate_u8, clean, bmatte, hold_out, layers, grain_sigma, spec.grain,
                                shake[i], rng)
                t0, timings["comp"] = time.perf_counter(), timings["comp"] + time.perf_counter() - t1
            frames.append(outputs.write_frame(out, spec.name, i, img))
            movie.add(img)
            timings["write"] += time.perf_counter() - t0
            progress.advance(i + 1, n_frames)
        t0 = time.perf_counter()
        movie.close()
        timings["write"] += time.perf_counter() - t0
    except BaseException:
        movie.abort()
        raise
    finally:
        renderer.release()
        progress.end()
    for k in ("render", "comp", "write"):
        timings[k] = round(timings[k], 3)

    manifest = {
        "derrumbe_version": __version__,
        "spec": spec.to_dict(),
        "seed": spec.seed,
        "size": [out_w, out_h],
        "fps": spec.fps,
        "first_frame": outputs.FIRST_FRAME,
        "frames": [p.name for p in frames],
        "movie": f"{spec.name}.mp4",
        "estimates": {
            "height_m": round(place.height_m, 2), "height_source": place.height_source,
            "distance_m": round(place.depth_m, 2), "focal_mm": round(cam.focal_mm, 2),
            "horizon_y": round(cam.cy, 1), "floors": round(place.floors, 2), **light_info,
        },
        "fracture": {"pieces": fr.n, "bonds": int(len(fr.bonds)), **fr.info},
        "simulation": sim.info,
        "render": {"motion_blur_samples_max": int(max(samples_used, default=1)), "shutter_deg": 360 * SHUTTER,
                   "grain_sigma": [round(float(g), 4) for g in grain_sigma]},
        "timings_s": timings,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "software": {"python": platform.python_version(), "mujoco": mujoco.__version__,
                     "numpy": np.__version__, "opencv": cv2.__version__},
    }
    outputs.write_manifest(out, manifest)
    return manifest
