"""Plate stage: read a still, a video or an image sequence and bring it to the working space.

A plate is display-referred sRGB (JPEG/PNG/TIFF, H.264/ProRes video) or scene-linear
(EXR, ACEScg unless told otherwise). Every frame is kept two ways: its 8-bit display
values (what untouched pixels of the PNG frames and movies are written from, so they
stay bit-identical) and scene-linear ACEScg (what the comp and the EXRs work in).

A moving plate (video or sequence) is analysed once, through its temporal median: the
median of frames spread over the shot has the passing cars and people taken out, so the
building's matte, the camera, the light and the clean plate come from the static scene;
the comp then runs over each plate frame, so the street keeps moving.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from derrumbe import colour
from derrumbe.errors import DerrumbeError
from derrumbe.files import sha256_file

VIDEO_EXT = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mxf"}
IMAGE_HELP = "JPEG, PNG, TIFF or EXR"
MEDIAN_FRAMES = 31          # frames spread over a moving plate for its temporal median
# Limits on what is decoded, for the CLI and the web page alike (README: "Limits").
MAX_PIXELS = 40_000_000     # a plate or mask: 8K (7680 x 4320 = 33 Mpx) fits
MAX_ASPECT = 8.0            # wider or taller than 8:1 is a panorama: crop it to the building
MIN_SIDE = 32
MAX_SECONDS = 120.0         # a moving plate's length, counted by decoding its frames
MAX_SEQUENCE_FRAMES = 14_400    # 120 s at 120 fps
_SEQ = re.compile(r"#+|%0?(\d*)d")


@dataclass
class Plate:
    """One frame of a plate."""
    srgb: np.ndarray      # H x W x 3 uint8, display-referred
    path: str
    lin_: np.ndarray | None = None   # scene-linear ACEScg when the source was linear (EXR)

    @property
    def size(self) -> tuple[int, int]:
        return self.srgb.shape[1], self.srgb.shape[0]

    def linear(self) -> np.ndarray:
        return self.lin_.copy() if self.lin_ is not None else colour.u8_to_linear(self.srgb)


def _check_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise DerrumbeError(f"{what} {path} does not exist")
    if not p.is_file():
        raise DerrumbeError(f"{what} {path} is not a file")
    return p


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a still as it decodes, EXIF orientation applied, read from its
    header alone (no pixel decoded): what the pixel cap is checked against before any
    decoder allocates."""
    if _is_exr(path):
        import OpenEXR
        try:
            with OpenEXR.File(str(path), header_only=True) as f:
                lo, hi = f.header()["dataWindow"]
        except Exception as e:
            raise DerrumbeError(f"{Path(path).name}: the EXR's header cannot be read: {_first_line(e)}") from None
        return int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None       # the cap is ours, with a clear message
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")         # "corrupt EXIF" and the like: not the user's concern
            w, h = im.size
            # Only EXIF that sits in the header: PIL's getexif() of a PNG decodes the
            # whole image to look for a trailing eXIf chunk.
            if im.format == "PNG":
                exif = Image.Exif()
                if im.info.get("exif"):
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            orientation = exif.get(0x0112, 1)
    except Exception as e:
        raise DerrumbeError(f"{Path(path).name} is not a readable image ({IMAGE_HELP}): {_first_line(e)}") from None
    # EXIF orientations 5-8 turn the picture a quarter: decoders (OpenCV's too) swap the sides.
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def check_pixels(w: int, h: int, what: str) -> None:
    if w * h > MAX_PIXELS:
        raise DerrumbeError(f"{what} is {w}x{h} ({w * h / 1e6:.0f} Mpx); at most {MAX_PIXELS / 1e6:.0f} Mpx")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _read_u8(path: str, what: str, flags: int) -> np.ndarray:
    p = _check_file(path, what)
    check_pixels(*image_size(p), f"{what} {p.name}")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as e:
        raise DerrumbeError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        img = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:
        img = None
    if img is None:
        raise DerrumbeError(f"{what} {path} is not a readable image ({IMAGE_HELP})")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DerrumbeError(f"{what} {path} has an unsupported pixel type {img.dtype}")
    return img


def _is_exr(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x76\x2f\x31\x01"      # OpenEXR's magic number
    except OSError:
        return False


def _read_exr(path: str, what: str, colourspace: str) -> np.ndarray:
    """An EXR's RGB (or its first layer with R, G, B) as ACEScg float32."""
    import OpenEXR
    _check_file(path, what)
    try:
        # The pixels belong to the File: copied out before it closes.
        with OpenEXR.File(str(path), separate_channels=True) as f:
            ch = {k: v.pixels.copy() for k, v in f.channels().items()}
    except Exception as e:
        raise DerrumbeError(f"{what} {path} is not a readable EXR: {e}") from None
    names = [n for n in ("R", "G", "B") if n in ch]
    if len(names) < 3:
        if "Y" in ch:
            y = ch["Y"].astype(np.float32)
            rgb = np.stack([y, y, y], -1)
        else:
            raise DerrumbeError(f"{what} {path} has no R, G, B (or Y) channels; it has {', '.join(sorted(ch))}")
    else:
        rgb = np.stack([ch[n].astype(np.float32) for n in names], -1)
    if not np.isfinite(rgb).all():
        rgb = np.nan_to_num(rgb, nan=0.0, posinf=65504.0, neginf=0.0)
    return colour.convert(rgb, colourspace, colour.WORKING)


def _frame_from_file(path: str, what: str, colourspace: str | None) -> Plate:
    if _is_exr(path):
        check_pixels(*image_size(_check_file(path, what)), f"{what} {Path(path).name}")
        lin = _read_exr(path, what, colourspace or colour.WORKING)
        return Plate(srgb=colour.linear_to_u8(lin), path=str(path), lin_=lin)
    img = _read_u8(path, what, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    srgb = np.ascontiguousarray(img[..., ::-1])
    if colourspace and colourspace != colour.SRGB:
        lin = colour.convert(srgb.astype(np.float32) / 255.0, colourspace, colour.WORKING)
        return Plate(srgb=colour.linear_to_u8(lin), path=str(path), lin_=lin)
    return Plate(srgb=srgb, path=str(path))


def _check_size(w: int, h: int, path) -> None:
    check_plate_size(w, h, f"plate {Path(str(path)).name}")


def check_plate_size(w: int, h: int, what: str = "the plate") -> None:
    """A plate derrumbe can work with: not too small, not too many pixels, and not a
    panorama (the camera model is one pinhole; a 20000x100 strip would be squashed
    into frames a few pixels tall)."""
    check_pixels(w, h, what)
    if min(w, h) < MIN_SIDE:
        raise DerrumbeError(f"{what} is only {w}x{h} pixels; need at least {MIN_SIDE}x{MIN_SIDE}")
    if max(w / h, h / w) > MAX_ASPECT:
        raise DerrumbeError(f"{what} is {w}x{h}, an aspect of {max(w / h, h / w):.0f}:1; derrumbe takes plates up "
                            f"to {MAX_ASPECT:.0f}:1 (crop the panorama to the building)")


class PlateSource:
    """A still, a video file or an image sequence, read frame by frame in order."""

    kind: str                  # "still" | "video" | "sequence"
    path: str
    size: tuple[int, int]
    n_frames: int
    rate: Fraction | None      # the plate's own frame rate (video), else None
    colourspace: str | None

    def frame(self, i: int) -> Plate:
        raise NotImplementedError

    def reference(self) -> Plate:
        """The static scene the analysis stages look at."""
        raise NotImplementedError

    def digest(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def moving(self) -> bool:
        return self.kind != "still"

    def info(self) -> dict:
        d = {"kind": self.kind, "frames": self.n_frames, "size": list(self.size)}
        if self.rate is not None:
            d["fps"] = f"{self.rate.numerator}/{self.rate.denominator}" if self.rate.denominator != 1 \
                else self.rate.numerator
        d["colourspace"] = self.colourspace or ("ACEScg" if self.linear_source else colour.SRGB)
        return d

    linear_source = False

    def _median(self) -> Plate:
        idx = np.unique(np.linspace(0, self.n_frames - 1, min(MEDIAN_FRAMES, self.n_frames)).round().astype(int))
        frames = [self.frame(int(i)) for i in idx]
        if frames[0].lin_ is not None:
            lin = np.median(np.stack([f.lin_ for f in frames]), axis=0).astype(np.float32)
            return Plate(srgb=colour.linear_to_u8(lin), path=self.path, lin_=lin)
        # An odd count: the median is one of the frames' own values, so a pixel that never
        # changes keeps its exact 8-bit value.
        if len(frames) % 2 == 0:
            frames = frames[:-1]
        return Plate(srgb=np.median(np.stack([f.srgb for f in frames]), axis=0).astype(np.uint8), path=self.path)


class StillSource(PlateSource):
    kind = "still"

    def __init__(self, path: str, colourspace: str | None):
        self.path, self.colourspace, self.rate = str(path), colourspace, None
        self.plate = _frame_from_file(path, "plate", colourspace)
        self.linear_source = self.plate.lin_ is not None
        self.size = self.plate.size
        _check_size(*self.size, path)
        self.n_frames = 1

    def frame(self, i: int) -> Plate:
        return self.plate

    def reference(self) -> Plate:
        return self.plate

    def digest(self) -> str:
        return sha256_file(self.path)


class SequenceSource(PlateSource):
    """`plate.####.png` (or %04d): the frames on disk from the first number, no gaps."""
    kind = "sequence"

    def __init__(self, pattern: str, colourspace: str | None):
        self.path, self.colourspace, self.rate = str(pattern), colourspace, None
        p = Path(pattern)
        m = _SEQ.search(p.name)
        width = len(m.group(0)) if m.group(0).startswith("#") else int(m.group(1) or 0)
        rx = re.compile("^" + re.escape(p.name[:m.start()]) + r"(\d+)" + re.escape(p.name[m.end():]) + "$")
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.is_dir():
            raise DerrumbeError(f"plate sequence folder {folder} does not exist")
        found = {}
        for f in folder.iterdir():
            mm = rx.match(f.name)
            if mm and (width == 0 or len(mm.group(1)) >= width):
                found[int(mm.group(1))] = f
        if not found:
            raise DerrumbeError(f"no frames match the plate sequence {pattern}")
        if len(found) > MAX_SEQUENCE_FRAMES:
            raise DerrumbeError(f"plate sequence {pattern} has {len(found)} frames; at most {MAX_SEQUENCE_FRAMES}")
        first = min(found)
        n = 0
        while first + n in found:
            n += 1
        if n != len(found):
            gap = first + n
            raise DerrumbeError(f"plate sequence {pattern} has a gap: frame {gap} is missing "
                                f"({len(found)} frames from {first} to {max(found)})")
        self.first = first
        self.files = [found[first + i] for i in range(n)]
        self.n_frames = n
        f0 = _frame_from_file(str(self.files[0]), "plate frame", colourspace)
        self.linear_source = f0.lin_ is not None
        self.size = f0.size
        _check_size(*self.size, self.files[0])
        self._cache = (0, f0)

    def frame(self, i: int) -> Plate:
        if self._cache[0] == i:
            return self._cache[1]
        f = _frame_from_file(str(self.files[i]), "plate frame", self.colourspace)
        if f.size != self.size:
            raise DerrumbeError(f"plate frame {self.files[i]} is {f.size[0]}x{f.size[1]}, "
                                f"the sequence's first frame is {self.size[0]}x{self.size[1]}")
        self._cache = (i, f)
        return f

    def reference(self) -> Plate:
        return self._median()

    def digest(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()


class VideoSource(PlateSource):
    """A video file, decoded in order with PyAV; a jump back reopens the file."""
    kind = "video"

    def __init__(self, path: str, colourspace: str | None, max_seconds: float = MAX_SECONDS):
        import av
        self._av = av
        self.path, self.colourspace = str(path), colourspace
        _check_file(path, "plate")
        try:
            with av.open(self.path) as c:
                if not c.streams.video:
                    raise DerrumbeError(f"plate {path} has no video stream")
                s = c.streams.video[0]
                self.rate = Fraction(s.average_rate) if s.average_rate else Fraction(24)
                self.size = (s.codec_context.width, s.codec_context.height)
                _check_size(*self.size, path)
                # Count by decoding: container frame counts and durations are often
                # missing or wrong (or lie), so the length cap is checked on real frames.
                self.n_frames = count_frames(c, float(self.rate), self.size, Path(path).name, max_seconds)
        except DerrumbeError:
            raise
        except Exception as e:
            raise DerrumbeError(f"plate {path} is not a readable video: {str(e).splitlines()[0][:160]}") from None
        if self.n_frames == 0:
            raise DerrumbeError(f"plate {path} has no frames")
        _check_size(*self.size, path)
        self._container = None
        self._next = 0
        self._iter = None
        self._last = (-1, None)

    def _open(self):
        self.close()
        self._container = self._av.open(self.path)
        self._iter = self._container.decode(video=0)
        self._next = 0

    def frame(self, i: int) -> Plate:
        if self._last[0] == i:
            return self._last[1]
        if not 0 <= i < self.n_frames:
            raise DerrumbeError(f"plate {self.path} has {self.n_frames} frames; frame {i} asked for")
        if self._iter is None or i < self._next:
            self._open()
        while True:
            vf = next(self._iter)
            k = self._next
            self._next += 1
            if k == i:
                break
        if (vf.width, vf.height) != self.size:
            raise DerrumbeError(f"plate {Path(self.path).name} changes size at frame {i} "
                                f"({vf.width}x{vf.height}, not {self.size[0]}x{self.size[1]})")
        rgb = vf.to_ndarray(format="rgb24", src_colorspace=_sws_matrix(vf))
        srgb = np.ascontiguousarray(rgb)
        if self.colourspace and self.colourspace != colour.SRGB:
            lin = colour.convert(srgb.astype(np.float32) / 255.0, self.colourspace, colour.WORKING)
            p = Plate(srgb=colour.linear_to_u8(lin), path=self.path, lin_=lin)
        else:
            p = Plate(srgb=srgb, path=self.path)
        self._last = (i, p)
        return p

    def reference(self) -> Plate:
        ref = self._median()
        self.close()
        return ref

    def digest(self) -> str:
        return sha256_file(self.path)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._iter, self._next = None, None, 0


def count_frames(container, rate: float, size: tuple[int, int], name: str, max_seconds: float = MAX_SECONDS) -> int:
    """The video's frames, decoded and counted; refused once they pass max_seconds or a
    frame is larger than the header said."""
    cap = int(round(max_seconds * max(rate, 1.0)))
    s = container.streams.video[0]
    s.thread_type = "AUTO"
    n = 0
    for vf in container.decode(s):
        n += 1
        if vf.width * vf.height > size[0] * size[1]:
            raise DerrumbeError(f"video {name} has a frame of {vf.width}x{vf.height}, larger than its header's "
                                f"{size[0]}x{size[1]}")
        if n > cap:
            raise DerrumbeError(f"video {name} is longer than {max_seconds:g} s ({n} frames at {rate:g} fps and "
                                f"more); plates up to {max_seconds:g} s are taken: cut it to the shot")
    return n


def _sws_matrix(vf) -> int:
    """The Y'CbCr matrix of a decoded frame as swscale numbers it: what the file says,
    else BT.709 for HD and up and BT.601 below (what players assume)."""
    cs = int(vf.colorspace or 2)
    if cs == 2:                     # unspecified
        return 1 if vf.height >= 720 else 5
    return {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}.get(cs, 5)


def open_plate(path: str, colourspace: str | None = None, max_seconds: float = MAX_SECONDS) -> PlateSource:
    """A still, a video (by extension) or an image sequence (# or %04d in the name)."""
    if not path:
        raise DerrumbeError("no plate given")
    if colourspace is not None and colourspace not in colour.colour_spaces():
        raise DerrumbeError(f"--plate-colorspace {colourspace!r} is not a colour space of OCIO's "
                            f"{colour.config_name()} (e.g. {colour.SRGB!r}, {colour.WORKING!r}, {colour.LIN_REC709!r})")
    name = Path(path).name
    if _SEQ.search(name):
        return SequenceSource(path, colourspace)
    if Path(path).suffix.lower() in VIDEO_EXT:
        return VideoSource(path, colourspace, max_seconds)
    return StillSource(path, colourspace)


def read_plate(path: str, colourspace: str | None = None) -> Plate:
    """A still plate (or a moving plate's temporal median)."""
    src = open_plate(path, colourspace)
    try:
        return src.reference()
    finally:
        src.close()


def read_mask(path: str, size: tuple[int, int], what: str) -> np.ndarray:
    """A mask as float32 0..1 at the plate's size; white or opaque means inside."""
    img = _read_u8(path, what, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if img.ndim == 3:
        img = img[..., 3] if img.shape[2] == 4 and img[..., 3].min() < 255 else img[..., :3].max(axis=2)
    if (img.shape[1], img.shape[0]) != size:
        raise DerrumbeError(
            f"{what} {path} is {img.shape[1]}x{img.shape[0]} but the plate is {size[0]}x{size[1]}")
    m = img.astype(np.float32) / 255.0
    if m.max() < 0.5:
        raise DerrumbeError(f"{what} {path} is empty (no pixel above 50 % white)")
    return m


def resize_linear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resamples in linear light (area filter when shrinking, so facades don't alias)."""
    if (img.shape[1], img.shape[0]) == size:
        return img.copy()
    shrink = size[0] < img.shape[1]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def line_segments(gray: np.ndarray) -> np.ndarray:
    """Straight line segments (x0, y0, x1, y1, pixels of `gray`) by OpenCV's LSD detector:
    the keystone reads the facade's verticals from them, the furniture cue a board's frame."""
    found = cv2.createLineSegmentDetector().detect(gray)[0]
    return np.zeros((0, 4)) if found is None else found.reshape(-1, 4)
