"""Colour management: OpenColorIO's built-in ACES studio config is the authority.

The working space of every stage is scene-linear ACEScg (what a compositor expects in
an EXR). Plates come in as display-referred sRGB (or as scene-linear EXR in a colour
space OCIO knows) and display outputs (PNG, movies) go out as sRGB-encoded Rec.709.

The display transform is the inverse of the plate's input transform, not an ACES
output transform with tone mapping: a tone-mapped view would change every pixel of the
plate, and untouched plate pixels must come back as they went in.

Applying an OCIO CPU processor costs ~30 ms a 1280x720 frame, several times a frame;
instead the transforms are taken apart once: the sRGB curve as a 256-entry table read
from OCIO, and the Rec.709 <-> AP1 matrices measured by pushing the unit vectors through
OCIO. tests/test_colour.py checks these fast paths against OCIO's own processors.
"""

from __future__ import annotations

import functools

import numpy as np

WORKING = "ACEScg"
SRGB = "sRGB Encoded Rec.709 (sRGB)"
LIN_REC709 = "Linear Rec.709 (sRGB)"
# Pinned so that an OCIO upgrade can't silently change a shot's colour; the newest
# built-in config is the fallback where this one is gone.
CONFIG = "ocio://studio-config-v5.0.0_aces-v2.1_ocio-v2.6"
FALLBACK_CONFIG = "ocio://studio-config-latest"


def _ocio():
    import PyOpenColorIO as ocio
    return ocio


@functools.lru_cache(maxsize=1)
def config():
    ocio = _ocio()
    try:
        return ocio.Config.CreateFromFile(CONFIG)
    except Exception:
        return ocio.Config.CreateFromFile(FALLBACK_CONFIG)


def config_name() -> str:
    return config().getName()


def colour_spaces() -> list[str]:
    return [cs.getName() for cs in config().getColorSpaces()]


@functools.lru_cache(maxsize=16)
def _cpu(src: str, dst: str):
    return config().getProcessor(src, dst).getDefaultCPUProcessor()


def convert(img: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Any OCIO colour space to any other (the general, slower path)."""
    if src == dst:
        return np.asarray(img, np.float32).copy()
    if src not in colour_spaces():
        from derrumbe.errors import DerrumbeError
        raise DerrumbeError(f"unknown colour space {src!r}; OCIO's config {config_name()} has e.g. "
                            f"{WORKING!r}, {LIN_REC709!r}, {SRGB!r}")
    out = np.ascontiguousarray(img, np.float32).copy()
    _cpu(src, dst).applyRGB(out)
    return out


def _matrix(src: str, dst: str) -> np.ndarray:
    m = np.eye(3, dtype=np.float32)
    _cpu(src, dst).applyRGB(m)       # each row is the image of a unit vector
    return m.T.astype(np.float64)


@functools.lru_cache(maxsize=1)
def _tables():
    eotf = np.repeat((np.arange(256, dtype=np.float32) / 255.0)[:, None], 3, 1)
    _cpu(SRGB, LIN_REC709).applyRGB(eotf)
    to_work = _matrix(LIN_REC709, WORKING)
    return eotf[:, 0].copy(), to_work.astype(np.float32), np.linalg.inv(to_work).astype(np.float32)


def rec709_to_working_matrix() -> np.ndarray:
    return _tables()[1]


def working_to_rec709_matrix() -> np.ndarray:
    return _tables()[2]


def _apply(m: np.ndarray, img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, np.float32)
    return (img.reshape(-1, 3) @ m.T).reshape(img.shape).astype(np.float32)


def rec709_to_working(rgb) -> np.ndarray:
    """A scene-linear Rec.709 colour (material presets, light tints) in the working space."""
    return _apply(rec709_to_working_matrix(), rgb)


def working_to_rec709(rgb) -> np.ndarray:
    return _apply(working_to_rec709_matrix(), rgb)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """The sRGB curve alone (no change of primaries)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """The inverse sRGB curve alone, clipped to the display's 0..1."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def srgb_colour(rgb255) -> np.ndarray:
    """A colour picked on screen (0-255 sRGB, e.g. --dust-color) in the working space."""
    return rec709_to_working(srgb_to_linear(np.asarray(rgb255, np.float32) / 255.0))


def u8_to_linear(img: np.ndarray) -> np.ndarray:
    """8-bit sRGB to scene-linear ACEScg."""
    eotf, m, _ = _tables()
    return _apply(m, eotf[img])


def display_encode(lin: np.ndarray) -> np.ndarray:
    """Scene-linear ACEScg to display sRGB, 0..1 float (out-of-gamut colours clip)."""
    return linear_to_srgb(working_to_rec709(lin))


def linear_to_u8(img: np.ndarray) -> np.ndarray:
    """Scene-linear ACEScg to 8-bit sRGB: u8 -> linear -> u8 is exact for every code value."""
    return np.clip(np.rint(display_encode(img) * 255.0), 0, 255).astype(np.uint8)


def rec709_to_u8(lin709: np.ndarray) -> np.ndarray:
    """Scene-linear Rec.709 to 8-bit sRGB: the sRGB curve alone (the demo plate is built
    in Rec.709, as a camera's sRGB photo would be)."""
    return np.clip(np.rint(linear_to_srgb(lin709) * 255.0), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _luma_weights() -> np.ndarray:
    return (np.array([0.2126, 0.7152, 0.0722], np.float64) @ working_to_rec709_matrix().astype(np.float64)
            ).astype(np.float32)


def luminance(lin: np.ndarray) -> np.ndarray:
    """Relative luminance Y of working-space colours (Rec.709's Y weights carried to AP1)."""
    w = _luma_weights()
    return lin[..., 0] * w[0] + lin[..., 1] * w[1] + lin[..., 2] * w[2]
