"""Outputs stage: PNG frames, passes, EXRs, the review movies and the manifest, all written atomically.

Each file is written to a temporary name in the same folder and renamed into place, so
a killed run never leaves a truncated file under a final name. The manifest is written
last: a folder without manifest.json is an unfinished render, whatever else it holds.

Every file of a render is named after its version's stem, NAME_v003 (NAME_v003.1001.png,
NAME_v003.mp4, exr/NAME_v003.1001.exr, ...), so versions sit side by side in one folder
and a new one never writes over an earlier one. Each version keeps its own manifest,
NAME_v003.manifest.json; manifest.json is the last finished render's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path

import cv2
import numpy as np

from derrumbe.colour import display_encode
from derrumbe.errors import DerrumbeError

from derrumbe.spec import FIRST_FRAME  # noqa: F401  (re-exported: the default first frame)


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


_TEMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")


def temp_path(path: Path, suffix: str = "") -> Path:
    """A temporary name beside path: hidden, unique, and recognisable by sweep_temps
    (suffix: an extension a writer needs to pick the format, e.g. '.usdc')."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")


def _fsync_path(p: Path, directory: bool = False) -> None:
    fd = os.open(p, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str | Path, path: Path) -> None:
    """Renames a finished temporary file into place, durably: the file's data reaches
    the disk before the rename, and the rename before this returns (a power cut leaves
    the old file or the new one, never a name pointing at missing data)."""
    _fsync_path(Path(tmp))
    os.replace(tmp, path)
    _fsync_path(path.parent, directory=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    # os.open with 0o666 lets the process umask decide the mode, as a plain write would
    # (mkstemp makes files only their owner can read; a farm or a colleague needs them).
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep_temps(out: Path) -> int:
    """Removes temporary files a killed writer left in a shot folder (call it holding
    the shot lock: a live render's temporaries are not stale). Returns how many."""
    n = 0
    if not out.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(out):
        for name in filenames:
            if _TEMP.match(name):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def frame_path(out: Path, stem: str, index: int, first: int = FIRST_FRAME) -> Path:
    return out / f"{stem}.{first + index:04d}.png"


def version_manifest_path(out: Path, stem: str) -> Path:
    return out / f"{stem}.manifest.json"


def write_frame(out: Path, stem: str, index: int, rgb_u8: np.ndarray, first: int = FIRST_FRAME) -> tuple[Path, str]:
    ok, buf = cv2.imencode(".png", rgb_u8[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise DerrumbeError("PNG encoding failed")
    p = frame_path(out, stem, index, first)
    data = buf.tobytes()
    atomic_write_bytes(p, data)
    return p, hashlib.sha256(data).hexdigest()


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
    n = first + index
    name = stem
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
    return {p: hashlib.sha256(data).hexdigest() for p, data in files.items()}


MOVIE_CODECS = {
    # H.264 for review anywhere; yuv420p so every player opens it.
    "h264": dict(codec="libx264", ext=".mp4", pix_fmt="yuv420p",
                 options={"crf": "16", "preset": "veryfast", "threads": "2"}),
    # ProRes 422 HQ (profile 3), 10-bit 4:2:2: what editorial and a DI take in.
    "prores": dict(codec="prores_ks", ext=".mov", pix_fmt="yuv422p10le",
                   options={"profile": "3", "vendor": "apl0", "threads": "2"}),
}
BT709 = 1       # ITU-R BT.709 in FFmpeg's colour enums and swscale's matrix numbers


def movie_path(out: Path, stem: str, kind: str) -> Path:
    return out / f"{stem}{MOVIE_CODECS[kind]['ext']}"


class BurnIn:
    """Shot name and version top left, frame number bottom right, over a dark band so
    they read on sky and dust alike. Only movies get it: frames stay clean."""

    def __init__(self, shot: str, version: int, size: tuple[int, int], fps: int, first: int = FIRST_FRAME):
        self.shot, self.version, self.fps, self.first = shot, version, fps, first
        w, h = size
        self.scale = max(0.35, w / 1600.0)
        self.thick = max(1, int(round(w / 900.0)))
        self.band = int(round(30 * self.scale + 8))

    def draw(self, rgb_u8: np.ndarray, frame: int) -> np.ndarray:
        img = rgb_u8.copy()
        h, w = img.shape[:2]
        b = min(self.band, h // 4)
        for y0, y1 in ((0, b), (h - b, h)):
            img[y0:y1] = (img[y0:y1].astype(np.uint16) * 2 // 5).astype(np.uint8)
        font = cv2.FONT_HERSHEY_SIMPLEX
        pad = int(10 * self.scale) + 4
        left = f"{self.shot}  v{self.version:03d}"
        secs = (frame - self.first) / self.fps
        right = f"{frame:04d}  {secs:5.2f}s"
        base = b - (b - int(22 * self.scale)) // 2 - 2
        cv2.putText(img, left, (pad, base), font, self.scale, (235, 235, 235), self.thick, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(right, font, self.scale, self.thick)
        cv2.putText(img, right, (w - tw - pad, h - b + base), font, self.scale, (235, 235, 235), self.thick,
                    cv2.LINE_AA)
        return img


class MovieWriter:
    """A review movie through PyAV, tagged BT.709 and converted with BT.709's matrix
    (swscale would otherwise use BT.601 and the movie would play back greener)."""

    def __init__(self, path: Path, fps, size: tuple[int, int], kind: str = "h264", burn_in: BurnIn | None = None,
                 first: int = FIRST_FRAME):
        import av
        c = MOVIE_CODECS[kind]
        self.path, self.burn_in = path, burn_in
        self.tmp = temp_path(path, c["ext"])
        self.container = av.open(str(self.tmp), mode="w")
        self.stream = self.container.add_stream(c["codec"], rate=fps)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = c["pix_fmt"]
        self.stream.options = dict(c["options"])
        cc = self.stream.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc = BT709, BT709, BT709
        cc.color_range = 1          # video (limited) range, what players assume
        self.pix_fmt = c["pix_fmt"]
        self._av = av
        self.frame_no = first

    def add(self, rgb_u8: np.ndarray, frame: int | None = None) -> None:
        frame = self.frame_no if frame is None else frame
        self.frame_no = frame + 1
        if self.burn_in is not None:
            rgb_u8 = self.burn_in.draw(rgb_u8, frame)
        vf = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb_u8), format="rgb24")
        vf = vf.reformat(format=self.pix_fmt, dst_colorspace=BT709)
        vf.colorspace, vf.color_range = BT709, 1
        for pkt in self.stream.encode(vf):
            self.container.mux(pkt)

    def close(self) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        publish(self.tmp, self.path)

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


def write_manifest(out: Path, manifest: dict, stem: str | None = None) -> Path:
    """The version's own manifest (NAME_v003.manifest.json) first, then manifest.json, the
    folder's last finished render: each complete before it appears."""
    data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
    if stem:
        atomic_write_bytes(version_manifest_path(out, stem), data)
    p = out / "manifest.json"
    atomic_write_bytes(p, data)
    return p


class FrameSink:
    """Writes frames (PNG, passes, EXR) and feeds the movies on a background thread, in
    order, while the next frame renders: PNG, EXR and video encoding release the GIL,
    and the render has single-threaded stretches for them to fill. At most a few frames
    wait, so memory stays flat; an error in the writer surfaces on the next submit or
    close. Every file's sha256 is kept for the manifest."""

    def __init__(self, out: Path, stem: str, fps, size: tuple[int, int], passes: bool, on_written=None,
                 movies=("h264",), burn_in: BurnIn | None = None, exr_meta: dict | None = None,
                 first: int = FIRST_FRAME):
        """stem: what the files are named after (NAME_v003); first: the first frame's
        number. on_written(index) is called (on the writer thread, in order) once a
        frame's files are in place: the pipeline records the frame as done there."""
        from concurrent.futures import ThreadPoolExecutor
        self.out, self.name, self.passes, self.first = out, stem, passes, first
        self.on_written = on_written
        self.movies = [MovieWriter(movie_path(out, stem, k), fps, size, k, burn_in, first) for k in movies]
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
        for m in self.movies:
            m.add(img, self.first + index)

    def _write_exr(self, index, make_channels, same_token):
        from derrumbe.stages import exr as E
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
        self.digests[self._rel(path)] = sha256(path)
        self._exr_same = (same_token, path) if same_token is not None else None

    def _reuse(self, index, extra):
        p = frame_path(self.out, self.name, index, self.first)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DerrumbeError(f"cannot read back {p}")
        for q in [p] + list(extra):
            self.digests[self._rel(q)] = sha256(q)
        for m in self.movies:
            m.add(img[..., ::-1], self.first + index)

    def _queue(self, fn, *args):
        while len(self.pending) >= 3:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(fn, *args))

    def reuse(self, index: int, extra=()) -> None:
        """A frame finished by an earlier run: read back into the movies, not re-rendered.
        extra: its other files (passes, EXR), hashed for the manifest."""
        self._queue(self._reuse, index, extra)

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
            for m in self.movies:
                m.close()
                self.digests[self._rel(m.path)] = sha256(m.path)
        finally:
            self.pool.shutdown(wait=True)

    def abort(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True)
        for m in self.movies:
            m.abort()
