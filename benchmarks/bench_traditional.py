"""derrumbe against the traditional pipeline (Blender: Bullet, Mantaflow, EEVEE, Cycles),
the same shot, in the same run, on the same machine.

    .venv/bin/python benchmarks/bench_traditional.py --quick     # make bench-quick, < 15 min
    .venv/bin/python benchmarks/bench_traditional.py             # the final demo shot

1. derrumbe renders the demo shot (a child process; stage times from its manifest).
2. Its fractured pieces (from the shot's stage cache), their masses, bonds, camera and
   dust volume are handed to Blender (Debian's `blender`, run headless under xvfb-run
   for EEVEE's OpenGL), which sets the same shot up the way an artist would with
   Blender's defaults and times the Bullet bake, the Mantaflow bake and a few frames
   of EEVEE and of Cycles (CPU). Whole-shot render times are extrapolated from the
   frames rendered (the output says so): the first EEVEE frame, which compiles shaders,
   is counted once, the steadiest frame for every other.
3. Per-stage and whole-shot ratios traditional / derrumbe are printed as a table and
   as one JSON line with "ratio_total" (against EEVEE).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    # size, seconds, pieces, frames rendered per engine, Cycles samples
    "quick": dict(size=(640, 360), duration=2.0, pieces=300, render_frames=2, cycles_samples=32),
    "full": dict(size=(1280, 720), duration=6.0, pieces=500, render_frames=3, cycles_samples=32),
    # A check that the harness itself works (a minute), not a measurement.
    "smoke": dict(size=(160, 90), duration=1.0, pieces=40, render_frames=1, cycles_samples=4),
}
FPS = 24
BOND_G = 9.0        # concrete's bond strength in g-loads (derrumbe's materials.py)


def blender_cmd() -> list[str]:
    exe = shutil.which("blender")
    if not exe:
        raise SystemExit("bench: Debian's blender is not installed (apt-get install blender xvfb); "
                         "`make bench-quick` installs it")
    xvfb = shutil.which("xvfb-run")
    if not xvfb:
        raise SystemExit("bench: xvfb-run is missing (apt-get install xvfb): EEVEE needs an OpenGL display")
    return [xvfb, "-a", "-s", "-screen 0 1280x1024x24", exe]


def run_derrumbe(tmp: Path, mode: dict) -> tuple[Path, dict, float]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_pipeline import demo_args
    out = tmp / "derrumbe"
    args = [sys.executable, "-m", "derrumbe"] + demo_args(tmp) + [
        "--size", str(mode["size"][0]), "--duration", str(mode["duration"]), "--fps", str(FPS),
        "--pieces", str(mode["pieces"]), "-o", str(out), "-q"]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"derrumbe failed: {r.stderr.strip()}")
    return out, json.loads((out / "manifest.json").read_text()), wall


def scene_for_blender(out: Path, m: dict, tmp: Path, mode: dict) -> Path:
    """The shot's pieces as an OBJ (world space at rest, Y up), and the job file."""
    import numpy as np
    keys = m["cache"]["keys"]
    fr = pickle.loads((out / ".derrumbe/stages/fracture" / f"{keys['fracture']}.pkl").read_bytes())
    sim = pickle.loads((out / ".derrumbe/stages/simulate" / f"{keys['simulate']}.pkl").read_bytes())
    lines, base = [], 1
    for i in range(fr.n):
        v = fr.verts[i] + fr.centroid[i]
        lines.append(f"o piece_{i:04d}")
        lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in v]
        lines += [f"f {a + base} {b + base} {c + base}" for a, b, c in fr.tris[i]]
        base += len(v)
    obj = tmp / "pieces.obj"
    obj.write_text("\n".join(lines) + "\n")
    # The failing storey: bonds of pieces below it are left out, so the block drops.
    fail_h = float(fr.box_lo[1]) + 4.0
    bonds, thr = [], []
    for a, b in fr.bonds:
        if fr.centroid[a][1] < fail_h or fr.centroid[b][1] < fail_h:
            continue
        bonds.append([int(a), int(b)])
        # Breaking impulse per 1/240 s substep for BOND_G times the lighter piece's weight.
        thr.append(BOND_G * 9.81 * float(min(sim.mass[a], sim.mass[b])) / (FPS * 10))
    e, W = m["estimates"], m["size"][0]
    H = m["size"][1]
    f_px = e["focal_mm"] / 36.0 * W
    cy = e["horizon_y"] * W / m["plate"]["size"][0]
    dust = m["dust"]
    nx, ny, nz = dust["grid"]
    h = dust["cell_m"]
    x0, _, z0 = dust["origin_m"]
    job = {
        "obj": str(obj), "masses": [float(x) for x in sim.mass], "bonds": bonds, "thresholds": thr,
        "fps": FPS, "frames": len(m["frames"]), "size": list(m["size"]),
        "focal_mm": e["focal_mm"], "shift": [0.0, (cy - H / 2) / W], "eye_m": 1.6,
        # derrumbe's dust grid in Blender's Z-up frame: (x, y, z) -> (x, -z, y)
        "domain_lo": [x0, -(z0 + nz * h), 0.0], "domain_hi": [x0 + nx * h, -z0, ny * h],
        "fluid_res": int(max(nx, ny, nz)),
        "engines": ["BLENDER_EEVEE", "CYCLES"], "cycles_samples": mode["cycles_samples"],
        "render_frames": _render_frames(len(m["frames"]), mode["render_frames"]),
        "cache_dir": str(tmp / "blender_cache"), "result": str(tmp / "blender.json"),
    }
    (tmp / "blender_cache").mkdir(exist_ok=True)
    p = tmp / "job.json"
    p.write_text(json.dumps(job))
    return p


def _render_frames(n: int, k: int) -> list[int]:
    """k frames from the middle of the collapse, where the volume and debris are."""
    mid = int(n * 0.6)
    return [min(n, mid + i) for i in range(k)]


def run_blender(job: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(blender_cmd() + ["-b", "--factory-startup", "-noaudio", "-P",
                                        str(ROOT / "benchmarks/blender_baseline.py"), "--", str(job)],
                       capture_output=True, text=True, timeout=timeout)
    res_path = Path(json.loads(job.read_text())["result"])
    if r.returncode or not res_path.exists():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"blender baseline failed (exit {r.returncode}):\n{tail}")
    res = json.loads(res_path.read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def compare(m: dict, wall: float, b: dict) -> dict:
    t = m["timings_s"]
    n = len(m["frames"])
    ours = {
        "simulate": t["simulate"],
        "dust": t.get("dust", 0.0),
        "render": sum(t.get(k, 0.0) for k in ("cleanplate", "render", "dust_render", "comp", "write")),
    }
    ours["total"] = wall
    theirs = {"simulate": b["bullet_bake_s"], "dust": b.get("mantaflow_bake_s", 0.0),
              "setup_not_counted": sum(b.get(k, 0.0) for k in ("import_s", "rigid_setup_s", "fluid_setup_s"))}
    renders = {}
    for engine, times in b["render_s"].items():
        # The first frame (with EEVEE's shader compile) once, the mean of the others for
        # every other frame; a single timed frame stands for all (the smoke mode only).
        rest = sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0]
        renders[engine] = times[0] + rest * (n - 1)
    out = {"frames": n, "size": m["size"], "pieces": m["fracture"]["pieces"], "derrumbe_s": ours,
           "blender_s": {**theirs, "render_eevee": renders.get("BLENDER_EEVEE"),
                         "render_cycles": renders.get("CYCLES"),
                         "render_frames_timed": b["render_s"]},
           "extrapolated": f"renders: {len(next(iter(b['render_s'].values())))} frames timed per engine, "
                           f"scaled to {n}"}
    for eng, key in (("eevee", "render_eevee"), ("cycles", "render_cycles")):
        total = theirs["simulate"] + theirs["dust"] + out["blender_s"][key]
        out["blender_s"][f"total_{eng}"] = total
        out[f"ratio_total_{eng}"] = total / ours["total"]
        out[f"ratio_render_{eng}"] = out["blender_s"][key] / ours["render"]
    out["ratio_simulate"] = theirs["simulate"] / max(ours["simulate"], 1e-6)
    out["ratio_dust"] = theirs["dust"] / max(ours["dust"], 1e-6)
    out["ratio_total"] = out["ratio_total_eevee"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="640x360, 2 s, 300 pieces: under 15 minutes")
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the harness, not a measurement")
    ap.add_argument("--keep", help="keep the work folder here")
    args = ap.parse_args()
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[name]
    blender_cmd()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="derrumbe-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t_start = time.perf_counter()
        out, m, wall = run_derrumbe(tmp, mode)
        print(f"derrumbe: {wall:.1f} s wall for {len(m['frames'])} frames {m['size'][0]}x{m['size'][1]}, "
              f"{m['fracture']['pieces']} pieces", flush=True)
        job = scene_for_blender(out, m, tmp, mode)
        b = run_blender(job, timeout=3600)
        r = compare(m, wall, b)
        r.update(mode=name, date=time.strftime("%Y-%m-%d"),
                 machine=f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
                 blender=b.get("blender"), constraints=b.get("constraints"), fluid_res=b.get("fluid_res"),
                 blender_mean_height_m=b.get("mean_height_m"),
                 bench_wall_s=round(time.perf_counter() - t_start, 1))
        d, s = r["derrumbe_s"], r["blender_s"]
        print(f"\n{'stage':<10} {'derrumbe':>10} {'Blender':>12} {'ratio':>8}")
        print(f"{'simulate':<10} {d['simulate']:>9.1f}s {s['simulate']:>11.1f}s {r['ratio_simulate']:>7.1f}x  (Rapier vs Bullet)")
        print(f"{'dust':<10} {d['dust']:>9.1f}s {s['dust']:>11.1f}s {r['ratio_dust']:>7.1f}x  (ours vs Mantaflow)")
        print(f"{'render':<10} {d['render']:>9.1f}s {s['render_eevee']:>11.1f}s {r['ratio_render_eevee']:>7.1f}x  (EEVEE, extrapolated)")
        print(f"{'render':<10} {d['render']:>9.1f}s {s['render_cycles']:>11.1f}s {r['ratio_render_cycles']:>7.1f}x  (Cycles CPU, extrapolated)")
        print(f"{'total':<10} {d['total']:>9.1f}s {s['total_eevee']:>11.1f}s {r['ratio_total_eevee']:>7.1f}x  (with EEVEE)")
        print(f"{'total':<10} {d['total']:>9.1f}s {s['total_cycles']:>11.1f}s {r['ratio_total_cycles']:>7.1f}x  (with Cycles)")
        print(json.dumps(_rounded(r)))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _rounded(x):
    if isinstance(x, float):
        return round(x, 2)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


if __name__ == "__main__":
    main()
