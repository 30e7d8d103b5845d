"""Stage timings and peak memory of the CPU pipeline, for the numbers in benchmarks/README.md.

Runs, one after another (never two heavy renders at once on 2 cores):
- the demo plate and two shared plates (../shared/plates, when present), each as a 5 s
  preview (640 px wide) and a 6 s final (1280 px wide), 24 fps;
- the art-direction loop (a re-render at another size into the same folder, and cold);
- fracture alone at 1000 pieces;
then a table of per-stage wall and CPU seconds and peak memory, and one JSON line.
Each shot runs in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATES = ROOT.parent / "shared" / "plates"


def run(args: list[str], label: str, out: Path | None = None, timeout: float | None = None) -> dict:
    """One render in a child process. With a timeout, a run that takes longer is stopped
    and reported as such (wall_s is then the timeout, stages empty)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = out or Path(tmp) / "o"
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-m", "derrumbe"] + args + ["-o", str(out), "-q"],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{label}: stopped after {timeout:.0f} s", flush=True)
            return {"label": label, "wall_s": None, "stopped_after_s": timeout, "timings_s": {}, "cpu_s": {},
                    "peak_rss_mb": None}
        wall = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"{label} failed: {r.stderr.strip()}")
        m = json.loads((out / "manifest.json").read_text())
    # The child's own high-water mark (its manifest): RUSAGE_CHILDREN would be the largest
    # of all the children so far.
    peak = m["peak_rss_mb"]
    cpu = m.get("cpu_s", {})
    stages = "  ".join(f"{k} {v:.1f}" for k, v in m["timings_s"].items())
    print(f"{label}: {wall:.1f} s wall, {sum(cpu.values()):.0f} s CPU, peak RSS {peak:.0f} MB, "
          f"{m['size'][0]}x{m['size'][1]}, {len(m['frames'])} frames, {m['fracture']['pieces']} pieces\n    {stages}")
    return {"label": label, "wall_s": round(wall, 1), "peak_rss_mb": round(peak), "timings_s": m["timings_s"],
            "cpu_s": cpu, "size_px": f"{m['size'][0]}x{m['size'][1]}", "frames": len(m["frames"]),
            "pieces_n": m["fracture"]["pieces"]}


SHARED_PLATES = ("img_263.jpg", "img_270.jpg")


def demo_args(tmp: str | Path) -> list[str]:
    """`derrumbe shot` arguments for the built-in demo plate, written into tmp."""
    import cv2
    from derrumbe.demo import make_demo_plate
    d = make_demo_plate()
    cv2.imwrite(f"{tmp}/plate.png", d.srgb[..., ::-1])
    cv2.imwrite(f"{tmp}/hold.png", d.holdout)
    return ["shot", f"{tmp}/plate.png", "--box", ",".join(map(str, d.box)), "--holdout", f"{tmp}/hold.png"]      # a 1280x720 plate and a tall close one


def table(results: list[dict]) -> None:
    """Per-stage wall / CPU seconds and peak memory of every run, as Markdown."""
    stages = []
    for r in results:
        stages += [k for k in r["timings_s"] if k not in stages]
    print("\n| run | wall | CPU | peak RSS | " + " | ".join(stages) + " |")
    print("|---|---|---|---|" + "---|" * len(stages))
    for r in results:
        t, c = r["timings_s"], r.get("cpu_s", {})
        cells = [f"{t[k]:.1f} / {c.get(k, 0):.1f}" if k in t else "" for k in stages]
        print(f"| {r['label']} | {r['wall_s']:.1f} s | {sum(c.values()):.0f} s | {r['peak_rss_mb']} MB | "
              + " | ".join(cells) + " |")
    print("(stage cells: wall / CPU seconds; CPU counts every thread of the process)")


def main() -> None:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = demo_args(tmp)
        shots = [("demo", base)]
        if PLATES.exists():
            entries = {e["file"]: e for e in json.loads((PLATES / "plates.json").read_text())["plates"]}
            for f in SHARED_PLATES:
                if f in entries:
                    shots.append((f, ["shot", str(PLATES / f), "--box", ",".join(map(str, entries[f]["box"]))]))
        else:
            print("(../shared/plates is absent: the demo plate only)")
        for name, args in shots:
            results.append(run(args + ["--preview", "--duration", "5"], f"preview 5 s, {name}"))
            results.append(run(args + ["--size", "1280", "--duration", "6"], f"final 1280 px 6 s, {name}"))

        # The art-direction loop: the same shot again at another size re-uses the matte,
        # fracture, simulation, particles and dust from the shot folder's cache.
        loop = Path(tmp) / "loop"
        run(base + ["--size", "1280", "--duration", "6"], "loop: first render at 1280 px", loop)
        warm = run(base + ["--size", "960", "--duration", "6"], "loop: same shot again at 960 px (cached stages)", loop)
        cold = run(base + ["--size", "960", "--duration", "6"], "loop: cold render at 960 px")
        print(f"re-render at another size: {warm['wall_s']} s against {cold['wall_s']} s cold "
              f"({warm['wall_s'] / cold['wall_s']:.0%}; target at most 50 %)")
        results += [warm, cold]

    import numpy as np
    from derrumbe.materials import MATERIALS
    from derrumbe.stages.camera import Camera, Placement
    from derrumbe.stages.fracture import fracture_building
    cam = Camera(1280, 720, 924.0, 640.0, 580.0, 1.6)
    place = Placement(47.6, -10, 10, 27.6, 27.6, 610, 75, 8.4, "bench")
    t0 = time.perf_counter()
    fr = fracture_building(cam, place, np.ones((720, 1280), np.float32), "implosion", "toward",
                           MATERIALS["concrete"], 1000, 1)
    t_fr = time.perf_counter() - t0
    print(f"fracture: {fr.n} pieces, {len(fr.bonds)} bonds in {t_fr:.2f} s")
    table(results)
    print(json.dumps({"runs": results, "fracture_1000_s": round(t_fr, 2)}))


if __name__ == "__main__":
    main()
