"""Review movies: H.264 (and ProRes 422 HQ) from the finished frames, with an optional burn-in.

The encode is its own stage, after every frame is on disk: frames may come from many
processes or machines (a Dask cluster, a farm's chunks), and the movie is made from the
PNGs they left, so it is the same whoever rendered them. Written under a temporary name
and renamed when complete.

The encode runs in a fresh Python process. libx264 in PyAV's build gave different bytes
for the same YUV input now and then (about 2 in 100 encodes inside a process that had
done other work, 0 in 44 in fresh processes; measured 2026-12-01): the output depends on
the process's heap, and a Dask worker's heap after rendering is never the same twice
(tests/test_cluster.py's cluster movie against the local runner's, every frame equal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.files import publish, temp_path
from derrumbe.spec import FIRST_FRAME

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
        from av.video.reformatter import Interpolation
        self._exact = Interpolation.BILINEAR | Interpolation.BITEXACT
        self.frame_no = first

    def add(self, rgb_u8: np.ndarray, frame: int | None = None) -> None:
        frame = self.frame_no if frame is None else frame
        self.frame_no = frame + 1
        if self.burn_in is not None:
            rgb_u8 = self.burn_in.draw(rgb_u8, frame)
        vf = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb_u8), format="rgb24")
        # One thread and bit-exact: swscale's slice threads (PyAV's default) made the same
        # PNGs encode to different bytes now and then (a cluster's movie against the local
        # runner's, frames identical; tests/test_cluster.py).
        vf = vf.reformat(format=self.pix_fmt, dst_colorspace=BT709, threads=1, interpolation=self._exact)
        vf.colorspace, vf.color_range = BT709, 1
        for pkt in self.stream.encode(vf):
            self.container.mux(pkt)

    def close(self) -> None:
        self.finish()
        publish(self.tmp, self.path)

    def finish(self) -> Path:
        """Flushes and closes the movie, left under its temporary name (returned)."""
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        return self.tmp

    def abort(self) -> None:
        """Drops the movie. It runs while another error is on its way up: a container that
        cannot close (finished already, or broken by that error) must not replace it, and
        the temporary file goes either way."""
        try:
            self.container.close()
        except Exception:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


def encode_movies(out: Path, stem: str, frames: list[Path], fps, size: tuple[int, int], kinds=("h264",),
                  burn_in: BurnIn | None = None, progress=None, first: int = FIRST_FRAME) -> list[Path]:
    """Every movie of kinds from the frame PNGs (numbered from first), in order, encoded in
    a fresh process (see the module's note); returns their paths."""
    job = dict(out=str(out), stem=stem, frames=[str(p) for p in frames], fps=str(Fraction(fps).limit_denominator(1001000)),
               size=list(size), kinds=list(kinds), first=first,
               burn_in=None if burn_in is None else [burn_in.shot, burn_in.version, burn_in.fps, burn_in.first])
    # (this copy of derrumbe first on the path, installed or not, wherever the caller runs)
    here = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    r = subprocess.run([sys.executable, "-m", "derrumbe.stages.movies"], input=json.dumps(job), capture_output=True,
                       text=True, env=env)
    if r.returncode:
        lines = r.stderr.strip().splitlines() or ["(no message)"]
        if r.returncode == 2:
            raise DerrumbeError(lines[-1].removeprefix("derrumbe: error: "))
        raise RuntimeError(f"the movie encoder's process failed (exit {r.returncode}): " + "\n".join(lines[-15:]))
    made = []
    for tmp, path in json.loads(r.stdout):
        publish(tmp, Path(path))
        made.append(Path(path))
    if progress is not None:
        progress(len(frames), len(frames))
    return made


def _encode_here(out: Path, stem: str, frames: list[Path], fps, size: tuple[int, int], kinds=("h264",),
                 burn_in: BurnIn | None = None, first: int = FIRST_FRAME) -> list[tuple[Path, Path]]:
    """The movies, finished under temporary names: [(temporary, final path)] (the caller
    publishes them)."""
    writers = [MovieWriter(movie_path(out, stem, k), fps, size, k, burn_in, first) for k in kinds]
    try:
        for i, p in enumerate(frames):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise DerrumbeError(f"cannot read back {p.name}; render its frames again")
            rgb = np.ascontiguousarray(img[..., ::-1])
            for w in writers:
                w.add(rgb, first + i)
        return [(w.finish(), w.path) for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise


def _main() -> int:
    """The encoder's process: the job as JSON on stdin, the movies' paths as JSON on stdout."""
    job = json.loads(sys.stdin.read())
    burn = None if job["burn_in"] is None else BurnIn(job["burn_in"][0], job["burn_in"][1], tuple(job["size"]),
                                                      job["burn_in"][2], job["burn_in"][3])
    fps = Fraction(job["fps"])
    try:
        made = _encode_here(Path(job["out"]), job["stem"], [Path(p) for p in job["frames"]],
                            fps.numerator if fps.denominator == 1 else fps, tuple(job["size"]), tuple(job["kinds"]),
                            burn, job["first"])
    except DerrumbeError as e:
        print(f"derrumbe: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps([[str(t), str(p)] for t, p in made]))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
