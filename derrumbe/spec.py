"""The shot specification: the single source of truth for a shot.

The CLI, a TOML file and a manifest all build one ShotSpec and hand it to the same
pipeline. Every field carries its unit, help text and valid range, so the CLI's
options, the validation and the documentation are generated from this one table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from derrumbe.errors import DerrumbeError

STYLES = ("implosion", "topple", "facade")
DIRECTIONS = ("left", "right", "toward", "away")
MATERIALS = ("concrete", "masonry", "glass")
PREVIEW_WIDTH = 640
DUST_SRGB = (200, 188, 168)     # concrete dust: grey-beige (its albedo, lit by the plate's light)
WIND_DEFAULT = (1.0, 90.0)      # a light breeze to the right


def _f(default, help, unit="", lo=None, hi=None, choices=None, cli=True):
    return field(default=default, metadata=dict(help=help, unit=unit, lo=lo, hi=hi, choices=choices, cli=cli))


@dataclass
class ShotSpec:
    plate: str = _f("", "plate: an image (JPEG/PNG/TIFF/EXR), a video (MP4/MOV) or a sequence (plate.####.png|exr)",
                    cli=False)
    plate_colorspace: str | None = _f(None, "OCIO colour space of the plate (sRGB for images and video, ACEScg "
                                            "for EXR when absent)")
    box: list[int] | None = _f(None, "rough box around the building, x0,y0,x1,y1", "px")
    mask: str | None = _f(None, "building mask image instead of a box (white = building)")
    holdout: str | None = _f(None, "mask of foreground objects that stay in front of the debris (added to the "
                                   "automatic holdouts)")
    no_auto_holdouts: bool = _f(False, "do not find people, vehicles, poles and other foreground objects "
                                       "automatically (only --holdout stays in front)")
    name: str = _f("shot", "shot name used for file names")
    style: str = _f("implosion", "collapse style", choices=STYLES)
    direction: str = _f("toward", "side a topple falls to", choices=DIRECTIONS)
    start: float = _f(0.5, "time the collapse starts", "s", 0.0, 600.0)
    height_m: float | None = _f(None, "building height (estimated from window rows when absent)", "m", 2.0, 600.0)
    material: str = _f("concrete", "material preset: density, bond strength, fragment sizes, face look", choices=MATERIALS)
    pieces: int = _f(6000, "number of fragments the building breaks into at the finest level (walls and "
                          "slabs; grit comes on top)", "", 200, 12000)
    focal_mm: float | None = _f(None, "35 mm-equivalent focal length (26 mm assumed when absent)", "mm", 8.0, 400.0)
    horizon_y: float | None = _f(None, "horizon row in the plate (estimated from a 1.6 m eye height when absent)", "px")
    sun_azimuth: float | None = _f(None, "sun azimuth, 0 = behind the camera, 90 = from the right (estimated)", "deg", -180.0, 180.0)
    sun_elevation: float | None = _f(None, "sun elevation above the horizon (estimated)", "deg", 5.0, 89.0)
    dust: float = _f(1.0, "amount of dust relative to a concrete building's (0 = no dust)", "", 0.0, 5.0)
    wind: list[float] | None = _f(None, "wind as SPEED,HEADING: m/s, and degrees (0 = toward the camera, 90 = to the right)", "m/s,deg")
    dust_color: list[int] | None = _f(None, "dust colour as sRGB R,G,B 0-255 (concrete grey-beige when absent)", "sRGB")
    shake: float = _f(1.0, "camera shake on big impacts (0 = none)", "", 0.0, 10.0)
    grain: float = _f(1.0, "film grain relative to the plate's own (0 = none)", "", 0.0, 10.0)
    seed: int = _f(1, "random seed: same spec and seed give the same frames", "", 0, 2**31 - 1)
    fps: int | None = _f(None, "frame rate (a video plate's own, else 24, when absent)", "fps", 1, 120)
    duration: float | None = _f(None, "shot length (a moving plate's length, else 6 s, when absent)", "s", 0.1, 120.0)
    size: str | None = _f(None, "output size WxH or W (plate aspect kept; plate size when absent)", "px")
    preview: bool = _f(False, f"fast low-resolution look, {PREVIEW_WIDTH} px wide")
    passes: bool = _f(False, "also write the debris and dust layers and the dust matte per frame (16-bit PNG in passes/)")
    exr: bool = _f(False, "also write one multi-layer EXR a frame in exr/: ACEScg beauty, debris, dust, mattes, Z, "
                          "motion vectors")
    usd: bool = _f(False, "also write the scene as USD (shot.usdc): camera and every piece's motion")
    vdb: bool = _f(False, "also write the dust volume per frame as OpenVDB in vdb/ (density, temperature, velocity); "
                          "the USD references it")
    prores: bool = _f(False, "also write a ProRes 422 HQ .mov review movie")
    burn_in: bool = _f(False, "burn shot name, version and frame number into the review movies (never the frames)")
    version: int = _f(1, "version number shown in the burn-in and the manifest", "", 1, 9999)
    refine: dict | None = _f(None, "a [refine] table: run the generative pass after the render (model, strength, "
                                   "seed, device, prompt, steps, guidance, size, window, overlap)", cli=False)

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> "ShotSpec":
        for f in fields(self):
            v = getattr(self, f.name)
            m = f.metadata
            if v is None:
                continue
            if m["choices"] and v not in m["choices"]:
                raise DerrumbeError(f"--{_flag(f.name)} must be one of {', '.join(m['choices'])}, not {v!r}")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if isinstance(v, float) and not math.isfinite(v):
                    raise DerrumbeError(f"--{_flag(f.name)} must be a finite number, not {v}")
                if m["lo"] is not None and v < m["lo"] or m["hi"] is not None and v > m["hi"]:
                    unit = f" {m['unit']}" if m["unit"] else ""
                    raise DerrumbeError(f"--{_flag(f.name)} must be between {m['lo']} and {m['hi']}{unit}, not {v}")
        if not self.plate:
            raise DerrumbeError("no plate given")
        if (self.box is None) == (self.mask is None):
            raise DerrumbeError("give exactly one of --box x0,y0,x1,y1 or --mask MASK.png")
        if self.box is not None:
            if len(self.box) != 4:
                raise DerrumbeError("--box needs four numbers x0,y0,x1,y1")
            x0, y0, x1, y1 = self.box
            if x1 <= x0 or y1 <= y0:
                raise DerrumbeError(f"--box {x0},{y0},{x1},{y1} has zero area (need x1 > x0 and y1 > y0)")
        if self.wind is not None:
            if len(self.wind) != 2:
                raise DerrumbeError("--wind needs SPEED,HEADING (m/s, degrees)")
            if not (math.isfinite(self.wind[0]) and math.isfinite(self.wind[1])) or not 0 <= self.wind[0] <= 40:
                raise DerrumbeError(f"--wind speed must be between 0 and 40 m/s, not {self.wind[0]}")
        if self.dust_color is not None:
            if len(self.dust_color) != 3 or not all(0 <= c <= 255 for c in self.dust_color):
                raise DerrumbeError("--dust-color needs three numbers R,G,B between 0 and 255")
        if self.duration is not None and self.start >= self.duration:
            raise DerrumbeError(f"--start {self.start} s is not before the end of the shot ({self.duration} s)")
        if self.size is not None:
            parse_size(self.size)
        if self.refine is not None:
            self.refine_settings()
        return self

    def refine_settings(self):
        """The [refine] table as RefineSettings, checked (no torch needed for that)."""
        from derrumbe.refine import RefineSettings
        if not isinstance(self.refine, dict):
            raise DerrumbeError("refine must be a table: [refine] model = \"...\" ...")
        known = {f.name for f in fields(RefineSettings)}
        unknown = sorted(set(self.refine) - known)
        if unknown:
            raise DerrumbeError(f"unknown field(s) in [refine]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "model" not in self.refine:
            raise DerrumbeError("[refine] needs model = \"path/to/weights\"")
        try:
            return RefineSettings(**self.refine).validate()
        except TypeError as e:
            raise DerrumbeError(f"[refine]: {e}") from None

    # ---- round trips ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: Path | None = None) -> "ShotSpec":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DerrumbeError(f"unknown field(s) in spec: {', '.join(unknown)}")
        kw = {}
        for k, v in d.items():
            kw[k] = _coerce(known[k], v)
        spec = cls(**kw)
        if base_dir is not None:
            for k in ("plate", "mask", "holdout"):
                p = getattr(spec, k)
                if p and not Path(p).is_absolute():
                    setattr(spec, k, str((base_dir / p).resolve()))
            if isinstance(spec.refine, dict) and spec.refine.get("model") and \
                    not Path(str(spec.refine["model"])).is_absolute():
                spec.refine["model"] = str((base_dir / str(spec.refine["model"])).resolve())
        return spec

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, base_dir: Path | None = None) -> "ShotSpec":
        return cls.from_dict(tomllib.loads(text), base_dir)

    @classmethod
    def load(cls, path: str | Path) -> "ShotSpec":
        """Reads a .toml spec, or a manifest.json written by a render (its 'spec' key)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise DerrumbeError(f"cannot read spec {path}: {e.strerror or e}") from None
        try:
            if path.suffix.lower() == ".json":
                d = json.loads(text)
                d = d.get("spec", d)
            else:
                d = tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise DerrumbeError(f"spec {path} is not valid {path.suffix[1:].upper() or 'TOML'}: {e}") from None
        return cls.from_dict(d, path.parent.resolve())


def _coerce(f: dataclasses.Field, v: Any) -> Any:
    """Brings a value read from TOML/JSON/CLI to the field's type, with a one-line error."""
    if v is None:
        return None
    name = f.name
    if name == "refine":
        return dict(v) if isinstance(v, dict) else v
    try:
        if name in ("box", "wind", "dust_color"):
            if isinstance(v, str):
                v = [p for p in v.replace(" ", "").split(",") if p]
            if name == "wind":
                return [float(x) for x in v]
            return [int(round(float(x))) for x in v]
        default = f.default
        t = type(default) if default is not None else None
        if name in ("height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation"):
            t = float
        if name in ("mask", "holdout", "size", "plate_colorspace"):
            t = str
        if name == "fps":
            t = int
        if name == "duration":
            t = float
        if t is bool:
            if isinstance(v, str):
                return v.lower() in ("1", "true", "yes", "on")
            return bool(v)
        if t is int:
            fv = float(v)
            if fv != int(fv):
                raise ValueError
            return int(fv)
        if t is float:
            return float(v)
        return str(v)
    except (TypeError, ValueError):
        raise DerrumbeError(f"--{_flag(name)}: {v!r} is not a valid value") from None


def _flag(name: str) -> str:
    return name.replace("_", "-")


def parse_size(text: str) -> tuple[int, int | None]:
    try:
        parts = text.lower().split("x")
        if len(parts) == 1:
            w, h = int(parts[0]), None
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise DerrumbeError(f"--size must be WxH or W in pixels, not {text!r}") from None
    if not 16 <= w <= 8192 or (h is not None and not 16 <= h <= 8192):
        raise DerrumbeError(f"--size {text} is outside 16..8192 pixels")
    return w, h


DEFAULT_FPS = 24
DEFAULT_DURATION = 6.0


def resolve_timing(spec: ShotSpec, plate_frames: int, plate_rate) -> ShotSpec:
    """fps and duration filled in: a moving plate's own rate and length unless given."""
    moving = plate_frames > 1
    fps = spec.fps
    if fps is None:
        fps = int(round(float(plate_rate))) if plate_rate else DEFAULT_FPS
        if not 1 <= fps <= 120:
            raise DerrumbeError(f"the plate runs at {float(plate_rate):.3f} fps; give --fps between 1 and 120")
    elif moving and plate_rate and abs(fps - float(plate_rate)) > 0.01 * fps:
        raise DerrumbeError(f"--fps {fps} differs from the plate's {float(plate_rate):.3f} fps; "
                            f"leave --fps out to use the plate's")
    duration = spec.duration
    if duration is None:
        duration = plate_frames / fps if moving else DEFAULT_DURATION
    elif moving and int(round(duration * fps)) > plate_frames:
        raise DerrumbeError(f"--duration {duration} s is longer than the plate ({plate_frames} frames, "
                            f"{plate_frames / fps:.2f} s at {fps} fps)")
    out = dataclasses.replace(spec, fps=fps, duration=round(float(duration), 6))
    return out.validate()


def output_size(spec: ShotSpec, plate_w: int, plate_h: int) -> tuple[int, int]:
    """Frame size with the plate's aspect ratio, never cropped; even for H.264."""
    aspect = plate_w / plate_h
    if spec.preview:
        w, h = PREVIEW_WIDTH, None
    elif spec.size:
        w, h = parse_size(spec.size)
    else:
        w, h = plate_w, None
    if h is not None and abs((w / h) / aspect - 1.0) > 0.01:
        raise DerrumbeError(
            f"--size {w}x{h} does not match the plate's aspect {plate_w}x{plate_h} within 1 %; give the width alone")
    w = max(16, int(round(w / 2)) * 2)
    h = max(16, int(round(w / aspect / 2)) * 2)
    return w, h


def cli_fields():
    return [f for f in fields(ShotSpec) if f.metadata["cli"]]
