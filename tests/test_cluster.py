"""The graph on a Dask cluster: the same frames as the in-process runner, a lost worker's
chunk retried elsewhere without rendering finished frames again, progress per chunk."""

import json
import os
import signal
import threading
import time

import pytest

from derrumbe.cli import main

distributed = pytest.importorskip("distributed", reason="the farm extra (dask, distributed)")

TINY = ["--size", "160", "--duration", "1", "--start", "0.3", "--fps", "12", "--pieces", "300", "--shake", "0", "-q"]


def _args(demo_files, out, *extra):
    d, p = demo_files
    return ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "--holdout", str(d / "holdout.png"),
            "-o", str(out)] + TINY + list(extra)


@pytest.fixture(scope="module")
def local_render(demo_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert main(_args(demo_files, out)) == 0
    return out, json.loads((out / "manifest.json").read_text())


def _same_frames(a, b, m):
    for f in m["frames"]:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_a_local_cluster_of_two_workers_renders_the_frames_of_the_local_runner(demo_files, local_render, tmp_path,
                                                                                capsys):
    ref, m = local_render
    out = tmp_path / "cluster"
    assert main(_args(demo_files, out, "--scheduler", "local", "--workers", "2", "--chunk", "4", "--progress-json")) == 0
    mc = json.loads((out / "manifest.json").read_text())
    _same_frames(ref, out, m)
    assert (ref / m["movie"]).read_bytes() == (out / mc["movie"]).read_bytes()
    assert mc["files"] == m["files"]
    chunks = mc["runner"]["chunks"]
    assert mc["runner"]["kind"] == "dask" and sorted(c["frames"] for c in chunks) == [[0, 3], [4, 7], [8, 11]]
    # Every chunk's progress reached the command's output (what the web page reads).
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    done = [e for e in events if e.get("event") == "chunk" and e["state"] == "done"]
    assert sorted((e["first"], e["last"]) for e in done) == [(1001, 1004), (1005, 1008), (1009, 1012)]
    assert done[-1]["done"] == 12 and all(e["worker"] for e in done)


def test_a_lost_worker_is_retried_elsewhere_and_the_frames_are_the_same(demo_files, local_render, tmp_path):
    """SIGKILL of a worker while it renders a chunk: the scheduler gives the chunk to
    another worker, which keeps the frames the lost one finished."""
    from derrumbe.cache import ShotLock
    from derrumbe.graph import derive_keys
    from derrumbe.pipeline import begin
    from derrumbe.progress import Progress
    from derrumbe.runners.dask_cluster import connect, run_on_cluster
    from derrumbe.scene import open_scene
    from derrumbe.spec import ShotSpec
    ref, m = local_render
    spec = ShotSpec.from_dict(m["spec"], ref)
    out = tmp_path / "lost"
    scene = open_scene(spec, out)
    derive_keys(scene)
    result, killed = {}, {}
    with ShotLock(out), connect(None, 2) as client:
        begin(scene)
        pids = client.run(os.getpid)

        def run():
            try:
                result["m"] = run_on_cluster([scene], client, Progress(), chunk=6)[0]
            except BaseException as e:          # surfaces in the assertion below
                result["error"] = e
        t = threading.Thread(target=run)
        t.start()
        deadline = time.time() + 300
        while time.time() < deadline and not killed and t.is_alive():
            recs = list((out / ".derrumbe" / "frames").glob("*.rec")) if (out / ".derrumbe" / "frames").exists() else []
            busy = {w: ks for w, ks in client.processing().items() if any(str(k).startswith("frames-") for k in ks)}
            if recs and busy:
                victim = next(iter(busy))
                os.kill(pids[victim], signal.SIGKILL)
                killed["worker"] = victim
                time.sleep(0.3)
                # What was finished when the worker died: none of it may be written again.
                killed["records"] = {p.name: p.stat().st_mtime_ns for p in (out / ".derrumbe" / "frames").glob("*.rec")}
            time.sleep(0.05)
        t.join(600)
    scene.close()
    assert killed, "no worker was caught rendering"
    assert "error" not in result, result.get("error")
    mc = result["m"]
    _same_frames(ref, out, m)
    chunks = mc["runner"]["chunks"]
    retried = [c for c in chunks if c["attempt"] > 1]
    assert retried, chunks
    # Nothing finished is rendered twice: every frame recorded as done when the worker died
    # kept its record (a frame rendered again rewrites it); only the frame in flight was redone.
    assert killed["records"]
    for name, t in killed["records"].items():
        assert (out / ".derrumbe" / "frames" / name).stat().st_mtime_ns == t, name
    assert sum(c["rendered"] + c["reused"] for c in chunks) == 12


def test_without_the_farm_extra_a_cluster_run_is_one_line(demo_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)      # import distributed fails
    assert main(_args(demo_files, tmp_path / "x", "--scheduler", "local")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "farm extra" in err[0] and "pip install 'derrumbe[farm]'" in err[0]


def test_an_unreachable_scheduler_is_one_line(demo_files, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed", reason="the farm extra")
    import derrumbe.runners.dask_cluster as dc
    monkeypatch.setattr(dc, "CONNECT_S", 1)          # (a user waits 10 s; the test need not)
    assert main(_args(demo_files, tmp_path / "x", "--scheduler", "tcp://127.0.0.1:9")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err[0], err


def test_the_web_queue_keeps_each_chunks_state():
    """What the page shows (chunks 2/3) comes from the render's chunk events."""
    from derrumbe.web.jobs import _event
    ev = _event(json.dumps({"event": "chunk", "shot": "shot", "first": 1001, "last": 1004, "state": "done",
                            "worker": "h:1", "done": 4, "total": 12, "stage": "render", "elapsed": 1.0}))
    assert ev == {"event": "chunk", "first": 1001, "last": 1004, "state": "done"}
    assert _event(json.dumps({"event": "chunk", "first": "x"})) is None
