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


# ---- the daylight locus ----------------------------------------------------------------
# A plate's light estimated from its walls can come out any colour a wall is (a yellow
# facade under a white sky gives a "green" sun once the sky is guessed from the wall).
# Real daylight is never far off the Planckian locus: direct sun is about 3000-6500 K
# depending on its height, skylight 6000-20000 K, both within a few thousandths of
# CIE 1960 uv of the locus (CIE 15:2004; daylight sits ~0.003 above it).

_REC709_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


def _planck_xy(cct: np.ndarray) -> np.ndarray:
    """CIE 1931 xy of a black body (Kim et al. 2002's cubic fit, 1667-25000 K)."""
    t = np.asarray(cct, np.float64)
    x = np.where(t <= 4000, -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910,
                 -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390)
    y = np.where(t <= 2222, -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683,
                 np.where(t <= 4000, -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867,
                          3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483))
    return np.stack([x, y], -1)


def _xy_to_uv(xy: np.ndarray) -> np.ndarray:
    x, y = xy[..., 0], xy[..., 1]
    d = -2 * x + 12 * y + 3
    return np.stack([4 * x / d, 6 * y / d], -1)


def _uv_to_xy(uv: np.ndarray) -> np.ndarray:
    u, v = uv[..., 0], uv[..., 1]
    d = 2 * u - 8 * v + 4
    return np.stack([3 * u / d, 2 * v / d], -1)


@functools.lru_cache(maxsize=1)
def _locus_uv() -> tuple[np.ndarray, np.ndarray]:
    """The Planckian locus, 1700-25000 K, sampled once: (temperatures, CIE 1960 uv)."""
    temps = np.geomspace(1700.0, 25000.0, 2000)
    return temps, _xy_to_uv(_planck_xy(temps))


def toward_daylight(rgb, cct_range: tuple[float, float], max_duv: float = 0.006,
                    min_duv: float | None = None) -> tuple[np.ndarray, float]:
    """A working-space light colour moved to the nearest chromaticity that daylight can
    have: the Planckian locus between cct_range (K), at most max_duv off it in CIE 1960
    uv (toward green; toward magenta at most min_duv, by default as far). Its luminance is
    kept. Returns the colour and its correlated colour temperature."""
    lin709 = np.clip(working_to_rec709(np.asarray(rgb, np.float32)).astype(np.float64), 1e-6, None)
    xyz = _REC709_TO_XYZ @ lin709
    uv = _xy_to_uv(xyz[:2] / xyz.sum())
    # Where on the whole locus the colour lies (its CCT) and how far off it (its Duv,
    # signed along the locus's normal); then both clamped to what daylight can be.
    temps, locus = _locus_uv()
    k = int(np.argmin(((locus - uv) ** 2).sum(-1)))
    cct = float(np.clip(temps[k], *cct_range))
    base, tan = _xy_to_uv(_planck_xy(np.array([cct, cct * 1.001])))
    tangent = (tan - base) / np.linalg.norm(tan - base)
    normal = np.array([tangent[1], -tangent[0]])          # toward green (positive Duv, as CIE signs it)
    duv = float(np.clip(np.dot(uv - locus[k], normal), -(max_duv if min_duv is None else min_duv), max_duv))
    x, y = _uv_to_xy(base + normal * duv)
    Y = xyz[1]
    xyz2 = np.array([x / y * Y, Y, (1 - x - y) / y * Y])
    out = rec709_to_working(np.linalg.solve(_REC709_TO_XYZ, xyz2).astype(np.float32))
    return np.clip(out, 0.0, None), cct

