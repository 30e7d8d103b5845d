"""The debris as a supervisor would check it, in numbers: windows found and glazed, glass
that breaks before concrete, the plate's light (a cube's shadow goes where the plate's sun
sends it), the plate's texture only where the photo saw the surface, no sky carried past
the building's edge, fracture faces with relief that sticks to the piece."""

from __future__ import annotations

import numpy as np
import pytest

from derrumbe.colour import working_to_rec709
from derrumbe.demo import make_demo_plate
from derrumbe.engines.rapier import DYNAMIC
from derrumbe.materials import MATERIALS
from derrumbe.stages.camera import Camera, Placement
from derrumbe.stages.fracture import (BREAK, FRONT, GLASS_FACE, INTERIOR, REVEAL, SIDE_FACE, Fracture, _hull,
                                      fracture_building)
from derrumbe.stages.lighting import Lighting, estimate_lighting, sun_vector
from derrumbe.stages.matte import compute_matte
from derrumbe.stages.simulate import Destruction, SimResult
from derrumbe.stages.structure import FACADE, GLASS, SLAB
from derrumbe.stages.windows import detect_windows

CAM = Camera(640, 360, 460.0, 320.0, 200.0, 1.6)


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    i = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)


# ---- windows ----------------------------------------------------------------------------

def test_windows_of_the_generated_plate_are_found():
    """The demo plate draws its windows (ground truth): nearly all are found, few false."""
    p = make_demo_plate()
    m = compute_matte(p.srgb, p.box, None, p.holdout, 0, auto_holdouts=False)
    found = detect_windows(p.srgb, m.building)
    truth = np.array(p.windows, float)
    recall = np.mean([max(_iou(t, f) for f in found) > 0.5 for t in truth])
    precision = np.mean([max(_iou(f, t) for t in truth) > 0.5 for f in found])
    assert recall >= 0.8 and precision >= 0.7, (recall, precision)


def _curtain_wall(tilt: float):
    """A glass curtain wall drawn in pixels: 6 bays of 100 px by 4 rows of 110 px of panes
    (each its own grey, some reflecting sky, some dark), 8 px dark mullions and transoms,
    beside a warm stone pier 120 px wide; with tilt > 0 the camera looks up (verticals
    converge on a vanishing point 3000 px above the bottom). Returns the image, the
    building's matte and the true panes (upright boxes inside each cell)."""
    rng = np.random.default_rng(1)
    H, W = 480, 760
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (196, 150, 130)                                       # the pier: warm granite
    img += rng.integers(0, 18, (H, W, 1)).astype(np.uint8)
    vx, vy = 460.0, -3000.0 if tilt else None
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    u = xx if vy is None else vx + (xx - vx) * (H - vy) / (yy - vy)   # column at the bottom row
    x0, bay, rows = 140.0, 100.0, [20, 130, 240, 350, 460]
    truth = []
    glazing = (u >= x0) & (u < x0 + 6 * bay)
    img[glazing] = (30, 32, 36)                                   # mullions and transoms: the frame
    for r in range(4):
        for q in range(6):
            cell = (u >= x0 + q * bay + 4) & (u < x0 + (q + 1) * bay - 4) & (yy >= rows[r] + 4) & (yy < rows[r + 1] - 4)
            tone = rng.choice([(150, 160, 175), (90, 96, 106), (200, 210, 225), (120, 128, 140)])
            img[cell] = tone
            ys, xs = np.nonzero(cell)
            truth.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return img, np.ones((H, W), np.float32), np.array(truth, float)


@pytest.mark.parametrize("tilt", [0.0, 1.0])
def test_a_glass_curtain_walls_panes_are_its_grid_cells(tilt):
    """Nothing on a curtain wall stands out from 'the wall': its panes are the cells of
    the dark mullion grid, found even where the camera looks up and the mullions lean;
    the stone pier beside it is no pane."""
    img, matte, truth = _curtain_wall(tilt)
    found = detect_windows(img, matte)
    recall = np.mean([max((_iou(t, f) for f in found), default=0.0) > 0.5 for t in truth])
    assert recall >= 0.8, recall
    assert (found[:, 0] >= 120).all()                            # nothing on the pier


def test_a_painted_wall_with_window_frames_is_no_curtain_wall():
    """The same grid of dark frames over one even, smooth, pale paint (img_190's green
    render) is not glass: no curtain of panes is made of it."""
    from derrumbe.stages.windows import curtain_panes
    img, matte, _ = _curtain_wall(0.0)
    frame = img[..., 0] < 40
    img[~frame] = (170, 190, 180)
    assert len(curtain_panes(img, matte > 0.5)) == 0


def _planes(v, t):
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return n, (n * a).sum(1)


def _building(n, windows=None):
    place = Placement(depth_m=40.0, x0_m=-7.0, x1_m=7.0, height_m=13.0, proxy_height_m=13.0, base_row=345,
                      top_row=345 - 460 * 13 / 40, floors=4, height_source="test", storey_m=3.0, ground_floor_m=4.0)
    return fracture_building(CAM, place, np.ones((360, 640), np.float32), "implosion", "toward", MATERIALS["concrete"],
                             n, 3, windows=windows)


WINDOWS = np.array([[x, y, x + 1.2, y + 1.6] for x in (-5.0, -1.0, 3.0) for y in (5.0, 8.0, 11.0)])


def test_windows_become_openings_glazed_with_panes():
    fr = _building(4000, WINDOWS)
    glass = fr.element_kind == GLASS
    assert fr.info["windows"] == len(WINDOWS) and glass.sum() >= 2 * len(WINDOWS)
    # Nothing of the wall is left in an opening: no point of a grid through each opening
    # lies inside any wall fragment.
    wall = np.nonzero(fr.element_kind == FACADE)[0]
    el = next(e for e in fr.elements if e.kind == FACADE)
    g = np.linspace(0.005, 0.995, 12)
    for x0, y0, x1, y1 in WINDOWS:
        pts = np.array([[x0 + a * (x1 - x0), y0 + b * (y1 - y0), el.lo[2] + c * el.thickness]
                        for a in g for b in g for c in (0.1, 0.5, 0.9)])
        for i in wall:
            v = fr.verts[i] + fr.centroid[i]
            n, d = _planes(v, fr.tris[i])
            assert not ((pts @ n.T - d) < -1e-4).all(axis=1).any()
    # ...and the wall's volume is the wall's less the openings' (1 %).
    t = el.thickness
    solid = sum((e.size[0] * e.size[1] - sum((o[2] - o[0]) * (o[3] - o[1]) for o in e.openings)) * t
                for e in fr.elements if e.kind == FACADE)
    assert abs(fr.volume[wall].sum() / solid - 1) < 0.01
    # Panes are thin and glass on both sides; the openings' sides are reveals.
    kinds = np.concatenate([fr.kinds[i] for i in np.nonzero(glass)[0]])
    assert (kinds == GLASS_FACE).sum() > 0 and np.ptp(np.concatenate([fr.verts[i][:, 2] for i in np.nonzero(glass)[0]])) < 0.02
    assert (np.concatenate([fr.kinds[i] for i in wall]) == REVEAL).sum() >= 4 * len(WINDOWS)


def test_glass_breaks_before_concrete_under_the_same_blow():
    """A glazed pane and a piece of the wall around it, each dropped 0.4 m onto the street
    as one body: the same landing speed (2.8 m/s) shatters the pane into its shards and
    leaves the concrete whole."""
    fr = _building(4000, WINDOWS)
    sim = Destruction(fr, MATERIALS["concrete"], 1 / 240)
    pane = np.nonzero((fr.element_kind == GLASS) & (fr.element == fr.element[fr.element_kind == GLASS][0]))[0]
    wall = np.nonzero(fr.element_kind == FACADE)[0]
    piece = wall[fr.piece[wall] == fr.piece[wall[0]]]
    keys = {}
    for name, leaves, x in (("glass", pane, -20.0), ("concrete", piece, 20.0)):
        lift = 0.4 - (fr.centroid[leaves][:, 1] + np.array([fr.verts[i][:, 1].min() for i in leaves])).min()
        keys[name] = sim.add(leaves, 3, DYNAMIC, "debris", t=np.array([x, lift, 0.0]))
    for _ in range(240):
        sim.step()
        sim.update(1 / 240)
    assert len(np.unique(sim.body_of[pane])) >= len(pane) // 2          # in shards
    assert len(np.unique(sim.body_of[piece])) == 1                       # whole


def test_a_block_that_drops_in_one_piece_keeps_its_windows_until_it_is_struck():
    """Windows burst where the walls rack against each other: next to the failing ground
    floor from the start, but the upper block's top storey falls rigid and keeps its glass
    until the block reaches the rubble (its first crush). Every window of a falling block
    bursting at once, as soon as the base went, read as a facade of black holes (img_270)."""
    from derrumbe.stages.simulate import EV_CRUSH, simulate
    fr = _building(1500, WINDOWS)
    sim = simulate(fr, MATERIALS["concrete"], "implosion", "toward", 0.5, 5.0, 48, 3)
    glass = fr.element_kind == GLASS
    storey = fr.storey[glass]
    first_crush = sim.events["t"][sim.events["kind"] == EV_CRUSH].min()
    low, top = glass & (fr.storey == storey.min()), glass & (fr.storey == storey.max())
    burst = lambda m: np.isfinite(sim.shattered[m]) | np.isfinite(sim.hidden[m])
    assert burst(low).mean() > 0.5                                 # beside the failing storey
    shattered_top = sim.shattered[top][np.isfinite(sim.shattered[top])]
    assert len(shattered_top) == 0 or shattered_top.min() >= first_crush - 0.05
    assert (sim.shattered[low][np.isfinite(sim.shattered[low])] < first_crush).any()


# ---- light ------------------------------------------------------------------------------

def _sunlit_plate(azimuth: float, elevation: float):
    """A facade in a hard sun from `azimuth`: windows whose reveal shades the side of the
    opening nearest the sun, pilasters and string courses that cast shadows, a blue sky.
    Returns linear RGB, the building matte and the sky mask."""
    H, W = 360, 640
    sun = sun_vector(azimuth, elevation)
    lin = np.zeros((H, W, 3), np.float32)
    lin[:90] = [0.18, 0.32, 0.75]                              # clear sky
    lin[300:] = [0.12, 0.12, 0.12]                             # street
    wall_lit, wall_shade = np.array([0.62, 0.52, 0.40]), np.array([0.62, 0.52, 0.40]) * np.array([0.25, 0.26, 0.29])
    lin[90:300, 40:600] = wall_lit
    building = np.zeros((H, W), np.float32)
    building[90:300, 40:600] = 1
    side = int(np.sign(sun[0]))                                 # +1: the sun is on the right
    sw = int(round(10 * abs(sun[0]) / max(sun[2], 0.2)))       # shadow width of a 10 px deep reveal
    sh = int(round(10 * sun[1] / max(sun[2], 0.2)))
    for y0 in (105, 195):
        for x0 in range(70, 580, 70):
            lin[y0:y0 + 60, x0:x0 + 34] = [0.05, 0.06, 0.08]
            near = slice(x0 + 34 - sw, x0 + 34) if side > 0 else slice(x0, x0 + sw)
            lin[y0:y0 + 60, near] *= 0.35                        # the reveal's shadow on the glass
            lin[y0 - 3:y0 + sh - 3, x0 - 4:x0 + 38] = wall_shade  # the head's shadow above the opening
        lin[y0 + 76:y0 + 76 + sh, 40:600] = wall_shade           # a string course's shadow under each row
    return lin, building, np.pad(np.ones((90, W), np.float32), ((0, H - 90), (0, 0)))


@pytest.mark.parametrize("azimuth", [-45.0, 40.0])
def test_cube_shadow_goes_where_the_plates_sun_sends_it(azimuth):
    """The plate's sun is estimated (side and hardness), then a 2 m cube on the street is
    rendered in that light: its shadow on the street points away from the plate's sun,
    within 20 degrees on the image of where the true sun would cast it."""
    lin, building, sky = _sunlit_plate(azimuth, 40.0)
    windows = detect_windows(np.clip(lin ** (1 / 2.2) * 255, 0, 255).astype(np.uint8), building)
    light, info = estimate_lighting(lin, building, sky, None, None, windows)
    assert info["light"] == "hard sun" and np.sign(info["sun_azimuth_deg"]) == np.sign(azimuth)
    assert abs(info["sun_azimuth_deg"] - azimuth) < 30
    cube_at = np.array([0.0, 1.0, -20.0])
    ground = _render_cube(light, cube_at, 2.0)
    # Where the street darkened, on the street: the contact occlusion is round the cube,
    # the sun's shadow off to one side of it, so their centroid leans the shadow's way.
    rows, cols = np.nonzero((ground < 0.98) & (np.arange(CAM.height)[:, None] > CAM.cy + 2))
    depth = CAM.f_px * CAM.eye_m / (rows + 0.5 - CAM.cy)
    x = (cols + 0.5 - CAM.cx) * depth / CAM.f_px
    dark = 1.0 - ground[rows, cols]
    lean = np.array([(x * dark).sum(), (-depth * dark).sum()]) / dark.sum() - cube_at[[0, 2]]

    def angle(sun):
        away = -np.array([sun[0], sun[2]])
        return np.degrees(np.arccos(np.clip(lean @ away / np.linalg.norm(lean) / np.linalg.norm(away), -1, 1)))
    assert angle(light.sun_dir) < 15                   # the renderer casts it where the estimate says
    assert angle(sun_vector(azimuth, 40.0)) < 35       # and that is near where the plate's sun did


def test_a_pale_cornice_inside_the_building_is_not_read_as_an_overcast_sky():
    """A facade to the frame's top in a hard sun, its top band a pale grey stone the sky
    test takes for sky (img_140's cornice): read as sky, a grey one, it made the sunlit
    street overcast (flat dust, a grey sky over the pile). Nothing inside the building's
    matte is sky: the light is read from the wall's sun and shade, a hard sun."""
    lin, building, _ = _sunlit_plate(-30.0, 40.0)
    lin[:90] = [0.55, 0.55, 0.56]                                # pale grey stone, up to the frame's top
    building[:90] = 1.0
    sky = np.zeros_like(building)
    sky[:90] = 1.0                                               # what the sky test says of it
    windows = detect_windows(np.clip(lin ** (1 / 2.2) * 255, 0, 255).astype(np.uint8), building)
    _, info = estimate_lighting(lin, building, sky, None, None, windows)
    assert info["light"] == "hard sun", info["sun_to_sky"]


def test_white_trim_on_a_grimy_wall_under_an_overcast_sky_is_not_a_hard_sun():
    """An overcast facade (no sky in the frame) whose wall is ochre render with white
    window surrounds and pilasters and dark grime, all lit alike: its brightest tenth is
    6 times its darkest, as a sunlit wall's is, but the dark part is no bluer than the
    bright (shade lit by the sky alone is bluer: 1.16 on the sunny plate). It is read as
    soft light at most (sun at most half the sky): img_100's trim read as a hard sun 4
    times the sky, and its dust glowed brighter than anything in the plate. The sunny
    plate, with the same spread, is still a hard sun."""
    lin, building, _ = _sunlit_plate(-30.0, 40.0)
    H, W = building.shape
    ochre = np.array([0.42, 0.33, 0.22])
    lin[90:300, 40:600] = ochre                                      # flat light: no shadows
    for x0 in range(70, 580, 70):
        lin[100:270, x0 - 8:x0 + 42] = ochre * 2.0                   # white surrounds
        lin[105:265, x0:x0 + 34] = [0.05, 0.06, 0.08]                # the glass
    lin[280:300, 40:600] = ochre * np.array([0.30, 0.29, 0.27])      # grime along the foot
    lin[90:100, 40:600] = ochre * np.array([0.30, 0.29, 0.27])       # and under the eaves
    lin[:90] = lin[90:180]                                           # facade to the frame's top
    building[:90] = 1.0
    windows = detect_windows(np.clip(lin ** (1 / 2.2) * 255, 0, 255).astype(np.uint8), building)
    _, info = estimate_lighting(lin, building, np.zeros_like(building), None, None, windows)
    assert info["lit_over_shade"] > 4.0                              # the spread a sun would give
    assert info["shade_blue"] < 1.02
    assert info["sun_to_sky"] <= 0.5 and info["light"] != "hard sun", info
    lin, building, sky = _sunlit_plate(-30.0, 40.0)
    windows = detect_windows(np.clip(lin ** (1 / 2.2) * 255, 0, 255).astype(np.uint8), building)
    _, info = estimate_lighting(lin, building, sky, None, None, windows)
    assert info["light"] == "hard sun" and info["shade_blue"] > 1.1, info


# CIE 1931 xy of the Planckian locus (Wyszecki & Stiles, table 1(3.11)): 4000-20000 K.
PLANCK_XY = np.array([[0.3805, 0.3768], [0.3451, 0.3516], [0.3221, 0.3318], [0.3064, 0.3166],
                      [0.2807, 0.2883], [0.2565, 0.2577]])


def _off_planck_xy(lin_working) -> float:
    """Distance in xy from a light's colour to the Planckian locus (the polyline above)."""
    rgb = working_to_rec709(np.asarray(lin_working, np.float32)).astype(np.float64)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    p = xyz[:2] / xyz.sum()
    a, b = PLANCK_XY[:-1], PLANCK_XY[1:]
    t = np.clip(((p - a) * (b - a)).sum(1) / ((b - a) ** 2).sum(1), 0, 1)
    return float(np.min(np.linalg.norm(a + (b - a) * t[:, None] - p, axis=1)))


def test_a_yellow_facade_under_a_hidden_sky_gets_daylight_not_a_green_sun():
    """The plate's light has no sky to read (the facade fills the frame) and its wall is
    yellow ochre: the sky guessed from the brightest pixels is yellow, and the sun read
    from lit over shadowed wall times that sky came out green (img_100 gave a sun of
    Rec.709 (0.79, 1.02, 0.73) and green dust). Sun and sky must be daylight: on the
    Planckian locus within 0.01 in xy (daylight is within ~0.005 of it)."""
    lin, building, _ = _sunlit_plate(-30.0, 40.0)
    ochre = np.array([0.70, 0.60, 0.22])
    wall = building > 0.5
    lin[wall] *= ochre / np.array([0.62, 0.52, 0.40])
    lin[:90] = lin[90:180]                                    # no sky: facade to the top of the frame
    building[:90] = 1.0
    windows = detect_windows(np.clip(lin ** (1 / 2.2) * 255, 0, 255).astype(np.uint8), building)
    light, info = estimate_lighting(lin, building, np.zeros_like(building), None, None, windows)
    assert info["light"] != "overcast"                        # the sun's colour was read from the wall
    assert _off_planck_xy(light.sun_col) < 0.01, (info["sun_rgb"], info["sun_cct_k"])
    assert _off_planck_xy(light.amb_col) < 0.01, (info["sky_rgb"], info["sky_cct_k"])
    assert 4000 <= info["sun_cct_k"] <= 7000 and 6500 <= info["sky_cct_k"] <= 20000


def _box(lo, hi):
    c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], float)
    return _hull(c)


def _one_box_fracture(lo, hi, kinds_of):
    """A Fracture of one box fragment whose faces get kinds by their outward normal."""
    return _boxes_fracture([(lo, hi, kinds_of)])


def _boxes_fracture(boxes):
    """A Fracture of box fragments (lo, hi, kinds by outward normal), each its own element."""
    verts, tris, kinds, cent, vol, els = [], [], [], [], [], []
    for lo, hi, kinds_of in boxes:
        v, t, nrm, volume = _box(np.array(lo, float), np.array(hi, float))
        ctr = v.mean(0)
        verts.append((v - ctr).astype(np.float32))
        tris.append(t.astype(np.int32))
        kinds.append(np.array([kinds_of(n) for n in nrm], np.int32))
        cent.append(ctr)
        vol.append(volume)
        els.append(type("E", (), dict(kind=FACADE, axis=2, lo=np.array(lo, float), hi=np.array(hi, float), outer=1))())
    n = len(boxes)
    return Fracture(centroid=np.array(cent), verts=verts, tris=tris, kinds=kinds, volume=np.array(vol),
                    inside=np.ones(n), element=np.arange(n), element_kind=np.full(n, FACADE),
                    storey=np.zeros(n, int), piece=np.arange(n), cluster=np.arange(n), bonds=np.zeros((0, 2), int),
                    bond_area=np.zeros(0), box_lo=np.array([-10.0, 0.0, -40.0]), box_hi=np.array([10.0, 12.0, -25.0]),
                    facade_z=float(max(b[1][2] for b in boxes)), floor_y=np.array([0.0, 4.0]), elements=els,
                    face_neighbour=[np.full(len(t), -1) for t in tris])


def _axis_quat(axis, deg):
    h = np.radians(deg) / 2
    return np.concatenate([[np.cos(h)], np.sin(h) * np.asarray(axis, float)])


def _qmul(a, b):
    w1, v1, w2, v2 = a[0], a[1:], b[0], b[1:]
    return np.concatenate([[w1 * w2 - v1 @ v2], w1 * v2 + w2 * v1 + np.cross(v1, v2)])


def _still_sim(pos, quat=(1.0, 0.0, 0.0, 0.0)) -> SimResult:
    p = np.array(pos, np.float32).reshape(-1, 3)[None].repeat(2, 0)
    n = p.shape[1]
    q = np.broadcast_to(np.array(quat, np.float32).reshape(-1, 4), (n, 4))[None].repeat(2, 0)
    return SimResult(np.array([0.0, 1.0]), p, q, np.zeros(2), np.zeros(n), np.ones(n, np.float32), {})


def _renderer(fr, light, plate, rest_pos, face_albedo=(0.4, 0.38, 0.35)):
    from derrumbe.stages.render import DebrisRenderer
    rest = np.array(rest_pos, float).reshape(-1, 3)
    return DebrisRenderer(fr, CAM, plate, np.ones((CAM.height, CAM.width), np.float32), light,
                          np.array(face_albedo), 0.25, rest, np.tile([1.0, 0, 0, 0], (len(rest), 1)))


def _render_cube(light, at, size):
    fr = _one_box_fracture(at - size / 2, at + size / 2, lambda n: BREAK)
    r = _renderer(fr, light, np.full((CAM.height, CAM.width, 3), 0.3, np.float32), at - [0, 500.0, 0])
    try:
        return r.render(_still_sim(at), 0.5, 0.0, 1).ground
    finally:
        r.release()


def _render_dropped(fr, plate, drop: float):
    """The layers of a fracture's one piece, at rest where it stood, drawn `drop` metres lower."""
    r = _renderer(fr, _grey_light(), plate, fr.centroid[0])
    try:
        return r.render(_still_sim(fr.centroid[0] - [0, drop, 0]), 0.5, 0.0, 1)
    finally:
        r.release()


def _grey_light():
    return Lighting(sun_vector(-30, 40), np.array([0.5, 0.48, 0.45]), np.array([0.5, 0.52, 0.56]),
                    np.array([0.4, 0.38, 0.35]))


# ---- texture ----------------------------------------------------------------------------

def test_plate_texture_only_on_faces_the_photo_saw():
    """A magenta plate: a moved piece shows it on its front face, never on its broken or
    inner faces. The piece is turned so all three face the camera."""
    plate = np.zeros((CAM.height, CAM.width, 3), np.float32)
    plate[...] = [0.8, 0.0, 0.8]
    lo, hi = np.array([-1.5, 4.0, -30.3]), np.array([1.5, 7.0, -30.0])
    kinds_of = lambda n: FRONT if n[2] > 0.5 else INTERIOR if n[2] < -0.5 else BREAK
    fr = _one_box_fracture(lo, hi, kinds_of)
    # Turned 50 degrees about y and 30 about x: the front, one broken side and the top show.
    q = _qmul(_axis_quat([0, 1, 0], 50), _axis_quat([1, 0, 0], 30))
    centre = fr.centroid[0] + [0, 0, 8.0]
    r = _renderer(fr, _grey_light(), plate, fr.centroid[0])
    try:
        layers = r.render(_still_sim(centre, q), 0.5, 0.0, 1)
    finally:
        r.release()
    col, a_ = layers.debris[..., :3], layers.debris[..., 3]
    magenta = (col[..., 0] > 2.5 * col[..., 1]) & (col[..., 2] > 2.5 * col[..., 1]) & (a_ > 0.99)
    grey = (np.abs(col[..., 0] - col[..., 2]) < 0.25 * col.mean(-1)) & (a_ > 0.99)
    assert magenta.sum() > 500 and grey.sum() > 500        # the front, and the broken / inner faces
    assert layers.static.sum() == 0


def _near_front(plate: np.ndarray) -> np.ndarray:
    """The luminance of a facade piece's front face, 0.8 x 0.6 m, 30 m away at rest, brought
    to 3 m before the lens facing it (the photo magnified ten times; a tenth of the frame,
    under the lens guard's limit), over its middle."""
    lo, hi = np.array([-0.4, 3.0, -30.3]), np.array([0.4, 3.6, -30.0])
    fr = _one_box_fracture(lo, hi, lambda n: FRONT if n[2] > 0.5 else BREAK)
    at = np.array([0.0, CAM.eye_m, -3.0 - 0.15])
    r = _renderer(fr, _grey_light(), plate, fr.centroid[0])
    try:
        layers = r.render(_still_sim(at), 0.5, 0.0, 1)
    finally:
        r.release()
    col = layers.debris[..., :3]
    half = 0.2 * CAM.f_px / 3.0                          # 0.2 m on the face, in pixels
    rows = slice(int(CAM.cy - half), int(CAM.cy + half))
    cols = slice(int(CAM.cx - half), int(CAM.cx + half))
    assert (layers.debris[rows, cols, 3] > 0.99).all()
    return col[rows, cols] @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def test_a_piece_near_the_lens_shows_the_photo_smoothly_with_the_surfaces_own_grain():
    """A piece that comes near the lens shows a few of the photo's pixels over many of the
    frame's. Drawn bilinear, each photo pixel was a tile with creases along its centres,
    and a flat stretch of photo a smooth plastic card. Ten times magnified: a checkerboard of single photo pixels keeps
    under a fifth of its spread (a cubic B-spline keeps about a ninth at the pixels' centres,
    bilinear all of it: 0.32 of the spread over its ramps); a flat grey
    photo shows the render's own grain, a fine spread (luminance less its 4 px blur) of at
    least 2 % of its level."""
    import cv2
    checker = np.indices((CAM.height, CAM.width)).sum(0) % 2
    plate = np.repeat((0.2 + 0.3 * checker)[..., None], 3, axis=2).astype(np.float32)
    lum = _near_front(plate)
    assert lum.std() < 0.2 * 0.15, lum.std()                 # 0.15: the checker's own spread
    flat = _near_front(np.full((CAM.height, CAM.width, 3), 0.35, np.float32))
    fine = flat - cv2.GaussianBlur(flat, (0, 0), 4.0)
    assert fine.std() > 0.02 * flat.mean(), (fine.std(), flat.mean())


def test_a_window_reveal_on_a_falling_block_is_lit_as_its_wall_not_drawn_black():
    """A window's head seen from below on a block that has dropped but not turned: the
    reveal is part of the photo (the camera saw it), so it carries the plate lit as the
    wall's front is. Relit as a face turned to the ground it came out near black: thin
    dark L-lines along the tops of img_270's openings as its block fell."""
    plate = np.full((CAM.height, CAM.width, 3), 0.4, np.float32)
    # The head over an opening, 3 m deep so its underside spans pixels from the street.
    lo, hi = np.array([-1.5, 12.0, -33.0]), np.array([1.5, 13.0, -30.0])
    kinds_of = lambda n: FRONT if n[2] > 0.5 else REVEAL if n[1] < -0.5 else BREAK
    fr = _one_box_fracture(lo, hi, kinds_of)
    drop = 2.0
    layers = _render_dropped(fr, plate, drop)
    col, a_ = layers.debris[..., :3].mean(-1), layers.debris[..., 3]
    x = int(CAM.cx)
    y_front = CAM.cy - CAM.f_px * (np.array([13.0, 12.0]) - drop - CAM.eye_m) / 30.0
    y_under = CAM.cy - CAM.f_px * (12.0 - drop - CAM.eye_m) / np.array([30.0, 33.0])
    front = col[int(y_front[0]) + 2:int(y_front[1]) - 1, x]
    under = col[int(np.ceil(y_under[0])) + 1:int(y_under[1]) - 1, x]
    assert len(under) >= 3 and (a_[int(y_front[0]) + 2:int(y_under[1]) - 1, x] > 0.99).all()
    assert under.min() > 0.75 * front.mean(), (under, front.mean())


def test_a_turned_pieces_window_reveals_show_the_wall_not_a_stretched_sliver_of_photo():
    """A reveal is a sliver of the photo seen nearly edge-on; on a piece turned 50 degrees
    that sliver would be stretched across the whole face. Its sides show the wall's own
    render: no magenta from the plate on them, while the front still carries it."""
    plate = np.zeros((CAM.height, CAM.width, 3), np.float32)
    plate[...] = [0.8, 0.0, 0.8]
    lo, hi = np.array([-1.5, 4.0, -31.5]), np.array([1.5, 7.0, -30.0])    # deep sides, to be seen
    q = _qmul(_axis_quat([0, 1, 0], 50), _axis_quat([1, 0, 0], 30))

    def magenta_px(side_kind):
        fr = _one_box_fracture(lo, hi, lambda n: FRONT if n[2] > 0.5 else INTERIOR if n[2] < -0.5 else side_kind)
        r = _renderer(fr, _grey_light(), plate, fr.centroid[0])
        try:
            layers = r.render(_still_sim(fr.centroid[0] + [0, 0, 8.0], q), 0.5, 0.0, 1)
        finally:
            r.release()
        col, a_ = layers.debris[..., :3], layers.debris[..., 3]
        return int(((col[..., 0] > 2.5 * col[..., 1]) & (col[..., 2] > 2.5 * col[..., 1]) & (a_ > 0.99)).sum())
    front_only = magenta_px(BREAK)
    assert front_only > 500
    assert magenta_px(REVEAL) < 1.05 * front_only


def test_facade_texture_carries_no_sky_past_the_building():
    """Sky blue above a brown facade: past the matte the texture is facade, so a piece's
    top edge never shows a blue rim."""
    from derrumbe.stages.render import facade_texture
    plate = np.zeros((200, 300, 3), np.float32)
    plate[:80] = [0.2, 0.35, 0.8]
    plate[80:] = [0.45, 0.3, 0.2]
    matte = np.zeros((200, 300), np.float32)
    matte[79:] = 1                                               # one row of sky inside the matte: its edge
    tex = facade_texture(plate, matte)
    band = tex[60:90]
    assert (band[..., 2] < band[..., 0]).all()


def test_storeys_above_the_frame_repeat_the_facade_not_mirror_it():
    """A building taller than the frame: once its top drops into view, the storeys the
    camera never saw continue the facade by its storey period (a facade repeats; a mirror
    about the frame's edge doubles cornices and sills). The plate is a sawtooth with the
    storey's period (61 px at 30 m for 4 m storeys), so a mirrored copy runs backwards."""
    period = 61
    ramp = (np.arange(CAM.height) % period) / period
    plate = np.empty((CAM.height, CAM.width, 3), np.float32)
    plate[...] = 0.3
    plate[..., 0] = 0.1 + 0.8 * ramp[:, None]
    # A panel from 15.5 to 18.5 m at 30 m: rows -59..-13 at rest, above the frame.
    lo, hi = np.array([-1.5, 15.5, -30.3]), np.array([1.5, 18.5, -30.0])
    fr = _one_box_fracture(lo, hi, lambda n: FRONT if n[2] > 0.5 else BREAK)
    drop = 9.0
    layers = _render_dropped(fr, plate, drop)
    col, a_ = layers.debris[:, int(CAM.cx), :3], layers.debris[:, int(CAM.cx), 3]
    rows = np.nonzero(a_ > 0.99)[0][3:-3]
    assert len(rows) > 30
    rest_row = rows + 0.5 - CAM.f_px * drop / 30.15 - 0.5
    seen = col[rows, 0] / col[rows, 1]                          # red over the flat green: the ramp, lit or not
    repeat = 0.1 + 0.8 * (np.mod(np.round(rest_row), period) / period)
    mirror = 0.1 + 0.8 * (np.mod(-np.round(rest_row) - 1, period) / period)
    c_rep, c_mir = np.corrcoef(seen, repeat)[0, 1], np.corrcoef(seen, mirror)[0, 1]
    assert c_rep > 0.9 and c_rep > c_mir + 0.5, (c_rep, c_mir)


def test_storey_period_is_found_from_the_facade_itself():
    """Without a hint the texture past the frame still repeats the facade's own storey."""
    from derrumbe.stages.plate_texture import continue_past_frame
    rng = np.random.default_rng(3)
    period = 47
    storey = rng.uniform(0.2, 0.8, (period, 90, 3)).astype(np.float32)
    tex = np.concatenate([storey] * 5)[13:13 + 200]              # 200 rows, starting mid-storey
    atlas = continue_past_frame(tex, (0, -120), (90, 200))
    assert atlas.y0 == -120
    truth = storey[(13 + np.arange(-120, 200)) % period]
    assert np.allclose(atlas.image, truth)


def test_the_shop_front_is_not_repeated_above_the_roofline():
    """A frame showing one upper storey and a shop front (a red fascia) below it: once the
    building drops, what comes into view above the frame continues the upper storey, and
    the shop's fascia never appears up there (img_140 and img_181 showed their shop sign
    twice, once over the roof)."""
    from derrumbe.stages.plate_texture import continue_past_frame
    rng = np.random.default_rng(4)
    upper = rng.uniform(0.2, 0.5, (70, 90, 3)).astype(np.float32)
    upper[:, :, 0] *= 0.5                                        # the upper storey: not red
    shop = np.zeros((130, 90, 3), np.float32)
    shop[5:45] = [0.8, 0.05, 0.05]                               # the fascia, just under the storey
    shop[60:] = rng.uniform(0.05, 0.2, (70, 90, 3))
    tex = np.concatenate([upper, shop])                           # 200 rows: storey, then shop front
    atlas = continue_past_frame(tex, (0, -160), (90, 200), storey_px=80.0, upper_rows=70)
    above = atlas.image[:160]
    red = (above[..., 0] > 0.6) & (above[..., 1] < 0.2)
    assert not red.any()
    assert np.allclose(atlas.image[160:], tex)                    # the frame itself as it was


def _storeys_with_own_windows(period: int, rows: int, rng, start: int = 0) -> np.ndarray:
    """A render wall (0.5, a little noise) with a row of windows on every storey (rows
    20..44 of each, glass 0.05-0.2 and each pane its own reflection), a lit sill under
    each: no two windows alike, as on a real facade. The first row is the storey's
    row `start`."""
    tex = 0.5 + 0.02 * rng.normal(0, 1, (rows, 120, 3)).astype(np.float32)
    for y0 in range(-start, rows, period):
        for x0 in (20, 70):
            a, b = min(rows, max(0, y0 + 20)), min(rows, max(0, y0 + 45))
            tex[a:b, x0:x0 + 30] = rng.uniform(0.05, 0.2, (max(0, b - a), 30, 3))
            tex[max(0, y0 + 45):max(0, y0 + 48), x0 - 3:x0 + 33] = 0.7
    return tex


def test_the_storey_above_the_frame_keeps_its_windows_whole():
    """A camera tilted up sees the top storeys shorter than the ruler's storey (img_270:
    57 px at the frame's top against 82 px read lower down), and a frame showing a storey
    and a bit (img_288) holds no second storey to check the period against. Either way
    what is continued above the frame is whole storeys: every window row above the frame
    is as tall as the frame's own, with its sill, never a strip of window tops between
    two storeys nor a window cut off above its sill."""
    from derrumbe.stages.plate_texture import continue_past_frame
    rng = np.random.default_rng(5)
    # Storeys of 58 px where the rulers read 82.
    tex = _storeys_with_own_windows(58, 240, rng, start=30)
    atlas = continue_past_frame(tex, (0, -174), (120, 240), storey_px=82.0)
    _assert_whole_windows(atlas.image[:174 + 10], 25)
    # One storey and a bit over a shop front, a storey of 60 px read right by the rulers.
    tex = np.concatenate([_storeys_with_own_windows(60, 70, rng, start=10),
                          np.tile(np.array([0.8, 0.1, 0.1], np.float32), (60, 120, 1))])
    atlas = continue_past_frame(tex, (0, -120), (120, 130), storey_px=60.0, upper_rows=70)
    _assert_whole_windows(atlas.image[:120 + 10], 25)


def test_the_storeys_above_the_frame_repeat_the_facades_typical_storey_not_its_odd_top_one():
    """The storey the frame's top cuts is often the odd one: img_270's top floor has no
    balconies, the three below it have. Repeated over the storeys the frame never saw, it
    made the sinking block lose its balconies as it dropped, a building swapped for another
    (judge 44's second worst). What is continued above the frame is the storey most like
    its neighbours, brought to the top storey's height (a camera tilted up sees storeys
    taller further down: here 52, 56, 60 and 64 px), so every storey up there has its
    balcony, at the top storey's period, and the frame itself stays as it was."""
    from derrumbe.stages.plate_texture import continue_past_frame
    rng = np.random.default_rng(6)
    storeys = []
    for k, h in enumerate((52, 56, 60, 64)):
        st = 0.5 + 0.02 * rng.normal(0, 1, (h, 120, 3)).astype(np.float32)
        a, b = int(0.35 * h), int(0.75 * h)
        for x0 in (20, 70):
            st[a:b, x0:x0 + 30] = rng.uniform(0.05, 0.15, (b - a, 30, 3))
        if k > 0:
            st[int(0.8 * h):int(0.95 * h), 10:110] = 0.2              # a balcony's slab and railing
        storeys.append(st)
    shop = np.tile(np.array([0.7, 0.15, 0.1], np.float32), (80, 120, 1))
    tex = np.concatenate(storeys + [shop])
    upper = sum(len(st) for st in storeys)
    atlas = continue_past_frame(tex, (0, -160), (120, len(tex)), storey_px=56.0, upper_rows=upper)
    assert np.allclose(atlas.image[160:], tex)
    between = atlas.image[:160, 55:65].mean(axis=(1, 2)) < 0.3     # the wall between the windows
    runs = np.flatnonzero(np.diff(between.astype(int)) == 1)
    assert len(runs) >= 2, np.flatnonzero(between)
    # at about the top storey's height (its period as found, 55 px), not the lower ones' 60-64
    assert np.all((np.diff(runs) > 48) & (np.diff(runs) < 58)), runs


def _assert_whole_windows(img: np.ndarray, col: int) -> None:
    """Down one bay's column: every run of glass (below 0.25) is 25 rows (a whole
    window) and each has its lit sill (0.7) right under it; the first may be cut by the
    atlas's top."""
    glass = img[:, col].max(axis=1) < 0.25
    edges = np.flatnonzero(np.diff(glass.astype(int)))
    starts, ends = edges[glass[edges + 1]] + 1, edges[~glass[edges + 1]] + 1
    if glass[0]:
        ends = ends[1:]
    starts = starts[:len(ends)]
    assert len(starts) >= 2, (starts, ends)
    assert np.all(np.abs((ends - starts) - 25) <= 1), ends - starts
    assert np.all(np.abs(img[ends + 1, col] - 0.7).max(axis=1) < 0.05), img[ends + 1, col]


def _window_facade(period=60, rows=240, width=120):
    """A render wall (0.5) with dark windows (0.05) rows 20..44 of each 60-row storey and
    columns 20..50 and 70..100 of each bay."""
    tex = np.full((rows, width, 3), 0.5, np.float32)
    for y0 in range(0, rows, period):
        for x0 in (20, 70):
            tex[y0 + 20:y0 + 45, x0:x0 + 30] = 0.05
    return tex


def test_a_roof_above_the_frame_ends_in_a_crown_cornice_not_through_a_row_of_windows():
    """The roof of a building cut by the frame's top lies above the frame. The continued
    facade would run its windows up to the roof's row and stop in a ruler line through
    them (img_270's falling block). The band from the roof down is a crown: a lighter
    coping, the cornice's face in the wall's own colour, a row of dentils about 0.32 m
    apart, its soffit in shade, down to the first plain row at least a cornice (0.92 m)
    below the roof, and every window below it is whole. A plain band under a thin coping
    line read as a grey concrete beam once it fell (img_190, img_100 at 40 %)."""
    from derrumbe.stages.plate_texture import continue_past_frame, roof_parapet
    period, px_per_m = 60, 20.0                                    # 3 m storeys at 20 px/m
    tex = _window_facade(period)
    atlas = continue_past_frame(tex, (0, -180), (120, 240), storey_px=period)
    glass = atlas.image[:, 25, 0] < 0.2                           # the continued window rows (a bay's column)
    starts = np.nonzero(glass[1:] & ~glass[:-1])[0] + 1
    first = starts[0]                                             # a whole window row above the frame
    roof = atlas.y0 + first + 5                                   # the roof cuts through its glass
    out = roof_parapet(atlas, roof, px_per_m, period, 0.9)
    img = out.image[:, :, 0]
    r0 = first + 5
    row = lambda m: r0 + int(round(m * px_per_m))                 # the row so far under the roof
    assert np.allclose(out.image[:r0], atlas.image[:r0]) and np.allclose(out.image[180:], tex)
    changed = np.nonzero(np.abs(out.image - atlas.image).max(axis=(1, 2)) > 1e-6)[0]
    assert changed.min() == r0
    # No window pixel in the crown, however shaded; it ends within a third of a storey
    # past the cornice, and the next row of windows below it is whole.
    assert row(0.92) <= changed.max() <= row(0.92) + period // 3 + 8
    assert img[r0:row(0.92)].min() > 0.15
    assert np.allclose(out.image[changed.max() + 1:], atlas.image[changed.max() + 1:])
    assert glass[changed.max() + 1:changed.max() + 1 + period].any()
    # The coping lighter than the cornice's face, which is the facade's own wall colour;
    # the soffit under it darker.
    face = img[row(0.2):row(0.45)].mean()
    assert img[r0:r0 + 2].mean() > 1.08 * face and abs(face - 0.5) < 0.05
    assert img[row(0.78):row(0.9)].mean() < 0.7 * face
    # The dentils: the row 0.65 m under the roof repeats along the front every 0.32 m.
    teeth = img[row(0.65)] - img[row(0.65)].mean()
    spec = np.abs(np.fft.rfft(teeth))
    f = np.fft.rfftfreq(len(teeth), 1.0 / px_per_m)               # cycles per metre
    assert abs(1.0 / f[1 + int(np.argmax(spec[1:]))] - 0.32) < 0.03
    assert teeth.std() > 0.1 * face


def test_a_modern_front_ends_in_a_plain_parapet_without_dentils():
    """A curtain wall or a concrete frame has no classical cornice: its crown is the wall
    under a lighter metal coping and the coping's drip shadow, and no row of it repeats
    along the front (a cornice's dentils on img_263's brick-and-glass office fell as rows
    of square teeth)."""
    from derrumbe.stages.plate_texture import continue_past_frame, roof_parapet
    period, px_per_m = 60, 20.0
    atlas = continue_past_frame(_window_facade(period), (0, -180), (120, 240), storey_px=period)
    glass = atlas.image[:, 25, 0] < 0.2
    first = (np.nonzero(glass[1:] & ~glass[:-1])[0] + 1)[0]
    r0 = first + 5
    out = roof_parapet(atlas, atlas.y0 + r0, px_per_m, period, 0.9, cornice=False)
    img = out.image[:, :, 0]
    changed = np.nonzero(np.abs(out.image - atlas.image).max(axis=(1, 2)) > 1e-6)[0]
    assert changed.min() == r0 and img[r0:changed.max()].min() > 0.15     # no window in it
    row = lambda m: r0 + int(round(m * px_per_m))
    wall = img[row(0.45):row(0.8)].mean()
    assert abs(wall - 0.5) < 0.05                                  # the facade's own wall colour
    assert img[r0:r0 + 2].mean() > 1.08 * wall                      # the coping, lit
    assert img[row(0.13):row(0.18)].mean() < 0.85 * wall            # its drip shadow
    for m in (0.3, 0.5, 0.65, 0.8):                                 # no teeth in any row
        line = img[row(m)]
        assert line.std() < 0.05 * wall, m                           # (the cornice's dentil row: over 0.1)


def test_a_roof_the_plate_shows_is_left_as_the_photo_shows_it():
    from derrumbe.stages.plate_texture import continue_past_frame, roof_parapet
    tex = _window_facade()
    atlas = continue_past_frame(tex, (0, 0), (120, 240), storey_px=60)
    assert roof_parapet(atlas, 30.0, 20.0, 60, 0.9) is atlas
    # A roof just above the frame: its parapet and cornice stop at the frame's edge.
    atlas = continue_past_frame(tex, (0, -40), (120, 240), storey_px=60)
    out = roof_parapet(atlas, -12.0, 20.0, 60, 0.9)
    assert np.allclose(out.image[40:], tex) and not np.allclose(out.image[28:40], atlas.image[28:40])


def test_a_parapet_band_that_runs_on_gets_a_moulding_at_the_roofs_slab():
    """A facade with no plain row near the crown's foot (busy to the frame's top): the
    band runs on to the frame, and a moulding under the crown and its shadow (1.52 m under
    the coping: a lit moulding, then its shadow) splits it into a crown and a frieze
    instead of one blank slab."""
    from derrumbe.stages.plate_texture import Atlas, roof_parapet
    rng = np.random.default_rng(5)
    # 80 rows above the frame, busier the higher they are (the plainest is the last one),
    # then the frame's 160.
    spread = np.concatenate([np.linspace(0.3, 0.05, 80), np.full(160, 0.2)])[:, None, None]
    img = (0.5 + spread * rng.uniform(-1, 1, (240, 120, 3))).astype(np.float32)
    atlas = Atlas(img, 0, -80)
    out = roof_parapet(atlas, -70.0, 20.0, 200, 0.9)
    col = out.image[:, :, 0].mean(axis=1)
    slab = 10 + int(round(1.52 * 20))                                 # the roof is row 10
    assert np.allclose(out.image[80:], img[80:])                      # the frame as it was
    frieze = col[slab + 8:78].mean()
    assert col[slab - 2:slab].mean() > 1.05 * frieze                 # the moulding, lit
    assert col[slab + 1:slab + 3].mean() < 0.85 * frieze             # its shadow on the frieze


def test_a_building_cut_by_the_frames_top_gets_whole_hidden_storeys_and_a_parapet():
    from derrumbe.stages.camera import PARAPET_M, hidden_roof
    for visible, g, s in [(18.9, 4.0, 2.95), (8.0, 3.5, 3.0), (11.8, 4.2, 3.6), (30.0, 4.0, 3.2)]:
        top = hidden_roof(visible, g, s)
        upper = (top - PARAPET_M - g) / s
        assert abs(upper - round(upper)) < 1e-9                    # whole storeys over the ground floor
        assert top - PARAPET_M >= visible - 0.05 * s                # never below the storey the frame cuts
        assert 1.1 * visible <= top <= 1.25 * visible + s + PARAPET_M


def test_fracture_face_relief_sticks_to_the_piece():
    """A broken face in flat light shows relief and aggregate (luminance varies by several
    per cent over centimetres, not a flat colour), and the pattern moves with the piece."""
    plate = np.full((CAM.height, CAM.width, 3), 0.3, np.float32)
    lo, hi = np.array([-1.0, 4.0, -20.3]), np.array([1.0, 6.0, -20.0])
    fr = _one_box_fracture(lo, hi, lambda n: BREAK)
    light = Lighting(sun_vector(-30, 40), np.array([0.6, 0.6, 0.6]), np.array([0.5, 0.5, 0.5]), np.array([0.4] * 3))
    shots = []
    for dx in (0.0, 0.5):
        r = _renderer(fr, light, plate, fr.centroid[0] + [0, -300, 0])
        try:
            layers = r.render(_still_sim(fr.centroid[0] + [dx, 0, 0]), 0.5, 0.0, 1)
        finally:
            r.release()
        shots.append(layers.debris[..., :3].mean(-1))
    px = CAM.f_px * 0.5 / 20.0                                  # the shift in pixels
    y0, y1 = [int(v) for v in sorted(CAM.project(np.array([[0, 5.6, -20], [0, 4.4, -20]]))[:, 1])]
    x0 = int(CAM.project(np.array([-0.6, 5, -20]))[0])
    x1 = int(CAM.project(np.array([0.6, 5, -20]))[0])
    a = shots[0][y0:y1, x0:x1]
    b = shots[1][y0:y1, x0 + int(round(px)):x1 + int(round(px))]
    cv = a.std() / a.mean()
    assert 0.04 < cv < 0.5, cv
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8


def test_shadows_fall_between_standing_and_falling_parts():
    """A standing wall (at rest: the plate's own pixels) and a falling block between it and
    a low sun from the front left. The block's shadow darkens the standing wall's plate
    pixels (drawn, no longer static, darker than the plate); and a block behind the wall,
    out of the sun, is darker on its sunward face than the same block in the open."""
    plate = np.full((CAM.height, CAM.width, 3), 0.4, np.float32)
    light = Lighting(sun_vector(-35, 30), np.array([1.0, 0.95, 0.9]), np.array([0.25, 0.27, 0.3]),
                     np.array([0.4] * 3))
    wall = ([-6.0, 0.0, -30.4], [6.0, 8.0, -30.0], lambda n: FRONT if n[2] > 0.5 else BREAK)
    block = ([-1.0, 2.0, -1.0], [1.0, 4.0, 1.0], lambda n: BREAK)
    fr = _boxes_fracture([wall, block])
    sun = sun_vector(-35, 30)
    # The block in front of the wall, on the line from the wall's middle to the sun.
    in_sun = fr.centroid[0] + [0, 0, 0.4] + sun * 6.0
    r = _renderer(fr, light, plate, [fr.centroid[0], [0, -400, 0]])
    try:
        front = r.render(_still_sim([fr.centroid[0], in_sun]), 0.5, 0.0, 1)
    finally:
        r.release()
    uv = CAM.project(fr.centroid[0] + [0, 0, 0.2])
    # The wall's pixels in the block's shadow: the block's shadow centre on the wall plane.
    hit = CAM.project(in_sun - sun * (in_sun[2] - (-30.0)) / sun[2])
    x, y = int(hit[0]), int(hit[1])
    assert front.static[y, x] == 0 and front.debris[y, x, 3] == 1.0
    assert front.debris[y, x, :3].mean() < 0.75 * 0.4          # the plate, in the block's shadow
    far = (int(uv[0] + 0.3 * (uv[0] - hit[0])), int(uv[1] - 40))
    assert front.static[far[1], far[0]] == 1.0                  # elsewhere, still the plate's own pixels
    # static_z, where the dust is split at standing walls: the wall's view depth both where
    # the plate shows and where its shadowed pixels are drawn; 0 in the sky above it.
    assert front.static_z[far[1], far[0]] == pytest.approx(30.0, abs=0.05)
    assert front.static_z[y, x] == pytest.approx(30.0, abs=0.05)
    assert front.static_z[:10].max() == 0.0
    # A standing side wall throws its shadow on a block that fell beside it (a low sun from
    # the front left): the block's front, lit by that sun, is darker there than in the open.
    side = ([-6.0, 0.0, -26.0], [-5.6, 8.0, -20.0], lambda n: SIDE_FACE if abs(n[0]) > 0.5 else BREAK)
    low = ([-0.6, 0.0, -0.6], [0.6, 1.0, 0.6], lambda n: BREAK)
    fr = _boxes_fracture([side, low])
    light = Lighting(sun_vector(-60, 25), np.array([1.0, 0.95, 0.9]), np.array([0.25, 0.27, 0.3]),
                     np.array([0.4] * 3))
    tops = []
    for at in ([-4.5, 0.5, -23.0], [6.0, 0.5, -23.0]):
        r = _renderer(fr, light, plate, [fr.centroid[0], [0, -400, 0]])
        try:
            lay = r.render(_still_sim([fr.centroid[0], at]), 0.5, 0.0, 1)
        finally:
            r.release()
        u, v = CAM.project(np.array(at) + [0, 0, 0.6]).astype(int)
        tops.append(lay.debris[v - 2:v + 3, u - 2:u + 3, :3].mean())
    assert tops[0] < 0.75 * tops[1]


def test_sun_flag_sets_both_angles_and_refuses_bad_input(demo_files, tmp_path, capsys):
    from derrumbe.cli import _spec_from_args, build_parser, main
    d, p = demo_files
    base = ["shot", str(d / "plate.png"), "--box", ",".join(map(str, p.box)), "-o", str(tmp_path / "o")]
    spec = _spec_from_args(build_parser().parse_args(base + ["--sun=-30,25"]))
    assert (spec.sun_azimuth, spec.sun_elevation) == (-30.0, 25.0)
    for bad in ("--sun=abc", "--sun=10,200", "--sun=1,2,3"):
        assert main(base + [bad, "--explain"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "sun" in err


def test_a_crack_shows_lit_fracture_faces_not_a_drawn_black_line(monkeypatch):
    """A 12 m wall broken in two by a 20 cm crack, seen obliquely so one break face
    shows, in sky light only: at the crack's mouth the face sees the sky in front of the
    wall and shows lit material (at least a third of the wall's front), darkening with
    depth into the wall. It was a near-black line (a tenth of the front): the top-down
    sky map sees the wall standing over the crack. (The break faces drawn flat: the
    shading of a face of known depth is measured, not the ragged surface.)"""
    monkeypatch.setattr("derrumbe.stages.debris_mesh.ROUGH_M", 0.0)
    plate = np.full((CAM.height, CAM.width, 3), 0.4, np.float32)
    light = Lighting(sun_vector(0, 40), np.zeros(3), np.array([0.5, 0.52, 0.56]), np.array([0.4] * 3))
    kinds = lambda n: FRONT if n[2] > 0.5 else BREAK
    fr = _boxes_fracture([([1.0, 0.5, -10.4], [3.9, 12.0, -10.0], kinds), ([4.1, 0.5, -10.4], [7.0, 12.0, -10.0], kinds)])
    fr.box_lo, fr.box_hi = np.array([-10.0, 0.0, -16.0]), np.array([10.0, 12.0, -9.0])    # the street around it
    r = _renderer(fr, light, plate, fr.centroid + [0, -400, 0])    # at rest elsewhere: drawn, not the plate
    try:
        lay = r.render(_still_sim(fr.centroid), 0.5, 0.0, 1)
    finally:
        r.release()
    lum = lay.debris[..., :3].mean(-1)
    at = lambda x, z: np.mean([lum[tuple(CAM.project(np.array([x, y, z])).astype(int)[::-1])] for y in (1.5, 2.0, 2.5)])
    front, mouth, deep = at(5.5, -10.0), at(4.1, -10.03), at(4.1, -10.3)
    assert mouth > front / 3, (mouth, front)
    assert deep < mouth / 3, (deep, mouth)
    # Nor a white one: a lip is fresh material exposed as the wall's face is, not a face
    # open to the whole sky (img_270's cracks shone white along every edge).
    assert mouth < 1.6 * front, (mouth, front)


def test_a_brick_buildings_floor_breaks_as_timber_boards_joists_and_a_plaster_ceiling():
    """Old masonry buildings have timber floors: a broken floor shows brown boards along its
    top, joists on edge every 0.6 m with dark pugging between them, a white plaster
    ceiling along its underside, and no reinforcing bars (drawn as concrete, they came
    down as pale grey plates)."""
    from derrumbe.colour import luminance
    from derrumbe.stages.render import DebrisRenderer
    lo, hi = np.array([-1.0, 2.0, -5.3]), np.array([1.0, 2.3, -5.0])
    fr = _one_box_fracture(lo, hi, lambda n: BREAK)
    fr.element_kind[:] = SLAB
    fr.elements[0].kind, fr.elements[0].axis, fr.elements[0].outer = SLAB, 1, 0
    light = Lighting(sun_vector(0, 20), np.array([0.6, 0.6, 0.6]), np.array([0.5, 0.5, 0.5]), np.array([0.4] * 3))
    plate = np.full((CAM.height, CAM.width, 3), 0.3, np.float32)
    r = DebrisRenderer(fr, CAM, plate, np.ones((CAM.height, CAM.width), np.float32), light, np.array((0.4, 0.24, 0.17)),
                       0.25, fr.centroid[:1] + [0, -300, 0], np.tile([1.0, 0, 0, 0], (1, 1)), masonry=True)
    try:
        assert r.bars.n == 0
        img = r.render(_still_sim(fr.centroid[0]), 0.5, 0.0, 1).debris[..., :3]
    finally:
        r.release()
    k = CAM.f_px / 5.0                                          # pixels a metre on the face
    row = lambda y: int(round(CAM.cy - (y - CAM.eye_m) * k))
    col = lambda x: int(round(CAM.cx + x * k))
    top, bottom = img[row(2.285), col(-0.8):col(0.8)], img[row(2.012), col(-0.8):col(0.8)]
    mid = img[row(2.2):row(2.1), :]
    joists = [col(x) for x in (-0.744, -0.144, 0.456)]        # 0.6 m apart, 7 cm thick
    between = [col(x + 0.3) for x in (-0.744, -0.144, 0.456)]
    pug = float(luminance(mid[:, between].reshape(-1, 3)).mean())
    assert float(luminance(bottom).mean()) > 2.0 * pug                      # the plaster ceiling
    assert float(luminance(mid[:, joists].reshape(-1, 3)).mean()) > 1.3 * pug   # joists against the pugging
    wood = working_to_rec709(top.mean(0))
    assert wood[0] > wood[1] > wood[2] and wood[0] > 1.5 * wood[2], wood     # brown boards


def test_a_fallen_walls_inner_face_is_smooth_plaster_knocked_off_to_the_brick_in_patches():
    """A brick wall's inner face, fallen and turned to the camera: trowelled plaster,
    smooth at the bricks' scale (its shading changes by under 1.5 % from one pixel, 9 mm
    here, to the next: shaded by the bricks' facets under it, it drew a grid of tiles,
    2.4 %), knocked off in patches (a part of the face, more along its broken edges than
    in its middle) to the darker, redder brick behind it. Drawn whole and flat, the inner
    faces of walls fallen face-up filled the foreground as grey cards (img_190 at 80 %)."""
    import cv2
    from derrumbe.colour import luminance
    from derrumbe.stages.render import DebrisRenderer
    lo, hi = np.array([-1.0, 1.0, -4.4]), np.array([1.0, 3.0, -4.0])
    fr = _one_box_fracture(lo, hi, lambda n: INTERIOR if n[2] < -0.5 else BREAK)
    plate = np.full((CAM.height, CAM.width, 3), 0.3, np.float32)
    r = DebrisRenderer(fr, CAM, plate, np.ones((CAM.height, CAM.width), np.float32), _grey_light(),
                       np.array((0.45, 0.42, 0.38)), 0.25, fr.centroid[:1] + [0, -300, 0],
                       np.tile([1.0, 0, 0, 0], (1, 1)), masonry=True)
    try:
        img = r.render(_still_sim(fr.centroid[0], _axis_quat((0, 1, 0), 180)), 0.5, 0.0, 1).debris[..., :3]
    finally:
        r.release()
    k = CAM.f_px / 4.0                                          # pixels a metre on the face, 4 m away
    row = lambda y: int(round(CAM.cy - (y - CAM.eye_m) * k))
    col = lambda x: int(round(CAM.cx + x * k))
    face = img[row(2.9):row(1.1), col(-0.9):col(0.9)]
    lum = luminance(face)
    bare = lum < 0.7 * float(np.median(lum))
    rim = np.zeros_like(bare)
    b = int(0.3 * k)
    rim[:b], rim[-b:], rim[:, :b], rim[:, -b:] = True, True, True, True
    assert 0.1 < bare.mean() < 0.6, bare.mean()
    assert bare[rim].mean() > 1.5 * bare[~rim].mean(), (bare[rim].mean(), bare[~rim].mean())
    brick, plaster = (working_to_rec709(face[m].mean(0)) for m in (bare, ~bare))
    assert brick[0] / brick[2] > 1.1 * plaster[0] / plaster[2], (brick, plaster)
    smooth = ~cv2.dilate(bare.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    both = smooth[1:] & smooth[:-1]
    step = np.abs(np.diff(lum, axis=0))[both].mean() / lum[smooth].mean()
    assert step < 0.015, step


def test_the_plaster_of_a_wall_fallen_in_pieces_runs_on_across_them():
    """A brick wall's inner face fallen in four pieces that still lie together, turned to
    the camera: the room's plaster is one skin, so the pieces' plaster matches across their
    seams (their medians within 4 %), as their broken faces need not. Tinted piece by piece
    (up to 30 % apart) it was a patchwork of lighter and darker polygons, img_190 at 100 %."""
    from derrumbe.colour import luminance
    from derrumbe.stages.render import DebrisRenderer
    inner = lambda n: INTERIOR if n[2] < -0.5 else BREAK
    strips = [(-2.0 + i, -1.0 + i) for i in range(4)]
    fr = _boxes_fracture([((x0, 1.0, -4.4), (x1, 3.0, -4.0), inner) for x0, x1 in strips])
    plate = np.full((CAM.height, CAM.width, 3), 0.3, np.float32)
    r = DebrisRenderer(fr, CAM, plate, np.ones((CAM.height, CAM.width), np.float32), _grey_light(),
                       np.array((0.45, 0.42, 0.38)), 0.25, fr.centroid + [0, -300, 0],
                       np.tile([1.0, 0, 0, 0], (fr.n, 1)), masonry=True)
    try:
        img = r.render(_still_sim(fr.centroid, _axis_quat((0, 1, 0), 180)), 0.5, 0.0, 1).debris[..., :3]
    finally:
        r.release()
    k = CAM.f_px / 4.0
    row = lambda y: int(round(CAM.cy - (y - CAM.eye_m) * k))
    col = lambda x: int(round(CAM.cx + x * k))
    lum = luminance(img)
    medians = []
    for x0, x1 in strips:
        # (turned about its own centre, each piece shows its inner face where it lay)
        face = lum[row(2.7):row(1.3), col(x0 + 0.25):col(x1 - 0.25)]
        plaster = face[face > 0.7 * np.median(face)]             # not where it is knocked off
        assert plaster.size > 0.3 * face.size
        medians.append(float(np.median(plaster)))
    steps = np.abs(np.diff(medians)) / np.array(medians[:-1])
    assert steps.max() < 0.04, medians


def _pane_scene(depth: float):
    """One pane of window glass, 1.2 x 1.6 m and 6 mm thick, depth m in front of a
    320x180 camera, facing it, falling slowly: a shard since t = 0.2 s."""
    from derrumbe.stages.simulate import SimResult
    from tests.boxes import box_mesh
    hx, hy, hz = 0.6, 0.8, 0.003
    v, tris = box_mesh(hx, hy, hz)
    n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    kinds = np.where(np.abs(n[:, 2]) > 0.9 * np.linalg.norm(n, axis=1), GLASS_FACE, BREAK).astype(np.int32)
    centre = np.array([[0.0, 1.6, -depth]])
    one = np.zeros(1, np.int64)
    fr = Fracture(centroid=centre, verts=[v], tris=[tris], kinds=[kinds], volume=np.array([2 * hx * 2 * hy * 2 * hz]),
                  inside=np.ones(1), element=one, element_kind=np.full(1, GLASS, np.int64), storey=one, piece=one,
                  cluster=one, bonds=np.zeros((0, 2), np.int64), bond_area=np.zeros(0), box_lo=centre[0] - 5,
                  box_hi=centre[0] + 5, facade_z=-depth, floor_y=np.zeros(1))
    times = np.arange(0, 1.5, 1 / 48)
    pos = centre[None] + np.array([0.0, -0.3, 0.0])[None, None] * np.maximum(times - 0.2, 0)[:, None, None]
    quat = np.tile(np.array([1.0, 0, 0, 0]), (len(times), 1, 1))
    sim = SimResult(times=times, pos=pos, quat=quat, dissipated=np.zeros(len(times)), released=np.full(1, 0.2),
                    mass=np.ones(1), info={}, shattered=np.full(1, 0.2))
    return fr, sim


def _pane_alpha(depth: float) -> np.ndarray:
    """The pane's coverage 0.6 s after it left its frame, over its middle (0.55 x 0.7 m
    each side of its centre)."""
    from derrumbe.stages.render import DebrisRenderer, Lighting
    fr, sim = _pane_scene(depth)
    cam = Camera(320, 180, 300.0, 160.0, 90.0, 1.6)
    light = Lighting(sun_dir=np.array([0.3, 0.8, 0.5]) / np.linalg.norm([0.3, 0.8, 0.5]), sun_col=np.ones(3),
                     amb_col=np.full(3, 0.3), facade_albedo=np.full(3, 0.5))
    rest = sim.pos[0] - np.array([[0, 0, 100.0]])
    r = DebrisRenderer(fr, cam, np.full((180, 320, 3), 0.3, np.float32), np.ones((180, 320), np.float32), light,
                       np.full(3, 0.6), 0.5, rest, sim.quat[0])
    try:
        a = r.render(sim, 0.8, 0.0, 1).debris[..., 3]
    finally:
        r.release()
    k = 300 / depth
    yc = int(90 + 0.3 * 0.6 * k)
    return a[yc - int(0.7 * k):yc + int(0.7 * k), int(160 - 0.55 * k):int(160 + 0.55 * k)]


def test_a_pane_out_of_its_frame_breaks_into_shards_not_a_ghost_sheet():
    """A whole pane of glass flying in one piece, a faint even film of sky, read as a
    ghost of the piece beside it (img_190 at 60 %) and made falling slabs look see-through
    (img_263, img_181). Annealed glass out of its frame is shards a hand across: 0.6 s
    after it left, part of its outline is already empty (shards fallen out), and what is
    still there is crossed by cracks of crushed, whiter glass between clear shards, finer
    than a pixel from afar (the pane stays glass, not a white sheet)."""
    for depth in (8.0, 12.0):
        a = _pane_alpha(depth)
        held = a[a >= 0.02]
        assert (a < 0.02).mean() > 0.1, depth          # shards gone from their places
        assert held.std() > 0.03, depth                # cracks and clear glass, not one film
        assert held.mean() < 0.5, depth


def test_a_falling_slabs_underside_is_lit_by_the_sunlit_street_below_it():
    """A slab in the air over a sunlit street: what faces down receives the street's own
    light, about the street's albedo times what lights the slab's top (the street is a
    near-Lambertian floor filling the lower hemisphere). With a street of albedo 0.15 the
    underside is seen at about 1/6 of the top (1/8 to 1/3 allowed: the material's relief
    and the dust on what faces up); lit by the sky alone it was 1/17, and, under the sky
    test's "covered", a black slab falling before the lens (img_190 at 60 %)."""
    sun_dir = sun_vector(0.0, 60.0)
    sun, amb = np.array([0.85, 0.86, 0.9]), np.array([0.22, 0.23, 0.27])
    street = 0.15 * (amb + sun * sun_dir[1])               # the street as the plate shows it
    light = Lighting(sun_dir, sun, amb, np.array([0.4, 0.38, 0.35]), ground_col=street)
    size = np.array([3.0, 0.3, 3.0])

    def face(centre, rows):
        fr = _one_box_fracture(centre - size / 2, centre + size / 2, lambda n: BREAK)
        r = _renderer(fr, light, np.full((CAM.height, CAM.width, 3), 0.3, np.float32), centre - [0, 500.0, 0])
        try:
            layers = r.render(_still_sim(centre), 0.5, 0.0, 1)
        finally:
            r.release()
        lum = layers.debris[..., :3].mean(-1)
        half = int(CAM.f_px * 1.0 / -centre[2])
        patch = lum[rows[0]:rows[1], int(CAM.cx) - half:int(CAM.cx) + half]
        assert (layers.debris[rows[0]:rows[1], int(CAM.cx) - half:int(CAM.cx) + half, 3] > 0.99).all()
        return float(patch.mean())

    def row(y, z):
        return CAM.cy - CAM.f_px * (y - CAM.eye_m) / z

    high, low = np.array([0.0, 4.0, -8.0]), np.array([0.0, 0.15, -8.0])
    # The underside of the one seen from below, the top of the one seen from above.
    under = face(high, (int(row(3.85, 6.5)) + 3, int(row(3.85, 9.5)) - 3))
    top = face(low, (int(row(0.3, 9.5)) + 3, int(row(0.3, 6.5)) - 3))
    assert 1 / 8 < under / top < 1 / 3, (under, top, under / top)


class _SlopedHeap:
    """A pile's front slope facing the lens: 6 m wide, from 0.2 m high 2 m away to 4.4 m
    high 8 m away (35 degrees)."""
    def __init__(self):
        self.x0, self.z0, self.cell = -3.0, -8.0, 0.1
        self.shape = (60, 60)

    def heights(self, t):
        z = self.z0 + (np.arange(self.shape[0]) + 0.5) * self.cell
        return np.repeat((0.2 + 0.7 * (-2.0 - z))[:, None], self.shape[1], 1).astype(np.float32)

    def chips(self, r_min, seed=0):
        from derrumbe.stages.heap import Chips
        return Chips(*(np.zeros(0),) * 4)


def test_the_heaps_lumps_are_not_drawn_as_a_grid_of_squares():
    """The heap's surface is broken brick, plaster and render in lumps about 15 cm across
    whose borders wander. Cut by level and upright planes with little warp, the slope of
    img_140's brick pile facing the lens showed its pale plaster lumps as white squares
    (judge 36: "a texture fault"). On a pile's front slope seen from the street, the pale
    lumps are ragged: the median of their areas over their convex hulls' is under 0.92
    (0.97 for the squares)."""
    import cv2
    from derrumbe.colour import luminance
    from derrumbe.stages.render import DebrisRenderer
    cam = Camera(640, 360, 460.0, 320.0, 180.0, 1.6)
    fr = _one_box_fracture(np.array([-0.1, 0.0, 50.0]), np.array([0.1, 0.2, 50.2]), lambda n: BREAK)   # behind the lens
    light = Lighting(sun_vector(30, 50), np.array([0.7, 0.7, 0.7]), np.array([0.35, 0.37, 0.42]), np.array([0.6, 0.55, 0.45]))
    plate = np.full((360, 640, 3), 0.3, np.float32)
    r = DebrisRenderer(fr, cam, plate, np.ones((360, 640), np.float32), light, np.array((0.4, 0.24, 0.17)), 0.25,
                       fr.centroid[:1], np.tile([1.0, 0, 0, 0], (1, 1)), masonry=True, heap=_SlopedHeap())
    try:
        img = r.render(_still_sim(fr.centroid[0]), 0.5, 0.0, 1).debris[70:330, 120:520, :3]
    finally:
        r.release()
    lum = luminance(img)
    assert lum.min() > 0.0                                        # all heap
    sat = (img.max(-1) - img.min(-1)) / np.maximum(img.max(-1), 1e-6)
    pale = ((sat < 0.15) & (lum > np.percentile(lum, 60))).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(pale, connectivity=8)
    solidity = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] >= 20:
            outline = max(cv2.findContours((lab == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0],
                          key=cv2.contourArea)
            solidity.append(stats[i, cv2.CC_STAT_AREA] / max(cv2.contourArea(cv2.convexHull(outline)), 1.0))
    assert len(solidity) > 30
    assert np.median(solidity) < 0.92, np.median(solidity)
