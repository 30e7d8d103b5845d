"""The shot folder's stage cache: results stored under a hash of exactly their inputs.

Layout, inside the shot folder:

    .derrumbe/lock                    held (flock) by the one derrumbe rendering here
    .derrumbe/stages/<stage>/<key>.pkl   a stage's result
    .derrumbe/stages/<stage>/<key>.json  what it was made from, its size and sha256
    .derrumbe/dust/<key>/NNNN.npz.z      the dust at every frame (a streamed stage)
    .derrumbe/frames/<frame file>     the key and digest each finished frame was rendered with
                                      (one small file a frame: chunks on many machines write them at once)

A stage's key is derived from its declaration in derrumbe/graph.py (its version, the spec
fields and settings it reads, the keys of the stages it reads and the versions of the
libraries that change its result), so a key changes exactly when something it depends on
changes, and everything downstream changes with it. Results are written atomically (temporary
name, then rename) and checked against their recorded sha256 when read: a file cut
short by a kill, or damaged since, is recomputed, never trusted.

Pickle is used for stage results (fracture cells are ragged lists of arrays); a shot
folder's cache is trusted like the code itself, so do not render into folders from
people you would not take code from.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes, sha256_file

def jsonable(v):
    """What json.dumps cannot write by itself: numpy arrays and scalars; anything else as text."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)


class ShotLock:
    """One render per shot folder: a second command fails at once with one line rather
    than interleaving its writes with the first's. shared: the farm's frame chunks, which
    write disjoint frames and may run at once, take it shared; a whole render, the
    simulation and the encode take it alone. (flock over NFS is a POSIX lock on Linux.)"""

    def __init__(self, out: Path, shared: bool = False):
        self.path = out / ".derrumbe" / "lock"
        self.fd = None
        self.shared = shared

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                other = os.pread(self.fd, 64, 0).decode().strip() or "?"
            finally:
                os.close(self.fd)
            raise DerrumbeError(f"{self.path.parent.parent} is being rendered by another derrumbe "
                                f"(pid {other}); wait for it to finish") from None
        if not self.shared:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@dataclass
class Entry:
    stage: str
    key: str
    path: Path
    meta: dict


class StageCache:
    def __init__(self, out: Path):
        self.root = out / ".derrumbe"
        self.stages = self.root / "stages"
        self.dust_root = self.root / "dust"
        self.events: list[tuple[str, str]] = []       # (stage, "cached" | "ran" | "recomputed: why")

    # ---- whole-stage results ----------------------------------------------------------
    def _paths(self, stage, key):
        d = self.stages / stage
        return d / f"{key}.pkl", d / f"{key}.json"

    def has(self, stage: str, key: str) -> bool:
        p, m = self._paths(stage, key)
        return p.exists() and m.exists()

    def load(self, stage: str, key: str):
        """The stored result, or None when absent or failing its checksum."""
        p, m = self._paths(stage, key)
        if not (p.exists() and m.exists()):
            return None
        try:
            meta = json.loads(m.read_text())
            data = p.read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                self.events.append((stage, "recomputed: its cached result failed its checksum"))
                return None
            return pickle.loads(data)
        except Exception as e:
            # Unreadable, or made by other code: a class renamed or moved since raises
            # AttributeError or ImportError here. Either way, computing again is right.
            self.events.append((stage, f"recomputed: its cached result could not be read ({type(e).__name__})"))
            return None

    def store(self, stage: str, key: str, obj, params: dict) -> None:
        p, m = self._paths(stage, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write_bytes(p, data)
        meta = dict(stage=stage, key=key, params=params, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        atomic_write_bytes(m, json.dumps(meta, indent=1, default=jsonable).encode())

    def get_or_run(self, stage: str, key: str, params: dict, fn):
        obj = self.load(stage, key)
        if obj is not None:
            self.events.append((stage, "cached"))
            return obj, True
        obj = fn()
        self.store(stage, key, obj, params)
        if not any(s == stage for s, _ in self.events):
            self.events.append((stage, "ran"))
        return obj, False

    # ---- the dust, frame by frame ------------------------------------------------------
    def dust_dir(self, key: str) -> Path:
        return self.dust_root / key

    def dust_complete(self, key: str, n: int, verify: bool = False) -> bool:
        """All n frames stored; with verify, every file also matches its checksum (a
        damaged one makes the whole stage run again)."""
        if _read_json(self.dust_dir(key) / "done.json").get("frames") != n:
            return False
        if verify:
            for i in range(n):
                try:
                    raw = (self.dust_dir(key) / f"{i:04d}.npz.z").read_bytes()
                except OSError:
                    raw = b""
                if len(raw) < 32 or hashlib.sha256(raw[:-32]).digest() != raw[-32:]:
                    self.events.append(("dust", f"recomputed: cached frame {i} failed its checksum"))
                    return False
        return True

    def store_dust_frame(self, key: str, i: int, arrays: dict) -> None:
        d = self.dust_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        import io
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        # zlib level 1 on big grids: half the size for ~30 ms a frame at 200k cells (the
        # coordinates are smooth, the dust mostly empty); small ones are not worth it.
        raw = buf.getvalue()
        data = b"Z" + zlib.compress(raw, 1) if len(raw) > (1 << 20) else b"R" + raw
        atomic_write_bytes(d / f"{i:04d}.npz.z", data + hashlib.sha256(data).digest())

    def load_dust_frame(self, key: str, i: int) -> dict | None:
        import io
        p = self.dust_dir(key) / f"{i:04d}.npz.z"
        try:
            raw = p.read_bytes()
        except OSError:
            return None
        data, digest = raw[:-32], raw[-32:]
        if hashlib.sha256(data).digest() != digest:
            return None
        try:
            body = zlib.decompress(data[1:]) if data[:1] == b"Z" else data[1:]
            with np.load(io.BytesIO(body)) as z:
                return {k: z[k] for k in z.files}
        except Exception:           # whole but not ours (another version's layout): recompute
            return None

    def finish_dust(self, key: str, n: int, params: dict) -> None:
        atomic_write_bytes(self.dust_dir(key) / "done.json",
                           json.dumps(dict(frames=n, params=params), default=jsonable).encode())

    # ---- frames ------------------------------------------------------------------------
    # One record a frame, named by the frame file's path relative to the folder that holds
    # .derrumbe (a wedge's variants share one cache and keep their frames in subfolders).
    @staticmethod
    def frame_digest(path: Path) -> str:
        return sha256_file(path)[:16]

    def _record(self, rel: str) -> Path:
        return self.root / "frames" / (rel.replace("/", "~") + ".rec")

    def frame_index(self) -> dict:
        """{frame file (relative): "key:digest"} of every frame recorded as done."""
        d = self.root / "frames"
        if not d.is_dir():
            return {}
        out = {}
        for p in d.glob("*.rec"):
            try:
                out[p.name[:-4].replace("~", "/")] = p.read_text().strip()
            except OSError:
                pass
        return out

    def frame_record(self, rel: str) -> str:
        try:
            return self._record(rel).read_text().strip()
        except OSError:
            return ""

    def record_frame(self, rel: str, key: str, digest: str) -> None:
        p = self._record(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, f"{key}:{digest}".encode())

    def dust_info(self, key: str) -> dict:
        return _read_json(self.dust_dir(key) / "done.json").get("params", {"enabled": True})

    # ---- what the last run used (for --explain and `cache clean`) ---------------------
    def last_keys(self) -> dict:
        d = _read_json(self.root / "keys.json")
        return d.get("keys", d) if isinstance(d.get("keys"), dict) else d

    def last_params(self) -> dict:
        """The parameters each stage's last key was made from (what --explain compares)."""
        p = _read_json(self.root / "keys.json").get("params")
        return p if isinstance(p, dict) else {}

    def save_last_keys(self, keys: dict, params: dict | None = None) -> None:
        atomic_write_bytes(self.root / "keys.json", json.dumps({"keys": keys, "params": params or {}}, indent=1,
                                                              default=jsonable).encode())

    # ---- housekeeping -------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        out = []
        if self.stages.exists():
            for m in sorted(self.stages.glob("*/*.json")):
                try:
                    meta = json.loads(m.read_text())
                except (OSError, ValueError):
                    meta = {}
                out.append(Entry(m.parent.name, m.stem, m.with_suffix(".pkl"), meta))
        if self.dust_root.exists():
            for d in sorted(p for p in self.dust_root.iterdir() if p.is_dir()):
                size = sum(f.stat().st_size for f in d.iterdir())
                out.append(Entry("dust", d.name, d, dict(bytes=size, frames=len(list(d.glob("*.npz.z"))))))
        return out


def _read_json(path: Path) -> dict:
    """A small bookkeeping file, or {} when it is missing or unreadable (a kill can cut
    nothing short, writes are atomic, but a user can delete or edit anything)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def dir_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
        p.with_suffix(".json").unlink(missing_ok=True)
