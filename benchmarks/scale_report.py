"""The building's scale on every shared plate and the demo photo, against the hand labels.

`scale_report(plate_path, box)` is what the look-development report calls: the estimate
as the pipeline makes it (its matte from the box, its automatic holdouts' people and cars:
metres per pixel at the base, height, storeys, uncertainty, winning cue, every cue) next
to the label of tests/scale_labels.json where the plate has one, with the errors and the
time the estimate took. Run as a script it prints a markdown table for every plate present
and one JSON line; `--repeat N` times each estimate N times (the median is reported).

The height is compared with the label's height over the matte's rows (see
tests/test_scale.py: the label's mean metres per pixel over its span times the matte's
pixel height); the base scale with the label's m_per_px.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LABELS = ROOT / "tests" / "scale_labels.json"
sys.path.insert(0, str(ROOT))

from derrumbe.stages.camera import standing_objects  # noqa: E402
from derrumbe.stages.camera import too_tall_by_the_facade  # noqa: E402
from derrumbe.stages.matte import compute_matte  # noqa: E402
from derrumbe.stages.scale import estimate_scale  # noqa: E402


def _label(name: str) -> dict | None:
    return json.loads(LABELS.read_text())["plates"].get(name)


def scale_report(plate_path, box, repeat: int = 1) -> dict:
    """Estimate against label for one plate (`box`: x0, y0, x1, y1 as the user gave it)."""
    path = Path(plate_path)
    srgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].copy()
    found = compute_matte(srgb, box, None, None, 0, judge=too_tall_by_the_facade(srgb))        # the building and the automatic holdouts
    matte, people = found.building, standing_objects(found.objects)
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        est = estimate_scale(srgb, matte, people=people)
        times.append(time.perf_counter() - t0)
    ys = np.nonzero(matte.any(axis=1))[0]
    matte_px = int(ys.max() + 1 - ys.min())
    out = {"plate": path.name, "size": [srgb.shape[1], srgb.shape[0]], "matte_rows": [int(ys.min()), int(ys.max())],
           "estimate_s": round(float(np.median(times)), 3), "estimate": est.to_dict(),
           "describe": est.describe()}
    label = _label(path.name)
    if label is not None:
        ref_h = label["height_m"] / (label["ground_row"] - label["top_row"]) * matte_px
        out["label"] = {"m_per_px": label["m_per_px"], "m_per_px_range": label["m_per_px_range"],
                        "height_m_over_matte": round(ref_h, 2), "storeys": label["storeys"],
                        "storey_m": label["storey_m"], "ground_row": label["ground_row"]}
        out["error"] = {"height": round(est.height_m / ref_h - 1, 3),
                        "m_per_px": round(est.m_per_px / label["m_per_px"] - 1, 3),
                        "storeys": round(est.storeys - label["storeys"], 2)}
        out["within"] = bool(abs(out["error"]["height"]) <= 0.2 and abs(out["error"]["storeys"]) <= 1)
    return out


def shared_plates() -> list[tuple[Path, list]]:
    found = []
    if (SHARED / "plates" / "plates.json").exists():
        for p in json.loads((SHARED / "plates" / "plates.json").read_text())["plates"]:
            found.append((SHARED / "plates" / p["file"], p["box"]))
    if (SHARED / "demo" / "demo.json").exists():
        d = json.loads((SHARED / "demo" / "demo.json").read_text())
        found.append((SHARED / "demo" / d["file"], d["box"]))
    return [(p, b) for p, b in found if p.exists()]


def table(rows: list[dict]) -> str:
    head = ("| plate | estimate | label (over the matte) | height error | m/px (label) | storeys (label) | "
            "won | s |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        e, lab, err = r["estimate"], r.get("label"), r.get("error")
        if lab is None:
            lines.append(f"| {r['plate']} | {e['height_m']:.1f} m | – | – | {e['m_per_px']:.4f} | "
                         f"{e['storeys']:.1f} | {e['source']} | {r['estimate_s']:.2f} |")
            continue
        lines.append(
            f"| {r['plate']} | {e['height_m']:.1f} m ({e['height_range_m'][0]:.1f}-{e['height_range_m'][1]:.1f}) | "
            f"{lab['height_m_over_matte']:.1f} m | {100 * err['height']:+.0f} % | "
            f"{e['m_per_px']:.4f} ({lab['m_per_px']:.4f}, {100 * err['m_per_px']:+.0f} %) | "
            f"{e['storeys']:.1f} ({lab['storeys']}) | {e['source']} | {r['estimate_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="time each estimate this many times (median)")
    args = ap.parse_args()
    plates = shared_plates()
    if not plates:
        raise SystemExit("no shared plates found in ../shared")
    rows = [scale_report(p, b, args.repeat) for p, b in plates]
    print(table(rows))
    within = sum(r.get("within", False) for r in rows if "label" in r)
    print(json.dumps({"plates": len(rows), "within_20pct_and_1_storey": within,
                      "max_estimate_s": max(r["estimate_s"] for r in rows),
                      "errors": {r["plate"]: r.get("error") for r in rows}}))


if __name__ == "__main__":
    main()
