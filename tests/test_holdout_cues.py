"""The holdout cues one by one, on plates drawn in metres (the answer known without asking
the code under test) and on the shared plates' hand-made labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from derrumbe.stages.holdout_cues.cutout import trim_continuation
from derrumbe.stages.holdout_cues.furniture import furniture
from derrumbe.stages.holdout_cues.people import _hog_people
from derrumbe.stages.holdout_cues.street import no_square_humps, rise_and_fall, smooth_outline
from derrumbe.stages.holdout_cues.wires import wires
from derrumbe.stages.holdouts import Holdout, HoldoutSet, assign_depths, find_holdouts
from tests.facades import draw_facade

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import holdout_metrics  # noqa: E402

DEMO_JPG = ROOT / "derrumbe" / "data" / "demo_street.jpg"
DEMO_LABELS = ROOT / "tests" / "holdout_labels" / "street.json"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _box(d, xa, ya, xb, yb):
    """Plate pixels of a rectangle given in metres (x from the facade's left edge, y up
    from its base line)."""
    px = 1.0 / d.m_per_px
    x0 = 40                                   # facades.draw_facade's left margin
    return (int(round(x0 + xa * px)), int(round(d.base_row - yb * px)),
            int(round(x0 + xa * px + (xb - xa) * px)), int(round(d.base_row - ya * px)))


def _street_plate(things):
    """A three-storey facade with its shop windows and door (the ground floor repeats bay
    by bay), a street in front, and `things` drawn on it: (x0, x1, height) in metres
    standing on the base line, bollards of dark grey stone (tapering to a round cap).
    Returns the drawing and the things' masks."""
    d = draw_facade(storeys=3, bays=8, m_per_px=0.03, street_px=40, sky_px=30, seed=3)
    img = d.srgb.copy()
    masks = []
    for xa, xb, hgt in things:
        x0, y0, x1, y1 = _box(d, xa, 0.0, xb, hgt)
        y1 += 4                              # its foot a little in front of the wall, on the pavement
        wd, r = x1 - x0, (x1 - x0) * 0.4
        cx = (x0 + x1) / 2.0
        poly = np.array([[x0, y1], [x1, y1], [cx + r, y0 + r], [cx - r, y0 + r]], np.int32)
        m = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(m, [poly], 1)
        cv2.circle(m, (int(round(cx)), int(round(y0 + r))), int(round(r)), 1, -1)
        img[m > 0] = (92, 96, 104)
        masks.append(m > 0)
    return d, np.ascontiguousarray(img), masks


# --- street furniture against the facade's repetition ---------------------------------------

def _furniture_masks(img: np.ndarray, base_row: float):
    """What the furniture cue finds on a drawn plate, and each find as a frame-sized mask."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    found = furniture(bgr, bgr, float(base_row), seed=1)
    shape = img.shape[:2]
    return found, [np.pad(f.mask, ((f.y, shape[0] - f.y - f.mask.shape[0]), (f.x, shape[1] - f.x - f.mask.shape[1])))
                   for f in found]


def _best_furniture(img: np.ndarray, base_row: float, thing: np.ndarray):
    """The furniture cue's cut (frame-sized) that covers most of `thing`, and all it found."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    found = furniture(bgr, bgr, float(base_row), seed=1)
    shape = img.shape[:2]
    full = [np.pad(f.mask, ((f.y, shape[0] - f.y - f.mask.shape[0]), (f.x, shape[1] - f.x - f.mask.shape[1])))
            for f in found]
    return max(full, key=lambda f: (f & thing).sum()), found


def test_a_bollard_in_front_of_a_repeating_ground_floor_is_found_and_the_door_is_not():
    # Bollards 0.3 m wide and 0.9 m tall in front of two shop windows' stall risers (over
    # the risers' wall, up against the dark glass); the door (bay 2) reaches the street
    # too but is the facade's own.
    d, img, masks = _street_plate([(9.0, 9.3, 0.9), (12.0, 12.3, 0.9)])
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    found = furniture(bgr, bgr, float(d.base_row), seed=1)
    shape = img.shape[:2]
    full = [np.pad(f.mask, ((f.y, shape[0] - f.y - f.mask.shape[0]), (f.x, shape[1] - f.x - f.mask.shape[1])))
            for f in found]
    for m in masks:
        assert max((_iou(m, f) for f in full), default=0.0) >= 0.5, [f.box for f in found]
    door = np.zeros(shape, bool)
    x0, y0, x1, y1 = _box(d, 1.5 * 2.7 - 0.55, 0.0, 1.5 * 2.7 + 0.55, 2.3)
    door[y0:y1, x0:x1] = True
    assert all((f & door).sum() < 0.1 * door.sum() for f in full)
    assert len(found) == 2


def test_a_tall_board_out_on_the_pavement_is_cut_whole_not_only_its_foot():
    """The row test looks for furniture in a band a fifth of the frame over the base line,
    and the cut reaches a quarter of the patch over it: a board taller than that, out on
    the pavement, was held out only up to there and the rest of it was erased with the
    facade (img_100's SALE board). A cut that still fills its rectangle's top is cut
    again reaching higher; a board out on the pavement may be a plain rectangle (a door
    in the wall may not, and is not found: the test above)."""
    d, img, _ = _street_plate([])
    x0, y0, x1, y1 = _box(d, 10.0, 0.4, 11.0, 4.6)
    y0, y1 = y0 + 30, y1 + 30                                 # out on the pavement, nearer the lens
    img[y0:y1, x0:x1] = (40, 70, 160)                          # a blue panel with a white poster on it
    img[y0 + 10:y0 + 40, x0 + 5:x1 - 5] = (235, 235, 228)
    legs = np.zeros(img.shape[:2], bool)
    for lx in (x0 + 3, x1 - 6):
        legs[y1:y1 + 13, lx:lx + 3] = True
    img[legs] = (50, 50, 54)
    board = np.zeros(img.shape[:2], bool)
    board[y0:y1, x0:x1] = True
    best, found = _best_furniture(img, d.base_row, board)
    rows = board.any(axis=1)
    assert (best & board).any(axis=1)[rows].mean() > 0.97, [f.box for f in found]
    assert _iou(board, best & ~legs) >= 0.7, (_iou(board, best & ~legs), [f.box for f in found])


def test_a_framed_board_is_held_out_to_its_frame_not_only_its_poster():
    """A board out on the pavement whose frame is the colour of the wall behind it: the
    row test and GrabCut keep only its bright poster, and the frame went with the facade
    (img_100's SALE board, half see-through, then under the rubble). Its frame's sides
    are long verticals just outside the poster, one running on down to the pavement: the
    cut is completed to the rectangle between them."""
    d, img, _ = _street_plate([])
    x0, y0, x1, y1 = _box(d, 10.0, 0.4, 11.2, 3.6)
    y0, y1 = y0 + 40, y1 + 40                                 # out on the pavement, nearer the lens
    wall = np.median(img[y0 - 60:y0 - 20, x0:x1].reshape(-1, 3), axis=0)
    img[y0:y1, x0:x1] = wall                                   # the frame: the wall's own colour...
    img[y0:y1, [x0, x1 - 1]] = (60, 60, 64)                    # ...its sides dark lines
    img[y0 + 8:y1 - 6, x0 + 8:x1 - 8] = (200, 40, 30)          # a red poster in it
    img[y1:y1 + 12, (x0 + x1) // 2 - 2:(x0 + x1) // 2 + 2] = (50, 50, 54)   # its post
    board = np.zeros(img.shape[:2], bool)
    board[y0:y1, x0:x1] = True
    poster = np.zeros_like(board)
    poster[y0 + 8:y1 - 6, x0 + 8:x1 - 8] = True
    best, found = _best_furniture(img, d.base_row, board)
    assert _iou(board, best) >= 0.8, (_iou(board, best), _iou(poster, best), [f.box for f in found])


def test_a_frame_is_completed_only_where_an_edge_reaches_the_pavement_past_the_foot():
    """The frame's sides must run on past the facade's foot by a fiftieth of the frame (the
    base line's own uncertainty is a hundredth): a pair of door jambs ending on the base
    line beside a cut is no board's frame."""
    from derrumbe.stages.holdout_cues.cutout import Found
    from derrumbe.stages.holdout_cues.furniture import _framed
    H, W = 400, 600
    img = np.full((H, W, 3), 180, np.uint8)
    img[200:300, [280, 320]] = 40                        # two dark verticals, rows 200-300
    poster = Found(285, 220, np.ones((70, 30), bool), "furniture", 0.5)
    for base, completed in ((300 - 0.01 * H, False), (300 - 0.05 * H, True)):
        out = _framed(poster, img, base)
        assert (out.mask.sum() > 1.5 * poster.mask.sum()) == completed, (base, out.box)


def test_light_at_the_end_of_a_dark_gateway_is_not_furniture_and_a_bollard_still_is():
    """img_140: the lit courtyard at the end of a gateway's dark passage, a bright patch on
    the base line framed by darkness above and at both sides, stood in the rubble as
    street furniture. It is behind the facade: not held out; a bollard is."""
    d, img, masks = _street_plate([(12.0, 12.3, 0.9)])
    gx0, gy0, gx1, gy1 = _box(d, 1.5 * 2.7 - 0.55, 0.0, 1.5 * 2.7 + 0.55, 2.3)
    img[gy0:gy1, gx0:gx1] = (34, 30, 28)                     # the passage, in shade
    lx0, ly0, lx1, ly1 = _box(d, 1.5 * 2.7 - 0.3, 0.0, 1.5 * 2.7 + 0.3, 0.75)
    cx, q = (lx0 + lx1) / 2, (lx1 - lx0) / 4                 # daylight at its far end, seen in
    light = np.array([[lx0, ly1], [lx1, ly1], [cx + q, ly0], [cx - q, ly0]], np.int32)  # perspective
    cv2.fillPoly(img, [light], (236, 236, 230))
    found, full = _furniture_masks(img, d.base_row)
    gate = np.zeros(img.shape[:2], bool)
    gate[gy0:gy1, gx0:gx1] = True
    assert all((f & gate).sum() < 0.1 * gate.sum() for f in full), [f.box for f in found]
    assert max((_iou(masks[0], f) for f in full), default=0.0) >= 0.5, [f.box for f in found]


def test_an_open_leaf_in_a_dark_gateway_is_not_furniture_and_a_bollard_before_a_shop_window_is():
    """img_140 and img_288: the lit inside of a doorway (a door leaf, a passage's side
    wall), on the base line and unlike the row, stood in the rubble as a door-high bar of
    street furniture. Darkness just above something as tall as a door is the opening it
    stands in; a bollard under a shop window's dark glass is lower, and still held out."""
    d, img, masks = _street_plate([(12.0, 12.3, 0.9)])
    gx0, gy0, gx1, gy1 = _box(d, 1.5 * 2.7 - 1.6, 0.0, 1.5 * 2.7 + 1.6, 2.9)   # a carriage gateway in shade
    img[gy0:gy1, gx0:gx1] = (34, 30, 28)
    lx0, ly0, lx1, ly1 = _box(d, 1.5 * 2.7 + 0.2, 0.0, 1.5 * 2.7 + 0.7, 1.4)  # its red leaf, open, in perspective
    leaf = np.array([[lx0, ly1 - 0.1 * (ly1 - ly0)], [lx1, ly1], [lx1, ly0], [lx0, ly0 + 0.3 * (ly1 - ly0)]], np.int32)
    cv2.fillPoly(img, [leaf], (96, 28, 24))
    found, full = _furniture_masks(img, d.base_row)
    gate = np.zeros(img.shape[:2], bool)
    gate[gy0:gy1, gx0:gx1] = True
    assert all((f & gate).sum() < 0.05 * gate.sum() for f in full), [f.box for f in found]
    assert max((_iou(masks[0], f) for f in full), default=0.0) >= 0.5, [f.box for f in found]


def test_a_plain_ground_floor_has_no_furniture():
    d, img, _ = _street_plate([])
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    assert furniture(bgr, bgr, float(d.base_row), seed=1) == []


# --- wires ------------------------------------------------------------------------------------

def _wire_plate():
    d = draw_facade(storeys=3, bays=8, m_per_px=0.03, street_px=40, sky_px=60, seed=4)
    img = d.srgb.copy()
    H, W = img.shape[:2]
    # A wire from the sky at the left, down across the roof line into the facade and out of
    # its right side; a cornice (as dark, as thin) right across the facade and no further.
    wire = np.zeros((H, W), np.uint8)
    cv2.line(wire, (0, 20), (W - 1, d.top_row + 120), 1, 2)
    img[wire > 0] = (30, 30, 32)
    cornice = np.zeros((H, W), np.uint8)
    x0 = int(np.nonzero(d.matte.any(axis=0))[0].min())
    x1 = int(np.nonzero(d.matte.any(axis=0))[0].max())
    cv2.line(cornice, (x0, d.top_row + 40), (x1, d.top_row + 40), 1, 2)
    img[cornice > 0] = (30, 30, 32)
    return d, img, wire > 0, cornice > 0


def test_a_wire_across_the_building_is_held_out_and_a_cornice_is_not():
    d, img, wire, cornice = _wire_plate()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    found = wires(gray, d.matte > 0.5)
    assert len(found) >= 1
    union = np.zeros(gray.shape, bool)
    for m, kind, _ in found:
        assert kind == "wire"
        union |= m
    on_wire = (union & wire).sum() / wire.sum()
    assert on_wire > 0.6
    assert (union & cornice).sum() < 0.05 * cornice.sum()
    # Only the wire's own pixels: the matte is not a ruled band around it.
    assert union.sum() < 2.0 * wire.sum()


def test_a_wire_hangs_in_front_of_the_facade_with_no_ground_contact():
    d, img, wire, _ = _wire_plate()
    hs = find_holdouts(img, d.matte, seed=1)
    ws = [o for o in hs.objects if o.kind == "wire"]
    assert ws and all(o.contact_row is None for o in ws)
    assign_depths(hs, f_px=1000.0, cy=d.base_row - 60.0, eye_m=1.6, facade_m=20.0)
    ws = [o for o in hs.objects if o.kind == "wire"]
    assert ws and all(o.depth_m is not None and o.depth_m < 20.0 for o in ws)


# --- the facade continued from above ----------------------------------------------------------

def test_a_cut_that_leaked_into_a_door_going_on_above_is_trimmed_to_the_thing_in_front():
    lab = np.zeros((100, 60, 3), np.uint8)
    lab[:] = (180, 128, 140)                  # wall
    lab[10:100, 20:40] = (60, 128, 128)       # a dark door, from above the cut's limit down
    lab[70:100, 10:50] = (140, 100, 170)      # a bin in front of it, another colour
    cut = np.zeros((100, 60), bool)
    cut[40:100, 15:45] = True                 # the cut's limit is row 40: it took the door too
    out = trim_continuation(lab, cut, 40)
    assert not out[40:70, 20:40].any()        # the door above the bin: the facade, trimmed
    assert not out[40:70, 15:20].any()        # and the wall beside it, as above the limit
    assert out[70:100, 15:45].all()           # the bin kept whole


def test_a_cut_whose_top_differs_from_the_facade_above_is_kept():
    lab = np.zeros((100, 60, 3), np.uint8)
    lab[:] = (180, 128, 140)
    lab[40:100, 15:45] = (60, 150, 110)       # a thing reaching the limit, unlike the wall
    cut = np.zeros((100, 60), bool)
    cut[40:100, 15:45] = True
    assert (trim_continuation(lab, cut, 40) == cut).all()


def test_a_cropped_cars_cut_loses_the_door_and_window_it_grew_into_over_its_bonnet():
    h, w = 120, 200
    cut = np.zeros((h, w), bool)
    x = np.arange(w)
    # A car cropped by the frame's bottom: a bonnet from x=20 rising over a windshield to
    # a roof at the right; the frame cuts the roof.
    outline = np.clip(80 - 0.45 * np.clip(x - 20, 0, None), 15, None).astype(int)
    for c in range(20, w):
        cut[outline[c]:, c] = True
    car = cut.copy()
    cut[20:85, 60:68] = True                  # a strip of door frame above the bonnet
    cut[40:78, 28:52] = True                  # a shop window's poster above the bonnet
    out = rise_and_fall(cut)
    assert (out[car]).all()                   # the car whole
    # Of the humps, nothing above the lowest point of the bonnet between them and the
    # roof (the outline cannot know more of the bonnet than that).
    assert not out[:65, 28:52].any() and not out[:58, 58:68].any()
    # Outlines that already rise and fall once are kept whole.
    assert (rise_and_fall(car) == car).all()



def test_a_square_of_wall_standing_sheer_on_a_cars_outline_goes_and_its_slopes_stay():
    """img_140: a white wall's square over a white car's bonnet, higher than the bonnet
    either side and walled straight up and down, is not the car: it is cut down to the
    line between the outline's levels either side. A windscreen's slope as high, rising
    over many columns, stays, and so does the roof the frame crops."""
    h, w = 120, 200
    x = np.arange(w)
    # Bonnet at row 80 from x=20 to 100, windscreen rising to the roof at row 30 by x=160.
    outline = np.where(x < 100, 80, np.clip(80 - 0.8 * (x - 100), 30, None)).astype(int)
    car = np.zeros((h, w), bool)
    for c in range(20, w):
        car[outline[c]:, c] = True
    cut = car.copy()
    cut[55:80, 50:70] = True                  # the square of wall over the bonnet
    out = no_square_humps(cut)
    assert not out[:78, 50:70].any()          # the square gone, down to the bonnet's line
    assert out[car].mean() > 0.99             # the car kept: its bonnet, windscreen and roof
    assert (no_square_humps(car) == car).all()

def test_a_cropped_cars_cut_snapped_to_the_kerb_is_eased_back_toward_its_bonnets_slope():
    """A grey bonnet against a grey pavement gives GrabCut no edge: the cut runs level
    along the kerb's line instead, a shelf across the bonnet's slope walled straight up
    at the cut's end (img_190: 46 px up in 5 columns). Smoothed over a twentieth of its
    length, the outline steps no more than 8 px over 5 columns (27 before), lies no
    further from the bonnet over the shelf (its mean error within 1.5 px of the cut's:
    smoothing does not find the bonnet, it only takes the stairs out) and keeps the
    windscreen and roof the frame crops."""
    h, w = 160, 300
    x = np.arange(w)
    # Bonnet rising from the frame's bottom at x=20 to row 100 by x=120, windscreen to the
    # roof at row 40 by x=200 (rows: 0 at the top).
    outline = np.clip(np.where(x < 120, 160 - 0.6 * (x - 20), 100 - 0.75 * (x - 120)), 40, 160).astype(int)
    car = np.zeros((h, w), bool)
    for c in range(20, w):
        car[outline[c]:, c] = True
    cut = car.copy()
    cut[130:, 30:80] = True                   # the kerb's level line across the bonnet
    cut[:130, 30:80] = car[:130, 30:80]
    top = lambda m: np.where(m.any(axis=0), np.argmax(m, axis=0), h).astype(float)
    out = smooth_outline(cut)
    before, after = top(cut), top(out)
    err = lambda t: float(np.abs(t[30:80] - outline[30:80]).mean())
    assert err(after) <= err(before) + 1.5, (err(after), err(before))
    steps = lambda t: np.abs(t[25:295] - t[30:300]).max()
    assert steps(before) >= 25 and steps(after) <= 8, (steps(before), steps(after))
    assert out[:, 120:][car[:, 120:]].mean() > 0.97


# --- people: small passers-by, and their size at their ground contact --------------------------

def test_hog_finds_the_small_passers_by_of_the_demo_photo():
    # Seven labelled people, 120-180 px tall in a 1080-line frame (HOG's figure is 96 px in
    # its window: shrinking the whole frame to a working size first lost most of them).
    img = cv2.imread(str(DEMO_JPG))
    boxes = [b for b, _ in _hog_people(img, 850.0)]
    people = [np.array(p, float) for o in json.loads(DEMO_LABELS.read_text())["objects"] if o["kind"] == "person"
              for p in o["polygons"]]
    from derrumbe.stages.holdout_cues.cutout import box_iou
    hit = sum(any(box_iou([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], b) >= 0.4 for b in boxes)
              for p in people)
    assert len(people) == 7 and hit >= 5, boxes


def _person(px_height: float, contact: float) -> Holdout:
    a = np.ones((int(px_height), 20), np.float32)
    return Holdout(1, "person", (0, int(contact - px_height), 20, int(contact)), contact, px_height, 0.8, a)


def test_a_person_too_tall_for_their_ground_contact_is_dropped():
    # Camera: f = 1000 px, horizon at row 300, eye 1.6 m: a contact at row 460 is 10 m
    # away, where 100 px are 1 m. The facade stands 20 m away.
    hs = HoldoutSet([_person(180, 460.0), _person(400, 460.0), _person(60, 460.0)], (600, 800))
    dropped = assign_depths(hs, f_px=1000.0, cy=300.0, eye_m=1.6, facade_m=20.0)
    # 1.8 m, and 0.6 m (a figure half hidden behind a car) are kept; 4 m is no person.
    assert sorted(o.pixel_height for o in hs.objects) == [60, 180]
    assert [o.pixel_height for o in dropped] == [400]
    assert all(o.depth_m == pytest.approx(10.0) for o in hs.objects)


def test_the_matte_stage_keeps_a_too_tall_person_in_the_building():
    # A facade drawn at 0.025 m/px; two "people" standing on its base line: 72 px (1.8 m)
    # and 160 px (4 m, a pilaster HOG took for one). The facade's own rulers give the
    # scale; the 4 m one is dropped before it is cut out of the building.
    from derrumbe.stages.camera import too_tall_by_the_facade
    d = draw_facade(storeys=4, bays=8, m_per_px=0.025, seed=2)
    base = float(d.base_row)
    hs = HoldoutSet([_person(72, base), _person(160, base)], d.matte.shape)
    dropped = too_tall_by_the_facade(d.srgb)(hs, d.matte)
    assert [o.pixel_height for o in hs.objects] == [72] and [o.pixel_height for o in dropped] == [160]


# --- the shared plates against their hand-made labels ----------------------------------------

PLATES = holdout_metrics.plates()


@pytest.mark.skipif(not PLATES, reason="the shared plates and their labels are not on this machine")
def test_the_holdouts_keep_off_the_facades_and_find_what_they_found_when_measured():
    """The issue's cap on false holdouts (under 2 % of each building), on every plate; the
    recall measured (13 of 23 since img_100's SALE board is completed to its frame; 12 since img_140's white car, cut by the frame's bottom and
    left edges, is grown past its wheel arch; benchmarks/README.md) as a floor, so a cue
    that stops finding its objects fails here (the 80 % target is the xfail in
    test_holdouts.py)."""
    rows = holdout_metrics.all_metrics()
    s = holdout_metrics.summary(rows)
    assert s["counted"] >= 20
    assert s["worst_false_facade"] < 0.02, [(r["plate"], r["false_facade"]) for r in rows]
    assert s["found"] >= 13, [(r["plate"], r["missed"]) for r in rows]
    # img_100's SALE board, to its frame (IoU 0.29 when cut to its poster alone)
    assert "SALE board" not in next(r["missed"] for r in rows if r["plate"] == "img_100.jpg")
    assert "white car" not in next(r["missed"] for r in rows if r["plate"] == "img_140.jpg")
    # ...and to its door and windows off the frame's left edge, redone wider while the cut
    # reaches its box's side: with one widening (IoU 0.57) they fell with the building, and
    # the rubble tore across the car's top (img_140 from 40 %).
    assert next(r["best_iou"][0] for r in rows if r["plate"] == "img_140.jpg") >= 0.8
    # img_181's labels hold nothing in front of it: its door's lower panel was held out
    # (0.75 % of the facade) and stood while the wall round it fell.
    assert next(r["false_facade"] for r in rows if r["plate"] == "img_181.jpg") == 0.0


def test_a_cut_running_along_its_boxs_top_goes_on_up_the_facade_a_bins_does_not():
    """img_181: a street blob at a door's step grew up the door by GrabCut to the top of the
    box it was given, and the door's lower half was held out: it stood while the wall round
    it fell. A cut that runs along its box's top (within a hundredth of the frame) over half
    its width goes on up the facade past it; a bin's ends within the height it was given."""
    from derrumbe.stages.holdout_cues.street import _cut_by_its_limit
    door = np.zeros((240, 400), bool)
    door[88:150, 60:110] = True                       # its box's top at row 86: two rows of GrabCut's edge
    door[150:158, 56:132] = True                      # the step and a drainpipe's foot
    bin_ = np.zeros((240, 400), bool)
    bin_[112:164, 258:287] = True
    bin_[100:112, 266:279] = True                     # its rounded lid, under the box's top at row 86
    assert _cut_by_its_limit(door, 86)
    assert not _cut_by_its_limit(bin_, 86)
    assert not _cut_by_its_limit(door, 80)            # a box with headroom over it: a thing in front



def test_a_lit_shop_window_behind_a_passer_by_is_not_cut_out_with_them():
    """The demo plate's boy in the blue coat stands in front of the bakery's lit window.
    GrabCut alone gave him the window beside his head (one bright region unlike the wall),
    and it glowed in the rubble once the shop had gone. His matte keeps him (his centre
    line, head to hips) and leaves the window (a hand-picked patch of it right of his
    head, plate pixels)."""
    from derrumbe.stages.holdout_cues.people import people
    bgr = cv2.imread(str(Path(__file__).resolve().parents[1] / "derrumbe" / "data" / "demo_street.jpg"))
    found = [f for f in people(bgr, 830.0, 1) if f.box[0] < 740 < f.box[2] and f.box[1] < 760 < f.box[3]]
    assert len(found) == 1
    f = found[0]
    m = np.zeros(bgr.shape[:2], bool)
    m[f.y:f.y + f.mask.shape[0], f.x:f.x + f.mask.shape[1]] = f.mask
    # The window over his head and beside his shoulder (GrabCut alone took 0.38 and 0.26 of them).
    for window in ((slice(692, 712), slice(715, 785)), (slice(720, 780), slice(768, 790))):
        patch = bgr[window].astype(int)
        assert (patch[..., 2] > 1.5 * patch[..., 0]).mean() > 0.7              # the patch is the warm window
        assert m[window].mean() < 0.1, m[window].mean()
    assert m[700:820, 732:746].mean() > 0.8                                  # the boy, head to hips
