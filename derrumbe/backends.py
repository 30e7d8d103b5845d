"""The two engines a shot runs on, behind small interfaces: the simulator and the renderer.

The runner and the stage graph only ever call these, so a second backend (Blender for the
traditional baseline, a GPU simulator or renderer later) plugs in by implementing the same
few methods and registering itself, without touching the runner. A backend's name and the
packages it names enter the cache keys of the stages it serves, so switching backends
recomputes rather than reuses (after Kubric's simulator and renderer views of one scene).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


class Simulator(Protocol):
    name: str
    libs: tuple[str, ...]       # packages whose versions change its results

    def simulate(self, fr, material, style: str, direction: str, start: float, duration: float,
                 sample_hz: float, seed: int, progress: Callable | None = None, obstacles=()):
        """The collapse: a SimResult (poses at sample_hz, events, statistics); obstacles:
        fixed (lo, hi) boxes in front of the building that the debris hits."""


class DebrisView(Protocol):
    def render(self, sim, t: float, shutter_s: float, max_samples: int, particles=None,
               px_per_sample: float = 3.0):
        """The debris layers (FrameLayers) of the frame at time t."""

    def vectors(self, sim, t: float, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward motion (px), view depth (m) and coverage at t, unblurred."""

    def release(self) -> None: ...


class DustView(Protocol):
    size: tuple[int, int]
    out_size: tuple[int, int]

    def render(self, frame, opaque_depth: np.ndarray, opaque_full: np.ndarray | None = None):
        """The dust layers (DustLayers) of one frame of the dust grid."""

    def release(self) -> None: ...


class Renderer(Protocol):
    name: str
    libs: tuple[str, ...]

    def debris(self, fr, cam, plate_lin, matte, light, face_albedo, rough, rest_pos, rest_quat) -> DebrisView: ...

    def dust(self, debris: DebrisView, cam, light, albedo, backdrop, march_size, **kw) -> DustView: ...


class RapierSimulator:
    """dimforge's Rapier through rapier3d (engines/rapier.py), driven by stages/simulate.py."""
    name = "rapier"
    libs = ("rapier3d",)

    def simulate(self, fr, material, style, direction, start, duration, sample_hz, seed, progress=None, obstacles=()):
        from derrumbe.stages.simulate import simulate
        return simulate(fr, material, style, direction, start, duration, sample_hz, seed, progress=progress,
                        obstacles=obstacles)


class GLRenderer:
    """OpenGL through moderngl on EGL: Mesa's llvmpipe on a CPU, the same shaders on a GPU.
    Each process opens its own context (a cluster's workers each have one)."""
    name = "gl"
    libs = ("moderngl",)

    def debris(self, fr, cam, plate_lin, matte, light, face_albedo, rough, rest_pos, rest_quat, **kw):
        from derrumbe.stages.render import DebrisRenderer
        return DebrisRenderer(fr, cam, plate_lin, matte, light, face_albedo, rough, rest_pos, rest_quat, **kw)

    def dust(self, debris, cam, light, albedo, backdrop, march_size, **kw):
        from derrumbe.stages.dust_render import DustRenderer
        return DustRenderer(debris.ctx, cam, light, albedo, backdrop, march_size, **kw)


SIMULATORS: dict[str, Simulator] = {"rapier": RapierSimulator()}
RENDERERS: dict[str, Renderer] = {"gl": GLRenderer()}


@dataclass(frozen=True)
class Backends:
    simulator: str = "rapier"
    renderer: str = "gl"

    @property
    def sim(self) -> Simulator:
        return SIMULATORS[self.simulator]

    @property
    def render(self) -> Renderer:
        return RENDERERS[self.renderer]
