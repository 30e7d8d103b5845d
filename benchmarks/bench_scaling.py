"""How derrumbe's cost grows with the work: the final demo shot (1280x720, 6 s, 24 fps,
500 pieces) with one of piece count, resolution or duration changed at a time.

    .venv/bin/python benchmarks/bench_scaling.py [--only pieces|resolution|duration]

Each run is a fresh child process into a fresh folder (no stage cache). Prints a
Markdown table (wall, CPU, peak RSS, the stages that grow) and one JSON line. About
35 minutes on a 2-core machine, most of it the 4K and 3000-piece runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import demo_args, run  # noqa: E402

BASE = dict(size="1280", duration="6", pieces="500")
AXES = {
    "pieces": [dict(pieces=p) for p in ("300", "1000", "3000")],
    "resolution": [dict(size=s) for s in ("640", "1920", "3840")],
    "duration": [dict(duration=d) for d in ("3", "12")],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(AXES))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = demo_args(tmp)
        runs = [("base", {})] + [(axis, v) for axis, vs in AXES.items() if args.only in (None, axis) for v in vs]
        for axis, change in runs:
            p = {**BASE, **change}
            label = f"{p['size']} px, {p['duration']} s, {p['pieces']} pieces"
            r = run(base + ["--size", p["size"], "--duration", p["duration"], "--pieces", p["pieces"]], label,
                    Path(tmp) / label.replace(" ", "_").replace(",", ""))
            rows.append({"axis": axis, **p, **r})
    print("\n| changed | size | s | pieces | wall | CPU | peak RSS | simulate | dust | render | dust render |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, c = r["timings_s"], r.get("cpu_s", {})
        print(f"| {r['axis']} | {r['size_px']} | {r['duration']} | {r['pieces_n']} | {r['wall_s']:.1f} s | "
              f"{sum(c.values()):.0f} s | {r['peak_rss_mb']} MB | {t['simulate']:.1f} | {t.get('dust', 0):.1f} | "
              f"{t['render']:.1f} | {t.get('dust_render', 0):.1f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
