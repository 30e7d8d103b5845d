"""Files and the cache under faults: every output reaches the disk before its rename, no
umask games at import, temporaries of a killed writer are swept, a cache made by other
code is recomputed (never a crash), and cache keys change with the software."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from derrumbe.cache import StageCache
from derrumbe import files as outputs


class _DiskLog:
    """Records fsync (by the path its descriptor points at) and rename, in order."""

    def __init__(self, monkeypatch):
        self.events, self.n, self.lock = [], itertools.count(), threading.Lock()
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}")
            real_fsync(fd)
            with self.lock:
                self.events.append((next(self.n), "fsync", path))

        def replace(src, dst, *a, **kw):
            real_replace(src, dst, *a, **kw)
            with self.lock:
                self.events.append((next(self.n), "replace", (os.path.realpath(src), os.path.realpath(dst))))
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def check_durable(self, under: Path) -> int:
        """Every rename into `under`: its source fsynced before, its folder fsynced after."""
        under = os.path.realpath(under)
        fsyncs = [(i, p) for i, k, p in self.events if k == "fsync"]
        n = 0
        for i, k, v in self.events:
            if k != "replace" or not v[1].startswith(under):
                continue
            src, dst = v
            assert any(j < i and p == src for j, p in fsyncs), f"{dst} renamed before its data was synced"
            assert any(j > i and p == os.path.dirname(dst) for j, p in fsyncs), f"{dst}'s folder never synced"
            n += 1
        return n


def test_atomic_write_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, monkeypatch):
    log = _DiskLog(monkeypatch)
    outputs.atomic_write_bytes(tmp_path / "a.bin", b"payload")
    kinds = [k for _, k, _ in log.events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert log.events[2][2] == str(tmp_path)
    assert (tmp_path / "a.bin").read_bytes() == b"payload" and os.listdir(tmp_path) == ["a.bin"]


def test_every_file_of_a_render_is_synced_before_its_rename(demo_files, tmp_path, monkeypatch):
    from derrumbe.cli import main
    d, p = demo_files
    log = _DiskLog(monkeypatch)
    out = tmp_path / "shot"
    rc = main(["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "-o", str(out), "--size", "160",
               "--duration", "1.0", "--start", "0.3", "--fps", "8", "--pieces", "300", "--dust", "0.3",
               "--exr", "--usd", "--prores", "--passes", "-q"])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    renamed = {os.path.relpath(v[1], out) for _, k, v in log.events if k == "replace"}
    # Frames, passes, EXRs, both movies, the USD, the cache's records, the manifest.
    assert set(m["files"]) | {"manifest.json"} <= renamed
    assert log.check_durable(out) >= len(m["files"]) + 1


def test_importing_outputs_leaves_the_umask_alone_and_files_follow_it(tmp_path):
    code = textwrap.dedent(f"""
        import os
        os.umask(0o027)
        calls = []
        real = os.umask
        os.umask = lambda m: (calls.append(m), real(m))[1]
        from pathlib import Path
        from derrumbe import files as outputs
        outputs.atomic_write_bytes(Path({str(tmp_path)!r}) / "f.bin", b"x")
        os.umask = real
        print(calls, oct(os.stat({str(tmp_path)!r} + "/f.bin").st_mode & 0o777), oct(real(0o022)))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "0o640", "0o27"]


def test_temporaries_of_killed_writers_are_swept_and_nothing_else(tmp_path):
    keep = ["shot.1001.png", "shot.mp4", "notes.tmp.txt", ".hidden", "exr/shot.1001.exr", ".derrumbe/keys.json"]
    stale = [".shot.1001.png.1a2b3c4d.tmp", ".shot.mp4.1a2b3c4d.tmp.mp4", "exr/.shot.1002.exr.00ff00ff.tmp.exr",
             ".shot.usdc.deadbeef.tmp.usdc", ".derrumbe/stages/matte/.abc.pkl.0badf00d.tmp"]
    for rel in keep + stale:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert outputs.sweep_temps(tmp_path) == len(stale)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(keep)
    # The names the writers use are the ones swept.
    t = outputs.temp_path(tmp_path / "shot.mp4", ".mp4")
    t.write_bytes(b"x")
    assert outputs.sweep_temps(tmp_path) == 1 and not t.exists()


def test_a_cached_result_of_a_renamed_class_is_recomputed(tmp_path, monkeypatch):
    mod = tmp_path / "mods" / "old_stage_types.py"
    mod.parent.mkdir()
    mod.write_text("class Matte:\n    def __init__(self, v):\n        self.v = v\n")
    monkeypatch.syspath_prepend(str(mod.parent))
    import old_stage_types
    cache = StageCache(tmp_path / "shot")
    cache.store("matte", "k1", old_stage_types.Matte(3), {})
    cache.store("camera", "k2", old_stage_types.Matte(4), {})
    assert cache.load("matte", "k1").v == 3
    # The code changed since: the class was renamed, or its module moved away.
    mod.write_text("class MatteV2:\n    pass\n")
    del sys.modules["old_stage_types"]
    assert cache.load("matte", "k1") is None
    mod.unlink()
    sys.modules.pop("old_stage_types", None)
    assert cache.load("camera", "k2") is None
    obj, cached = cache.get_or_run("matte", "k1", {}, lambda: {"fresh": True})
    assert obj == {"fresh": True} and not cached
    reasons = [f"{s}: {e}" for s, e in cache.events]
    assert "matte: recomputed: its cached result could not be read (AttributeError)" in reasons
    assert "camera: recomputed: its cached result could not be read (ModuleNotFoundError)" in reasons
    assert pickle.loads((tmp_path / "shot" / ".derrumbe" / "stages" / "matte" / "k1.pkl").read_bytes()) == obj


def test_cache_keys_change_with_derrumbe_and_the_libraries_that_make_results(monkeypatch):
    """Each stage's key covers derrumbe's version and those of the libraries its
    declaration names (the simulator's for the simulation): an upgrade of one changes
    the keys of the stages it makes results for, and of everything downstream."""
    from importlib.metadata import version
    import derrumbe
    from derrumbe import graph
    from derrumbe.pipeline import shot_keys
    from derrumbe.spec import ShotSpec
    assert graph.library_version("derrumbe") == derrumbe.__version__
    for lib in ("rapier3d", "numba", "opencolorio", "numpy"):
        assert graph.library_version(lib) == version(lib)
    spec = ShotSpec(plate="p.png", box=[0, 0, 10, 10], fps=24, duration=2.0)
    digests = dict(plate="x", mask=None, holdout=None)
    base = shot_keys(spec, digests, (64, 36))
    real = graph.library_version

    def changed(lib):
        monkeypatch.setattr(graph, "library_version", lambda name: "99.0" if name == lib else real(name))
        k = shot_keys(spec, digests, (64, 36))
        monkeypatch.setattr(graph, "library_version", real)
        return {s for s in k if k[s] != base[s]}
    everything = set(base)
    assert changed("derrumbe") == everything
    assert changed("numpy") == everything
    # Rapier makes the simulation: it and what reads it change, the matte and camera do not.
    assert changed("rapier3d") == {"simulate", "particles", "dust", "frames"}
    # numba's kernels: the particles, the dust and the comp.
    assert changed("numba") == {"particles", "dust", "frames"}
    assert "matte" not in changed("opencolorio") and "frames" in changed("opencolorio")
    assert shot_keys(spec, digests, (64, 36)) == base


def test_refine_takes_the_shot_lock(tmp_path, capsys):
    from derrumbe.cache import ShotLock
    from derrumbe.cli import main
    shot = tmp_path / "shot"
    (shot / "exr").mkdir(parents=True)
    (shot / "manifest.json").write_text(json.dumps({"spec": {"name": "shot"}, "frames": [], "size": [64, 32],
                                                    "fps": 24, "exr": {"files": []}}))
    with ShotLock(shot):                    # a render is running in the folder
        rc = main(["refine", str(shot), "--model", str(tmp_path / "weights"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "being rendered" in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_refine_table_is_one_line(tmp_path):
    from derrumbe.errors import DerrumbeError
    from derrumbe.spec import ShotSpec
    for table, needle in (({"model": "w", "guidance": float("inf")}, "guidance"),
                          ({"model": "w", "strength": "strong"}, "strength"),
                          ({"model": "w", "prompt": "x" * 10_000}, "prompt"),
                          ({"model": "w", "size": "99999x2"}, "size"),
                          ({"model": ["w"]}, "model")):
        with pytest.raises(DerrumbeError, match=needle) as e:
            ShotSpec(plate="p.png", box=[0, 0, 9, 9], refine=table).validate()
        assert "\n" not in str(e.value)
