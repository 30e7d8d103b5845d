"""Plate stage: read a still plate (or a mask) and bring it to scene-linear float."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from derrumbe.colour import u8_to_linear
from derrumbe.errors import DerrumbeError


@dataclass
class Plate:
    srgb: np.ndarray      # H x W x 3 uint8, display-referred, as read
    path: str

    @property
    def size(self) -> tuple[int, int]:
        return self.srgb.shape[1], self.srgb.shape[0]

    def linear(self) -> np.ndarray:
        return u8_to_linear(self.srgb)


def _read_u8(path: str, what: str, flags: int) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise DerrumbeError(f"{what} {path} does not exist")
    if not p.is_file():
        raise DerrumbeError(f"{what} {path} is not a file")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as e:
        raise DerrumbeError(f"cannot read {what} {path}: {e.strerror or e}") from None
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise DerrumbeError(f"{what} {path} is not a readable image (JPEG, PNG or TIFF)")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DerrumbeError(f"{what} {path} has an unsupported pixel type {img.dtype}")
    return img


def read_plate(path: str) -> Plate:
    img = _read_u8(path, "plate", cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if min(img.shape[:2]) < 32:
        raise DerrumbeError(f"plate {path} is only {img.shape[1]}x{img.shape[0]} pixels; need at least 32x32")
    return Plate(srgb=np.ascontiguousarray(img[..., ::-1]), path=str(path))


def read_mask(path: str, size: tuple[int, int], what: str) -> np.ndarray:
    """A mask as float32 0..1 at the plate's size; white or opaque means inside."""
    img = _read_u8(path, what, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if img.ndim == 3:
        img = img[..., 3] if img.shape[2] == 4 and img[..., 3].min() < 255 else img[..., :3].max(axis=2)
    if (img.shape[1], img.shape[0]) != size:
        raise DerrumbeError(
            f"{what} {path} is {img.shape[1]}x{img.shape[0]} but the plate is {size[0]}x{size[1]}")
    m = img.astype(np.float32) / 255.0
    if m.max() < 0.5:
        raise DerrumbeError(f"{what} {path} is empty (no pixel above 50 % white)")
    return m


def resize_linear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resamples in linear light (area filter when shrinking, so facades don't alias)."""
    if (img.shape[1], img.shape[0]) == size:
        return img.copy()
    shrink = size[0] < img.shape[1]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
