"""The job queue under faults, each injected with a job running: a cancel between claim and
start, a cancel mid-write, a graceful shutdown, a kill -9 of the server, an exception in the runner, a render
that outlived an earlier server. Afterwards: no job lost or duplicated, no live render
left over, the shot lock free, no temporary file in the shot folder.

The renders are real processes: `derrumbe shot` itself where the render's own behaviour
is what is tested (kill -9), else tests/stub_render.py, which takes the shot lock and
keeps a temporary movie open as a render does, and finishes when the test says so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: make web")
from fastapi.testclient import TestClient  # noqa: E402

from derrumbe.cache import ShotLock  # noqa: E402
from derrumbe.errors import DerrumbeError  # noqa: E402
from derrumbe.web.app import create_app  # noqa: E402

STUB = Path(__file__).with_name("stub_render.py")
ORIGIN = "http://127.0.0.1:8000"
DONE = ("done", "failed", "cancelled")


def _stub(*extra):
    return lambda spec, shot: [sys.executable, str(STUB), str(spec), str(shot), *extra]


def _client(root, **kw):
    return TestClient(create_app(root, **kw), base_url=ORIGIN, headers={"Origin": ORIGIN})


@pytest.fixture(scope="module")
def plate(small_plate):
    return small_plate


def _until(fn, timeout=60.0, what="condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def _alive(pid: int) -> bool:
    """Any thread of the process still running. (The main thread of a killed process can
    be a zombie while its other threads, and so its open files and locks, still live.)"""
    states = []
    for t in Path(f"/proc/{pid}/task").glob("*"):
        try:
            states.append((t / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            pass
    return any(s not in ("Z", "X") for s in states)


def _lock_free(shot: Path) -> bool:
    try:
        with ShotLock(shot):
            return True
    except DerrumbeError:
        return False


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


def _submit(c, plate_id, box, spec):
    r = c.post("/api/jobs", json={"plate": plate_id, "kind": "preview", "box": box, "spec": spec})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _state(c, jid):
    return c.get(f"/api/jobs/{jid}").json()["state"]


def test_cancel_between_claim_and_start_starts_no_render(tmp_path, plate):
    data, box = plate
    claimed, go = threading.Event(), threading.Event()
    with _client(tmp_path, workers=1, render_command=_stub()) as c:
        def hold(job):                  # the fault: the worker pauses right after its claim
            claimed.set()
            go.wait(30)
        c.app.state.runner.on_claimed = hold
        pid = c.post("/api/plates", content=data).json()["id"]
        jid = _submit(c, pid, box, {"seed": 5})
        assert claimed.wait(30), "the worker never claimed the job"
        assert _state(c, jid) == "running"
        assert c.post(f"/api/jobs/{jid}/cancel").json()["state"] == "cancelled"
        go.set()
        time.sleep(1.5)
        shot = tmp_path / "plates" / pid / "shot"
        assert not (shot.parent / "stub.pid").exists(), "a render started for a cancelled job"
        assert _state(c, jid) == "cancelled"
        assert _lock_free(shot) and _temporaries(shot) == []


def _holding(c, root, plate, seed: int):
    """A job submitted whose stub render holds the shot lock and a temporary movie open:
    (job id, shot folder, the render's pid)."""
    data, box = plate
    pid = c.post("/api/plates", content=data).json()["id"]
    jid = _submit(c, pid, box, {"seed": seed})
    shot = root / "plates" / pid / "shot"
    render = int(_until(lambda: (shot.parent / "stub.pid").exists() and (shot.parent / "stub.pid").read_text(),
                        what="the render holding the lock"))
    return jid, shot, render


def test_cancel_while_a_temporary_is_open_leaves_none(tmp_path, plate):
    """The stub holds its temporary movie open until released, so the cancel lands
    mid-write every time (a real render's temporaries live too briefly to aim at)."""
    with _client(tmp_path, workers=1, render_command=_stub()) as c:
        jid, shot, render = _holding(c, tmp_path, plate, seed=8)
        assert _alive(render) and _temporaries(shot)
        assert c.post(f"/api/jobs/{jid}/cancel").json()["state"] == "cancelled"
        assert not _alive(render)                          # the cancel returns once the render is gone
        # The worker sweeps the folder under the shot lock after the render is gone: a
        # check made while it holds the lock failed once in a whole-suite run.
        _until(lambda: _lock_free(shot) and _temporaries(shot) == [], 10, "the cancelled render's folder swept")
        assert not (shot / "shot.mp4").exists()            # nothing half-written that looks complete


def test_graceful_shutdown_requeues_the_running_job_and_the_next_start_finishes_it(tmp_path, plate):
    with _client(tmp_path, workers=1, render_command=_stub()) as c:
        jid, shot, render = _holding(c, tmp_path, plate, seed=6)
        assert _alive(render) and _temporaries(shot)          # it is mid-render, a temporary movie open
    # The server has shut down gracefully (the client's lifespan ended) with the job running.
    with _client(tmp_path, workers=0) as c:
        j = c.get(f"/api/jobs/{jid}").json()
        assert j["state"] == "queued", j                      # not "failed, exit -15"
    assert not _alive(render)
    assert _lock_free(shot) and _temporaries(shot) == []
    (shot.parent / "stub.pid").unlink()
    (tmp_path / "jobs" / jid / "RELEASE").write_text("")      # this time the render may finish
    with _client(tmp_path, workers=1, render_command=_stub()) as c:
        j = _until(lambda: (lambda j: j if j["state"] in DONE else None)(c.get(f"/api/jobs/{jid}").json()),
                   what="the requeued job finishing")
        assert j["state"] == "done", j
        assert [x["id"] for x in c.get("/api/jobs").json()] == [jid]      # nothing lost, nothing doubled
        assert c.get(f"/api/jobs/{jid}/files/shot.mp4").status_code == 200


def test_an_exception_in_the_runner_kills_and_drains_the_render(tmp_path, plate):
    data, box = plate
    with _client(tmp_path, workers=1, render_command=_stub("--flood")) as c:
        store = c.app.state.store
        real_update = store.update

        def failing_update(jid, **fields):          # the fault: the queue's database fails mid-job
            if "progress" in fields:
                raise RuntimeError("database is locked")
            return real_update(jid, **fields)
        store.update = failing_update
        pid = c.post("/api/plates", content=data).json()["id"]
        jid = _submit(c, pid, box, {"seed": 7})
        shot = tmp_path / "plates" / pid / "shot"
        render = int(_until(lambda: (shot.parent / "stub.pid").exists() and (shot.parent / "stub.pid").read_text(),
                            what="the render starting"))
        j = _until(lambda: (lambda j: j if j["state"] in DONE else None)(c.get(f"/api/jobs/{jid}").json()),
                   what="the job ending")
        assert j["state"] == "failed" and "internal error" in j["error"] and "\n" not in j["error"]
        _until(lambda: not _alive(render), 15, "the render dying")
        assert _lock_free(shot) and _temporaries(shot) == []


def test_a_render_that_outlived_its_server_is_killed_at_the_next_start(tmp_path, plate):
    """Belt and braces for the parent-death signal: a job left 'running' whose render still
    lives (its pid recorded) is killed before the job is queued again."""
    from derrumbe.web.jobs import JobStore
    data, box = plate
    with _client(tmp_path, workers=0) as c:
        pid = c.post("/api/plates", content=data).json()["id"]
        jid = _submit(c, pid, box, {"seed": 8})
    store = JobStore(tmp_path)
    store.claim(set())
    shot = tmp_path / "plates" / pid / "shot"
    shot.mkdir(parents=True)
    spec = tmp_path / "jobs" / jid / "spec.toml"
    spec.parent.mkdir(parents=True)
    spec.write_text("")
    orphan = subprocess.Popen([sys.executable, str(STUB), str(spec), str(shot)], start_new_session=True,
                              stderr=subprocess.DEVNULL)
    try:
        _until(lambda: (shot.parent / "stub.pid").exists(), what="the orphan holding the lock")
        store.update(jid, pid=orphan.pid)
        assert not _lock_free(shot)
        again = JobStore(tmp_path)              # the next start of the server
        assert again.recovered == [jid] and again.get(jid)["state"] == "queued"
        assert orphan.wait(10) is not None
        assert _lock_free(shot) and _temporaries(shot) == []
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_promote_takes_only_a_finished_job(tmp_path, plate):
    data, box = plate
    with _client(tmp_path, workers=0) as c:
        pid = c.post("/api/plates", content=data).json()["id"]
        queued = _submit(c, pid, box, {"seed": 9})
        r = c.post(f"/api/jobs/{queued}/promote", json={})
        assert r.status_code == 409 and "queued" in r.json()["detail"]
        c.post(f"/api/jobs/{queued}/cancel")
        r = c.post(f"/api/jobs/{queued}/promote", json={})
        assert r.status_code == 409 and "cancelled" in r.json()["detail"]
        assert len(c.get("/api/jobs").json()) == 1


# ---- kill -9 of a real server with a real render running -----------------------------------

def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, root: Path):
        self.port = _port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "DERRUMBE_TOKEN"}
        self.p = subprocess.Popen([sys.executable, "-m", "derrumbe", "serve", "--root", str(root), "--port",
                                   str(self.port), "--jobs", "1"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
        import httpx
        self.c = httpx.Client(base_url=self.base, headers={"Origin": self.base}, timeout=30)
        _until(self._up, 60, "the server answering")

    def _up(self):
        try:
            return self.c.get("/api/fields").status_code == 200
        except Exception:
            return False

    def stop(self, sig=signal.SIGTERM):
        self.c.close()
        if self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait(30)


def test_kill_9_of_the_server_leaves_no_orphan_render_and_no_stale_lock(tmp_path, plate):
    data, box = plate
    root = tmp_path / "root"
    srv = _Server(root)
    try:
        pid = srv.c.post("/api/plates", content=data).json()["id"]
        r = srv.c.post("/api/jobs", json={"plate": pid, "kind": "preview", "box": box,
                                          "spec": {"size": 160, "duration": 3.0, "start": 0.2, "fps": 8,
                                                   "pieces": 300, "dust": 0.3}})
        jid = r.json()["id"]
        shot = root / "plates" / pid / "shot"
        lock = shot / ".derrumbe" / "lock"

        def render_pid():
            if srv.c.get(f"/api/jobs/{jid}").json()["state"] != "running" or not lock.exists():
                return None
            text = lock.read_text().strip()
            return int(text) if text.isdigit() and int(text) != srv.p.pid and _alive(int(text)) else None
        render = _until(render_pid, 120, "a render holding the shot lock")
        # The render is in a long silent stretch (a big simulation step): it writes nothing,
        # so it cannot notice its server is gone through a broken pipe.
        os.kill(render, signal.SIGSTOP)
    finally:
        srv.stop(signal.SIGKILL)                # the fault: the server is killed outright
    try:
        _until(lambda: not _alive(render), 10, "the orphaned render dying with its server")
    finally:
        if _alive(render):
            os.kill(render, signal.SIGKILL)     # (old code: clean up the orphan the test found)
    assert _lock_free(shot)
    srv = _Server(root)                         # the next start: the job is queued again and finishes
    try:
        j = _until(lambda: (lambda j: j if j["state"] in DONE else None)(srv.c.get(f"/api/jobs/{jid}").json()),
                   300, "the requeued job finishing")
        assert j["state"] == "done", j
        assert [x["id"] for x in srv.c.get("/api/jobs").json()] == [jid]
        m = srv.c.get(f"/api/jobs/{jid}/files/manifest.json").json()
        assert len(m["frames"]) == 24
        assert _temporaries(shot) == []
    finally:
        srv.stop()
