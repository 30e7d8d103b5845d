"""The dust's budgets (issue 15) on every shared plate and the demo photo: a 6 s final
at 1280 px wide and a 5 s preview, with dust; total wall time, the dust solver and the
dust render, peak memory, how far the cloud got and how big its grid grew.

    python benchmarks/bench_dust.py [--keep DIR] [--only img_288.jpg ...]

--keep writes each render to DIR/<plate>-<final|preview> (for contact sheets) instead of
a temporary folder. Renders run one after another in child processes (bench_pipeline.run).
Targets: final ≤ 120 s, preview ≤ 25 s, peak ≤ 4 GB, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import PLATES, ROOT, run  # noqa: E402

DEMO = ROOT.parent / "shared" / "demo"


def shots(only: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    if (DEMO / "demo.json").exists():
        d = json.loads((DEMO / "demo.json").read_text())
        out.append((d["file"], ["shot", str(DEMO / d["file"]), "--box", ",".join(map(str, d["box"]))]))
    if (PLATES / "plates.json").exists():
        for e in json.loads((PLATES / "plates.json").read_text())["plates"]:
            out.append((e["file"], ["shot", str(PLATES / e["file"]), "--box", ",".join(map(str, e["box"]))]))
    if not out:
        raise SystemExit("no plates: ../shared/plates and ../shared/demo are absent")
    return [s for s in out if not only or s[0] in only]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=[])
    args = ap.parse_args()
    rows = []
    for name, base in shots(args.only):
        for kind, extra, target in (("final", ["--size", "1280", "--duration", "6"], 120.0),
                                    ("preview", ["--preview", "--duration", "5"], 25.0)):
            out = args.keep / f"{Path(name).stem}-{kind}" if args.keep else None
            r = run(base + extra, f"{kind}, {name}", out)
            m = json.loads((out / "manifest.json").read_text()) if out else {}
            t = r["timings_s"]
            rows.append(dict(plate=name, kind=kind, wall_s=r["wall_s"], target_s=target,
                             dust_s=t.get("dust"), dust_render_s=t.get("dust_render"), peak_mb=r["peak_rss_mb"],
                             size=r["size_px"], dust=m.get("dust", {})))
    print("\n| plate | run | size | wall | target | dust solver | dust render | peak RSS | cloud |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in rows:
        d = w["dust"]
        cloud = (f"front {d.get('front_m')} m, top {d.get('height_m')} m, grid {d.get('grid')} "
                 f"({d.get('cell_m')} m)") if d else ""
        ok = "met" if w["wall_s"] is not None and w["wall_s"] <= w["target_s"] else "MISSED"
        print(f"| {w['plate']} | {w['kind']} | {w['size']} | {w['wall_s']} s | ≤ {w['target_s']:.0f} s: {ok} | "
              f"{w['dust_s']} s | {w['dust_render_s']} s | {w['peak_mb']} MB | {cloud} |")
    print(json.dumps({"runs": rows}))


if __name__ == "__main__":
    main()
