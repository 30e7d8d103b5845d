"""The heap of unresolved rubble against what a collapse leaves: the crushed storeys'
volume, bulked, lying on the street in slopes no steeper than loose rubble stands, and
nothing there before anything has fallen."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from derrumbe.stages.heap import BULKING, CHIP_MIN_H, D_FINES, REPOSE_DEG, Heap, unmodelled_share
from tests.test_dust import _scene


@pytest.fixture(scope="module")
def collapse():
    fr, sim = _scene()
    return fr, sim, Heap(fr, sim)


def test_nothing_lies_on_the_street_before_the_first_piece_falls(collapse):
    fr, sim, heap = collapse
    first = float(np.min(sim.released))
    assert np.isfinite(first) and first > 0.1
    assert heap.volume(heap.heights(first - 0.05)) == 0.0


def test_the_heap_holds_the_pulverised_storeys_bulked(collapse):
    """What the simulation ground to dust and grit is not lost: by the end the heap holds
    its volume times the bulking of loose rubble, plus the fines of the pieces that lie
    still (at most their share), less what ran off the grid's edge; and with each, the
    share of the building the proxy leaves out (partitions, stairs, roof, contents)."""
    fr, sim, heap = collapse
    t_end = float(sim.times[-1])
    gone = np.isfinite(sim.hidden) & (sim.hidden <= t_end - 0.6)
    assert gone.sum() > 10, "the test collapse pulverises part of the building"
    u = heap.unmodelled
    v_gone = BULKING * (1 + u) * fr.volume[gone].sum()
    v = heap.volume(heap.heights(t_end))
    assert 0.9 * v_gone <= v <= v_gone + BULKING * (heap.fines + u) * fr.volume[~gone].sum() + 1e-6, (v, v_gone)


def test_the_heap_ends_on_its_own_toe_not_on_the_grids_edge(collapse):
    """The heap's grid reaches far enough for the rubble to thin out before its edge: at
    0.6 of the building's height out, img_100's heap was cut off 8.4 m in front of the
    facade still 5 cm deep (the renderer draws the heap from 4 cm), and the test
    collapse's rubble piled 1.9 m deep against the grid's back edge, 1 m behind the
    building, and was lost (a tenth of its heap). At the end, the outermost cells toward
    the lens and at the sides hold less than the 4 cm drawn, those behind the building
    less than 10 cm."""
    fr, sim, heap = collapse
    h = heap.heights(float(sim.times[-1]))
    assert h.max() > 1.0                                   # a heap, not a dusting
    assert max(h[-1].max(), h[:, 0].max(), h[:, -1].max()) < 0.04
    assert h[0].max() < 0.1


def test_the_proxy_brings_what_it_leaves_out_so_the_building_comes_down_as_a_third_of_its_envelope():
    """Loose debris of a collapsed building is about a third of its envelope (the USACE and
    FEMA estimating rule, swell included). A 10 x 10 x 10 m building whose walls and slabs
    are 200 m3 comes down, bulked 1.5 times, as 300 m3: it lacks 30 m3, a tenth of it. One
    of 100 m3 lacks more than its own bulk again (capped at that); one of 250 m3 lacks
    nothing; and an empty proxy brings nothing."""
    from types import SimpleNamespace
    box = dict(box_lo=np.zeros(3), box_hi=np.full(3, 10.0))
    share = lambda solid: unmodelled_share(SimpleNamespace(volume=np.full(4, solid / 4), **box))
    assert BULKING == 1.5
    assert share(200.0) == pytest.approx(0.1)
    assert share(100.0) == 1.0
    assert share(250.0) == 0.0
    assert share(0.0) == 0.0


def test_the_heaps_slopes_stand_no_steeper_than_loose_rubble(collapse):
    fr, sim, heap = collapse
    h = heap.heights(float(sim.times[-1])).astype(float)
    assert h.max() > 0.3                      # a heap, not a film
    gz, gx = np.gradient(h, heap.cell)
    slope = np.degrees(np.arctan(np.hypot(gz, gx)))
    assert slope.max() <= REPOSE_DEG + 1.0, slope.max()


def test_the_heap_lies_where_the_building_came_down(collapse):
    """Most of it within the building's footprint and a few metres out from it, not
    spread evenly over the grid."""
    fr, sim, heap = collapse
    h = heap.heights(float(sim.times[-1]))
    x = heap.x0 + (np.arange(h.shape[1]) + 0.5) * heap.cell
    z = heap.z0 + (np.arange(h.shape[0]) + 0.5) * heap.cell
    near = ((x[None, :] > fr.box_lo[0] - 3) & (x[None, :] < fr.box_hi[0] + 3)
            & (z[:, None] > fr.box_lo[2] - 3) & (z[:, None] < fr.box_hi[2] + 3))
    assert h[near].sum() > 0.8 * h.sum()


def test_the_heaps_lumps_follow_its_size_law_and_lie_on_it(collapse):
    """The scattered lumps continue the fragment-size law below the simulated pieces:
    N(>r) ~ r^-D with the heap's D (fitted over their whole span, which runs from the
    pixel-sized floor up to the smallest simulated fragment), and every one lies where
    the heap ends up deep enough to hold it, surfacing before the end."""
    fr, sim, heap = collapse
    chips = heap.chips(0.03, seed=4)
    assert chips.n > 1000
    r = np.sort(chips.r)
    assert r.min() >= 0.03 and r.max() <= heap.r_smallest + 1e-6
    lo, hi = np.log(0.035), np.log(0.5 * heap.r_smallest)
    keep = (np.log(r) > lo) & (np.log(r) < hi)
    n_above = len(r) - np.searchsorted(r, r[keep], side="right")
    ok = n_above > 20
    slope = np.polyfit(np.log(r[keep][ok]), np.log(n_above[ok]), 1)[0]
    assert abs(-slope - D_FINES) < 0.3, slope
    final = heap.heights(float(sim.times[-1]))
    i = ((chips.x - heap.x0) / heap.cell).astype(int)
    k = ((chips.z - heap.z0) / heap.cell).astype(int)
    assert (final[k, i] >= CHIP_MIN_H).all()
    assert (chips.show_h <= final[k, i] + 1e-5).all()
    # The first, thin rubble has its lumps too: where the heap ends a metre deep, they
    # surface once it is a few of their own widths deep, not at half its final depth.
    deep = final[k, i] > 1.0
    assert np.median(chips.show_h[deep] / np.maximum(2 * chips.r[deep], CHIP_MIN_H)) < 1.5
    # Deterministic for a seed, different for another.
    assert np.array_equal(heap.chips(0.03, seed=4).x, chips.x)
    assert not np.array_equal(heap.chips(0.03, seed=5).x, chips.x)


def test_what_lands_comes_down_in_clumps_not_one_even_ridge(collapse):
    """img_100's crushed ground storey lay along the facade's base as one even ridge with a
    straight top. Every fragment landed still and evenly spaced along a line in front of
    the facade (the simulation's own landings vary with its chaos: measured on them, the
    clumps' share of the crest's variation went from 1.45 to 0.9 times between seeds),
    the crest along the building varies more with the heap's clumps than without: on
    average over lines 0.5-4 m out (each a different stretch of the clumps; one alone
    ranges 0.6-3.5 times) half again as much (1.56; the even deposit's own variation,
    the fragments' sizes, is 0.10), and the clumps move rubble, they add none."""
    fr, sim, heap = collapse
    h = copy.copy(heap)
    h.times, h.settled, h.hidden = np.array([0.0, 1.0]), np.zeros(fr.n), np.full(fr.n, np.inf)
    x = h.x0 + (np.arange(h.shape[1]) + 0.5) * h.cell
    along = (x > fr.box_lo[0]) & (x < fr.box_hi[0])

    def crest_cv(g):
        crest = g.max(axis=0)[along]
        return float(crest.std() / crest.mean())
    ratios = []
    for out in np.arange(0.5, 4.01, 0.5):
        landed = np.zeros((fr.n, 3))
        landed[:, 0] = np.linspace(fr.box_lo[0] - 1.0, fr.box_hi[0] + 1.0, fr.n)
        landed[:, 2] = heap.front_z + out
        h.pos, h.lumps = np.stack([fr.centroid, landed]), heap.lumps
        clumped = h.heights(1.0)
        h.lumps = np.ones_like(heap.lumps)
        even = h.heights(1.0)
        ratios.append(crest_cv(clumped) / crest_cv(even))
        # (a clumped deposit's taller peaks spread further, and a little more of it
        # leaves the grid)
        assert 0.92 * h.volume(even) < h.volume(clumped) <= h.volume(even) * (1 + 1e-6)
    assert np.mean(ratios) > 1.3, np.round(ratios, 2)


def test_no_heap_spills_through_a_ground_storey_wall_still_standing(collapse):
    """What the storeys crushed inside leave runs out onto the pavement only where the
    ground storey's front wall has gone, or over its top: a mound in front of shop windows
    still standing read as dirt piled there before anything fell (img_140 at 20 %). At
    every quarter second, over each stretch of the street front where a piece of that
    wall stands (moved under 0.3 m from where it stood), the heap on the pavement in front
    of its face is no higher than the heap behind it rises over the wall. (Held only 0.5 m
    out, it rose against the face inside the wall's own thickness: a strip with a
    ruler-straight top along the shop front, img_140 and img_288 at 20 %.)"""
    from derrumbe.stages.structure import FACADE
    fr, sim, heap = collapse
    wall = np.flatnonzero((fr.element_kind == FACADE) & (fr.storey == 0))
    assert len(wall) > 4
    x = heap.x0 + (np.arange(heap.shape[1]) + 0.5) * heap.cell
    z = heap.z0 + (np.arange(heap.shape[0]) + 0.5) * heap.cell
    out, inside = z > fr.facade_z + heap.cell, (z <= fr.facade_z) & (z > fr.facade_z - 1.0)
    checked = 0
    for t in np.arange(0.25, float(sim.times[-1]), 0.25):
        k = int(np.clip(np.searchsorted(sim.times, t), 0, len(sim.times) - 1))
        h = heap.heights(float(sim.times[k]))
        for i in wall:
            if np.linalg.norm(sim.pos[k, i] - sim.pos[0, i]) >= 0.3 or sim.hidden[i] <= sim.times[k]:
                continue
            lo, hi = fr.centroid[i, 0] + fr.verts[i][:, 0].min(), fr.centroid[i, 0] + fr.verts[i][:, 0].max()
            cols = (x > lo + 0.4) & (x < hi - 0.4)                 # clear of the ease at its sides
            if not cols.any():
                continue
            top = fr.centroid[i, 1] + fr.verts[i][:, 1].max()
            over = np.maximum(h[inside][:, cols].max(axis=0) - top, 0.0)
            assert (h[out][:, cols].max(axis=0) <= over + 0.05).all(), (t, i)
            checked += 1
    assert checked > 10


def test_the_heap_does_not_run_under_or_past_a_parked_car_and_keeps_its_volume(collapse):
    """A car parked 2.5-4.3 m out from the facade stops the rubble running out from the
    building: spread under and past it, the heap lay 3 m from the lens over the lower
    half of img_190's car. Past the car's far face across its width (clear of the edges'
    ease) the heap is a twentieth of what it is with no car there; what was stopped lies
    on the building's side, so the heap's volume is the same; a post stops nothing."""
    fr, sim, free = collapse
    car = (np.array([-3.0, 0.0, fr.facade_z + 2.5]), np.array([1.5, 1.5, fr.facade_z + 4.3]))
    post = (np.array([3.0, 0.0, fr.facade_z + 3.0]), np.array([3.3, 2.5, fr.facade_z + 3.3]))
    parked = Heap(fr, sim, [car, post])
    t = float(sim.times[-1])
    a, b = free.heights(t), parked.heights(t)
    x = free.x0 + (np.arange(a.shape[1]) + 0.5) * free.cell
    z = free.z0 + (np.arange(a.shape[0]) + 0.5) * free.cell
    past = (z[:, None] >= car[0][2] + 0.6) & (x[None, :] > car[0][0] + 0.6) & (x[None, :] < car[1][0] - 0.6)
    past &= z[:, None] < fr.facade_z + 9.0                   # (out to 0.6 of the building's height)
    assert a[past].mean() > 0.1                              # the free heap does run out there
    assert b[past].mean() < 0.05 * a[past].mean(), (b[past].mean(), a[past].mean())
    assert abs(parked.volume(b) - free.volume(a)) < 0.01 * free.volume(a)
    by_post = (x[None, :] > 2.6) & (x[None, :] < 3.7) & (z[:, None] > post[0][2] - 0.5)
    assert np.allclose(b[by_post], a[by_post] * b.sum() / a.sum(), rtol=0.05, atol=0.01)


def test_rubble_that_comes_down_on_a_car_is_not_a_heap_on_the_street_under_it(collapse):
    """A car cut by the frame's bottom runs on toward the lens (holdouts.obstacles): the
    street under it, from its far face to the lens across its width, is out of the
    rubble's reach. What landed there came down on the car, and a heap drawn there
    stood over its wheels (img_140 at 60-100 %). It goes with what the car stopped:
    the heap's volume is unchanged."""
    fr, sim, free = collapse
    car = (np.array([-3.0, 0.0, fr.facade_z + 2.0]), np.array([1.5, 1.5, fr.facade_z + 12.0]))
    parked = Heap(fr, sim, [car])
    t = float(sim.times[-1])
    a, b = free.heights(t), parked.heights(t)
    x = free.x0 + (np.arange(a.shape[1]) + 0.5) * free.cell
    z = free.z0 + (np.arange(a.shape[0]) + 0.5) * free.cell
    under = (z[:, None] >= car[0][2] + 0.6) & (x[None, :] > car[0][0] + 0.6) & (x[None, :] < car[1][0] - 0.6)
    under &= z[:, None] < fr.facade_z + 9.0                  # (out to 0.6 of the building's height)
    assert a[under].mean() > 0.1
    assert b[under].max() < 0.05 and b[under].mean() < 0.02 * a[under].mean(), (b[under].max(), b[under].mean())
    assert abs(parked.volume(b) - free.volume(a)) < 0.01 * free.volume(a)
