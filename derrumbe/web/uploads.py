"""Checking an uploaded plate before anything decodes it, and a painted mask before it is stored.

The server runs on an artist's own machine, but a page can be driven by anything that
reaches the port, and image decoders are where file bugs live. So an upload is stored
under a name the server makes, its type is read from its first bytes (never from the
client's file name or content type), and its size and pixel count are read from its
header before any pixel is decoded. A video's length is not taken from its header (a
file can leave it out or lie): the plate stage decodes and counts its frames, and
stops at the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.stages.plate import MAX_PIXELS, MAX_SECONDS, check_plate_size, image_size

MAX_BYTES = 1 << 30             # 1 GiB (a ProRes plate of a few seconds)
MAX_MASK_BYTES = 8_000_000      # a painted mask: a flat 8-bit PNG, small even at 8K
__all__ = ["MAX_BYTES", "MAX_MASK_BYTES", "MAX_PIXELS", "MAX_SECONDS", "check", "read_mask_png", "sniff"]

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
    width: int           # from the header (EXIF orientation applied)
    height: int


def sniff(head: bytes) -> tuple[str, str]:
    """(kind, extension) from the first bytes, or a one-line error."""
    for magic, off, kind, ext in _MAGIC:
        if head[off:off + len(magic)] == magic:
            if ext is None:
                brand = head[8:12]
                ext = ".mov" if brand == b"qt  " else ".mp4"
            return kind, ext
    raise DerrumbeError("not a plate: the file is not a JPEG, PNG, TIFF, EXR, MP4, MOV or MKV (by its content)")


def _video_size(path: Path) -> tuple[int, int]:
    """Width and height from the container's header: no frame decoded."""
    import av
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise DerrumbeError("the video has no video stream")
            cc = c.streams.video[0].codec_context
            return int(cc.width), int(cc.height)
    except DerrumbeError:
        raise
    except Exception as e:
        raise DerrumbeError(f"the video's header cannot be read: {str(e).splitlines()[0][:120] if str(e) else e}") \
            from None


def check(path: Path, max_pixels: int = MAX_PIXELS) -> PlateInfo:
    """The upload's kind and size from its header, refused when over the caps."""
    with open(path, "rb") as f:
        head = f.read(32)
    kind, ext = sniff(head)
    if kind == "video":
        w, h = _video_size(path)
    else:
        try:
            w, h = image_size(path)
        except DerrumbeError as e:
            raise DerrumbeError(f"the image's header cannot be read: {str(e).split(': ', 1)[-1]}") from None
    if w * h > max_pixels:
        raise DerrumbeError(f"the plate is {w}x{h} ({w * h / 1e6:.0f} Mpx); at most {max_pixels / 1e6:.0f} Mpx")
    check_plate_size(w, h, "the plate")
    return PlateInfo(kind, ext, int(w), int(h))


def read_mask_png(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """A mask painted on the page: a PNG of the plate's size, decoded (after its header
    is checked) to one 8-bit channel, so what is stored is a mask, whatever was sent."""
    import cv2
    if len(data) > MAX_MASK_BYTES:
        raise DerrumbeError(f"a mask is at most {MAX_MASK_BYTES / 1e6:.0f} MB")
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33:
        raise DerrumbeError("a mask must be a PNG")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if (w, h) != tuple(size):
        raise DerrumbeError(f"the mask is {w}x{h}, the plate {size[0]}x{size[1]}")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None or (img.shape[1], img.shape[0]) != tuple(size):
        raise DerrumbeError("the mask is not a readable PNG")
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else None
        if img is None:
            raise DerrumbeError("the mask must be 8- or 16-bit")
    if img.ndim == 3:
        img = img[..., 3] if img.shape[2] == 4 and img[..., 3].min() < 255 else img[..., :3].max(axis=2)
    return np.ascontiguousarray(img)
