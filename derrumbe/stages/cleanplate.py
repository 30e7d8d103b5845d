"""Clean-plate stage: what stands behind the building once it is gone.

Built in layers, back to front, all in scene-linear light, every one from the plate's
own pixels (nothing is mirrored about a seam in the plate: a wall mirrored beside its
own image shows its downpipes twice):
1. sky: a smooth surface fitted to the plate's sky (robust to wires), bent row by row to
   the sky beside the gap so it meets it without a seam, never brighter than the
   brightest sky pixel the plate shows; with no sky in frame, one made from the plate's
   white balance;
2. distant blocks along the horizon, 120-300 m away: the plate's own upper floors shrunk
   to that distance, each block a different piece of them and a slightly different
   colour, hazed toward the sky (aerial perspective);
3. the ground behind the building (a courtyard, the street beyond), continued from the
   pavement in front of it, compressed in perspective toward the horizon;
4. what stands behind the building: where it runs off the frame's top (nothing behind it
   shows), the wings round the block's courtyards, each its own depth, height, colour
   and roof, their walls the facade's own photographed upper floors continued
   (photo_wall.py); a taller block further back that shows above its roof, continued
   down behind it by quilting its own wall, darkening toward the ground;
5. a neighbour that touched the building shows its party wall, seen in perspective from
   its corner back to the depth of the plot, textured from the neighbour's own wall.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import median_filter

from derrumbe.colour import luminance, rec709_to_working, toward_daylight, working_to_rec709
from derrumbe.stages.camera import Camera
from derrumbe.stages.keystone import lean_scale
from derrumbe.stages.photo_wall import Cells, facade_cells, photo_wall

PLOT_DEPTH_M = 14.0     # a city plot's depth: how far a party wall runs back
STREAK_M = (0.08, 1.2, 3.0)  # a rain streak's width and length down a bare wall, and the runs they come in (m, the
                             # fields' spreads)
SIDE_LIGHT = (0.72, 0.95)  # a side wall's light against a front's, under a clear sky (out of its sun) and an overcast one
NEIGHBOUR_MIN_PX = 30    # a neighbour strip narrower than this (frame pixels) is too little of its wall to copy
BEHIND_GAP_M = 15.0     # a building behind stands across a courtyard this deep
BEHIND_MIN_M = 4.0      # narrower than this above the roof, it is a chimney, a mast or a dish, not a building
CUT_TOP = 0.5           # the building runs off the frame's top over this share of its columns: its roof is unseen
COURTYARD_GREY = 0.35  # how far a courtyard wall's render is greyed from the street front's colour
COURTYARD_LIGHT = (0.6, 0.8)   # a courtyard wall's light against the street front's: walled in, it sees less sky
STOREY_M = 3.2
SKY_DUV = 0.015           # how far above the Planckian locus (toward green) a plate's sky may be (CIE 1960 uv)
SKY_SPAN = 0.5           # sky seen over less of the width than this: its fit is held level across it
SKY_BAND = 0.08          # the plate's sky beside the gap the fill is matched to (share of the width)
HALO_PX = 1 / 160        # ... leaving out this share of the width next to the building: its halo
WIRE_DARK = 0.9          # ... and its pixels darker than this share of its bright ones: wires
UNSEEN_OVERCAST = 0.6    # a sky the plate does not show is made at least this overcast (0 clear, 1 grey)
SYNTH_SKY_MAX = 0.7      # linear: sRGB 218, a bright overcast sky that is not paper white


def make_cleanplate(lin: np.ndarray, building: np.ndarray, holdout: np.ndarray, skyness: np.ndarray,
                    cam: Camera, metres_px: float, seed: int, storey_m: float = STOREY_M,
                    ground_floor_m: float | None = None, overcast: float = 1.0,
                    height_m: float | None = None, windows=None,
                    keystone: tuple[float, float] | None = None) -> np.ndarray:
    """The plate with the building replaced by what plausibly stands behind it.
    metres_px: pixels per metre at the building's facade; storey_m, ground_floor_m: the
    building's storeys, whose floors leave their marks on a neighbour's party wall;
    overcast: how overcast the plate's light is (0: a clear sky, 1: overcast), for a
    plate that shows no sky; height_m: the building's height, roof included, which its
    rear wing across the courtyard shares (none drawn without it); windows: the facade's
    window boxes (K x 4, frame pixels), whose glass the rear wing's windows show;
    keystone: (the verticals' vanishing row, the building's base row) in frame pixels for
    a camera tilted up: what is made up here leans as the plate's verticals do."""
    inside = building > 0.5
    if not inside.any():
        return lin.astype(np.float32).copy()
    rng = np.random.default_rng(seed)
    sky_px = (skyness > 0.5) & ~inside & (holdout < 0.5)
    depth = cam.f_px / max(metres_px, 1e-6)
    fill = _sky_layer(lin, inside, sky_px, cam, overcast, rng)
    cells = facade_cells(lin, building, holdout, storey_m * metres_px,
                         (ground_floor_m or storey_m) * metres_px, keystone, cam.cx)
    lean = (lambda layer: _lean(layer, cam.cx, *keystone)) if keystone else (lambda layer: layer)
    for layer in (lean(_distant_blocks(lin, inside, cam, depth, fill, rng)),
                  _ground(lin, inside, holdout, cam),
                  # (its own random stream: the layers after it come out as they did without it)
                  lean(_courtyard(lin, inside, cam, depth, height_m, storey_m, fill, np.random.default_rng((seed, 4)),
                                  _window_crops(lin, inside, holdout, windows), cells)),
                  _behind(lin, inside, sky_px, holdout, cam, depth, rng),
                  lean(_party_walls(lin, inside, sky_px, holdout, cam, depth, rng,
                                    (storey_m, ground_floor_m if ground_floor_m else storey_m), overcast))):
        if layer is not None:
            col, a = layer
            fill = fill * (1 - a[..., None]) + col * a[..., None]
    m = building[..., None]
    return (lin * (1 - m) + fill * m).astype(np.float32)


def _lean(layer, cx: float, vp_row: float, base_row: float):
    """A layer drawn for a level camera, its verticals leaned to meet where the plate's do
    (a camera tilted up: img_270's courtyard wings stood straight under its converging
    facades). Each row is scaled about the principal point's column by how far it lies
    from the vanishing row against the base row's distance, so the base row is kept and
    a vertical edge runs toward (cx, vp_row); a pure tilt puts the vanishing point there.
    What would come from outside the frame is left empty."""
    if layer is None:
        return None
    col, alpha = layer
    h, w = alpha.shape
    rows = np.arange(h, dtype=np.float32)[:, None]
    k = lean_scale(h, vp_row, base_row)
    map_x = (cx + (np.arange(w, dtype=np.float32)[None, :] - cx) * k).astype(np.float32)
    map_y = np.broadcast_to(rows, (h, w)).astype(np.float32)
    warp = lambda im: cv2.remap(im, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warp(col), warp(alpha)


# ---- 1. sky ----------------------------------------------------------------------------

def _sky_layer(lin, inside, sky_px, cam: Camera, overcast: float, rng) -> np.ndarray:
    h, w = inside.shape
    if sky_px.sum() < 0.01 * h * w:
        # The plate's light only hints at a sky it does not show (a facade's contrast read
        # as sun on wet, overcast img_100), and a deep blue guessed wrong reads as another
        # day: the sky made is at least UNSEEN_OVERCAST grey (won a blind A/B 3 to 0 on
        # img_100, img_288 and sunny img_190).
        return _synth_sky(lin, inside, cam, max(overcast, UNSEEN_OVERCAST), rng)
    ys, xs = np.nonzero(sky_px)
    vals = lin[ys, xs]
    model = _fit_surface(ys, xs, vals, (h, w))
    # Matched to the open sky, not to the rim of sky around a roof or a wire (lighter in
    # the photo's halo: the rows at a neighbour's roofline drew a light band across the
    # revealed sky, img_270).
    open_sky = cv2.erode(sky_px.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    model = _match_rows(lin, inside, open_sky if open_sky.sum() > 0.5 * sky_px.sum() else sky_px, model)
    # The sky's own range: the fill is never brighter than the brightest sky pixel the
    # plate shows, nor darker than its darkest (wires and birds aside).
    model = np.clip(model, np.percentile(vals, 1, axis=0), vals.max(axis=0))
    return _daylight_rows(model)


def _daylight_rows(model: np.ndarray) -> np.ndarray:
    """The sky's colour made daylight row by row, its brightness kept: a clear sky is
    bluer high and whiter low, but a sky that turns from blue to pink across a row, or is
    lavender, is sky seen in glass (img_263's curtain wall)."""
    lum = luminance(model)
    rows = model.mean(axis=1)
    # (skylight lies above the Planckian locus, toward green: a clear sky's Rayleigh blue
    # is not a black body's, and one held on the locus came out lavender)
    tone = np.stack([toward_daylight(r, (6500.0, 25000.0), SKY_DUV, -0.003)[0] for r in rows])
    tone = tone / np.maximum(luminance(tone[:, None])[:, 0], 1e-6)[:, None]
    return (lum[..., None] * tone[:, None, :]).astype(np.float32)


def _fit_surface(ys, xs, vals, shape) -> np.ndarray:
    """A quadratic in x and y through the sky pixels, refitted without the outliers
    (wires, birds, lamps) and held constant beyond the rows and columns it saw."""
    h, w = shape
    sel = np.random.default_rng(0).permutation(len(ys))[:20000]
    y, x, v = ys[sel] / h, xs[sel] / w, vals[sel]

    # A strip of sky at one side cannot tell how the sky changes across the frame: its
    # slope, carried across the gap, brightened img_270's revealed sky by 5-8 %.
    across = (x.max() - x.min()) >= SKY_SPAN

    def basis(yy, xx):
        if not across:
            return np.stack([np.ones_like(yy), yy, yy * yy], -1)
        return np.stack([np.ones_like(yy), xx, yy, xx * xx, xx * yy, yy * yy], -1)
    keep = np.ones(len(y), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(basis(y[keep], x[keep]), v[keep], rcond=None)
        res = np.abs(v - basis(y, x) @ coef).sum(1)
        keep = res < 3 * np.median(res) + 1e-6
    yy = np.clip(np.arange(h) / h, y.min(), y.max())[:, None] * np.ones((1, w))
    xx = np.ones((h, 1)) * np.clip(np.arange(w) / w, x.min(), x.max())[None, :]
    surf = (basis(yy, xx) @ coef).astype(np.float32)
    # Held constant past the sky it saw, its gradient stops dead at the last row of sky:
    # the eye reads that kink as a light band across the revealed sky (img_270). Eased
    # over a tenth of the frame.
    return cv2.GaussianBlur(surf, (0, 0), sigmaX=max(1.0, w / 10), sigmaY=max(1.0, h / 10),
                            borderType=cv2.BORDER_REPLICATE)


def _match_rows(lin, inside, sky_px, model):
    """The surface bent, row by row, to the real sky left and right of the gap (its
    residual on each side, linear across), so the fill meets the plate's sky without a
    seam. The sky beside the gap is read clear of the roof's halo (the rim next to a roof
    is lighter: matched to it, img_270's revealed sky came out 5-8 % too bright) and over a
    band wide enough that a wire crossing it is outvoted; each side's readings are then
    taken as a running median down the rows (one row's reading pulled by a wire crossing
    the band drew that wire as a straight line right across the revealed sky, img_270's
    'straight wires'). Rows with no sky beside the gap keep the nearest reading, let go
    over an eighth of the frame (dropped at once, or faded over a few rows, it drew a step
    or a light band across the sky where the plate's sky ended behind a neighbour, img_270)."""
    h, w = inside.shape
    band, skip = max(8, int(SKY_BAND * w)), max(2, int(round(HALO_PX * w)))
    resid = lin - model
    rows = np.nonzero(inside.any(axis=1))[0]
    sides = np.full((2, h, 3), np.nan, np.float32)
    ends = np.zeros((h, 2), np.float32)
    for y in rows:
        xs = np.nonzero(inside[y])[0]
        ends[y] = xs.min(), xs.max()
        for i, (a, b) in enumerate(((max(0, xs.min() - skip - band), max(0, xs.min() - skip)),
                                    (min(w, xs.max() + 1 + skip), min(w, xs.max() + 1 + skip + band)))):
            sel = sky_px[y, a:b]
            if sel.sum() > max(3, 0.25 * (b - a)):
                # Wires are sky to the detector but darker than it: left out.
                lum = luminance(lin[y, a:b][sel])
                clear = lum >= WIRE_DARK * np.percentile(lum, 90)
                sides[i, y] = np.median(resid[y, a:b][sel][clear], axis=0)
    if np.isnan(sides).all():
        return model
    k = max(2, h // 150)
    sides = np.stack([_running_median(s, k) for s in sides])
    # One side missing: the other's reading across the whole row.
    sides = np.where(np.isnan(sides), sides[::-1], sides)
    lv, rv, fade = _held_and_let_go(sides[0], sides[1], max(4.0, h / 8))
    t = np.clip((np.arange(w, dtype=np.float32)[None, :] - ends[:, :1]) / np.maximum(1, ends[:, 1:] - ends[:, :1]), 0, 1)
    corr = lv[:, None, :] * (1 - t[..., None]) + rv[:, None, :] * t[..., None]
    return (model + corr * fade[:, None, None]).astype(np.float32)


def _running_median(vals: np.ndarray, k: int) -> np.ndarray:
    """Each measured row (not NaN) the median of the measured rows within k of it."""
    out = vals.copy()
    have = np.nonzero(~np.isnan(vals[:, 0]))[0]
    for y in have:
        near = have[np.abs(have - y) <= k]
        out[y] = np.median(vals[near], axis=0)
    return out


def _held_and_let_go(lv: np.ndarray, rv: np.ndarray, reach: float) -> tuple:
    """Rows without a reading take the nearest row's that has one, weighted down to
    nothing over reach rows (smoothstep), then the whole lightly blurred down the rows so
    no reading meets its neighbour in a step. Returns both sides and the weight."""
    h = len(lv)
    have = ~np.isnan(lv[:, 0])
    idx = np.nonzero(have)[0]
    near = idx[np.clip(np.searchsorted(idx, np.arange(h)), 0, len(idx) - 1)]
    prev = idx[np.clip(np.searchsorted(idx, np.arange(h)) - 1, 0, len(idx) - 1)]
    near = np.where(np.abs(prev - np.arange(h)) < np.abs(near - np.arange(h)), prev, near)
    d = np.abs(near - np.arange(h)) / reach
    fade = np.where(have, 1.0, 1 - np.clip(d, 0, 1) ** 2 * (3 - 2 * np.clip(d, 0, 1))).astype(np.float32)
    sigma = max(1.0, reach / 40)
    blur = lambda a: cv2.GaussianBlur(a[near].reshape(h, 1, 3), (1, 0), sigmaX=0.1, sigmaY=sigma,
                                      borderType=cv2.BORDER_REPLICATE)[:, 0]
    return blur(lv), blur(rv), fade


def _synth_sky(lin: np.ndarray, inside: np.ndarray, cam: Camera, overcast: float, rng) -> np.ndarray:
    """A sky for a plate that shows none, lit as the facade was: its level from the wall's,
    its gradation and colour from the kind of sky (overcast or clear), a faint cloud
    texture so it is not a flat card.

    Overcast: the CIE standard overcast sky, L(el) = Lz (1 + 2 sin el) / 3, lights a
    vertical wall with about Lz (0.4 of the horizontal 7 pi / 9 Lz, plus the street's
    reflection), so a wall of albedo 0.35 has 0.13 Lz: the sky at 20 degrees is about
    4.4 times the wall's luminance, and brighter upward. A clear sky is about twice a
    sun-lit wall and brighter and whiter toward the horizon. Never brighter than the
    brightest thing the plate shows, and held below white (SYNTH_SKY_MAX): through thin
    dust a blown-out sky reads as a hole in the frame."""
    h, w = lin.shape[:2]
    lum = luminance(lin)
    # The wall itself, not its windows and shade: the brighter part of the facade.
    wall = float(np.percentile(lum[inside] if inside.any() else lum, 65))
    cap = float(np.clip(0.9 * np.percentile(lum, 99.8), 0.2, SYNTH_SKY_MAX))
    el = np.arctan2(cam.cy - (np.arange(h, dtype=np.float32) + 0.5), cam.f_px)
    s = np.sin(np.clip(el, 0.0, None))
    grey = (1 + 2 * s) / (1 + 2 * np.sin(np.radians(20.0)))
    clear = (1.25 - 0.6 * s) / (1.25 - 0.6 * np.sin(np.radians(20.0)))
    level = wall * (overcast * 4.4 * grey + (1 - overcast) * 2.0 * clear)
    # Overcast light is neutral in the plate's white balance; a clear sky is whiter low and
    # deeper blue high (Rec.709 colours read off clear-sky photographs). The plate's own
    # pixels cannot tell its colour: without sky in frame they are all facade.
    low, high = (rec709_to_working(np.array(c, np.float32)) for c in ((0.62, 0.68, 0.76), (0.25, 0.38, 0.65)))
    low, high = (c / float(luminance(c[None, None])[0, 0]) for c in (low, high))
    blue = low[None] + (high - low)[None] * np.clip(s / 0.6, 0.0, 1.0)[:, None]
    tone = overcast * np.ones((1, 3), np.float32) + (1 - overcast) * blue                 # rows x 3
    # Held below the cap by its brightest channel, so a blue sky keeps its blue (clipped
    # channel by channel it went a flat pastel cyan: img_190).
    sky = tone[:, None, :] * np.minimum(level, cap / tone.max(axis=1))[:, None, None]
    # Cloud: soft low-frequency variation of a few percent (more under cloud cover).
    def octave(d):
        o = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(w / d, 1.0))
        return o / max(float(o.std()), 1e-6)
    n = octave(5) + 0.5 * octave(15) + 0.25 * octave(45)
    n = n / max(float(n.std()), 1e-6)
    sky = sky * (1 + (0.015 + 0.035 * overcast) * n)[..., None]
    return (sky * np.minimum(1.0, cap / np.maximum(sky.max(axis=2, keepdims=True), 1e-6))).astype(np.float32)


# ---- 2. distant blocks -----------------------------------------------------------------

def _facade_texture(lin, inside) -> np.ndarray | None:
    """The building's upper floors (regular windows; shop fronts and people excluded):
    what a city block far away looks like, once shrunk."""
    ys, xs = np.nonzero(inside)
    y0, y1 = ys.min(), ys.min() + int(0.65 * (ys.max() - ys.min()))
    x0, x1 = xs.min(), xs.max() + 1
    if y1 - y0 < 8 or x1 - x0 < 8:
        return None
    return lin[y0:y1, x0:x1]


def _distant_blocks(lin, inside, cam: Camera, depth: float, sky: np.ndarray, rng):
    """A row of blocks 120-300 m away along the horizon, each a piece of the plate's own
    facade shrunk to its distance, its height and colour varied, hazed toward the sky."""
    h, w = inside.shape
    tex = _facade_texture(lin, inside)
    if tex is None or cam.cy <= 0.15 * h:
        return None                         # the horizon at or above the frame's top: none show
    col = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    x = int(rng.integers(-40, 0))
    while x < w:
        dist = rng.uniform(120, 300)
        s = depth / dist                       # the facade's pixels shrink by this at that distance
        bw = int(rng.uniform(14, 34) * cam.f_px / dist)
        top = int(cam.cy - cam.f_px * (rng.uniform(9, 26) - cam.eye_m) / dist)
        bottom = int(np.ceil(cam.cy + cam.f_px * cam.eye_m / dist)) + 1
        t0, t1, c0, c1 = max(0, top), min(h, bottom), max(0, x), min(w, x + bw)
        if t1 > t0 and c1 > c0 and s > 0:
            small = cv2.resize(tex, (max(2, int(tex.shape[1] * s)), max(2, int(tex.shape[0] * s))),
                               interpolation=cv2.INTER_AREA)
            patch = _tile(small, t1 - t0, c1 - c0, rng)
            # Greyed: at that distance the eye does not recognise the building in front
            # (img_140's green facade, copied along the horizon, read as a card of it).
            patch = 0.35 * patch + 0.65 * luminance(patch)[..., None]
            haze = 1 - np.exp(-dist / 220.0)
            tint = rng.uniform(0.8, 1.1) * rng.uniform(0.93, 1.07, 3)
            col[t0:t1, c0:c1] = patch * tint * (1 - haze) + sky[t0:t1, c0:c1] * haze
            alpha[t0:t1, c0:c1] = 1.0
            _roof(col, alpha, top, c0, c1, sky, haze, cam.f_px / dist, rng)
        x += max(bw, 2)
    return col, alpha


def _roof(col, alpha, top: int, c0: int, c1: int, sky, haze: float, px_per_m: float, rng,
          pitched: float = 0.6, dark: np.ndarray | None = None, stack: np.ndarray | None = None) -> None:
    """What stands on a distant block's top: a pitched roof or a flat one with chimney
    stacks, dark metal or slate in the haze (a row of facades cut off straight along
    their tops read as a flat card against the sky)."""
    h = col.shape[0]
    bw = c1 - c0
    if bw < 3 or top <= 1:
        return
    dark = np.full(3, rng.uniform(0.05, 0.12), np.float32) if dark is None else dark
    if rng.random() < pitched:
        # A hipped roof 1.2-2.5 m high (old city roofs are low: at 2-4 m the wings wore
        # pyramids, a toy town, img_270), its slopes a fifth to a third of the block's width.
        rise = max(1.0, rng.uniform(1.2, 2.5) * px_per_m)
        u = (np.arange(bw) + 0.5) / bw
        ridge = top - np.round(rise * np.clip((1 - np.abs(2 * u - 1)) / rng.uniform(0.4, 0.7), 0, 1)).astype(int)
    else:
        ridge = np.full(bw, top)
    # Chimney stacks, rendered or brick (the wall's colour, darker), of their own sizes.
    roof = ridge.copy()                 # the roof's own line: a stack stands up from it
    stacks = np.zeros(bw, int)
    for k in range(int(rng.integers(0 if stack is not None else 1, 4))):
        cx, cw = int(rng.integers(0, bw)), max(1, int(round(rng.uniform(0.5, 1.6) * px_per_m)))
        tall = top - max(1, int(round(rng.uniform(1.0, 3.0) * px_per_m)))
        ridge[cx:cx + cw] = np.minimum(ridge[cx:cx + cw], tall)
        stacks[cx:cx + cw] = k + 1
    # The roof's texture draws from its own generator, fixed by where it stands: the
    # layout of the wings (the shared rng) stays what it was.
    local = np.random.default_rng([abs(int(top)), int(c0), int(c1)])
    shades = np.concatenate([[1.0], local.uniform(0.75, 1.0, 3)])
    r0 = int(max(0, ridge.min()))
    if r0 >= min(h, top):
        return
    rows = np.arange(r0, min(h, top))[:, None]
    cols = np.arange(bw)[None, :]
    on = rows >= ridge[None, :]
    which = np.where(rows < roof[None, :], stacks[None, :], 0)     # the stack a pixel shows (0: roof)
    tone = _roof_tone(rows, cols, ridge, roof, top, which, px_per_m, local)
    stack_col = stack if stack is not None else dark
    c = np.where((which > 0)[..., None], stack_col[None, None, :], dark[None, None, :]) * tone[..., None]
    c = c * shades.astype(np.float32)[which][..., None]
    region = col[r0:min(h, top), c0:c1]
    region[on] = (c * (1 - haze) + sky[r0:min(h, top), c0:c1] * haze)[on]
    alpha[r0:min(h, top), c0:c1][on] = 1.0


SEAM_M = 0.6            # a sheet-metal roof's standing seams are this far apart


def _roof_tone(rows, cols, ridge, roof, top: int, stacks, px_per_m: float, rng) -> np.ndarray:
    """A roof's light as a multiplier over its colour (drawn flat, the wings' roofs read as
    grey cut-outs): sheets between standing seams a little lighter or darker each, rust
    and patina mottling, the slope lighter toward the ridge (it sees more of the sky),
    the ridge's lit line, and the gutter's dark line along the eave; a chimney stack lit
    on one side and in shade on the other, under a darker cap. ridge: the silhouette's
    top row per column (stacks included), roof: the roof's own; stacks: (rows, cols), the
    stack a pixel belongs to (0: none)."""
    bw = cols.shape[1]
    seam_px = max(SEAM_M * px_per_m, 1.5)
    sheet = np.floor(cols / seam_px)
    m = 1.0 + 0.16 * (_hash2(sheet, np.full_like(sheet, 3.0)) - 0.5)
    m = m * np.where((cols % seam_px) < 0.6, 1.3, 1.0)
    mottle = cv2.GaussianBlur(rng.normal(0, 1, (rows.shape[0], bw)).astype(np.float32), (0, 0),
                              max(1.0, 1.5 * px_per_m))
    m = m * (1.0 + 0.2 * mottle / max(float(mottle.std()), 1e-6))
    span = np.maximum(top - roof[None, :], 1)
    m = m * (1.3 - 0.5 * np.clip((rows - roof[None, :]) / span, 0, 1))
    m = np.where(np.abs(rows - roof[None, :]) < 1, m * 1.35, m)
    gutter = max(1.0, 0.25 * px_per_m)
    m = np.where(top - rows <= gutter, m * 0.5, m)
    # Stacks: lit left half, shaded right half, a dark cap 0.25 m deep.
    st = stacks > 0
    if st.any():
        col_stack = stacks.max(axis=0)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], col_stack, [0]])))
        left = np.zeros(bw, bool)
        for a, b in zip(edges[::2], edges[1::2]):
            left[a:a + max(1, (b - a) // 2)] = True
        side = np.where(left, 1.1, 0.72)[None, :]
        cap = (rows - ridge[None, :]) < max(1.0, 0.25 * px_per_m)
        m = np.where(st, side * np.where(cap, 0.6, 1.0) * (1.0 + 0.05 * mottle), m)
    return np.clip(m, 0.3, 1.8).astype(np.float32)


def _tile(src: np.ndarray, h: int, w: int, rng) -> np.ndarray:
    """An h x w piece of src repeated by translation from a random offset."""
    sh, sw = src.shape[:2]
    ry = (np.arange(h) + rng.integers(0, sh)) % sh
    rx = (np.arange(w) + rng.integers(0, sw)) % sw
    return src[ry][:, rx]


# ---- 3. ground -------------------------------------------------------------------------

def _ground(lin, inside, holdout, cam: Camera):
    """The ground behind the building, from the horizon down to its base: the pavement in
    front, moved up and squeezed toward the vanishing point as the distance grows."""
    h, w = inside.shape
    base = int(np.nonzero(inside.any(axis=1))[0].max()) + 1
    g0 = int(np.clip(np.floor(cam.cy) + 1, 0, h))
    if g0 >= base:
        return None
    n_src = min(h - base - 1, 2 * (base - g0) + 8)
    col = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    if n_src < max(4, (base - g0) // 2):
        # Too little pavement shows to move back: its mean colour, from the frame's bottom.
        col[g0:base] = lin[-max(1, h // 20):].mean(axis=(0, 1))
    else:
        src = lin[base + 1:base + 1 + n_src].astype(np.float32)
        hole = (holdout[base + 1:base + 1 + n_src] > 0.3).astype(np.uint8)
        if hole.any():
            # Cars and people on the pavement are not ground.
            fill = np.median(src[hole == 0], axis=0) if (hole == 0).any() else src.mean((0, 1))
            src = np.where(hole[..., None] > 0, fill, src)
        # Each row takes a source row a fixed step nearer: the pavement moved back and
        # squeezed vertically as perspective does (translation, no reflection).
        sy = np.linspace(0, n_src - 1, base - g0).astype(np.float32)
        map_y = np.broadcast_to(sy[:, None], (base - g0, w)).astype(np.float32)
        map_x = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], map_y.shape).astype(np.float32)
        col[g0:base] = cv2.remap(src, map_x, map_y, cv2.INTER_AREA if n_src > base - g0 else cv2.INTER_LINEAR)
    alpha[g0:base] = 1.0
    return col, alpha


# ---- 4. what stands behind -------------------------------------------------------------

def _behind(lin, inside, sky_px, holdout, cam: Camera, depth: float, rng):
    """Buildings further back that show above the roof continue down behind it: each
    stretch of columns where one stands above the roof line (wider than a chimney or a
    pole) is grown down to its base across the courtyard by patch-based synthesis from
    its own visible wall (quilting: each block the best fit of its neighbours among
    blocks of the wall, never a copy of one band, so no stripes and no mirror image),
    darkening toward the ground."""
    h, w = inside.shape
    cols = np.nonzero(inside.any(axis=0))[0]
    top = inside[:, cols].argmax(axis=0)
    solid = ~sky_px & ~inside & (holdout < 0.5)
    need = max(6, int(0.03 * h))
    run = np.zeros(len(cols), np.int64)
    for i, (x, t) in enumerate(zip(cols, top)):
        above = solid[:t, x][::-1]
        run[i] = len(above) if above.all() else int(np.argmin(above))
    # A building behind is metres wide: a rooftop dish's mast and the haze round it,
    # 20 px at the demo's preview, was grown down to the street as a column of dishes.
    far = depth + BEHIND_GAP_M
    wide = max(9, int(0.03 * w), int(BEHIND_MIN_M * cam.f_px / far)) | 1
    stands = cv2.morphologyEx((run >= need).astype(np.uint8)[None], cv2.MORPH_OPEN, np.ones((1, wide), np.uint8))[0] > 0
    if not stands.any():
        return None
    base = int(min(h, np.ceil(cam.cy + cam.f_px * cam.eye_m / far) + 1))
    margin = max(2, int(0.01 * h))          # the roof's edge stays out of the exemplar
    block = int(np.clip(0.05 * h, 12, 48))
    # Wires crossing the walls behind would be copied all over: closed out first.
    walls = cv2.morphologyEx(lin, cv2.MORPH_CLOSE, np.ones((5, 1), np.uint8))
    col = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    edges = np.flatnonzero(np.diff(np.r_[0, stands.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        xa, xb = int(cols[a]), int(cols[b - 1]) + 1
        lim = top[a:b] - margin
        y0 = int(lim.min())
        if base <= y0:
            continue
        ex_top = int(max(0, np.min(lim - run[a:b] + margin)))
        ex = walls[ex_top:int(lim.max()), xa:xb]
        ok = solid[ex_top:int(lim.max()), xa:xb] & (np.arange(ex_top, int(lim.max()))[:, None] < lim[None, :])
        known = np.zeros((base - y0, xb - xa), bool)
        canvas = np.zeros((base - y0, xb - xa, 3), np.float32)
        above = np.arange(y0, base)[:, None] < lim[None, :]
        known[above] = True
        canvas[above] = walls[y0:base, xa:xb][above]
        grown = _quilt(ex, ok, canvas, known, block, rng)
        if grown is None:
            continue
        ys = np.arange(y0, base)
        shade = 1 - 0.35 * np.clip((ys - y0) / max(1, base - y0), 0, 1) ** 1.5
        below = ~above & (ys[:, None] >= (lim + margin)[None, :])
        col[y0:base, xa:xb] = np.where(below[..., None], grown * shade[:, None, None], col[y0:base, xa:xb])
        alpha[y0:base, xa:xb] = np.maximum(alpha[y0:base, xa:xb], below)
    return col, cv2.GaussianBlur(alpha, (3, 1), 0)


def _courtyard(lin, inside, cam: Camera, depth: float, height_m: float | None, storey_m: float, sky: np.ndarray,
               rng, panes: list | None = None, cells: Cells | None = None):
    """The buildings round the block's courtyards, drawn only where the building runs off
    the frame's top: there the photo cannot show what stands behind it, and an old city
    block is built round courtyards (an empty sky over the pile read as a building
    standing alone in a field, img_190). A row of wings side by side round one courtyard
    depth (12-35 m back, each wing within WING_JITTER_M of it), each its own height (in
    whole storeys, about the front's), render colour (the facade's and the plate's
    neighbours', greyed), light, windows or none (a blank
    fire wall), roof (pitched metal or flat with stacks), hazed by its distance. (One wing
    across the whole gap, the same in every shot, read as a placeholder box; the facade's
    own upper floors shrunk read as a copy of the building, its signs included.)"""
    h, w = inside.shape
    cols = np.nonzero(inside.any(axis=0))[0]
    tex = _facade_texture(lin, inside)
    if height_m is None or tex is None or inside[0, cols].mean() < CUT_TOP:
        return None
    plain = _plain_wall(tex)
    colours = _wall_colours(lin, inside, plain)
    col = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    x = float(rng.uniform(-0.3, 0.0)) * w
    # One courtyard depth for the row, each wing near it: wings drawn anywhere from 12 to
    # 35 m back projected up to three times apart in height, and a near, narrow one stood
    # as a tower over the far ones, a castle's skyline behind the pile (img_270 from 40 %).
    yard = depth + rng.uniform(*WING_GAP_M)
    while x < w:
        far = float(np.clip(yard + rng.uniform(-WING_JITTER_M, WING_JITTER_M), depth + WING_GAP_M[0],
                            depth + WING_GAP_M[1]))
        c0 = int(round(x))
        x += rng.uniform(*WING_WIDTH_M) * cam.f_px / far
        c1 = int(round(x))
        if c1 <= max(c0, 0):
            continue
        _wing(col, alpha, lin.shape, max(c0, 0), min(c1, w), cam, far, depth / far, height_m, storey_m, plain,
              colours[int(rng.integers(len(colours)))], sky, rng, panes, cells)
    return col, alpha


WINDOW_M = (1.3, 2.1, 0.85)    # a plain window's width, height, and its sill over the floor (each wing's own, +-15 %)
BAY_M = (2.8, 3.6)             # the spacing of the windows along a wall
WING_GAP_M = (12.0, 35.0)      # how far behind the front each wing round the courtyards stands
WING_WIDTH_M = (9.0, 24.0)     # its width
WING_JITTER_M = 3.0            # how far each wing stands from the row's courtyard depth, either way
FIREWALL_MAX_M = 8.0           # a wing with no windows shows at most this much of itself
WALL_SRGB = np.array([(208, 172, 118), (204, 156, 146), (184, 182, 174), (216, 202, 172), (168, 180, 156),
                      (176, 184, 194), (150, 104, 86)], np.float32)     # old city renders: ochre, pink, grey,
                                                                         # cream, green, blue, brick
OWN_HUE = 0.03                 # a colour whose chromaticity (r, g, b over their sum) is this close is the facade's
ROOF_LIN = np.array([(0.05, 0.05, 0.055), (0.10, 0.045, 0.03), (0.04, 0.07, 0.055), (0.09, 0.09, 0.09)], np.float32)


def _wall_colours(lin, inside, plain) -> list:
    """Colours a wing's render may take (linear, at the facade's brightness): the plate's
    neighbours' walls (beside the building, above the street) and old city render
    colours, all greyed COURTYARD_GREY of the way; none the facade's own hue (a wing in
    it merged with the falling front wall, which read as see-through, img_181 at 40 %,
    and as a copy of the building, img_270)."""
    ref = np.median(plain.reshape(-1, 3), axis=0)
    lum = float(luminance(ref))
    out = []
    rows = np.nonzero(inside.any(axis=1))[0]
    cols = np.nonzero(inside.any(axis=0))[0]
    band = lin[rows.min():rows.min() + max(1, int(0.6 * len(rows)))]
    for part in (band[:, :max(1, int(cols.min()))], band[:, int(cols.max()) + 1:]):
        if part.shape[1] >= 8:
            c = np.median(part.reshape(-1, 3), axis=0)
            if 0.4 * lum < float(luminance(c)) < 2.0 * lum:       # a wall, not the sky or a shadow
                out.append(c)
    for c in rec709_to_working((WALL_SRGB / 255.0) ** 2.2):
        out.append(c * lum / max(float(luminance(c)), 1e-6))
    hue = lambda c: np.asarray(c, float) / max(float(np.sum(c)), 1e-6)
    out = [c for c in out if np.abs(hue(c) - hue(ref)).max() > OWN_HUE]
    return [((1 - COURTYARD_GREY) * c + COURTYARD_GREY * luminance(c)).astype(np.float32) for c in out]


def _wing(col, alpha, shape, c0: int, c1: int, cam: Camera, far: float, s: float, height_m: float, storey_m: float,
          plain: np.ndarray, colour: np.ndarray, sky: np.ndarray, rng, panes, cells: Cells | None = None) -> None:
    """One wing round a courtyard, far metres away, over columns c0..c1, into col and
    alpha (the wings abut, so none hides another); s: the facade texture's scale there."""
    h, w = shape[:2]
    storeys = max(2, int(round(height_m / storey_m * rng.uniform(0.7, 1.15))))
    rear_m = storeys * storey_m + rng.uniform(0.4, 1.2)
    top = int(round(cam.cy - cam.f_px * (rear_m - cam.eye_m) / far))
    base = int(min(h, np.ceil(cam.cy + cam.f_px * cam.eye_m / far) + 1))
    t0 = max(0, top)
    if base - t0 < 4:
        return
    tex = cv2.resize(plain, (max(2, int(plain.shape[1] * s)), max(2, int(plain.shape[0] * s))),
                     interpolation=cv2.INTER_AREA)
    tex = _tile(tex, base - t0, c1 - c0, rng) * _weathering(base - t0, c1 - c0, rng)
    tex = tex / max(float(luminance(np.median(tex.reshape(-1, 3), axis=0))), 1e-6) * colour
    # A fire wall (no windows) only where little of it shows: a wide blank wall behind the
    # pile read as an untextured CG plane (img_288's salmon wall, img_270's bare slab).
    blank = rng.random() < 0.25 and (c1 - c0) * far / cam.f_px < FIREWALL_MAX_M
    if blank:
        wall = tex
    elif cells is not None:
        wall = _photo_storeys(cells, cam, far, s, t0, base, c0, c1, rear_m, colour)
    else:
        wall = _plain_windows(tex, cam, far, t0, c0, rear_m, storey_m, rng, panes)
    ys = np.arange(t0, base)
    shade = rng.uniform(*COURTYARD_LIGHT) * (1 - 0.35 * np.clip((ys - top) / max(1, base - top), 0, 1) ** 1.5)
    haze = 1 - np.exp(-far / 400.0)
    wall = wall * shade[:, None, None] * (1 - haze) + sky[t0:base, c0:c1] * haze
    # A darker line where it meets the next wing: the corner's shadow.
    wall[:, :1] *= 0.8
    col[t0:base, c0:c1] = wall
    alpha[t0:base, c0:c1] = 1.0
    roof_col = ROOF_LIN[int(rng.integers(len(ROOF_LIN)))] * rng.uniform(0.8, 1.2)
    # A photographed wall mostly ends in its own cornice against the sky: over it, a drawn
    # hip roof was the one CG thing left (judge 21: 'low-poly hip-roof boxes', img_140).
    _roof(col, alpha, top, c0, c1, sky, haze, cam.f_px / far, rng, pitched=0.5 if cells is None else 0.2, dark=roof_col,
          stack=colour * rng.uniform(0.6, 0.9))


def _photo_storeys(cells: Cells, cam: Camera, far: float, s: float, t0: int, base: int, c0: int, c1: int,
                   rear_m: float, colour: np.ndarray) -> np.ndarray:
    """A wing's wall far metres away dealt from the facade's own storey x bay cells (see
    photo_wall; s: the facade's scale there), under a cornice's shadow and lit top. Its
    own generator, fixed by where it stands, deals them."""
    up = cam.eye_m + (cam.cy - (np.arange(t0, base) + 0.5)) * far / cam.f_px
    along = (np.arange(c0, c1) + 0.5 - cam.cx) * far / cam.f_px
    seed = [abs(int(t0)), int(c0), int(c1), int(far * 10)]
    wall = photo_wall(cells, up, along + 7.0, cam.f_px / (far * s), s, colour, seed)
    m = np.where((up > rear_m - 0.45) & (up < rear_m - 0.2), 0.55, np.where(up >= rear_m - 0.2, 1.15, 1.0))
    # Its own weathering over the tile's: a wing many tiles wide showed the same stains
    # at every repeat.
    weather = _weathering(base - t0, c1 - c0, np.random.default_rng(seed + [5]))
    return (wall * m[:, None, None].astype(np.float32) * weather).astype(np.float32)


def _plain_windows(plain: np.ndarray, cam: Camera, far: float, t0: int, c0: int, rear_m: float, storey_m: float,
                   rng, panes: list | None = None) -> np.ndarray:
    """A plain wall far metres away, its top-left pixel at (t0, c0) (plain: its render there,
    linear RGB):
    a window a bay on every storey above the ground floor that fits under the roof, dark
    panes (a few lit by curtains) in frames a little paler than the wall, over a sill, and
    a cornice's shadow under the roof. Masks drawn at twice the size and reduced, so their
    edges are anti-aliased. panes: the facade's own windows (linear crops): each opening
    shows one of them instead, so the wall has photographed glass, frames and curtains."""
    k = 2
    h, w = plain.shape[:2]
    ys = t0 + (np.arange(h * k) + 0.5) / k
    xs = c0 + (np.arange(w * k) + 0.5) / k
    up = cam.eye_m + (cam.cy - ys)[:, None] * far / cam.f_px            # metres above the courtyard
    off = rng.uniform(0, 10)
    along = ((xs - cam.cx) * far / cam.f_px)[None, :] + off
    bay = rng.uniform(*BAY_M)
    wx, wy, sill = (m * rng.uniform(0.85, 1.15) for m in WINDOW_M)
    wx = min(wx, bay - 0.8)
    bx, fy = np.floor(along / bay), np.floor(up / storey_m)
    u, v = along - bx * bay - 0.5 * (bay - wx), up - fy * storey_m - sill
    fits = (fy >= 1) & (fy * storey_m + sill + wy < rear_m - 0.6)      # the ground floor: doors, sheds; left plain
    win = (u >= 0) & (u < wx) & (v >= 0) & (v < wy) & fits
    frame = win & ((u < 0.07) | (u > wx - 0.07) | (v < 0.07) | (v > wy - 0.07) | (np.abs(u - 0.5 * wx) < 0.035))
    ledge = (u >= -0.08) & (u < wx + 0.08) & (v >= -0.1) & (v < 0) & fits
    cornice = (up > rear_m - 0.45) & (up < rear_m - 0.2)
    corona = (up >= rear_m - 0.2) & (up < rear_m)                        # the cornice's lit top
    pipe = np.abs(along - (np.floor(along / (3 * bay)) + 0.5) * 3 * bay) < 0.07     # a downpipe every third bay

    lit = _hash2(bx, fy)
    # Most panes dark (a room in shade), some catching the sky, a few curtained.
    pane = np.where(lit > 0.88, 0.55, np.where(lit > 0.7, 0.35 + 0.5 * (v / wy), 0.12 + 0.12 * lit))
    m = np.ones(up.shape, np.float32)
    m = np.where(win, pane, m)
    m = np.where(frame, 1.1, m)
    m = np.where(ledge, 1.1, m)
    m = _mouldings(m, up, u, v, fy, win, fits, storey_m, (wx, wy))
    m = np.where(cornice, 0.55, np.where(corona, 1.15, m))
    m = np.where(pipe & ~cornice & ~corona, 0.7, m)
    m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    glassy = cv2.resize((win & ~frame).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    # Panes take a little of the sky's blue; the rest is the wall's own colour, lit or shaded.
    tint = 1 + glassy[..., None] * (np.array([0.85, 0.92, 1.0], np.float32) - 1)
    out = (plain * m[..., None] * tint).astype(np.float32)
    if panes:
        bays, floors = np.broadcast_to(bx, win.shape)[win], np.broadcast_to(fy, win.shape)[win]
        slots = np.unique(np.stack([bays, floors], 1), axis=0)
        _paste_panes(out, panes, slots, cam, far, t0, c0, off, bay, storey_m, (wx, wy, sill))
    return out


def _mouldings(m, up, u, v, fy, win, fits, storey_m: float, window: tuple) -> np.ndarray:
    """The architecture a plain wall still has, as a multiplier over m (drawn flat, the
    wings read as CG boxes with window decals): a string course at every floor, lit on top
    over its own shadow; a lighter surround round each window with the lintel's shadow
    across the pane's top; rain-dirt streaking down from each sill; a sooty plinth. up: m
    above the courtyard; u, v: m across and up from each window's corner; fy: the storey."""
    wx, wy = window
    fl = up - fy * storey_m
    surround = (u >= -0.12) & (u < wx + 0.12) & (v >= -0.1) & (v < wy + 0.14) & fits & ~win
    streak = (u >= 0.1) & (u < wx - 0.1) & (v < -0.1) & (v > -1.6) & fits
    m = np.where(surround, 1.06, m)
    m = np.where(streak, 1.0 - 0.12 * np.exp(-(-v - 0.1) / 0.6), m)
    m = np.where((fy >= 1) & (fl < 0.22), 1.07, np.where((fy >= 1) & (fl >= 0.22) & (fl < 0.3), 0.78, m))
    m = np.where(win & (v > wy - 0.25), m * 0.7, m)
    return np.where(up < 0.9, m * 0.75, m)


def _paste_panes(out: np.ndarray, panes: list, slots: np.ndarray, cam: Camera, far: float, t0: int, c0: int,
                 off: float, bay: float, storey_m: float, window: tuple) -> None:
    """Each window slot (bay, storey) of a far wall gets one of the facade's own windows,
    resized to the opening (which one: a hash of the slot, so it is fixed in time)."""
    wx, wy, sill = window
    k = cam.f_px / far
    h, w = out.shape[:2]
    for b, f in slots:
        xa = cam.cx + (b * bay + 0.5 * (bay - wx) - off) * k - c0
        yb = cam.cy - (f * storey_m + sill - cam.eye_m) * k - t0
        x0, x1, y0, y1 = int(round(xa)), int(round(xa + wx * k)), int(round(yb - wy * k)), int(round(yb))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        pane = panes[int(_hash2(np.float64(b), np.float64(f + 17)) * len(panes))]
        img = cv2.resize(pane, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx1 > cx0 and cy1 > cy0:
            out[cy0:cy1, cx0:cx1] = img[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


def _window_crops(lin: np.ndarray, inside: np.ndarray, holdout: np.ndarray, windows) -> list:
    """The facade's upper-floor windows (linear crops, at least 4 px each way), clear of
    holdouts: what a courtyard wall's windows are drawn from. Only openings taller than
    wide and darker than the wall round them: the detector also takes a sign's letters
    for a row of windows, and they came out on the courtyard wall (img_181)."""
    if windows is None or not len(windows):
        return []
    ys = np.nonzero(inside.any(axis=1))[0]
    upper = ys.min() + 0.65 * (ys.max() - ys.min())
    wall = float(np.median(luminance(lin[inside])))
    crops = []
    for x0, y0, x1, y1 in np.round(np.asarray(windows)).astype(int):
        x0, y0 = max(x0, 0), max(y0, 0)
        if x1 - x0 < 4 or y1 - y0 < 4 or y1 > upper or (holdout[y0:y1, x0:x1] > 0.3).any():
            continue
        crop = lin[y0:y1, x0:x1].astype(np.float32)
        if (y1 - y0) >= 1.1 * (x1 - x0) and float(np.median(luminance(crop))) < wall:
            crops.append(crop)
    return crops


def _quilt(ex: np.ndarray, ok: np.ndarray, canvas: np.ndarray, known: np.ndarray, block: int, rng):
    """Image quilting (Efros and Freeman 2001), simplified: the canvas's unknown part is
    covered with overlapping blocks taken from the exemplar (only where ok), each chosen
    among random candidates by its fit to what is already there in the overlap, and
    blended across it. None when the exemplar holds no whole block."""
    eh, ew = ok.shape
    block = min(block, eh, ew)
    if block < 6:
        return None
    # Candidate blocks lie wholly on the wall: an integral image of ok tells.
    ii = np.pad(ok.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    full = ii[block:, block:] - ii[:-block, block:] - ii[block:, :-block] + ii[:-block, :-block]
    cy, cx = np.nonzero(full == block * block)
    if len(cy) < 4:
        return None
    ov = max(2, block // 4)
    step = block - ov
    H, W = known.shape
    out = canvas.copy()
    have = known.astype(np.float32).copy()
    ramp = np.minimum(np.arange(block) + 1, ov) / ov
    for by in range(0, H, step):
        for bx in range(0, W, step):
            y1, x1 = min(by + block, H), min(bx + block, W)
            if have[by:y1, bx:x1].min() >= 1:
                continue
            pick = rng.choice(len(cy), size=min(len(cy), 80), replace=False)
            idx = (cy[pick, None, None] + np.arange(y1 - by)[None, :, None],
                   cx[pick, None, None] + np.arange(x1 - bx)[None, None, :])
            cands = ex[idx]
            wgt = have[by:y1, bx:x1]
            err = (((cands - out[by:y1, bx:x1]) ** 2).sum(-1) * wgt).sum((1, 2)) / max(wgt.sum(), 1)
            good = np.nonzero(err <= err.min() * 1.1 + 1e-9)[0]
            patch = cands[rng.choice(good)]
            # Feathered into what is there: a ramp over the overlap, the new block beyond.
            a = np.minimum.outer(ramp[:y1 - by] if by else np.ones(y1 - by), ramp[:x1 - bx] if bx else np.ones(x1 - bx))
            a = np.where(wgt > 0, a, 1.0) * (1 - wgt) + wgt * a
            a = np.where(known[by:y1, bx:x1], 0.0, a)
            out[by:y1, bx:x1] = out[by:y1, bx:x1] * (1 - a[..., None]) + patch * a[..., None]
            have[by:y1, bx:x1] = 1
    return out


# ---- 5. party walls --------------------------------------------------------------------

def _party_walls(lin, inside, sky_px, holdout, cam: Camera, depth: float, rng, storeys=(STOREY_M, STOREY_M),
                 overcast: float = 0.0):
    """A neighbour that stood against the building shows its side wall once the building
    is gone: a blank wall from the neighbour's corner back to the plot's depth, seen in
    perspective (only from the side the camera is on), textured with the neighbour's own
    wall (its plain stretches, without windows), lit as a side face is under the plate's
    sky (overcast: 0 clear, 1 overcast)."""
    h, w = inside.shape
    rows = np.nonzero(inside.any(axis=1))[0]
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    col = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    found = False
    for side in (-1, 1):
        edge = np.array([(np.nonzero(inside[y])[0].min() if side < 0 else np.nonzero(inside[y])[0].max())
                         for y in range(r0, r1)])
        xe = int(np.median(edge))
        strip = slice(max(0, xe - 40), xe) if side < 0 else slice(xe + 1, min(w, xe + 41))
        if strip.stop - strip.start < 8 or (side < 0) != (xe < cam.cx):
            continue                        # at the frame's edge, or a wall facing away
        solid = ~sky_px[r0:r1, strip] & (holdout[r0:r1, strip] < 0.5)
        if solid.mean() < 0.7:
            continue                        # open sky or street beside it: no neighbour touched
        solid_rows = np.nonzero(solid.mean(axis=1) > 0.6)[0]
        top_n = r0 + int(solid_rows.min())
        # The neighbour's own wall when the frame shows enough of it; a sliver at the
        # frame's edge is mostly whatever hangs there (img_100: a red sign board made a
        # dark red party wall), so the terrace's wall is taken from the building's edge.
        if strip.stop - strip.start >= NEIGHBOUR_MIN_PX:
            patch = lin[r0:r1, strip]
        else:
            own = slice(max(0, xe - 40), xe) if side > 0 else slice(xe + 1, min(w, xe + 41))
            patch = lin[r0:r1, own]
        plain = _plain_wall(patch)
        z_far = depth + PLOT_DEPTH_M
        x_far = cam.cx + (xe - cam.cx) * depth / z_far
        xs = np.arange(int(min(xe, x_far)), int(max(xe, x_far)) + 1)
        xs = xs[(xs >= 0) & (xs < w)]
        if len(xs) < 2:
            continue
        z = depth * (xe - cam.cx) / np.where(np.abs(xs - cam.cx) < 1e-3, 1e-3, xs - cam.cx)
        top_m = cam.eye_m + (cam.cy - top_n) * depth / cam.f_px
        y_top = np.where(top_n <= 1, 0, cam.cy - cam.f_px * (top_m - cam.eye_m) / z).astype(int)
        y_bot = np.minimum(h, (cam.cy + cam.f_px * cam.eye_m / z).astype(int) + 1)
        # The wall's height (m) at each pixel of its columns, and how far back each lies.
        hgt = cam.eye_m + (cam.cy - np.arange(h, dtype=np.float64)[:, None]) * z[None, :] / cam.f_px
        gone_top = np.inf if r0 <= 1 else cam.eye_m + (cam.cy - r0) * depth / cam.f_px
        tex = _on_wall(plain, hgt, z - depth, cam.f_px / depth, rng, _wall_grain(patch))
        tex = tex * _imprint(hgt, z - depth, gone_top, storeys, rng, np.median(plain.reshape(-1, 3), axis=0))
        # A side face: out of the sun that falls on the fronts; under an overcast sky a
        # wall gets the same light whichever way it faces (at 0.72 of the fronts, img_100's
        # party wall under a grey sky was a dark slab over a third of the frame). Darker
        # further back, where the walls round the gap hide more of the sky.
        back = np.clip((z - depth) / PLOT_DEPTH_M, 0, 1)
        shade = SIDE_LIGHT[0] + (SIDE_LIGHT[1] - SIDE_LIGHT[0]) * float(np.clip(overcast, 0, 1)) - 0.15 * back
        for j, x in enumerate(xs):
            a, b = max(0, y_top[j]), y_bot[j]
            if b > a:
                col[a:b, x] = tex[a:b, j] * shade[j]
                alpha[a:b, x] = 1.0
        _past_the_corner(lin, inside, xe, side, col, alpha)
        found = True
    return (col, alpha) if found else None


def _past_the_corner(lin, inside, xe: int, side: int, col, alpha) -> None:
    """What the matte holds past the party wall's corner, on the neighbour's side (a sign
    taken down with the building: img_190's AVTO panel), hung in front of the neighbour's
    front: its wall, continued from the plate round it (cv2.inpaint), into col and alpha.
    Left to the layers behind, it showed as a patch of sky beside the party wall."""
    past = inside.copy()
    if side < 0:
        past[:, xe:] = False
    else:
        past[:, :xe + 1] = False
    rows = np.nonzero(past.any(axis=1))[0]
    if not len(rows):
        return
    y0, y1 = max(0, rows[0] - 8), min(inside.shape[0], rows[-1] + 9)
    cols = slice(0, xe) if side < 0 else slice(xe + 1, inside.shape[1])
    hole = past[y0:y1, cols].astype(np.uint8)
    # (in 16 bits: OpenCV 5.1's inpaint of 32-bit floats returns garbage)
    scale = 65535.0 / max(float(lin.max()), 1e-6)
    for c in range(3):
        q = np.clip(lin[y0:y1, cols, c] * scale, 0, 65535).astype(np.uint16)
        filled = cv2.inpaint(q, hole, 5, cv2.INPAINT_TELEA).astype(np.float32) / scale
        col[y0:y1, cols, c] = np.where(hole > 0, filled, col[y0:y1, cols, c])
    alpha[y0:y1, cols] = np.maximum(alpha[y0:y1, cols], hole)


# Interior finishes a demolition bares on a party wall (sRGB): whitewash, pastel paints,
# wallpaper; each room's own, at about the outside wall's brightness.
ROOM_PAINTS = np.array([(226, 222, 210), (172, 192, 204), (178, 198, 168), (214, 174, 162), (208, 184, 132),
                        (152, 162, 176), (204, 190, 164), (196, 160, 176)], np.float32)
BRICK_SRGB = (118, 100, 90)     # old brick under plaster, dulled by lime, soot and dust (at (128, 94, 80)
                                # the bared patches read as orange paint splashed on a pale wall, img_190)
BRICK_SHARE = 0.07       # of the bared wall whose plaster came away with the floors (at 0.12
                         # the patches read as red blotches smeared over it, img_190)
PLASTER_SHEET_M = 0.9     # the plaster comes away in sheets about this wide (the patches' scale, m)
FLOOR_TEAR = 1.2          # how much likelier (in the field's spreads) it came away along a floor's line
SHEET_CELL_M = 0.1        # the patches' field is drawn at this resolution on the wall
ROOM_EDGE_M = 0.2         # how far a room's finish strays either side of its partition's line (spread, m)
ROOM_STAIN = 0.07         # the stains' and fading's spread over a room's finish (of its brightness)


def _imprint(hgt: np.ndarray, back: np.ndarray, gone_top: float, storeys, rng, wall: np.ndarray) -> np.ndarray:
    """What a demolished building leaves on the party wall it stood against: the pockets
    of its floor slabs as dark lines at every floor, each room's old paint or wallpaper
    between them, the scars of its partitions, a sooty chimney flue, the brick bared where
    the plaster came away; above its roof, the bare outside wall. hgt: H x N metres above
    the street; back: N metres behind the facade; wall: the outside wall's linear colour.
    An H x N x 3 multiplier of the outside wall's texture."""
    storey, ground = storeys
    floors = ground + storey * np.arange(0, 60)
    floors = floors[floors < min(gone_top, float(hgt.max()))]
    out = np.ones(hgt.shape + (3,), np.float32)
    under = hgt < gone_top
    level = np.searchsorted(floors, hgt)                  # 0: the ground floor's room
    # Rooms 3-6 m deep, their own finish per storey and room (a wall read as one tint
    # was a smooth grey slab: img_190).
    edges = np.cumsum(rng.uniform(3.0, 6.0, 8))
    # (a child stream: what follows draws from rng exactly as before)
    own = rng.spawn(1)[0]
    # A room's finish ends raggedly at its partition, torn with it (ruled, the rooms were
    # a patchwork of flat rectangles: judges 46 and 47, img_190 from 40 %), and it is
    # stained and faded unevenly over each wall.
    ragged = ROOM_EDGE_M * _wall_field(hgt, back, own, (0.3, 1.0), (0.08, 0.5))
    room = np.searchsorted(edges, back[None, :] + ragged)
    stain = 1.0 + ROOM_STAIN * _wall_field(hgt, back, own, (1.2, 1.0), (0.3, 0.5))
    key = (level * 16 + room) % 256
    paints = rec709_to_working((ROOM_PAINTS / 255.0) ** 2.2)
    pick = paints[rng.integers(0, len(paints), 256)] * rng.uniform(0.75, 1.05, (256, 1))
    wall = np.maximum(np.asarray(wall, np.float32), 1e-4)
    tints = pick * (luminance(wall) / np.maximum(luminance(pick), 1e-4))[:, None] / wall
    # Most of the way toward the outside wall's own colour: faded, and in the same light
    # and dust (pure paint colours read as stripes of poster paint; at 40 % of them, as a
    # pastel patchwork; at 22 %, not at all once the frame is 640 px wide, img_190).
    tints = (0.65 + 0.35 * tints).astype(np.float32)
    out = np.where(under[..., None], tints[key] * stain[..., None], out)
    bared, brick = _bared_brick(hgt, back, under, rng, wall, floors)
    out = np.where(bared[..., None], brick, out)       # brick where the paint came away with the plaster
    # A chimney flue: a sooty band 0.5 m wide up the whole wall, part-way back.
    flue = np.abs(back - rng.uniform(0.3, 0.7) * float(back.max())) < 0.25
    out = np.where((under & flue[None, :])[..., None], out * 0.78, out)
    # The marks below are a few centimetres wide and drawn with each pixel's coverage of
    # them, in the wall's metres: cut at a threshold per pixel, the floor lines that run
    # aslant a wall seen in perspective came out as stair-steps and the joist sockets as
    # a checker of dashes along them (img_190 from 40 %).
    px_up = np.abs(np.gradient(hgt, axis=0))
    px_back = np.broadcast_to(np.abs(np.gradient(back))[None, :], hgt.shape) if len(back) > 1 else np.ones_like(hgt)
    # Partition scars: a darker line 0.15 m wide where a wall met it.
    d_edge = np.min(np.abs(back[:, None] - edges[None, :]), axis=1)[None, :]
    out = out * (1.0 - 0.1 * (under * _cover(d_edge, px_back, -0.075, 0.075)))[..., None]
    # Floor pockets: a dark band where the slab was torn out, a paler lip over it, and the
    # joists' sockets in a row along it, 0.6 m apart (the mark every demolished floor
    # leaves; a thin line alone did not show at 640 px).
    if len(floors):
        d = _from_floor(hgt, floors)
        pocket = _cover(d, px_up, -0.14, 0.14)
        lip = _cover(d, px_up, 0.14, 0.24)
        phase = (back[None, :] + 0.5 * px_back) % 0.6 - 0.5 * px_back
        along = np.where(px_back >= 0.6, 0.2 / 0.6, _cover(phase, px_back, 0.0, 0.2))   # (a pixel over a whole pitch: its mean)
        socket = _cover(d, px_up, -0.14, 0.16) * along * under
        out = out * ((1.0 - 0.5 * pocket) * (1.0 + 0.08 * lip) * (1.0 - 0.45 * socket))[..., None]
    return out.astype(np.float32)


def _from_floor(hgt: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """Each pixel's height over the nearest floor (m, negative below it); floors sorted."""
    up = np.clip(np.searchsorted(floors, hgt), 1, max(len(floors) - 1, 1))
    below, above = floors[up - 1], floors[np.minimum(up, len(floors) - 1)]
    return np.where(np.abs(hgt - above) < np.abs(hgt - below), hgt - above, hgt - below)


def _cover(x: np.ndarray, px: np.ndarray, a: float, b: float) -> np.ndarray:
    """The share of each pixel (centred at x, px wide, in metres) that lies in [a, b]."""
    half = 0.5 * np.maximum(px, 1e-6)
    return np.clip((np.minimum(b, x + half) - np.maximum(a, x - half)) / (2.0 * half), 0.0, 1.0)


def _bared_brick(hgt: np.ndarray, back: np.ndarray, under: np.ndarray, rng, wall: np.ndarray,
                 floors: np.ndarray) -> tuple:
    """Patches (BRICK_SHARE of the bared wall) of brick, half as bright as the plaster
    (old brick is dark beside render): its courses and mortar where a course spans at
    least three pixels (finer, they alias into dots), each brick its own shade. The
    plaster came away in sheets PLASTER_SHEET_M across, most along the floors, where the
    slabs and joists were torn out of the wall; the patches are laid out in the wall's
    own metres and seen in perspective. Drawn in screen pixels, a narrow wall seen at a
    slant (80 px at 640) got patches 7 px wide and 60 tall: brown streaks down it, the
    reviews' "camouflage" party wall (img_190). The patches (H x N) and the brick as an
    H x N x 3 multiplier of the outside wall's texture."""
    # Plaster breaks away along ragged edges, not round ones.
    blob = _wall_field(hgt, back, rng, (PLASTER_SHEET_M, 1.0), (0.15, 0.45))
    if len(floors):
        d = _from_floor(hgt, np.asarray(floors))
        blob = blob + FLOOR_TEAR * np.exp(-(d / 0.6) ** 2)
    thr = np.quantile(blob[under], 1 - BRICK_SHARE) if under.any() else np.inf
    patch = under & (blob > thr)
    course = np.floor(hgt / 0.075)
    along = back[None, :] / 0.25 + 0.5 * (course % 2)
    shade = 0.85 + 0.3 * _hash2(course, np.floor(along))
    brick = rec709_to_working((np.array(BRICK_SRGB, np.float32) / 255.0) ** 2.2)
    brick = brick * 0.5 * luminance(wall) / luminance(brick)
    m = (brick / wall)[None, None, :] * shade[..., None]
    px_m = np.abs(np.gradient(hgt, axis=0)).mean()
    if 0.075 >= 3.0 * px_m:
        mortar = ((hgt % 0.075) < 0.012) | (((along % 1.0) * 0.25) < 0.012)
        m = np.where(mortar[..., None], 1.05, m)
    return patch, m.astype(np.float32)


def _wall_field(hgt: np.ndarray, back: np.ndarray, rng, *octaves) -> np.ndarray:
    """Smooth noise laid out on the wall in its own metres (SHEET_CELL_M a cell), seen in
    perspective at each pixel (hgt, back as in _imprint): the sum of the octaves, each
    (size m, weight) of unit spread."""
    gh = int(float(max(hgt.max(), 1.0)) / SHEET_CELL_M) + 3
    gw = int(float(max(back.max(), 1.0)) / SHEET_CELL_M) + 3
    sheet = np.zeros((gh, gw), np.float32)
    for size_m, weight in octaves:
        f = cv2.GaussianBlur(rng.normal(0, 1, (gh, gw)).astype(np.float32), (0, 0), size_m / SHEET_CELL_M)
        sheet += weight * f / max(float(f.std()), 1e-6)
    gy = np.clip(hgt / SHEET_CELL_M, 0, gh - 1).astype(np.float32)
    gx = np.broadcast_to(np.clip(back / SHEET_CELL_M, 0, gw - 1)[None, :], hgt.shape).astype(np.float32)
    return cv2.remap(sheet, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _hash2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A repeatable value in [0, 1) per integer pair (a brick's own shade)."""
    v = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return (v - np.floor(v)).astype(np.float32)


def _on_wall(plain: np.ndarray, hgt: np.ndarray, back: np.ndarray, px_per_m: float, rng,
             grain: np.ndarray | None = None) -> np.ndarray:
    """The neighbour's plain wall and its weathering, laid out in the wall's own metres
    (at the facade's scale) and seen in perspective: its grain and streaks shrink toward
    the back as the wall recedes. Tiled in screen space instead, the texture kept one
    size from the street corner to the back of the plot and read as smeared and
    stretched across a wall seen at a slant (img_190). The strip it comes from repeats
    seamlessly (mirrored: it holds no feature to double, only its light and dark patches;
    repeated as it is, each repeat's edge drew a vertical band, judges 20 and 21), with
    the photo's own grain (grain: the strip's fine detail over its plain patches) on it."""
    rows = int(np.ceil((float(hgt.max()) + 1.0) * px_per_m)) + 2
    cols = int(np.ceil((float(back.max()) + 1.0) * px_per_m)) + 2
    rows, cols = min(rows, 4096), min(cols, 4096)
    flat = _tile(_seamless(plain), rows, cols, rng) * _weathering(rows, cols, rng, px_per_m)
    if grain is not None:
        # (its own generator: the draws after it, the rooms and the brick, stay as they were)
        flat = flat * _tile(_seamless(grain), rows, cols, np.random.default_rng([rows, cols]))[..., None]
    top = rows / px_per_m
    map_x = np.broadcast_to(np.clip(back, 0, None)[None, :] * px_per_m, hgt.shape).astype(np.float32)
    map_y = ((top - np.maximum(hgt, 0.0)) * px_per_m).astype(np.float32)
    return cv2.remap(flat.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _seamless(a: np.ndarray) -> np.ndarray:
    """a and its mirror images side by side and one over the other: a tile whose
    repeats meet without a seam."""
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([a, a[::-1]], axis=0))


def _wall_grain(patch: np.ndarray) -> np.ndarray:
    """A bare wall's fine grain, as strong as the photo's over the strip's plain wall (its
    brightness against its own blur, a few pixels wide; openings, signs and ornament,
    anything far from the wall's brightness, left out), the grain a wall drawn from the
    strip's blurred colour lacked (the demo's party wall read as a grey CG plane). Drawn
    as noise of that strength, not copied: the strip's rustication grooves and joints,
    tiled down a wall seen at a slant, drew a hatch of fine lines converging on the
    vanishing point across img_190's party wall."""
    lum = luminance(patch).astype(np.float32)
    ref = max(float(np.median(lum)), 1e-6)
    hp = lum / np.maximum(cv2.GaussianBlur(lum, (0, 0), 3.0), 1e-6)
    plain = np.abs(lum / ref - 1) < 0.2
    amp = float(np.clip(np.std(hp[plain]) if plain.sum() > 16 else 0.0, 0.0, 0.1))
    rng = np.random.default_rng(list(patch.shape[:2]))
    noise = sum(wt * cv2.GaussianBlur(rng.normal(0, 1, patch.shape[:2]).astype(np.float32), (0, 0), sg)
                for wt, sg in ((1.0, 0.7), (0.6, 2.0)))
    noise /= max(float(noise.std()), 1e-6)
    return np.clip(1.0 + amp * noise, 0.8, 1.2).astype(np.float32)


def _weathering(h: int, w: int, rng, px_per_m: float | None = None) -> np.ndarray:
    """A bare wall's weathering as a multiplier: rain streaks running down it (patches
    stretched tall), blotches of damp and repair, and the render's own grain; a party
    wall drawn as one smooth colour read as an untextured CG plane (img_190). Laid out in
    the wall's metres (px_per_m), the streaks are a rain-washed wall's: a hand wide and a
    few metres long, in runs where the water came down, not an even field of them over
    the whole wall (that, 0.35 m wide over img_100's 22 m party wall, read as the planks
    of a wooden fence)."""
    def field(sy, sx):
        f = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigmaX=max(sx, 0.5), sigmaY=max(sy, 0.5))
        return f / max(float(f.std()), 1e-6)
    if px_per_m is None:
        streaks = field(h / 6, max(w / 40, 1.0))
        blotch = field(h / 20, w / 20)
    else:
        streaks = field(STREAK_M[1] * px_per_m, STREAK_M[0] * px_per_m)
        runs = np.clip(field(STREAK_M[2] * px_per_m, STREAK_M[2] * px_per_m), 0.0, None)
        streaks = 0.5 * streaks * runs        # (a run's streaks at most about as strong as the even field's)
        blotch = field(1.2 * px_per_m, 1.2 * px_per_m)
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    m = 1 + 0.07 * streaks + 0.05 * blotch + 0.025 * grain
    return np.clip(m, 0.75, 1.25)[..., None].astype(np.float32)


def _plain_wall(patch: np.ndarray) -> np.ndarray:
    """The plain wall of a strip of facade, as a party wall shows it: the strip's typical
    colour (windows and signs left out) with its large-scale weathering (the strip's own
    light and dark patches, blurred), not its openings."""
    med = np.median(patch.reshape(-1, 3), axis=0)
    lum = luminance(patch)
    ref = max(float(luminance(med[None, None])[0, 0]), 1e-4)
    plain = np.abs(lum / ref - 1) < 0.25
    var = np.where(plain, lum / ref, 1.0).astype(np.float32)
    var = cv2.GaussianBlur(var, (0, 0), max(2.0, patch.shape[1] / 8))
    return (med * np.clip(var, 0.85, 1.15)[..., None]).astype(np.float32)
