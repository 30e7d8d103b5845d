"""Numba kernel of the debris particles' flight: gravity, air drag, bounces."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def fly(t, born, x0, v0, radius, drag, g, restitution, friction, substeps, out):
    """Integrates every particle from its birth; out[s] = positions at t[s]. Each particle
    is independent, so the result does not depend on the thread count."""
    T = t.shape[0]
    P = born.shape[0]
    for p_ in prange(P):
        p = np.int64(p_)
        x0_, x1_, x2_ = x0[p, 0], x0[p, 1], x0[p, 2]
        v0_, v1_, v2_ = v0[p, 0], v0[p, 1], v0[p, 2]
        r = radius[p]
        resting = False
        out[0, p, 0], out[0, p, 1], out[0, p, 2] = x0_, x1_, x2_
        for s in range(1, T):
            dt = (t[s] - t[s - 1]) / substeps
            for j in range(substeps):
                now = t[s - 1] + (j + 1) * dt
                if resting or now < born[p]:
                    continue
                sp = np.sqrt(v0_ * v0_ + v1_ * v1_ + v2_ * v2_)
                k = 1.0 / (1.0 + drag[p] * sp * dt)          # implicit quadratic drag
                v0_ *= k
                v1_ = v1_ * k - g * dt
                v2_ *= k
                x0_ += v0_ * dt
                x1_ += v1_ * dt
                x2_ += v2_ * dt
                if x1_ < r:
                    x1_ = r
                    v1_ = -restitution * v1_
                    v0_ *= friction
                    v2_ *= friction
                    if np.sqrt(v0_ * v0_ + v1_ * v1_ + v2_ * v2_) < 0.3:
                        resting = True
            out[s, p, 0], out[s, p, 1], out[s, p, 2] = x0_, x1_, x2_
