"""Transfer functions between display-referred sRGB and scene-linear light.

All stages work in scene-linear float32 (sRGB/Rec.709 primaries for now; the EXR
writer converts to ACEScg). The round trip u8 -> linear -> u8 is exact for all 256
code values, which is what lets untouched plate pixels come out bit-identical.
"""

import numpy as np

_LUT_U8_TO_LIN = None


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def u8_to_linear(img: np.ndarray) -> np.ndarray:
    global _LUT_U8_TO_LIN
    if _LUT_U8_TO_LIN is None:
        _LUT_U8_TO_LIN = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)
    return _LUT_U8_TO_LIN[img]


def linear_to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(linear_to_srgb(img) * 255.0), 0, 255).astype(np.uint8)


def luminance(lin: np.ndarray) -> np.ndarray:
    return lin[..., 0] * 0.2126 + lin[..., 1] * 0.7152 + lin[..., 2] * 0.0722
