"""The simulation against physics: free fall, an intact building at rest, no interpenetration."""

import mujoco
import numpy as np
import pytest

from derrumbe.materials import MATERIALS
from derrumbe.stages.camera import Camera, Placement
from derrumbe.stages.fracture import PART_CORE, fracture_building
from derrumbe.stages.simulate import G, Release, build_model, cluster_anchors, simulate

CONCRETE = MATERIALS["concrete"]


def _building(n=60, style="implosion", seed=3):
    cam = Camera(640, 360, 460.0, 320.0, 330.0, 1.6)
    place = Placement(depth_m=40.0, x0_m=-6, x1_m=6, height_m=15.0, proxy_height_m=15.0,
                      base_row=348, top_row=175, floors=4.5, height_source="test")
    matte = np.ones((360, 640), np.float32)
    return fracture_building(cam, place, matte, style, "toward", CONCRETE, n, seed)


def test_lone_piece_in_free_fall_matches_half_g_t_squared():
    fr = _building(40)
    # Lift the topmost piece 30 m clear of the building and drop it alone.
    top = int(np.argmax(fr.centroid[:, 1]))
    fr.centroid[top, 1] += 30.0
    drop = [Release(0.5, np.array([top]), False, np.zeros((1, 3)), np.zeros((1, 3)))]
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.5, 1.6, 100, 1, releases=drop)
    k = int(np.argmin(np.abs(sim.times - 1.5)))
    fallen = sim.pos[0, top, 1] - sim.pos[k, top, 1]
    expected = 0.5 * G * (sim.times[k] - 0.5) ** 2
    assert fallen == pytest.approx(expected, rel=0.01)
    # Nothing else was released: the rest of the building did not move at all.
    others = np.delete(np.arange(fr.n), top)
    assert np.abs(sim.pos[k, others] - sim.pos[0, others]).max() < 0.01


def test_intact_building_does_not_move_before_activation_nor_where_it_holds():
    fr = _building(60, style="facade")
    sim = simulate(fr, CONCRETE, "facade", "toward", 1.0, 3.0, 48, 2)
    before = sim.times < 1.0
    assert np.abs(sim.pos[before] - sim.pos[0]).max() < 0.01
    # The facade peels off; the core it was bonded to stays standing within 1 cm.
    core = fr.part == PART_CORE
    assert np.abs(sim.pos[:, core] - sim.pos[0, core]).max() < 0.01
    assert (sim.pos[-1, ~core, 2] - sim.pos[0, ~core, 2]).max() > 1.0   # the facade came forward


def test_settled_pieces_interpenetrate_less_than_2_cm():
    fr = _building(60)
    sim = simulate(fr, CONCRETE, "implosion", "toward", 0.2, 5.0, 48, 4)
    model, _ = build_model(fr, CONCRETE, 1 / 240, cluster_anchors(fr))
    data = mujoco.MjData(model)
    for i in range(fr.n):
        a = model.jnt_qposadr[i]
        data.qpos[a:a + 3] = sim.pos[-1, i]
        data.qpos[a + 3:a + 7] = sim.quat[-1, i]
    mujoco.mj_forward(model, data)
    dist = np.array([data.contact[j].dist for j in range(data.ncon)])
    assert data.ncon > 0                              # the rubble rests on something
    assert dist.min() > -0.02
    # It fell: the pile's top is far below the building's top.
    assert sim.pos[-1, :, 1].max() < 0.6 * fr.box_hi[1]
    assert sim.pos[-1, :, 1].min() > -0.05            # nothing fell through the ground


def test_fracture_gives_1000_pieces_with_bonds_and_heavy_tailed_sizes():
    fr = _building(1000)
    assert 900 <= fr.n <= 1100
    assert len(fr.bonds) > fr.n
    assert np.all(fr.bonds[:, 0] != fr.bonds[:, 1])
    v = np.sort(fr.volume)
    # Heavy-tailed: the largest 5 % of pieces hold more volume than the smallest half.
    assert v[-len(v) // 20:].sum() > v[: len(v) // 2].sum()
    assert v[-1] > 50 * v[len(v) // 2 // 10]
