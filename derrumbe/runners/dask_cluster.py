"""The stage graph on a Dask distributed cluster: the sim side once, the frames in chunks.

Each cached stage of a shot is one Dask task keyed by its cache key, so shots and wedge
variants that share an upstream stage (the same matte, fracture, simulation, dust) share
one task and compute it once. Frames go out in chunks, each a task on whichever worker is
free; every worker reads and writes the shot folder on shared storage, with the same
atomic writes, stage cache and per-frame records as a local render, so the output is the
same bytes. The client holds the shot folder's lock for the whole run.

A lost worker (killed, out of memory, its machine gone) takes its chunk with it; the
scheduler runs the chunk again on another worker, which skips every frame the lost worker
had finished (its record and files are on the shared folder), so only the frame that was
in flight when it died is rendered again. Progress comes back per chunk.

Dask is the `farm` extra, imported only here and only when a cluster is asked for.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

from derrumbe.errors import DerrumbeError

CHUNK = 8                   # frames a task: a few seconds of work each at preview size
CONNECT_S = 10              # how long a scheduler that does not answer is waited for


def require_dask():
    try:
        import distributed
    except ImportError:
        raise DerrumbeError("running on a Dask cluster needs the farm extra: pip install 'derrumbe[farm]' "
                            "(dask and distributed)") from None
    return distributed


@contextmanager
def connect(scheduler: str | None, workers: int | None = None):
    """A client of the scheduler at tcp://HOST:PORT, or of a LocalCluster of this machine's
    processes (scheduler None or "local"): one single-threaded worker process each, since
    each opens its own OpenGL context and numba already uses every core."""
    distributed = require_dask()
    if scheduler in (None, "", "local"):
        n = workers or max(1, os.cpu_count() or 1)
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=f"{CONNECT_S}s")
    except (OSError, TimeoutError) as e:
        raise DerrumbeError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    with client:
        yield client


# ---- tasks (run on the workers) ---------------------------------------------------------
_OPEN: dict = {}            # this worker's scene and frame renderer, reused by its next chunks


def _job(scene) -> dict:
    return {"spec": scene.spec.to_dict(), "out": str(scene.out), "cache_root": str(scene.cache.root.parent),
            "keys": dict(scene.keys)}


def _scene(job: dict):
    from derrumbe.graph import derive_keys
    from derrumbe.scene import open_scene
    from derrumbe.spec import ShotSpec
    scene = open_scene(ShotSpec.from_dict(job["spec"]), job["out"], job["cache_root"], make_dirs=False)
    derive_keys(scene)
    if scene.keys != job["keys"]:
        # Another derrumbe, or other library versions, would make (and cache) other results.
        scene.close()
        differ = sorted(k for k in job["keys"] if job["keys"][k] != scene.keys.get(k))
        raise DerrumbeError(f"worker {_worker()} derives other cache keys ({', '.join(differ)}): install the same "
                            f"derrumbe and libraries on every worker as on the client")
    return scene


def task_stage(job: dict, name: str, *upstream) -> dict:
    """One cached stage of the sim side (or the clean plate), its inputs read back from the
    shared folder's cache. Returns its cache events and seconds."""
    from derrumbe import graph
    from derrumbe.pipeline import Clock, _say
    from derrumbe.progress import Progress
    scene = _scene(job)
    try:
        clock = Clock(Progress())
        lines = []
        scene.log = lines.append
        graph.load(scene, [name], clock, verify=False)
        _say(scene, name)
        return {"stage": name, "events": scene.cache.events, "wall": clock.wall, "cpu": clock.cpu, "log": lines,
                "worker": _worker()}
    finally:
        scene.close()


def task_chunk(job: dict, frames: list[int], *upstream) -> dict:
    """Frames of one shot, on this worker; those already finished are kept."""
    from derrumbe.frames import render_frames
    scene, renderer = _opened(job)
    attempt = _mark_attempt(scene, frames)
    info = render_frames(scene, frames, renderer)
    info.update(frames=list(frames), worker=_worker(), attempt=attempt)
    return info


def _opened(job: dict):
    """The scene and renderer this worker keeps for a shot: its plate, cached results and
    OpenGL context are made once per shot per worker, not once per chunk."""
    from derrumbe import graph
    from derrumbe.frames import FrameRenderer
    ident = (job["out"], job["cache_root"], repr(sorted(job["spec"].items())))
    if ident not in _OPEN:
        for old_scene, old_r in _OPEN.values():
            old_r.release()
            old_scene.close()
        _OPEN.clear()
        scene = _scene(job)
        graph.load(scene, ["frames"], verify=False)
        _OPEN[ident] = (scene, FrameRenderer(scene))
    return _OPEN[ident]


def _mark_attempt(scene, frames) -> int:
    """How many times this chunk has started (a second start means its first worker was
    lost): a small file on the shared folder, so any worker sees it."""
    from derrumbe.files import atomic_write_bytes
    p = scene.cache.root / "chunks" / f"{scene.keys['frames']}-{scene.spec.stem}-{frames[0]}"
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        n = int(p.read_text()) + 1
    except (OSError, ValueError):
        n = 1
    atomic_write_bytes(p, str(n).encode())
    return n


def task_finish(job: dict, events: list, stage_infos: list, chunk_infos: list, stage_tasks: int) -> dict:
    """Movies, VDBs, USD and the manifest, once every chunk is in. stage_tasks: how many
    distinct stage tasks the whole run had (shots sharing a stage share its task)."""
    from derrumbe import graph
    from derrumbe.pipeline import Clock, finish
    from derrumbe.progress import Progress
    scene = _scene(job)
    try:
        clock = Clock(Progress())
        for info in stage_infos:
            for k in info["wall"]:
                clock.add(k, info["wall"][k], info["cpu"][k])
        merged = merge_chunks(chunk_infos)
        merged["runner"]["stage_tasks_in_run"] = stage_tasks
        for k in merged["wall_s"]:
            clock.add(k, merged["wall_s"][k], merged["cpu_s"][k])
        scene.cache.events = [tuple(e) for e in events]
        scene.cache.events.append(("frames", f"{len(merged['reused'])} reused, {len(merged['rendered'])} rendered"))
        graph.load(scene, ["frames"], verify=False)
        return finish(scene, merged, clock)
    finally:
        scene.close()


def merge_chunks(infos: list[dict]) -> dict:
    out = {"digests": {}, "rendered": [], "reused": [], "samples_max": 1, "wall_s": {}, "cpu_s": {},
           "moving_tracks": 0, "runner": {"kind": "dask", "chunks": []}}
    for info in infos:
        out["digests"].update(info["digests"])
        out["rendered"] += info["rendered"]
        out["reused"] += info["reused"]
        out["samples_max"] = max(out["samples_max"], info["samples_max"])
        out["moving_tracks"] = max(out["moving_tracks"], info.get("moving_tracks", 0))
        for k in info["wall_s"]:
            out["wall_s"][k] = round(out["wall_s"].get(k, 0.0) + info["wall_s"][k], 3)
            out["cpu_s"][k] = round(out["cpu_s"].get(k, 0.0) + info["cpu_s"][k], 3)
        out["runner"]["chunks"].append({"frames": [info["frames"][0], info["frames"][-1]], "worker": info["worker"],
                                        "attempt": info["attempt"], "rendered": len(info["rendered"]),
                                        "reused": len(info["reused"])})
    return out


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---- the client side ---------------------------------------------------------------------
class Submission:
    """The tasks of one shot: its stages (shared by key with other shots of the run), its
    chunks and its finish."""

    def __init__(self, client, scene, chunk: int = CHUNK):
        from derrumbe import graph
        self.scene, self.client = scene, client
        job = _job(scene)
        self.stage_futures = {}
        for name in graph.upstream_of(["frames"]):
            st = graph.BY_NAME[name]
            if st.store == "none" or (st.store == "stream" and not graph.dust_on(scene)):
                continue
            deps = [self.stage_futures[u] for u in _cached_inputs(name, self.stage_futures)]
            self.stage_futures[name] = client.submit(task_stage, job, name, *deps, key=f"{name}-{scene.keys[name]}",
                                                     retries=2)
        n = scene.n_frames
        self.chunks = [list(range(a, min(a + chunk, n))) for a in range(0, n, chunk)]
        deps = list(self.stage_futures.values())
        import hashlib
        tag = f"{scene.keys['frames']}-{hashlib.sha256(str(scene.out).encode()).hexdigest()[:8]}"
        self.chunk_futures = [client.submit(task_chunk, job, c, *deps, key=f"frames-{tag}-{c[0]}", retries=2)
                              for c in self.chunks]
        self.finish_future = None
        self.job, self.tag = job, tag

    def submit_finish(self, events: list, stage_infos: list, shared: int):
        self.finish_future = self.client.submit(task_finish, self.job, events, stage_infos, self.chunk_futures, shared,
                                                key=f"finish-{self.tag}", retries=1)
        return self.finish_future


def _cached_inputs(name: str, have: dict) -> list[str]:
    """The nearest cached stages above name (through the cheap ones it reads)."""
    from derrumbe import graph
    out = []
    for u in graph.BY_NAME[name].inputs:
        if u in have:
            out.append(u)
        else:
            out += _cached_inputs(u, have)
    return sorted(set(out), key=list(graph.BY_NAME).index)


def run_on_cluster(scenes: list, client, progress, chunk: int = CHUNK) -> list[dict]:
    """Renders the scenes (each already holding its keys, their folders locked by the
    caller) on the cluster; returns their manifests in order. A task whose workers kept
    dying (the scheduler's allowed failures, 3 by default) ends the run with one line."""
    distributed = require_dask()
    try:
        return _run_on_cluster(scenes, client, progress, chunk, distributed)
    except distributed.KilledWorker as e:
        raise DerrumbeError(f"task {e.task} lost its worker every time it ran (out of memory, or a worker "
                            f"crashing); see the workers' logs") from None
    except (OSError, TimeoutError) as e:
        raise DerrumbeError(f"the Dask cluster went away: {type(e).__name__}: {e}") from None


def _run_on_cluster(scenes, client, progress, chunk, distributed) -> list[dict]:
    subs = [Submission(client, s, chunk) for s in scenes]
    # The sim side: each distinct stage once, whichever shot asked for it first.
    stage_of = {}
    for sub in subs:
        for name, fut in sub.stage_futures.items():
            stage_of.setdefault(fut.key, fut)
    progress.stage("sim", len(stage_of))
    infos = {}
    for k, (fut, res) in enumerate(distributed.as_completed(list(stage_of.values()), with_results=True)):
        infos[fut.key] = res
        for line in res["log"]:
            progress.note(line)
        progress.advance(k + 1, len(stage_of))
    progress.end()
    total = sum(s.n_frames for s in scenes)
    progress.stage("render", total)
    where = {}
    for si, sub in enumerate(subs):
        events = []
        for fut in sub.stage_futures.values():
            events += [tuple(e) for e in infos[fut.key]["events"]]
        stage_infos = [infos[f.key] for f in sub.stage_futures.values()]
        for c, fut in zip(sub.chunks, sub.chunk_futures):
            where[fut.key] = (si, c)
            f0 = sub.scene.spec.first_frame
            progress.chunk(sub.scene.spec.name, f0 + c[0], f0 + c[-1], "queued")
        sub.submit_finish(events, stage_infos, len(stage_of))
    done = 0
    for fut, res in distributed.as_completed([f for s in subs for f in s.chunk_futures], with_results=True):
        si, c = where[fut.key]
        done += len(c)
        state = "done" if res["attempt"] == 1 else f"done after {res['attempt'] - 1} lost worker(s)"
        f0 = subs[si].scene.spec.first_frame
        progress.chunk(subs[si].scene.spec.name, f0 + c[0], f0 + c[-1], state, res["worker"], done, total)
        progress.advance(done, total)
    progress.end()
    progress.stage("encode", len(subs))
    manifests = []
    for k, sub in enumerate(subs):
        manifests.append(sub.finish_future.result())
        progress.advance(k + 1, len(subs))
    progress.end()
    return manifests


def run_shot_on_cluster(spec, out_dir, scheduler: str | None, workers: int | None = None, progress=None, log=None,
                        chunk: int = CHUNK, cache_root=None) -> dict:
    """`derrumbe shot --scheduler ...`: the same result as pipeline.run_shot."""
    from derrumbe.cache import ShotLock
    from derrumbe.graph import derive_keys
    from derrumbe.pipeline import begin
    from derrumbe.progress import Progress
    from derrumbe.scene import open_scene
    require_dask()
    progress = progress or Progress()
    scene = open_scene(spec, out_dir, cache_root, progress, log)
    try:
        derive_keys(scene)
        for w in scene.warnings:
            progress.warn(w)
        with ShotLock(scene.cache.root.parent):
            begin(scene)
            with connect(scheduler, workers) as client:
                return run_on_cluster([scene], client, progress, chunk)[0]
    finally:
        scene.close()
