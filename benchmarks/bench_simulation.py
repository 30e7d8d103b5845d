"""How the destruction simulation scales with the fragment count (issue 13's budget).

    .venv/bin/python benchmarks/bench_simulation.py                 # 1k, 3k, 5k, 10k on two buildings
    .venv/bin/python benchmarks/bench_simulation.py --sizes 5000    # one size

For each size it fractures and simulates a 6 s implosion at 24 fps (48 poses a second,
as a final render does) in a child process, so peak memory is its own, and prints wall
seconds for fracture and simulation, the bodies at the peak and the end, the roof's
timing ratio and peak RSS; then the exponent of cost against fragments (a least-squares
slope in log-log). Buildings: the tall 7-storey block of ../shared/plates/img_270.jpg at
its labelled 20.5 m (when present) and a synthetic 4-storey 14 m x 13 m building.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLATE = ROOT.parent / "shared" / "plates" / "img_270.jpg"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from derrumbe.materials import MATERIALS
from derrumbe.stages.fracture import fracture_building
from derrumbe.stages.simulate import simulate
n, which = {n}, {which!r}
mat = MATERIALS["concrete"]
if which == "img_270":
    from derrumbe.stages.plate import open_plate
    from derrumbe.stages.matte import refine_box
    from derrumbe.stages.camera import place_building
    pl = open_plate({plate!r}, None).reference()
    matte = refine_box(pl.srgb, [0, 0, 890, 790], 1)
    cam, place = place_building(pl.srgb, matte, None, None, 20.5)
else:
    sys.path.insert(0, {root!r} + "/tests")
    from test_physics import CAM as cam
    from derrumbe.stages.camera import Placement
    place = Placement(depth_m=40.0, x0_m=-7, x1_m=7, height_m=13, proxy_height_m=13, base_row=345, top_row=195,
                      floors=4, height_source="bench", storey_m=3.0, ground_floor_m=4.0)
    matte = np.ones((360, 640), np.float32)
t0 = time.perf_counter()
fr = fracture_building(cam, place, matte, "implosion", "toward", mat, n, 1)
t1 = time.perf_counter()
sim = simulate(fr, mat, "implosion", "toward", 0.5, 6.0, 48, 1)
t2 = time.perf_counter()
print(json.dumps(dict(fragments=fr.n, fracture_s=t1 - t0, simulate_s=t2 - t1, bodies_peak=sim.info["bodies_peak"],
                      bodies_end=sim.info["bodies_end"], roof_ratio=sim.info.get("roof_ratio"),
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def run(n: int, which: str) -> dict:
    code = CHILD.format(root=str(ROOT), n=n, which=which, plate=str(PLATE))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,3000,5000,10000")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    buildings = (["img_270"] if PLATE.exists() else []) + ["synthetic"]
    out = {}
    print("| building | fragments | fracture s | simulate s | bodies peak / end | roof ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for b in buildings:
        rows = []
        for n in sizes:
            r = run(n, b)
            rows.append(r)
            print(f"| {b} | {r['fragments']} | {r['fracture_s']:.1f} | {r['simulate_s']:.1f} | "
                  f"{r['bodies_peak']} / {r['bodies_end']} | {r['roof_ratio']} | {r['peak_rss_mb']:.0f} |", flush=True)
        if len(rows) >= 2:
            x = np.log([r["fragments"] for r in rows])
            y = np.log([r["simulate_s"] for r in rows])
            out[b] = dict(rows=rows, exponent=round(float(np.polyfit(x, y, 1)[0]), 2))
            print(f"| {b} | cost grows as n^{out[b]['exponent']} | | | | | |")
        else:
            out[b] = dict(rows=rows)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
