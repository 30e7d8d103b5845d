"""Look-development contact sheets: a shot's first frame and its frames at 20, 40, 60, 80
and 100 % side by side, one row a render, so two renders of the same plate (before and
after a change) can be judged together; and 100 % crops of chosen regions.

    python benchmarks/lookdev_sheets.py sheet OUT.jpg SHOT_DIR [SHOT_DIR ...] [--width 1600]
    python benchmarks/lookdev_sheets.py crop OUT.png SHOT_DIR PERCENT X,Y,W,H

Each SHOT_DIR is a finished render (its manifest.json lists its frames); a row is labelled
with the folder's name and the render stage's seconds from the manifest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

POINTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def frames_at(shot: Path, points=POINTS) -> list[tuple[str, np.ndarray]]:
    m = json.loads((shot / "manifest.json").read_text())
    names = m["frames"]
    out = []
    for p in points:
        name = names[min(len(names) - 1, int(round(p * (len(names) - 1))))]
        out.append((name, cv2.imread(str(shot / name))))
    return out


def row(shot: Path, width: int) -> np.ndarray:
    m = json.loads((shot / "manifest.json").read_text())
    tiles = []
    w = width // len(POINTS)
    for name, img in frames_at(shot):
        h = int(round(img.shape[0] * w / img.shape[1]))
        t = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        cv2.putText(t, name.split(".")[-2], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    strip = np.hstack(tiles)
    label = f"{shot.parent.name}/{shot.name}  render {m['timings_s'].get('render', 0):.0f} s"
    bar = np.full((18, strip.shape[1], 3), 30, np.uint8)
    cv2.putText(bar, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return np.vstack([bar, strip])


def sheet(out: Path, shots: list[Path], width: int) -> None:
    rows = [row(s, width) for s in shots]
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])


def crop(out: Path, shot: Path, percent: float, box) -> None:
    (_, img), = frames_at(shot, (percent / 100.0,))
    x, y, w, h = box
    cv2.imwrite(str(out), img[y:y + h, x:x + w])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheet")
    s.add_argument("out", type=Path)
    s.add_argument("shots", type=Path, nargs="+")
    s.add_argument("--width", type=int, default=1600)
    c = sub.add_parser("crop")
    c.add_argument("out", type=Path)
    c.add_argument("shot", type=Path)
    c.add_argument("percent", type=float)
    c.add_argument("box", type=lambda v: [int(x) for x in v.split(",")])
    a = ap.parse_args()
    if a.cmd == "sheet":
        sheet(a.out, a.shots, a.width)
    else:
        crop(a.out, a.shot, a.percent, a.box)


if __name__ == "__main__":
    main()
