"""The recipe of a shot: read the plate, build the scene, simulate, render, comp, write.

This is the only module that knows the order of the stages; each stage module knows
only its inputs. The CLI (and later the web page and the farm) build a ShotSpec and
call run_shot.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from derrumbe import __version__
from derrumbe import eta
from derrumbe.cache import ShotLock, StageCache, file_digest, key_of
from derrumbe.errors import DerrumbeError
from derrumbe import colour
from derrumbe.colour import linear_to_u8
from derrumbe.materials import MATERIALS
from derrumbe.spec import DUST_SRGB, WIND_DEFAULT, ShotSpec, output_size, resolve_timing
from derrumbe.stages import outputs
from derrumbe.stages.camera import place_building, standing_objects
from derrumbe.stages.cleanplate import make_cleanplate
from derrumbe.stages.comp import composite, estimate_grain_model, shake_track
from derrumbe.stages.dust import DustSim, dust_frame, street_walls
from derrumbe.stages.dust_render import FAR as FAR_DUST
from derrumbe.stages.dust_render import DustLayers, DustRenderer, backdrop_depth, vector_blur
from derrumbe.stages.fracture import fracture_building
from derrumbe.stages.holdouts import VERSION as HOLDOUTS_VERSION
from derrumbe.stages.holdouts import assign_depths
from derrumbe.stages.matte import check_box, compute_matte, sky_likelihood
from derrumbe.stages.moving_holdouts import MovingHoldouts
from derrumbe.stages.particles import debris_sizes, emit_particles
from derrumbe.stages import exr as exr_out
from derrumbe.stages.plate import PlateSource, open_plate, read_mask, resize_linear
from derrumbe.stages.lighting import describe as describe_light
from derrumbe.stages.lighting import estimate_lighting
from derrumbe.stages.render import DebrisRenderer
from derrumbe.stages.simulate import simulate
from derrumbe.stages.vdb import dust_grids, vdb_path, write_vdb
from derrumbe.stages.windows import detect_windows, to_facade

PREVIEW_MAX_PIECES = 1500    # a preview trades fracture detail for speed (same hierarchy, coarser leaves)
DUST_CELLS = (60_000, 300_000)          # preview, final: cells of the most the dust grid may grow to
DUST_STEPS_PER_FRAME = (1, 1)
PARTICLES = (1500, 4000)                # grit and small chunks: preview, final
BLUR_SAMPLES = (2, 8)                   # most motion-blur sub-frames a frame: preview, final
BLUR_STEP_PX = (5.0, 3.0)               # a new sub-frame for every this many pixels of travel
DUST_MARCH_DIV = (3, 4)                 # the dust is marched at 1/3, 1/4 of the frame's size (edges at full size)
CLEAR_TAU = (0.5, 1.5)                  # optical depth from the lens thinned away near it (see DustRenderer)
EXR_LAYERS = ["R,G,B,A (beauty)", "debris.R,G,B,A", "dust.R,G,B,A", "dust.Z", "matte.building", "matte.holdout",
              "matte.effect", "depth.Z", "forward.u,v"]


class Progress:
    """Per-stage progress reporting; the CLI passes a rich-backed one, tests a silent one."""

    def stage(self, name: str, total: int | None = None) -> None: ...
    def advance(self, done: int, total: int) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...

    def plan(self, seconds: dict[str, float], first_frame: int) -> None:
        """The predicted seconds of every stage still to run (eta.py), and the number of
        the shot's first frame (the render and dust stages count frames from it)."""

    def warn(self, text: str) -> None:
        """Something the artist must see even when progress is quiet (a clamped box)."""


def shot_keys(spec: ShotSpec, digests: dict, out_size: tuple[int, int]) -> dict:
    """The cache key of every stage, from the spec and the input files alone (so
    --explain can say what will run without running anything). Each key covers exactly
    the parameters its stage reads and the keys of the stages it reads from."""
    q = 0 if spec.preview else 1
    n_pieces = min(spec.pieces, PREVIEW_MAX_PIECES) if spec.preview else spec.pieces
    k = {}
    k["matte"] = key_of("matte", dict(plate=digests["plate"], mask=digests["mask"], holdout=digests["holdout"],
                                      box=spec.box, seed=spec.seed, plate_colorspace=spec.plate_colorspace,
                                      auto_holdouts=not spec.no_auto_holdouts, holdouts=HOLDOUTS_VERSION))
    k["camera"] = key_of("camera", dict(focal_mm=spec.focal_mm, horizon_y=spec.horizon_y, height_m=spec.height_m),
                         (k["matte"],))
    k["fracture"] = key_of("fracture", dict(style=spec.style, direction=spec.direction, material=spec.material,
                                            pieces=n_pieces, hierarchy=spec.pieces, seed=spec.seed), (k["camera"],))
    k["simulate"] = key_of("simulate", dict(style=spec.style, direction=spec.direction, material=spec.material,
                                            start=spec.start, duration=spec.duration, hz=_sample_hz(spec),
                                            seed=spec.seed), (k["fracture"],))
    k["particles"] = key_of("particles", dict(count=PARTICLES[q], seed=spec.seed, working=colour.WORKING),
                            (k["simulate"],))
    k["dust"] = key_of("dust", dict(amount=spec.dust, wind=spec.wind or WIND_DEFAULT, seed=spec.seed, fps=spec.fps,
                                    duration=spec.duration, cells=DUST_CELLS[q], steps=DUST_STEPS_PER_FRAME[q]),
                       (k["simulate"], k["camera"]))
    k["frames"] = key_of("frames", dict(size=list(out_size), grain=spec.grain, shake=spec.shake,
                                        dust_color=spec.dust_color or DUST_SRGB, sun=[spec.sun_azimuth, spec.sun_elevation],
                                        fps=spec.fps, preview=spec.preview, passes=spec.passes, name=spec.name,
                                        blur=[BLUR_SAMPLES[q], BLUR_STEP_PX[q]], shutter=spec.shutter,
                                        march=DUST_MARCH_DIV[q],
                                        working=colour.WORKING, display=colour.SRGB),
                         (k["particles"], k["dust"] if spec.dust > 0 else "no dust"))
    return k


def shutter_seconds(shutter_deg: float, fps: float) -> float:
    """How long each frame is exposed: a 180-degree shutter is open half the frame time
    (1/48 s at 24 fps). Everything that moves blurs over this time."""
    return float(shutter_deg) / 360.0 / float(fps)


def _sample_hz(spec: ShotSpec) -> int:
    # Two poses a frame: the renderer interpolates the motion-blur sub-frames between them.
    return spec.fps * 2


def explain(spec: ShotSpec, out_dir: str | Path) -> list[str]:
    """What a run of this spec into out_dir would compute, and why, without running."""
    spec.validate()
    out = Path(out_dir)
    src = open_plate(spec.plate, spec.plate_colorspace)
    lines = []
    try:
        spec = resolve_timing(spec, src.n_frames, src.rate)
        if spec.box is not None:
            box, warning = check_box(spec.box, src.size)
            if warning:
                lines.append(f"warning: {warning}")
            spec = dataclasses.replace(spec, box=box)
        out_size = output_size(spec, *src.size)
        keys = shot_keys(spec, _digests(spec, src), out_size)
        cache = StageCache(out)
        lines += _estimate_lines(spec, src, keys, cache, out_size)
    finally:
        src.close()
    last = cache.last_keys()
    for stage in ("matte", "camera", "fracture", "simulate", "particles", "dust"):
        if stage == "dust" and spec.dust <= 0:
            lines.append("dust: off (--dust 0)")
            continue
        done = cache.dust_complete(keys["dust"], _n_frames(spec)) if stage == "dust" else cache.has(stage, keys[stage])
        if done:
            lines.append(f"{stage}: cached ({keys[stage]})")
        else:
            why = _why(stage, keys, last)
            lines.append(f"{stage}: will run ({why})")
    index = cache.frame_index()
    n = _n_frames(spec)
    reuse = _reused_frames(spec, keys, index, out)
    first = spec.first_frame
    lines.append(f"frames {first}-{first + n - 1} as {spec.stem}.####.png: {reuse} of {n} reused, {n - reuse} to render"
                 + ("" if reuse == n else f" ({_why('frames', keys, last)})"))
    if outputs.version_manifest_path(out, spec.stem).exists():
        lines.append(f"version: {spec.stem} exists in {out.name}/ and will be rendered again; other versions stay")
    return lines


def _reused_frames(spec: ShotSpec, keys: dict, index: dict, out: Path) -> int:
    n = _n_frames(spec)
    return sum(1 for i in range(n)
               if index.get(outputs.frame_path(out, spec.stem, i, spec.first_frame).name, "").startswith(
                   _frame_key(keys, i) + ":") and outputs.frame_path(out, spec.stem, i, spec.first_frame).exists())


def _estimate_lines(spec: ShotSpec, src: PlateSource, keys: dict, cache: StageCache, out_size) -> list[str]:
    """What the matte and camera stages will find (from the cache when they ran before),
    in the words the web page uses: storeys, height with its range, distance, lens,
    horizon, sun, holdouts and the material the facade looks like."""
    from derrumbe import estimates
    plate = src.reference()
    mask = read_mask(spec.mask, plate.size, "mask") if spec.mask else None
    holdout = read_mask(spec.holdout, plate.size, "holdout mask") if spec.holdout else None
    matte = cache.load("matte", keys["matte"]) if cache.has("matte", keys["matte"]) else None
    if matte is None:
        matte = compute_matte(plate.srgb, spec.box, mask, holdout, spec.seed, auto_holdouts=not spec.no_auto_holdouts)
    est = estimates.estimate(plate.srgb, plate.linear(), matte, spec, out_size)
    return estimates.describe(est, spec.material)


def _why(stage, keys, last) -> str:
    if not last:
        return "nothing cached in this folder yet"
    if last.get(stage) == keys[stage]:
        return "its cached result is missing or damaged"
    up = {"matte": [], "camera": ["matte"], "fracture": ["camera"], "simulate": ["fracture"],
          "particles": ["simulate"], "dust": ["simulate", "camera"], "frames": ["particles", "dust"]}[stage]
    changed = [u for u in up if last.get(u) != keys.get(u)]
    if changed:
        return "upstream changed: " + ", ".join(changed)
    return "its parameters changed"


def _n_frames(spec: ShotSpec) -> int:
    return max(1, int(round(spec.duration * spec.fps)))


def _frame_key(keys: dict, i: int) -> str:
    return key_of("frame", dict(i=i), (keys["frames"],))


def _digests(spec: ShotSpec, src: PlateSource) -> dict:
    return dict(plate=src.digest(), mask=file_digest(spec.mask), holdout=file_digest(spec.holdout))


def run_shot(spec: ShotSpec, out_dir: str | Path, progress: Progress | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    spec.validate()
    progress = progress or Progress()
    say = log or (lambda s: None)
    out = Path(out_dir)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}          # CPU seconds of all the process's threads
    rss: dict[str, float] = {}          # peak RSS (MB) reached by the end of each stage

    @contextmanager
    def stage(name, total=None):
        progress.stage(name, total)
        t0 = _clock()
        yield
        d = _clock() - t0
        timings[name] = round(timings.get(name, 0.0) + d[0], 3)
        cpu[name] = round(cpu.get(name, 0.0) + d[1], 3)
        rss[name] = _peak_mb()
        progress.end()

    # --- inputs are checked before anything is written -------------------------------
    with stage("plate"):
        src = open_plate(spec.plate, spec.plate_colorspace)
        # A moving plate sets the shot's rate and length unless the spec gives them.
        spec = resolve_timing(spec, src.n_frames, src.rate)
        plate = src.reference()
        size = plate.size
        mask = read_mask(spec.mask, size, "mask") if spec.mask else None
        holdout = read_mask(spec.holdout, size, "holdout mask") if spec.holdout else None
        if spec.box is not None:
            box, warning = check_box(spec.box, size)
            if warning:
                progress.warn(warning)
            spec = dataclasses.replace(spec, box=box)
        out_w, out_h = output_size(spec, *size)
        outputs.prepare_dir(out, clear_manifest=False)
        lin = plate.linear()
        keys = shot_keys(spec, _digests(spec, src), (out_w, out_h))

    try:
        with ShotLock(out):
            # A previous manifest would make a half-finished re-render look complete
            # (this version's own too; other versions' stay, their files untouched);
            # temporaries a killed run left are nobody's now that the lock is ours.
            (out / "manifest.json").unlink(missing_ok=True)
            outputs.version_manifest_path(out, spec.stem).unlink(missing_ok=True)
            outputs.sweep_temps(out)
            cache = StageCache(out)
            work, skip = _workloads(spec, keys, cache, src, size, (out_w, out_h), out)
            progress.plan(eta.predict(work, skip), spec.first_frame)
            manifest = _run_locked(spec, out, src, plate, lin, mask, holdout, (out_w, out_h), keys, cache, stage,
                                   timings, progress, say, cpu, rss)
            cache.save_last_keys(keys)
            eta.record(_stage_seconds(timings), work, {s: 1.0 - skip.get(s, 0.0) for s in work})
    finally:
        src.close()
    return manifest


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


def _clock() -> np.ndarray:
    return np.array([time.perf_counter(), time.process_time()])


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _workloads(spec: ShotSpec, keys: dict, cache: StageCache, src: PlateSource, size, out_size, out: Path):
    """Each stage's workload (eta.py's units) and the share of it already done: cached
    stages, reused frames. The plate stage has run by now."""
    q = 0 if spec.preview else 1
    n = _n_frames(spec)
    pieces = min(spec.pieces, PREVIEW_MAX_PIECES) if spec.preview else spec.pieces
    work = eta.workloads(size[0] * size[1] / 1e6, 0, out_size[0] * out_size[1] / 1e6, n, pieces, spec.duration,
                         PARTICLES[q], DUST_CELLS[q] if spec.dust > 0 else None)
    if not spec.usd:
        work["usd"] = 0.0
    work["vdb"] = work["dust"] if spec.vdb else 0.0        # a volume a frame: as many cells as the dust
    skip = {"plate": 1.0, "cleanplate": 0.0}
    for s in ("matte", "camera", "fracture", "simulate", "particles"):
        skip[s] = 1.0 if cache.has(s, keys[s]) else 0.0
    skip["dust"] = 1.0 if spec.dust <= 0 or cache.dust_complete(keys["dust"], n) else 0.0
    skip["render"] = _reused_frames(spec, keys, cache.frame_index(), out) / n
    return work, skip


def _stage_seconds(timings: dict) -> dict:
    """Wall seconds per progress stage (the frame loop's parts summed as 'render')."""
    out = {k: v for k, v in timings.items() if k in eta.STAGES and k != "render"}
    out["render"] = sum(timings.get(k, 0.0) for k in ("render", "dust_render", "comp", "write", "vectors"))
    return out


def _run_locked(spec, out, src, plate, lin, mask, holdout, out_size, keys, cache, stage, timings, progress,
                say, cpu, rss) -> dict:
    size = plate.size
    out_w, out_h = out_size
    q = 0 if spec.preview else 1
    with stage("matte"):
        matte, _ = cache.get_or_run("matte", keys["matte"], {}, lambda: compute_matte(
            plate.srgb, spec.box, mask, holdout, spec.seed, auto_holdouts=not spec.no_auto_holdouts))

    with stage("camera"):
        (cam, place), _ = cache.get_or_run("camera", keys["camera"], {}, lambda: place_building(
            plate.srgb, matte.building, spec.focal_mm, spec.horizon_y, spec.height_m,
            people=standing_objects(matte.objects)))
        say(f"building height {place.height_source}; "
            f"{place.depth_m:.1f} m away; focal {cam.focal_mm:.0f} mm; horizon at row {cam.cy:.0f}")
    # Each holdout's depth from its ground contact and this camera (cheap: not cached).
    dropped = assign_depths(matte.objects, cam.f_px, cam.cy, cam.eye_m, place.depth_m)
    if dropped:
        say(f"{len(dropped)} detections dropped: their ground contact is not in front of the building")
    say(f"{len(matte.objects.objects)} holdouts: " + (", ".join(
        f"{o.kind} at {o.depth_m:.1f} m" for o in matte.objects.objects) or "none"))

    material = MATERIALS[spec.material]
    face_albedo = colour.rec709_to_working(material.face_albedo)    # presets are Rec.709
    n_pieces = min(spec.pieces, PREVIEW_MAX_PIECES) if spec.preview else spec.pieces
    with stage("fracture"):
        # Windows: cheap to find, so found again rather than cached (the light uses them too).
        win_px = detect_windows(plate.srgb, matte.building)
        fr, _ = cache.get_or_run("fracture", keys["fracture"], {}, lambda: fracture_building(
            cam, place, matte.building, spec.style, spec.direction, material, n_pieces, spec.seed, spec.pieces,
            windows=to_facade(win_px, cam, place.depth_m)))
    say(f"{fr.n} fragments in {fr.info['pieces']} pieces, {fr.info['clusters']} clusters, "
        f"{fr.info['storeys']} storeys, {fr.info.get('windows', 0)} glazed windows")

    sample_hz = _sample_hz(spec)
    with stage("simulate", total=int(spec.duration * sample_hz) + 1):
        sim, _ = cache.get_or_run("simulate", keys["simulate"], {}, lambda: simulate(
            fr, material, spec.style, spec.direction, spec.start, spec.duration, sample_hz, spec.seed,
            progress=progress.advance))

    with stage("particles"):
        grit, _ = cache.get_or_run("particles", keys["particles"], {}, lambda: emit_particles(
            sim, fr, face_albedo, PARTICLES[q], spec.seed))

    n_frames = _n_frames(spec)
    frame_times = np.arange(n_frames) / spec.fps

    # The dust, simulated for the whole shot before any frame is rendered, one stored
    # state a frame: it depends on the plate's geometry, never on the output size. The
    # walls come from the plate at its own resolution for the same reason.
    wind = spec.wind or WIND_DEFAULT
    has_dust = False
    dust_info = {"enabled": False}
    dust_states: dict = {}      # this run's states, as stored: the render need not read them back
    if spec.dust > 0:
        with stage("dust", total=n_frames):
            has_dust = True
            if cache.dust_complete(keys["dust"], n_frames, verify=True):
                cache.events.append(("dust", "cached"))
                dust_info = cache.dust_info(keys["dust"])
            else:
                sky_plate = sky_likelihood(plate.srgb)
                bm_plate = (matte.building > 0.5).astype(np.float32)
                dust = DustSim(fr, sim, cam, amount=spec.dust, wind_speed=wind[0], wind_heading_deg=wind[1],
                               seed=spec.seed, target_cells=DUST_CELLS[q],
                               steps_per_second=spec.fps * DUST_STEPS_PER_FRAME[q],
                               walls=lambda g: street_walls(g, fr, cam, bm_plate, sky_plate, place.depth_m))
                for i, t in enumerate(frame_times):
                    dust_states[i] = dust.advance_to(float(t))
                    cache.store_dust_frame(keys["dust"], i, dust_states[i])
                    progress.advance(i + 1, n_frames)
                g = dust.grid
                dust_info = {"enabled": True, "grid": list(g.shape[::-1]), "cell_m": round(g.h, 3),
                             "origin_m": [round(float(x), 2) for x in g.origin], "steps": dust.steps_run,
                             "grid_grew": dust.grows, "first_emission_s": round(dust.em.first_time(dust.dt), 3),
                             "mass_kg": round(dust.mass_g() / 1000.0, 1),
                             "settled_and_left_kg": [round(float(x) / 1000.0, 1) for x in dust.lost_g[:2]],
                             **dust.extent()}
                cache.finish_dust(keys["dust"], n_frames, dust_info)
                if not any(s == "dust" for s, _ in cache.events):
                    cache.events.append(("dust", "ran"))

    # Everything from here on is at the output size.
    ocam = cam.scaled(out_w, out_h)
    plate_out = resize_linear(lin, (out_w, out_h))
    plate_u8 = plate.srgb if (out_w, out_h) == size else linear_to_u8(plate_out)
    bmatte = cv2.resize(matte.building, (out_w, out_h), interpolation=cv2.INTER_AREA) > 0.5
    # One pixel of dilation: the building's anti-aliased edge goes with it.
    bmatte = cv2.dilate(bmatte.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    hold_still, hold_z_still = _holdout_layers(matte.objects, (out_w, out_h))
    # A moving plate: what moves in front of the building is held out frame by frame.
    movers = MovingHoldouts(plate.srgb, matte.building, cam, place.depth_m) if src.moving and \
        not spec.no_auto_holdouts else None

    def holdouts_of(i, frame_srgb):
        if movers is None:
            return hold_still, hold_z_still
        mh, mz = movers.frame(i, frame_srgb)
        return 1 - (1 - hold_still) * (1 - mh), np.minimum(hold_z_still, mz)
    hold_out = hold_still
    still_objects = [(o.id, o.kind, cv2.resize(o.full(size[::-1]), (out_w, out_h), interpolation=cv2.INTER_AREA))
                     for o in matte.objects.objects] if spec.exr else []

    def per_object(i):
        """Each holdout's own matte for the EXR (holdout.<id>), the moving ones of frame i too."""
        objs = {f"{oid:03d}": a for oid, _, a in still_objects}
        if movers is not None:
            objs.update({f"m{tid:03d}": a for tid, a in movers.objects_of(i)})
        return objs
    skyness = sky_likelihood(plate_u8)

    # A moving plate: each frame's own pixels under the effect (the analysis above saw
    # its temporal median). A still: the same arrays every frame.
    def plate_frame(i):
        if not src.moving:
            return plate_out, plate_u8
        f = src.frame(i)
        po = resize_linear(f.linear(), (out_w, out_h))
        return po, (f.srgb if (out_w, out_h) == size else linear_to_u8(po))

    with stage("cleanplate"):
        clean = make_cleanplate(plate_out, bmatte, hold_out, skyness, ocam, ocam.f_px / place.depth_m, spec.seed)

    light, light_info = estimate_lighting(plate_out, bmatte, skyness, spec.sun_azimuth, spec.sun_elevation,
                                          win_px * (out_w / size[0]))
    say(describe_light(light_info))
    shutter_s = shutter_seconds(spec.shutter, spec.fps)
    first_motion = float(np.min(sim.released)) if np.isfinite(sim.released).any() else np.inf
    potential = float((sim.mass * 9.81 * fr.centroid[:, 1]).sum())
    shake = shake_track(sim.times, sim.dissipated, potential, spec.shake, frame_times,
                        3.0 * out_w / 1280.0, spec.seed)
    # Grain from a real frame: a moving plate's median has had its noise averaged away.
    grain_model = estimate_grain_model(plate_frame(0)[1] if src.moving else plate_u8)

    # Frames already rendered with this exact key are reused (a killed render resumes).
    index = cache.frame_index()
    fkeys = [_frame_key(keys, i) for i in range(n_frames)]

    stem, first = spec.stem, spec.first_frame

    def reusable(i):
        p = outputs.frame_path(out, stem, i, first)
        rec = index.get(p.name, "")
        if not rec.startswith(fkeys[i] + ":") or not p.exists():
            return False
        if rec.split(":")[1] != cache.frame_digest(p):           # changed or damaged since
            return False
        return all(q.exists() for q in extra_files(i))

    def extra_files(i):
        return ((outputs.pass_paths(out, stem, i, first) if spec.passes else [])
                + ([exr_out.exr_path(out, stem, first + i)] if spec.exr else []))
    todo = [i for i in range(n_frames) if not reusable(i)]
    stage_t = {k: np.zeros(2) for k in ("render", "dust_render", "comp", "write", "vectors")}
    renderer = dust_r = None
    sun_share = 0.0
    if todo:
        renderer = DebrisRenderer(fr, ocam, plate_out, bmatte, light, face_albedo, material.face_rough,
                                  sim.pos[0], sim.quat[0], holdout=hold_still, masonry=material.name == "masonry",
                                  seed=spec.seed)
        if has_dust:
            march = (out_w // DUST_MARCH_DIV[q], out_h // DUST_MARCH_DIV[q])
            back = backdrop_depth(ocam, march, bmatte, skyness, place.depth_m)
            back_full = backdrop_depth(ocam, (out_w, out_h), bmatte, skyness, place.depth_m)
            # Near the lens (fully within 10 % of the building's distance or 2 m, not past
            # 45 % or 8 m) the first 0.5-1.5 of optical depth from it thins away: a haze
            # around the camera does not veil the frame, a dense front there still reads.
            d = place.depth_m
            dust_r = DustRenderer(renderer.ctx, ocam, light, dust_albedo(spec, light), back, march, fps=spec.fps,
                                  backdrop_full=back_full, clear_m=(max(0.1 * d, 2.0), max(0.45 * d, 8.0)),
                                  clear_tau=CLEAR_TAU)
            sun_irr = float(np.mean(light.sun_col) * max(light.sun_dir[1], 0.05))
            sun_share = sun_irr / (sun_irr + float(np.mean(light.amb_col)))

    # EXR: depth where no piece is (street, walls, sky) from the camera and the plate.
    if spec.exr and todo:
        back_z = backdrop_depth(ocam, (out_w, out_h), bmatte, skyness, place.depth_m)
        back_z = np.where(back_z >= 0.5 * FAR_DUST, exr_out.FAR_Z, back_z).astype(np.float32)
        _, rest_z, rest_cov = renderer.vectors(sim, 0.0, 0.0)
        rest_z = np.where(rest_cov > 0, rest_z, back_z)
    zeros4 = np.zeros((out_h, out_w, 4), np.float32)
    zeros2 = np.zeros((out_h, out_w, 2), np.float32)

    def done(i):
        # Keyed by the file's name: each version's frames are their own.
        p = outputs.frame_path(out, stem, i, first)
        index[p.name] = f"{fkeys[i]}:{cache.frame_digest(p)}"
        cache.save_frame_index(index)
    movies = ("h264", "prores") if spec.prores else ("h264",)
    burn = outputs.BurnIn(spec.name, spec.version, (out_w, out_h), spec.fps, first) if spec.burn_in else None
    rate = src.rate if src.moving and src.rate else spec.fps
    sink = outputs.FrameSink(out, stem, rate, (out_w, out_h), spec.passes, on_written=done, movies=movies,
                             burn_in=burn, exr_meta={"derrumbe:shot": spec.name, "derrumbe:version": spec.version},
                             first=first)
    samples_used = []
    progress.stage("render", n_frames)
    try:
        for i, t in enumerate(frame_times):
            t0 = _clock()
            if i not in todo:
                sink.reuse(i, extra_files(i))
            else:
                passes = (None, None)
                exr = None
                p_lin, p_u8 = plate_frame(i)
                hold_i, hold_z = holdouts_of(i, p_u8)
                if t + shutter_s / 2 < first_motion:
                    img = p_u8          # before the collapse: the untouched plate
                    if spec.exr:
                        exr = (functools.partial(exr_out.frame_channels, p_lin, zeros4, zeros4, bmatte, hold_i,
                                                 rest_z, zeros2, holdouts=per_object(i)), None if src.moving else "plate")
                else:
                    layers = renderer.render(sim, float(t), shutter_s, BLUR_SAMPLES[q], grit, BLUR_STEP_PX[q])
                    samples_used.append(layers.samples)
                    t1 = _clock()
                    stage_t["render"] += t1 - t0
                    dl = None
                    if dust_r is not None:
                        state = dust_states.pop(i, None) or cache.load_dust_frame(keys["dust"], i)
                        if state is None:
                            raise DerrumbeError(f"the cached dust of frame {first + i} is damaged; "
                                                f"run `derrumbe cache clean {out}` and render again")
                        dl = _dust_layers(dust_r, dust_frame(state, light.sun_dir), layers, sun_share, spec.shutter / 360.0,
                                          hold_z)
                        t2 = _clock()
                        stage_t["dust_render"] += t2 - t1
                        t1 = t2
                    rng = np.random.default_rng([spec.seed, i])
                    res = composite(p_lin, p_u8, clean, bmatte, hold_i, layers, grain_model, spec.grain,
                                    shake[i], rng, dl, hold_z)
                    img, passes = res.frame, (res.debris, res.dust)
                    t0 = _clock()
                    stage_t["comp"] += t0 - t1
                    if spec.exr:
                        vec, z, cov = renderer.vectors(sim, float(t), 1.0 / spec.fps)
                        z = np.where(cov > 0, z, back_z)
                        exr = (functools.partial(exr_out.frame_channels, res.linear, res.debris, res.dust, bmatte,
                                                 hold_i, z, vec, res.touched,
                                                 visible_dust_depth(dl, back_z),
                                                 holdouts=per_object(i)), None)
                        t1, t0 = t0, _clock()
                        stage_t["vectors"] += t0 - t1
                sink.submit(i, img, *passes, exr=exr, holdout=hold_i if spec.passes else None)
            stage_t["write"] += _clock() - t0
            progress.advance(i + 1, n_frames)
        t0 = _clock()
        sink.close()
        stage_t["write"] += _clock() - t0
    except BaseException:
        sink.abort()
        raise
    finally:
        if dust_r is not None:
            dust_r.release()
        if renderer is not None:
            renderer.release()
        progress.end()
    timings.update({k: round(float(v[0]), 3) for k, v in stage_t.items()})
    cpu.update({k: round(float(v[1]), 3) for k, v in stage_t.items()})
    rss["frames"] = _peak_mb()
    cache.events.append(("frames", f"{n_frames - len(todo)} reused, {len(todo)} rendered"))
    files = dict(sink.digests)
    vdb_files = {}
    if spec.vdb and has_dust:
        with stage("vdb", total=n_frames):
            for i in range(n_frames):
                state = cache.load_dust_frame(keys["dust"], i)
                if state is None:
                    raise DerrumbeError(f"the cached dust of frame {first + i} is damaged; "
                                        f"run `derrumbe cache clean {out}` and render again")
                vpath = vdb_path(out, stem, first + i)
                write_vdb(vpath, *dust_grids(state))
                rel = vpath.relative_to(out).as_posix()
                vdb_files[first + i] = rel
                files[rel] = outputs.sha256(vpath)
                progress.advance(i + 1, n_frames)
    usd_info = None
    if spec.usd:
        with stage("usd"):
            from derrumbe.stages.usd_export import write_usd
            usd_path = out / f"{stem}.usdc"
            usd_info = write_usd(usd_path, fr, sim, ocam, spec.fps, first, n_frames, spec.name, vdb_files)
            files[usd_path.name] = outputs.sha256(usd_path)

    manifest = {
        "derrumbe_version": __version__,
        "spec": spec.to_dict(relative_to=out),
        "seed": spec.seed,
        "size": [out_w, out_h],
        "fps": spec.fps,
        "name": spec.name,
        "version": spec.version,
        "stem": stem,
        "first_frame": first,
        "last_frame": first + n_frames - 1,
        "frames": [outputs.frame_path(out, stem, i, first).name for i in range(n_frames)],
        "passes": [f"passes/{p.name}" for i in range(n_frames) for p in outputs.pass_paths(out, stem, i, first)]
        if spec.passes else [],
        "movie": outputs.movie_path(out, stem, "h264").name,
        "movies": [outputs.movie_path(out, stem, k).name for k in movies],
        "burn_in": bool(spec.burn_in),
        "exr": {"files": [exr_out.exr_path(out, stem, first + i).relative_to(out).as_posix()
                          for i in range(n_frames)], "colourspace": colour.WORKING,
                "layers": EXR_LAYERS, "compression": exr_out.COMPRESSION, "depth": "depth.Z and dust.Z: view depth in metres, 32-bit float, "
                f"{exr_out.FAR_Z:g} where there is no surface", "motion": "forward.u/forward.v: pixels to the next "
                "frame, u right, v up, at the frame's time (unblurred); shake and grain are not in the EXRs",
                } if spec.exr else None,
        "usd": usd_info,
        "vdb": {"files": list(vdb_files.values()), "grids": ["density (extinction, 1/m)", "temperature (K above "
                "ambient)", "velocity (m/s)"], "axes": "metres, y up, camera at the origin looking down -z"}
        if vdb_files else None,
        "plate": src.info(),
        "colour": {"ocio_config": colour.config_name(), "working": colour.WORKING, "display": colour.SRGB,
                   "display_note": "the inverse of the plate's sRGB input transform, untone-mapped, so the plate "
                                   "comes back as it went in"},
        "estimates": {
            "height_m": round(place.height_m, 2), "height_source": place.height_source,
            "height_sigma_log": round(place.height_sigma, 3),
            "height_range_m": [round(place.height_m * float(np.exp(s * place.height_sigma)), 2) for s in (-1, 1)],
            "storeys": round(place.storeys, 2), "storey_m": round(place.storey_m, 2),
            "ground_floor_m": round(place.ground_floor_m, 2), "scale": place.scale,
            "distance_m": round(place.depth_m, 2), "focal_mm": round(cam.focal_mm, 2),
            "horizon_y": round(cam.cy, 1), "floors": round(place.floors, 2), **light_info,
        },
        "holdouts": {"auto": not spec.no_auto_holdouts, "objects": matte.objects.as_list(),
                     "moving_tracks": 0 if movers is None else movers.next_id - 1},
        "fracture": {"bonds": int(len(fr.bonds)), **fr.info},
        "simulation": sim.info,
        "particles": {"count": grit.n},
        "debris_sizes": debris_sizes(sim, fr, grit),
        "dust": dust_info,
        "cache": {"keys": keys, "stages": {s: e for s, e in cache.events}},
        "render": {"motion_blur_samples_max": int(max(samples_used, default=1)), "shutter_deg": spec.shutter,
                   "shutter_s": round(shutter_s, 6),
                   "grain_sigma": [round(float(g), 4) for g in grain_model.sigma[1]],
                   "grain": grain_model.as_dict()},
        "timings_s": timings,
        "cpu_s": cpu,
        "peak_rss_mb_after": rss,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "software": {"python": platform.python_version(), "rapier3d": _version("rapier3d"),
                     "numpy": np.__version__, "opencv": cv2.__version__},
    }
    # Every file this render wrote or kept, with its sha256 (manifest.json itself aside).
    manifest["files"] = {k: files[k] for k in sorted(files)}
    outputs.write_manifest(out, manifest, stem)
    return manifest


def dust_albedo(spec: ShotSpec, light) -> np.ndarray:
    """The dust's colour: the user's, or crushed concrete and mortar (the default grey-
    beige) tinted a third of the way toward the facade's own colour as the plate shows
    it under its light (a stucco or brick building's dust takes its hue); the plate's
    sun and sky light it, so it carries the plate's white balance."""
    if spec.dust_color:
        return colour.srgb_colour(spec.dust_color)
    base = colour.srgb_colour(DUST_SRGB)
    fac = np.clip(np.asarray(light.facade_albedo, float), 1e-3, 1.0)
    tint = fac / max(float(fac.mean()), 1e-3) * float(base.mean())
    return (0.67 * base + 0.33 * tint).astype(np.float32)


def visible_dust_depth(dl: DustLayers | None, backdrop_z: np.ndarray) -> np.ndarray | None:
    """The cloud front's depth for dust.Z, never behind the street or wall the pixel sees:
    the march is coarser than the frame, so near the horizon a march cell's depth is the
    mean over rows whose street lies nearer than that mean."""
    if dl is None:
        return None
    return np.where(dl.depth > 0, np.minimum(dl.depth, backdrop_z), dl.depth).astype(np.float32)


def opaque_depth(layers, holdout_z: np.ndarray | None, size) -> np.ndarray:
    """Depth of the nearest opaque thing per march pixel (0: none): the nearest moving
    piece (its mean depth over the pixels it covers), a standing one or a holdout, whichever is nearer, so
    the dust is split into front and back where the comp puts that thing."""
    W, H = size
    ds = cv2.resize(layers.depth_sum, (W, H), interpolation=cv2.INTER_AREA)
    dn = cv2.resize(layers.depth_n, (W, H), interpolation=cv2.INTER_AREA)
    debris = np.where(dn > 1e-3, ds / np.maximum(dn, 1e-6), np.inf)
    if layers.static_z is not None:
        # The standing building hides the dust behind it (the comp shows the plate or the
        # still piece there), so the dust is split at its walls too: behind a standing
        # corner nearer than the facade, the cloud must not be drawn as in front.
        still = layers.static_z > 0
        st = cv2.resize(still.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA)
        sz = _min_pool(np.where(still, layers.static_z, np.inf), (W, H))
        debris = np.minimum(debris, np.where(st > 0.5, sz, np.inf))
    if holdout_z is not None:
        # The nearest holdout touching a march pixel: the dust in front of it covers it.
        debris = np.minimum(debris, _min_pool(holdout_z, (W, H)))
    return np.where(np.isfinite(debris) & (debris < 1e29), debris, 0.0).astype(np.float32)


def _min_pool(z: np.ndarray, size) -> np.ndarray:
    """The smallest value of z in each cell of a W x H grid laid over it."""
    W, H = size
    h, w = z.shape
    zz = np.where(np.isfinite(z), z, 1e30).astype(np.float32)
    # Cell starts along each axis (the grid is coarser than z, so no cell is empty).
    y0 = np.searchsorted(np.arange(h) * H // h, np.arange(H))
    x0 = np.searchsorted(np.arange(w) * W // w, np.arange(W))
    return np.minimum.reduceat(np.minimum.reduceat(zz, y0, axis=0), x0, axis=1)


def _holdout_layers(objects, size) -> tuple[np.ndarray, np.ndarray]:
    """The holdouts' union matte and per-pixel depth (inf where none) at the output size."""
    W, H = size
    hold = np.clip(cv2.resize(objects.matte(), (W, H), interpolation=cv2.INTER_AREA), 0, 1)
    # A pixel all but covered by a foreground object is the object's: the last per cent
    # of an edge blend would let the dust tint the plate's own pixels.
    hold[hold > 0.97] = 1.0
    z = objects.depth_map()
    if W <= z.shape[1] and H <= z.shape[0]:
        z = _min_pool(z, (W, H))        # a thin pole keeps its depth when the frame shrinks
    else:
        z = cv2.resize(np.where(np.isfinite(z), z, 1e30).astype(np.float32), (W, H), interpolation=cv2.INTER_NEAREST)
    return hold.astype(np.float32), np.where(z < 1e29, z, np.inf).astype(np.float32)


def _dust_layers(dust_r: DustRenderer, frame, layers, sun_share: float, shutter: float,
                 holdout_z: np.ndarray | None = None) -> DustLayers | None:
    """Marches the dust against the nearest opaque depth (debris or holdout; coarse, then
    the full-size edges) and blurs it along its own motion over the shutter."""
    if not frame.sigma.any():
        return None
    opaque = opaque_depth(layers, holdout_z, dust_r.size)
    full = opaque_depth(layers, holdout_z, dust_r.out_size)
    d = dust_r.render(frame, opaque, full)
    # The motion of the dust spread a little beyond it, so blur reaches past its edges.
    a = np.maximum(d.front[..., 3], d.back[..., 3])
    wa = cv2.GaussianBlur(a, (0, 0), 3.0) + 1e-6
    mo = np.stack([cv2.GaussianBlur(d.motion[..., c] * a, (0, 0), 3.0) / wa for c in range(2)], -1).astype(np.float32)
    front, back = np.empty_like(d.front), np.empty_like(d.back)
    vector_blur(np.ascontiguousarray(d.front), mo, shutter, front)
    vector_blur(np.ascontiguousarray(d.back), mo, shutter, back)
    np.clip(front[..., 3], 0.0, 1.0, out=front[..., 3])
    np.clip(back[..., 3], 0.0, 1.0, out=back[..., 3])
    return DustLayers(front, back, d.shade_near, d.shade_far, sun_share, d.depth, mo)
