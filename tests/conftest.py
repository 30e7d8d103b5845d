"""Shared fixtures: the demo plate on disk and one tiny rendered shot reused by many tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from derrumbe.cli import main
from derrumbe.demo import make_demo_plate

SHARED_PLATES = Path(__file__).resolve().parents[1].parent / "shared" / "plates"

# A short, small shot: enough frames to cover the untouched start and the collapse.
TINY = ["--size", "320", "--duration", "2.0", "--start", "0.5", "--fps", "12", "--pieces", "300",
        "--shake", "0", "-q"]


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    p = make_demo_plate()
    cv2.imwrite(str(d / "plate.png"), p.srgb[..., ::-1])
    cv2.imwrite(str(d / "holdout.png"), p.holdout)
    return d, p


@pytest.fixture(scope="session")
def tiny_shot(demo_files, tmp_path_factory):
    d, p = demo_files
    out = tmp_path_factory.mktemp("shot")
    box = ",".join(map(str, p.box))
    rc = main(["shot", str(d / "plate.png"), "--box", box, "--holdout", str(d / "holdout.png"), "-o", str(out)] + TINY)
    assert rc == 0
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="session")
def small_plate(demo_files):
    """The demo plate at 320x180 as PNG bytes, and its box at that size: what the web
    tests upload."""
    d, p = demo_files
    img = cv2.resize(p.srgb, (320, 180), interpolation=cv2.INTER_AREA)
    s = 320 / p.srgb.shape[1]
    return cv2.imencode(".png", img[..., ::-1])[1].tobytes(), [int(round(v * s)) for v in p.box]


def read_rgb(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
