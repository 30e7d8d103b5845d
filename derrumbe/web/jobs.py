"""The web page's job queue: SQLite on disk, a few worker threads, one child process a job.

A job is a render of a spec (a preview or a final) of an uploaded plate. Its state lives
in SQLite, so a restart of the server loses nothing: a job that was running when the
server stopped is queued again, and the shot folder's stage cache lets it pick up where
it was (finished frames and stages are not redone).

Jobs of one plate render into one shot folder per plate (work/plates/<id>/shot), one at
a time, so every job of that plate shares its stage cache: changing a render-only setting
re-uses the fracture, the simulation and the dust, as on the command line. When a job
finishes, its files are hard-linked into the job's own folder (jobs/<id>/), which is what
the page serves; the next render of the plate replaces files by renaming, so a finished
job's files never change under it.

Each render is `python -m derrumbe shot --spec job.toml --progress-json` in its own
process group: cancelling kills the group, a crash is the child's, not the server's.
Faults, and what each leaves:
- cancel at any moment (queued, claimed but not started, rendering): no render runs on;
  a running one gets SIGTERM (it removes its temporary files), SIGKILL after 5 s, and
  the shot folder is swept of temporaries once its lock is free;
- a graceful shutdown: running renders are stopped the same way and their jobs queued
  again, to resume from the stage cache at the next start;
- a crash or kill -9 of the server: each render dies with it (Linux's parent-death
  signal, set by the render itself), so none holds the shot lock; at the next start a
  job still marked running is queued again, after killing its render if one somehow
  lives on (its pid is recorded) and sweeping the shot folder;
- an exception in the runner: the render is killed and its pipe closed, the job fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

STATES = ("queued", "running", "done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    plate TEXT NOT NULL,
    kind TEXT NOT NULL,             -- preview | final
    spec TEXT NOT NULL,             -- the ShotSpec as JSON, paths relative to the job
    state TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    wedge TEXT,
    label TEXT,
    started REAL,
    finished REAL,
    pid INTEGER                     -- the render's process while running
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
"""


class JobStore:
    """The queue's table. Every method opens its own connection: SQLite connections are
    not shared between threads, and a short transaction each keeps it simple."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "jobs.sqlite"
        with self._conn() as c:
            c.executescript(_SCHEMA)
            if "pid" not in {r["name"] for r in c.execute("PRAGMA table_info(jobs)")}:
                c.execute("ALTER TABLE jobs ADD COLUMN pid INTEGER")     # a queue from before pids were kept
        self.recovered = self._recover()

    def _recover(self) -> list[str]:
        """The server stopped while these ran: their renders must not live on (they would
        hold the shot lock), their temporaries go, and the jobs go back in the queue."""
        with self._conn() as c:
            rows = c.execute("SELECT id, plate, pid FROM jobs WHERE state='running'").fetchall()
        for r in rows:
            killed = bool(r["pid"]) and _kill_orphan(int(r["pid"]), self.root / "jobs" / r["id"] / "spec.toml")
            sweep_shot(self.root / "plates" / r["plate"] / "shot", wait_s=5.0 if killed else 0.0)
            self.requeue(r["id"])
        return [r["id"] for r in rows]

    def requeue(self, jid: str) -> None:
        with self._conn() as c:
            c.execute("UPDATE jobs SET state='queued', progress='{}', started=NULL, pid=NULL "
                      "WHERE id=? AND state='running'", (jid,))

    def count(self, states: tuple[str, ...] | None = None) -> int:
        with self._conn() as c:
            if states is None:
                return c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            q = ",".join("?" * len(states))
            return c.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({q})", states).fetchone()[0]

    def _conn(self):
        c = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA journal_mode=WAL")
        return c

    def add(self, plate: str, kind: str, spec: dict, wedge: str | None = None, label: str | None = None) -> str:
        jid = uuid.uuid4().hex[:12]
        with self._conn() as c:
            c.execute("INSERT INTO jobs (id, created, plate, kind, spec, state, wedge, label) "
                      "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                      (jid, time.time(), plate, kind, json.dumps(spec), wedge, label))
        return jid

    def get(self, jid: str) -> dict | None:
        with self._conn() as c:
            r = c.execute("SELECT * FROM jobs WHERE id=?", (jid,)).fetchone()
        return _row(r) if r else None

    def list(self, wedge: str | None = None, limit: int = -1) -> list[dict]:
        with self._conn() as c:
            if wedge:
                rows = c.execute("SELECT * FROM jobs WHERE wedge=? ORDER BY created", (wedge,)).fetchall()
            else:
                rows = c.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_row(r) for r in rows]

    def claim(self, busy_plates: set[str]) -> dict | None:
        """The oldest queued job whose plate is not rendering, marked running."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            rows = c.execute("SELECT * FROM jobs WHERE state='queued' ORDER BY created").fetchall()
            for r in rows:
                if r["plate"] not in busy_plates:
                    c.execute("UPDATE jobs SET state='running', started=?, progress='{}' WHERE id=?",
                              (time.time(), r["id"]))
                    c.execute("COMMIT")
                    return _row(r) | {"state": "running"}
            c.execute("COMMIT")
        return None

    def update(self, jid: str, **fields) -> None:
        if "progress" in fields:
            fields["progress"] = json.dumps(fields["progress"])
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._conn() as c:
            c.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), jid))

    def finish(self, jid: str, state: str, error: str | None = None) -> None:
        # A job cancelled while running stays cancelled, whatever its process said.
        with self._conn() as c:
            c.execute("UPDATE jobs SET state=?, error=?, finished=?, pid=NULL WHERE id=? AND state='running'",
                      (state, error, time.time(), jid))

    def cancel(self, jid: str) -> bool:
        """Marks a queued or running job cancelled; False when it had already ended."""
        with self._conn() as c:
            n = c.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=? AND state IN ('queued', 'running')",
                          (time.time(), jid)).rowcount
        return n == 1


def _row(r) -> dict:
    d = dict(r)
    d["spec"] = json.loads(d["spec"])
    d["progress"] = json.loads(d["progress"] or "{}")
    return d


def render_command(python: str, spec: Path, shot: Path) -> list[str]:
    extra = ["--scheduler", os.environ["DERRUMBE_SCHEDULER"]] if os.environ.get("DERRUMBE_SCHEDULER") else []
    return [python, "-m", "derrumbe", "shot", "--spec", str(spec), "-o", str(shot), "--progress-json", *extra]


class Runner:
    """N worker threads, each running one child render at a time.

    command(spec_path, shot_dir) -> argv is the render (tests put a stand-in process
    there to inject faults); the child learns the server's pid from DERRUMBE_PARENT_PID
    and arranges to die with it."""

    def __init__(self, store: JobStore, workers: int, python: str = sys.executable, command=None):
        self.store, self.python = store, python
        self.command = command or (lambda spec, shot: render_command(self.python, spec, shot))
        self.busy: dict[str, str] = {}                  # plate id -> job id
        self.procs: dict[str, subprocess.Popen] = {}    # job id -> its process
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.on_claimed = None          # test hook: called with the job between claim and start
        self.threads = [threading.Thread(target=self._loop, name=f"derrumbe-job-{i}", daemon=True)
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def shutdown(self, kill: bool = True) -> None:
        """Stops the workers; running renders are stopped and their jobs queued again."""
        self.stop.set()
        self.wake.set()
        if kill:
            with self.lock:
                procs = list(self.procs.values())
            for p in procs:
                _kill(p)
        for t in self.threads:
            t.join(timeout=15)

    def cancel(self, jid: str) -> bool:
        # Under the lock: a worker between claim and start sees the cancel before it
        # starts the render, or has registered the process for us to kill.
        with self.lock:
            if not self.store.cancel(jid):
                return False
            p = self.procs.get(jid)
        if p is not None:
            _kill(p)
        return True

    def _loop(self):
        while not self.stop.is_set():
            with self.lock:
                job = self.store.claim(set(self.busy))
                if job:
                    self.busy[job["plate"]] = job["id"]
            if job is None:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            try:
                self._run(job)
            except Exception as e:               # never let a worker thread die
                self.store.finish(job["id"], "failed", public_error(f"internal error: {e}", self.store.root))
                sweep_shot(self.store.root / "plates" / job["plate"] / "shot")
            finally:
                with self.lock:
                    self.busy.pop(job["plate"], None)
                    self.procs.pop(job["id"], None)

    def _run(self, job: dict) -> None:
        from derrumbe.spec import ShotSpec
        jid = job["id"]
        jdir = self.store.root / "jobs" / jid
        jdir.mkdir(parents=True, exist_ok=True)
        shot = self.store.root / "plates" / job["plate"] / "shot"
        shot.mkdir(parents=True, exist_ok=True)
        spec_path = jdir / "spec.toml"
        spec_path.write_text(ShotSpec.from_dict(job["spec"], self.store.root / "plates" / job["plate"]).to_toml())
        if self.on_claimed:
            self.on_claimed(job)
        with self.lock:
            if self.stop.is_set():
                self.store.requeue(jid)
                return
            if self.store.get(jid)["state"] != "running":        # cancelled before it started
                return
            env = dict(os.environ, DERRUMBE_PARENT_PID=str(os.getpid()))
            p = subprocess.Popen(self.command(spec_path, shot), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, errors="replace", start_new_session=True, env=env)
            self.procs[jid] = p
        try:
            self.store.update(jid, pid=p.pid)
            last_err, progress = self._follow(jid, p, jdir / "render.log")
        finally:
            # Whatever happened above, the render must not outlive this call with its
            # pipe undrained (it would block on a full pipe, holding the shot lock).
            if p.poll() is None:
                _kill(p)
            p.stderr.close()
            p.wait()
        rc = p.returncode
        state = self.store.get(jid)["state"]
        if state == "cancelled" or (rc != 0 and self.stop.is_set()):
            sweep_shot(shot)
            if state != "cancelled":
                self.store.requeue(jid)           # a shutdown, not the job's fault: again at the next start
            return
        if rc != 0:
            sweep_shot(shot)
            msg = last_err.removeprefix("derrumbe: error: ") or f"the render stopped (exit {rc})"
            self.store.finish(jid, "failed", public_error(msg, self.store.root))
            return
        _publish(shot, jdir / "out")
        progress.update(stage="done", done=1, total=1)
        self.store.update(jid, progress=progress)
        self.store.finish(jid, "done")

    def _follow(self, jid: str, p: subprocess.Popen, log_path: Path) -> tuple[str, dict]:
        """Reads the render's progress lines until it ends."""
        last_err = ""
        progress = {"stage": None, "done": 0, "total": 1, "elapsed": 0.0, "stages": [], "plan": {},
                    "first_frame": None, "warnings": []}
        last_write = 0.0
        with open(log_path, "w") as log:
            for line in p.stderr:
                log.write(line)
                ev = _event(line)
                if ev is None:
                    last_err = line.strip()[:2000] or last_err
                    continue
                if ev["event"] == "chunk":          # a chunk of frames on a cluster's worker
                    progress.setdefault("chunks", {})[f"{ev['first']}-{ev['last']}"] = ev["state"]
                    continue
                if ev["event"] == "plan":
                    progress.update(plan=ev["stages"], first_frame=ev["first_frame"])
                elif ev["event"] == "warning":
                    progress["warnings"] = (progress["warnings"] + [ev["text"]])[-5:]
                else:
                    if ev["event"] == "start" and ev["stage"] not in progress["stages"]:
                        progress["stages"].append(ev["stage"])
                    progress.update({k: ev[k] for k in ("stage", "done", "total", "elapsed", "stage_elapsed",
                                                         "eta_stage", "eta_total", "fraction", "frame")})
                if ev["event"] != "progress" or time.time() - last_write > 0.3:
                    self.store.update(jid, progress=progress)
                    last_write = time.time()
        return last_err, progress


def _event(line: str) -> dict | None:
    """A progress event of the render's --progress-json (a stage's start, progress and
    end with the time left, the plan, a warning), or None for any other line. Only the
    fields the page shows are kept, each of its type."""
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    if not isinstance(ev, dict) or ev.get("event") not in ("start", "progress", "end", "plan", "warning", "chunk"):
        return None
    try:
        if ev["event"] == "chunk":
            return dict(event="chunk", first=int(ev["first"]), last=int(ev["last"]), state=str(ev["state"])[:60])
        if ev["event"] == "plan":
            stages = {str(k)[:40]: _finite(v) for k, v in dict(ev["stages"]).items()}
            return dict(event="plan", stages=dict(list(stages.items())[:20]), first_frame=int(ev["first_frame"]))
        if ev["event"] == "warning":
            return dict(event="warning", text=" ".join(str(ev["text"]).split())[:300])
        frame = ev.get("frame")
        return dict(event=ev["event"], stage=str(ev["stage"])[:40], done=int(ev["done"]), total=int(ev["total"]),
                    elapsed=float(ev["elapsed"]), stage_elapsed=float(ev.get("stage_elapsed", 0.0)),
                    eta_stage=_finite(ev.get("eta_stage")), eta_total=_finite(ev.get("eta_total")),
                    fraction=_finite(ev.get("fraction")), frame=None if frame is None else int(frame))
    except (KeyError, TypeError, ValueError):
        return None


def _finite(v) -> float | None:
    import math
    if v is None:
        return None
    v = float(v)
    return round(v, 2) if math.isfinite(v) else None


_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[^/\s'\"]+/)+[^/\s'\",;)]*")


def public_error(text: str, root: Path) -> str:
    """An error as the page shows it: one line, and no server paths (a file keeps its
    name, nothing above it)."""
    text = " ".join(str(text).split())
    text = _ABS_PATH.sub(lambda m: Path(m.group(0)).name or "/", text)
    return text[:500]


def sweep_shot(shot: Path, wait_s: float = 0.0) -> None:
    """Removes the temporaries a stopped render left, if no render holds the folder
    (waiting up to wait_s for a render just killed to let go of it)."""
    from derrumbe.cache import ShotLock
    from derrumbe.errors import DerrumbeError
    from derrumbe.files import sweep_temps
    if not shot.is_dir():
        return
    t0 = time.time()
    while True:
        try:
            with ShotLock(shot):
                sweep_temps(shot)
            return
        except DerrumbeError:
            if time.time() - t0 >= wait_s:
                return          # a render holds it: its temporaries are live
            time.sleep(0.05)


def _publish(shot: Path, dest: Path) -> None:
    """The render's files, hard-linked (copied where links fail) into the job's folder."""
    import shutil
    m = json.loads((shot / "manifest.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    own = f"{m['stem']}.manifest.json" if isinstance(m.get("stem"), str) else None
    for rel in list(m.get("files", {})) + ["manifest.json"] + ([own] if own and (shot / own).is_file() else []):
        src, dst = shot / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _kill(p: subprocess.Popen) -> None:
    """SIGTERM to the render's process group (it unwinds, removing its temporaries),
    SIGKILL if it has not gone within 5 s."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    except ProcessLookupError:
        pass


def _kill_orphan(pid: int, spec_path: Path) -> bool:
    """Kills a render left by an earlier server, if that pid is still that render (a pid
    can be reused: its command line must name this job's spec). True if it was killed."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False            # gone (or not Linux: the parent-death signal covers it there)
    if str(spec_path).encode() not in cmd:
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
