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
"""

from __future__ import annotations

import json
import os
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
    finished REAL
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
            # The server stopped while these ran: they go back in the queue.
            c.execute("UPDATE jobs SET state='queued', progress='{}' WHERE state='running'")

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

    def list(self, wedge: str | None = None) -> list[dict]:
        with self._conn() as c:
            if wedge:
                rows = c.execute("SELECT * FROM jobs WHERE wedge=? ORDER BY created", (wedge,)).fetchall()
            else:
                rows = c.execute("SELECT * FROM jobs ORDER BY created DESC").fetchall()
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
            c.execute("UPDATE jobs SET state=?, error=?, finished=? WHERE id=? AND state='running'",
                      (state, error, time.time(), jid))


def _row(r) -> dict:
    d = dict(r)
    d["spec"] = json.loads(d["spec"])
    d["progress"] = json.loads(d["progress"] or "{}")
    return d


class Runner:
    """N worker threads, each running one child render at a time."""

    def __init__(self, store: JobStore, workers: int, python: str = sys.executable):
        self.store, self.python = store, python
        self.busy: dict[str, str] = {}                  # plate id -> job id
        self.procs: dict[str, subprocess.Popen] = {}    # job id -> its process
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.threads = [threading.Thread(target=self._loop, name=f"derrumbe-job-{i}", daemon=True)
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def shutdown(self, kill: bool = True) -> None:
        self.stop.set()
        self.wake.set()
        if kill:
            with self.lock:
                procs = list(self.procs.values())
            for p in procs:
                _kill(p)
        for t in self.threads:
            t.join(timeout=10)

    def cancel(self, jid: str) -> bool:
        job = self.store.get(jid)
        if job is None or job["state"] not in ("queued", "running"):
            return False
        self.store.update(jid, state="cancelled", finished=time.time())
        with self.lock:
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
                self.store.finish(job["id"], "failed", f"internal error: {e}")
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
        log = open(jdir / "render.log", "w")
        p = subprocess.Popen([self.python, "-m", "derrumbe", "shot", "--spec", str(spec_path), "-o", str(shot),
                              "--progress-json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        with self.lock:
            self.procs[jid] = p
        last_err = ""
        progress = {"stage": None, "done": 0, "total": 1, "elapsed": 0.0, "stages": []}
        last_write = 0.0
        for line in p.stderr:
            log.write(line)
            try:
                ev = json.loads(line)
            except ValueError:
                last_err = line.strip() or last_err
                continue
            if ev.get("event") in ("start", "progress"):
                if ev.get("event") == "start" and ev["stage"] not in progress["stages"]:
                    progress["stages"].append(ev["stage"])
                progress.update(stage=ev["stage"], done=ev["done"], total=ev["total"], elapsed=ev["elapsed"],
                                stage_elapsed=ev["stage_elapsed"])
                if time.time() - last_write > 0.3:
                    self.store.update(jid, progress=progress)
                    last_write = time.time()
        rc = p.wait()
        log.close()
        if self.store.get(jid)["state"] == "cancelled":
            return
        if rc != 0:
            self.store.finish(jid, "failed", last_err.removeprefix("derrumbe: error: ")[:500] or f"exit {rc}")
            return
        _publish(shot, jdir / "out")
        progress.update(stage="done", done=1, total=1)
        self.store.update(jid, progress=progress)
        self.store.finish(jid, "done")


def _publish(shot: Path, dest: Path) -> None:
    """The render's files, hard-linked (copied where links fail) into the job's folder."""
    import shutil
    m = json.loads((shot / "manifest.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for rel in list(m.get("files", {})) + ["manifest.json"]:
        src, dst = shot / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
