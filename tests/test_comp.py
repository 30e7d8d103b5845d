"""Comp helpers: grain matched to the plate's noise, shake only after impacts."""

import cv2
import numpy as np

from derrumbe.stages.comp import estimate_grain, room_darkness, rooms_behind, shake_track


def test_grain_estimate_recovers_the_plates_noise():
    rng = np.random.default_rng(0)
    clean = np.full((200, 200, 3), 120.0)
    for sigma in (1.5, 3.0, 6.0):
        noisy = np.clip(np.rint(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
        # Within 5 % (8-bit rounding adds 1/12 of a code value's variance: < 0.5 % at 1.5).
        assert np.allclose(estimate_grain(noisy) * 255, sigma, rtol=0.05), sigma
    assert np.all(estimate_grain(clean.astype(np.uint8)) * 255 < 1.0)


def test_grain_estimate_adds_in_quadrature_on_a_real_picture():
    """On a textured plate (the demo's, with its own fine detail), noise added with sigma s
    raises the estimate e as sqrt(e0^2 + s^2): it measures the noise, not the picture."""
    from derrumbe.demo import make_demo_plate
    plate = make_demo_plate().srgb.astype(np.float64)
    e0 = estimate_grain(plate.astype(np.uint8)) * 255
    rng = np.random.default_rng(1)
    for sigma in (3.0, 6.0):
        noisy = np.clip(np.rint(plate + rng.normal(0, sigma, plate.shape)), 0, 255).astype(np.uint8)
        e = estimate_grain(noisy) * 255
        assert np.allclose(np.sqrt(e ** 2 - e0 ** 2), sigma, rtol=0.05), (sigma, e, e0)


def test_shake_is_zero_before_the_first_impact_and_follows_it():
    times = np.arange(0, 4, 1 / 96)
    dissipated = np.zeros_like(times)
    dissipated[np.searchsorted(times, 2.0)] = 0.2          # one big impact at 2 s
    frames = np.arange(0, 4, 1 / 24)
    off = shake_track(times, dissipated, 1.0, 1.0, frames, 3.0, 1)
    mag = np.linalg.norm(off, axis=1)
    assert mag[frames < 2.0].max() == 0
    assert mag[(frames > 2.0) & (frames < 2.3)].max() > 0.5
    assert mag[frames > 3.5].max() < 0.25 * mag.max()     # it dies away
    assert not shake_track(times, dissipated, 1.0, 0.0, frames, 3.0, 1).any()


def _flat_layers(H=8, W=8):
    from derrumbe.stages.render import FrameLayers
    z = np.zeros((H, W), np.float32)
    return FrameLayers(debris=np.zeros((H, W, 4), np.float32), static=z.copy(), ground=np.ones((H, W), np.float32),
                       samples=1, depth_sum=z.copy(), depth_n=z.copy())


def _comp(layers, dust, plate_val=0.4):
    from derrumbe.colour import linear_to_u8
    from derrumbe.stages.comp import composite
    H, W = layers.static.shape
    plate = np.full((H, W, 3), plate_val, np.float32)
    return composite(plate, linear_to_u8(plate), plate.copy(), np.zeros((H, W), np.float32),
                     np.zeros((H, W), np.float32), layers, np.zeros(3, np.float32), 0.0, np.zeros(2),
                     np.random.default_rng(0), dust)


def _dust(H=8, W=8, front_a=0.0, back_a=0.0, tau_far=0.0):
    from derrumbe.stages.dust_render import DustLayers
    col = np.array([0.5, 0.45, 0.4], np.float32)
    front = np.zeros((H, W, 4), np.float32)
    front[..., :3], front[..., 3] = col * front_a, front_a
    back = np.zeros((H, W, 4), np.float32)
    back[..., :3], back[..., 3] = col * back_a, back_a
    far = np.zeros((H, W, 2), np.float32)
    far[..., 0] = tau_far
    return DustLayers(front, back, np.zeros((H, W, 2), np.float32), far, 0.6)


def test_dust_layers_composite_in_depth_order_with_premultiplied_alpha():
    layers = _flat_layers()
    layers.debris[..., :3], layers.debris[..., 3] = 0.1, 1.0          # an opaque piece everywhere
    # Dust behind the piece is hidden by it; dust in front covers it.
    behind = _comp(layers, _dust(back_a=1.0))
    assert np.allclose(behind.linear, 0.1, atol=1e-6)
    half = _comp(layers, _dust(front_a=0.5))
    assert np.allclose(half.linear, 0.5 * np.array([0.5, 0.45, 0.4]) + 0.5 * 0.1, atol=1e-6)
    assert np.allclose(half.dust[..., 3], 0.5) and np.allclose(half.debris[..., 3], 0.5)
    # With no piece, the dust behind it is seen over the plate.
    clear = _comp(_flat_layers(), _dust(back_a=0.5))
    assert np.allclose(clear.linear, 0.5 * np.array([0.5, 0.45, 0.4]) + 0.5 * 0.4, atol=1e-6)


def test_the_cloud_darkens_what_it_covers_through_its_optical_depth():
    lit = _comp(_flat_layers(), _dust(tau_far=0.0)).linear
    shaded = _comp(_flat_layers(), _dust(tau_far=5.0)).linear
    # The sun's share (0.6) is nearly gone under 5 optical depths; the sky's part stays.
    assert np.allclose(shaded / lit, 0.6 * np.exp(-5.0) + 0.4, atol=1e-4)


def test_a_holdout_under_the_cloud_is_in_its_shade_as_a_piece_beside_it_is():
    """What stands in the street under the cloud is shaded by it as the debris at its depth
    is (a car left as shot glowed white in the dust's shadow among darkened rubble): the
    sun's share through the optical depth toward the sun, the sky's through the depth
    overhead. Outside the cloud's shade it stays as shot."""
    from derrumbe.colour import linear_to_u8
    from derrumbe.stages.comp import composite
    layers = _flat_layers()
    H, W = layers.static.shape
    layers.debris[:, :4, :3], layers.debris[:, :4, 3] = 0.3, 1.0       # a piece on the left half
    dust = _dust()
    dust.shade_near[..., 0], dust.shade_near[..., 1] = 3.0, 2.0        # toward the sun, overhead
    dust.shade_near[:2] = 0.0                                          # the top rows out of its shade
    plate = np.full((H, W, 3), 0.6, np.float32)
    holdout = np.zeros((H, W), np.float32)
    holdout[:, 4:] = 1.0                                               # a car on the right half
    out = composite(plate, linear_to_u8(plate), plate.copy(), np.zeros((H, W), np.float32), holdout, layers,
                    np.zeros(3, np.float32), 0.0, np.zeros(2), np.random.default_rng(0), dust).linear
    k = 0.6 * np.exp(-3.0) + 0.4 * (0.3 + 0.7 * np.exp(-0.35 * 2.0))
    assert np.allclose(out[2:, 4:], 0.6 * k, atol=1e-5)
    assert np.allclose(out[4:, 0] / 0.3, out[4:, 5] / 0.6, atol=1e-5)        # as the piece is (off its AA'd edge)
    assert np.allclose(out[:2, 4:], 0.6, atol=1e-6)


def test_a_pieces_outline_ramps_over_a_pixel_not_a_staircase():
    """A camera integrates each pixel over its footprint: a piece's edge on the plate is a
    ramp about a pixel wide, not the staircase a one-sample render draws. Along the
    outline the coverage takes in-between values all round it, the piece covers nearly
    as much as it did (its outline's pixels a little less), nothing more than two pixels
    from its outline changes, and nothing spreads onto pixels it did not cover (they
    have no depth to be layered by)."""
    from derrumbe.stages.comp import antialiased
    yy, xx = np.mgrid[0:120, 0:120].astype(np.float32)
    r = np.hypot(yy - 60.2, xx - 59.7)
    disc = (r < 40.3).astype(np.float32)
    debris = np.stack([disc * 0.8, disc * 0.7, disc * 0.6, disc], -1)
    out = antialiased(debris)
    a = out[..., 3]
    ramp = (a > 0.05) & (a < 0.95)
    assert ramp.sum() > 0.8 * 2 * np.pi * 40.3                      # in-between all round the outline
    assert 0.96 * disc.sum() < float(a.sum()) <= disc.sum()
    far = np.abs(r - 40.3) > 2.5
    assert np.array_equal(out[far], debris[far])
    assert not out[disc == 0].any()
    # premultiplied: the colour stays the piece's where it is partly covered
    part = ramp & (a > 0.2)
    assert np.allclose(out[part, 0] / a[part], 0.8, atol=0.02)


def test_a_hole_under_the_standing_storeys_opens_into_a_room_not_onto_the_sky():
    """img_270 at 20 %: a ground-floor panel gone under storeys still standing showed the
    clean plate's sky at street level. A hole under a good part of the building (standing
    or falling) shows the photo's own room darkness (its windows' insides); under a lone
    flying piece, or once the building over it has gone, the clean plate shows."""
    H, W = 100, 60
    matte = np.zeros((H, W), np.float32)
    matte[20:, 10:50] = 1
    plate = np.full((H, W, 3), 0.4, np.float32)
    plate[40:60, 15:45] = (0.03, 0.025, 0.02)                # windows' dark insides (a fifth)
    clean = np.full((H, W, 3), 0.8, np.float32)              # the sky the clean plate shows
    static = np.zeros((H, W), np.float32)
    static[20:70, 10:30] = 1                                 # storeys standing over the left half
    debris_a = np.zeros((H, W), np.float32)
    debris_a[30:33, 40:43] = 1                               # a lone piece flying on the right
    room = room_darkness(plate, matte)
    assert np.all(room < 0.1)
    out = rooms_behind(clean, matte, static, debris_a, room)
    assert np.allclose(out[80, 15], room)                    # the hole under the standing storeys
    assert np.allclose(out[80, 45], clean[80, 45])           # under the lone piece: the sky
    assert np.allclose(out[10, 15], clean[10, 15])           # above the building: the sky
    gone = rooms_behind(clean, matte, np.zeros_like(static), np.zeros_like(debris_a), room)
    assert np.array_equal(gone, clean)                       # nothing left: the clean plate


def test_grey_grain_keeps_the_luminance_level_of_independent_grain():
    """Correlated between channels (as the plates' JPEG noise is), the grain loses its
    coloured speckle but not its luminance level: the reviewers saw the added grain at a
    third more than before as "heavy, added on top"."""
    from derrumbe.stages.comp import grain_field
    w = np.array([0.2126, 0.7152, 0.0722])
    lum = lambda n: float((n @ w).std())
    a = grain_field(300, 400, np.random.default_rng(1), 0.8, 0.0)
    b = grain_field(300, 400, np.random.default_rng(1), 0.8, 0.9)
    assert abs(lum(b) / lum(a) - 1) < 0.03
    chroma = lambda n: float((n[..., 0] - n[..., 2]).std())
    assert chroma(b) < 0.5 * chroma(a)


def _polygon_scene(ss: int) -> np.ndarray:
    """A grey street with two pieces meeting along a shallow slant, their outline at 8 and
    27 degrees off the pixel grid, sampled ss x ss a pixel and averaged (ss = 1: one
    sample a pixel, as the debris render draws)."""
    H = W = 96
    y, x = (np.mgrid[0:H * ss, 0:W * ss] + 0.5) / ss
    inside = (np.abs((x - 48) * np.cos(0.14) + (y - 48) * np.sin(0.14)) < 30) & \
             (np.abs(-(x - 48) * np.sin(0.47) + (y - 48) * np.cos(0.47)) < 26)
    lower = (y - 48) > 0.14 * (x - 48)                   # the second piece's share, along a slant
    img = np.empty((H * ss, W * ss, 3), np.float32)
    img[...] = (0.05, 0.05, 0.06)
    img[inside & ~lower] = (0.7, 0.66, 0.6)
    img[inside & lower] = (0.25, 0.22, 0.2)
    return img.reshape(H, ss, W, ss, 3).mean(axis=(1, 3)), inside.reshape(H, ss, W, ss).mean(axis=(1, 3))


def test_the_pieces_edges_come_out_as_a_supersampled_render_draws_them():
    """FXAA on the pieces: their outline and the edge between two of them, drawn one
    sample a pixel, come out nearer a 16 x 16 supersampled render of the same edges (what
    a sensor integrates) along every edge, and the flat insides are left as they are."""
    from derrumbe.stages.comp import pieces_antialiased
    hard, alpha = _polygon_scene(1)
    truth, _ = _polygon_scene(16)
    out, touched = pieces_antialiased(hard, alpha, np.zeros(alpha.shape, bool))
    edge = np.abs(hard - truth).max(axis=2) > 0.02
    err_hard = float(np.abs(hard - truth)[edge].mean())
    err_aa = float(np.abs(out - truth)[edge].mean())
    assert edge.sum() > 150
    assert err_aa < 0.5 * err_hard, (err_aa, err_hard)     # (0.033 against 0.106)
    flat = ~cv2.dilate(edge.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(out[flat], hard[flat])
    assert touched[edge].mean() > 0.9                    # what changed is marked so it gets grain


def test_dust_settled_on_a_car_greys_its_roof_and_a_persons_shoulders_not_their_sides(monkeypatch):
    """A white car whose roof three seconds of settling covered by 1 - e^-3 is coated by
    COAT_MAX of that on its roof (the band under its outline's top) and COAT_SIDES of it
    on its sides: its pixels move that far from the plate's white toward the dust's albedo
    lit as the street is (sky from above, sun from where it stands). Between them the coat
    fades row by row, with no step a line would show. A dark-clad person with the same
    deposit greys on the head and shoulders and keeps its clothes' dark below; a car whose
    bonnet lies lower than its roof is coated on its bonnet too. A person the cloud never
    reached stays the plate's own, bit for bit; nothing is coated before the dust arrives."""
    from derrumbe.colour import linear_to_u8
    from derrumbe.stages import comp
    from derrumbe.stages.comp import COAT_MAX, COAT_SIDES, composite, settled_dust
    from derrumbe.stages.render import Lighting
    # The coat's mean over each face (its drifts are the next test's).
    monkeypatch.setattr(comp, "powder", lambda a, oid: np.ones(a.shape, np.float32))
    H, W = 40, 70
    plate = np.full((H, W, 3), 0.2, np.float32)
    car, person, away = (np.zeros((H, W), np.float32) for _ in range(3))
    car[12:36, 5:30], person[5:35, 38:52], away[10:35, 60:66] = 1, 1, 1
    car[12:20, 22:30] = 0                # its bonnet, 8 rows under the roof
    plate[car > 0], plate[away > 0] = 0.8, 0.05
    plate[:, 34:56] = 0.02          # the person before a wall as dark: the plate's shading of it is flat
    sun = np.array([0.0, 0.8, 0.6])
    light = Lighting(sun, np.array([1.0, 1.0, 1.0]), np.array([0.3, 0.3, 0.3]), np.ones(3) * 0.5)
    albedo = np.array([0.4, 0.36, 0.3])
    coats = settled_dust([(1, "vehicle", car), (2, "person", person), (3, "person", away)], plate,
                         {"1": [0.0, 1.0, 3.0], "2": [0.0, 1.0, 3.0], "3": [0.0, 0.0, 0.0]}, albedo, light)
    assert coats.at(0) is None
    hold = np.maximum(np.maximum(car, person), away)
    res = composite(plate, linear_to_u8(plate), plate.copy(), np.zeros((H, W), np.float32), hold, _flat_layers(H, W),
                    np.zeros(3, np.float32), 0.0, np.zeros(2), np.random.default_rng(0), coat=coats.at(2))
    # Lit on a surface half turned up: the sky's 0.6 + 0.4 * 0.5, the sun's cosine 0.4 + 0.52.
    lit = albedo * (0.3 * 0.8 + 1.0 * (0.8 * 0.5 + 0.6 * 0.87))
    c = COAT_MAX * (1 - np.exp(-3.0))
    coated = lambda k: (1 - c * k) * 0.8 + c * k * lit
    roof, bonnet, sides = np.zeros((H, W), bool), np.zeros((H, W), bool), np.zeros((H, W), bool)
    roof[16:17, 9:19], bonnet[24:25, 24:27], sides[29:32, 9:19] = True, True, True   # 4 rows under each top
    assert np.allclose(res.linear[roof], coated(1.0), atol=5e-3)     # (the shading blur: < 0.004)
    assert np.allclose(res.linear[bonnet], coated(1.0), atol=5e-3)
    assert np.allclose(res.linear[sides], coated(COAT_SIDES), atol=5e-3)
    # Down the roof's column the coat falls from the roof's to the sides' with no step
    # over a quarter of it (a band of rows coated fully and the rest a fifth stepped 0.8).
    share = (0.8 - res.linear[16:30, 12, 1]) / (0.8 - coated(1.0)[1])
    assert share[0] > 0.98 and share[-1] < COAT_SIDES + 0.02
    assert np.all(np.diff(share) <= 1e-3) and -np.diff(share).max() < 0.25 * (1 - COAT_SIDES), np.diff(share)
    # The person's head and shoulders take the full coat, its legs a fifth of it.
    head, legs = res.linear[6:8, 43:47], res.linear[25:32, 43:47]
    assert np.allclose(head, (1 - c) * 0.02 + c * lit, atol=5e-3)
    assert np.allclose(legs, (1 - c * COAT_SIDES) * 0.02 + c * COAT_SIDES * lit, atol=5e-3)
    assert legs.mean() < head.mean() / 3
    assert np.array_equal(res.frame[away > 0], linear_to_u8(plate)[away > 0])
    assert res.touched[car > 0].all()


def test_settled_dust_lies_in_drifts_on_a_near_car_and_evenly_on_a_far_one():
    """Dust settles unevenly: in drifts a few centimetres to a hand across, thicker where
    they gather, never far below the even coat between them. On a car near the lens (200
    px tall) the roof's coat keeps the even coat's mean (within 10 %) but varies by more
    than a quarter of it over drifts of several pixels, and nowhere falls under half of
    it; on a car down the street (25 px tall) the drifts are under a pixel and it is even
    (within 5 %): blotched at the pixel, the demo's cars broke into patches. Laid evenly on
    the near car, the coat was a uniform tint over every reflection, a see-through ghost
    (img_190 from 40 %). The drifts stay where they are as the dust thickens."""
    from derrumbe.stages.comp import COAT_MAX, settled_dust
    from derrumbe.stages.render import Lighting
    H, W = 300, 400
    plate = np.full((H, W, 3), 0.3, np.float32)
    near, far = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    near[50:250, 20:380], far[262:287, 20:120] = 1, 1
    plate[near > 0], plate[far > 0] = 0.02, 0.02
    light = Lighting(np.array([0.0, 0.8, 0.6]), np.ones(3), np.ones(3) * 0.3, np.ones(3) * 0.5)
    dust = settled_dust([(1, "vehicle", near), (2, "vehicle", far)], plate, {"1": [1.0, 3.0], "2": [1.0, 3.0]},
                        np.array([0.4, 0.36, 0.3]), light)
    c = COAT_MAX * (1 - np.exp(-3.0))
    coat = dust.at(1)[0]
    roof = coat[55:80, 30:370]
    assert abs(roof.mean() / c - 1) < 0.1, roof.mean() / c
    assert roof.std() > 0.25 * roof.mean() and roof.min() > 0.5 * c
    drifts = cv2.GaussianBlur(roof, (0, 0), 4.0)                  # past the grains, the drifts
    assert drifts.std() > 0.15 * roof.mean()
    top = coat[263:266, 30:110]
    assert abs(top.mean() / c - 1) < 0.1 and top.std() < 0.05 * top.mean(), (top.mean() / c, top.std())
    earlier = dust.at(0)[0][55:80, 30:370]
    assert np.all(earlier <= roof + 1e-6) and np.corrcoef(earlier.ravel(), roof.ravel())[0, 1] > 0.99
    again = settled_dust([(1, "vehicle", near)], plate, {"1": [1.0, 3.0]}, np.array([0.4, 0.36, 0.3]), light)
    assert np.array_equal(again.at(1)[0][55:80, 30:370], roof)


def test_the_coat_on_a_black_car_does_not_draw_what_its_windows_mirror():
    """Dust settles on a car's paint and glass alike, lit by the light on the car, not by
    what its glass and paint reflect. A black car (plate 0.02) whose windows mirror lit
    shop fronts (0.25, twelve times its paint) is coated to one tone over its windows and
    the roof above them (within 10 %; 35 % apart when the coat took the plate's shading
    at a pixel and a half, and the reflections showed through the dust as the rubble
    behind a see-through car, the demo at 60 %), and the coat stays darker low on its body
    than on its roof."""
    from derrumbe.stages.comp import settled_dust
    from derrumbe.stages.render import Lighting
    H, W = 60, 100
    plate = np.full((H, W, 3), 0.3, np.float32)
    car = np.zeros((H, W), np.float32)
    car[20:44, 10:90] = 1
    plate[car > 0] = 0.02
    plate[25:31, 30:70] = 0.25
    light = Lighting(np.array([0.0, 0.8, 0.6]), np.ones(3), np.ones(3) * 0.3, np.ones(3) * 0.5)
    coat = settled_dust([(1, "vehicle", car)], plate, {"1": [3.0]}, np.array([0.4, 0.36, 0.3]), light).at(0)
    tone = coat[1][..., 1]
    window, roof, low = tone[26:30, 35:65].mean(), tone[21:23, 35:65].mean(), tone[38:43, 35:65].mean()
    assert abs(window / roof - 1) < 0.1, (window, roof)
    assert low < 0.8 * roof, (low, roof)


def test_a_shaken_frame_keeps_its_fine_detail_and_grain():
    """The shake moves the whole frame by fractions of a pixel. Shifted bilinearly by half
    a pixel each way, grain (white noise) kept about half its spread, and the plate's
    untouched road and sky lost as much of their detail while the ground shook (the demo
    at 20 %); a photographed frame keeps its sensor's grain however the camera moves. A
    whole-pixel shake is the frame translated, exactly."""
    from derrumbe.stages.comp import shaken
    rng = np.random.default_rng(0)
    img = np.clip(128 + 12 * rng.standard_normal((120, 160, 3)), 0, 255).astype(np.uint8)

    def fine(a):
        f = a.astype(np.float32).mean(2)
        return float((f - cv2.GaussianBlur(f, (0, 0), 1.0))[10:-10, 10:-10].std())
    assert fine(shaken(img, np.array([0.5, 0.5]))) > 0.75 * fine(img)
    moved = shaken(img, np.array([2.0, 1.0]))
    assert np.array_equal(moved[1:, 2:], img[:-1, :-2])
    assert shaken(img, np.zeros(2)) is img
