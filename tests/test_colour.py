"""Colour management against OpenColorIO itself: the fast paths equal OCIO's processors,
and a plate survives plate -> ACEScg -> display unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from derrumbe import colour


def _all_codes() -> np.ndarray:
    """Every 8-bit value in every channel, in saturated and grey mixes."""
    u = np.arange(256, dtype=np.uint8)
    a, b = np.meshgrid(u, u, indexing="ij")
    return np.stack([a, b, 255 - a], -1)


def test_plate_to_linear_to_display_is_exact_for_every_code_value():
    img = _all_codes()
    back = colour.linear_to_u8(colour.u8_to_linear(img))
    assert np.array_equal(back, img)


def test_input_transform_equals_ocio_srgb_to_acescg():
    img = _all_codes()
    ours = colour.u8_to_linear(img)
    ref = colour.convert(img.astype(np.float32) / 255.0, colour.SRGB, colour.WORKING)
    assert np.abs(ours - ref).max() < 1e-5


def test_display_transform_equals_ocio_acescg_to_srgb_within_display_range():
    rng = np.random.default_rng(3)
    lin = colour.u8_to_linear(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) * rng.uniform(0.5, 1.0, (64, 64, 1))
    lin = lin.astype(np.float32)
    ref = colour.convert(lin, colour.WORKING, colour.SRGB)
    inside = ((ref >= 0) & (ref <= 1)).all(-1)
    assert inside.mean() > 0.9
    assert np.abs(colour.display_encode(lin) - ref)[inside].max() < 5e-5


def test_white_is_white_and_luminance_of_white_is_one():
    w = colour.rec709_to_working(np.ones(3))
    assert np.allclose(w, 1.0, atol=1e-4)          # both spaces have white at (1, 1, 1)
    assert colour.luminance(np.ones((1, 3), np.float32))[0] == pytest.approx(1.0, abs=1e-4)
    # Saturated Rec.709 red sits inside AP1: all positive, mostly red.
    r = colour.rec709_to_working(np.array([1.0, 0.0, 0.0]))
    assert (r > 0).all() and r[0] > 3 * r[1]


def test_exr_plates_in_another_colour_space_are_converted():
    lin709 = np.array([[[0.18, 0.18, 0.18], [0.5, 0.2, 0.1]]], np.float32)
    work = colour.convert(lin709, colour.LIN_REC709, colour.WORKING)
    assert np.allclose(work, colour.rec709_to_working(lin709), atol=1e-5)


def test_unknown_colour_space_is_a_one_line_error():
    from derrumbe.errors import DerrumbeError
    with pytest.raises(DerrumbeError, match="unknown colour space"):
        colour.convert(np.zeros((1, 1, 3), np.float32), "Not A Space", colour.WORKING)
