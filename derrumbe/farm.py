"""The farms studios already run: every stage as its own idempotent command, and the job for
Open Job Description, Deadline and OpenCue.

A shot folder on shared storage holds the shot's spec (job.toml, paths relative to it)
and, as every render does, its stage cache. Three commands make the shot from it, each
safe to run again (a finished stage, a finished frame are read back, not redone):

    derrumbe sim SHOT                         the sim side: matte to dust, and the clean plate
    derrumbe render SHOT --frames 1001-1024   a chunk of frames (many chunks at once; the numbers
                                              are the shot's own, from its --frames range)
    derrumbe encode SHOT                      movies, VDBs, USD, the manifest

`derrumbe farm-export SHOT --format openjd|deadline|opencue` writes the job that runs
them in that order (simulation, then the frame chunks, then the encode), so every task is
visible in the farm's monitor with its own log and retries.
"""

from __future__ import annotations

import json
from pathlib import Path

from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes
from derrumbe.spec import ShotSpec
from derrumbe.spec import FIRST_FRAME

JOB = "job.toml"
FORMATS = ("openjd", "deadline", "opencue")


# ---- the shot folder's job -----------------------------------------------------------------
def write_job(shot: Path, spec: ShotSpec) -> Path:
    import tomli_w
    shot.mkdir(parents=True, exist_ok=True)
    p = shot / JOB
    atomic_write_bytes(p, tomli_w.dumps(spec.to_dict(relative_to=shot)).encode())
    return p


def load_job(shot: Path) -> ShotSpec:
    """The shot's spec: its job.toml, else the spec of its last render's manifest."""
    for name in (JOB, "manifest.json"):
        if (shot / name).is_file():
            return ShotSpec.load(shot / name).validate()
    raise DerrumbeError(f"{shot} has no {JOB} (write one with `derrumbe farm-export {shot} --spec SPEC`)")


def parse_frames(text: str, n_frames: int, first_frame: int = FIRST_FRAME) -> list[int]:
    """'1001-1024' or '1005' as frame indices (0-based) of a shot of n_frames numbered from first_frame."""
    try:
        a, _, b = text.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise DerrumbeError(f"--frames must be FIRST-LAST frame numbers, e.g. 1001-1024, not {text!r}") from None
    lo, hi = first_frame, first_frame + n_frames - 1
    if not lo <= first <= last <= hi:
        raise DerrumbeError(f"--frames {text} is outside the shot's frames {lo}-{hi}")
    return list(range(first - first_frame, last - first_frame + 1))


def chunks(n_frames: int, size: int, first_frame: int = FIRST_FRAME) -> list[tuple[int, int]]:
    """(first, last) frame numbers of each chunk."""
    return [(first_frame + a, first_frame + min(a + size, n_frames) - 1) for a in range(0, n_frames, size)]


# ---- the per-stage commands ------------------------------------------------------------------
def _scene(shot: Path, progress=None, log=None):
    from derrumbe.graph import derive_keys
    from derrumbe.scene import open_scene
    scene = open_scene(load_job(shot), shot, progress=progress, log=log)
    derive_keys(scene)
    return scene


def run_sim(shot: Path, progress=None, log=None) -> dict:
    """The sim side and the clean plate, under the shot's lock (alone)."""
    from derrumbe import graph
    from derrumbe.cache import ShotLock
    from derrumbe.pipeline import Clock, begin, frame_setup, sim_side
    from derrumbe.progress import Progress
    scene = _scene(shot, progress, log)
    try:
        with ShotLock(shot):
            begin(scene)
            clock = Clock(scene.progress or Progress())
            sim_side(scene, clock)
            frame_setup(scene, clock)
            scene.cache.save_last_keys(scene.keys, scene.params)
            return {"frames": scene.n_frames, "stages": dict(scene.cache.events), "seconds": clock.wall,
                    "done": all(graph.is_done(scene, n) for n in graph.SIM_SIDE)}
    finally:
        scene.close()


def _require_sim(scene) -> None:
    from derrumbe import graph
    missing = [n for n in graph.upstream_of(["frames"]) if graph.BY_NAME[n].store != "none"
               and not graph.is_done(scene, n)]
    if missing:
        raise DerrumbeError(f"the shot's {', '.join(missing)} stage(s) are not done for this spec: "
                            f"run `derrumbe sim {scene.out}` first")


def run_render(shot: Path, frames: str, progress=None, log=None) -> dict:
    """A chunk of frames, under the shot's lock shared with the other chunks."""
    from derrumbe import graph
    from derrumbe.cache import ShotLock
    from derrumbe.frames import render_frames
    scene = _scene(shot, progress, log)
    try:
        idx = parse_frames(frames, scene.n_frames, scene.spec.first_frame)
        with ShotLock(shot, shared=True):
            _require_sim(scene)
            graph.load(scene, ["frames"], verify=False)
            if progress is not None:
                progress.stage("render", len(idx))
            done = [0]

            def tick(i):
                done[0] += 1
                if progress is not None:
                    progress.advance(done[0], len(idx))
            info = render_frames(scene, idx, on_frame=tick)
            if progress is not None:
                progress.end()
            return info
    finally:
        scene.close()


def run_encode(shot: Path, progress=None, log=None) -> dict:
    """Movies, VDBs, USD and the manifest once every frame is done (alone)."""
    from derrumbe import graph
    from derrumbe.cache import ShotLock
    from derrumbe.frames import reusable
    from derrumbe.graph import frame_key
    from derrumbe.pipeline import Clock, finish
    from derrumbe.progress import Progress
    scene = _scene(shot, progress, log)
    try:
        with ShotLock(shot):
            _require_sim(scene)
            first = scene.spec.first_frame
            todo = [first + i for i in range(scene.n_frames) if not reusable(scene, i, frame_key(scene, i))]
            if todo:
                raise DerrumbeError(f"{len(todo)} frames are not rendered for this spec (first: {todo[0]}); "
                                    f"run `derrumbe render {shot} --frames {todo[0]}-{todo[-1]}`")
            graph.load(scene, ["frames"], verify=False)
            for name in graph.upstream_of(["frames"]):
                if graph.BY_NAME[name].store != "none":
                    scene.cache.events.append((name, "cached"))
            scene.cache.events.append(("frames", f"{scene.n_frames} reused, 0 rendered"))
            info = {"runner": {"kind": "farm"}}
            return finish(scene, info, Clock(scene.progress or Progress()))
    finally:
        scene.close()


# ---- the jobs ----------------------------------------------------------------------------------
def export(shot: Path, fmt: str, chunk: int, derrumbe: str = "derrumbe") -> Path:
    """Writes the farm job for the shot folder (its job.toml must exist); returns its path."""
    spec = load_job(shot)
    from derrumbe.scene import n_frames, open_scene
    scene = open_scene(spec, shot, make_dirs=False)             # fps and duration from the plate
    try:
        n, first = n_frames(scene.spec), scene.spec.first_frame
    finally:
        scene.close()
    shot = shot.resolve()
    name = scene.spec.name
    cs = chunks(n, chunk, first)
    out = shot / "farm"
    out.mkdir(exist_ok=True)
    if fmt == "openjd":
        p = shot / f"{name}.openjd.yaml"        # OpenJD takes no default path above its template
        atomic_write_bytes(p, openjd_template(name, shot, cs, derrumbe).encode())
    elif fmt == "deadline":
        p = deadline_job(out, name, shot, n, chunk, derrumbe, first)
    elif fmt == "opencue":
        p = out / f"{name}_opencue.py"
        atomic_write_bytes(p, opencue_script(name, shot, n, chunk, derrumbe, first).encode())
    else:
        raise DerrumbeError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return p


def openjd_template(name: str, shot: Path, cs: list[tuple[int, int]], derrumbe: str) -> str:
    """An Open Job Description job template (specification jobtemplate-2023-09): three steps,
    Frames depending on Sim and Encode on Frames, the frames' task parameter a chunk range.
    Runs locally with `openjd run TEMPLATE --step Encode --run-dependencies`."""
    def step(sname, args, deps=(), chunk_values=None):
        s = {"name": sname}
        if chunk_values:
            s["parameterSpace"] = {"taskParameterDefinitions": [{"name": "Frames", "type": "STRING",
                                                                 "range": chunk_values}]}
        s["script"] = {"actions": {"onRun": {"command": "{{Param.Derrumbe}}", "args": args}}}
        if deps:
            s["dependencies"] = [{"dependsOn": d} for d in deps]
        return s
    doc = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": f"derrumbe {name}",
        "parameterDefinitions": [
            # A PATH default is relative to the template's folder, the shot folder: the job moves with it.
            {"name": "ShotDir", "type": "PATH", "objectType": "DIRECTORY", "dataFlow": "INOUT", "default": ".",
             "description": "the shot folder on shared storage (job.toml, the stage cache, the frames)"},
            {"name": "Derrumbe", "type": "STRING", "default": derrumbe,
             "description": "the derrumbe command on the workers"}],
        "steps": [
            step("Sim", ["sim", "{{Param.ShotDir}}"]),
            step("Frames", ["render", "{{Param.ShotDir}}", "--frames", "{{Task.Param.Frames}}"], ["Sim"],
                 [f"{a}-{b}" for a, b in cs]),
            step("Encode", ["encode", "{{Param.ShotDir}}"], ["Frames"]),
        ],
    }
    # JSON is YAML: no YAML library needed to write it, and every OpenJD reader takes it.
    return json.dumps(doc, indent=2) + "\n"


# Deadline: one job a step, submitted with `deadlinecommand JOB_INFO PLUGIN_INFO` (Deadline 10
# User Manual, "Manual Job Submission": job info and plugin info files, key=value lines), the
# CommandLine plugin running an executable with arguments in which <STARTFRAME> and
# <ENDFRAME> become each task's first and last frame; Frames and ChunkSize split the frames
# into tasks, JobDependencies holds the ids of the jobs to wait for.
# https://docs.thinkboxsoftware.com/products/deadline/10.1/1_User%20Manual/manual/manual-submission.html
DEADLINE_JOB_KEYS = ("Plugin", "Name", "BatchName", "Frames", "ChunkSize", "JobDependencies", "Comment")
DEADLINE_PLUGIN_KEYS = ("Executable", "Arguments", "StartupDirectory")


def deadline_job(out: Path, name: str, shot: Path, n: int, chunk: int, derrumbe: str,
                 first: int = FIRST_FRAME) -> Path:
    last = first + n - 1
    q = f"<QUOTE>{shot}<QUOTE>"
    jobs = [("sim", f"{first}", n, f"sim {q}"),
            ("frames", f"{first}-{last}", chunk, f"render {q} --frames <STARTFRAME>-<ENDFRAME>"),
            ("encode", f"{first}", 1, f"encode {q}")]
    lines = ["#!/bin/sh", "# Submits the shot to Deadline: the simulation, then the frames in chunks, then the encode.",
             "set -e", 'cd "$(dirname "$0")"', "DEP="]
    for stepname, frames, size, args in jobs:
        info = {"Plugin": "CommandLine", "Name": f"{name} {stepname}", "BatchName": f"derrumbe {name}",
                "Frames": frames, "ChunkSize": str(size), "Comment": f"derrumbe {stepname} of {shot}"}
        (out / f"{name}_{stepname}.job_info").write_text(
            "".join(f"{k}={v}\n" for k, v in info.items()) + "JobDependencies=__DEP__\n")
        plugin = {"Executable": derrumbe, "Arguments": args, "StartupDirectory": str(shot)}
        (out / f"{name}_{stepname}.plugin_info").write_text("".join(f"{k}={v}\n" for k, v in plugin.items()))
        lines += [f'sed "s/__DEP__/$DEP/" {name}_{stepname}.job_info > {name}_{stepname}.job_info.now',
                  f"DEP=$(deadlinecommand {name}_{stepname}.job_info.now {name}_{stepname}.plugin_info "
                  f"| sed -n 's/^JobID=//p')",
                  f'echo "{stepname}: job $DEP"']
    p = out / f"{name}_deadline_submit.sh"
    p.write_text("\n".join(lines) + "\n")
    p.chmod(0o755)
    return p


def opencue_script(name: str, shot: Path, n: int, chunk: int, derrumbe: str, first: int = FIRST_FRAME) -> str:
    """An OpenCue PyOutline script (opencue-pyoutline: outline.Outline, outline.modules.shell.
    Shell layers with range and chunk, layer.depend_on, outline.cuerun.launch); #FRAME_START#
    and #FRAME_END# are each chunk's first and last frame (OpenCue issue 104, PR 597)."""
    last = first + n - 1
    s = str(shot)
    return f'''"""Submits derrumbe shot {name} to OpenCue: the simulation, the frames in chunks of {chunk}, the encode."""
import outline
import outline.cuerun
import outline.modules.shell

job = outline.Outline({("derrumbe_" + name)!r}, shot={name!r}, show="derrumbe")
sim = outline.modules.shell.Shell("sim", type="Util", command={[derrumbe, "sim", s]!r}, range="{first}", chunk=1)
frames = outline.modules.shell.Shell("frames", type="Render",
                                     command={[derrumbe, "render", s, "--frames", "#FRAME_START#-#FRAME_END#"]!r},
                                     range="{first}-{last}", chunk={chunk})
encode = outline.modules.shell.Shell("encode", type="Util", command={[derrumbe, "encode", s]!r}, range="{first}",
                                     chunk=1)
for layer in (sim, frames, encode):
    job.add_layer(layer)
frames.depend_on(sim)
encode.depend_on(frames)

if __name__ == "__main__":
    outline.cuerun.launch(job, use_pycuerun=False)
'''
