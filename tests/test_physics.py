"""The collapse against physics: free fall, a block that stays a block, the timing of a
progressive collapse, heavy-tailed debris, no interpenetration, no energy from nowhere,
topples that go where they were told, determinism, and instabilities caught."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from derrumbe.engines.rapier import DYNAMIC, RapierWorld
from derrumbe.errors import DerrumbeError
from derrumbe.materials import MATERIALS
from derrumbe.stages.camera import Camera, Placement
from derrumbe.stages.collapse_styles import Plan
from derrumbe.stages.fracture import fracture_building
from derrumbe.stages.simulate import EV_CRUSH, EV_GROUND, EV_IMPACT, EV_SINK, G, SHRINK_M, simulate
from derrumbe.stages.structure import FACADE, SLAB

CONCRETE = MATERIALS["concrete"]
CAM = Camera(640, 360, 460.0, 320.0, 200.0, 1.6)


def _building(n=900, style="implosion", seed=3, height=13.0, width=14.0):
    """A 4-storey street building 40 m from a 640x360 camera, fully inside its matte."""
    place = Placement(depth_m=40.0, x0_m=-width / 2, x1_m=width / 2, height_m=height, proxy_height_m=height,
                      base_row=345, top_row=345 - 460 * height / 40, floors=4, height_source="test",
                      storey_m=3.0, ground_floor_m=4.0)
    matte = np.ones((360, 640), np.float32)
    return fracture_building(CAM, place, matte, style, "toward", CONCRETE, n, seed)


@pytest.fixture(scope="module")
def implosion():
    fr = _building()
    return fr, simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, 3)


def test_lone_fragment_in_free_fall_matches_half_g_t_squared():
    fr = _building(300)
    top = int(np.argmax(fr.centroid[:, 1]))
    fr.centroid[top, 1] += 30.0          # lifted 30 m clear of the building, then dropped alone

    plan = Plan(actions=[(0.5, lambda sim: sim.detach([top], 4, DYNAMIC, "debris", (0, 0, 0), (0, 0, 0)))])
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 1.6, 100, 1, plan=plan)
    k = int(np.argmin(np.abs(sim.times - 1.5)))
    fallen = sim.pos[0, top, 1] - sim.pos[k, top, 1]
    assert fallen == pytest.approx(0.5 * G * (sim.times[k] - 0.5) ** 2, rel=0.01)
    others = np.delete(np.arange(fr.n), top)
    assert np.abs(sim.pos[:, others] - sim.pos[0, others]).max() == 0.0   # the rest stood still, exactly


def test_upper_block_stays_rigid_until_its_lowest_storey_meets_the_rubble(implosion):
    fr, sim = implosion
    upper = np.nonzero(fr.storey >= sim.info["base_storeys"])[0]
    first_crush = sim.events["t"][sim.events["kind"] == EV_CRUSH].min()
    t_block = sim.info["block_first_motion_s"]
    rng = np.random.default_rng(0)
    a, b = rng.choice(upper, 400), rng.choice(upper, 400)
    d0 = np.linalg.norm(sim.pos[0, a] - sim.pos[0, b], axis=1)
    during = (sim.times > t_block) & (sim.times < first_crush)
    assert during.sum() >= 5                                   # it fell for a while as one mass
    for k in np.nonzero(during)[0]:
        d = np.linalg.norm(sim.pos[k, a] - sim.pos[k, b], axis=1)
        assert np.abs(d - d0).max() < 0.05
    # It did come down: the roof dropped before the first crush.
    roof = upper[fr.storey[upper] == fr.storey.max()]
    k = np.nonzero(during)[0][-1]
    assert sim.pos[0, roof, 1].mean() - sim.pos[k, roof, 1].mean() > 1.0


def test_a_storey_is_crushed_from_its_foot_up_while_its_upper_walls_ride_the_block(implosion):
    """The crush front climbs through a storey: half-way through the top storey's crush
    (between its floor meeting the pile and the roof's), its upper walls still move as
    one with the roof and its lower walls are gone. Let go all at once as its floor met
    the pile, its walls jostled along the falling roofline as a ridge of loose cubes."""
    fr, sim = implosion
    crush = np.sort(sim.events["t"][sim.events["kind"] == EV_CRUSH])
    top = fr.storey.max()
    assert len(crush) == top - sim.info["base_storeys"] + 2          # each upper storey, then the roof
    k = int(np.argmin(np.abs(sim.times - 0.5 * (crush[-2] + crush[-1]))))
    walls = np.nonzero((fr.storey == top) & (fr.element_kind != SLAB))[0]
    roof = np.nonzero((fr.storey == top) & (fr.element_kind == SLAB))[0]
    ref = roof[np.argmax(fr.centroid[roof, 1])]
    d0 = np.linalg.norm(sim.pos[0, walls] - sim.pos[0, ref], axis=1)
    d = np.linalg.norm(sim.pos[k, walls] - sim.pos[k, ref], axis=1)
    riding = np.abs(d - d0) < 0.05
    assert 0.35 < riding.mean() < 0.9                  # (let go at once: 0.18, what the pile trapped)
    h = fr.floor_y[top + 1] - fr.floor_y[top]
    assert fr.centroid[walls[riding], 1].mean() > fr.centroid[walls[~riding], 1].mean() + 0.25 * h


def test_the_blown_base_is_crushed_while_the_block_comes_down_through_it(implosion):
    """The base's air and dust leave while the block closes it, from the moment the block
    lets go, not a second later when it reaches the pile (the facade slid into a clean
    street, no dust at its foot). One sink is recorded as the block lets go; the closing
    time it carries (the base's height over its closing speed) is the time the simulated
    block takes to reach the pile, and the work it carries is what the base's remains
    take from the falling block: its weight less its gain in kinetic energy."""
    fr, sim = implosion
    base = sim.events[sim.events["kind"] == EV_SINK]
    t_block = sim.info["block_first_motion_s"]
    assert len(base) == 1 and abs(base["t"][0] - t_block) < 0.02
    t_pile = sim.events["t"][sim.events["kind"] == EV_CRUSH].min()          # the block meets the pile
    h0 = fr.floor_y[sim.info["base_storeys"]]
    upper = np.nonzero(fr.storey >= sim.info["base_storeys"])[0]
    k = int(np.searchsorted(sim.times, t_pile)) - 1               # the last sample before it lands
    drop = sim.pos[0, upper, 1].mean() - sim.pos[k, upper, 1].mean()
    closing = drop / abs(float(base["vel"][0][1]))
    assert closing == pytest.approx(t_pile - t_block, rel=0.1)
    assert h0 * 0.5 < drop < h0
    m = sim.mass[upper].sum()
    speed = (sim.pos[k - 1, upper, 1].mean() - sim.pos[k, upper, 1].mean()) / (sim.times[k] - sim.times[k - 1])
    work = m * G * drop - 0.5 * m * speed ** 2
    assert float(base["energy"][0]) == pytest.approx(work, rel=0.15)


def test_roof_reaches_the_pile_in_1_1_to_1_8_free_fall_times(implosion):
    fr, sim = implosion
    ratio = sim.info["roof_to_ground_s"] / np.sqrt(2 * sim.info["roof_height_m"] / G)
    assert 1.1 <= ratio <= 1.8
    assert sim.info["roof_final_m"] < 0.4 * sim.info["roof_height_m"]     # nothing hangs at roof height


def test_taller_building_falls_longer_by_its_own_free_fall():
    """Scale gives timing: a building twice as tall takes about sqrt(2) as long."""
    fr = _building(700, height=26.0)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 6.0, 48, 3)
    ratio = sim.info["roof_to_ground_s"] / np.sqrt(2 * sim.info["roof_height_m"] / G)
    assert 1.1 <= ratio <= 1.8


def test_debris_sizes_are_heavy_tailed_with_measured_exponents(implosion):
    from derrumbe.stages.particles import debris_exponent, debris_sizes, emit_particles
    fr, sim = implosion
    # The rigid debris alone, as the solver left it: its own exponent.
    D_bodies, _, _ = debris_exponent(sim, fr)
    assert 1.5 <= D_bodies <= 2.6
    # Bodies and grit together span at least a decade and a half of size.
    grit = emit_particles(sim, fr, np.array([0.4, 0.4, 0.4]), 3000, 3)
    sizes = debris_sizes(sim, fr, grit)
    assert sizes["decades"] >= 1.5
    assert 1.5 <= sizes["D"] <= 2.6                # impact and explosive fragmentation (Turcotte 1986)
    assert sizes["bodies"] > 3 * fr.info["clusters"]   # it broke well below its clusters


def test_two_lumps_sunk_into_each_other_are_pushed_apart_to_the_freeze_tolerance():
    """The solver leaves a lump wedged between others sunk by centimetres, and friction
    holds it there; push_apart moves each body half the overlap past the tolerance out
    along the contact's normal. Two 0.5 m cubes 4 cm into each other end 1 cm into each
    other once both are pushed, moved apart along the axis that joins them, not up."""
    world = RapierWorld(1 / 96, 0.8, 0.0, 1e9)
    cube = np.array([[x, y, z] for x in (0, 0.5) for y in (0, 0.5) for z in (0, 0.5)], float)
    keys = [world.add_body([cube + off], (cube + off).mean(0), np.array([1.0]), DYNAMIC, "debris", np.eye(3),
                           np.zeros(3)) for off in (np.array([0.0, 5.0, 0.0]), np.array([0.46, 5.0, 0.0]))]

    def deepest():
        world.w.detect_collisions()
        return min(p.find_deepest_contact().dist for p in world.w.narrow_phase.contact_pairs()
                   if p.find_deepest_contact() is not None)
    assert deepest() == pytest.approx(-0.04, abs=2e-3)
    before = [world.centre_of_mass(k) for k in keys]
    assert all(world.push_apart(k, 0.01) for k in keys)
    assert deepest() == pytest.approx(-0.01, abs=2e-3)
    moved = [world.centre_of_mass(k) - b for k, b in zip(keys, before)]
    assert moved[0][0] == pytest.approx(-0.015, abs=2e-3) and moved[1][0] == pytest.approx(0.015, abs=2e-3)
    assert max(abs(m[1]) for m in moved) < 1e-3
    assert not world.push_apart(keys[0], 0.02)                 # within the tolerance now: left where it is


def test_settled_pieces_interpenetrate_less_than_2_cm(implosion):
    fr, sim = implosion
    world = RapierWorld(1 / 96, 0.8, 0.0, 1e9)
    from derrumbe.engines.rapier import quat_to_matrix
    R = quat_to_matrix(sim.quat[-1].astype(np.float64))
    # Settled: not pulverised, and still over the last quarter second.
    k = int(np.searchsorted(sim.times, sim.times[-1] - 0.25))
    still = np.linalg.norm(sim.pos[-1] - sim.pos[k], axis=1) < 0.005
    settled = (sim.final_body >= 0) & still
    assert settled.sum() > 0.7 * (sim.final_body >= 0).sum()      # most of it has come to rest
    keys = {}
    for i in np.nonzero(settled)[0]:
        v = fr.verts[i].astype(np.float64)
        c = v.mean(0)
        r = np.linalg.norm(v - c, axis=1, keepdims=True)
        hull = c + (v - c) * np.clip(1 - SHRINK_M / np.maximum(r, 1e-3), 0.5, 1)     # the solver's own hulls
        world_pts = hull @ R[i].T + sim.pos[-1, i]
        keys[i] = world.add_body([world_pts], world_pts.mean(0), np.array([1.0]), DYNAMIC, "debris",
                                 np.eye(3), np.zeros(3))
    world.w.detect_collisions()
    body = {k: i for i, k in keys.items()}
    depth = []
    for pair in world.w.narrow_phase.contact_pairs():
        a, b = world._key_of_collider.get(pair.collider1), world._key_of_collider.get(pair.collider2)
        if a is None or b is None or a < 0 or b < 0 or sim.final_body[body[a]] == sim.final_body[body[b]]:
            continue
        deep = pair.find_deepest_contact()
        if deep is not None:
            depth.append(deep.dist)
    assert len(depth) > 100                     # the rubble rests on itself
    assert min(depth) > -0.02
    lowest = min((fr.verts[i] @ R[i].T.astype(np.float32) + sim.pos[-1, i])[:, 1].min()
                 for i in np.nonzero(settled)[0])
    assert lowest > -0.02 - SHRINK_M            # nothing sank into the street


def test_energy_never_grows_after_the_last_release():
    fr = _building(500, style="facade")
    from derrumbe.stages.collapse_styles import style_plan
    plan = style_plan(fr, CONCRETE, "facade", "toward", 0.5, 3)
    plan.track_energy = True
    last_action = max(t for t, _ in plan.actions)
    sim = simulate(fr, CONCRETE, "facade", "toward", 0.5, 4.0, 48, 3, plan=plan)
    e = np.array(sim.info["energy_J"])
    after = e[sim.times > last_action + 0.05]
    grow = np.diff(after)
    assert grow.max() <= 0.01 * abs(after[0])   # only losses after the style's last push
    assert after[-1] < after[0]                 # and it did lose energy


@pytest.mark.parametrize("direction,axis,sign", [("left", 0, -1), ("right", 0, 1), ("toward", 2, 1),
                                                 ("away", 2, -1)])
def test_topple_lands_on_the_side_it_was_asked_for(direction, axis, sign):
    fr = _building(500, style="topple", height=16.0, width=8.0)
    sim = simulate(fr, CONCRETE, "topple", direction, 0.3, 4.0, 48, 5)
    upper = fr.storey >= 1
    shift = sim.pos[-1, upper, axis].mean() - sim.pos[0, upper, axis].mean()
    other = 2 - axis
    assert sign * shift > 2.0                                       # it went that way, metres of it
    assert abs(shift) > 2 * abs(sim.pos[-1, upper, other].mean() - sim.pos[0, upper, other].mean())
    assert sim.pos[-1, upper, 1].mean() < 0.6 * sim.pos[0, upper, 1].mean()   # and came down


def test_facade_peels_and_the_core_stays_standing():
    fr = _building(500, style="facade")
    sim = simulate(fr, CONCRETE, "facade", "toward", 0.5, 4.0, 48, 2)
    facade = fr.element_kind == FACADE
    assert (sim.pos[-1, facade, 2] - sim.pos[0, facade, 2]).mean() > 1.0          # came forward
    assert sim.pos[-1, facade, 1].mean() < 0.5 * sim.pos[0, facade, 1].mean()     # and down
    slabs = fr.element_kind == SLAB
    assert np.abs(sim.pos[:, slabs] - sim.pos[0, slabs]).max() == 0.0              # the floors stay


_DETERMINISM = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from tests.test_physics import _building, CONCRETE
    from derrumbe.stages.simulate import simulate
    fr = _building(400)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.3, 2.5, 48, 11)
    h = hashlib.sha256(sim.pos.tobytes() + sim.quat.tobytes() + sim.events.tobytes()).hexdigest()
    print(json.dumps(h))
""")


def test_same_seed_gives_the_same_collapse_in_fresh_processes(tmp_path):
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[1])
    out = []
    for hashseed in ("1", "987"):
        r = subprocess.run([sys.executable, "-c", _DETERMINISM.format(root=root)], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"}, check=True)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert out[0] == out[1]


def _poison_once(at_step):
    state = {"n": 0}

    def fault(sim):
        state["n"] += 1
        if state["n"] == at_step:
            key = next(k for k, b in sim.bodies.items() if b.mode == DYNAMIC)
            sim.world.set_velocity(key, (np.nan, 0, 0), (0, 0, 0))
    return fault, state


def test_an_instability_is_caught_and_simulated_again_with_a_smaller_step():
    fr = _building(300)
    fault, state = _poison_once(120)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.3, 2.0, 48, 3, fault=fault)
    assert sim.info["retries"] == 1
    assert sim.info["dt"] < 1 / 96
    assert np.isfinite(sim.pos).all()


def test_an_instability_that_persists_fails_with_one_line():
    fr = _building(300)

    def always(sim):
        dyn = [k for k, b in sim.bodies.items() if b.mode == DYNAMIC]
        if dyn:
            sim.world.set_velocity(dyn[0], (np.inf, 0, 0), (0, 0, 0))
    with pytest.raises(DerrumbeError) as e:
        simulate(fr, CONCRETE, "implosion", "toward", 0.3, 2.0, 48, 3, fault=always)
    assert "\n" not in str(e.value) and "unstable" in str(e.value)


def test_fracture_hierarchy_nests_and_pieces_are_solids_of_the_structure():
    fr = _building(1500)
    assert 1300 <= fr.n <= 1700
    # Every piece lies within one cluster, every cluster within one storey.
    for lower, upper in ((fr.piece, fr.cluster), (fr.cluster, fr.storey)):
        for g in np.unique(lower):
            assert len(np.unique(upper[lower == g])) == 1
    assert fr.info["pieces"] < fr.n / 4 and fr.info["clusters"] < fr.info["pieces"] / 2
    # A building is mostly air: its solids fill a small share of its box.
    box = np.prod(fr.box_hi - fr.box_lo)
    assert fr.volume.sum() < 0.25 * box
    # Facade fragments run through the wall's thickness: most have the plate on their outer
    # face and break faces around it (a few sit inside the wall, behind others).
    fac = np.nonzero(fr.element_kind == FACADE)[0]
    through = [0 in fr.kinds[i] and 2 in fr.kinds[i] for i in fac]
    assert np.mean(through) > 0.8


def _two_storeys(seed):
    """img_140's building: a 4.5 m shop floor under one 4.8 m storey, 12 m wide."""
    place = Placement(depth_m=30.0, x0_m=-6.0, x1_m=6.0, height_m=9.3, proxy_height_m=9.3, base_row=345,
                      top_row=345 - 460 * 9.3 / 30, floors=2, height_source="test", storey_m=4.8, ground_floor_m=4.5)
    return fracture_building(CAM, place, np.ones((360, 640), np.float32), "implosion", "toward", CONCRETE, 900, seed)


@pytest.mark.parametrize("seed", [1, 3])
def test_the_roof_ends_on_the_pile_and_nothing_is_flung_over_the_street(seed):
    """A demolition's rubble stands at 15-30 % of the building's height. On img_140 the
    roof slab landed on its storey's cross walls and hung 4.7 m up (half the height) to
    the last frame; with seed 3 here a slab left the pile at 60 m/s and ended 364 m up."""
    fr = _two_storeys(seed)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, seed)
    height = fr.floor_y[-1]
    shown = sim.final_body >= 0
    roof = (fr.storey == fr.storey.max()) & (fr.element_kind == SLAB) & shown
    end = sim.pos[-1, :, 1]
    assert end[roof].max() < 0.3 * height
    assert end[shown].max() < 0.5 * height


@pytest.mark.parametrize("seed", [1, 3])
def test_the_rubble_stays_within_reach_of_the_facade(seed):
    """A street building's rubble ends within 2/3 of its height of the facade (Hindawi,
    Adv. Civ. Eng. 2020, 7034517, table 7: buildings under 24 m, long side along the
    street). On img_140 and img_190 crushed walls were thrown at a quarter to a half of
    the block's speed and rolled on like wheels: 1 % of the rubble lay beyond 0.69-0.76
    of the height and lumps ended 1.3 heights out, past the camera. Here 99 % of the
    mass lies within 0.55 of the height and no fragment beyond it (a lump sliding down
    the pile's flank may end a little past 2/3)."""
    fr = _two_storeys(seed)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, seed)
    shown = sim.final_body >= 0
    out = sim.pos[-1, shown, 2] - fr.facade_z
    order = np.argsort(out)
    share = np.cumsum(sim.mass[shown][order]) / sim.mass[shown].sum()
    height = fr.floor_y[-1]
    assert out[order][np.searchsorted(share, 0.99)] < 0.55 * height
    assert out.max() < height


@pytest.mark.parametrize("seed", [1, 3])
def test_walls_squeezed_out_by_the_block_are_not_thrown_off_the_pile(seed):
    """A storey crushed under the block sheds its walls onto the pile at the crush's pace.
    The solver, closing the driven (infinitely heavy) block onto walls standing on the
    pile, popped them up and out at 2-3 m/s: the demo's eave pieces, 7 m up, slid off the
    pile over its parked cars and ended 3-6 m out on the road in front of them. Here the
    upper storey's wall pieces ended up to 0.89 and 0.74 of the building's height out
    (seeds 1 and 3); they now end within 0.65 of it, inside the 2/3 within which a street
    building's rubble lies (the base's included, blown out by its charges)."""
    fr = _two_storeys(seed)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, seed)
    walls = (fr.storey >= 1) & (fr.element_kind != SLAB) & (sim.final_body >= 0)
    out = sim.pos[-1, walls, 2] - fr.facade_z
    assert out.max() < 0.65 * fr.floor_y[-1], out.max() / fr.floor_y[-1]


def test_a_lump_rolling_on_the_street_stops_within_a_turn_or_two():
    """Broken masonry does not roll: a cube tumbling edge over edge keeps a quarter of its
    spin at each face it lands on, so a lump set rolling at 4 m/s stops within about
    two of its own half-widths. The solver's hulls rolled on (this one 1.2 m, 2.4 of
    them)."""
    fr = _building(300)
    reach = np.array([np.abs(v).max() for v in fr.verts])
    i = int(np.argmin(np.abs(reach - 0.5)))
    r = reach[i]
    fr.centroid[i, 0] += 40.0           # on the street, well clear of the building
    fr.centroid[i, 1] -= (fr.centroid[i] + fr.verts[i]).min(0)[1] - 0.01
    roll = Plan(actions=[(0.5, lambda sim: sim.detach([i], 4, DYNAMIC, "debris", (4.0, 0, 0), (0, 0, -4.0 / r)))])
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 4.0, 48, 1, plan=roll)
    travelled = sim.pos[-1, i, 0] - sim.pos[0, i, 0]
    assert 0.05 < travelled < 2.0 * r


@pytest.mark.parametrize("seed", [2, 3])
def test_the_blown_ground_floor_ends_in_the_pile_not_standing_in_the_air(seed):
    """The ground floor is blown and the block grinds down what is left of it: its pieces
    end at the bottom of the pile, under the storeys that fell on them. Pieces of a shop
    front frozen on the wall's foot stayed 3.6 m up on img_140 once that foot had been
    ground away (here 15 and 2 of them ended above half the ground floor's height)."""
    fr = _two_storeys(seed)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, seed)
    ground_floor = (fr.storey == 0) & (sim.final_body >= 0)
    assert ground_floor.sum() > 50                      # a pile of them, not dust alone
    assert sim.pos[-1, ground_floor, 1].max() < 0.5 * fr.floor_y[1]


def test_a_piece_the_solver_flings_is_slowed_to_what_a_collapse_can_give_it():
    """An injected solver artefact: a piece lying on the pile at 3 s is given 80 m/s,
    mostly upward (what a contact reported metres deep gave one on img_100). Nothing in
    a collapse moves faster than its fall from the roof plus a charge's kick (12 m/s
    here), so from the next sample on the piece moves no faster than that, and rises
    no higher than a bounce takes it."""
    fr = _two_storeys(1)
    state = {}

    def fling(sim):
        if "key" not in state and sim.time >= 3.0:
            low = [k for k, b in sim.bodies.items() if b.mode == DYNAMIC and len(b.leaves) == 1]
            state["key"] = low[0]
            state["piece"] = int(sim.bodies[low[0]].leaves[0])
            sim.world.set_velocity(low[0], (30.0, 74.0, 0.0), (0.0, 0.0, 0.0))
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, 1, fault=fling)
    i = state["piece"]
    after = sim.times >= 3.0
    step = np.linalg.norm(np.diff(sim.pos[after, i], axis=0), axis=1) * 48
    fall = np.sqrt(2 * G * fr.floor_y[-1])
    assert sim.info["clamped"] >= 1
    assert step[1:].max() <= fall + 12.0 + 0.5
    assert sim.pos[after, i, 1].max() < 0.75 * fr.floor_y[-1]


def test_a_one_storey_building_implodes_without_an_upper_block():
    """A kiosk or a single shop storey (the scale stage reads 1.1 storeys on the curtain
    wall of img_263): the charges bring all of it down; there is no block to form."""
    fr = _building(300, height=4.0)
    assert len(fr.floor_y) == 2
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 3.0, 48, 3)
    assert sim.info["block_first_motion_s"] is None
    assert sim.info["roof_final_m"] < 0.5 * sim.info["roof_height_m"]


def test_debris_hits_a_parked_car_instead_of_passing_through_it(implosion):
    """A car's box (a holdout in front of the facade) parked 1.5 m out: the debris
    that without it runs on through the car's place stops against it or goes over it;
    no fragment's centre is ever inside it."""
    fr, free = implosion
    facade = fr.facade_z
    lo, hi = np.array([-4.0, 0.0, facade + 1.5]), np.array([4.0, 1.5, facade + 3.3])
    inside = lambda p: ((p > lo + 0.1) & (p < hi - 0.1)).all(-1)
    assert inside(free.pos).any(axis=0).sum() >= 5          # without it: debris where the car would be
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 5.0, 48, 3, obstacles=[(lo, hi)])
    assert not inside(sim.pos).any()
    # The pieces that ran into the car's place and lay there now end against it or on it
    # (the same fracture: the charges break it the same way): 11 of 12 here, 1 without it.
    through = inside(free.pos).any(axis=0)
    end = sim.pos[-1]
    stopped = (end[:, 2] < lo[2] + 0.1) | (end[:, 1] > hi[1] - 0.1) | ~sim.visible(sim.times[-1])
    assert (stopped & through).sum() >= 0.75 * through.sum(), ((stopped & through).sum(), through.sum())


def test_the_charges_take_the_base_walls_foot_and_the_wall_above_drops():
    """An implosion's charges go to dust and grit with the band of the base's walls they
    are drilled into (CHARGE_BAND_M), and the wall above it, kicked out with nothing under
    it, falls: half a second after its charge it has dropped at least half a free fall's
    1.2 m. Kicked out whole, a ground floor's front stood on its own foot and leaned out
    while the block came down behind it (img_181: 0.1 m in 0.65 s), a ghost of the shop
    fronts through the dust on five plates at 20 %."""
    from derrumbe.stages.collapse_styles import CHARGE_BAND_M
    fr = _building()
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 2.0, 48, 3)
    front = np.nonzero((fr.storey == 0) & (fr.element_kind == FACADE))[0]
    foot = front[fr.centroid[front, 1] < CHARGE_BAND_M - 0.3]
    above = front[fr.centroid[front, 1] > CHARGE_BAND_M + 0.3]
    assert len(foot) >= 5 and len(above) >= 10
    assert np.isfinite(sim.hidden[foot]).all() and (sim.hidden[foot] < 0.8).all()     # gone at the charges
    t_blast = float(np.nanmin(np.where(np.isfinite(sim.released[above]), sim.released[above], np.nan)))
    k0, k1 = np.searchsorted(sim.times, [t_blast, t_blast + 0.5])
    drop = sim.pos[k0, above, 1] - sim.pos[k1, above, 1]
    shown = sim.visible(float(sim.times[k1]))[above]
    assert np.median(drop[shown]) > 0.5 * 0.5 * G * 0.5 ** 2, np.median(drop[shown])


def test_a_crushed_storeys_walls_come_apart_into_pieces(implosion):
    """Each storey the block crushes onto the pile goes out as its pieces, not as
    storey-high panels of several pieces that topple whole (one fell at the lens on
    img_190): no body of the upper storeys' front wall holds more than one piece."""
    fr, sim = implosion
    upper = np.nonzero((fr.storey >= sim.info["base_storeys"]) & (fr.element_kind == FACADE)
                       & (sim.final_body >= 0))[0]
    for b in np.unique(sim.final_body[upper]):
        assert len(np.unique(fr.piece[upper][sim.final_body[upper] == b])) == 1, b


def _relative_angle_deg(qa, qb) -> np.ndarray:
    return np.degrees(2 * np.arccos(np.clip(np.abs((qa * qb).sum(-1)), 0.0, 1.0)))


def test_a_crushed_storeys_pieces_tumble_apart_in_the_air(implosion):
    """Separate bodies are not enough: pieces split from one wall with the very same motion
    fly on as one rigid panel (img_190's top storey came at the lens as a 4 x 6 m sheet,
    read as a glossy ribbon). The top storey, shed last onto the pile, has nothing left
    to break it up but its own scatter: within 0.15 s of its shed (before it meets the
    rubble) the pieces of each of its walls turn against one another."""
    fr, sim = implosion
    top = len(fr.floor_y) - 2
    shed = np.sort(sim.events["t"][sim.events["kind"] == EV_CRUSH])[-1]
    ks = np.nonzero((sim.times > shed) & (sim.times < shed + 0.15))[0]
    wall = (fr.storey == top) & (fr.element_kind == FACADE)
    turned = []
    for c in np.unique(fr.cluster[wall]):
        idx = np.nonzero(wall & (fr.cluster == c))[0]
        heads = idx[np.unique(fr.piece[idx], return_index=True)[1]]      # one fragment per piece
        if len(heads) >= 2:
            q = sim.quat[ks][:, heads]
            turned.append(_relative_angle_deg(q[:, :, None], q[:, None, :]).max())
    assert len(turned) >= 2, turned
    assert np.median(turned) > 10.0, turned


def test_every_blow_is_recorded_where_its_piece_is(monkeypatch):
    """A blow's dust and debris are put where the event says: on the piece that took it,
    and a blow from the street on the street. The engine's contact point is not trusted
    blindly: read off the street's 8 km slab it was once a far corner of the slab (an
    event at x = 3975 m on img_181), so here every fifth point is such a corner."""
    from derrumbe.engines import rapier
    real, calls = rapier.RapierWorld.contact_point, [0]

    def corner(self, contact):
        calls[0] += 1
        return np.array([3975.3, 0.0, -13.9]) if calls[0] % 5 == 0 else real(self, contact)
    monkeypatch.setattr(rapier.RapierWorld, "contact_point", corner)
    fr = _building(n=300)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 3.0, 48, 3)
    e = sim.events[np.isin(sim.events["kind"], (EV_GROUND, EV_IMPACT))]
    assert calls[0] > 50 and len(e) > 20
    i = np.clip(np.searchsorted(sim.times, e["t"]), 0, len(sim.times) - 1)
    at = sim.pos[i, e["piece"]]                  # one of the struck body's pieces (a block: 14 m wide)
    assert np.linalg.norm(e["pos"] - at, axis=1).max() < 15.0
    ground = e[e["kind"] == EV_GROUND]
    assert np.abs(ground["pos"][:, 1]).max() < 3.0

