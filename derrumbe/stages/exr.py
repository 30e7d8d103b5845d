"""EXR output: one multi-layer OpenEXR a frame, scene-linear ACEScg, for a compositor.

Channel names follow OpenEXR's layer.channel convention, so Nuke's Shuffle, Fusion's
Loader, Houdini's COPs and Blender's compositor list the layers by themselves:

    R G B A                       beauty: the comp before grain and shake, alpha 1
    debris.R .G .B .A             debris as seen in the shot, premultiplied
    dust.R .G .B .A               dust as seen, premultiplied
    dust.Z                        view depth of the cloud's front (opacity-weighted), metres
    matte.building                where the plate's building was (the region replaced)
    matte.holdout                 the plate's foreground objects (all of them), kept in front by depth
    holdout.<id>                  each foreground object's own matte (001, 002, ...; m001... for moving ones)
    matte.effect                  building, debris, dust or their shadows: every pixel the effect changed
    depth.Z                       view depth in metres along the lens axis (the scene)
    forward.u forward.v           motion to the next frame in pixels, u right, v up

Colour, mattes and vectors are half float, what compositors expect of render passes: 11
bits of mantissa are 0.03 px on a 60 px motion vector. The depths are 32-bit float, as
Nuke's reserved depth.Z is: a half loses 2.4 cm at 50 m and 12 cm at 200 m, enough to
band a defocus or a depth-matted holdout along the street. ZIP (16 scanlines, lossless) is what every reader since OpenEXR 1.x opens;
HTJ2K and zstd write faster here but need OpenEXR 3.4 readers that most studios lack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from derrumbe import colour
from derrumbe.errors import DerrumbeError
from derrumbe.files import publish, temp_path

FAR_Z = 1.0e4        # depth written for the sky and anything without a surface (m)


def exr_path(out: Path, name: str, frame: int) -> Path:
    return out / "exr" / f"{name}.{frame:04d}.exr"


COMPRESSION = "ZIP"        # what the manifest says; _header writes the matching OpenEXR constant


def _header(meta: dict) -> dict:
    import OpenEXR
    h = {"compression": getattr(OpenEXR, f"{COMPRESSION}_COMPRESSION"), "type": OpenEXR.scanlineimage,
         # chromaticities are what tells a reader the primaries are AP1 (ACEScg).
         "chromaticities": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
         "colorSpace": colour.WORKING, "ocioConfig": colour.config_name()}
    h.update(meta)
    return h


def frame_channels(beauty: np.ndarray, debris: np.ndarray, dust: np.ndarray, building: np.ndarray,
                   holdout: np.ndarray, depth: np.ndarray, vectors: np.ndarray, touched: np.ndarray | None = None,
                   dust_depth: np.ndarray | None = None, holdouts: dict | None = None) -> dict:
    """The channel dict of one frame; every input is H x W (x C) float at the frame's size.
    touched: where the comp changed the plate at all (the cloud's and the debris' shadows
    reach beyond their alpha), so the effect matte covers every changed pixel. dust_depth:
    the cloud front's depth (0 or None: no dust there; FAR_Z is written)."""
    H, W = building.shape
    ch = {}
    b = _half(beauty)
    for i, c in enumerate("RGB"):
        ch[c] = np.ascontiguousarray(b[..., i])
    ch["A"] = np.ones((H, W), np.float16)
    for layer, rgba in (("debris", debris), ("dust", dust)):
        h = _half(rgba)
        for i, c in enumerate("RGBA"):
            ch[f"{layer}.{c}"] = np.ascontiguousarray(h[..., i])
    effect = 1 - (1 - np.clip(building, 0, 1)) * (1 - np.clip(debris[..., 3], 0, 1)) * (1 - np.clip(dust[..., 3], 0, 1))
    if touched is not None:
        effect = np.maximum(effect, touched)
    ch["matte.building"] = _half(building)
    ch["matte.holdout"] = _half(holdout)
    # Each foreground object's own matte, so a compositor can pull one (holdout.<id>).
    for key, a in sorted((holdouts or {}).items()):
        ch[f"holdout.{key}"] = _half(a)
    ch["matte.effect"] = _half(effect * (1 - np.clip(holdout, 0, 1)))
    ch["depth.Z"] = np.ascontiguousarray(depth, np.float32)
    dz = np.zeros((H, W), np.float32) if dust_depth is None else np.asarray(dust_depth, np.float32)
    # Where the cloud's alpha rounds to zero in half float, the file shows no dust: no depth either.
    ch["dust.Z"] = np.ascontiguousarray(np.where((dz > 0) & (ch["dust.A"] > 0), dz, FAR_Z), np.float32)
    v = _half(vectors)
    ch["forward.u"] = np.ascontiguousarray(v[..., 0])
    ch["forward.v"] = np.ascontiguousarray(v[..., 1])
    return ch


def _half(a: np.ndarray) -> np.ndarray:
    """float32 -> float16, rounded to nearest as numpy does (bit-identical, tested) but
    with OpenCV's SIMD conversion: numpy's is 5x slower, 25 ms of every EXR frame."""
    import cv2
    a = np.ascontiguousarray(a, np.float32)
    if a.ndim == 3 and a.shape[2] > 4:
        return a.astype(np.float16)
    return cv2.add(a, 0.0, dtype=cv2.CV_16F).reshape(a.shape)


def write_exr(path: Path, channels: dict, meta: dict | None = None) -> None:
    """Written under a temporary name and renamed: a killed render never leaves a
    truncated EXR under a frame's name."""
    import OpenEXR
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, ".exr")
    try:
        # One thread: the writer already runs beside the render on a 2-core machine.
        with OpenEXR.File(_header(meta or {}), channels) as f:
            f.write(str(tmp))
        publish(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, DerrumbeError):
            raise DerrumbeError(f"cannot write {path.name}: {e}") from None
        raise


def read_exr(path: Path) -> tuple[dict, dict]:
    """(header, {channel: 2D array}) of an EXR, for tests and tools."""
    import OpenEXR
    with OpenEXR.File(str(path), separate_channels=True) as f:
        return dict(f.header()), {k: v.pixels.copy() for k, v in f.channels().items()}
