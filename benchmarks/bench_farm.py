"""The stage graph on one process and on a Dask LocalCluster of 1 and 2 workers, and a
paper estimate for a 40-shot sequence on 32 workers from the measured stage times.

    .venv/bin/python benchmarks/bench_farm.py [--final]

Each run is a child `derrumbe shot` into a fresh folder (nothing cached), with
--progress-json, whose events time the three phases as the user waits for them: the sim
side (plate to dust, one worker), the frames (chunks across the workers) and the finish
(movies, manifest). The shot is the demo photo that ships with derrumbe, a 640 px, 4 s
preview (about a minute); with --final also the 1280 px, 6 s final in one process, whose
stage times feed the estimate. Prints Markdown tables and one JSON line.
"""

from __future__ import annotations

import argparse
import heapq
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "derrumbe" / "data"
SIM_SIDE = ("plate", "matte", "camera", "fracture", "simulate", "particles", "dust", "cleanplate")
FRAME_SIDE = ("render", "dust_render", "comp", "write", "vectors")


def demo(size: str, duration: str) -> list[str]:
    about = json.loads((DATA / "demo_street.json").read_text())
    return ["shot", str(DATA / about["file"]), "--box", ",".join(map(str, about["box"])), "--size", size,
            "--duration", duration]


def run(args: list[str], label: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o"
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "derrumbe", *args, "-o", str(out), "--progress-json"],
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        starts = {}
        for line in p.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "start" and ev["stage"] not in starts:
                starts[ev["stage"]] = time.perf_counter() - t0
        if p.wait():
            raise SystemExit(f"{label} failed")
        wall = time.perf_counter() - t0
        m = json.loads((out / "manifest.json").read_text())
    r = {"label": label, "wall_s": round(wall, 1), "sim_side_s": round(starts["render"], 1),
         "frames_s": round(starts["encode"] - starts["render"], 1), "finish_s": round(wall - starts["encode"], 1),
         "frames": len(m["frames"]), "size": m["size"], "timings_s": m["timings_s"]}
    print(f"{label}: {wall:.1f} s (sim side {r['sim_side_s']}, frames {r['frames_s']}, finish {r['finish_s']})",
          flush=True)
    return r


def schedule(shots: int, workers: int, sim_s: float, frame_s: float, n_frames: int, chunk: int,
             finish_s: float) -> float:
    """Makespan of the sequence on the cluster as Dask runs it: every shot's sim side is a
    task, its chunks become ready when it ends, its finish when they all end; a free worker
    takes the oldest ready task (list scheduling)."""
    free = [0.0] * workers                      # when each worker is next free
    heapq.heapify(free)
    ready = [(0.0, k, "sim", sim_s) for k in range(shots)]
    n_chunks = -(-n_frames // chunk)
    left = {k: n_chunks for k in range(shots)}
    last_chunk = {k: 0.0 for k in range(shots)}
    end = 0.0
    heapq.heapify(ready)
    while ready:
        t_ready, k, kind, cost = heapq.heappop(ready)
        w = heapq.heappop(free)
        start = max(w, t_ready)
        done = start + cost
        heapq.heappush(free, done)
        end = max(end, done)
        if kind == "sim":
            for c in range(n_chunks):
                size = min(chunk, n_frames - c * chunk)
                heapq.heappush(ready, (done, k, "chunk", size * frame_s))
        elif kind == "chunk":
            left[k] -= 1
            last_chunk[k] = max(last_chunk[k], done)
            if left[k] == 0:
                heapq.heappush(ready, (last_chunk[k], k, "finish", finish_s))
    return end


def estimate(final: dict, shots: int = 40, workers: int = 32, chunk: int = 8) -> dict:
    t = final["timings_s"]
    n = final["frames"]
    sim = sum(t.get(k, 0.0) for k in SIM_SIDE)
    frame = sum(t.get(k, 0.0) for k in FRAME_SIDE) / n
    fin = t.get("encode", 0.0) + t.get("vdb", 0.0) + t.get("usd", 0.0) + 1.0   # + the manifest's hashing
    one = sim + n * frame + fin
    serial = (sim + fin) / one
    span = schedule(shots, workers, sim, frame, n, chunk, fin)
    return {"shots": shots, "workers": workers, "chunk": chunk, "sim_side_s": round(sim, 1),
            "frame_s": round(frame, 3), "finish_s": round(fin, 1), "one_shot_serial_s": round(one, 1),
            "serial_fraction": round(serial, 3),
            "one_shot_on_32_s": round(schedule(1, workers, sim, frame, n, chunk, fin), 1),
            "one_shot_amdahl_limit": round(1 / serial, 2),
            "sequence_serial_s": round(shots * one, 0), "sequence_on_cluster_s": round(span, 1),
            "sequence_speedup": round(shots * one / span, 1),
            "lower_bound_s": round(max(shots * one / workers, sim + chunk * frame + fin), 1),
            "sequence_if_frames_stream_behind_the_dust_s": round(
                schedule(shots, workers, t.get("simulate", 0) + sum(t.get(k, 0) for k in ("plate", "matte", "camera",
                         "fracture", "particles", "cleanplate")), frame + t.get("dust", 0) / n, n, chunk, fin), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--final", action="store_true", help="also the 1280 px, 6 s final (its stage times feed the "
                                                         "estimate; without it the preview's do)")
    args = ap.parse_args()
    shot = demo("640", "4")
    rows = [run(shot, "in-process"),
            run(shot + ["--scheduler", "local", "--workers", "1"], "LocalCluster, 1 worker"),
            run(shot + ["--scheduler", "local", "--workers", "2"], "LocalCluster, 2 workers")]
    base = rows[0]
    print("\n| runner | wall | sim side | frames | finish | speed-up (wall) | speed-up (frames) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['wall_s']} s | {r['sim_side_s']} s | {r['frames_s']} s | {r['finish_s']} s | "
              f"{base['wall_s'] / r['wall_s']:.2f}x | {base['frames_s'] / r['frames_s']:.2f}x |")
    final = run(demo("1280", "6"), "final, in-process") if args.final else base
    est = estimate(final)
    print("\npaper estimate from", final["label"], json.dumps(est, indent=1))
    print(json.dumps({"runs": rows, "final": final, "estimate": est}))


if __name__ == "__main__":
    main()
