"""How long a shot will take: a prediction per stage before it runs, refined while it runs.

Each stage's cost is its workload (frames, megapixels, pieces, dust cells: `workloads`)
times a rate in seconds per unit. The rates start from a table measured on a 2-core
laptop CPU and are replaced by this machine's own after every render (a running mean
kept in `rates_path()`), so the first estimate of a shot is this machine's, not ours.
While a shot renders, the stage in progress is extrapolated from its own frames (like
Blender's "Remaining"), and the stages still to come are scaled by how fast this run has
been against its predictions so far.

Nothing here changes what a render produces: the rates are read and written beside the
user's other caches, never in a shot folder, and never enter a cache key.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

# The order the pipeline runs its progress stages in.
STAGES = ("plate", "matte", "camera", "fracture", "simulate", "particles", "dust", "cleanplate", "render", "vdb",
          "usd")

# Seconds per unit of workload, measured with `derrumbe demo` and the tests' shots on a
# 2-core laptop CPU (see benchmarks/README.md); this machine's own replace them.
DEFAULT_RATES = {
    "plate": 0.15,       # per plate megapixel (a video plate: per frame read for its median)
    "matte": 2.0,        # per (plate megapixel + 0.25): GrabCut and the automatic holdouts
    "camera": 0.3,       # per shot
    "fracture": 1.6,     # per thousand pieces
    "simulate": 1.2,     # per simulated second per thousand pieces
    "particles": 0.2,    # per thousand particles
    "dust": 0.9,         # per frame per hundred thousand dust cells
    "cleanplate": 1.5,   # per output megapixel
    "render": 2.5,       # per frame per (output megapixel + FRAME_FIXED_MPX): debris, dust, comp, files
    "vdb": 0.3,          # per frame per hundred thousand dust cells (OpenVDB volumes)
    "usd": 0.05,         # per frame per thousand pieces
}
# A frame costs something whatever its size (the movie, the files, the per-frame set-up):
# as much as this many megapixels of rendering.
FRAME_FIXED_MPX = 0.1
SMOOTHING = 0.5          # weight of the newest measurement in the running mean
FACTOR_RANGE = (0.25, 4.0)


def rates_path() -> Path:
    """Where this machine's measured rates live: $DERRUMBE_STAGE_RATES, else the user's cache."""
    env = os.environ.get("DERRUMBE_STAGE_RATES")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "derrumbe" / "stage_rates.json"


def load_rates() -> dict[str, float]:
    rates = dict(DEFAULT_RATES)
    try:
        stored = json.loads(rates_path().read_text())
    except (OSError, ValueError):
        return rates
    if isinstance(stored, dict):
        for k, v in stored.items():
            if k in rates and isinstance(v, (int, float)) and math.isfinite(v) and 0 < v < 1e4:
                rates[k] = float(v)
    return rates


def workloads(plate_mpx: float, plate_frames_read: int, out_mpx: float, n_frames: int, pieces: int,
              duration_s: float, particles: int, dust_cells: int | None) -> dict[str, float]:
    """Each stage's workload in the units DEFAULT_RATES are per."""
    return {
        "plate": plate_mpx * max(1, plate_frames_read),
        "matte": plate_mpx + 0.25,            # GrabCut works at a fixed size: a part costs the same on any plate
        "camera": 1.0,
        "fracture": pieces / 1000.0,
        "simulate": duration_s * pieces / 1000.0,
        "particles": particles / 1000.0,
        "dust": n_frames * dust_cells / 1e5 if dust_cells else 0.0,
        "cleanplate": out_mpx,
        "render": n_frames * (out_mpx + FRAME_FIXED_MPX),
        "usd": n_frames * pieces / 1000.0,
    }


def predict(work: dict[str, float], skip: dict[str, float] | None = None,
            rates: dict[str, float] | None = None) -> dict[str, float]:
    """Predicted seconds per stage. skip: the share of each stage already done (cached
    stages 1, a render whose frames are partly reused the reused share)."""
    rates = rates or load_rates()
    skip = skip or {}
    return {s: max(0.0, w * rates.get(s, 0.0) * (1.0 - skip.get(s, 0.0))) for s, w in work.items()}


def record(measured: dict[str, float], work: dict[str, float], ran: dict[str, float]) -> None:
    """Folds this render's stage times into the machine's rates. ran: the share of each
    stage's workload this run actually computed (0 for a cached stage: it says nothing
    about the rate). Failing to write is not an error: the rates are a convenience."""
    rates = load_rates()
    for s, secs in measured.items():
        share = ran.get(s, 0.0)
        units = work.get(s, 0.0) * share
        if s not in rates or units <= 1e-6 or share < 0.5 or not math.isfinite(secs) or secs <= 0:
            continue
        rates[s] = (1 - SMOOTHING) * rates[s] + SMOOTHING * secs / units
    path = rates_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: round(v, 6) for k, v in rates.items()}, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass


class Estimator:
    """Remaining time of the stage in progress and of the whole shot, from a plan
    (predicted seconds per stage) and the progress events of the run."""

    def __init__(self, plan: dict[str, float] | None = None, clock=time.perf_counter):
        self.plan = dict(plan or {})
        self.clock = clock
        self.done_stages: dict[str, float] = {}       # stage -> seconds it took
        self.stage: str | None = None
        self.t_stage = clock()
        self.done = 0
        self.total = 1

    def set_plan(self, plan: dict[str, float]) -> None:
        self.plan = dict(plan)

    def start(self, stage: str, total: int | None = None) -> None:
        self.stage, self.t_stage, self.done, self.total = stage, self.clock(), 0, max(1, total or 1)

    def advance(self, done: int, total: int) -> None:
        self.done, self.total = done, max(1, total)

    def end(self) -> None:
        if self.stage is not None:
            self.done_stages[self.stage] = self.done_stages.get(self.stage, 0.0) + self.clock() - self.t_stage
        self.stage = None

    def factor(self) -> float:
        """How fast this run is against its plan so far (measured / predicted)."""
        pred = sum(self.plan.get(s, 0.0) for s in self.done_stages)
        took = sum(self.done_stages.values())
        if pred < 1.0:
            return 1.0
        lo, hi = FACTOR_RANGE
        return min(hi, max(lo, took / pred))

    def stage_remaining(self) -> float | None:
        """Seconds left in the current stage: extrapolated from its own progress once a
        few per cent are done, else its prediction less the time spent."""
        if self.stage is None:
            return None
        spent = self.clock() - self.t_stage
        if self.total > 1 and self.done > 0 and (self.done >= 2 or self.done / self.total >= 0.05):
            return spent / self.done * (self.total - self.done)
        planned = self.plan.get(self.stage)
        if planned is None:
            return None
        return max(0.0, planned * self.factor() - spent)

    def total_remaining(self) -> float | None:
        if not self.plan:
            return None
        f = self.factor()
        later = [s for s in self.plan if s not in self.done_stages and s != self.stage]
        rest = sum(self.plan[s] for s in later) * f
        cur = self.stage_remaining() or 0.0
        return cur + rest

    def fraction(self) -> float:
        """Share of the whole shot done, by predicted time."""
        total = sum(self.plan.values())
        if total <= 0:
            return 0.0
        f = self.factor()
        done = sum(self.plan.get(s, 0.0) for s in self.done_stages)
        if self.stage is not None:
            done += self.plan.get(self.stage, 0.0) * min(1.0, self.done / self.total)
        left = self.total_remaining() or 0.0
        return max(0.0, min(1.0, done * f / max(done * f + left, 1e-9)))


def clock_text(seconds: float | None) -> str:
    """0:07, 1:23, 1:02:03 — how a render's remaining time reads in Blender and Nuke."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(round(max(0.0, seconds)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
