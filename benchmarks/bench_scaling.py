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
    ap.add_argument("--only", choices=sorted(AXES), action="append", help="an axis (repeatable); default: all")
    ap.add_argument("--no-base", action="store_true", help="skip the base run")
    ap.add_argument("--timeout", type=float, default=900, help="stop a run after this many seconds; default 900")
    ap.add_argument("--pieces", help="piece counts to run, e.g. 3000 (default: 300,1000,3000)")
    args = ap.parse_args()
    if args.pieces:
        AXES["pieces"] = [dict(pieces=v.strip()) for v in args.pieces.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = demo_args(tmp)
        runs = ([] if args.no_base else [("base", {})]) + \
            [(axis, v) for axis, vs in AXES.items() if not args.only or axis in args.only for v in vs]
        for axis, change in runs:
            p = {**BASE, **change}
            label = f"{p['size']} px, {p['duration']} s, {p['pieces']} pieces"
            r = run(base + ["--size", p["size"], "--duration", p["duration"], "--pieces", p["pieces"]], label,
                    Path(tmp) / label.replace(" ", "_").replace(",", ""), timeout=args.timeout)
            rows.append({"axis": axis, **p, **r})
    print("\n| changed | size | s | pieces | wall | CPU | peak RSS | simulate | dust | render | dust render |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, c = r["timings_s"], r.get("cpu_s", {})
        if r["wall_s"] is None:
            print(f"| {r['axis']} | {r['size']} | {r['duration']} | {r['pieces']} | > {r['stopped_after_s']:.0f} s "
                  f"(stopped) | | | | | | |")
            continue
        print(f"| {r['axis']} | {r['size_px']} | {r['duration']} | {r['pieces_n']} | {r['wall_s']:.1f} s | "
              f"{sum(c.values()):.0f} s | {r['peak_rss_mb']} MB | {t['simulate']:.1f} | {t.get('dust', 0):.1f} | "
              f"{t['render']:.1f} | {t.get('dust_render', 0):.1f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
