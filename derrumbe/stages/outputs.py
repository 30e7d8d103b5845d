"""Frame outputs: the PNG frames and passes, and the EXRs, of the frames a process renders.

Each file is written atomically (derrumbe.files), so a killed run never leaves a
truncated file under a final name. The movies (movies.py) are made from these files
once every frame is on disk, and the manifest (manifest.py) is written last: a folder
without manifest.json is an unfinished render, whatever else it holds.

Every file of a render is named after its version's stem, NAME_v003 (NAME_v003.1001.png,
exr/NAME_v003.1001.exr, ...) and numbered from the shot's first frame (--frames), so
versions sit side by side in one folder and a new one never writes over an earlier one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from derrumbe.colour import display_encode
from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes, publish, sha256_bytes, sha256_file, temp_path
from derrumbe.spec import FIRST_FRAME  # noqa: F401  (re-exported: the default first frame)
from derrumbe.stages import exr as E


def prepare_dir(out: Path, clear_manifest: bool = True) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A name of this process's own: two renders started on one folder at once must not
        # remove each other's probe (the second is then told the folder is being rendered).
        probe = temp_path(out / ".derrumbe-write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DerrumbeError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    # A previous manifest would make a half-finished re-render look complete.
    if clear_manifest:
        (out / "manifest.json").unlink(missing_ok=True)


def frame_path(out: Path, stem: str, index: int, first: int = FIRST_FRAME) -> Path:
    return out / f"{stem}.{first + index:04d}.png"


def write_frame(out: Path, stem: str, index: int, rgb_u8: np.ndarray, first: int = FIRST_FRAME) -> tuple[Path, str]:
    ok, buf = cv2.imencode(".png", rgb_u8[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise DerrumbeError("PNG encoding failed")
    p = frame_path(out, stem, index, first)
    data = buf.tobytes()
    atomic_write_bytes(p, data)
    return p, sha256_bytes(data)


def _png16(img01: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.clip(np.rint(img01 * 65535), 0, 65535).astype(np.uint16),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DerrumbeError("PNG encoding failed")
    return buf.tobytes()


def pass_paths(out: Path, stem: str, index: int, first: int = FIRST_FRAME) -> list[Path]:
    n = first + index
    return [out / "passes" / f"{stem}.{layer}.{n:04d}.png" for layer in ("debris", "dust", "dust_matte", "holdout")]


def write_passes(out: Path, stem: str, index: int, debris: np.ndarray, dust: np.ndarray,
                 holdout: np.ndarray | None = None, first: int = FIRST_FRAME) -> dict[Path, str]:
    """The debris and dust layers as seen in the frame, for a compositor: 16-bit PNG,
    sRGB-encoded colour with straight (unpremultiplied) alpha, as PNG expects, the
    dust's alpha alone as a matte, and the frame's holdout matte (the plate's foreground
    objects kept in front). (Scene-linear EXR passes, each holdout on its own, come with --exr.)"""
    d = out / "passes"
    d.mkdir(exist_ok=True)
    n, name = first + index, stem
    files = {}
    for layer, rgba in (("debris", debris), ("dust", dust)):
        a = rgba[..., 3:4]
        rgb = np.where(a > 1e-6, rgba[..., :3] / np.maximum(a, 1e-6), 0.0)
        img = np.concatenate([display_encode(rgb), np.clip(a, 0, 1)], -1)[..., [2, 1, 0, 3]]
        files[d / f"{name}.{layer}.{n:04d}.png"] = _png16(img)
    files[d / f"{name}.dust_matte.{n:04d}.png"] = _png16(np.clip(dust[..., 3], 0, 1))
    hold = np.zeros(dust.shape[:2], np.float32) if holdout is None else holdout
    files[d / f"{name}.holdout.{n:04d}.png"] = _png16(np.clip(hold, 0, 1))
    for p, data in files.items():
        atomic_write_bytes(p, data)
    return {p: sha256_bytes(data) for p, data in files.items()}


class FrameSink:
    """Writes frames (PNG, passes, EXR) on a background thread, in order, while the next
    frame renders: PNG and EXR encoding release the GIL, and the render has single-threaded
    stretches for them to fill. At most a few frames wait, so memory stays flat; an error
    in the writer surfaces on the next submit or close. Every file's sha256 is kept for
    the manifest."""

    def __init__(self, out: Path, stem: str, passes: bool, on_written=None, exr_meta: dict | None = None,
                 first: int = FIRST_FRAME):
        """stem: what the files are named after (NAME_v003); first: the first frame's
        number. on_written(index) is called (on the writer thread, in order) once a
        frame's files are in place: the runner records the frame as done there."""
        from concurrent.futures import ThreadPoolExecutor
        self.out, self.name, self.passes, self.first = out, stem, passes, first
        self.on_written = on_written
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="derrumbe-write")
        self.pending: list = []
        self.digests: dict[str, str] = {}
        self.exr_meta = exr_meta or {}
        self._exr_same: tuple | None = None     # (token, path) of the last EXR, for identical frames

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.out).as_posix()

    def _write(self, index, img, debris, dust, exr, holdout=None):
        p, digest = write_frame(self.out, self.name, index, img, self.first)
        self.digests[self._rel(p)] = digest
        if self.passes:
            for q, d in write_passes(self.out, self.name, index, debris, dust, holdout, self.first).items():
                self.digests[self._rel(q)] = d
        if exr is not None:
            self._write_exr(index, *exr)
        if self.on_written:
            self.on_written(index)

    def _write_exr(self, index, make_channels, same_token):
        path = E.exr_path(self.out, self.name, self.first + index)
        if same_token is not None and self._exr_same and self._exr_same[0] == same_token:
            # A frame identical to the last (the plate before the collapse): a copy,
            # not a second encode.
            import shutil
            tmp = temp_path(path)
            shutil.copyfile(self._exr_same[1], tmp)
            publish(tmp, path)
        else:
            E.write_exr(path, make_channels(), self.exr_meta)
        self.digests[self._rel(path)] = sha256_file(path)
        self._exr_same = (same_token, path) if same_token is not None else None

    def _queue(self, fn, *args):
        while len(self.pending) >= 3:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(fn, *args))

    def submit(self, index: int, img: np.ndarray, debris: np.ndarray | None, dust: np.ndarray | None,
               exr=None, holdout: np.ndarray | None = None) -> None:
        """exr: None, or (a function making the frame's channel dict, a token that is the
        same for frames whose EXR is identical, or None); holdout: the frame's holdout
        matte for the passes."""
        if self.passes and debris is None:
            debris = dust = np.zeros(img.shape[:2] + (4,), np.float32)
        self._queue(self._write, index, img, debris, dust, exr, holdout)

    def close(self) -> None:
        try:
            for f in self.pending:
                f.result()
            self.pending.clear()
        finally:
            self.pool.shutdown(wait=True)

    def abort(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True)
