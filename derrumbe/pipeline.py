"""The runner: a shot's stage graph (graph.py) run in this process.

The sim side runs once, then the frames, then the finishing stages. The same three steps
run on a Dask cluster (runners/dask_cluster.py: the frames in chunks across workers) and
as a farm's tasks (farm.py); each reads the others' results from the shot folder. The
CLI, the web page and the farm build a ShotSpec and call run_shot (or the cluster's).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import numpy as np

from derrumbe import deliver, eta, graph
from derrumbe.backends import Backends
from derrumbe.cache import ShotLock
from derrumbe.files import sweep_temps
from derrumbe.frames import describe_thinning, reusable, render_frames
from derrumbe.graph import SIM_SIDE, derive_keys, frame_key
from derrumbe.progress import Progress
from derrumbe.scene import Scene, open_scene
from derrumbe.stages.lighting import describe as describe_light
from derrumbe.stages.manifest import version_manifest_path
from derrumbe.spec import ShotSpec

__all__ = ["Progress", "run_shot", "explain"]


class Clock:
    """Wall and CPU seconds and peak memory per stage, reported to the progress."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}          # CPU seconds of all the process's threads
        self.rss: dict[str, float] = {}          # peak RSS (MB) reached by the end of each stage

    @contextmanager
    def __call__(self, name, total=None):
        self.progress.stage(name, total)
        t0 = np.array([time.perf_counter(), time.process_time()])
        yield
        d = np.array([time.perf_counter(), time.process_time()]) - t0
        self.add(name, d[0], d[1])
        self.rss[name] = deliver.peak_mb()
        self.progress.end()

    def add(self, name, wall, cpu):
        self.wall[name] = round(self.wall.get(name, 0.0) + float(wall), 3)
        self.cpu[name] = round(self.cpu.get(name, 0.0) + float(cpu), 3)


def run_shot(spec: ShotSpec, out_dir: str | Path, progress: Progress | None = None,
             log: Callable[[str], None] | None = None, backends: Backends | None = None,
             cache_root: str | Path | None = None, locked: bool = False) -> dict:
    """Renders the shot into out_dir and returns its manifest. cache_root: the folder whose
    .derrumbe holds the stage cache (a wedge's variants share one); locked: the caller
    holds that folder's lock already."""
    progress = progress or Progress()
    clock = Clock(progress)
    with clock("plate"):
        scene = open_scene(spec, out_dir, cache_root, progress, log, backends)
        derive_keys(scene)
    for w in scene.warnings:
        progress.warn(w)
    try:
        with nullcontext() if locked else ShotLock(scene.cache.root.parent):
            begin(scene)
            work, skip = workloads(scene)
            progress.plan(eta.predict(work, skip), scene.spec.first_frame)
            sim_side(scene, clock)
            info = frame_side(scene, clock)
            manifest = finish(scene, info, clock)
            eta.record(stage_seconds(clock.wall), work, {s: 1.0 - skip.get(s, 0.0) for s in work})
            return manifest
    finally:
        scene.close()


def begin(scene: Scene) -> None:
    """Under the lock: a previous manifest would make a half-finished re-render look
    complete (this version's own too; other versions' stay, their files untouched);
    temporaries a killed run left are nobody's now that the lock is ours."""
    (scene.out / "manifest.json").unlink(missing_ok=True)
    version_manifest_path(scene.out, scene.spec.stem).unlink(missing_ok=True)
    sweep_temps(scene.out)
    sweep_temps(scene.cache.root)


def sim_side(scene: Scene, clock=None, verify: bool = True) -> None:
    """The stages that run once per shot (matte to dust), cached ones read back."""
    for name in SIM_SIDE:
        graph.run_stage(scene, name, clock, verify)
        _say(scene, name)


def _say(scene: Scene, name: str) -> None:
    say = scene.log
    if name == "camera":
        cam, place = scene["camera"]
        say(f"building height {place.height_source}; "
            f"{place.depth_m:.1f} m away; focal {cam.focal_mm:.0f} mm; horizon at row {cam.cy:.0f}")
    elif name == "material" and scene.spec.material == "auto":
        say(f"material: {scene['material'].name} (--material auto: what the facade suggests; --explain says why)")
    elif name == "holdout_depths":
        dropped = scene["holdout_depths"]
        if dropped:
            say(f"{len(dropped)} detections dropped: not in front of the building by their ground contact, "
                f"or not the size of what they were taken for")
        objs = scene["matte"].objects.objects
        say(f"{len(objs)} holdouts: " + (", ".join(f"{o.kind} at {o.depth_m:.1f} m" for o in objs) or "none"))
    elif name == "fracture":
        fr = scene["fracture"]
        say(f"{fr.n} fragments in {fr.info['pieces']} pieces, {fr.info['clusters']} clusters, "
            f"{fr.info['storeys']} storeys, {fr.info.get('windows', 0)} glazed windows")


def frame_setup(scene: Scene, clock=None) -> None:
    """The output-size view, the clean plate and the light: what every frame reads."""
    with clock("cleanplate") if clock else nullcontext():
        graph.load(scene, ["view", "cleanplate", "lighting"], verify=False)
    scene.log(describe_light(scene["lighting"][1]))
    thinned = describe_thinning(scene.spec.see_through, scene.cache.dust_info(scene.keys["dust"]), scene.spec.fps) \
        if graph.dust_on(scene) else None
    if thinned:
        scene.log(thinned)


def frame_side(scene: Scene, clock: Clock) -> dict:
    """Every frame in this process, those finished with this key kept."""
    frame_setup(scene, clock)
    n = scene.n_frames
    progress = scene.progress
    progress.stage("render", n)
    done = [0]

    def tick(i):
        done[0] += 1
        progress.advance(done[0], n)
    try:
        info = render_frames(scene, range(n), on_frame=tick)
    finally:
        progress.end()
    for k in info["wall_s"]:
        clock.add(k, info["wall_s"][k], info["cpu_s"][k])
    clock.rss["frames"] = deliver.peak_mb()
    scene.cache.events.append(("frames", f"{len(info['reused'])} reused, {len(info['rendered'])} rendered"))
    return info


def finish(scene: Scene, info: dict, clock: Clock) -> dict:
    """Movies, VDBs and USD from the files on disk, then the manifest; the keys this run
    used are saved (what --explain and `cache clean` compare with)."""
    files = deliver.frame_digests(scene, info.get("digests", {}))
    with clock("encode", scene.n_frames):
        files.update(deliver.encode(scene))
    vdb_files = {}
    if scene.spec.vdb and scene.spec.dust > 0:
        with clock("vdb", scene.n_frames):
            vdb_files, more = deliver.write_vdbs(scene)
            files.update(more)
    usd_info = None
    if scene.spec.usd:
        with clock("usd"):
            graph.load(scene, ["view"])
            usd_info, more = deliver.write_usd_file(scene, vdb_files)
            files.update(more)
    manifest = deliver.build_manifest(scene, files, info, usd_info, vdb_files, clock.wall, clock.cpu, clock.rss)
    scene.cache.save_last_keys(scene.keys, scene.params)
    return manifest


# ---- how long it will take (eta.py: nothing here changes what a render makes) --------------
def workloads(scene: Scene) -> tuple[dict, dict]:
    """Each progress stage's workload (eta.py's units) and the share of it already done:
    cached stages, reused frames. The plate stage has run by now."""
    sp = scene.spec
    n, (w, h), (ow, oh) = scene.n_frames, scene.src.size, scene.out_size
    work = eta.workloads(w * h / 1e6, 0, ow * oh / 1e6, n, graph.pieces_used(sp), sp.duration,
                         graph.PARTICLES[scene.quality], graph.DUST_CELLS[scene.quality] if sp.dust > 0 else None)
    if not sp.usd:
        work["usd"] = 0.0
    work["vdb"] = work["dust"] if sp.vdb else 0.0        # a volume a frame: as many cells as the dust
    skip = {"plate": 1.0, "cleanplate": 0.0}
    for name in ("matte", "camera", "fracture", "simulate", "particles", "dust"):
        skip[name] = 1.0 if graph.is_done(scene, name) else 0.0
    skip["render"] = reused_frames(scene) / n
    return work, skip


def stage_seconds(wall: dict) -> dict:
    """Wall seconds per progress stage: the frames' parts and the movies summed as 'render'
    (what eta's render rate is per)."""
    out = {k: v for k, v in wall.items() if k in eta.STAGES and k != "render"}
    out["render"] = sum(wall.get(k, 0.0) for k in ("render", "dust_render", "comp", "write", "vectors", "encode"))
    return out


def reused_frames(scene: Scene) -> int:
    return sum(1 for i in range(scene.n_frames) if reusable(scene, i, frame_key(scene, i)))


# ---- what a run would do ------------------------------------------------------------------
EXPLAINED = ("matte", "camera", "fracture", "simulate", "particles", "dust", "cleanplate")


def explain(spec: ShotSpec, out_dir: str | Path) -> list[str]:
    """What a run of this spec into out_dir would assume about the plate (the estimates)
    and compute, and why (the spec field that changed since the last run), without
    running anything."""
    scene = open_scene(spec, out_dir, make_dirs=False)
    try:
        derive_keys(scene)
        lines = [f"warning: {w}" for w in scene.warnings] + estimate_lines(scene) + explain_scene(scene)
        if version_manifest_path(scene.out, scene.spec.stem).exists():
            lines.append(f"version: {scene.spec.stem} exists in {scene.out.name}/ and will be rendered again; "
                         f"other versions stay")
        return lines
    finally:
        scene.close()


def estimate_lines(scene: Scene) -> list[str]:
    """What the matte and camera stages will find (the matte from the cache when it ran
    before), in the words the web page uses: storeys, height with its range, distance,
    lens, horizon, sun, holdouts and the material the facade looks like."""
    from derrumbe import estimates
    key = scene.keys["matte"]
    matte = scene.cache.load("matte", key) if scene.cache.has("matte", key) else graph.BY_NAME["matte"].fn(scene)
    est = estimates.estimate(scene.plate.srgb, scene.plate.linear(), matte, scene.spec, scene.out_size)
    return estimates.describe(est, scene.spec.material)


def explain_scene(scene: Scene) -> list[str]:
    cache = scene.cache
    last, last_params = cache.last_keys(), cache.last_params()
    lines = []
    for name in EXPLAINED:
        if name == "dust" and scene.spec.dust <= 0:
            lines.append("dust: off (--dust 0)")
        elif graph.is_done(scene, name):
            lines.append(f"{name}: cached ({scene.keys[name]})")
        else:
            lines.append(f"{name}: will run ({graph.why(scene, name, last, last_params)})")
    n, first = scene.n_frames, scene.spec.first_frame
    reuse = reused_frames(scene)
    lines.append(f"frames {first}-{first + n - 1} as {scene.spec.stem}.####.png: {reuse} of {n} reused, "
                 f"{n - reuse} to render"
                 + ("" if reuse == n else f" ({graph.why(scene, 'frames', last, last_params)})"))
    return lines


def shot_keys(spec: ShotSpec, digests: dict, out_size: tuple[int, int]) -> dict:
    """Every stage's key for a spec, given its input files' digests and output size
    (no plate is opened): the keys as graph.py derives them."""
    scene = Scene(spec=spec, out=Path("."), cache=None, src=None, out_size=tuple(out_size), digests=dict(digests))
    derive_keys(scene)
    return dict(scene.keys)
