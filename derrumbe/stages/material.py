"""The material a facade looks like: what `--material auto` (the default) builds with.

A suggestion from the plate alone, with its reason (`--explain` prints it, the web page
shows it): sky reflected in large smooth panes is a glass curtain wall; warm brick or
render is masonry; so are tall storeys behind punched windows; anything else is concrete.
"""

from __future__ import annotations

import cv2
import numpy as np

# Cues of the material suggestion, set on the seven shared plates (one curtain wall): its
# smooth cool panes cover 47 % of the building with a tone spread (std of value) of 0.19;
# of the six punched-window facades, a pale green painted one is as smooth and cool
# (47 %) but even (0.07), the others are under 26 %. Warm brick or render covers 61-79 %
# of the two masonry-looking ones, under 30 % of the rest.
GLASS_SHARE = 0.35
GLASS_SPREAD = 0.13
WARM_MASONRY = 0.40
# Storey heights: the load-bearing brick and stone buildings of the 19th and early 20th
# century stand 3.5-4.5 m floor to floor; post-war concrete frame and panel housing about
# 2.7-3.2 m. A facade of punched windows (not a curtain wall) with storeys this tall is
# taken for masonry, plastered or not (five of the seven shared plates' painted facades
# are such buildings; by colour alone they were "concrete").
MASONRY_STOREY_M = 3.6


def glass_like(srgb: np.ndarray) -> np.ndarray:
    """Pixels that look like glass in a facade: smooth (no brick, ornament or texture at
    a few pixels) and cool-coloured (reflected sky, tinted panes). A bool mask."""
    img = srgb.astype(np.float32) / 255.0
    lap = np.abs(cv2.Laplacian(cv2.GaussianBlur(img.mean(axis=2), (0, 0), 1.0), cv2.CV_32F))
    return (cv2.GaussianBlur(lap, (0, 0), 3.0) < 0.012) & (img[..., 2] >= img[..., 0] - 0.02)


def suggest_material(srgb: np.ndarray, building: np.ndarray, storey_m: float | None = None) -> tuple[str, str]:
    """The preset the facade looks like: sky reflected in large, smooth panes is glass;
    warm brick or render is masonry, as are storeys of MASONRY_STOREY_M or more (the
    camera stage's estimate, when given); anything else is concrete. A suggestion with
    its reason, for the artist to take or change."""
    inside = building > 0.5
    if inside.sum() < 400:
        return "concrete", "the building is too small in the frame to judge; concrete is the default"
    val = srgb.astype(np.float32).max(axis=2) / 255.0
    # Glass: most of the facade smooth and cool-coloured (panes, not brick or ornament),
    # and those panes both bright (reflected sky) and dark (the rooms behind): a smooth,
    # pale painted wall is as smooth and cool but one even tone.
    panes = glass_like(srgb) & inside
    share = float(panes[inside].mean())
    spread = float(val[panes].std()) if panes.sum() > 100 else 0.0
    hsv = cv2.cvtColor(srgb, cv2.COLOR_RGB2HSV)
    hue, sat = hsv[..., 0].astype(np.float32) * 2.0, hsv[..., 1].astype(np.float32) / 255.0
    warm = float((((hue < 40) | (hue > 340)) & (sat > 0.18))[inside].mean())
    if share >= GLASS_SHARE and spread >= GLASS_SPREAD:
        return "glass", (f"{share:.0%} of the facade is smooth cool panes, light and dark (reflected sky and rooms "
                         f"behind): a glass curtain wall")
    if warm >= WARM_MASONRY:
        return "masonry", f"{warm:.0%} of the facade is warm brick or render: masonry"
    if storey_m is not None and storey_m >= MASONRY_STOREY_M:
        return "masonry", (f"storeys of {storey_m:.1f} m behind punched windows: a pre-war load-bearing "
                           f"masonry building")
    return "concrete", (f"no glass wall, warm brick or tall storeys seen ({share:.0%} panes, {warm:.0%} brick): "
                        f"concrete")
