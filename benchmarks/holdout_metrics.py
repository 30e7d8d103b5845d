"""How well the automatic holdouts match hand-labelled foreground objects.

For every shared plate (../shared/plates, boxes from plates.json) and the demo photo
(../shared/demo/street.jpg) with a label file in tests/holdout_labels/:
- recall: labelled objects larger than 0.1 % of the frame that one automatic holdout
  covers with IoU >= 0.5;
- precision: automatic holdouts that match a labelled object with IoU >= 0.5, and the
  share of holdout pixels that lie on a labelled object (pixel precision);
- false holdouts on the facade: holdout pixels inside the building matte that no label
  covers, as a share of the building matte's area (the target is under 2 %);
- the same per cue (the holdout's class: person, vehicle, pole, furniture, object, wire),
  so each detector's own gain and cost are seen.
`plate_metrics()` returns one plate's figures (the look-development report calls it);
run this file to print the table: `python benchmarks/holdout_metrics.py`.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LABELS = ROOT / "tests" / "holdout_labels"
MIN_SHARE = 0.001          # objects smaller than this share of the frame are not counted
IOU = 0.5
SEED = 1                   # the spec's default seed: the matte the pipeline would use

sys.path.insert(0, str(ROOT))
from derrumbe.stages.camera import place_building, stop_at_the_foot  # noqa: E402
from derrumbe.stages.holdouts import assign_depths, find_holdouts  # noqa: E402
from derrumbe.stages.matte import refine_box  # noqa: E402


def plates() -> list[tuple[Path, list[int], Path]]:
    """(plate, box, label file) for every labelled plate present on this machine."""
    out = []
    pj = SHARED / "plates" / "plates.json"
    if pj.exists():
        for p in json.loads(pj.read_text())["plates"]:
            out.append((SHARED / "plates" / p["file"], p["box"], LABELS / p["file"].replace(".jpg", ".json")))
    dj = SHARED / "demo" / "demo.json"
    if dj.exists():
        d = json.loads(dj.read_text())
        out.append((SHARED / "demo" / d["file"], d["box"], LABELS / d["file"].replace(".jpg", ".json")))
    return [t for t in out if t[0].exists() and t[2].exists()]


def label_masks(label_file: Path, shape) -> list[tuple[str, np.ndarray]]:
    d = json.loads(Path(label_file).read_text())
    out = []
    for o in d["objects"]:
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.array(p, np.int32) for p in o["polygons"]], 1)
        out.append((o["what"], m.astype(bool)))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 0.0


def plate_metrics(plate: Path, box, label_file: Path, seed: int = SEED) -> dict:
    srgb = cv2.imread(str(plate), cv2.IMREAD_COLOR)[..., ::-1].copy()
    h, w = srgb.shape[:2]
    building = refine_box(srgb, box, seed)
    t0, c0 = time.perf_counter(), time.process_time()
    hs = find_holdouts(srgb, building, seed)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    # As the pipeline does: what does not stand in front of the building by its ground
    # contact is dropped once the camera is known, from the facade's foot.
    building = stop_at_the_foot(srgb, building)
    cam, place = place_building(srgb, building, None, None, None)
    assign_depths(hs, cam.f_px, cam.cy, cam.eye_m, place.depth_m)
    dets = [o.full((h, w)) > 0.5 for o in hs.objects]
    labels = label_masks(label_file, (h, w))
    counted = [(n, m) for n, m in labels if m.sum() > MIN_SHARE * h * w]
    best = [max((_iou(m, d) for d in dets), default=0.0) for _, m in counted]
    found = sum(b >= IOU for b in best)
    matched = sum(any(_iou(m, d) >= IOU for _, m in labels) for d in dets)
    any_label = np.zeros((h, w), bool)
    for _, m in labels:
        any_label |= m
    # A label drawn by hand is a pixel or two off the object's edge: not a false holdout.
    near = cv2.dilate(any_label.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    union = hs.matte() > 0.5
    facade = building > 0.5
    false_facade = (union & facade & ~near).sum() / max(facade.sum(), 1)
    by_cue = {}
    for o, d in zip(hs.objects, dets):
        c = by_cue.setdefault(o.kind, {"detections": 0, "matched": 0, "false_facade_px": 0})
        c["detections"] += 1
        c["matched"] += int(any(_iou(m, d) >= IOU for _, m in counted))
        c["false_facade_px"] += int((d & facade & ~near).sum())
    for c in by_cue.values():
        c["false_facade"] = round(c.pop("false_facade_px") / max(int(facade.sum()), 1), 4)
    return {"plate": plate.name, "labelled": len(labels), "counted": len(counted), "found": int(found),
            "recall": round(found / len(counted), 3) if counted else None,
            "best_iou": [round(b, 2) for b in best], "missed": [n for (n, _), b in zip(counted, best) if b < IOU],
            "detections": len(dets), "matched": int(matched),
            "precision": round(matched / len(dets), 3) if dets else None,
            "pixel_precision": round(float((union & near).sum() / union.sum()), 3) if union.any() else None,
            "false_facade": round(float(false_facade), 4), "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
            "by_cue": by_cue, "objects": hs.as_list()}


def all_metrics() -> list[dict]:
    # Two test files measure the same plates: once a process (14 s of CI's time each).
    return copy.deepcopy(_all_metrics())


@functools.lru_cache(maxsize=1)
def _all_metrics() -> list[dict]:
    return [plate_metrics(p, b, l) for p, b, l in plates()]


def summary(rows: list[dict]) -> dict:
    counted = sum(r["counted"] for r in rows)
    found = sum(r["found"] for r in rows)
    return {"recall": round(found / counted, 3) if counted else None, "found": found, "counted": counted,
            "worst_false_facade": max((r["false_facade"] for r in rows), default=0.0)}


def main() -> None:
    rows = all_metrics()
    if not rows:
        print("no labelled plates found under", SHARED)
        return
    print(f"{'plate':14s} {'found':>9s} {'recall':>7s} {'dets':>5s} {'prec':>6s} {'px prec':>8s} {'false facade':>13s} {'s':>5s} {'cpu s':>6s}  missed")
    for r in rows:
        rec = "-" if r["recall"] is None else f"{r['recall']:.2f}"
        pre = "-" if r["precision"] is None else f"{r['precision']:.2f}"
        ppr = "-" if r["pixel_precision"] is None else f"{r['pixel_precision']:.2f}"
        print(f"{r['plate']:14s} {r['found']:>4d}/{r['counted']:<4d} {rec:>7s} {r['detections']:>5d} {pre:>6s} {ppr:>8s} "
              f"{100 * r['false_facade']:>12.2f}% {r['seconds']:>5.2f} {r['cpu_seconds']:>6.2f}  {', '.join(r['missed'])}")
    print("\nper cue (detections kept in front / matching a label with IoU >= 0.5 / false facade):")
    for r in rows:
        cues = "  ".join(f"{k} {c['detections']}/{c['matched']}/{100 * c['false_facade']:.2f}%"
                         for k, c in sorted(r["by_cue"].items()))
        print(f"{r['plate']:14s} {cues or '-'}")
    s = summary(rows)
    print(f"all: {s['found']}/{s['counted']} labelled objects found (recall {s['recall']}), "
          f"worst false holdouts on a facade {100 * s['worst_false_facade']:.2f} %")


if __name__ == "__main__":
    main()
