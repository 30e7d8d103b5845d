"""Motion blur between the sub-frames: the moving layer is drawn a few times across the
shutter and summed, which leaves a fast piece drawn as several sharp copies a few pixels
apart (a preview's four sub-frames of a block falling 28 px over the shutter: copies
7 px apart, read by a judge as "see-through flakes" with the shop sign doubled through
them). Each pixel of the summed layer is averaged over a box as long as the gap between
two sub-frames, along its own motion: the copies run together into the continuous smear
a film camera records, and the total coverage does not change.

The motion is the render's own screen-space vectors at mid-shutter. Where no moving piece
was in the pixel at mid-shutter (the ends of the smear), the fastest motion of the tiles
around it stands in (the "tile max" of reconstruction filters, McGuire et al. 2012). A
moving piece's smear does not spread over something standing nearer the camera.
"""

from __future__ import annotations

import cv2
import numpy as np

TILE_PX = 16
MOVING_PX = 0.5          # a pixel whose piece moves less over the shutter counts as still
MAX_TAPS = 16
NEARER_M = 0.25          # a standing surface this much nearer than the moving piece hides its smear


def _tile_max(vec: np.ndarray, depth: np.ndarray, moving: np.ndarray, reach_px: float):
    """For each pixel, the fastest motion among the tiles within reach (H x W x 2) and
    the depth of the piece that moves so (H x W)."""
    H, W = moving.shape
    th, tw = -(-H // TILE_PX), -(-W // TILE_PX)
    pad = lambda a: np.pad(a, ((0, th * TILE_PX - H), (0, tw * TILE_PX - W)) + ((0, 0),) * (a.ndim - 2))
    tiles = lambda a: a.reshape(th, TILE_PX, tw, TILE_PX, -1).transpose(0, 2, 1, 3, 4).reshape(th, tw, TILE_PX ** 2, -1)
    mag = tiles(pad(np.where(moving, np.hypot(vec[..., 0], vec[..., 1]), 0.0))[..., None])[..., 0]
    vz = tiles(pad(np.concatenate([vec, depth[..., None]], axis=2)))
    k = mag.argmax(axis=2)
    tv = np.take_along_axis(vz, k[..., None, None], axis=2)[:, :, 0]
    tm = np.take_along_axis(mag, k[..., None], axis=2)[..., 0]
    for _ in range(max(1, int(np.ceil(reach_px / TILE_PX)))):
        pm, pv = np.pad(tm, 1), np.pad(tv, ((1, 1), (1, 1), (0, 0)))
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                m = pm[dy:dy + th, dx:dx + tw]
                take = m > tm
                tm = np.where(take, m, tm)
                tv = np.where(take[..., None], pv[dy:dy + th, dx:dx + tw], tv)
    full = np.repeat(np.repeat(tv, TILE_PX, 0), TILE_PX, 1)[:H, :W]
    return full[..., :2], full[..., 2]


def fill_between_subframes(col: np.ndarray, aux: np.ndarray, still_aux: np.ndarray, vec: np.ndarray,
                           depth: np.ndarray, vec_cov: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The summed moving layer (col: premultiplied colour, aux: static, coverage, depth
    sum, depth count, each summed over `samples` sub-frames), smeared along each pixel's
    motion over the shutter (`vec`, px, with the moving piece's view `depth`, where
    `vec_cov` > 0) by a box one sub-frame's gap long. `still_aux` is the still layer's
    (static, coverage, depth sum, depth count)."""
    speed = np.hypot(vec[..., 0], vec[..., 1])
    moving = (vec_cov > 0) & (speed >= MOVING_PX)
    if not moving.any():
        return col, aux
    tv, tz = _tile_max(vec, depth, moving, 0.5 * float(speed[moving].max()))
    gap = np.where(moving[..., None], vec, tv).astype(np.float32) / max(samples, 1)
    z = np.where(moving, depth, tz)
    glen = np.hypot(gap[..., 0], gap[..., 1])
    gap[glen < MOVING_PX] = 0.0
    if glen.max() < MOVING_PX:
        return col, aux
    taps = int(min(MAX_TAPS, max(2, np.ceil(glen.max()) + 1)))
    H, W = moving.shape
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    still_z = np.where(still_aux[..., 1] > 0.5, still_aux[..., 2] / np.maximum(still_aux[..., 3], 1e-6), np.inf)
    still_z = still_z.astype(np.float32)
    # Where something standing is nearer than the moving piece, the piece was hidden: the
    # render left nothing there, and that nothing is not part of its smear.
    out_c, out_a = np.zeros_like(col), np.zeros_like(aux)
    n = np.zeros(moving.shape, np.float32)
    for k in range(taps):
        f = (k + 0.5) / taps - 0.5
        mx, my = gx + f * gap[..., 0], gy + f * gap[..., 1]
        seen = cv2.remap(still_z, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE) >= z - NEARER_M
        out_c += cv2.remap(col, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) * seen[..., None]
        out_a += cv2.remap(aux, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) * seen[..., None]
        n += seen
    hidden = (still_z < z - NEARER_M) | (n == 0)
    div = np.maximum(n, 1.0)[..., None]
    return (np.where(hidden[..., None], col, out_c / div).astype(col.dtype),
            np.where(hidden[..., None], aux, out_a / div).astype(aux.dtype))
