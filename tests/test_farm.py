"""Farm jobs: the per-stage commands run by openjd-cli from the Open Job Description
template give the frames of a local render; the Deadline submission and the OpenCue
PyOutline script hold the same tasks, in the documented syntax, in the same order."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derrumbe.cli import main

TINY = ["--size", "160", "--duration", "1", "--start", "0.3", "--fps", "12", "--pieces", "300", "--shake", "0",
        "--dust", "0"]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def job(demo_files, tmp_path_factory):
    """A local render (the reference) and a shot folder holding the same spec as its job."""
    d, p = demo_files
    ref = tmp_path_factory.mktemp("ref")
    args = ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box))] + TINY
    assert main(args + ["-o", str(ref), "-q"]) == 0
    shot = tmp_path_factory.mktemp("farm") / "shot"
    assert main(["farm-export", str(shot), "--spec", str(ref / "manifest.json"), "--format", "openjd",
                 "--chunk", "5", "--derrumbe", str(BIN / "derrumbe")]) == 0
    return ref, json.loads((ref / "manifest.json").read_text()), shot


def _openjd_commands(template: dict) -> list[list[str]]:
    steps = {s["name"]: s for s in template["steps"]}
    out = []
    for name in ("Sim", "Frames", "Encode"):
        s = steps[name]
        values = s.get("parameterSpace", {}).get("taskParameterDefinitions", [{"range": [None]}])[0]["range"]
        for v in values:
            act = s["script"]["actions"]["onRun"]
            args = [a.replace("{{Task.Param.Frames}}", str(v)) for a in act["args"]]
            out.append([act["command"]] + args)
    return out


def _params(template, argv, shot):
    d = {p["name"]: p["default"] for p in template["parameterDefinitions"]}
    shot_dir = str((shot / d["ShotDir"]).resolve())
    return [a.replace("{{Param.Derrumbe}}", d["Derrumbe"]).replace("{{Param.ShotDir}}", shot_dir) for a in argv]


def test_the_openjd_job_runs_here_and_gives_the_frames_of_a_local_render(job):
    openjd = shutil.which("openjd", path=str(BIN)) or pytest.skip("openjd-cli (the farm extra) is not installed")
    ref, m, shot = job
    tpl = shot / "shot.openjd.yaml"
    assert subprocess.run([openjd, "check", str(tpl)], capture_output=True, text=True).returncode == 0
    t = json.loads(tpl.read_text())
    assert [s["name"] for s in t["steps"]] == ["Sim", "Frames", "Encode"]
    assert t["steps"][1]["dependencies"] == [{"dependsOn": "Sim"}]
    assert t["steps"][2]["dependencies"] == [{"dependsOn": "Frames"}]
    assert t["steps"][1]["parameterSpace"]["taskParameterDefinitions"][0]["range"] == ["1001-1005", "1006-1010",
                                                                                       "1011-1012"]
    r = subprocess.run([openjd, "run", str(tpl), "--step", "Encode", "--run-dependencies"], capture_output=True,
                       text=True, timeout=900, env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    mf = json.loads((shot / "manifest.json").read_text())
    assert mf["frames"] == m["frames"]
    for f in m["frames"]:
        assert (ref / f).read_bytes() == (shot / f).read_bytes(), f
    assert mf["runner"]["kind"] == "farm"
    # Run again: every task is idempotent, nothing is rendered twice.
    r = subprocess.run([str(BIN / "derrumbe"), "render", str(shot), "--frames", "1001-1005"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "0 rendered, 5 already done" in r.stderr


def test_a_frame_chunk_before_the_simulation_is_one_line(job, tmp_path, capsys):
    ref, m, _ = job
    shot = tmp_path / "fresh"
    assert main(["farm-export", str(shot), "--spec", str(ref / "manifest.json"), "--format", "openjd"]) == 0
    capsys.readouterr()
    assert main(["render", str(shot), "--frames", "1001-1004", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "derrumbe sim" in err[0]
    assert main(["render", str(shot), "--frames", "990-1004", "-q"]) == 2
    assert "outside the shot's frames 1001-1012" in capsys.readouterr().err


# Deadline 10 "Manual Job Submission" (job info and plugin info files; CommandLine plugin):
# https://docs.thinkboxsoftware.com/products/deadline/10.1/1_User%20Manual/manual/manual-submission.html
JOB_INFO_KEYS = {"Plugin", "Name", "BatchName", "Frames", "ChunkSize", "JobDependencies", "Comment", "Pool", "Group",
                 "Priority", "Department", "UserName", "MachineLimit", "InitialStatus", "OutputDirectory0"}
COMMANDLINE_KEYS = {"Executable", "Arguments", "StartupDirectory", "Shell", "ShellExecute", "SingleFramesOnly"}


def _kv(path: Path) -> dict:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    assert all("=" in ln for ln in lines), path.name
    return dict(ln.split("=", 1) for ln in lines)


def _deadline_tasks(frames: str, chunk: int):
    a, _, b = frames.partition("-")
    a, b = int(a), int(b or a)
    return [(s, min(s + chunk - 1, b)) for s in range(a, b + 1, chunk)]


def test_the_deadline_submission_has_the_same_tasks_in_the_documented_syntax(job, tmp_path):
    ref, m, shot = job
    assert main(["farm-export", str(shot), "--format", "deadline", "--chunk", "5", "--derrumbe",
                 str(BIN / "derrumbe")]) == 0
    farm = shot / "farm"
    # Submit with a stand-in deadlinecommand that records what it is given and answers as
    # Deadline does (a JobID= line), so the dependencies can be followed.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "deadlinecommand").write_text("#!/bin/sh\nn=$(ls \"$LOG\" | grep -c job)\ncp \"$1\" \"$LOG/$n.job\"\n"
                                          "cp \"$2\" \"$LOG/$n.plugin\"\necho \"Result=Success\"\necho \"JobID=job$n\"\n")
    (fake / "deadlinecommand").chmod(0o755)
    log = tmp_path / "log"
    log.mkdir()
    r = subprocess.run([str(farm / "shot_deadline_submit.sh")], capture_output=True, text=True,
                       env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", LOG=str(log)))
    assert r.returncode == 0, r.stderr
    jobs = [(_kv(log / f"{k}.job"), _kv(log / f"{k}.plugin")) for k in range(3)]
    assert [j["JobDependencies"] for j, _ in jobs] == ["", "job0", "job1"]
    commands = []
    for info, plugin in jobs:
        assert set(info) <= JOB_INFO_KEYS and set(plugin) <= COMMANDLINE_KEYS
        assert info["Plugin"] == "CommandLine"
        for a, b in _deadline_tasks(info["Frames"], int(info["ChunkSize"])):
            args = plugin["Arguments"].replace("<STARTFRAME>", str(a)).replace("<ENDFRAME>", str(b))
            commands.append([plugin["Executable"]] + shlex.split(args.replace("<QUOTE>", '"')))
    t = json.loads((shot / "shot.openjd.yaml").read_text())
    assert commands == [_params(t, c, shot) for c in _openjd_commands(t)]


_STUB = '''
import json, os
LAYERS, LAUNCHED = [], []
class Outline:
    def __init__(self, name, shot=None, show=None, user=None, **kw):
        self.name, self.layers = name, []
    def add_layer(self, layer):
        self.layers.append(layer)
'''
_SHELL = '''
import outline
class Shell:
    def __init__(self, name, type=None, command=None, range=None, chunk=1, **kw):
        assert isinstance(command, list) and all(isinstance(a, str) for a in command)
        self.name, self.type, self.command, self.range, self.chunk, self.deps = name, type, command, range, chunk, []
    def depend_on(self, other):
        self.deps.append(other.name)
'''
_CUERUN = '''
import json, os
def launch(job, use_pycuerun=True, **kw):
    with open(os.environ["LOG"], "w") as f:
        json.dump([dict(name=l.name, type=l.type, command=l.command, range=l.range, chunk=l.chunk, deps=l.deps)
                   for l in job.layers], f)
'''


def test_the_opencue_script_builds_the_same_layers_with_pyoutline(job, tmp_path):
    """Run against a stand-in of PyOutline's documented API (Outline(name, shot=, show=),
    modules.shell.Shell(name, type=, command=[...], range=, chunk=), add_layer, depend_on,
    cuerun.launch): the layers, their chunks and dependencies as the OpenJD job's."""
    ref, m, shot = job
    assert main(["farm-export", str(shot), "--format", "opencue", "--chunk", "5", "--derrumbe",
                 str(BIN / "derrumbe")]) == 0
    stub = tmp_path / "stub" / "outline"
    (stub / "modules").mkdir(parents=True)
    (stub / "__init__.py").write_text(_STUB)
    (stub / "modules" / "__init__.py").write_text("")
    (stub / "modules" / "shell.py").write_text(_SHELL)
    (stub / "cuerun.py").write_text(_CUERUN)
    log = tmp_path / "layers.json"
    r = subprocess.run([sys.executable, str(shot / "farm" / "shot_opencue.py")], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(stub.parent), LOG=str(log)))
    assert r.returncode == 0, r.stderr
    layers = json.loads(log.read_text())
    assert [(ly["name"], ly["deps"]) for ly in layers] == [("sim", []), ("frames", ["sim"]), ("encode", ["frames"])]
    commands = []
    for ly in layers:
        for a, b in _deadline_tasks(ly["range"], ly["chunk"]):
            commands.append([x.replace("#FRAME_START#", str(a)).replace("#FRAME_END#", str(b)) for x in ly["command"]])
    t = json.loads((shot / "shot.openjd.yaml").read_text())
    assert commands == [_params(t, c, shot) for c in _openjd_commands(t)]
