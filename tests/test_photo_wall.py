"""The walls made up behind a building are dealt from its own photographed upper floors:
whole storeys and bays at the facade's own periods, never its shop front, at the wall's
own scale and colour; and a facade with no windows gives none."""

from __future__ import annotations

import numpy as np

from derrumbe.colour import luminance
from derrumbe.stages.cleanplate import _lean, make_cleanplate
from derrumbe.stages.photo_wall import STOREY_PAD, facade_cells, photo_wall, upright

WALL = np.array([0.40, 0.30, 0.20], np.float32)
GLASS = np.array([0.03, 0.06, 0.20], np.float32)      # blue-dark panes: the plate's own, traceable
SIGN = np.array([0.70, 0.02, 0.02], np.float32)


def _facade(h=250, w=300, storey=40, bay=30, ground=60):
    """A facade filling the frame: windows 14 x 20 px a bay and a storey apart over a
    ground floor `ground` px tall whose top carries a red shop sign."""
    lin = np.broadcast_to(WALL, (h, w, 3)).copy()
    for y in range(0, h - ground - storey + 1, storey):
        for x in range(0, w - bay + 1, bay):
            lin[y + 10:y + 30, x + 8:x + 22] = GLASS
    lin[h - ground:h - ground + 14] = SIGN
    lin[h - ground + 20:h - 5, 40:120] = 0.05              # a shop window
    return lin, np.ones((h, w), np.float32), np.zeros((h, w), np.float32)


def test_the_cells_are_the_facades_storeys_and_bays_without_its_shop_front():
    """A storey (40 px) and a bay (30 px) a cell, read from the openings; neither the shop
    sign over the ground floor nor a sign across one bay of an upper floor is kept."""
    lin, inside, zero = _facade()
    lin[80:95, 90:120] = (0.1, 0.2, 0.8)                     # an upper floor's sign over one bay
    c = facade_cells(lin, inside, zero, storey_px=42.0, ground_px=55.0, keystone=None, cx=150.0)
    assert c is not None
    assert c.storey_px == 40 and c.bay_px == 30, (c.storey_px, c.bay_px)
    assert c.tile.shape[0] % 40 == 0 and c.tile.shape[1] % 30 == 0
    red = c.tile[..., 0] - c.tile[..., 1]
    assert red.max() < 0.3, "the shop sign came into the tile"
    assert c.tile[..., 2].max() < 0.5, "the upper floor's sign came into the tile"
    glass = np.all(np.abs(c.tile - GLASS) < 0.01, axis=-1).mean()
    assert abs(glass - 14 * 20 / (30 * 40)) < 0.03, glass
    assert np.allclose(c.ref, WALL, atol=0.01)


def test_a_downpipe_down_the_facade_is_painted_out_and_the_windows_kept():
    """A bright downpipe 3 px wide down a pier, its shadow beside it, over the facade's
    whole height (and light curtains in half its windows, which stand out from the wall
    too, over the window's height only): the tile is the pipe-less facade's, the pier
    carried on from a bay along, and no column of it is lighter than the wall either
    side of it all the way down. (One pipe in the tile was a pipe on every wing, and a
    bright band where a wing's piers were widened by it: img_181 at 100 %.)"""
    lin, inside, zero = _facade()
    rng = np.random.default_rng(5)
    for y in range(0, 250 - 60 - 40 + 1, 40):
        for x in range(0, 300 - 30 + 1, 30):
            # Each window its own curtain, light or none, as in a photo (the pipe's bay is
            # then no odder than any other, and the odd-cell swap does not catch it).
            if rng.random() < 0.6:
                top = int(rng.integers(10, 20))
                lin[y + top:y + 30, x + 9:x + 21] = rng.uniform(0.55, 0.8) * np.array([1.0, 0.98, 0.92])
    clean = facade_cells(lin, inside, zero, 42.0, 55.0, None, 150.0)
    piped = lin.copy()
    piped[:, 148:151] = (0.85, 0.85, 0.88)                    # galvanised steel, in the sun
    piped[:, 151:153] = WALL * 0.6                            # its shadow on the render
    c = facade_cells(piped, inside, zero, 42.0, 55.0, None, 150.0)
    assert c is not None and clean is not None
    assert (c.storey_px, c.bay_px) == (clean.storey_px, clean.bay_px) == (40, 30)
    assert np.abs(c.tile - clean.tile).max() < 1e-3, np.abs(c.tile - clean.tile).max()
    lum = luminance(c.tile)
    lit = (lum > 1.2 * np.roll(lum, 4, axis=1)) & (lum > 1.2 * np.roll(lum, -4, axis=1))
    assert lit.mean(axis=0).max() < 0.5, lit.mean(axis=0).max()


def test_a_facade_without_windows_gives_no_cells():
    lin, inside, zero = _facade()
    lin[:] = WALL
    assert facade_cells(lin, inside, zero, 42.0, 55.0, None, 150.0) is None


def test_the_dealt_wall_keeps_the_storey_in_metres_and_takes_its_own_colour():
    """Dealt at 10 px a metre of facade and shrunk to half, the windows still come a
    storey apart up the wall (the facade's 4 m, a wing's own at most STOREY_PAD taller); its wall takes the colour asked for, within 3 %, and
    its panes keep their own darkness."""
    lin, inside, zero = _facade()
    c = facade_cells(lin, inside, zero, 42.0, 55.0, None, 150.0)
    up = (np.arange(160)[::-1] + 0.5) / 5.0                 # 32 m of wall at 5 px a metre, rows top down
    along = (np.arange(120) + 0.5) / 5.0
    colour = np.array([0.25, 0.30, 0.35], np.float32)
    wall = photo_wall(c, up, along, px_per_m=10.0, scale=0.5, colour=colour, seed=3)
    assert wall.shape == (160, 120, 3)
    lum = luminance(wall)
    prof = (lum < 0.5 * np.median(lum)).mean(axis=1) - (lum < 0.5 * np.median(lum)).mean()
    ac = np.array([np.dot(prof[:-k], prof[k:]) for k in range(5, 60)])
    storey_m = (5 + int(np.argmax(ac))) / 5.0
    assert 4.0 - 0.2 <= storey_m <= 4.0 * (1 + STOREY_PAD) + 0.2, storey_m
    bright = lum > 0.8 * np.median(lum)
    assert np.allclose(np.median(wall[bright], axis=0), colour, rtol=0.03)
    dark = lum < 0.3 * np.median(lum)
    assert dark.mean() > 0.05 and float(np.median(lum[dark])) < 1.5 * float(luminance(GLASS))


def test_upright_undoes_the_lean():
    rng = np.random.default_rng(0)
    img = np.repeat(np.cumsum(rng.normal(0, 1, (200, 300)), axis=1)[..., None], 3, axis=2).astype(np.float32)
    img = (img - img.min()) / np.ptp(img)
    vp, base, cx = -400.0, 180.0, 150.0
    back = _lean((upright(img, cx, vp, base), np.ones(img.shape[:2], np.float32)), cx, vp, base)[0]
    assert np.abs(back[:, 60:240] - img[:, 60:240]).mean() < 0.01


def test_a_courtyard_wing_shows_the_facades_own_panes():
    """A building cut by the frame's top reveals wings round its courtyard; their windows
    are the facade's own photographed panes (traceably blue-dark here), not drawn ones."""
    from derrumbe.stages.camera import Camera
    H, W = 300, 400
    cam = Camera(W, H, 300.0, 200.0, 150.0, 1.6)
    lin = np.full((H, W, 3), (0.55, 0.6, 0.7), np.float32)
    fac, _, _ = _facade(260, 280, storey=32, bay=24, ground=48)
    lin[:260, 60:340] = fac
    building = np.zeros((H, W), np.float32)
    building[:260, 60:340] = 1.0
    zero = np.zeros((H, W), np.float32)
    clean = make_cleanplate(lin, building, zero, zero, cam, 10.0, 1, storey_m=3.2, ground_floor_m=4.8, height_m=20.0)
    wings = clean[20:150, 120:280]                            # over the courtyard's ground, between the party walls
    blue = (wings[..., 2] > 2.0 * wings[..., 0]) & (luminance(wings) < 0.5 * float(luminance(WALL)))
    assert blue.mean() > 0.01, blue.mean()
    assert (wings[..., 0] - wings[..., 1] < 0.3).all(), "the facade's shop sign is on a wing"
