"""Checking an uploaded plate before anything decodes it.

The server runs on an artist's own machine, but a page can be driven by anything that
reaches the port, and image decoders are where file bugs live. So an upload is stored
under a name the server makes, its type is read from its first bytes (never from the
client's file name or content type), and its size, pixel count and duration are read
from its header before any pixel is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from derrumbe.errors import DerrumbeError

MAX_BYTES = 1 << 30             # 1 GiB (a ProRes plate of a few seconds)
MAX_PIXELS = 40_000_000         # 8K: 7680 x 4320 = 33 Mpx
MAX_SECONDS = 120.0

# (magic, offset, kind, extension)
_MAGIC = [
    (b"\xff\xd8\xff", 0, "image", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image", ".png"),
    (b"II*\x00", 0, "image", ".tif"),
    (b"MM\x00*", 0, "image", ".tif"),
    (b"v/1\x01", 0, "exr", ".exr"),
    (b"ftyp", 4, "video", None),            # MP4 / MOV (brand decides the extension)
    (b"\x1a\x45\xdf\xa3", 0, "video", ".mkv"),
]


@dataclass
class PlateInfo:
    kind: str            # image | exr | video
    ext: str
    width: int
    height: int
    frames: int
    fps: float | None
    seconds: float | None


def sniff(head: bytes) -> tuple[str, str]:
    """(kind, extension) from the first bytes, or a one-line error."""
    for magic, off, kind, ext in _MAGIC:
        if head[off:off + len(magic)] == magic:
            if ext is None:
                brand = head[8:12]
                ext = ".mov" if brand == b"qt  " else ".mp4"
            return kind, ext
    raise DerrumbeError("not a plate: the file is not a JPEG, PNG, TIFF, EXR, MP4, MOV or MKV (by its content)")


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height from the header (PIL reads it lazily, decoding no pixels)."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None       # the cap is ours, below, with a clear message
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:
        raise DerrumbeError(f"the image's header cannot be read: {str(e)[:120]}") from None


def _exr_size(path: Path) -> tuple[int, int]:
    import OpenEXR
    try:
        with OpenEXR.File(str(path), header_only=True) as f:
            lo, hi = f.header()["dataWindow"]
    except Exception as e:
        raise DerrumbeError(f"the EXR's header cannot be read: {str(e)[:120]}") from None
    return int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)


def _video_info(path: Path) -> tuple[int, int, int, float, float]:
    """Size, frame count, rate and length from the container's header: no frame decoded."""
    import av
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise DerrumbeError("the video has no video stream")
            s = c.streams.video[0]
            fps = float(s.average_rate) if s.average_rate else 24.0
            secs = float(s.duration * s.time_base) if s.duration else (c.duration or 0) / 1e6
            frames = s.frames or int(round(secs * fps))
            return s.codec_context.width, s.codec_context.height, frames, fps, secs
    except DerrumbeError:
        raise
    except Exception as e:
        raise DerrumbeError(f"the video's header cannot be read: {str(e).splitlines()[0][:120]}") from None


def check(path: Path, max_pixels: int = MAX_PIXELS, max_seconds: float = MAX_SECONDS) -> PlateInfo:
    with open(path, "rb") as f:
        head = f.read(32)
    kind, ext = sniff(head)
    frames, fps, secs = 1, None, None
    if kind == "image":
        w, h = _image_size(path)
    elif kind == "exr":
        w, h = _exr_size(path)
    else:
        w, h, frames, fps, secs = _video_info(path)
        if secs and secs > max_seconds:
            raise DerrumbeError(f"the video is {secs:.0f} s long; plates up to {max_seconds:.0f} s are taken")
    if w * h > max_pixels:
        raise DerrumbeError(f"the plate is {w}x{h} ({w * h / 1e6:.0f} Mpx); at most {max_pixels / 1e6:.0f} Mpx")
    if min(w, h) < 32:
        raise DerrumbeError(f"the plate is only {w}x{h} pixels; need at least 32x32")
    return PlateInfo(kind, ext, int(w), int(h), int(frames), fps, secs)


def png_size(data: bytes) -> tuple[int, int]:
    """A painted mask's size from its PNG header (the page sends PNGs)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        raise DerrumbeError("a mask must be a PNG")
    return struct.unpack(">II", data[16:24])
