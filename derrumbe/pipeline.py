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
from derrumbe.colour import linear_to_u8, srgb_to_linear
from derrumbe.materials import MATERIALS
from derrumbe.spec import DUST_SRGB, WIND_DEFAULT, ShotSpec, output_size
from derrumbe.stages import outputs
from derrumbe.stages.camera import place_building
from derrumbe.stages.cleanplate import make_cleanplate
from derrumbe.stages.comp import DustLayers, composite, estimate_grain, shake_track
from derrumbe.stages.dust import DustSim, street_walls
from derrumbe.stages.dust_render import DustRenderer, backdrop_depth
from derrumbe.stages.fracture import fracture_building
from derrumbe.stages.matte import box_in_image, compute_matte, sky_likelihood
from derrumbe.stages.particles import emit_particles
from derrumbe.stages.plate import read_mask, read_plate, resize_linear
from derrumbe.stages.render import DebrisRenderer, estimate_lighting
from derrumbe.stages.simulate import simulate

PREVIEW_MAX_PIECES = 220     # a preview trades fracture detail for speed
DUST_CELLS = (45_000, 200_000)          # preview, final: the dust grid's cell budget
DUST_STEPS_PER_FRAME = (1, 1.5)
PARTICLES = (1500, 4000)                # grit and small chunks: preview, final
BLUR_SAMPLES = (2, 8)                   # most motion-blur sub-frames a frame: preview, final
BLUR_STEP_PX = (5.0, 3.0)               # a new sub-frame for every this many pixels of travel
DUST_MARCH_DIV = (3, 2)                 # the dust is marched at 1/3, 1/2 of the frame's size
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
    # A pixel all but covered by a foreground object is the object's: the last per cent
    # of an edge blend would let the dust tint the plate's own pixels.
    hold_out[hold_out > 0.97] = 1.0
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

    with stage("particles"):
        grit = emit_particles(sim, fr.volume, material.face_albedo, PARTICLES[0 if spec.preview else 1], spec.seed)

    light, light_info = estimate_lighting(plate_out, bmatte, skyness, spec.sun_azimuth, spec.sun_elevation)
    n_frames = max(1, int(round(spec.duration * spec.fps)))
    frame_times = np.arange(n_frames) / spec.fps
    shutter_s = SHUTTER / spec.fps
    first_motion = float(np.min(sim.released)) if np.isfinite(sim.released).any() else np.inf
    potential = float((sim.mass * 9.81 * fr.centroid[:, 1]).sum())
    shake = shake_track(sim.times, sim.dissipated, potential, spec.shake, frame_times,
                        3.0 * out_w / 1280.0, spec.seed)
    grain_sigma = estimate_grain(plate_u8)

    stage_t = dict(render=0.0, dust=0.0, dust_render=0.0, comp=0.0, write=0.0)
    renderer = DebrisRenderer(fr, ocam, plate_out, bmatte, light, material.face_albedo, material.face_rough,
                              sim.pos[0], sim.quat[0])
    dust = dust_r = None
    q = 0 if spec.preview else 1
    if spec.dust > 0:
        t0 = time.perf_counter()
        wind = spec.wind or WIND_DEFAULT
        dust = DustSim(fr, sim, ocam, light.sun_dir, amount=spec.dust, wind_speed=wind[0], wind_heading_deg=wind[1],
                       seed=spec.seed, target_cells=DUST_CELLS[q], steps_per_second=spec.fps * DUST_STEPS_PER_FRAME[q],
                       walls=lambda g: street_walls(g, fr, ocam, bmatte, skyness, place.depth_m))
        march = (out_w // DUST_MARCH_DIV[q], out_h // DUST_MARCH_DIV[q])
        back = backdrop_depth(ocam, march, bmatte, skyness, place.depth_m)
        albedo = srgb_to_linear(np.array(spec.dust_color or DUST_SRGB) / 255.0)
        dust_r = DustRenderer(renderer.ctx, ocam, dust.grid, light, albedo, back, march)
        sun_irr = float(np.mean(light.sun_col) * max(light.sun_dir[1], 0.05))
        sun_share = sun_irr / (sun_irr + float(np.mean(light.amb_col)))
        stage_t["dust"] += time.perf_counter() - t0
    sink = outputs.FrameSink(out, spec.name, spec.fps, (out_w, out_h), spec.passes)
    samples_used = []
    progress.stage("render", n_frames)
    try:
        for i, t in enumerate(frame_times):
            t0 = time.perf_counter()
            passes = (None, None)
            if t + shutter_s / 2 < first_motion:
                img = plate_u8          # before the collapse: the untouched plate
            else:
                layers = renderer.render(sim, float(t), shutter_s, BLUR_SAMPLES[q], grit, BLUR_STEP_PX[q])
                samples_used.append(layers.samples)
                t1 = time.perf_counter()
                stage_t["render"] += t1 - t0
                dl = None
                if dust is not None:
                    frame = dust.advance_to(float(t))
                    t2 = time.perf_counter()
                    stage_t["dust"] += t2 - t1
                    dl = _dust_layers(dust_r, frame, layers, (out_w, out_h), sun_share)
                    t1 = time.perf_counter()
                    stage_t["dust_render"] += t1 - t2
                rng = np.random.default_rng([spec.seed, i])
                res = composite(plate_out, plate_u8, clean, bmatte, hold_out, layers, grain_sigma, spec.grain,
                                shake[i], rng, dl)
                img, passes = res.frame, (res.debris, res.dust)
                t0 = time.perf_counter()
                stage_t["comp"] += t0 - t1
            sink.submit(i, img, *passes)
            stage_t["write"] += time.perf_counter() - t0
            progress.advance(i + 1, n_frames)
        t0 = time.perf_counter()
        sink.close()
        stage_t["write"] += time.perf_counter() - t0
    except BaseException:
        sink.abort()
        raise
    finally:
        if dust_r is not None:
            dust_r.release()
        renderer.release()
        progress.end()
    timings.update(stage_t)
    for k in stage_t:
        timings[k] = round(timings[k], 3)

    manifest = {
        "derrumbe_version": __version__,
        "spec": spec.to_dict(),
        "seed": spec.seed,
        "size": [out_w, out_h],
        "fps": spec.fps,
        "first_frame": outputs.FIRST_FRAME,
        "frames": [p.name for p in sink.frames],
        "passes": [f"passes/{p.name}" for p in sink.pass_files],
        "movie": f"{spec.name}.mp4",
        "estimates": {
            "height_m": round(place.height_m, 2), "height_source": place.height_source,
            "distance_m": round(place.depth_m, 2), "focal_mm": round(cam.focal_mm, 2),
            "horizon_y": round(cam.cy, 1), "floors": round(place.floors, 2), **light_info,
        },
        "fracture": {"pieces": fr.n, "bonds": int(len(fr.bonds)), **fr.info},
        "simulation": sim.info,
        "particles": {"count": grit.n},
        "dust": _dust_info(dust),
        "render": {"motion_blur_samples_max": int(max(samples_used, default=1)), "shutter_deg": 360 * SHUTTER,
                   "grain_sigma": [round(float(g), 4) for g in grain_sigma]},
        "timings_s": timings,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "software": {"python": platform.python_version(), "mujoco": mujoco.__version__,
                     "numpy": np.__version__, "opencv": cv2.__version__},
    }
    outputs.write_manifest(out, manifest)
    return manifest


def _dust_layers(dust_r: DustRenderer, frame, layers, size, sun_share: float) -> DustLayers:
    """Marches the dust at half resolution against the debris depth, then brings the
    layers to the output size."""
    W, H = dust_r.size
    # Mean depth of the nearest piece per march pixel, over the pixels a piece covers.
    ds = cv2.resize(layers.depth_sum, (W, H), interpolation=cv2.INTER_AREA)
    dn = cv2.resize(layers.depth_n, (W, H), interpolation=cv2.INTER_AREA)
    opaque = np.where(dn > 1e-3, ds / np.maximum(dn, 1e-6), 0.0).astype(np.float32)
    d = dust_r.render(frame, opaque)
    # A touch of blur at the march's resolution takes out the fixed per-pixel jitter of
    # the ray steps (it would read as a screen door over moving dust); bicubic upsampling
    # then keeps the billows' edges crisper than bilinear would.
    soft = lambda a: cv2.GaussianBlur(a, (0, 0), 0.6)
    up = lambda a: np.maximum(cv2.resize(soft(a), size, interpolation=cv2.INTER_CUBIC), 0.0)
    shade = up(np.concatenate([d.shade_near, d.shade_far], -1))
    front, back = up(d.front), up(d.back)
    np.minimum(front[..., 3], 1.0, out=front[..., 3])
    np.minimum(back[..., 3], 1.0, out=back[..., 3])
    return DustLayers(front, back, shade[..., :2], shade[..., 2:], sun_share)


def _dust_info(dust: DustSim | None) -> dict:
    if dust is None:
        return {"enabled": False}
    g = dust.grid
    return {"enabled": True, "grid": list(g.shape[::-1]), "cell_m": round(g.h, 3),
            "origin_m": [round(float(x), 2) for x in g.origin], "steps": dust.steps_run,
            "mass_kg": round(dust.mass_g() / 1000.0, 1), **dust.extent()}
