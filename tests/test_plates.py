"""Every real plate in ../shared/plates renders a short preview with the invariants intact."""

import json

import cv2
import numpy as np
import pytest

from derrumbe.cli import main
from derrumbe.colour import linear_to_u8, u8_to_linear
from derrumbe.stages.plate import read_plate, resize_linear
from tests.conftest import SHARED_PLATES, read_rgb

PLATES = json.loads((SHARED_PLATES / "plates.json").read_text())["plates"] if SHARED_PLATES.exists() else []


@pytest.mark.skipif(not SHARED_PLATES.exists(), reason="../shared/plates is not here")
@pytest.mark.parametrize("entry", PLATES, ids=[p["file"] for p in PLATES])
def test_shared_plate_preview(entry, tmp_path):
    out = tmp_path / "o"
    plate = SHARED_PLATES / entry["file"]
    args = ["shot", str(plate), "--box", ",".join(map(str, entry["box"])), "-o", str(out), "--size", "256",
            "--duration", "1.5", "--start", "0.4", "--fps", "8", "--pieces", "300", "--shake", "0", "-q"]
    assert main(args) == 0
    m = json.loads((out / "manifest.json").read_text())
    w, h = m["size"]
    src = read_plate(str(plate)).srgb
    assert abs((w / h) / (src.shape[1] / src.shape[0]) - 1) < 0.01
    ref = linear_to_u8(resize_linear(u8_to_linear(src), (w, h)))
    frames = [read_rgb(out / f) for f in m["frames"]]
    assert len(frames) == 12
    blurred = lambda f: cv2.blur(f.astype(np.float32) - ref, (7, 7))
    assert np.abs(blurred(frames[0])).max() < 6               # the plate first, under fresh grain
    assert (np.abs(blurred(frames[-1])) > 6).any(axis=2).mean() > 0.02   # and then the building came down
    assert 2 < m["estimates"]["height_m"] < 200
