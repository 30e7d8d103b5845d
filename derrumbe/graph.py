"""The stage graph of a shot: every stage, its inputs, the spec fields it reads, its version.

This table is the one place a stage is declared. Its cache key is derived from the
declaration: the stage's name and version, the values of the spec fields and settings
it reads, the digests of the files it reads, the keys of the stages it reads from and
the versions of derrumbe and of the libraries that change its result. Nothing else goes
into a key, and nothing is listed by hand twice: `--explain` compares these same
parameters with the last run's and names the field that changed.

    plate ─ matte ┬ camera ─ holdout_depths ─── view ─ cleanplate ─ lighting ─┐
                  └ windows (openings: glazed by fracture, read by lighting)   │
      camera, windows ─ fracture ─ simulate ─ particles ───────────────────────┼─ frames ─ encode
                                            └ dust (streamed, a frame at a time) ┘      └ vdb, usd

The sim side (matte to dust) runs once per shot; the frames are independent of each other
and may be rendered in chunks by many processes (runners/); encode, vdb and usd run once
every frame is on disk. Stage bodies live in derrumbe/stages/; the adapters here only
take their arguments from the scene.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from derrumbe import colour
from derrumbe.cache import jsonable
from derrumbe.materials import MATERIALS
from derrumbe.scene import Scene
from derrumbe.spec import WIND_DEFAULT, ShotSpec
from derrumbe.stages.holdouts import VERSION as HOLDOUTS_VERSION

# Settings a preview trades for speed: (preview, final).
PREVIEW_MAX_PIECES = 2500    # a preview trades fracture detail for speed (same hierarchy, coarser leaves);
                             # at 1500 its rubble was car-sized boulders (D 0.8-1.3 on four plates)
DUST_CELLS = (60_000, 300_000)          # cells of the most the dust grid may grow to
DUST_STEPS_PER_FRAME = (1, 1)
PARTICLES = (1500, 4000)                # grit and small chunks
BLUR_SAMPLES = (4, 8)                   # most motion-blur sub-frames a frame
# A new sub-frame for every this many pixels of travel; the render smears each between its
# neighbours (motion_fill.py), so a preview's can be sparse: at 8 px instead of 5 its
# frames look the same and img_270's render takes a third less time in its moving layer.
BLUR_STEP_PX = (8.0, 3.0)
DUST_MARCH_DIV = (3, 4)                 # the dust is marched at 1/3, 1/4 of the frame's size (edges at full size)
CLEAR_TAU = (0.5, 1.5)                  # near the lens, this range of optical depth from it fades (see DustRenderer)

OPENCV = "opencv-contrib-python-headless"


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[Scene], Any]                  # the result, from the scene (its declared inputs)
    inputs: tuple[str, ...] = ()                # stages whose results it reads
    fields: tuple[str, ...] = ()                # spec fields it reads
    files: tuple[str, ...] = ()                 # input files whose content it reads (digests)
    settings: Callable[[Scene], dict] | None = None   # derived values: the preview/final tables, backends
    version: int = 1                            # bump when its code changes what it produces
    libs: tuple[str, ...] = ("numpy",)          # packages whose versions change its result
    store: str = "pickle"                       # pickle | stream (a frame at a time) | none (cheap)
    side: str = "sim"                           # sim: once per shot; frame: per frame; finish: after the frames
    progress_total: Callable[[Scene], int] | None = None

    def params(self, scene: Scene) -> dict:
        """Everything this stage's result depends on besides its inputs' results."""
        p = {f: _field(scene.spec, f) for f in self.fields}
        p.update({f"{f} file": scene.digests.get(f) for f in self.files})
        if self.settings is not None:
            p.update(self.settings(scene))
        return p


def _field(spec: ShotSpec, name: str):
    v = getattr(spec, name)
    return list(v) if isinstance(v, tuple) else v


# ---- the stages' adapters: arguments from the scene, bodies in derrumbe/stages/ -----------
def _matte(s: Scene):
    from derrumbe.stages.camera import stop_at_the_foot, too_tall_by_the_facade
    from derrumbe.stages.matte import compute_matte
    mask, holdout = s.masks
    return compute_matte(s.plate.srgb, s.spec.box, mask, holdout, s.spec.seed,
                         auto_holdouts=not s.spec.no_auto_holdouts, judge=too_tall_by_the_facade(s.plate.srgb), foot=stop_at_the_foot)


def _camera(s: Scene):
    """The scale estimate reads the people and cars the matte stage found as rulers."""
    from derrumbe.stages.camera import place_building, standing_objects
    matte = s["matte"]
    return place_building(s.plate.srgb, matte.building, s.spec.focal_mm, s.spec.horizon_y, s.spec.height_m,
                          people=standing_objects(matte.objects))


def _material(s: Scene):
    """The material preset: the spec's, or with `auto` the one the facade suggests (its
    colours, and its storeys as the camera stage measured them)."""
    if s.spec.material != "auto":
        return MATERIALS[s.spec.material]
    from derrumbe.stages.material import suggest_material
    name, _ = suggest_material(s.plate.srgb, s["matte"].building, s["camera"][1].storey_m)
    return MATERIALS[name]


def _windows(s: Scene):
    """The facade's window openings in plate pixels: glazed by the fracture, read by the
    light (their reveals' shading says the sun's side). Cheap, so found, not cached."""
    from derrumbe.stages.windows import detect_windows
    return detect_windows(s.plate.srgb, s["matte"].building)


def _holdout_depths(s: Scene):
    """Each holdout's depth from its ground contact and this camera (cheap: not cached)."""
    from derrumbe.stages.holdouts import assign_depths
    cam, place = s["camera"]
    objects = s["matte"].objects
    dropped = assign_depths(objects, cam.f_px, cam.cy, cam.eye_m, place.depth_m)
    return dropped


def pieces_used(spec: ShotSpec) -> int:
    return min(spec.pieces, PREVIEW_MAX_PIECES) if spec.preview else spec.pieces


def _fracture(s: Scene):
    from derrumbe.stages.fracture import fracture_building
    cam, place = s["camera"]
    sp = s.spec
    from derrumbe.stages.windows import to_facade
    return fracture_building(cam, place, s["matte"].building, sp.style, sp.direction, s["material"],
                             pieces_used(sp), sp.seed, sp.pieces, windows=to_facade(s["windows"], cam, place.depth_m))


def sample_hz(spec: ShotSpec) -> int:
    # Two poses a frame: the renderer interpolates the motion-blur sub-frames between them.
    return spec.fps * 2


def standing_obstacles(s: Scene) -> list:
    """The boxes of what stands in front (holdouts.obstacles): the debris hits them and
    the heap does not run past them."""
    from derrumbe.stages.holdouts import obstacles
    cam, place = s["camera"]
    return obstacles(s["matte"].objects.objects, cam, place.depth_m)


def _simulate(s: Scene):
    sp = s.spec
    return s.backends.sim.simulate(s["fracture"], s["material"], sp.style, sp.direction, sp.start,
                                   sp.duration, sample_hz(sp), sp.seed, progress=s.progress.advance,
                                   obstacles=standing_obstacles(s))


def face_albedo(material) -> np.ndarray:
    return colour.rec709_to_working(material.face_albedo)    # presets are Rec.709


def _particles(s: Scene):
    from derrumbe.stages.particles import emit_particles
    return emit_particles(s["simulate"], s["fracture"], face_albedo(s["material"]), PARTICLES[s.quality], s.spec.seed)


def _dust(s: Scene) -> dict:
    """The dust, simulated for the whole shot before any frame is rendered, one stored
    state a frame: it depends on the plate's geometry, never on the output size. The
    walls come from the plate at its own resolution for the same reason."""
    from derrumbe.stages.dust import DustSim, street_walls
    from derrumbe.stages.holdouts import dust_points
    from derrumbe.stages.matte import sky_likelihood
    sp, q, key = s.spec, s.quality, s.keys["dust"]
    fr, sim, (cam, place), matte = s["fracture"], s["simulate"], s["camera"], s["matte"]
    wind = sp.wind or WIND_DEFAULT
    sky_plate = sky_likelihood(s.plate.srgb)
    bm_plate = (matte.building > 0.5).astype(np.float32)
    dust = DustSim(fr, sim, cam, amount=sp.dust, wind_speed=wind[0], wind_heading_deg=wind[1],
                   seed=sp.seed, target_cells=DUST_CELLS[q], steps_per_second=sp.fps * DUST_STEPS_PER_FRAME[q],
                   walls=lambda g: street_walls(g, fr, cam, bm_plate, sky_plate, place.depth_m))
    n = s.n_frames
    lens = np.zeros(n)
    # The dust settled so far on what faces up on each holdout standing in the street (the
    # integral of its cover rate; frames.py coats it). (Their depths are set by holdout_depths,
    # asked for here: a cached simulation does not ask for it.)
    s["holdout_depths"]
    points = dust_points(matte.objects.objects, cam)
    deposit = np.zeros((len(points), n))
    settled = np.zeros(len(points))
    for i, t in enumerate(s.frame_times):
        s.cache.store_dust_frame(key, i, dust.advance_to(float(t)))
        lens[i] = dust.lens_depth()
        settled += dust.cover_rate_at(np.array([p for _, p in points]).reshape(-1, 3)) / sp.fps
        deposit[:, i] = settled
        s.progress.advance(i + 1, n)
    g = dust.grid
    info = {"enabled": True, "grid": list(g.shape[::-1]), "cell_m": round(g.h, 3),
            "origin_m": [round(float(x), 2) for x in g.origin], "steps": dust.steps_run,
            "grid_grew": dust.grows, "first_emission_s": round(dust.em.first_time(dust.dt), 3),
            "mass_kg": round(dust.mass_g() / 1000.0, 1),
            "settled_and_left_kg": [round(float(x) / 1000.0, 1) for x in dust.lost_g[:2]],
            "holdout_deposit": {str(oid): [round(float(x), 5) for x in e] for (oid, _), e in zip(points, deposit)},
            "lens_tau": round(float(lens.max()), 3), "lens_tau_frames": [round(float(x), 3) for x in lens], "lens_tau_at_s": round(float(s.frame_times[int(lens.argmax())]), 3),
            **dust.extent()}
    s.cache.finish_dust(key, n, info)
    return info


def _view(s: Scene):
    from derrumbe.stages.view import output_view
    return output_view(s.plate, s["matte"], s["camera"][0], s.out_size)


def _cleanplate(s: Scene):
    from derrumbe.stages.cleanplate import make_cleanplate
    v, (_, place), (_, info) = s["view"], s["camera"], s["lighting"]
    # How overcast: the sun's share of the light (lighting.py: < 0.3 overcast, > 1 hard sun).
    overcast = float(np.clip((1.0 - info["sun_to_sky"]) / 0.7, 0.0, 1.0))
    return make_cleanplate(v.plate_out, v.bmatte, v.hold_still, v.skyness, v.ocam, v.ocam.f_px / place.depth_m,
                           s.spec.seed, place.storey_m, place.ground_floor_m, overcast=overcast,
                           height_m=place.proxy_height_m, windows=s["windows"] * (s.out_size[0] / s.plate.size[0]),
                           keystone=_keystone(place, s.out_size[0] / s.plate.size[0]))


def _keystone(place, scale: float) -> tuple[float, float] | None:
    """(the verticals' vanishing row, the base row) at the output size, for a camera the
    scale estimate found tilted; None for a level one."""
    vp = place.scale.get("vanishing_row") if place.scale else None
    return None if vp is None else (float(vp) * scale, float(place.base_row) * scale)


def _lighting(s: Scene):
    from derrumbe.stages.lighting import estimate_lighting
    v = s["view"]
    windows = s["windows"] * (s.out_size[0] / s.plate.size[0])      # at the frame's size, as the light is read
    return estimate_lighting(v.plate_out, v.bmatte, v.skyness, s.spec.sun_azimuth, s.spec.sun_elevation, windows)


def _quality(*tables) -> Callable[[Scene], dict]:
    names = [n for n, _ in tables]
    return lambda s: {n: t[s.quality] for n, t in zip(names, (t for _, t in tables))}


STAGES: tuple[Stage, ...] = (
    Stage("matte", _matte, files=("plate", "mask", "holdout"), version=6,
          fields=("box", "seed", "plate_colorspace", "no_auto_holdouts"),
          settings=lambda s: {"holdouts version": HOLDOUTS_VERSION}, libs=("numpy", "scipy", OPENCV)),
    Stage("camera", _camera, inputs=("matte",), fields=("focal_mm", "horizon_y", "height_m"), version=3,
          libs=("numpy", OPENCV)),
    Stage("holdout_depths", _holdout_depths, inputs=("matte", "camera"), store="none", version=2),
    Stage("windows", _windows, inputs=("matte",), store="none", version=2, libs=("numpy", OPENCV)),
    Stage("material", _material, inputs=("matte", "camera"), fields=("material",), store="none", version=1,
          libs=("numpy", OPENCV)),
    Stage("fracture", _fracture, inputs=("matte", "camera", "windows", "material"),
          fields=("style", "direction", "pieces", "seed"),
          settings=lambda s: {"pieces used": pieces_used(s.spec)}, version=4, libs=("numpy", "scipy")),
    Stage("simulate", _simulate, inputs=("fracture", "holdout_depths", "material"),
          fields=("style", "direction", "start", "duration", "fps", "seed"),
          settings=lambda s: {"sample hz": sample_hz(s.spec), "simulator": s.backends.simulator},
          version=26, libs=("numpy",), progress_total=lambda s: int(s.spec.duration * sample_hz(s.spec)) + 1),
    Stage("particles", _particles, inputs=("simulate", "fracture", "material"), fields=("seed", "preview"),
          settings=lambda s: {"count": PARTICLES[s.quality], "working": colour.WORKING}, version=3,
          libs=("numpy", "numba", "opencolorio")),
    Stage("dust", _dust, inputs=("simulate", "fracture", "camera", "matte", "holdout_depths"),
          fields=("dust", "seed", "fps", "duration"),
          settings=lambda s: {"wind": list(s.spec.wind or WIND_DEFAULT), "cells": DUST_CELLS[s.quality],
                              "steps": DUST_STEPS_PER_FRAME[s.quality]},
          version=16, libs=("numpy", "numba", "scipy", OPENCV), store="stream", progress_total=lambda s: s.n_frames),
    Stage("view", _view, inputs=("matte", "camera", "holdout_depths"), fields=("size", "preview"), store="none",
          settings=lambda s: {"output size": list(s.out_size)},
          side="frame", libs=("numpy", OPENCV, "opencolorio")),
    Stage("lighting", _lighting, inputs=("view", "windows"), fields=("sun_azimuth", "sun_elevation"), store="none",
          version=4,
          side="frame", libs=("numpy", "opencolorio")),
    Stage("cleanplate", _cleanplate, inputs=("view", "camera", "lighting", "windows"), fields=("seed",), side="frame", version=46,
          libs=("numpy", "scipy", OPENCV, "opencolorio")),
    Stage("frames", lambda s: None, inputs=("view", "cleanplate", "lighting", "simulate", "fracture", "particles",
                                            "dust", "material"),
          fields=("size", "grain", "shake", "dust_color", "see_through", "fps", "preview", "passes", "name", "shutter",
                  "seed"),
          settings=lambda s: {"dust color used": list(s.spec.dust_color) if s.spec.dust_color else "the material's",
                              "blur": [BLUR_SAMPLES[s.quality], BLUR_STEP_PX[s.quality]],
                              "march": DUST_MARCH_DIV[s.quality], "clear tau": list(CLEAR_TAU),
                              "working": colour.WORKING,
                              "display": colour.SRGB, "renderer": s.backends.renderer},
          version=116, libs=("numpy", "numba", "opencolorio", OPENCV), store="none", side="frame"),
)
BY_NAME = {st.name: st for st in STAGES}
SIM_SIDE = tuple(st.name for st in STAGES if st.side == "sim")


def _backend_libs(s: Scene, st: Stage) -> tuple[str, ...]:
    if st.name == "simulate":
        return s.backends.sim.libs
    if st.name == "frames":
        return s.backends.render.libs
    return ()


@functools.cache
def library_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    if name == "derrumbe":
        from derrumbe import __version__
        return __version__
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def software(libs) -> dict:
    """The versions a key is made with: derrumbe's and those of the libraries named. An
    upgrade recomputes, never reuses a result the new code would not have made."""
    return {name: library_version(name) for name in ("derrumbe", *sorted(set(libs)))}


def key_of(name: str, version: int, params: dict, upstream: tuple = (), libs=()) -> str:
    blob = json.dumps({"stage": name, "v": version, "params": params, "up": list(upstream),
                       "software": software(libs)}, sort_keys=True, default=jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def derive_keys(scene: Scene) -> None:
    """Every stage's key and parameters, in graph order, from the declarations alone (so
    --explain can say what will run without running anything)."""
    for st in STAGES:
        p = st.params(scene)
        if st.name == "dust" and scene.spec.dust <= 0:
            p = {"dust": 0}
        scene.params[st.name] = p
        up = tuple(scene.keys[i] for i in st.inputs)
        scene.keys[st.name] = key_of(st.name, st.version, p, up, st.libs + _backend_libs(scene, st))


def frame_key(scene: Scene, i: int) -> str:
    return key_of("frame", 1, dict(i=i), (scene.keys["frames"],))


def upstream_of(names) -> list[str]:
    """The stages names depend on (themselves included), in graph order."""
    need = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(BY_NAME[n].inputs)
    return [st.name for st in STAGES if st.name in need]


def dust_on(scene: Scene) -> bool:
    return scene.spec.dust > 0


# ---- running stages --------------------------------------------------------------------
def is_done(scene: Scene, name: str, verify: bool = False) -> bool:
    st = BY_NAME[name]
    if st.store == "none":
        return False
    if st.store == "stream":
        return not dust_on(scene) or scene.cache.dust_complete(scene.keys[name], scene.n_frames, verify=verify)
    return scene.cache.has(name, scene.keys[name])


def run_stage(scene: Scene, name: str, stage_clock=None, verify: bool = True) -> None:
    """Puts the stage's result in the scene: from the cache when it is there and whole,
    else computed (and stored). stage_clock(name, total) wraps it in a timed, reported
    stage. verify: check every stored frame of a streamed stage first (a process that only
    reads some frames need not: each is checked as it is read)."""
    st = BY_NAME[name]
    key = scene.keys[name]
    if st.store == "none":
        scene.results[name] = st.fn(scene)
        return
    total = st.progress_total(scene) if st.progress_total else None
    with (stage_clock(name, total) if stage_clock else _nothing()):
        if st.store == "stream":
            scene.results[name] = _run_stream(scene, st, key, verify)
        else:
            scene.results[name], _ = scene.cache.get_or_run(name, key, scene.params[name], lambda: st.fn(scene))


def _run_stream(scene: Scene, st: Stage, key: str, verify: bool) -> dict:
    cache = scene.cache
    if not dust_on(scene):
        return {"enabled": False}
    if cache.dust_complete(key, scene.n_frames, verify=verify):
        cache.events.append((st.name, "cached"))
        return cache.dust_info(key)
    info = st.fn(scene)
    if not any(s == st.name for s, _ in cache.events):
        cache.events.append((st.name, "ran"))
    return info


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def load(scene: Scene, names, stage_clock=None, verify: bool = True) -> None:
    """Puts the results of names and everything they read into the scene (cached ones
    read back, cheap ones computed), in graph order."""
    for n in upstream_of(names):
        if n not in scene.results:
            run_stage(scene, n, stage_clock, verify)


# ---- explaining what would run ---------------------------------------------------------
def why(scene: Scene, name: str, last_keys: dict, last_params: dict) -> str:
    """Why a stage will run: the field that changed, or the stage above it that did."""
    if not last_keys:
        return "nothing cached in this folder yet"
    if last_keys.get(name) == scene.keys[name]:
        return "its cached result is missing or damaged"
    own = _changed(last_params.get(name), scene.params[name])
    if own:
        return "changed: " + "; ".join(own)
    changed = [u for u in BY_NAME[name].inputs if last_keys.get(u) != scene.keys.get(u)]
    if changed:
        first = changed[0]
        deeper = why(scene, first, last_keys, last_params)
        return f"upstream changed: {', '.join(changed)}" + (f" ({deeper})" if deeper.startswith("changed") else "")
    return "its parameters changed (a library or derrumbe's version)"


def _changed(old: dict | None, new: dict) -> list[str]:
    if not isinstance(old, dict):
        return []
    new = json.loads(json.dumps(new, default=jsonable))
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append(f"{k} {_show(old.get(k))} -> {_show(new.get(k))}")
    return out


def _show(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v))
    return "unset" if v is None else str(v)
