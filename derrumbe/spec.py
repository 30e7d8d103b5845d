"""The shot specification: the single source of truth for a shot.

The CLI, a TOML file and a manifest all build one ShotSpec and hand it to the same
pipeline. Every field carries its unit, help text and valid range, so the CLI's
options, the validation and the documentation are generated from this one table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from derrumbe.errors import DerrumbeError

STYLES = ("implosion", "topple", "facade")
DIRECTIONS = ("left", "right", "toward", "away")
MATERIALS = ("auto", "concrete", "masonry", "glass")
PREVIEW_WIDTH = 640
DUST_SRGB = (196, 190, 178)     # concrete dust: light warm grey (its albedo, lit by the plate's light)
WIND_DEFAULT = (1.0, 90.0)      # a light breeze to the right

# Lengths of the text fields: a path, a name that becomes file names, short tokens.
MAX_PATH = 4096
MAX_NAME = 64
MAX_TOKEN = 100
BOX_LIMIT_PX = 100_000          # what a box corner can hold at all (the plate's own edges are checked later)
BOX_CLAMP_PX = 8                # a corner this far past the plate's edge is clamped (a hand-drawn overshoot)
FIRST_FRAME = 1001              # the first frame's number when no --frames range gives another
MAX_FRAMES = 14_400             # 120 s at 120 fps
HORIZON_LIMIT_PX = 100_000
MAX_SPEC_BYTES = 1_000_000      # a TOML spec or a manifest read with --spec
ITEM_NAMES = {"box": "X0,Y0,X1,Y1", "wind": "SPEED,HEADING", "dust_color": "R,G,B"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _f(default, help, unit="", lo=None, hi=None, choices=None, cli=True, max_len=None, items=None):
    """A spec field: its default, help text and unit, and everything it may hold: a
    numeric range (lo..hi), a set of choices, a length cap for text, and for lists
    (n, lo, hi, unit) of their items."""
    return field(default=default, metadata=dict(help=help, unit=unit, lo=lo, hi=hi, choices=choices, cli=cli,
                                                max_len=max_len, items=items))


@dataclass
class ShotSpec:
    plate: str = _f("", "plate: an image (JPEG/PNG/TIFF/EXR), a video (MP4/MOV) or a sequence (plate.####.png|exr)",
                    cli=False, max_len=MAX_PATH)
    plate_colorspace: str | None = _f(None, "OCIO colour space of the plate, e.g. \"ACES2065-1\"", max_len=MAX_TOKEN)
    box: list[int] | None = _f(None, "rough box around the building: left, top, right, bottom in plate pixels, "
                                      "from the top-left corner (y runs down); a corner up to "
                                      f"{BOX_CLAMP_PX} px past the edge is clamped, further is an error", "px",
                                items=((-BOX_LIMIT_PX, BOX_LIMIT_PX, "px"),) * 4)
    mask: str | None = _f(None, "building mask image instead of a box (white = building)", max_len=MAX_PATH)
    holdout: str | None = _f(None, "mask of foreground objects that stay in front of the debris (added to the "
                                   "automatic holdouts)", max_len=MAX_PATH)
    no_auto_holdouts: bool = _f(False, "do not find people, vehicles, poles and other foreground objects "
                                       "automatically (only --holdout stays in front)")
    name: str = _f("shot", "shot name used for file names (letters, digits, _ . -)", max_len=MAX_NAME)
    style: str = _f("implosion", "collapse style", choices=STYLES)
    direction: str = _f("toward", "side a topple falls to", choices=DIRECTIONS)
    start: float = _f(0.5, "time the collapse starts", "s", 0.0, 600.0)
    height_m: float | None = _f(None, "building height, street to the top of the matte (estimated from the plate's rulers when absent)", "m", 2.0, 600.0)
    material: str = _f("auto", "material preset: density, bond strength, fragment sizes, face look; auto: the one "
                               "the facade suggests (--explain says which and why)", choices=MATERIALS)
    pieces: int = _f(6000, "number of fragments the building breaks into at the finest level (walls and "
                          "slabs; grit comes on top)", "", 200, 12000)
    focal_mm: float | None = _f(None, "35 mm-equivalent focal length of the plate's lens", "mm", 8.0, 400.0)
    horizon_y: float | None = _f(None, "horizon row in the plate, from the top (estimated from a 1.6 m eye height)", "px",
                                  -HORIZON_LIMIT_PX, HORIZON_LIMIT_PX)
    sun_azimuth: float | None = _f(None, "sun azimuth, 0 = behind the camera, 90 = from the right", "deg", -180.0, 180.0)
    sun_elevation: float | None = _f(None, "sun elevation above the horizon", "deg", 5.0, 89.0)
    dust: float = _f(1.0, "amount of dust relative to a concrete building's (0 = no dust)", "", 0.0, 5.0)
    wind: list[float] | None = _f(None, "wind as SPEED,HEADING: m/s, and degrees (0 = toward the camera, 90 = to the right)", "m/s,deg",
                                 items=((0.0, 40.0, "m/s"), (-360.0, 360.0, "deg")))
    dust_color: list[int] | None = _f(None, "dust colour as sRGB R,G,B, 0-255 each", "sRGB",
                                      items=((0, 255, ""),) * 3)
    see_through: float = _f(0.8, "the most dust, as optical depth, left between the lens and the building: once "
                                 "the cloud grows thicker than that it is thinned, and gathered into clumps round "
                                 "clear windows, so a camera close to the collapse still sees it (0.8: nearly half the "
                                 "building shows through; 1.5: a fifth; 3: 5 %; "
                                 "0 = the physical cloud, however thick)", "", 0.0, 100.0)
    shake: float = _f(1.0, "camera shake on big impacts (0 = none)", "", 0.0, 10.0)
    grain: float = _f(1.0, "film grain relative to the plate's own (0 = none)", "", 0.0, 10.0)
    shutter: float = _f(180.0, "shutter angle: each frame is exposed for this share of the frame time, so "
                               "whatever moves blurs over that time (180 = half a frame, film's usual; 0 = none)",
                        "deg", 0.0, 360.0)
    seed: int = _f(1, "random seed: same spec and seed give the same frames", "", 0, 2**31 - 1)
    fps: int | None = _f(None, "frame rate", "fps", 1, 120)
    duration: float | None = _f(None, "shot length", "s", 0.1, 120.0)
    frames: str | None = _f(None, "the shot's frame range FIRST-LAST, e.g. 1001-1144: names the frames and sets the "
                                  "length at --fps (instead of --duration)", "", max_len=20)
    size: str | None = _f(None, "output size WxH or W in pixels (the plate's aspect is kept)", "px", max_len=20)
    preview: bool = _f(False, f"fast low-resolution look, {PREVIEW_WIDTH} px wide")
    passes: bool = _f(False, "also write the debris and dust layers and the dust matte per frame (16-bit PNG in passes/)")
    exr: bool = _f(False, "also write one multi-layer EXR a frame in exr/: ACEScg beauty, debris, dust, mattes, Z, "
                          "motion vectors")
    usd: bool = _f(False, "also write the scene as USD (NAME_v001.usdc): camera and every piece's motion")
    vdb: bool = _f(False, "also write the dust volume per frame as OpenVDB in vdb/ (density, temperature, velocity); "
                          "the USD references it")
    prores: bool = _f(False, "also write a ProRes 422 HQ .mov review movie")
    burn_in: bool = _f(False, "burn shot name, version and frame number into the review movies (never the frames)")
    version: int = _f(1, "version of the shot: files are NAME_v003.####.png, NAME_v003.mp4 ..., beside earlier "
                            "versions, never over them", "", 1, 999)
    refine: dict | None = _f(None, "a [refine] table: run the generative pass after the render (model, strength, "
                                   "seed, device, prompt, steps, guidance, size, window, overlap)", cli=False)

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> "ShotSpec":
        """Every field against its type, range and length (check_field, the one place the
        CLI, a TOML or JSON spec and the web page all go through), then the rules that
        tie fields together."""
        for f in fields(self):
            setattr(self, f.name, check_field(f.name, getattr(self, f.name)))
        if not self.plate:
            raise DerrumbeError("no plate given")
        if not _NAME.match(self.name):
            raise DerrumbeError(f"--name {self.name!r} must be letters, digits, _ . or - (it names files), "
                                f"starting with a letter or digit", field="name")
        if (self.box is None) == (self.mask is None):
            raise DerrumbeError("give exactly one of --box X0,Y0,X1,Y1 or --mask MASK.png", field="box")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x1 <= x0 or y1 <= y0:
                raise DerrumbeError(f"--box {x0},{y0},{x1},{y1} has zero area (need X1 > X0 and Y1 > Y0)", field="box")
        if self.frames is not None:
            parse_frames(self.frames)
        if self.duration is not None and self.start >= self.duration:
            raise DerrumbeError(f"--start {self.start} s is not before the end of the shot ({self.duration} s)",
                                field="start")
        if self.size is not None:
            parse_size(self.size)
        if self.plate_colorspace is not None:
            from derrumbe import colour
            if self.plate_colorspace not in colour.colour_spaces():
                raise DerrumbeError(f"--plate-colorspace {_short(self.plate_colorspace)} is not a colour space of "
                                    f"OCIO's {colour.config_name()} (e.g. {colour.SRGB!r}, {colour.WORKING!r})")
        if self.refine is not None:
            self.refine_settings()
        return self

    def refine_settings(self):
        """The [refine] table as RefineSettings, checked (no torch needed for that)."""
        from derrumbe.refine import RefineSettings
        if not isinstance(self.refine, dict):
            raise DerrumbeError("refine must be a table: [refine] model = \"...\" ...")
        known = {f.name for f in fields(RefineSettings)}
        unknown = sorted(set(map(str, self.refine)) - known)
        if unknown:
            raise DerrumbeError(f"unknown field(s) in [refine]: {_short(', '.join(unknown), 200)} "
                                f"(known: {', '.join(sorted(known))})")
        if "model" not in self.refine:
            raise DerrumbeError("[refine] needs model = \"path/to/weights\"")
        return RefineSettings.from_dict(self.refine)

    @property
    def first_frame(self) -> int:
        """The number of the shot's first frame: the --frames range's, else 1001."""
        return parse_frames(self.frames)[0] if self.frames else FIRST_FRAME

    @property
    def stem(self) -> str:
        """What every file of this version is named after: NAME_v003."""
        return f"{self.name}_v{self.version:03d}"

    # ---- round trips ----------------------------------------------------------------
    def to_dict(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """The fields that are set; with relative_to, file paths relative to that folder
        (what a manifest stores: no absolute server paths, and `--spec manifest.json`
        still finds the plate, as from_dict resolves them against the spec's folder)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if relative_to is not None:
            base = os.path.abspath(relative_to)
            for k in ("plate", "mask", "holdout"):
                if d.get(k) and os.path.isabs(d[k]):
                    d[k] = os.path.relpath(d[k], base)
            if isinstance(d.get("refine"), dict) and os.path.isabs(str(d["refine"].get("model", ""))):
                d["refine"]["model"] = os.path.relpath(d["refine"]["model"], base)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: Path | None = None) -> "ShotSpec":
        if not isinstance(d, dict):
            raise DerrumbeError(f"a spec must be a table of fields, not {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise DerrumbeError(f"unknown field(s) in spec: {_short(', '.join(map(str, unknown)), 200)}")
        spec = cls(**{k: check_field(k, v) for k, v in d.items()})
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
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_SPEC_BYTES + 1)
            if len(raw) > MAX_SPEC_BYTES:
                raise DerrumbeError(f"spec {path.name} is over {MAX_SPEC_BYTES // 1000} kB; a spec is a few lines")
            text = raw.decode("utf-8")
            d = json.loads(text) if kind == "JSON" else tomllib.loads(text)
        except OSError as e:
            raise DerrumbeError(f"cannot read spec {path.name}: {e.strerror or e}") from None
        except ValueError as e:           # also UnicodeDecodeError and TOMLDecodeError
            raise DerrumbeError(f"spec {path.name} is not valid {kind}: {str(e).splitlines()[0][:200]}") from None
        if kind == "JSON" and isinstance(d, dict) and isinstance(d.get("spec"), dict):
            d = d["spec"]
        return cls.from_dict(d, path.parent.resolve())


def check_field(name: str, v: Any) -> Any:
    """A value read from the CLI, TOML, JSON or the web page brought to its field's type
    and checked against its range, choices and length; a DerrumbeError of one line
    otherwise. pydantic does the coercion ("12" -> 12, "yes" -> True, 1e400 and inf are
    refused as not finite); the ranges and caps come from the field table."""
    if v is None:
        return None
    f = _FIELDS.get(name)
    if f is None:
        raise DerrumbeError(f"unknown field {_short(name)}")
    m = f.metadata
    parts = _split(v)
    if m["items"] and isinstance(parts, (list, tuple)) and len(parts) != len(m["items"]):
        raise DerrumbeError(f"--{_flag(name)} needs {len(m['items'])} numbers separated by commas "
                            f"({ITEM_NAMES.get(name, 'A,B')}), not {_short(v)}", field=name)
    try:
        v = _adapter(name).validate_python(v)
    except ValidationError as e:
        raise DerrumbeError(_message(name, m, e), field=name) from None
    if m["choices"] and v not in m["choices"]:
        raise DerrumbeError(f"--{_flag(name)} must be one of {', '.join(m['choices'])}, not {_short(v)}", field=name)
    return v


def _coerce(f: dataclasses.Field, v: Any) -> Any:
    return check_field(f.name, v)


def _short(v: Any, n: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + "...'"


def _text(v):
    # Numbers are fine where text is asked for (a size of 640); nothing else is.
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _no_control(s: str) -> str:
    if any(ord(c) < 32 for c in s):
        raise ValueError("control characters are not allowed")
    return s


def _split(v):
    return [p for p in v.replace(" ", "").split(",") if p != ""] if isinstance(v, str) else v


def _number(lo, hi, integer):
    t = Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]
    return Annotated[t, AfterValidator(lambda x: int(round(x)))] if integer else t


@functools.cache
def _adapter(name: str) -> TypeAdapter:
    f = _FIELDS[name]
    m = f.metadata
    hint = typing.get_type_hints(ShotSpec)[name]
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if m["items"]:
        integer = typing.get_args(base) == (int,)
        items = tuple(_number(lo, hi, integer) for lo, hi, _ in m["items"])
        t = Annotated[tuple[items], BeforeValidator(_split), AfterValidator(list)]
    elif base is bool:
        t = bool
    elif base is int:
        t = Annotated[int, Field(ge=m["lo"], le=m["hi"])]
    elif base is float:
        t = Annotated[float, Field(ge=m["lo"], le=m["hi"], allow_inf_nan=False)]
    elif base is str:
        t = Annotated[str, BeforeValidator(_text), Field(max_length=m["max_len"] or MAX_TOKEN),
                      AfterValidator(_no_control)]
    elif name == "refine":
        t = dict
    else:
        raise TypeError(f"spec field {name} has no validator")      # a field added without one
    return TypeAdapter(t)


def _message(name: str, m: dict, e: ValidationError) -> str:
    err = e.errors()[0]
    flag = f"--{_flag(name)}"
    got = err.get("input")
    if m["items"]:
        n = len(m["items"])
        if err["type"] in ("missing", "too_short", "too_long", "tuple_type") or not err["loc"]:
            return f"{flag} needs {n} numbers separated by commas, not {_short(got)}"
        i = err["loc"][0]
        lo, hi, unit = m["items"][i] if isinstance(i, int) and i < n else (None, None, "")
        return f"{flag}: item {int(i) + 1 if isinstance(i, int) else '?'} must be a finite number between " \
               f"{lo} and {hi}{' ' + unit if unit else ''}, not {_short(got)}"
    if err["type"] in ("greater_than_equal", "less_than_equal"):
        unit = f" {m['unit']}" if m["unit"] else ""
        return f"{flag} must be between {m['lo']} and {m['hi']}{unit}, not {_short(got)}"
    if err["type"] in ("string_too_long", "too_long") and isinstance(got, str):
        return f"{flag} is {len(got)} characters long; at most {m['max_len'] or MAX_TOKEN}"
    return f"{flag}: {_short(got)} is not a valid value ({err['msg'].removeprefix('Value error, ')})"


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
        raise DerrumbeError(f"--size must be WxH or W in pixels, not {text!r}", field="size") from None
    if not 16 <= w <= 8192 or (h is not None and not 16 <= h <= 8192):
        raise DerrumbeError(f"--size {text} is outside 16..8192 pixels", field="size")
    return w, h


_FRAMES = re.compile(r"^\s*(\d{1,7})\s*-\s*(\d{1,7})\s*$")


def parse_frames(text: str) -> tuple[int, int]:
    """A frame range FIRST-LAST (inclusive, as Nuke and Houdini write it) as two numbers."""
    m = _FRAMES.match(str(text))
    if not m:
        raise DerrumbeError(f"--frames must be a range FIRST-LAST such as 1001-1144, not {_short(text)}",
                            field="frames")
    first, last = int(m.group(1)), int(m.group(2))
    if last < first:
        raise DerrumbeError(f"--frames {first}-{last} ends before it starts", field="frames")
    if last - first + 1 > MAX_FRAMES:
        raise DerrumbeError(f"--frames {first}-{last} is {last - first + 1} frames; at most {MAX_FRAMES}",
                            field="frames")
    return first, last


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
    if spec.frames is not None:
        first, last = parse_frames(spec.frames)
        n = last - first + 1
        if duration is not None and int(round(duration * fps)) != n:
            raise DerrumbeError(f"--frames {first}-{last} is {n} frames ({n / fps:g} s at {fps} fps) but --duration "
                                f"says {duration:g} s; give one of them", field="frames")
        if n / fps > 120.0:
            raise DerrumbeError(f"--frames {first}-{last} is {n / fps:g} s at {fps} fps; a shot is at most 120 s",
                                field="frames")
        if moving and n > plate_frames:
            raise DerrumbeError(f"--frames {first}-{last} is {n} frames, longer than the plate ({plate_frames} "
                                f"frames)", field="frames")
        duration = n / fps
    if duration is None:
        duration = plate_frames / fps if moving else DEFAULT_DURATION
    elif moving and int(round(duration * fps)) > plate_frames:
        raise DerrumbeError(f"--duration {duration} s is longer than the plate ({plate_frames} frames, "
                            f"{plate_frames / fps:.2f} s at {fps} fps)", field="duration")
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
    if w / aspect < 16:
        raise DerrumbeError(f"a {w} px wide frame of the {plate_w}x{plate_h} plate would be "
                            f"{w / aspect:.1f} px tall; give a larger --size or crop the plate")
    h = max(16, int(round(w / aspect / 2)) * 2)
    return w, h


_FIELDS = {f.name: f for f in fields(ShotSpec)}


def cli_fields():
    return [f for f in fields(ShotSpec) if f.metadata["cli"]]
