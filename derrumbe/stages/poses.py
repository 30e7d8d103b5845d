"""Poses of the simulated pieces at any time: what the renderers, the vectors and the USD export sample.

The simulation stores two poses a frame; a sub-frame's pose is interpolated between them.
"""

from __future__ import annotations

import numpy as np

from derrumbe.stages.simulate import SimResult


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.empty(q.shape[:-1] + (3, 3), np.float32)
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - z * w)
    R[..., 0, 2] = 2 * (x * z + y * w)
    R[..., 1, 0] = 2 * (x * y + z * w)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - x * w)
    R[..., 2, 0] = 2 * (x * z - y * w)
    R[..., 2, 1] = 2 * (y * z + x * w)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def sample_pose(sim: SimResult, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose of every piece at time t: positions lerped, quaternions nlerped (short arc)."""
    ts = sim.times
    k = int(np.clip(np.searchsorted(ts, t) - 1, 0, len(ts) - 2))
    a = float(np.clip((t - ts[k]) / (ts[k + 1] - ts[k]), 0.0, 1.0))
    p = sim.pos[k] * (1 - a) + sim.pos[k + 1] * a
    q0, q1 = sim.quat[k], sim.quat[k + 1]
    q1 = np.where((q0 * q1).sum(-1, keepdims=True) < 0, -q1, q1)
    q = q0 * (1 - a) + q1 * a
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return p, q
