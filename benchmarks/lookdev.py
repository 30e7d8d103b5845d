"""The look-development report: every shared plate and the demo photo, rendered and measured.

    make lookdev                                   # final 1280 px renders, about 2 min a plate
    .venv/bin/python benchmarks/lookdev.py --preview --plates img_288,street

For each plate (../shared/plates with plates.json's boxes, and ../shared/demo/street.jpg
with demo.json's box) it renders the shot in a child process (one at a time: 2 cores),
writes a contact sheet (the plate, then the first frame and 20/40/60/80/100 % of the
shot) and measures what a supervisor would ask about:
- estimated storeys and height against the hand labels (tests/scale_labels.json; the
  label's height over the matte's rows and the error, from benchmarks/scale_report.py);
- the roof's fall against a free fall from its height (1.1-1.8 is a building's timing);
- peak and final count of separate rigid bodies, and fragments;
- the debris size exponent D of N(>r) ~ r^-D over bodies and grit, and its span;
- how far the dust front has travelled from the facade at 2, 4 and 6 s;
- the automatic holdouts' recall and false facade share (benchmarks/holdout_metrics.py);
- stage times and peak memory.
Output: out/lookdev/NAME/ (the render), out/lookdev/NAME_sheet.jpg, report.md, report.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


def plates(only: set | None) -> list[tuple[str, Path, list[int]]]:
    out = []
    pj = SHARED / "plates" / "plates.json"
    if pj.exists():
        for p in json.loads(pj.read_text())["plates"]:
            out.append((p["file"].removesuffix(".jpg"), SHARED / "plates" / p["file"], p["box"]))
    dj = SHARED / "demo" / "demo.json"
    if dj.exists():
        d = json.loads(dj.read_text())
        out.append((d["file"].removesuffix(".jpg"), SHARED / "demo" / d["file"], d["box"]))
    return [t for t in out if t[1].exists() and (not only or t[0] in only)]


def final_size(plate: Path) -> str:
    """As many pixels as 1280x720, at the plate's own aspect: a portrait plate is judged
    at the same cost as a landscape one, not at 1280 px wide and twice the pixels."""
    h, w = cv2.imread(str(plate)).shape[:2]
    width = int(round(np.sqrt(1280 * 720 * w / h) / 2) * 2)
    return str(min(width, 1920))


def render(plate: Path, box, out: Path, preview: bool) -> tuple[dict, float]:
    args = [sys.executable, "-m", "derrumbe", "shot", str(plate), "--box", ",".join(map(str, box)), "-o", str(out),
            "-q"] + (["--preview"] if preview else ["--size", final_size(plate)])
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{plate.name}: {r.stderr.strip()}")
    return json.loads((out / "manifest.json").read_text()), wall


def contact_sheet(plate: Path, out: Path, m: dict, dest: Path, width: int = 480) -> None:
    frames = [out / f for f in m["frames"]]
    n = len(frames)
    picks = [0] + [min(n - 1, int(round(p * (n - 1)))) for p in (0.2, 0.4, 0.6, 0.8, 1.0)]
    tiles = [("plate", cv2.imread(str(plate)))] + [(f"{1001 + i} ({100 * i // max(n - 1, 1)} %)",
                                                    cv2.imread(str(frames[i]))) for i in picks]
    out_tiles = []
    for label, im in tiles:
        h, w = im.shape[:2]
        im = cv2.resize(im, (width, int(h * width / w)), interpolation=cv2.INTER_AREA)
        # A solid tab, not an outlined glyph: at sheet size an outline read as overprinted digits.
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(im, (0, 0), (tw + 12, th + 12), (24, 24, 24), -1)
        cv2.putText(im, label, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1, cv2.LINE_AA)
        out_tiles.append(im)
    h = max(t.shape[0] for t in out_tiles)
    out_tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in out_tiles]
    rows = [np.hstack(out_tiles[k:k + 4]) if k + 4 <= len(out_tiles) else
            np.hstack(out_tiles[k:] + [np.zeros_like(out_tiles[0])] * (k + 4 - len(out_tiles)))
            for k in range(0, len(out_tiles), 4)]
    cv2.imwrite(str(dest), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])


def dust_front(out: Path, m: dict, times=(2.0, 4.0, 6.0)) -> dict:
    """Metres from the facade to the dust front toward the camera at each time, read from
    the dust states the render cached."""
    from derrumbe.cache import StageCache
    from derrumbe.stages.dust import front_toward_camera
    cache = StageCache(out)
    key = m["cache"]["keys"]["dust"]
    facade_z = -float(m["estimates"]["distance_m"])
    n = len(m["frames"])
    out_ = {}
    for t in times:
        i = min(n - 1, int(round(t * m["fps"])))
        state = cache.load_dust_frame(key, i)
        out_[f"{t:g}s"] = None if state is None else front_toward_camera(state, facade_z)
    return out_


def late_motion(out: Path, m: dict, at=(0.7, 0.8, 0.9), gap_s: float = 0.25) -> dict:
    """How much the picture still changes late in the shot: the mean 8-bit difference
    between frames gap_s apart, at each share of the shot, the grain blurred out (a
    Gaussian of 2 px). 'still' is the same between the first two such frames, before
    anything moves: the grain's floor. A cloud that has stopped on the screen reads near
    it (the reviews' "near-still frame" after 60 %)."""
    import cv2
    import numpy as np
    from PIL import Image
    frames = m["frames"]
    gap = max(1, int(round(gap_s * m["fps"])))

    def diff(i):
        a, b = (cv2.GaussianBlur(np.asarray(Image.open(out / frames[k]).convert("RGB"), np.float32), (0, 0), 2.0)
                for k in (i, i + gap))
        return round(float(np.abs(a - b).mean()), 2)
    n = len(frames)
    return dict(still=diff(0), late=[diff(min(n - 1 - gap, int(f * (n - 1)))) for f in at])


def measure(name: str, plate: Path, box, out: Path, m: dict, wall: float, labels: dict) -> dict:
    est = m["estimates"]
    lab = labels.get(plate.name, {})
    sim = m["simulation"]
    row = dict(plate=name, wall_s=round(wall, 1), peak_rss_mb=m.get("peak_rss_mb"),
               storeys=est.get("floors"), storeys_label=lab.get("storeys"), height_m=est.get("height_m"),
               height_label=lab.get("height_m"), height_source=est.get("height_source"),
               roof_ratio=sim.get("roof_ratio"), roof_ratio_drop=sim.get("roof_ratio_drop"), roof_to_ground_s=sim.get("roof_to_ground_s"),
               free_fall_s=sim.get("free_fall_s"), fragments=m["fracture"].get("fragments"),
               bodies_peak=sim.get("bodies_peak"), bodies_end=sim.get("bodies_end"),
               pulverised=sim.get("pulverised", 0), debris_D=m.get("debris_sizes", {}).get("D"),
               debris_decades=m.get("debris_sizes", {}).get("decades"), timings_s=m["timings_s"])
    if m["dust"].get("enabled"):
        row["dust_front_m"] = dust_front(out, m)
        from derrumbe.frames import dust_thinning
        row["lens_tau"] = m["dust"].get("lens_tau")
        row["dust_thinned"] = round(dust_thinning(m["spec"]["see_through"], m["dust"], m["spec"]["fps"]), 3)
    row["late_motion"] = late_motion(out, m)
    # The label's height over this matte's rows (its own span differs), and the errors.
    from benchmarks.scale_report import scale_report
    scale = scale_report(plate, box)
    row["height_label"] = scale.get("label", {}).get("height_m_over_matte", row["height_label"])
    row["scale_error"] = scale.get("error")
    try:
        from benchmarks.holdout_metrics import LABELS, plate_metrics
        row["holdouts"] = plate_metrics(plate, box, LABELS / plate.name.replace(".jpg", ".json"))
    except (ImportError, FileNotFoundError):
        row["holdouts"] = None
    return row


def table(rows: list[dict]) -> str:
    head = ("| plate | storeys (label) | height m (label) | roof/free fall (over its drop) | fragments | bodies peak/end | D (decades) "
            "| dust front 2/4/6 s (m) | lens tau (thinned) | motion 70/80/90 % (still) | holdouts recall | wall s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        front = r.get("dust_front_m") or {}
        h = r.get("holdouts") or {}
        lines.append(
            f"| {r['plate']} | {r['storeys']} ({r['storeys_label']}) | {r['height_m']} ({r['height_label']}"
            + (f", {100 * r['scale_error']['height']:+.0f} %" if r.get("scale_error") else "") + ") | "
            f"{r['roof_ratio']} ({r.get('roof_ratio_drop')}) | {r['fragments']} | {r['bodies_peak']}/{r['bodies_end']} | "
            f"{r['debris_D']} ({r['debris_decades']}) | "
            + " / ".join(str(front.get(k, '-')) for k in ("2s", "4s", "6s")) + " | "
            f"{r.get('lens_tau', '-')} ({r.get('dust_thinned', '-')}) | "
            + (" / ".join(map(str, r["late_motion"]["late"])) + f" ({r['late_motion']['still']})" if r.get("late_motion") else "-")
            + " | "
            f"{h.get('found', '-')}/{h.get('labelled', '-')} | {r['wall_s']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preview", action="store_true", help="5 s previews instead of final renders")
    ap.add_argument("--plates", help="comma-separated plate names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "out" / "lookdev"))
    a = ap.parse_args()
    dest = Path(a.out)
    dest.mkdir(parents=True, exist_ok=True)
    labels = json.loads((ROOT / "tests" / "scale_labels.json").read_text())["plates"]
    rows = []
    for name, plate, box in plates(set(a.plates.split(",")) if a.plates else None):
        out = dest / name
        m, wall = render(plate, box, out, a.preview)
        contact_sheet(plate, out, m, dest / f"{name}_sheet.jpg")
        rows.append(measure(name, plate, box, out, m, wall, labels))
        print(f"{name}: {wall:.0f} s", flush=True)
    md = table(rows)
    (dest / "report.md").write_text(md + "\n")
    (dest / "report.json").write_text(json.dumps(rows, indent=1))
    print(md)


if __name__ == "__main__":
    main()
