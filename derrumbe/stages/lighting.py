"""The plate's light: the sun (direction, strength, colour) and the sky's ambient, so the
debris, its shadows and the dust are lit as the photo was.

What a single photo of a facade tells:
- How hard the light is. On one material, lit and shadowed parts differ by (sun + sky) /
  sky: under a hard low sun, cast shadows under cornices, balconies and window heads are
  3-8 times darker than the lit wall; under an overcast sky the wall's brightest and
  darkest tenths differ only by what its texture and dirt do (about 1.8x on the shared
  plates). That ratio, measured on wall-coloured pixels, gives the sun's share of the
  light; a visible sky that is grey or white (not blue) caps it: street photographs are
  tone-mapped and grime reads as shade, a white sky does not lie.
- The sun's colour: the lit wall's colour over the shadowed wall's is (sun + sky) / sky per
  channel, so with the sky's colour known, the sun's follows.
- The sky's colour: the plate's sky where it shows, else its brightest neutral pixels.
- Which side the sun is on: a window's reveal throws its shadow onto the side of the
  opening nearest the sun, so the far jamb is lit and the near one dark; across many
  windows that sign is robust. Without windows, the lit side of the facade (light falls
  off across a wall lit from one side).
- Its elevation only weakly (shadow lengths need the depth of what casts them): it is
  assumed (40 degrees) unless given.
`--sun-azimuth` / `--sun-elevation` override the direction; the manifest and the log say
what was estimated and from what.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from derrumbe.colour import rec709_to_working, toward_daylight, working_to_rec709

DEFAULT_ELEVATION = 40.0
TEXTURE_SPREAD = 1.8        # brightest / darkest tenth of a street facade's own texture and dirt under flat light
FRONT_IRRADIANCE = 0.8      # what the facade receives, in the renderer's units (the plate sets albedo)
MAX_SUN_TO_SKY = 6.0
# What daylight can be in a plate's own white balance (a camera's daylight or auto white
# balance keeps a sunlit grey wall near neutral): the sun 4000-7000 K, the sky's light
# 6500-20000 K (an overcast or clear sky is never warmer than the sun), both within
# DAYLIGHT_DUV of the Planckian locus. Without them a yellow facade under a hidden sky
# made a green sun and green dust, and a warm one yellow dust.
SUN_CCT_K = (4000.0, 7000.0)
SKY_CCT_K = (6500.0, 20000.0)
DAYLIGHT_DUV = 0.004
# Shade lit by the sky alone is bluer than sunlit wall: (blue / red) in the wall's darkest
# tenth over its brightest is 1.15-1.5 under a sun 4 times the sky. Where it is below
# SHADE_BLUE[0], the spread between them is paint, trim and grime, not sun and shade, and
# the sun is held to SOFT_SUN of the sky at most (full at SHADE_BLUE[1]). White window
# surrounds on a grimy wall read 6.6 lit over shade on img_100 under an overcast sky (no
# cast shadow anywhere), a hard sun 4 times the sky: its dust glowed cream brighter than
# anything in the plate, and debris in the cloud's shadow went to a flat grey card.
SHADE_BLUE = (1.02, 1.15)
SOFT_SUN = 0.5


@dataclass
class Lighting:
    sun_dir: np.ndarray      # unit vector toward the sun (world)
    sun_col: np.ndarray      # linear RGB irradiance share of the sun
    amb_col: np.ndarray      # linear RGB of the sky's ambient
    facade_albedo: np.ndarray
    # What glass and wet or polished surfaces reflect: the sky at the zenith and at the
    # horizon, and the street (linear ACEScg radiance, as the plate has it).
    sky_zenith: np.ndarray = field(default_factory=lambda: np.array([0.35, 0.45, 0.65]))
    sky_horizon: np.ndarray = field(default_factory=lambda: np.array([0.6, 0.65, 0.72]))
    ground_col: np.ndarray = field(default_factory=lambda: np.array([0.12, 0.12, 0.12]))


def sun_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Azimuth 0 = the sun behind the camera (lighting the facade), 90 = from the right."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])


def estimate_lighting(lin: np.ndarray, building: np.ndarray, skyness: np.ndarray,
                      azimuth: float | None, elevation: float | None,
                      windows: np.ndarray | None = None) -> tuple[Lighting, dict]:
    """`lin`: the plate in linear ACEScg; `windows`: window boxes in its pixels."""
    inside = building > 0.5
    # Nothing inside the building's matte is sky: img_140's pale top cornice, taken for a
    # grey sky, made its sunlit street overcast.
    skyness = np.where(inside, 0.0, skyness)
    lum = lin.mean(axis=2)
    zenith, horizon = _sky(lin, skyness, lum)
    ground = _ground(lin, inside)
    wall = _wall_pixels(lin, inside, windows)
    ratio, lit, shade = _light_ratio(lin, lum, wall)
    q = float(np.clip((ratio - TEXTURE_SPREAD) / 1.2, 0.0, MAX_SUN_TO_SKY))   # sun / sky on a facing wall
    clarity = _sky_clarity(lin, skyness)
    if clarity is not None:
        # A grey or white sky is an overcast one, whatever the wall's contrast says
        # (street photos are tone-mapped; the wall's darkest tenth is often grime).
        q *= 0.1 + 0.9 * clarity
    blue = _shade_blue(lit, shade)
    q = min(q, SOFT_SUN + (MAX_SUN_TO_SKY - SOFT_SUN) * float(np.clip(
        (blue - SHADE_BLUE[0]) / (SHADE_BLUE[1] - SHADE_BLUE[0]), 0.0, 1.0)))
    az_src = "given"
    if azimuth is None:
        azimuth, az_src = _azimuth(lum, inside, windows)
    el_src = "given" if elevation is not None else "assumed"
    elevation = DEFAULT_ELEVATION if elevation is None else elevation
    sun_dir = sun_vector(azimuth, elevation)
    sky_rgb, sky_cct = toward_daylight(0.5 * (zenith + horizon), SKY_CCT_K, DAYLIGHT_DUV)
    sky_rgb = sky_rgb / max(float(sky_rgb.max()), 1e-4)
    # The sun's colour from lit over shadowed wall: (sun + sky) / sky, per channel.
    if q > 0.15:
        sun_rgb = np.clip((lit - shade) / np.maximum(shade, 1e-4), 0, None) * sky_rgb
    else:
        sun_rgb = rec709_to_working(np.array([1.0, 0.95, 0.86]))
    sun_rgb, sun_cct = toward_daylight(sun_rgb, SUN_CCT_K, DAYLIGHT_DUV)
    sun_rgb = sun_rgb / max(float(sun_rgb.max()), 1e-4)
    cos_front = max(0.05, float(sun_dir[2]))
    amb_front = FRONT_IRRADIANCE / (1.0 + q)
    amb = sky_rgb * amb_front / 0.6          # the front wall sees 0.6 of the ambient (shade())
    sun = sun_rgb * (FRONT_IRRADIANCE - amb_front) / cos_front if q > 0 else sun_rgb * 0.02
    facade = lin[inside].mean(axis=0)
    irr = amb * 0.6 + sun * cos_front
    albedo = np.clip(facade / np.maximum(irr, 1e-3), 0.02, 0.9)
    light = Lighting(sun_dir, sun, amb, albedo, zenith, horizon, ground)
    info = dict(sun_azimuth_deg=round(float(azimuth), 1), sun_elevation_deg=round(float(elevation), 1),
                sun_estimated=az_src != "given", sun_azimuth_from=az_src, sun_elevation_from=el_src,
                sun_to_sky=round(q, 2), light="hard sun" if q > 1.0 else "soft sun" if q > 0.3 else "overcast",
                sun_rgb=[round(float(c), 3) for c in working_to_rec709(sun_rgb)],
                sky_rgb=[round(float(c), 3) for c in working_to_rec709(amb * 0.6)],
                sun_cct_k=round(sun_cct), sky_cct_k=round(sky_cct),
                lit_over_shade=round(float(ratio), 2), shade_blue=round(blue, 3))
    return light, info


def describe(info: dict) -> str:
    """One line for the log."""
    return (f"light: {info['light']} (sun/sky {info['sun_to_sky']:.2f}, lit/shade {info['lit_over_shade']:.2f}, "
            f"shade's blue/red over the lit wall's {info.get('shade_blue', 1.0):.2f}); "
            f"sun azimuth {info['sun_azimuth_deg']:.0f} deg ({info['sun_azimuth_from']}), elevation "
            f"{info['sun_elevation_deg']:.0f} deg ({info['sun_elevation_from']}); sun colour "
            f"{tuple(info['sun_rgb'])} ({info['sun_cct_k']} K), sky ambient {tuple(info['sky_rgb'])} "
            f"({info['sky_cct_k']} K) (Rec.709 linear)")


def _sky(lin, skyness, lum) -> tuple[np.ndarray, np.ndarray]:
    sky = skyness > 0.5
    if sky.sum() > 500:
        rows = np.nonzero(sky.any(axis=1))[0]
        top = sky.copy()
        top[rows[len(rows) // 3]:] = False
        bottom = sky.copy()
        bottom[:rows[2 * len(rows) // 3]] = False
        pick = lambda m: lin[m].mean(axis=0) if m.sum() > 50 else lin[sky].mean(axis=0)
        return pick(top), pick(bottom)
    bright = working_to_rec709(lin[lum >= np.percentile(lum, 98)].mean(axis=0))
    sky_c = rec709_to_working(bright * np.array([0.85, 0.92, 1.1]))
    return sky_c * 0.8, sky_c


def _sky_clarity(lin, skyness) -> float | None:
    """0: a white or grey (overcast) sky, 1: a clear blue one; None without sky."""
    s = lin[skyness > 0.5]
    if len(s) < 2000:
        return None
    sat = float(((s.max(axis=1) - s.min(axis=1)) / np.maximum(s.max(axis=1), 1e-4)).mean())
    return float(np.clip((sat - 0.18) / 0.22, 0.0, 1.0))


def _ground(lin, inside) -> np.ndarray:
    h = lin.shape[0]
    ys = np.nonzero(inside.any(axis=1))[0]
    base = int(ys.max()) + 1 if len(ys) else int(0.8 * h)
    rows = lin[min(base, h - 1):]
    return np.median(rows.reshape(-1, 3), axis=0) if rows.size else lin[-1].mean(axis=0)


def _wall_pixels(lin, inside, windows) -> np.ndarray:
    """The facade's wall material: inside the matte, not a window, and near the wall's
    median chromaticity (signs, awnings and glass are other materials)."""
    wall = inside.copy()
    for x0, y0, x1, y1 in (() if windows is None else np.asarray(windows, int)):
        wall[max(0, y0):y1, max(0, x0):x1] = False
    rgb = lin + 1e-4
    chroma = rgb / rgb.sum(axis=2, keepdims=True)
    med = np.median(chroma[wall], axis=0) if wall.sum() > 100 else chroma[inside].mean(axis=0)
    # Loose: a shadow is bluer than the lit wall (the sky lights it), and belongs to it.
    return wall & (np.abs(chroma - med).sum(axis=2) < 0.07)


def _light_ratio(lin, lum, wall) -> tuple[float, np.ndarray, np.ndarray]:
    """Brightest over darkest tenth of the wall (a little smoothed: noise is not light),
    and the mean colour of each."""
    if wall.sum() < 200:
        c = lin.reshape(-1, 3).mean(axis=0)
        return TEXTURE_SPREAD, c, c
    sm = cv2.GaussianBlur(lum, (0, 0), 1.0)
    vals = sm[wall]
    lo, hi = np.percentile(vals, [10, 90])
    lit = lin[wall & (sm >= hi)].mean(axis=0)
    shade = lin[wall & (sm <= lo)].mean(axis=0)
    return float(hi / max(lo, 1e-5)), lit, shade


def _shade_blue(lit: np.ndarray, shade: np.ndarray) -> float:
    """How much bluer (blue over red) the wall's shade is than its lit part: 1 where the
    two differ in brightness only."""
    br = lambda c: float(c[2]) / max(float(c[0]), 1e-5)
    return br(shade) / max(br(lit), 1e-5)


def _azimuth(lum, inside, windows) -> tuple[float, str]:
    """Which side the sun is on (see the module's notes); magnitude is rough."""
    if windows is not None and len(windows) >= 3:
        c = []
        for x0, y0, x1, y1 in np.asarray(windows, int):
            w = x1 - x0
            if w < 6 or y1 - y0 < 6:
                continue
            # Thirds of the opening's middle rows (above and below are the head's and the
            # sill's own shadows, which say nothing of left and right).
            s = max(1, w // 3)
            mid = slice(y0 + (y1 - y0) // 5, y1 - (y1 - y0) // 5)
            left = lum[mid, x0:x0 + s].mean()
            right = lum[mid, x1 - s:x1].mean()
            c.append((right - left) / max(right + left, 1e-5))
        if len(c) >= 3 and abs(np.median(c)) > 0.04:
            # The near jamb is dark: dark on the left means the sun is on the left.
            return float(np.clip(-np.median(c) * 400.0, -70, 70)), "window reveals"
    ys, xs = np.nonzero(inside)
    xm = xs.mean()
    left = lum[ys[xs < xm], xs[xs < xm]].mean()
    right = lum[ys[xs >= xm], xs[xs >= xm]].mean()
    return float(np.clip(240.0 * (right - left) / max(left + right, 1e-4), -60, 60)), "facade shading"
