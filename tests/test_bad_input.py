"""Bad input: one line on stderr naming the problem, non-zero exit, no traceback, no manifest."""

import subprocess
import sys

import cv2
import numpy as np
import pytest


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "derrumbe"] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    img = np.full((120, 160, 3), 128, np.uint8)
    cv2.imwrite(str(d / "plate.png"), img)
    cv2.imwrite(str(d / "small_mask.png"), np.full((60, 80), 255, np.uint8))
    cv2.imwrite(str(d / "empty_mask.png"), np.zeros((120, 160), np.uint8))
    (d / "notimage.png").write_text("this is not an image")
    (d / "afile").write_text("x")
    return d


CASES = {
    "missing plate": (["shot", "{d}/nope.jpg", "--box", "0,0,10,10"], "does not exist"),
    "not an image": (["shot", "{d}/notimage.png", "--box", "0,0,10,10"], "not a readable image"),
    "box outside": (["shot", "{d}/plate.png", "--box", "500,500,900,900"], "outside"),
    "zero-area box": (["shot", "{d}/plate.png", "--box", "10,10,10,50"], "zero area"),
    "mask of another size": (["shot", "{d}/plate.png", "--mask", "{d}/small_mask.png"], "80x60"),
    "empty mask": (["shot", "{d}/plate.png", "--mask", "{d}/empty_mask.png"], "empty"),
    "negative duration": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--duration", "-3"], "--duration"),
    "fps 0": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--fps", "0"], "--fps"),
    "ten million pieces": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--pieces", "10000000"], "--pieces"),
    "size off aspect": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--size", "640x640"], "aspect"),
    "no box nor mask": (["shot", "{d}/plate.png"], "--box"),
    "not a number": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--fps", "fast"], "--fps"),
    "wind without heading": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--wind", "3"], "--wind"),
    "hurricane": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--wind", "90,0"], "--wind"),
    "dust colour out of range": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--dust-color", "300,0,0"],
                                 "--dust-color"),
    "negative dust": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--dust", "-1"], "--dust"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_clear_line(case, files, tmp_path):
    args, needle = CASES[case]
    out = tmp_path / "out"
    r = _run([a.format(d=files) for a in args] + ["-o", str(out), "-q"], tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr
    assert not (out / "manifest.json").exists()


def test_unwritable_output_folder(files, tmp_path):
    r = _run(["shot", f"{files}/plate.png", "--box", "0,0,150,110", "-o", f"{files}/afile/sub", "-q"], tmp_path)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot write" in r.stderr
