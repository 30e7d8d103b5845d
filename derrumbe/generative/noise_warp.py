"""Starting noise that moves with the simulation.

A video model denoises each frame from its own noise. If every frame's noise is drawn
afresh, the model invents texture that boils from frame to frame; if the noise is carried
along the shot's motion, a detail the model grows on a falling slab rides with the slab.
(The idea is the one published as "warped noise" / "Go-with-the-Flow": noise transported
along optical flow, kept an exact Gaussian field each frame. This is our own forward-splat
version, written from that description.)

Forward splat, nearest cell: every cell of frame t moves to the cell its motion vector
points to in frame t+1. A target cell reached by one source or more takes the value of
exactly one of them (the first in raster order, so it is deterministic); a cell no source
reaches (disoccluded: something moved away and uncovered it) gets fresh noise. Every cell
of t+1 then holds either a copy of a distinct cell of t or a new draw, so the frame is
still i.i.d. N(0, 1), exactly, and where nothing was disoccluded the noise at t+1 is the
noise at t moved by the flow. Sub-cell motion rounds to zero, so slow motion holds the
noise still until it has moved half a cell (latent cells are 8 pixels: a piece crossing
the frame in a second moves several cells a frame).
"""

from __future__ import annotations

import numpy as np


def latent_flow(vectors_px: np.ndarray, latent_hw: tuple[int, int]) -> np.ndarray:
    """Forward motion vectors at the frame's size (H x W x 2, pixels, u right, v up) to
    the latent grid (h x w x 2, in cells, x right, y DOWN: array order). Vectors are
    averaged over each cell's footprint and scaled to cells."""
    import cv2
    H, W = vectors_px.shape[:2]
    h, w = latent_hw
    v = cv2.resize(np.ascontiguousarray(vectors_px, np.float32), (w, h), interpolation=cv2.INTER_AREA)
    out = np.empty_like(v)
    out[..., 0] = v[..., 0] * (w / W)
    out[..., 1] = -v[..., 1] * (h / H)        # v is up in the EXR; rows run down
    return out


def splat_step(noise: np.ndarray, flow: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One frame forward. noise: C x h x w; flow: h x w x 2 in cells (x right, y down).
    Returns the next frame's noise and a mask of the cells carried over (not fresh)."""
    C, h, w = noise.shape
    ys, xs = np.mgrid[0:h, 0:w]
    tx = np.rint(xs + flow[..., 0]).astype(np.int64)
    ty = np.rint(ys + flow[..., 1]).astype(np.int64)
    inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    src = (ys * w + xs)[inside]
    dst = (ty * w + tx)[inside]
    # One source per target: the first in raster order (np.unique keeps first indices).
    dst_u, first = np.unique(dst, return_index=True)
    src_u = src[first]
    out = rng.standard_normal((C, h * w), dtype=np.float32)
    flat = noise.reshape(C, h * w)
    out[:, dst_u] = flat[:, src_u]
    carried = np.zeros(h * w, bool)
    carried[dst_u] = True
    return out.reshape(C, h, w), carried.reshape(h, w)


def warped_noise(flows: list[np.ndarray], channels: int, latent_hw: tuple[int, int], seed: int) -> np.ndarray:
    """Noise for len(flows) + 1 frames: frame 0 drawn, each next one splatted from the
    last along flows[i] (h x w x 2 cells). Returns T x C x h x w float32."""
    rng = np.random.default_rng([seed, 0x5EED])
    h, w = latent_hw
    frames = [rng.standard_normal((channels, h, w), dtype=np.float32)]
    for f in flows:
        nxt, _ = splat_step(frames[-1], f, rng)
        frames.append(nxt)
    return np.stack(frames)
