"""The scene: the only state the stages of a shot share.

It holds the checked spec (timing resolved from the plate), the plate, the shot folder and
its stage cache, the engines, and every stage's result by the stage's name. Stages read
what they declared from it (graph.py) and the runner puts their results in it; nothing
else passes between them. A scene opened on a cluster's worker is the same scene: the
results come back from the stage cache on the shared shot folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from derrumbe.backends import Backends
from derrumbe.cache import StageCache
from derrumbe.files import file_digest
from derrumbe.progress import Progress
from derrumbe.spec import ShotSpec, output_size, resolve_timing
from derrumbe.stages import outputs
from derrumbe.stages.matte import check_box
from derrumbe.stages.plate import PlateSource, open_plate, read_mask


@dataclass
class Scene:
    spec: ShotSpec                      # checked, fps and duration resolved
    out: Path                           # the shot's files
    cache: StageCache                   # its stage results (a wedge's variants share one)
    src: PlateSource
    out_size: tuple[int, int]
    digests: dict                       # content digests of the input files
    backends: Backends = field(default_factory=Backends)
    progress: Progress = field(default_factory=Progress)
    log: Callable[[str], None] = lambda s: None
    results: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)     # for the artist, said before anything runs
    _plate: Any = None
    _masks: tuple | None = None

    # ---- what the stages read --------------------------------------------------------
    def __getitem__(self, stage: str):
        return self.results[stage]

    @property
    def plate(self):
        """The plate the analysis sees: a still, or a moving plate's temporal median."""
        if self._plate is None:
            self._plate = self.src.reference()
        return self._plate

    @property
    def masks(self) -> tuple:
        """(building mask, holdout mask) the user gave, at the plate's size, or None."""
        if self._masks is None:
            size = self.plate.size
            self._masks = (read_mask(self.spec.mask, size, "mask") if self.spec.mask else None,
                           read_mask(self.spec.holdout, size, "holdout mask") if self.spec.holdout else None)
        return self._masks

    @property
    def quality(self) -> int:
        """0 for a preview, 1 for a final: the index into the settings tables."""
        return 0 if self.spec.preview else 1

    @property
    def n_frames(self) -> int:
        return n_frames(self.spec)

    @property
    def frame_times(self) -> np.ndarray:
        return np.arange(self.n_frames) / self.spec.fps

    def frame_rel(self, i: int) -> str:
        """Frame i's file relative to the folder that holds the cache (its record's name)."""
        return self.frame_path(i).relative_to(self.cache.root.parent).as_posix()

    def frame_path(self, i: int) -> Path:
        """Frame i's PNG: named after the version (NAME_v003) and numbered from the first frame."""
        return outputs.frame_path(self.out, self.spec.stem, i, self.spec.first_frame)

    def close(self) -> None:
        self.src.close()


def n_frames(spec: ShotSpec) -> int:
    return max(1, int(round(spec.duration * spec.fps)))


def open_scene(spec: ShotSpec, out: str | Path, cache_root: str | Path | None = None,
               progress: Progress | None = None, log: Callable[[str], None] | None = None,
               backends: Backends | None = None, make_dirs: bool = True) -> Scene:
    """The plate opened and every input checked before anything is written: timing from
    a moving plate, the masks' sizes, the box (a corner a few pixels past the plate's
    edge clamped, with a warning), the output size."""
    spec.validate()
    src = open_plate(spec.plate, spec.plate_colorspace)
    try:
        # A moving plate sets the shot's rate and length unless the spec gives them.
        spec = resolve_timing(spec, src.n_frames, src.rate)
        out = Path(out)
        scene = Scene(spec=spec, out=out, cache=StageCache(Path(cache_root) if cache_root else out), src=src,
                      out_size=(0, 0), digests={}, backends=backends or Backends(),
                      progress=progress or Progress(), log=log or (lambda s: None))
        scene.masks                                 # their sizes checked now, not mid-run
        if spec.box is not None:
            box, warning = check_box(spec.box, src.size)
            scene.spec = dataclasses.replace(spec, box=box)
            scene.warnings += [warning] if warning else []
        scene.out_size = output_size(spec, *src.size)
        if make_dirs:
            outputs.prepare_dir(out, clear_manifest=False)
        scene.digests = dict(plate=src.digest(), mask=file_digest(spec.mask), holdout=file_digest(spec.holdout))
        return scene
    except BaseException:
        src.close()
        raise

