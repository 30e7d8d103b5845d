"""Comp stage: clean plate + debris + shadows, holdouts on top, grain and camera shake.

The plate is the reference: a pixel that nothing touches is written from the plate's
own 8-bit value, so it stays bit-identical in every frame. Grain is added only where
the effect changed the picture, matched to the noise the plate already has.
"""

from __future__ import annotations

import cv2
import numpy as np

from derrumbe.colour import linear_to_srgb
from derrumbe.stages.render import FrameLayers


def estimate_grain(srgb: np.ndarray) -> np.ndarray:
    """Per-channel noise sigma of the plate in display units (0..1), robust (MAD)."""
    img = srgb.astype(np.float32) / 255.0
    hp = img - cv2.medianBlur(srgb, 3).astype(np.float32) / 255.0
    # Flat areas only: edges are not noise.
    flat = cv2.GaussianBlur(np.abs(cv2.Laplacian(img.mean(axis=2), cv2.CV_32F)), (0, 0), 2) < 0.02
    vals = hp[flat] if flat.sum() > 1000 else hp.reshape(-1, 3)
    mad = np.median(np.abs(vals - np.median(vals, axis=0)), axis=0)
    return np.clip(1.4826 * mad * 1.25, 0.002, 0.05).astype(np.float32)


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


def composite(plate_lin: np.ndarray, plate_u8: np.ndarray, clean_lin: np.ndarray, matte: np.ndarray,
              holdout: np.ndarray, layers: FrameLayers, grain_sigma: np.ndarray, grain: float,
              shake_px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    st = np.clip(layers.static, 0, 1)[..., None]
    m = matte[..., None]
    # Inside the matte the building is gone wherever no piece at rest covers it.
    base = plate_lin * (1 - m) + (plate_lin * st + clean_lin * (1 - st)) * m
    ground = layers.ground[..., None]
    base = base * (1 - (1 - ground) * (1 - st))
    d = layers.debris
    out = d[..., :3] + base * (1 - d[..., 3:4])
    h = holdout[..., None]
    out = out * (1 - h) + plate_lin * h
    touched = np.abs(out - plate_lin).max(axis=2) > 1e-6
    enc = linear_to_srgb(out)
    if grain > 0 and touched.any():
        n = rng.standard_normal(out.shape).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), 0.6) * 1.6     # grain clumps a little beyond one pixel
        # Grain follows the effect, never onto the plate's own foreground objects.
        soft = cv2.GaussianBlur(touched.astype(np.float32), (0, 0), 1.0)[..., None] * (1 - h)
        enc = enc + n * grain_sigma * grain * soft
        touched = touched | (soft[..., 0] > 1e-3)
    u8 = np.clip(np.rint(enc * 255.0), 0, 255).astype(np.uint8)
    u8 = np.where(touched[..., None], u8, plate_u8)
    if np.abs(shake_px).max() > 0.02:
        M = np.float32([[1, 0, shake_px[0]], [0, 1, shake_px[1]]])
        u8 = cv2.warpAffine(u8, M, (u8.shape[1], u8.shape[0]), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    return u8


