"""Comp helpers: grain matched to the plate's noise, shake only after impacts."""

import numpy as np

from derrumbe.stages.comp import estimate_grain, shake_track


def test_grain_estimate_recovers_the_plates_noise():
    rng = np.random.default_rng(0)
    clean = np.full((200, 200, 3), 120.0)
    noisy = np.clip(clean + rng.normal(0, 3.0, clean.shape), 0, 255).astype(np.uint8)
    sigma = estimate_grain(noisy) * 255
    assert np.all((sigma > 1.5) & (sigma < 6.0))
    assert np.all(estimate_grain(clean.astype(np.uint8)) * 255 < 1.0)


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
