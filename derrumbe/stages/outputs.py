"""Outputs stage: PNG frames, the review movie and the manifest, all written atomically.

Each file is written to a temporary name in the same folder and renamed into place, so
a killed run never leaves a truncated file under a final name. The manifest is written
last: a folder without manifest.json is an unfinished render, whatever else it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from derrumbe.colour import linear_to_srgb
from derrumbe.errors import DerrumbeError

FIRST_FRAME = 1001


def prepare_dir(out: Path, clear_manifest: bool = True) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".derrumbe-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DerrumbeError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    # A previous manifest would make a half-finished re-render look complete.
    if clear_manifest:
        (out / "manifest.json").unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def frame_path(out: Path, name: str, index: int) -> Path:
    return out / f"{name}.{FIRST_FRAME + index:04d}.png"


def write_frame(out: Path, name: str, index: int, rgb_u8: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", rgb_u8[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise DerrumbeError("PNG encoding failed")
    p = frame_path(out, name, index)
    atomic_write_bytes(p, buf.tobytes())
    return p


def _png16(img01: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.clip(np.rint(img01 * 65535), 0, 65535).astype(np.uint16),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DerrumbeError("PNG encoding failed")
    return buf.tobytes()


def pass_paths(out: Path, name: str, index: int) -> list[Path]:
    n = FIRST_FRAME + index
    return [out / "passes" / f"{name}.{layer}.{n:04d}.png" for layer in ("debris", "dust", "dust_matte")]


def write_passes(out: Path, name: str, index: int, debris: np.ndarray, dust: np.ndarray) -> list[Path]:
    """The debris and dust layers as seen in the frame, for a compositor: 16-bit PNG,
    sRGB-encoded colour with straight (unpremultiplied) alpha, as PNG expects, and the
    dust's alpha alone as a matte. (Scene-linear EXR passes come with --exr.)"""
    d = out / "passes"
    d.mkdir(exist_ok=True)
    n = FIRST_FRAME + index
    paths = []
    for layer, rgba in (("debris", debris), ("dust", dust)):
        a = rgba[..., 3:4]
        rgb = np.where(a > 1e-6, rgba[..., :3] / np.maximum(a, 1e-6), 0.0)
        img = np.concatenate([linear_to_srgb(rgb), np.clip(a, 0, 1)], -1)[..., [2, 1, 0, 3]]
        p = d / f"{name}.{layer}.{n:04d}.png"
        atomic_write_bytes(p, _png16(img))
        paths.append(p)
    p = d / f"{name}.dust_matte.{n:04d}.png"
    atomic_write_bytes(p, _png16(np.clip(dust[..., 3], 0, 1)))
    paths.append(p)
    return paths


class MovieWriter:
    """H.264 review movie through PyAV (libx264, yuv420p, every player opens it)."""

    def __init__(self, path: Path, fps: int, size: tuple[int, int]):
        import av
        self.path = path
        self.tmp = path.with_name("." + path.name + ".tmp.mp4")
        self.container = av.open(str(self.tmp), mode="w")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "16", "preset": "veryfast", "threads": "2"}
        self._av = av

    def add(self, rgb_u8: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb_u8), format="rgb24")
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)

    def close(self) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(out: Path, manifest: dict) -> Path:
    p = out / "manifest.json"
    atomic_write_bytes(p, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return p


class FrameSink:
    """Writes frames (PNG, passes) and feeds the movie on a background thread, in order,
    while the next frame renders: PNG and H.264 encoding release the GIL, and the
    render has single-threaded stretches for them to fill. At most a few frames wait,
    so memory stays flat; an error in the writer surfaces on the next submit or close."""

    def __init__(self, out: Path, name: str, fps: int, size: tuple[int, int], passes: bool, on_written=None):
        """on_written(index) is called (on the writer thread, in order) once a frame's
        files are in place: the pipeline records the frame as done there."""
        from concurrent.futures import ThreadPoolExecutor
        self.out, self.name, self.passes = out, name, passes
        self.on_written = on_written
        self.movie = MovieWriter(out / f"{name}.mp4", fps, size)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="derrumbe-write")
        self.pending: list = []

    def _write(self, index, img, debris, dust):
        write_frame(self.out, self.name, index, img)
        if self.passes:
            write_passes(self.out, self.name, index, debris, dust)
        if self.on_written:
            self.on_written(index)
        self.movie.add(img)

    def _reuse(self, index):
        p = frame_path(self.out, self.name, index)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DerrumbeError(f"cannot read back {p}")
        self.movie.add(img[..., ::-1])

    def reuse(self, index: int) -> None:
        """A frame finished by an earlier run: read back into the movie, not re-rendered."""
        while len(self.pending) >= 3:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._reuse, index))

    def submit(self, index: int, img: np.ndarray, debris: np.ndarray | None, dust: np.ndarray | None) -> None:
        while len(self.pending) >= 3:
            self.pending.pop(0).result()
        if self.passes and debris is None:
            debris = dust = np.zeros(img.shape[:2] + (4,), np.float32)
        self.pending.append(self.pool.submit(self._write, index, img, debris, dust))

    def close(self) -> None:
        try:
            for f in self.pending:
                f.result()
            self.pending.clear()
            self.movie.close()
        finally:
            self.pool.shutdown(wait=True)

    def abort(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True)
        self.movie.abort()
