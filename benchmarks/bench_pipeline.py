"""Stage timings and peak memory of the CPU pipeline, for the numbers in benchmarks/README.md.

Runs, one after another (never two heavy renders at once on 2 cores):
- the 5 s preview (640 px wide, 24 fps) of a shared plate (../shared/plates) if present,
  else of the demo plate;
- the final 1280 px wide, 24 fps, 6 s demo shot;
- fracture alone at 1000 pieces.
Each shot runs in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATES = ROOT.parent / "shared" / "plates"


def run(args: list[str], label: str, out: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = out or Path(tmp) / "o"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "derrumbe"] + args + ["-o", str(out), "-q"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"{label} failed: {r.stderr.strip()}")
        m = json.loads((out / "manifest.json").read_text())
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stages = "  ".join(f"{k} {v:.1f}" for k, v in m["timings_s"].items())
    print(f"{label}: {wall:.1f} s wall, peak RSS {peak:.0f} MB, {m['size'][0]}x{m['size'][1]}, "
          f"{len(m['frames'])} frames, {m['fracture']['pieces']} pieces\n    {stages}")
    return {"label": label, "wall_s": round(wall, 1), "peak_rss_mb": round(peak), "timings_s": m["timings_s"]}


def main() -> None:
    results = []
    if PLATES.exists():
        entry = json.loads((PLATES / "plates.json").read_text())["plates"][0]
        results.append(run(["shot", str(PLATES / entry["file"]), "--box", ",".join(map(str, entry["box"])),
                            "--preview", "--duration", "5"], f"preview 5 s of {entry['file']}"))
    with tempfile.TemporaryDirectory() as tmp:
        import cv2
        from derrumbe.demo import make_demo_plate
        d = make_demo_plate()
        cv2.imwrite(f"{tmp}/plate.png", d.srgb[..., ::-1])
        cv2.imwrite(f"{tmp}/hold.png", d.holdout)
        base = ["shot", f"{tmp}/plate.png", "--box", ",".join(map(str, d.box)), "--holdout", f"{tmp}/hold.png"]
        if not PLATES.exists():
            results.append(run(base + ["--preview", "--duration", "5"], "preview 5 s of the demo plate"))
        results.append(run(base + ["--size", "1280", "--duration", "6"], "final 1280 px 6 s demo"))

        # The art-direction loop: the same shot again at another size re-uses the matte,
        # fracture, simulation, particles and dust from the shot folder's cache.
        loop = Path(tmp) / "loop"
        run(base + ["--size", "1280", "--duration", "6"], "loop: first render at 1280 px", loop)
        warm = run(base + ["--size", "960", "--duration", "6"], "loop: same shot again at 960 px (cached stages)", loop)
        cold = run(base + ["--size", "960", "--duration", "6"], "loop: cold render at 960 px")
        print(f"re-render at another size: {warm['wall_s']} s against {cold['wall_s']} s cold "
              f"({warm['wall_s'] / cold['wall_s']:.0%}; target at most 50 %)")

    import numpy as np
    from derrumbe.materials import MATERIALS
    from derrumbe.stages.camera import Camera, Placement
    from derrumbe.stages.fracture import fracture_building
    cam = Camera(1280, 720, 924.0, 640.0, 580.0, 1.6)
    place = Placement(47.6, -10, 10, 27.6, 27.6, 610, 75, 8.4, "bench")
    t0 = time.perf_counter()
    fr = fracture_building(cam, place, np.ones((720, 1280), np.float32), "implosion", "toward",
                           MATERIALS["concrete"], 1000, 1)
    print(f"fracture: {fr.n} pieces, {len(fr.bonds)} bonds in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
