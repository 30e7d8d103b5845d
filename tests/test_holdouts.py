"""Holdouts: found without help on the shared plates, each at its own depth, layered by
depth against the debris and the dust, and moving ones held out frame by frame."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from derrumbe.cli import main
from derrumbe.stages.camera import Camera
from derrumbe.stages.exr import read_exr
from derrumbe.stages import holdouts, pedestrian_net
from derrumbe.stages.holdout_cues import people as people_cue
from derrumbe.stages.holdout_cues.cutout import box_iou
from derrumbe.stages.holdouts import AT_WALL_M, FRONT_MARGIN_M, Holdout, HoldoutSet, add_user_holdouts, assign_depths, \
    contact_depth, in_front
from tests.conftest import read_rgb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import holdout_metrics  # noqa: E402


# --- depth from the ground contact --------------------------------------------------------

def test_contact_depth_inverts_the_cameras_projection_of_ground_points():
    cam = Camera(1280, 720, 1000.0, 640.0, 300.0, 1.6)
    for z in (3.0, 12.0, 40.0):
        u, v = cam.project(np.array([2.0, 0.0, -z]))          # a point on the street z metres away
        assert contact_depth(v, cam.f_px, cam.cy, cam.eye_m) == pytest.approx(z, rel=1e-6)
    assert contact_depth(cam.cy - 5, cam.f_px, cam.cy, cam.eye_m) is None     # above the horizon: not ground


def _obj(i, kind, y0, y1, H):
    return Holdout(i, kind, (10, y0, 20, y1), None if y1 >= H - 1 else float(y1), float(y1 - y0), 1.0,
                   np.ones((y1 - y0, 10), np.float32))


def test_each_holdout_gets_its_depth_and_the_fallbacks_say_why():
    H, f, cy, eye, facade = 720, 1000.0, 300.0, 1.6, 30.0
    hs = HoldoutSet([_obj(1, "vehicle", 500, 620, H), _obj(2, "pole", 100, 720, H), _obj(3, "person", 200, 340, H),
                     _obj(4, "user", 200, 340, H)], (H, 100))
    dropped = assign_depths(hs, f, cy, eye, facade)
    z = {o.id: o for o in hs.objects}
    assert z[1].depth_m == pytest.approx(f * eye / (620 - cy)) and z[1].depth_source == "ground contact"
    # Cut by the frame's bottom: nearer than the bottom row's ground.
    assert z[2].depth_m == pytest.approx(f * eye / (H - cy)) and "below the frame" in z[2].depth_source
    # A "person" standing 40 m away on a 30 m-deep facade is an ornament, not a passer-by;
    # the artist's own mask with the same contact is kept, just in front of the facade.
    assert [o.id for o in dropped] == [3] and 3 not in z
    assert z[4].depth_m == pytest.approx(facade - FRONT_MARGIN_M)


def test_a_user_mask_adds_one_object_per_connected_part():
    hs = HoldoutSet([], (50, 80))
    m = np.zeros((50, 80), np.float32)
    m[10:20, 5:15] = 1
    m[30:50, 40:60] = 1
    add_user_holdouts(hs, m)
    assert [o.kind for o in hs.objects] == ["user", "user"]
    assert np.array_equal(hs.matte() > 0.5, m > 0.5)
    assert hs.objects[0].contact_row == 20 and hs.objects[1].contact_row is None


def test_a_passer_by_on_the_base_line_stands_in_front_and_a_figure_in_a_window_does_not():
    # Base line at cy + f * eye / facade = 300 + 1000 * 1.6 / 30 = 353.3: a figure whose
    # feet are on it (353, the matte's bottom row) is on the pavement against the wall;
    # one whose feet are 60 px higher stands in a shop window. Both are 57 px tall: 1.7 m
    # at 30 m (a taller one would be no person at that depth). The first stands against
    # the wall (AT_WALL_M out, where the rubble heaped at the wall buries its foot: 2 m out,
    # a bin stood over the pile as a black square, img_100); one whose feet are 3 px lower,
    # still on the line within its uncertainty, where its contact says: 1.6 * 1000 / 56 m.
    H, f, cy, eye, facade = 720, 1000.0, 300.0, 1.6, 30.0
    hs = HoldoutSet([_obj(1, "person", 296, 353, H), _obj(2, "person", 236, 293, H), _obj(3, "person", 299, 356, H)],
                    (H, 100))
    dropped = assign_depths(hs, f, cy, eye, facade)
    assert [o.id for o in hs.objects] == [1, 3] and [o.id for o in dropped] == [2]
    assert hs.objects[0].depth_m == pytest.approx(facade - AT_WALL_M)
    assert hs.objects[1].depth_m == pytest.approx(1.6 * 1000.0 / 56.0)
    assert facade - FRONT_MARGIN_M < hs.objects[1].depth_m < facade - AT_WALL_M
    assert all("base line" in o.depth_source for o in hs.objects)


def test_what_stands_in_front_is_taken_out_of_the_building_and_a_figure_in_a_window_is_not():
    H, W = 720, 100
    building = np.zeros((H, W), np.float32)
    building[100:353] = 1                                   # base line at row 353
    hs = HoldoutSet([_obj(1, "person", 230, 353, H), _obj(2, "person", 170, 293, H),
                     _obj(3, "vehicle", 600, 720, H)], (H, W))
    front = in_front(hs, building)
    assert front[230:353, 10:20].min() == 1.0               # on the pavement: in front
    assert front[170:229, 10:20].max() == 0.0               # in a window: part of the facade
    assert front[600:, 10:20].min() == 1.0                  # cut by the frame's bottom: nearest of all


# --- layering by depth in the comp --------------------------------------------------------

def _layers(H, W, debris_z, debris_a=1.0):
    from derrumbe.stages.render import FrameLayers
    deb = np.zeros((H, W, 4), np.float32)
    deb[...] = (0.9 * debris_a, 0.1 * debris_a, 0.1 * debris_a, debris_a)
    n = np.ones((H, W), np.float32)
    return FrameLayers(debris=deb, static=np.zeros((H, W), np.float32), ground=np.ones((H, W), np.float32),
                       samples=1, depth_sum=n * debris_z, depth_n=n)


def _comp(layers, hold_z, dust=None):
    from derrumbe.colour import linear_to_u8
    from derrumbe.stages.comp import composite
    H, W = layers.static.shape
    plate = np.full((H, W, 3), 0.3, np.float32)
    return composite(plate, linear_to_u8(plate), plate * 0.5, np.ones((H, W), np.float32),
                     np.ones((H, W), np.float32), layers, np.zeros(3, np.float32), 0.0, np.zeros(2),
                     np.random.default_rng(0), dust, np.full((H, W), hold_z, np.float32))


def test_a_piece_landing_in_front_of_a_lamp_post_covers_it_and_one_behind_does_not():
    in_front = _comp(_layers(4, 4, debris_z=3.0), hold_z=8.0)          # piece at 3 m, post at 8 m
    behind = _comp(_layers(4, 4, debris_z=20.0), hold_z=8.0)           # piece at 20 m, post at 8 m
    assert np.allclose(in_front.linear, (0.9, 0.1, 0.1), atol=1e-5)
    assert np.allclose(behind.linear, 0.3, atol=1e-6)
    assert behind.debris[..., 3].max() == 0 and in_front.debris[..., 3].min() == pytest.approx(1.0)


def _dust_scene(H, W):
    """No debris, and a dense dust layer of one colour: (layers, colour, empty, solid, shade)."""
    no_debris = _layers(H, W, debris_z=0.0, debris_a=0.0)
    no_debris.depth_n[:] = 0
    col = np.array([0.6, 0.55, 0.5], np.float32)
    z4 = np.zeros((H, W, 4), np.float32)
    solid = np.concatenate([np.broadcast_to(col, (H, W, 3)), np.ones((H, W, 1), np.float32)], -1)
    return no_debris, col, z4, solid, np.zeros((H, W, 2), np.float32)


def test_dust_in_front_of_a_car_swallows_it_and_dust_behind_it_is_hidden():
    from derrumbe.stages.dust_render import DustLayers
    H = W = 4
    no_debris, col, z4, solid, shade = _dust_scene(H, W)
    front = _comp(no_debris, 15.0, DustLayers(solid.copy(), z4, shade, shade, 0.6))
    back = _comp(no_debris, 15.0, DustLayers(z4, solid.copy(), shade, shade, 0.6))
    assert np.allclose(front.linear, col, atol=1e-5)          # the front reached the car: it is gone
    assert np.allclose(back.linear, 0.3, atol=1e-6)           # dust behind the car: the car, untouched
    assert back.dust[..., 3].max() == 0


def test_the_dust_is_split_at_the_nearer_of_the_debris_and_a_thin_holdout():
    from derrumbe.frames import opaque_depth
    H, W = 60, 90
    layers = _layers(H, W, debris_z=25.0)
    layers.depth_n[:, :45] = 0                         # debris only on the right half
    hz = np.full((H, W), np.inf, np.float32)
    hz[:, 10] = 6.0                                    # a one-pixel pole at 6 m
    hz[:, 70:72] = 40.0                                # a post behind the debris
    op = opaque_depth(layers, hz, (30, 20))
    assert np.all(op[:, 3] == 6.0)                     # the pole survives the third-size grid
    assert np.all(op[:, 0] == 0.0)                     # nothing opaque: 0, as the ray march expects
    assert np.all(op[:, 23] == 25.0)                   # the debris is nearer than the post
    assert np.allclose(op[:, 16:], 25.0)


# --- measured on the shared plates ----------------------------------------------------------

PLATES = holdout_metrics.plates()


@pytest.mark.skipif(not PLATES, reason="the shared plates and their labels are not on this machine")
@pytest.mark.xfail(strict=True, reason="measured below the issue's target (see benchmarks/README.md): the classical "
                                       "cues miss most labelled objects; remove this mark once they reach it")
def test_automatic_holdouts_find_the_labelled_objects_and_spare_the_facade():
    rows = holdout_metrics.all_metrics()
    s = holdout_metrics.summary(rows)
    assert s["counted"] >= 20
    assert s["recall"] >= 0.8, rows
    assert s["worst_false_facade"] < 0.02, rows


def test_label_files_are_polygons_inside_their_plates():
    for f in sorted((ROOT / "tests" / "holdout_labels").glob("*.json")):
        d = json.loads(f.read_text())
        w, h = d["size"]
        for o in d["objects"]:
            assert o["kind"] in {"person", "vehicle", "pole", "sign", "furniture", "tree", "wire"}
            for poly in o["polygons"]:
                a = np.array(poly)
                assert len(a) >= 3 and a[:, 0].min() >= 0 and a[:, 0].max() <= w and a[:, 1].max() <= h, f.name


# --- the pedestrian network that ships inside its wheel -------------------------------------

DEMO_JPG = ROOT / "derrumbe" / "data" / "demo_street.jpg"
DEMO_LABELS = ROOT / "tests" / "holdout_labels" / "street.json"
needs_net = pytest.mark.skipif(not pedestrian_net.available(), reason="no local pedestrian model "
                                                                      "(DERRUMBE_PEDESTRIAN_MODEL)")


def test_the_anchor_grid_is_the_ssd_mobilenet_one():
    # SSD on MobileNet at 300x300 has feature maps of 19, 10, 5, 3, 2 and 1 cells, 3 anchors
    # a cell in the lowest and 6 above: the 1917 boxes of the TF Object Detection API's model.
    a = pedestrian_net._anchors([19, 10, 5, 3, 2, 1])
    assert a.shape == (1917, 4)
    # The first cell's anchors: centre (0.5/19, 0.5/19), then 0.1 x 0.1, then the minimum
    # scale 0.2 at aspect ratios 2 and 1/2 (w/h).
    assert np.allclose(a[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1])
    assert a[1, 3] / a[1, 2] == pytest.approx(2.0) and np.sqrt(a[1, 2] * a[1, 3]) == pytest.approx(0.2)
    # The coarsest layer's last anchor: scale sqrt(0.95 * 1.0), square, centred.
    assert np.allclose(a[-1], [0.5, 0.5, np.sqrt(0.95), np.sqrt(0.95)])


@needs_net
def test_the_network_finds_the_pedestrians_of_the_demo_photo_by_their_boxes():
    img = cv2.imread(str(DEMO_JPG))
    boxes = [b for b, _ in people_cue._net_people(img, 850.0)]
    people = [np.array(p, float) for o in json.loads(DEMO_LABELS.read_text())["objects"] if o["kind"] == "person"
              for p in o["polygons"]]
    hit = 0
    for poly in people:
        lb = np.array([poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()])
        hit += any(box_iou(lb, b) >= 0.4 for b in boxes)
    assert len(people) == 7 and hit >= 5, boxes


def test_without_the_wheel_the_people_come_from_hog(monkeypatch):
    monkeypatch.setattr(pedestrian_net, "available", lambda: False)
    called = []
    monkeypatch.setattr(people_cue, "_net_people", lambda *a: called.append(1) or [])
    img = cv2.imread(str(DEMO_JPG))
    small = cv2.resize(img, (960, 540), interpolation=cv2.INTER_AREA)
    b = np.zeros((540, 960), np.float32)
    b[115:425, 150:] = 1
    hs = holdouts.find_holdouts(np.ascontiguousarray(small[..., ::-1]), b, 1)
    assert not called and any(o.kind == "person" for o in hs.objects)


def _label_masks(shape):
    return {o["what"]: o for o in json.loads(DEMO_LABELS.read_text())["objects"]}, \
        holdout_metrics.label_masks(DEMO_LABELS, shape)


@needs_net
def test_cars_and_people_in_front_of_the_shop_are_not_part_of_the_building():
    """The demo's matte runs down to the pavement: the parked cars and the passers-by were
    inside it and broke up with the facade. Each is now a holdout in front and is taken
    out of the building matte (fracture drops fragments where the matte is 0)."""
    from derrumbe.stages.matte import compute_matte
    srgb = np.ascontiguousarray(cv2.imread(str(DEMO_JPG))[..., ::-1])
    m = compute_matte(srgb, [300, 230, 1920, 850], None, None, 1)
    labels = holdout_metrics.label_masks(DEMO_LABELS, srgb.shape[:2])
    inside = {name: float((m.building[lm] > 0.5).mean()) for name, lm in labels if lm[:, 300:].any()}
    assert inside["black sedan"] < 0.2 and inside["white van"] < 0.2, inside
    people = [v for k, v in inside.items() if any(w in k for w in ("man", "woman"))]
    assert sum(v < 0.4 for v in people) >= 5, inside
    # The facade itself is still there: above the shop, nothing was taken out.
    assert m.building[400:600, 400:1800].min() == 1.0


# --- a video plate: something crossing in front of the building -----------------------------

VW, VH, VN = 320, 180, 24


def _crossing_frames(demo_files):
    """The demo plate with a tall dark block (a bus) driving across in front of the
    building: its top over the facade, its wheels on the street below the base line."""
    d, p = demo_files
    base = cv2.resize(p.srgb, (VW, VH), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(VN):
        f = base.copy()
        x = 40 + i * 9
        f[118:164, x:x + 34] = (40, 70, 150)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def crossing_shot(demo_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("crossing")
    frames = _crossing_frames(demo_files)
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"plate.{1001 + i:04d}.png"), f[..., ::-1])
    s = VW / p_width(demo_files)
    box = ",".join(str(int(round(v * s))) for v in demo_files[1].box)
    out = d / "out"
    rc = main(["shot", str(d / "plate.####.png"), "--box", box, "-o", str(out), "--start", "0.1", "--fps", "24",
               "--pieces", "300", "--dust", "0", "--shake", "0", "--grain", "0", "--exr", "-q"])
    assert rc == 0
    return out, frames, json.loads((out / "manifest.json").read_text())


def p_width(demo_files):
    return demo_files[1].srgb.shape[1]


def test_a_bus_crossing_in_front_of_the_collapse_stays_in_front(crossing_shot):
    out, frames, m = crossing_shot
    assert m["holdouts"]["moving_tracks"] >= 1
    checked = 0
    for i in range(VN):
        png = read_rgb(out / f"shot_v001.{1001 + i:04d}.png")
        _, ch = read_exr(out / "exr" / f"shot_v001.{1001 + i:04d}.exr")
        x = 40 + i * 9
        bus = np.zeros((VH, VW), bool)
        bus[120:162, x + 2:x + 32] = True                    # its inside, away from the soft edge
        # Where the building it covers has already fallen away around it (the comp changed
        # the building's pixels beside it), the bus is still the plate frame's own pixels.
        beside = np.zeros_like(bus)
        beside[120:162, max(0, x - 12):x] = beside[120:162, x + 34:x + 46] = True
        beside &= ch["matte.building"] > 0.5
        fallen = beside.any() and (png[beside] != frames[i][beside]).any(axis=1).mean() > 0.5
        assert np.array_equal(png[bus], frames[i][bus]), i
        checked += int(fallen and (bus & (ch["matte.building"] > 0.5)).sum() > 20)
        moving = [k for k in ch if k.startswith("holdout.m")]
        assert moving and max(ch[k][bus].min() for k in moving) > 0.9, i
    assert checked >= 3          # the debris really crossed behind it in several frames


# --- the web page's preview of the holdouts ------------------------------------------------

def test_the_page_can_show_the_automatic_holdouts_before_a_render(demo_files, tmp_path):
    pytest.importorskip("fastapi")
    import base64

    from fastapi.testclient import TestClient

    from derrumbe.web.app import create_app
    d, p = demo_files
    img = cv2.resize(p.srgb, (320, 180), interpolation=cv2.INTER_AREA)
    box = [int(round(v * 320 / p.srgb.shape[1])) for v in p.box]
    origin = "http://127.0.0.1:8000"        # as the page in a browser (the server checks Host and Origin)
    with TestClient(create_app(tmp_path), base_url=origin, headers={"Origin": origin}) as c:
        plate = c.post("/api/plates", content=cv2.imencode(".png", img[..., ::-1])[1].tobytes()).json()
        r = c.post(f"/api/plates/{plate['id']}/holdouts", json={"box": box})
        assert r.status_code == 200
        body = r.json()
        png = base64.b64decode(body["matte"].split(",", 1)[1])
        matte = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert matte.shape == (180, 320)
        for o in body["objects"]:
            x0, y0, x1, y1 = o["bbox"]
            assert {"kind", "contact_row", "pixel_height", "confidence"} <= set(o)
            assert matte[y0:y1, x0:x1].max() > 128          # each listed object is in the matte
        bad = c.post(f"/api/plates/{plate['id']}/holdouts", json={"box": [1, 2]})
        assert bad.status_code == 400 and "box" in bad.json()["detail"]
        outside = c.post(f"/api/plates/{plate['id']}/holdouts", json={"box": [400, 300, 500, 400]})
        assert outside.status_code == 400 and "outside" in outside.json()["detail"]


def test_a_holdouts_edge_shows_its_own_colour_over_new_dust_not_the_old_background():
    """A white car photographed against a dark shopfront: its matte's soft edge holds the
    dark background. Once dust stands behind the car, that edge showed as a dark outline
    (img_140 at 60 %): it now takes the car's own colour. Where nothing changed behind the
    car, its edge is the plate's to the bit, and its solid pixels always are."""
    from derrumbe.colour import linear_to_u8
    from derrumbe.stages.comp import composite
    from derrumbe.stages.dust_render import DustLayers
    H, W = 40, 60
    yy, xx = np.mgrid[:H, :W]
    d = np.hypot(yy - 20, xx - 30)
    car = np.clip(12.5 - d, 0.0, 1.0).astype(np.float32)       # a soft-edged disc, radius 12
    hold = car                                                 # its matte, soft where the car's edge is
    plate = (0.02 + 0.78 * car[..., None] * np.ones(3)).astype(np.float32)   # white car, dark shopfront
    layers, col, z4, back, shade = _dust_scene(H, W)

    def comp(dust):
        return composite(plate, linear_to_u8(plate), plate, np.ones((H, W), np.float32), hold, layers,
                         np.zeros(3, np.float32), 0.0, np.zeros(2), np.random.default_rng(0), dust,
                         np.full((H, W), 5.0, np.float32)).linear
    out = comp(DustLayers(z4, back.copy(), shade, shade, 0.6))
    ring = (hold > 0.01) & (hold < 1.0)
    lum = out[..., 1]
    # Between the car (0.8) and the dust (0.55): nothing darker than the dust, anywhere on the edge.
    assert ring.sum() > 50 and lum[ring].min() >= 0.55 - 0.02, lum[ring].min()
    assert np.array_equal(out[hold >= 1.0], plate[hold >= 1.0])
    # Without the dust, the edge is the plate's exactly.
    assert np.array_equal(comp(None), plate)


def test_a_car_cut_by_the_frames_bottom_stands_in_the_rubbles_way_up_to_the_lens():
    """What stands in front is a box the debris hits. A car whose wheels are in frame is
    its silhouette's box at its contact's depth: its top edge projects onto the
    silhouette's top row. One cut by the frame's bottom (its depth is the bottom row's
    ground) runs on toward the lens, never into it: rubble thrown over it landed between
    it and the lens, over its wheels (img_140, img_190)."""
    cam = Camera(1280, 720, 1000.0, 640.0, 300.0, 1.6)
    alpha = np.ones((100, 300), np.float32)
    seen = Holdout(1, "vehicle", (400, 520, 700, 620), 620.0, 100.0, 1.0, alpha, depth_m=5.0)
    cut = Holdout(2, "vehicle", (800, 620, 1100, 720), None, 100.0, 1.0, alpha, depth_m=3.2)
    (lo_s, hi_s), (lo_c, hi_c) = holdouts.obstacles([seen, cut], cam, 12.0)
    top_row = cam.cy - (hi_s[1] - cam.eye_m) * cam.f_px / -hi_s[2]
    assert top_row == pytest.approx(520, abs=0.5)
    assert hi_s[2] == pytest.approx(-5.0) and lo_s[2] < -5.0
    assert hi_c[2] == pytest.approx(-holdouts.LENS_CLEAR_M)        # 3.2 m less CUT_ON_M, past the lens
    assert lo_c[2] < -3.2


def test_a_lamp_post_is_an_obstacle_as_wide_as_its_trunk_not_its_arms():
    """A lamp post's matte holds its arm and lantern at the top and a sign on it half
    way down. As wide as its box (1.4 m at img_288's post) it held a column of rubble
    7 m tall standing against it; the debris meets the trunk only (20 px here, at 10 m
    and f 1000 px: 0.2 m), and, cut by the frame's bottom, it stays a post instead of
    running on toward the lens as a wall."""
    cam = Camera(1280, 720, 1000.0, 640.0, 300.0, 1.6)
    alpha = np.zeros((720, 120), np.float32)
    alpha[:, 50:70] = 1.0                      # the trunk, to the frame's bottom
    alpha[40:60, 0:120] = 1.0                  # the arm
    alpha[300:420, 20:110] = 1.0               # a sign on it
    post = Holdout(1, "pole", (600, 0, 720, 720), None, 720.0, 1.0, alpha, depth_m=10.0)
    (lo, hi), = holdouts.obstacles([post], cam, 14.0)
    assert hi[0] - lo[0] == pytest.approx(21 * 10.0 / 1000.0, abs=0.02)
    assert 0.5 * (lo[0] + hi[0]) == pytest.approx((660.5 - cam.cx) * 10.0 / 1000.0, abs=0.02)
    assert hi[2] == pytest.approx(-10.0) and lo[2] == pytest.approx(-10.0 - holdouts.OBSTACLE_OTHER_M)


def test_a_thin_veil_leaves_a_holdout_readable_and_a_dense_front_still_swallows_it():
    """A still plate's people and cars cannot move: under the even veil a cloud spreads
    over the street (half opaque) they read as see-through cut-outs standing in it, the
    reviews' first complaint ten times over. Over a holdout the dust in front covers it
    as its opacity cubed (comp.VEIL_POWER): an eighth under a half-opaque veil, while a
    dense front (0.97) still swallows it (over 0.9). Beside it the cloud is as it was."""
    from derrumbe.colour import linear_to_u8
    from derrumbe.stages.comp import composite
    from derrumbe.stages.dust_render import DustLayers
    H, W = 4, 8
    no_debris, col, z4, _, shade = _dust_scene(H, W)
    plate = np.full((H, W, 3), 0.3, np.float32)
    hold = np.zeros((H, W), np.float32)
    hold[:, :4] = 1.0                                            # a car on the left half
    for a, most, least in ((0.5, 0.13, 0.12), (0.97, 1.0, 0.9)):
        front = np.concatenate([np.broadcast_to(col * a, (H, W, 3)), np.full((H, W, 1), a, np.float32)], -1)
        out = composite(plate, linear_to_u8(plate), plate, np.ones((H, W), np.float32), hold, no_debris,
                        np.zeros(3, np.float32), 0.0, np.zeros(2), np.random.default_rng(0),
                        DustLayers(front.astype(np.float32), z4, shade, shade, 0.6), np.full((H, W), 6.0, np.float32))
        cover = (out.linear[..., 0] - 0.3) / (col[0] - 0.3)     # how much of the dust's colour each pixel took
        assert least <= cover[:, :4].min() and cover[:, :4].max() <= most, (a, cover[0])
        assert np.allclose(cover[:, 4:], a, atol=1e-4)                # beside it, the cloud as it is


def test_a_lamp_posts_matte_does_not_take_in_the_dark_canopy_it_passes():
    """A dark lamp post (a 16 px shaft on a 36 px foot) passes, just above its foot, a
    dark canopy that touches it (20 rows, 50 px out to its left) on an orange wall. Its
    matte follows the shaft and the foot and stays within 1.3 times the shaft's width at
    the canopy: traced up from its foot's edges, it took the canopy in (62 px where the
    shaft is 20, img_288), and the old wall hung round the post in a box once the
    building fell."""
    from derrumbe.stages.holdout_cues.poles import poles
    h, w = 300, 640
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[:] = (90, 140, 210)                                      # an orange render wall (BGR)
    bgr[260:, :] = (150, 150, 150)                               # the street below its base line
    post = (50, 48, 46)
    bgr[:, 300:316] = post                                       # the shaft, frame top to bottom
    bgr[230:, 290:326] = post                                    # its foot
    bgr[205:225, 250:300] = (52, 50, 47)                         # the canopy, touching the shaft
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = poles(bgr, gray, 260.0, 0)
    assert len(found) >= 1
    m = np.any([f[0] for f in found], axis=0)
    at = lambda rows: m[rows].sum(axis=1)
    assert np.all(at(slice(20, 190)) >= 14) and np.all(at(slice(20, 190)) <= 20)     # the shaft
    assert at(slice(205, 225)).max() <= 1.3 * 16 + 1                                 # not the canopy
    assert not m[205:225, 250:290].any()
    assert at(slice(240, 300)).min() >= 32                                           # its foot, whole
