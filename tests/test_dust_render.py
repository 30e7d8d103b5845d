"""The rendered cloud against what photographs of clouds and smoke show: sharp dense
edges, a luminance spectrum in the measured range, sunlit tops over darker undersides;
and the dust's motion blur."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from derrumbe import colour
from derrumbe.stages.dust import DustSim, dust_frame
from derrumbe.stages.dust_render import DETAIL_TILE, DustRenderer, backdrop_depth, vector_blur
from derrumbe.stages.render import Lighting
from tests.dust_metrics import edge_ramps, spectrum_slope
from tests.test_dust import CAM, _scene

SUN = np.array([0.45, 0.64, 0.62]) / np.linalg.norm([0.45, 0.64, 0.62])


def _cloud_at_3s() -> dict:
    """The test collapse's stored dust state 3 s in."""
    fr, sim = _scene()
    d = DustSim(fr, sim, CAM, amount=1.0, wind_speed=1.0, wind_heading_deg=90.0, seed=1, target_cells=60_000,
                steps_per_second=24)
    return d.advance_to(3.0)


def _light_and_backdrop():
    """A low warm sun, a blue sky's ambient, and a backdrop of sky over the top 150 of 360 rows."""
    light = Lighting(SUN, np.array([1.0, 0.93, 0.82]) * 1.2, np.array([0.55, 0.65, 0.8]) * 0.35, np.ones(3) * 0.5)
    sky = np.zeros((360, 640), np.float32)
    sky[:150] = 1
    return light, sky, np.zeros((360, 640), np.float32)


@pytest.fixture(scope="module")
def cloud():
    """The test collapse's cloud 3 s in, rendered at 1280x720 over a flat grey backdrop."""
    import moderngl
    frame = dust_frame(_cloud_at_3s(), SUN)
    cam = CAM.scaled(1280, 720)
    light, sky, building = _light_and_backdrop()
    W, H = 1280 // 3, 720 // 3
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)), backdrop_depth(cam, (W, H), building,
                         sky, 40.0), (W, H), backdrop_full=backdrop_depth(cam, (1280, 720), building, sky, 40.0))
        out = r.render(frame, np.zeros((H, W), np.float32), np.zeros((720, 1280), np.float32))
        r.release()
    finally:
        ctx.release()
    a = out.front[..., 3]
    img = out.front[..., :3] + (1 - a[..., None]) * np.array([0.3, 0.35, 0.4], np.float32)
    lum = img @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    return a, lum, out, cam


def test_dense_edges_are_as_sharp_as_a_photographed_clouds(cloud):
    """DESIGN.md: photographs of clouds and smoke have edge ramps of about 2 px at this
    size, blurred renders over 5 px. (The median was 2.0 px until the blown base's dust
    reached the street with the rest of the cloud, more lobes and wisps: 2.25 px since.
    It moves with the collapse's chaos: since storeys are crushed from their foot up,
    this seed's cloud meets a thin haze over its top and measures 2.75 px, seeds 4-6
    2.0, 2.0 and 1.75 (crushed a storey at a time: 1.75, 1.75, 2.0, 1.75 on seeds 3-6).
    "About 2 px" is held to 3 px, well short of a blur's 5.) The ramp runs from the
    cloud down to what lies beside it, clear air or a thinner haze (measured down to
    clear air alone, an edge with its haze cut away beside it, a dark outline, read as
    the sharpest): 1.75 px."""
    a, _, _, cam = cloud
    sky = np.zeros(a.shape, bool)
    sky[: int(cam.cy) - 12] = True                       # the cloud against the sky
    ramps = edge_ramps(a, where=sky)
    assert len(ramps) > 100
    assert np.median(ramps) <= 3.0, np.percentile(ramps, [25, 50, 75])


def test_the_clouds_foot_thins_onto_the_street_instead_of_ending_on_a_cut_line(cloud):
    """Against the sky a dense cloud's edge is sharp (the test above); its foot on the
    street is not: the current's head churns over the ground and its gust carries thin
    dust ahead of it, so the dense cloud thins onto the road over several pixels. Cut as
    sharp as its top, the foot was a ruler-straight line with a dark rim along the kerb
    (img_100 at 20-40 %; here a 2 px ramp). In each column where the cloud ends above the
    street, from its lowest dense row (alpha 0.9) down to where it is gone (0.1)."""
    a, _, _, cam = cloud
    H, W = a.shape
    ramps = []
    for x in range(0, W, 2):
        col = a[:, x]
        dense = np.flatnonzero(col[int(cam.cy) + 4:] > 0.9) + int(cam.cy) + 4
        if not dense.size:
            continue
        gone = np.flatnonzero(col[dense.max():] < 0.1)
        if gone.size and dense.max() + gone[0] < H - 2:
            ramps.append(gone[0])
    assert len(ramps) > 100
    assert np.median(ramps) >= 4, np.percentile(ramps, [25, 50, 75])


def test_luminance_spectrum_inside_the_dense_cloud_falls_as_in_photographs_of_clouds(cloud):
    """DESIGN.md: in photographs of sunlit cumulus the luminance power spectrum falls as
    about k^-2.6 to k^-3.9 (a soft, blurred cloud as k^-10 or steeper; uniform noise
    would be flat, k^0)."""
    a, lum, _, _ = cloud
    slope = spectrum_slope(lum, a, size=64)
    assert -3.9 <= slope <= -2.6, slope


def test_the_cloud_is_brighter_on_its_sunlit_top_than_underneath(cloud):
    a, lum, _, _ = cloud
    cols = np.nonzero((a > 0.98).sum(axis=0) > 60)[0]
    assert len(cols) > 100
    tops, bottoms = [], []
    for x in cols:
        ys = np.nonzero(a[:, x] > 0.98)[0]
        n = max(3, len(ys) // 6)
        tops.append(lum[ys[:n], x].mean())
        bottoms.append(lum[ys[-n:], x].mean())
    assert np.median(np.array(tops) / np.array(bottoms)) > 1.1


def test_the_front_depth_is_where_the_cloud_is(cloud):
    a, _, out, _ = cloud
    z = out.depth[a > 0.5]
    # The test building stands 40 m away; its cloud lies around it, never behind the lens.
    assert (z > 5).all() and 20 < np.median(z) < 70


def test_motion_blur_smears_the_dust_along_its_own_motion_over_the_shutter():
    H, W = 40, 80
    layer = np.zeros((H, W, 4), np.float32)
    layer[:, :40] = (0.5, 0.4, 0.3, 1.0)                  # a sharp vertical edge at x = 40
    motion = np.zeros((H, W, 2), np.float32)
    motion[..., 0] = 12.0                                 # 12 px a frame to the right
    out = np.empty_like(layer)
    vector_blur(layer, motion, 0.5, out)                  # 180-degree shutter: a 6 px smear
    row = out[20, :, 3]
    ramp = np.nonzero((row > 0.02) & (row < 0.98))[0]
    assert 4 <= len(ramp) <= 7 and abs(ramp.mean() - 39.5) < 1.5
    assert np.allclose(out[:, :30], layer[:, :30]) and np.allclose(out[:, 50:], 0)
    still = np.zeros_like(motion)
    vector_blur(layer, still, 0.5, out)
    assert np.array_equal(out, layer)


def test_a_painted_buildings_dust_stays_the_colour_of_crushed_concrete():
    """What a collapse crushes is the bulk of walls and floors, not their paint: the dust of
    a bright green building (or of a curtain wall reflecting a violet sky) keeps crushed
    concrete's grey-beige, its hue pulled only a little toward the facade; a user's
    colour is taken as given."""
    import dataclasses
    from derrumbe.frames import dust_albedo
    from derrumbe.spec import DUST_SRGB, ShotSpec
    base = colour.srgb_colour(DUST_SRGB)
    spec = ShotSpec(plate="p.png", box=(0, 0, 10, 10))

    def chroma(c):
        c = np.asarray(c, float)
        return float((c.max() - c.min()) / c.mean())
    for facade in ([0.1, 0.6, 0.15], [0.45, 0.3, 0.7]):
        light = Lighting(SUN, np.ones(3), np.full(3, 0.3), np.array(facade))
        got = dust_albedo(spec, light)
        # within 0.06 of concrete dust's own chroma (a third of the way toward green: +0.25)
        assert abs(chroma(got) - chroma(base)) < 0.06, (facade, got, base)
        assert np.allclose(got.mean(), base.mean(), rtol=0.05)
    user = dataclasses.replace(spec, dust_color=(90, 60, 40))
    assert np.allclose(dust_albedo(user, light), colour.srgb_colour((90, 60, 40)))


_SIZES = (640, 360, 160, 90)       # output, and the march at a quarter of it


def _cloud_at(t: float):
    fr, sim = _scene()
    d = DustSim(fr, sim, CAM, amount=1.0, wind_speed=1.0, wind_heading_deg=90.0, seed=1, target_cells=60_000,
                steps_per_second=24)
    return dust_frame(d.advance_to(t), SUN)


def _street_renderer(ctx):
    """A renderer at _SIZES over a sky above row 150 and a street 40 m out below it."""
    W, H, w, h = _SIZES
    cam = CAM.scaled(W, H)
    light = Lighting(SUN, np.array([1.0, 0.93, 0.82]) * 1.2, np.array([0.55, 0.65, 0.8]) * 0.35, np.ones(3) * 0.5)
    sky = np.zeros((H, W), np.float32)
    sky[:150] = 1
    building = np.zeros((H, W), np.float32)
    return DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)), backdrop_depth(cam, (w, h), building,
                        sky, 40.0), (w, h), backdrop_full=backdrop_depth(cam, (W, H), building, sky, 40.0))


def test_the_detail_pass_on_dusty_tiles_alone_gives_the_full_frames_layers():
    """The full-size pass runs only on tiles near dust (and skips its taps where the march
    left none): front and back must be those of the pass over every tile, within what an
    8-bit frame can show, with a piece splitting the cloud into front and back."""
    import moderngl
    frame = _cloud_at(1.5)
    W, H, w, h = _SIZES
    full_op = np.zeros((H, W), np.float32)
    full_op[150:330, 200:440] = 35.0                     # a piece inside the cloud, nearer than its back
    lo_op = full_op[2::4, 2::4].copy()
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = _street_renderer(ctx)
        used = []
        pick = r._dust_tiles
        r._dust_tiles = lambda a: used.append(pick(a)) or used[-1]
        tiled = r.render(frame, lo_op, full_op)
        every = np.argwhere(np.ones((-(-H // DETAIL_TILE), -(-W // DETAIL_TILE)), bool))
        r._dust_tiles = lambda a: every
        whole = r.render(frame, lo_op, full_op)
        r.release()
    finally:
        ctx.release()
    assert 0 < len(used[0]) < len(every)                    # the cloud covers some of the frame, not all
    assert whole.back[..., 3].max() > 0.05 and whole.front[..., 3].max() > 0.5
    for a, b in ((tiled.front, whole.front), (tiled.back, whole.back)):
        assert np.abs(a - b).max() < 1e-3


@pytest.fixture(scope="module")
def split_ring():
    """The dust seen round a piece 38 m out in the test collapse's cloud at 2 s, with the
    piece and without it anywhere: (ring, seen with, seen without, the piece's split)."""
    import moderngl
    frame = _cloud_at(2.0)
    W, H, w, h = _SIZES
    full_op = np.zeros((H, W), np.float32)
    full_op[181:301, 201:439] = 38.0                     # off the march grid: silhouettes cut its pixels
    lo_op = cv2.resize(full_op, (w, h), interpolation=cv2.INTER_NEAREST)
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = _street_renderer(ctx)
        split = r.render(frame, lo_op, full_op)
        clear = r.render(frame, np.zeros_like(lo_op), np.zeros_like(full_op))
        r.release()
    finally:
        ctx.release()

    def seen(layers):                                    # all the dust over the plate, front over back
        fa, ba = layers.front[..., 3], layers.back[..., 3]
        return fa + (1 - fa) * ba
    ring = cv2.dilate((full_op > 0).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & (full_op == 0)
    return ring, seen(split), seen(clear), split


def _ring_gaps(ring, split, clear):
    gap = clear[ring] - split[ring]
    # (the edge ramp's taps still differ where the piece cut the march: isolated pixels,
    # 4 of the ring's 2928 over 0.2 here, one up to 0.2-0.9 as the noise drifting with the
    # cloud lies; the interpolated split left up to 0.97 and 8 % of the ring in the 1 %
    # worst, a line)
    assert np.percentile(gap, 99) < 0.03 and np.percentile(-gap, 99) < 0.03, np.percentile(np.abs(gap), 99)
    assert (np.abs(gap) > 0.2).mean() < 0.003, (np.abs(gap) > 0.2).sum()


def test_no_line_of_plate_or_rim_of_dust_round_a_piece_inside_the_cloud(split_ring):
    """The march runs at a quarter size and splits the cloud at the nearest piece; at the
    output size a pixel just off the piece's silhouette has no piece, so all its dust is
    seen. Its cloud must be as opaque as the same pixel's without the piece anywhere:
    interpolating the split layers between march pixels with and without the piece left
    it thinner than either, a bright line of plate round every piece in the dust; reading
    its edge ramp against the neighbours' front alone (the dust before the piece) made it
    denser, a grey rim round every piece. A pixel whose smoothing reaches a split march
    pixel is read whole as well: read from the fronts, the cloud thinned along the
    piece's left side by up to 0.22 (a line of plate). Here round the piece's sides and
    top; its foot is the next test's."""
    ring, split, clear, layers = split_ring
    assert layers.back[..., 3].max() > 0.3                # the piece does split a dense cloud
    assert clear[ring].mean() > 0.2                       # the ring lies in the cloud (0.26 at be0d56f)
    sides = ring.copy()
    sides[301:] = False
    _ring_gaps(sides, split, clear)
    assert np.abs(clear - split)[sides].max() < 0.06      # not even a short stretch of line (0.05 on this
                                                          # collapse's cloud since 0b5eee5; the line was 0.22)


@pytest.mark.xfail(strict=True, reason="open (issue 15): at a piece's foot in the street's dense, steep current "
                   "3 % of the ring's pixels differ by over 0.2 with the piece and without it (other lumps, "
                   "the split's a little denser on the whole), since the blown base's dust reaches the street "
                   "there; not found yet why the whole cloud read from a split march differs there")
def test_no_rim_of_other_lumps_at_a_pieces_foot_in_the_dense_current(split_ring):
    ring, split, clear, _ = split_ring
    foot = ring.copy()
    foot[:301] = False
    _ring_gaps(foot, split, clear)


def test_a_piece_just_above_a_near_car_gets_the_dust_in_front_of_the_piece_not_of_the_car():
    """A march pixel stops at the nearest thing touching it (a holdout's depth is pooled to
    its nearest), so the march pixels along a car's roof stopped at the car, 26 m nearer
    than the debris just above it. Read plainly there, the debris took the little dust in
    front of the car and its dark underside showed as a jagged black line along the roof
    (img_140 at 100 %). The dust in front of the debris along the roof must be what it is
    with no car there at all."""
    import moderngl
    frame = _cloud_at(2.0)
    W, H, w, h = _SIZES
    piece = np.zeros((H, W), np.float32)
    piece[230:311, 201:439] = 38.0                       # in the cloud's dense foot
    with_car = piece.copy()
    with_car[311:, 201:439] = 12.0                       # the car's roof at row 311, off the march grid

    def march(full):                                     # the nearest thing touching each march pixel
        near = np.where(full > 0, full, np.inf)
        lo = near.reshape(h, H // h, w, W // w).min(axis=(1, 3))
        return np.where(np.isfinite(lo), lo, 0.0).astype(np.float32)
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = _street_renderer(ctx)
        car = r.render(frame, march(with_car), with_car)
        alone = r.render(frame, march(piece), piece)
        r.release()
    finally:
        ctx.release()
    fa, fb = car.front[299:311, 205:435, 3], alone.front[299:311, 205:435, 3]   # 12 rows above the roof
    assert fb.mean() > 0.3                               # dense dust in front of the debris
    assert car.front[315:355, 205:435, 3].mean() < 0.5 * fb.mean()   # and less in front of the car
    # Read plainly, the last four rows above the roof kept 0-3 % of it (0.01 against 0.45);
    # read by depth the rows differ from the car-less ones by the march's interpolation.
    rows = fa.mean(axis=1) / fb.mean(axis=1)
    assert rows.min() > 0.75, rows
    assert abs(fa.mean() / fb.mean() - 1) < 0.15, fa.mean() / fb.mean()


def test_the_noise_is_carried_along_by_the_flow_but_not_drawn_out_by_its_shear():
    """The detail coordinates are advected with the air between renewals. Carried along
    by a uniform flow they keep its motion exactly (the lumps move with the cloud); drawn
    out by a shear (a current along the street faster near the ground: 3 m/s per metre of
    height over its 0.4 s life) the noise they carry is stretched along the flow, and
    thin dust integrated down the rays showed its lumps as a sunburst of radial streaks
    over img_190's sky. The shear left in them is at most STRETCH_MAX per metre."""
    from derrumbe.stages.dust import Grid
    from derrumbe.stages.dust_render import STRETCH_MAX, unstretched
    nz, ny, nx, h = 12, 10, 14, 0.5
    grid = Grid(np.array([-3.0, 0.0, -40.0]), h, (nz, ny, nx))
    centres = np.moveaxis(grid.centres(), -1, 0).astype(np.float32)
    drift = np.array([[0.4, 0.0, 1.0], [0.1, 0.0, 0.3]])
    rest = np.stack([centres - drift[s][:, None, None, None].astype(np.float32) for s in range(2)])
    carried = rest - np.array([0.2, 0.1, 0.9], np.float32)[None, :, None, None, None]
    assert np.allclose(unstretched(carried, grid, drift), carried, atol=1e-5)
    y = centres[1]
    sheared = rest.copy()
    sheared[:, 2] -= (3.0 * 0.4) * y                      # z displacement growing with height
    out = unstretched(sheared, grid, drift)
    for s in range(2):
        dz = out[s, 2] - rest[s, 2]
        shear = np.gradient(dz, h, axis=1)[:, 1:-1]       # d(dz)/dy away from the grid's faces
        assert np.abs(shear).max() <= STRETCH_MAX * 1.01, np.abs(shear).max()
        assert np.abs(np.gradient(sheared[s, 2] - rest[s, 2], h, axis=1)).max() > 4 * STRETCH_MAX


def _dust_state(sigma: np.ndarray, origin: np.ndarray, h: float) -> dict:
    """The dust state of one frame holding the extinction grid `sigma` (nz, ny, nx) with
    its corner at origin and cells h m a side, the detail coordinates at rest."""
    nz, ny, nx = sigma.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    centres = np.stack([origin[0] + (i + 0.5) * h, origin[1] + (j + 0.5) * h, origin[2] + (k + 0.5) * h])
    zero = np.zeros((nz, ny, nx), np.float16)
    return dict(t=np.array([2.0]), w=np.array([1.0, 0.0]), origin=origin, h=np.array([h]),
                shape=np.array([nz, ny, nx]), sigma=sigma.astype(np.float16),
                coords=np.concatenate([centres, centres]).astype(np.float16),
                vel=np.zeros((3, nz, ny, nx), np.float16), turb=np.ones((nz, ny, nx), np.float16),
                heat=zero, solid=zero)


def _slab(face_z: float) -> dict:
    """A dense slab of dust 20 m wide and 12 m tall, its flat face toward the lens at
    depth face_z (m)."""
    h, (nz, ny, nx) = 0.25, (48, 48, 80)
    origin = np.array([-10.0, 0.0, -42.0])
    z = origin[2] + (np.arange(nz) + 0.5) * h
    return _dust_state(np.where(z <= -face_z, 3.0, 0.0)[:, None, None] * np.ones((1, ny, nx)), origin, h)


def test_a_front_a_little_deeper_shows_the_same_lumps():
    """The render's finest lumps belong to the cloud, not to the depth at which the ray
    first meets it. Looked up at that front point, noise finer than a step in the front's
    depth is unrelated on either side of the step: over a cloud wound into layers every
    step's outline was drawn as a thin band, marble rather than billows (img_270, img_288
    from 60 %). A flat front moved 0.4 m deeper (of 30 m) shows the same lumps, a little
    smaller: the fine luminance of the two renders correlates."""
    import moderngl
    cam = CAM.scaled(1280, 720)
    light = Lighting(SUN, np.array([1.0, 0.93, 0.82]) * 1.2, np.array([0.55, 0.65, 0.8]) * 0.35, np.ones(3) * 0.5)
    W, H = 1280 // 3, 720 // 3
    far = np.full((720, 1280), 1e4, np.float32)
    lums = []
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)),
                         cv2.resize(far, (W, H), interpolation=cv2.INTER_NEAREST), (W, H), backdrop_full=far)
        for z in (30.0, 30.4):
            out = r.render(dust_frame(_slab(z), SUN), np.zeros((H, W), np.float32), np.zeros((720, 1280), np.float32))
            lum = out.front[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
            lums.append((lum, out.front[..., 3]))
        r.release()
    finally:
        ctx.release()
    # The middle of the face, well inside both renders' outlines (8 x 3 m of it).
    v0, v1 = (int(cam.cy - cam.f_px * (y - cam.eye_m) / 30.4) for y in (9.0, 6.0))
    u0, u1 = (int(cam.cx + cam.f_px * x / 30.4) for x in (-4.0, 4.0))
    assert all((a[v0:v1, u0:u1] > 0.99).all() for _, a in lums)
    fine = [lum[v0:v1, u0:u1] - cv2.GaussianBlur(lum[v0:v1, u0:u1], (0, 0), 4.0) for lum, _ in lums]
    assert all(f.std() > 0.003 for f in fine)                       # there is fine detail to compare
    corr = float(np.corrcoef(fine[0].ravel(), fine[1].ravel())[0, 1])
    assert corr > 0.6, corr


def test_what_shows_over_the_roof_stands_behind_the_building_and_a_side_wall_at_the_street():
    """The plate's opaque depth for the dust: a wall beside the building stands on the
    street line (dust behind the facade plane hidden there), but what the plate shows over
    the building's roofline is seen past the building, so the dust behind the facade shows
    in front of it (taken as a wall at the street line, the demo's brick block behind the
    roof cut the cloud along the roof's straight line)."""
    from derrumbe.stages.dust_render import FAR
    cam = CAM.scaled(640, 360)
    sky = np.zeros((360, 640), np.float32)
    sky[:40] = 1                                          # a strip of sky at the top
    building = np.zeros((360, 640), np.float32)
    building[150:300, 200:440] = 1                        # the building; a tall block behind it
    d = backdrop_depth(cam, (640, 360), building, sky, 30.0)
    horizon = int(cam.cy)
    assert horizon > 100
    assert np.all(d[60:140, 260:380] >= FAR * 0.99)       # over the roof, below the sky: far
    assert np.allclose(d[60:140, 20:150], 30.0)           # beside it: a wall at the street line
    assert np.all(d[5:30, :] >= FAR * 0.99)               # the sky


def test_old_brickworks_dust_is_a_warmer_tan_than_concretes_and_coats_the_rubble_in_its_hue():
    """Crushed old brickwork (lime mortar and plaster, tinted by brick powder) makes a light
    tan dust, redder than concrete's grey-beige; the powder on the debris takes the cloud's
    hue at the coat's own, lower level."""
    from derrumbe.frames import dust_albedo
    from derrumbe.materials import MATERIALS
    from derrumbe.spec import ShotSpec
    from derrumbe.stages.render import DUST, _coat_colour
    spec = ShotSpec(plate="p.png", box=(0, 0, 10, 10))
    light = Lighting(SUN, np.ones(3), np.full(3, 0.3), np.full(3, 0.4))      # a grey facade: no tint
    conc, brick = (colour.working_to_rec709(dust_albedo(spec, light, MATERIALS[m])) for m in ("concrete", "masonry"))
    assert brick[0] > brick[1] > brick[2] and conc[0] > conc[2]
    assert brick[0] / brick[2] > 1.25 * conc[0] / conc[2]          # warmer by a visible step
    assert abs(colour.luminance(colour.rec709_to_working(brick)) /
               colour.luminance(colour.rec709_to_working(conc)) - 1) < 0.1   # as light: powder, not brick
    coat = _coat_colour(dust_albedo(spec, light, MATERIALS["masonry"]))
    want = colour.luminance(colour.rec709_to_working(np.array(DUST)))
    assert abs(colour.luminance(coat) - want) < 1e-6
    rb = colour.working_to_rec709(coat)
    assert np.isclose(rb[0] / rb[2], brick[0] / brick[2], rtol=1e-3)


def test_a_cloud_thinned_for_the_see_through_opens_into_billows_not_a_uniform_veil():
    """--see-through thins the cloud round a camera inside it (img_100's to a twentieth). Thinned
    by scaling alone, it was a uniform veil that only lowered the frame's contrast (the
    review: "a uniform haze ... instead of volumes that catch the light"); a thinned cloud
    is cut into billows by its own (thinned) density, so where the full cloud is solid,
    the thinned one has clear gaps between lumps: its tenth percentile of alpha is under a
    quarter of its mean and its spread (std / mean) over 0.85 (0.90 on this test's cloud,
    simulated by the collapse, since 0b5eee5 changed how the crushed walls leave the
    pile). (Judged half way toward its thinned density, the cut only rippled the
    veil: spread 0.70, a quarter of it under 0.13 of opacity; the review still called
    img_181 "a flat beige veil".)"""
    import moderngl
    state = _cloud_at_3s()
    cam = CAM.scaled(640, 360)
    light, sky, building = _light_and_backdrop()
    W, H = 640 // 3, 360 // 3
    alpha = {}
    for thin in (1.0, 0.05):
        ctx = moderngl.create_standalone_context(backend="egl")
        try:
            r = DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)),
                             backdrop_depth(cam, (W, H), building, sky, 40.0), (W, H),
                             backdrop_full=backdrop_depth(cam, (640, 360), building, sky, 40.0))
            alpha[thin] = r.render(dust_frame(state, SUN, thin), np.zeros((H, W), np.float32),
                                   np.zeros((360, 640), np.float32)).front[..., 3].copy()
            r.release()
        finally:
            ctx.release()
    dense = alpha[1.0] > 0.9
    assert dense.sum() > 5000
    a = alpha[0.05][dense]
    assert np.percentile(a, 10) < 0.25 * a.mean(), (np.percentile(a, 10), a.mean())
    assert a.std() / a.mean() > 0.85, a.std() / a.mean()


def _render_over_nothing(state: dict, light, albedo, far: np.ndarray | None = None):
    """A dust state rendered at 1280x720 (march at a third) with nothing behind it for 10 km,
    or against `far`, the plate's opaque depth per output pixel."""
    import moderngl
    cam = CAM.scaled(1280, 720)
    W, H = 1280 // 3, 720 // 3
    far = np.full((720, 1280), 1e4, np.float32) if far is None else far
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = DustRenderer(ctx, cam, light, albedo, cv2.resize(far, (W, H), interpolation=cv2.INTER_NEAREST), (W, H),
                         backdrop_full=far)
        out = r.render(dust_frame(state, light.sun_dir), np.zeros((H, W), np.float32),
                       np.zeros((720, 1280), np.float32))
        r.release()
    finally:
        ctx.release()
    return cam, out


def _dense_face_over_wall(light, albedo, wall_light) -> float:
    """A dense slab of dust 30 m away in `light`: the luminance of the middle of its face
    toward the lens over that of a wall of the dust's albedo lit by `wall_light`."""
    cam, out = _render_over_nothing(_slab(30.0), light, albedo)
    v0, v1 = (int(cam.cy - cam.f_px * (y - cam.eye_m) / 30.0) for y in (9.0, 3.0))
    u0, u1 = (int(cam.cx + cam.f_px * x / 30.0) for x in (-6.0, 6.0))
    a = out.front[v0:v1, u0:u1, 3]
    assert (a > 0.99).all()
    face = np.median((out.front[v0:v1, u0:u1, :3] / a[..., None]).reshape(-1, 3), axis=0)
    wall = albedo * wall_light
    return float(colour.luminance(face[None, None])[0, 0] / colour.luminance(wall[None, None])[0, 0])


def test_a_dense_clouds_face_under_an_overcast_sky_is_lit_like_a_wall_of_its_colour_not_smoke():
    """Under an overcast sky the light on a cloud's face toward the lens is the sky's, as
    on a wall facing the street: footage shows a collapse's cloud there about as bright as
    a wall of the dust's colour, its lumps lighter and darker round that. A dense slab of
    dust 30 m away, in the light the plate gives a front wall (sky only, a trace of sun):
    the middle of its face comes out within 0.6-1.3 of a wall of the dust's albedo in that
    light. (With each lump's shadow taking all the sky's light it was 0.3 of it, the
    near-black of smoke: the demo's plume.)"""
    amb = np.array([0.55, 0.6, 0.68]) * 1.2
    light = Lighting(SUN, np.array([1.0, 0.95, 0.9]) * 0.02, amb, np.ones(3) * 0.5)
    # A front wall sees 0.6 of the sky's light.
    ratio = _dense_face_over_wall(light, colour.srgb_colour((196, 190, 178)), 0.6 * amb)
    assert 0.6 < ratio < 1.3, ratio


@pytest.mark.parametrize("azimuth", [0.0, -30.0])
def test_a_dense_clouds_sunlit_face_is_lit_like_a_wall_of_its_colour_not_smoke(azimuth):
    """The sunlit counterpart of the overcast test: with the sun behind the camera, the face
    of a dense cloud toward the lens is the sunlit side, and footage shows it bright, about
    a wall of the dust's colour in that light (the dust's colour is what a dense cloud looks
    like). The grid puts a dense face's first cells a few optical depths into the sun's
    shadow, where the single-scattering octaves leave little: the sunlight a dense cloud
    diffuses carries it. A dense slab 30 m away in a hard sun from behind the camera: the
    middle of its face within 0.6-1.3 of a wall of the dust's albedo facing the lens in the
    same sun and sky (0.21 without the diffused light: dust in a sunny plate was brown smoke,
    img_140 and img_190)."""
    from derrumbe.stages.lighting import sun_vector
    sun_dir = sun_vector(azimuth, 40.0)
    sun, amb = np.array([1.0, 0.95, 0.9]), np.array([0.3, 0.33, 0.4])
    light = Lighting(sun_dir, sun, amb, np.ones(3) * 0.5)
    # A wall facing the lens, in the sun and 0.6 of the sky.
    ratio = _dense_face_over_wall(light, colour.srgb_colour((196, 190, 178)), 0.6 * amb + sun * sun_dir[2])
    assert 0.6 < ratio < 1.3, ratio


def _deep_slab(near_m: float, far_m: float, sigma: float) -> dict:
    """Dust of even extinction `sigma` (1/m) filling the street from near_m to far_m in
    front of the lens, 30 m wide and 15 m tall."""
    h, (nz, ny, nx) = 0.5, (48, 30, 60)
    origin = np.array([-15.0, 0.0, -(far_m + 1.0)])
    z = -(origin[2] + (np.arange(nz) + 0.5) * h)
    return _dust_state(np.where((z >= near_m) & (z <= far_m), sigma, 0.0)[:, None, None] * np.ones((1, ny, nx)),
                       origin, h)


def _fronts_640(frames, building: np.ndarray, depth_m: float, opaque_m: float = 0.0):
    """Dust frames rendered at 640x360 (march at a third) in a low warm sun, against a plate
    whose building mask is `building` (no sky) and whose facade stands depth_m away; a piece
    opaque_m away covers the whole frame (0: none). The camera and each frame's front."""
    import moderngl
    cam = CAM.scaled(640, 360)
    light = Lighting(SUN, np.array([1.0, 0.93, 0.82]) * 1.2, np.array([0.55, 0.65, 0.8]) * 0.35, np.ones(3) * 0.5)
    W, H = 640 // 3, 360 // 3
    no_sky = np.zeros((360, 640), np.float32)
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)),
                         backdrop_depth(cam, (W, H), building, no_sky, depth_m), (W, H),
                         backdrop_full=backdrop_depth(cam, (640, 360), building, no_sky, depth_m))
        fronts = [r.render(f, np.full((H, W), opaque_m, np.float32),
                           np.full((360, 640), opaque_m, np.float32)).front.copy() for f in frames]
        r.release()
    finally:
        ctx.release()
    return cam, fronts


def test_a_thinned_cloud_round_the_lens_gathers_into_clumps_with_windows_through_it():
    """A camera 17 m from a collapse stands in dust of optical depth about 20 (img_100,
    img_270); the see-through thins it to 0.8 between the lens and the building. Thinned
    evenly that is an alpha of 0.55 at every pixel: the flat beige veil that lifted the
    plate's blacks from 40 % on every plate (the darkest 1 % of pixels at 60-90 of 255
    against 13-20 in the plates). Gathered into clumps round windows that run along the
    lens's rays, the same dust leaves a good share of the frame nearly clear (the building
    seen through a window) and a good share dense, and the mean opacity stays about the
    even veil's (the see-through still lets about as much of the building through)."""
    state = _deep_slab(12.0, 32.0, 1.0)
    cam, fronts = _fronts_640([dust_frame(state, SUN, thin) for thin in (1.0, 0.04)],
                              np.ones((360, 640), np.float32), 34.0)
    alpha = {1.0: fronts[0][..., 3], 0.04: fronts[1][..., 3]}
    # The slab's middle as the lens sees it: 2-12 m up and 8 m either side at its far face.
    v0, v1 = (int(cam.cy - cam.f_px * (y - cam.eye_m) / 32.0) for y in (12.0, 2.0))
    u0, u1 = (int(cam.cx + cam.f_px * x / 32.0) for x in (-8.0, 8.0))
    assert (alpha[1.0][v0:v1, u0:u1] > 0.99).all()
    a = alpha[0.04][v0:v1, u0:u1]
    even = 1.0 - np.exp(-0.04 * 20.0)
    assert (a < 0.15).mean() > 0.3, (a < 0.15).mean()        # evenly thinned: 0.05 (the billows' own gaps)
    assert (a > 0.7).mean() > 0.1, (a > 0.7).mean()             # evenly thinned: under 0.05
    assert 0.15 < a.mean() < even, (a.mean(), even)


def test_only_the_dense_dust_in_the_sightline_is_gathered_not_the_plume_over_the_roof():
    """The windows are for seeing the building through the dust before it: the plume over
    the roof, gathered too, tore into dripping patches over the sky (img_270 at 100 %), the
    current on the street, gathered, left the demo's pile crisp and dust-free, and an
    unthinned cloud is left as it is."""
    from derrumbe.stages.dust import Sightline
    state = _deep_slab(12.0, 32.0, 1.0)
    sight = Sightline(roof_m=6.0, back_m=34.0)
    f = dust_frame(state, SUN, 0.04, sight)
    y = f.grid.centres()[..., 1]
    assert np.median(f.gather[(y > 4.0) & (y < 5.0) & (f.sigma > 0)]) > 0.9
    assert f.gather[y < 1.5].max() == 0.0                       # the current on the street
    assert f.gather[y > 6.0 + 0.4 * 6.0 + 4.0].max() == 0.0      # past the roof and its ease
    assert not dust_frame(state, SUN, 1.0, sight).gather.any()
    # Once the building is down (its pile 4 m, the building 8 m), the cloud over the pile
    # where it stood is gathered too (left whole it was the veil over the upper half of
    # every frame), the plume above it not.
    down = dust_frame(state, SUN, 0.04, Sightline(roof_m=4.0, back_m=34.0, building_m=8.0)).gather
    assert np.median(down[(y > 8.5) & (y < 9.5) & (f.sigma > 0)]) > 0.3
    assert down[y > 8.0 + 4.0].max() == 0.0


def test_a_column_of_dust_risen_from_the_street_keeps_round_fine_lumps_not_vertical_streaks():
    """Dust lifted from the street carries detail coordinates that all trace back to the
    street: the advected noise is stretched up the column, and at the finest scale it drew
    vertical streaks down the current's foot (img_100 and the demo from 40 %). The finest
    octave moves with the cloud as a whole (its drift) instead, so a face whose stored
    coordinates are squashed thirtyfold in height still shows round fine lumps: the
    high-passed luminance varies about as much across as down (old: 1.32 times as much)."""
    import moderngl
    cam = CAM.scaled(1280, 720)
    light = Lighting(SUN, np.array([1.0, 0.93, 0.82]) * 1.2, np.array([0.55, 0.65, 0.8]) * 0.35, np.ones(3) * 0.5)
    W, H = 1280 // 3, 720 // 3
    far = np.full((720, 1280), 1e4, np.float32)
    state = _deep_slab(12.0, 32.0, 3.0)
    coords = state["coords"].astype(np.float32).reshape((2, 3) + state["sigma"].shape)
    coords[:, 1] *= 0.03                                  # risen thirtyfold from near the street
    state["coords"] = coords.reshape((6,) + state["sigma"].shape).astype(np.float16)
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)),
                         cv2.resize(far, (W, H), interpolation=cv2.INTER_NEAREST), (W, H), backdrop_full=far)
        out = r.render(dust_frame(state, SUN), np.zeros((H, W), np.float32), np.zeros((720, 1280), np.float32))
        r.release()
    finally:
        ctx.release()
    lum = out.front[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    v0, v1 = (int(cam.cy - cam.f_px * (y - cam.eye_m) / 12.0) for y in (8.0, 4.0))
    u0, u1 = (int(cam.cx + cam.f_px * x / 12.0) for x in (-3.0, 3.0))
    assert (out.front[v0:v1, u0:u1, 3] > 0.99).all()
    face = lum[v0:v1, u0:u1]
    fine = face - cv2.GaussianBlur(face, (0, 0), 2.0)
    across = (np.diff(fine, axis=1) ** 2).mean()
    down = (np.diff(fine, axis=0) ** 2).mean()
    assert fine.std() > 0.005
    assert across / down < 1.2, across / down


def _slab_fronts(states) -> list:
    """Deep slabs of dust rendered at 640x360 (march at a third) over nothing: each
    state's layers (front, motion)."""
    import moderngl
    cam = CAM.scaled(640, 360)
    light = Lighting(SUN, np.array([1.0, 0.93, 0.82]) * 1.2, np.array([0.55, 0.65, 0.8]) * 0.35, np.ones(3) * 0.5)
    W, H = 640 // 3, 360 // 3
    far = np.full((360, 640), 1e4, np.float32)
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        r = DustRenderer(ctx, cam, light, colour.srgb_colour((200, 188, 168)),
                         cv2.resize(far, (W, H), interpolation=cv2.INTER_NEAREST), (W, H), backdrop_full=far)
        outs = [r.render(dust_frame(s, SUN), np.zeros((H, W), np.float32), np.zeros((360, 640), np.float32))
                for s in states]
        r.release()
    finally:
        ctx.release()
    return outs


def _luminance(front: np.ndarray) -> np.ndarray:
    return front[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def test_air_rolling_inside_a_cloud_that_stays_put_does_not_smear_it():
    """The blur follows what is drawn, and the drawn lumps travel with the cloud's drift,
    not with the air passing through them. A cloud whose air rolls over (toward the lens
    along its top half, away along its bottom half, 8 m/s, as in a current's head) while
    the cloud itself stays where it is shows the same picture frame after frame: it must
    not be smeared. Blurred by the air's own velocity (the old way) it was, 12 px a frame
    at 6 m, into the radial streaks the reviews saw near the lens (img_270 at 40 %)."""
    s = _deep_slab(6.0, 20.0, 3.0)
    nz, ny, nx = s["sigma"].shape
    y = (np.arange(ny) + 0.5) * float(s["h"][0])
    vel = np.zeros((3, nz, ny, nx), np.float32)
    vel[2] = np.where(y > 7.5, 8.0, -8.0)[None, :, None]     # the slab is 15 m tall: half each way
    s["vel"] = vel.astype(np.float16)
    out, = _slab_fronts([s])
    dense = out.front[..., 3] > 0.99
    assert dense.mean() > 0.5
    blurred = np.empty_like(out.front)
    vector_blur(np.ascontiguousarray(out.front), out.motion, 0.5, blurred)
    lum, lum_b = _luminance(out.front), _luminance(blurred)
    fine = lum - cv2.GaussianBlur(lum, (0, 0), 2.0)
    assert fine[dense].std() > 0.005                          # there are fine lumps to smear
    assert np.abs(lum_b - lum)[dense].mean() < 0.1 * fine[dense].std()


def test_a_cloud_carried_by_the_wind_blurs_as_far_as_its_picture_moves():
    """The same dust carried bodily 9 m/s across the frame (its grid and its drift moved on
    by a frame's travel; the detail coordinates are labels carried with it): the picture
    shifts, and the motion the blur uses is that shift, measured between the two renders
    by the best-matching offset of their luminance."""
    s = _deep_slab(10.0, 24.0, 3.0)
    v = np.array([9.0, 0.0, 0.0])
    s["vel"] = np.broadcast_to(v[:, None, None, None], (3,) + s["sigma"].shape).astype(np.float16)
    s["drift"] = np.zeros((2, 3))
    moved = dict(s, origin=s["origin"] + v / 24, drift=s["drift"] + v / 24)
    a, b = _slab_fronts([s, moved])
    dense = a.front[..., 3] > 0.99
    la, lb = (cv2.GaussianBlur(_luminance(o.front), (0, 0), 2.0) for o in (a, b))
    errs = [np.abs(la[60:300, 100:500] - lb[60:300, 100 + k:500 + k]).mean() for k in range(40)]
    shift = int(np.argmin(errs))
    assert errs[shift] < 0.75 * errs[0]                       # the picture did move
    mx = float(np.median(a.motion[..., 0][dense]))
    assert abs(mx - shift) <= 0.15 * shift + 1.0, (mx, shift)
    assert abs(float(np.median(a.motion[..., 1][dense]))) < 0.5


def test_a_dense_clouds_edge_against_a_haze_keeps_the_haze_beside_it():
    """A dense cloud's edge is steepened to look as sharp as a photographed cloud's, from
    the cloud down to what is beside it. Steepened down to clear air where a thinner haze
    lay beside it (dust over the facade), the haze was cut away along the edge and a band
    of bare, darker plate outlined the cloud (img_270 and img_100 at 20 %). Beside the
    edge the haze must stay as opaque as it is further out."""
    h, (nz, ny, nx) = 0.5, (60, 30, 60)
    origin = np.array([-15.0, 0.0, -31.0])
    z = -(origin[2] + (np.arange(nz) + 0.5) * h)[:, None, None]
    x = (origin[0] + (np.arange(nx) + 0.5) * h)[None, None, :]
    haze = np.where((z >= 8.0) & (z <= 14.0), 0.07, 0.0) * np.ones((1, ny, 1))
    dense = np.where((z >= 20.0) & (z <= 28.0) & (x < -2.0), 3.0, 0.0) * np.ones((1, ny, 1))
    state = _dust_state(haze + dense, origin, h)
    cam, fronts = _fronts_640([dust_frame(state, SUN)], np.ones((360, 640), np.float32), 30.0)
    a = fronts[0][..., 3]
    rows = slice(int(cam.cy - cam.f_px * (8.0 - cam.eye_m) / 24.0), int(cam.cy - cam.f_px * (3.0 - cam.eye_m) / 24.0))
    edge = int(round(cam.cx + cam.f_px * -2.0 / 24.0))          # the dense block's side, seen at its middle
    assert a[rows, edge - 40:edge - 20].mean() > 0.9            # the dense cloud
    assert 0.2 < float(np.median(a[rows, edge + 60:edge + 120])) < 0.6   # the haze well away from it
    # Each row's least opaque pixel in 12 px beside the edge's ramp, against the same in
    # 12 px of the haze well away from it (the haze is lumpy: 0.2-0.5). With the haze cut
    # away beside the edge, 0.01 against 0.22; kept, 0.12 (the least of its lumps there).
    beside = np.median(a[rows, edge + 3:edge + 15].min(axis=1))
    far = np.median(a[rows, edge + 80:edge + 92].min(axis=1))
    assert beside > 0.4 * far, (beside, far)


def _floating_slab(face_z: float) -> dict:
    """A dense slab of dust 20 m wide from 4 to 10 m up, its flat face toward the lens at
    depth face_z (m): a cloud with a crown above it and a belly under it."""
    h, (nz, ny, nx) = 0.25, (48, 56, 80)
    origin = np.array([-10.0, 0.0, -42.0])
    z = origin[2] + (np.arange(nz) + 0.5) * h
    y = (np.arange(ny) + 0.5) * h
    inside = (z <= -face_z)[:, None, None] & ((y > 4.0) & (y < 10.0))[None, :, None]
    return _dust_state(np.where(inside, 3.0, 0.0) * np.ones((1, 1, nx)), origin, h)


def test_a_clouds_crown_is_lit_brighter_than_its_belly():
    """A lump of dense dust under an overcast sky is lit on its crown, which sees the whole
    sky, and dark on its belly, which sees the street: photographs show the tops of a
    collapse's billows light and their undersides shaded. A dense slab floating 4-10 m up,
    30 m away: the band just inside its top edge is at least 1.8 times as bright as the
    band just inside its bottom edge (1.4 when each lump's edge was lit like its face)."""
    amb = np.array([0.55, 0.6, 0.68]) * 1.2
    light = Lighting(SUN, np.array([1.0, 0.95, 0.9]) * 0.02, amb, np.ones(3) * 0.5)
    cam, out = _render_over_nothing(_floating_slab(30.0), light, colour.srgb_colour((196, 190, 178)))
    top, bottom = (int(cam.cy - cam.f_px * (y - cam.eye_m) / 30.0) for y in (10.0, 4.0))
    u0, u1 = (int(cam.cx + cam.f_px * x / 30.0) for x in (-6.0, 6.0))
    a = out.front[..., 3]
    lum = colour.luminance(out.front[..., :3] / np.maximum(a, 1e-4)[..., None])
    band = lambda r0, r1: float(np.median(lum[r0:r1, u0:u1][a[r0:r1, u0:u1] > 0.9]))
    crown, belly = band(top + 4, top + 16), band(bottom - 16, bottom - 4)
    assert crown > 1.8 * belly, (crown, belly)


def test_a_see_through_puffs_belly_is_not_shaded_as_a_dense_clouds():
    """A belly is in the shadow of the lump above it, and a lump only shades what is under
    it as much as it is opaque: a puff in the sky seen 0.6-0.85 opaque, shaded as a dense
    cloud's belly, floated as a dark-bottomed saucer (img_140 at 40 %, judge 50). The same
    slab as above at a thirtieth of the extinction (0.57 opaque through its 12 m): the
    band just inside its bottom edge is at least 0.8 of the brightness of its middle (0.92;
    shaded as before, 0.40). The dense slab's crown and belly are the test above's."""
    amb = np.array([0.55, 0.6, 0.68]) * 1.2
    light = Lighting(SUN, np.array([1.0, 0.95, 0.9]) * 0.02, amb, np.ones(3) * 0.5)
    ratios = {}
    for name, scale in (("see-through", 1.0 / 30.0),):
        state = _floating_slab(30.0)
        state["sigma"] = (state["sigma"].astype(np.float32) * scale).astype(np.float16)
        cam, out = _render_over_nothing(state, light, colour.srgb_colour((196, 190, 178)))
        top, bottom = (int(cam.cy - cam.f_px * (y - cam.eye_m) / 30.0) for y in (10.0, 4.0))
        u0, u1 = (int(cam.cx + cam.f_px * x / 30.0) for x in (-6.0, 6.0))
        a = out.front[..., 3]
        lum = colour.luminance(out.front[..., :3] / np.maximum(a, 1e-4)[..., None])
        mid = (top + bottom) // 2
        band = lambda r0, r1: float(np.median(lum[r0:r1, u0:u1]))
        ratios[name] = (band(bottom - 16, bottom - 4) / band(mid - 6, mid + 6),
                        float(np.median(a[mid - 6:mid + 6, u0:u1])))
    assert 0.5 < ratios["see-through"][1] < 0.9, ratios
    assert ratios["see-through"][0] > 0.8, ratios


def test_the_cloud_along_a_buildings_foot_is_no_darker_than_above_it():
    """The rays that meet the building stop at its wall; the ones a row lower stop short of
    it, on the street, and see less of a cloud lying at the wall's foot. That ledge is no
    lump's belly: shaded as one, it drew a dark band just above the building's base line,
    ending in the line's straight edge (across the demo's parked cars at 20 %). Dense dust
    0-6 m up, 34-42 m away, against a wall 40 m away, under an overcast sky: the band just
    above the wall's base is at least 0.8 of the brightness of the same face higher up."""
    amb = np.array([0.55, 0.6, 0.68]) * 1.2
    light = Lighting(SUN, np.array([1.0, 0.95, 0.9]) * 0.02, amb, np.ones(3) * 0.5)
    state = _dust_state(np.full((32, 32, 80), 3.0), np.array([-10.0, 0.0, -42.0]), 0.25)
    cam = CAM.scaled(1280, 720)
    rows = np.arange(720, dtype=np.float32)[:, None]
    base = cam.cy + cam.f_px * cam.eye_m / 40.0
    street = cam.f_px * cam.eye_m / np.maximum(rows - cam.cy, 1e-3)
    back = np.broadcast_to(np.where(rows < base, 40.0, street), (720, 1280)).astype(np.float32)
    cam, out = _render_over_nothing(state, light, colour.srgb_colour((196, 190, 178)), back)
    u0, u1 = (int(cam.cx + cam.f_px * x / 40.0) for x in (-5.0, 5.0))
    a = out.front[..., 3]
    lum = colour.luminance(out.front[..., :3] / np.maximum(a, 1e-4)[..., None])
    b = int(base)
    band = lambda r0, r1: float(np.median(lum[r0:r1, u0:u1][a[r0:r1, u0:u1] > 0.9]))
    foot, face = band(b - 12, b - 1), band(b - 60, b - 40)
    assert foot > 0.8 * face, (foot, face)


def _holed_layer(near_m: float) -> dict:
    """A dense layer of dust 2 m deep, its face toward the lens at depth near_m, 24 m wide
    and 12 m tall, with round holes 3 m across through it every 5 m."""
    h, (nz, ny, nx) = 0.25, (84, 48, 96)
    origin = np.array([-12.0, 0.0, -32.0])
    z = -(origin[2] + (np.arange(nz) + 0.5) * h)[:, None, None]
    y = ((np.arange(ny) + 0.5) * h)[None, :, None]
    x = (origin[0] + (np.arange(nx) + 0.5) * h)[None, None, :]
    hole = np.hypot((x + 2.5) % 5.0 - 2.5, (y - 6.0 + 2.5) % 5.0 - 2.5) < 1.5
    inside = (z >= near_m) & (z <= near_m + 2.0) & ~hole
    return _dust_state(np.where(inside, 3.0, 0.0), origin, h)


def test_holes_in_dust_lying_on_a_wall_thin_out_softly_while_a_free_clouds_edges_stay_sharp():
    """A dense cloud's outline is steepened to the ~2 px ramp of a photographed cloud: that
    is a lump's silhouette against what lies far behind it. Dust lying a metre or two in
    front of a wall (jetted out of a blown base along its front) ends where its layer
    thins, and cut as sharp, each thin spot in it was a hole with a paper edge onto the
    dark shop front (judge 41, img_270 at 20 %). The same holed layer 1 m in front of a
    wall of the building 30 m away and 15 m in front of it: the holes' edges ramp over at
    least twice as many pixels on the wall as in the free layer, which keeps its sharp
    edges."""
    # The building's front behind it all: a piece (a wall of it) 30 m away.
    nears = (27.0, 13.0)
    cam, fronts = _fronts_640([dust_frame(_holed_layer(near), SUN) for near in nears],
                              np.zeros((360, 640), np.float32), 1e4, opaque_m=30.0)
    ramps = {}
    for near, f in zip(nears, fronts):
        rows = np.zeros(f.shape[:2], bool)      # the layer's middle storeys, clear of its top and foot
        rows[int(cam.cy - cam.f_px * (10.0 - cam.eye_m) / near):int(cam.cy - cam.f_px * (2.0 - cam.eye_m) / near)] = True
        ramps[near] = edge_ramps(f[..., 3], where=rows)
    assert min(len(v) for v in ramps.values()) > 50, {k: len(v) for k, v in ramps.items()}
    free, lying = float(np.median(ramps[13.0])), float(np.median(ramps[27.0]))
    assert free <= 2.5, free
    assert lying >= 2.0 * free, (lying, free)
