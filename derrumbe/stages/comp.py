"""Comp stage: clean plate + debris + shadows, holdouts on top, grain and camera shake.

The plate is the reference: a pixel that nothing touches is written from the plate's
own 8-bit value, so it stays bit-identical in every frame. Grain is added only where
the effect changed the picture, matched to the noise the plate already has.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.colour import working_to_rec709_matrix
from derrumbe.kernels import comp as K
from derrumbe.stages.dust_render import DustLayers
from derrumbe.stages.render import FrameLayers


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def estimate_grain(srgb: np.ndarray) -> np.ndarray:
    """Per-channel noise sigma of the plate in display units (0..1): Immerkaer's estimator
    (1996): the mean absolute response of a kernel that cancels smooth image content,
    times sqrt(pi/2)/6, over flat areas. A mean, not a median: the median of 8-bit
    residuals moves in whole code values and missed sigma 3 by 25 %."""
    img = srgb.astype(np.float32) / 255.0
    resp = np.abs(cv2.filter2D(img, -1, _NOISE_KERNEL, borderType=cv2.BORDER_REFLECT))
    # Flat areas only (edges are not noise), judged on a smoothed image so the noise
    # itself does not make every pixel look textured.
    smooth = cv2.GaussianBlur(img.mean(axis=2), (0, 0), 1.5)
    flat = cv2.GaussianBlur(np.abs(cv2.Laplacian(smooth, cv2.CV_32F)), (0, 0), 2) < 0.004
    vals = resp[flat] if flat.sum() > 1000 else resp.reshape(-1, 3)
    sigma = np.sqrt(np.pi / 2) / 6 * vals.mean(axis=0)
    return np.clip(sigma, 0.002, 0.05).astype(np.float32)


def shake_track(times: np.ndarray, dissipated: np.ndarray, potential: float, amount: float, frame_times,
                px_scale: float, seed: int) -> np.ndarray:
    """Camera offset in pixels per frame, driven by the energy the collapse dissipates:
    each impact kicks an envelope that decays in a quarter second; the motion itself is
    a few incommensurate 5-13 Hz wobbles, like a handheld or tripod hit by ground shock."""
    out = np.zeros((len(frame_times), 2), np.float32)
    if amount <= 0 or potential <= 0:
        return out
    e = dissipated / potential
    rng = np.random.default_rng(seed + 7)
    freqs = rng.uniform(5, 13, (2, 3))
    phases = rng.uniform(0, 2 * np.pi, (2, 3))
    for i, t in enumerate(frame_times):
        past = times <= t
        env = float((e[past] * np.exp(-(t - times[past]) / 0.25)).sum())
        a = amount * px_scale * min(1.0, env * 12.0)
        if a < 1e-3:
            continue
        out[i] = a * np.sin(2 * np.pi * freqs * t + phases).sum(1) / 3
    return out


@dataclass
class CompResult:
    frame: np.ndarray        # H x W x 3 uint8 sRGB, the shot
    debris: np.ndarray       # H x W x 4 premultiplied linear RGBA of the debris as seen
    dust: np.ndarray         # H x W x 4 premultiplied linear RGBA of the dust as seen
    linear: np.ndarray       # H x W x 3 the beauty in scene-linear ACEScg, before grain and shake
    touched: np.ndarray      # H x W bool: the display frame differs from the plate here (shadows, grain)


GRAIN_PAD = 48


@functools.lru_cache(maxsize=2)
def _grain_bank(H: int, W: int) -> np.ndarray:
    """A few frames of unit grain, a little larger than the picture; each frame of a
    shot takes one at a random offset, which is as random to the eye as fresh noise
    and a fraction of its cost."""
    rng = np.random.default_rng(12345)
    bank = rng.standard_normal((4, H + GRAIN_PAD, W + GRAIN_PAD, 3), dtype=np.float32)
    # Grain clumps a little beyond one pixel.
    return np.stack([cv2.GaussianBlur(b, (0, 0), 0.6) * 1.6 for b in bank])


def grain_field(H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    bank = _grain_bank(H, W)
    k, dy, dx = rng.integers(0, len(bank)), rng.integers(0, GRAIN_PAD), rng.integers(0, GRAIN_PAD)
    return bank[k, dy:dy + H, dx:dx + W]


def composite(plate_lin: np.ndarray, plate_u8: np.ndarray, clean_lin: np.ndarray, matte: np.ndarray,
              holdout: np.ndarray, layers: FrameLayers, grain_sigma: np.ndarray, grain: float,
              shake_px: np.ndarray, rng: np.random.Generator, dust: DustLayers | None = None,
              holdout_z: np.ndarray | None = None) -> CompResult:
    """Front to back: the dust in front of the nearest opaque thing (a piece or a
    holdout), then the holdout where it is nearer than the debris, the debris, the
    holdout where a piece landed in front of it, then (where no standing part of the
    building blocks it) the dust behind, then the base: the plate where the building
    still stands, the clean plate where it has gone, the street darkened by the pieces'
    shadows and contact; the cloud darkens what it covers (sun through its optical depth
    toward the sun, sky through the depth overhead). Holdouts are the plate's own pixels
    wherever they are seen. holdout_z: each holdout pixel's depth (m); absent, holdouts
    are nearer than everything. The per-pixel maths is one fused kernel (kernels/comp.py)."""
    H, W = matte.shape
    f32 = lambda a: np.ascontiguousarray(a, np.float32)
    out = np.empty((H, W, 3), np.float32)
    debris_pass = np.empty((H, W, 4), np.float32)
    dust_pass = np.empty((H, W, 4), np.float32)
    touched = np.empty((H, W), np.bool_)
    if dust is None:
        z4, z2 = np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 2), np.float32)
        front = back = z4
        near = far = z2
        share = 0.0
    else:
        front, back, near, far = f32(dust.front), f32(dust.back), f32(dust.shade_near), f32(dust.shade_far)
        share = float(dust.sun_share)
    hz = np.zeros((H, W), np.float32) if holdout_z is None else f32(holdout_z)
    K.layers(f32(plate_lin), f32(clean_lin), f32(matte), f32(layers.static), f32(layers.ground), f32(layers.debris),
             f32(layers.depth()), f32(holdout), hz, front, back, near, far, share, dust is not None, out, debris_pass,
             dust_pass, touched)
    if grain > 0 and touched.any():
        n = grain_field(H, W, rng)
        # Grain follows the effect, never onto the plate's own foreground objects.
        soft = cv2.GaussianBlur(touched.astype(np.float32), (0, 0), 1.0) * (1 - holdout)
        sigma = (np.asarray(grain_sigma, np.float32) * grain).astype(np.float32)
    else:
        soft = np.zeros((H, W), np.float32)
        sigma = np.zeros(3, np.float32)
        n = np.zeros((H, W, 3), np.float32)
    # Grain reaches a pixel or two past the touched ones: those differ from the plate too.
    changed = touched | (soft > 1e-3)
    u8 = np.empty((H, W, 3), np.uint8)
    K.encode(out, n, f32(soft), sigma, np.ascontiguousarray(plate_u8), touched, K.SRGB_LUT,
             working_to_rec709_matrix(), u8)
    if np.abs(shake_px).max() > 0.02:
        M = np.float32([[1, 0, shake_px[0]], [0, 1, shake_px[1]]])
        u8 = cv2.warpAffine(u8, M, (u8.shape[1], u8.shape[0]), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    return CompResult(u8, debris_pass, dust_pass, out, changed)
