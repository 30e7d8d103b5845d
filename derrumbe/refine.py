"""The recipe of `derrumbe refine`: a rendered shot in, a photoreal version of it out.

It reads what the render left: the beauty frames (the display-referred PNGs, what a
video model was trained on), and from the EXRs the effect matte and the motion vectors.
The model runs at its native size and length in overlapping windows; each window starts
from the end of the last. The refined frames are scaled to the shot's size and
composited back only inside the effect matte, feathered inward, so every pixel outside
it is the plate's, exactly.

The model itself (loading, denoising with two clocks) is in derrumbe/generative/; the
starting noise that follows the simulation's motion is generative/noise_warp.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import ConfigDict

from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes, sha256_file
from derrumbe.stages import outputs
from derrumbe.stages.manifest import write_manifest
from derrumbe.stages.movies import MovieWriter

DEFAULT_PROMPT = ("photoreal film footage of a concrete building collapsing, heavy grey-beige dust cloud rolling "
                  "out along the street, falling slabs and debris, natural daylight, shot on a locked-off cinema camera")
NEGATIVE_PROMPT = ("cartoon, CGI, render, video game, painting, text, watermark, blurry, low quality, flicker, "
                   "morphing, distorted geometry")
FEATHER_PX = 6.0           # at 1280 px wide; scaled with the frame
MAX_TEXT = 4096            # a model path or a prompt


@dataclass
class RefineSettings:
    model: str
    strength: float = 0.6            # the effect's clock starts here (0..1 of the noise schedule)
    seed: int = 1
    device: str | None = None        # cuda | cpu; cuda when available
    prompt: str = DEFAULT_PROMPT
    steps: int = 30                  # of a full schedule; strength keeps the last part of it
    guidance: float = 5.0
    size: str | None = None          # model frame size WxH; the model's native 832x480 area by default
    window: int = 81                 # frames per window (4k+1); Wan 2.1/2.2 are trained on 81
    overlap: int = 9                 # frames shared by consecutive windows

    # How pydantic reads a [refine] table into these fields (from_dict).
    __pydantic_config__ = ConfigDict(allow_inf_nan=False, str_max_length=MAX_TEXT)

    @classmethod
    def from_dict(cls, d: dict) -> "RefineSettings":
        """A [refine] table read from TOML/JSON, brought to the fields' types (pydantic:
        "0.5" -> 0.5, inf and nan refused) and checked."""
        from pydantic import TypeAdapter, ValidationError
        try:
            s = TypeAdapter(cls).validate_python(d)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(map(str, err["loc"])) or "refine"
            raise DerrumbeError(f"[refine] {where}: {err['msg'].removeprefix('Value error, ')}") from None
        return s.validate()

    def validate(self) -> "RefineSettings":
        if not (isinstance(self.model, str) and 0 < len(self.model) <= MAX_TEXT and "\0" not in self.model):
            raise DerrumbeError(f"--model must be a folder path of at most {MAX_TEXT} characters")
        if len(self.prompt or "") > MAX_TEXT:
            raise DerrumbeError(f"--prompt is {len(self.prompt)} characters long; at most {MAX_TEXT}")
        if not 0 <= self.seed <= 2**31 - 1:
            raise DerrumbeError(f"--seed must be between 0 and {2**31 - 1}, not {self.seed}")
        if not (math.isfinite(self.guidance) and 0.0 <= self.guidance <= 50.0):
            raise DerrumbeError(f"--guidance must be between 0 and 50, not {self.guidance}")
        if self.size is not None:
            model_size(self, 16, 16)
        if not (math.isfinite(self.strength) and 0.05 <= self.strength <= 1.0):
            raise DerrumbeError(f"--strength must be between 0.05 and 1.0, not {self.strength}")
        if self.device not in (None, "cuda", "cpu"):
            raise DerrumbeError(f"--device must be cuda or cpu, not {self.device!r}")
        if self.window < 5 or (self.window - 1) % 4:
            raise DerrumbeError(f"--window must be 4k+1 frames (e.g. 81, 49, 17, 9), not {self.window}")
        if self.window > 1001:
            raise DerrumbeError(f"--window must be at most 1001 frames, not {self.window}")
        if not 1 <= self.overlap <= self.window // 2:
            raise DerrumbeError(f"--overlap must be between 1 and {self.window // 2} frames, not {self.overlap}")
        if not 1 <= self.steps <= 200:
            raise DerrumbeError(f"--steps must be between 1 and 200, not {self.steps}")
        return self

    @property
    def clocks(self) -> tuple[float, float]:
        """(noise level the effect starts from, the level the rest is held to until):
        the rest follows the coarse render for the first half of the effect's schedule."""
        return self.strength, self.strength * 0.5


def model_size(settings: RefineSettings, shot_w: int, shot_h: int) -> tuple[int, int]:
    """The model's frame: given, or the native 832x480's area at the shot's aspect, in
    multiples of 16 (the VAE's 8 times the transformer's 2x2 patches)."""
    if settings.size:
        try:
            w, h = (int(v) for v in settings.size.lower().split("x"))
        except ValueError:
            raise DerrumbeError(f"--model-size must be WxH, not {settings.size[:40]!r}") from None
        if not (16 <= w <= 4096 and 16 <= h <= 4096):
            raise DerrumbeError(f"--model-size {w}x{h} is outside 16..4096 pixels")
    else:
        area = 832 * 480
        w = (area * shot_w / shot_h) ** 0.5
        h = w * shot_h / shot_w
        w, h = int(w), int(h)
    w, h = max(16, int(round(w / 16)) * 16), max(16, int(round(h / 16)) * 16)
    return w, h


def windows(n: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """(start, frames) of each window; the last may be shorter (the backend pads it)."""
    out, s = [], 0
    while True:
        out.append((s, min(length, n - s)))
        if s + length >= n:
            return out
        s += length - overlap


def _read_shot(shot: Path) -> dict:
    mp = shot / "manifest.json"
    if not shot.is_dir():
        raise DerrumbeError(f"shot folder {shot} does not exist")
    if not mp.exists():
        raise DerrumbeError(f"{shot} is not a finished render (no manifest.json); render it with `derrumbe shot` first")
    try:
        m = json.loads(mp.read_text())
    except ValueError as e:
        raise DerrumbeError(f"{mp} is not valid JSON: {e}") from None
    if not m.get("exr"):
        raise DerrumbeError(f"refine needs the shot's effect matte and motion vectors: render {shot} again with --exr")
    return m


def _feathered(effect: np.ndarray, px: float) -> np.ndarray:
    """The effect matte softened inward only: never above the matte, so a pixel outside
    it (matte 0) keeps the plate's value exactly."""
    return np.minimum(effect, cv2.GaussianBlur(effect, (0, 0), px)).astype(np.float32)


def run_refine(shot_dir: str | Path, settings: RefineSettings, log=lambda s: None) -> dict:
    """Refines a rendered shot in place, holding its shot lock: a render started into the
    folder meanwhile fails at once instead of replacing frames under the model."""
    from derrumbe.cache import ShotLock
    shot = Path(shot_dir)
    if not shot.is_dir():
        raise DerrumbeError(f"shot folder {shot} does not exist")
    settings.validate()
    with ShotLock(shot):
        return _refine_locked(shot, settings, log)


def _refine_locked(shot_dir: Path, settings: RefineSettings, log) -> dict:
    from derrumbe.generative import require_torch
    from derrumbe.generative.noise_warp import latent_flow, splat_step
    from derrumbe.stages.exr import exr_path, read_exr
    settings.validate()
    shot = Path(shot_dir)
    m = _read_shot(shot)
    require_torch()
    from derrumbe.generative.wan import WanRefiner
    # The version's stem and first frame (manifests from before versioned names: the name, 1001).
    name, n = m.get("stem") or m["spec"]["name"], len(m["frames"])
    first_no = int(m.get("first_frame", outputs.FIRST_FRAME))
    W, H = m["size"]
    mw, mh = model_size(settings, W, H)
    t_start = time.perf_counter()
    timings = {}

    # The shot, at the model's size: beauty (display sRGB, uint8), the effect matte and
    # the forward vectors at the shot's size (for the comp and the noise).
    t0 = time.perf_counter()
    coarse_full, effect_full, flows = [], [], []
    for i in range(n):
        p = shot / m["frames"][i]
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DerrumbeError(f"cannot read the shot's frame {p}")
        coarse_full.append(img[..., ::-1])
        e = exr_path(shot, name, first_no + i)
        try:
            _, ch = read_exr(e)
        except Exception:
            raise DerrumbeError(f"cannot read {e}; render {shot} again with --exr") from None
        effect_full.append(ch["matte.effect"].astype(np.float32))
        flows.append(np.stack([ch["forward.u"], ch["forward.v"]], -1).astype(np.float32))
    timings["read"] = time.perf_counter() - t0

    refiner = WanRefiner(settings.model, settings.device, log)
    lat_hw = (mh // refiner.spatial, mw // refiner.spatial)
    # One noise chain for the whole shot, frame by frame along the motion: windows take
    # their frames from it, so the noise is continuous across window seams.
    t0 = time.perf_counter()
    rng = np.random.default_rng([settings.seed, 0x5EED])
    chain = [rng.standard_normal((refiner.latent_channels,) + lat_hw, dtype=np.float32)]
    for i in range(n - 1):
        nxt, _ = splat_step(chain[-1], latent_flow(flows[i], lat_hw), rng)
        chain.append(nxt)
    timings["noise"] = time.perf_counter() - t0

    small = np.stack([cv2.resize(c, (mw, mh), interpolation=cv2.INTER_AREA) for c in coarse_full])
    mattes = np.stack([cv2.resize(e, (mw, mh), interpolation=cv2.INTER_AREA) for e in effect_full])
    refined = np.zeros_like(small)
    plan = windows(n, settings.window, settings.overlap)
    t0 = time.perf_counter()
    for k, (s, length) in enumerate(plan):
        pad = settings.window if length == settings.window else ((length - 1 + 3) // 4) * 4 + 1
        idx = np.minimum(np.arange(s, s + pad), n - 1)
        first = small[s] if k == 0 else refined[s]
        # The latent frame j stands for frames 4j-3 .. 4j of the window (j = 0: the first):
        # it takes the noise of its last frame.
        lat_idx = np.minimum(s + np.concatenate([[0], 4 * np.arange(1, (pad - 1) // 4 + 1)]), n - 1)
        noise = np.stack([chain[j] for j in lat_idx], 1)          # C x T' x h x w
        log(f"window {k + 1}/{len(plan)}: frames {first_no + s}-{first_no + s + length - 1}")
        out = refiner.refine_window(small[idx], mattes[idx], first, noise, settings)[:length]
        if k == 0:
            refined[s:s + length] = out
        else:
            # The overlap cross-fades from the last window to this one.
            ov = min(settings.overlap, length)
            w = ((np.arange(ov) + 1) / (ov + 1))[:, None, None, None]
            refined[s:s + ov] = np.rint(refined[s:s + ov] * (1 - w) + out[:ov] * w).astype(np.uint8)
            refined[s + ov:s + length] = out[ov:]
    timings["denoise"] = time.perf_counter() - t0

    # Back into the shot at full size, inside the inward-feathered effect matte only.
    t0 = time.perf_counter()
    rdir = shot / "refined"
    rdir.mkdir(exist_ok=True)
    files = {}
    feather = FEATHER_PX * W / 1280.0
    movie = MovieWriter(shot / f"{name}_refined.mp4", m["fps"], (W, H), first=first_no)
    try:
        for i in range(n):
            a = _feathered(effect_full[i], feather)[..., None]
            up = cv2.resize(refined[i], (W, H), interpolation=cv2.INTER_CUBIC).astype(np.float32)
            base = coarse_full[i]
            frame = np.where(a > 0, np.rint(base * (1 - a) + up * a), base).astype(np.uint8)
            ok, buf = cv2.imencode(".png", frame[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
            p = rdir / f"{name}.{first_no + i:04d}.png"
            data = buf.tobytes()
            atomic_write_bytes(p, data)
            files[p.relative_to(shot).as_posix()] = hashlib.sha256(data).hexdigest()
            movie.add(frame, first_no + i)
        movie.close()
    except BaseException:
        movie.abort()
        raise
    files[movie.path.name] = sha256_file(movie.path)
    timings["comp_write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    info = {**asdict(settings), "model": os.path.relpath(Path(settings.model).resolve(), Path(shot_dir).resolve()), "model_id": refiner.model_id,
            "backend": refiner.name, "device": refiner.device, "dtype": refiner.dtype_name,
            "model_size": [mw, mh], "windows": [[first_no + s, first_no + s + L - 1]
                                                 for s, L in plan],
            "clocks": {"effect_from": settings.clocks[0], "plate_held_until": settings.clocks[1]},
            "cpu_offload": refiner.offload, "frames": sorted(k for k in files if k.startswith("refined/")),
            "movie": movie.path.name, "timings_s": {k: round(v, 3) for k, v in timings.items()}}
    m["refine"] = info
    m.setdefault("files", {}).update(files)
    m["files"] = {k: m["files"][k] for k in sorted(m["files"])}
    write_manifest(shot, m, m.get("stem"))
    return info
