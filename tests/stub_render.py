"""A stand-in for `derrumbe shot` that the queue's fault tests start as a real process.

It does what a render does to the shot folder, in the same way and with derrumbe's own
code: it arranges to die with the server (the same call the real render makes), takes the
shot lock, keeps a temporary movie open under the writers' naming, prints progress lines
on stderr, and at the end writes a manifest. It runs until the file RELEASE appears next
to its spec (or 120 s pass), so a test decides when it finishes.

    python stub_render.py SPEC.toml SHOT_DIR [--flood]

--flood prints progress lines as fast as it can (a full stderr pipe blocks it if the
server stops reading). Its pid goes to SHOT_DIR/../stub.pid once it holds the lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    from derrumbe.cache import ShotLock
    from derrumbe.cli import _die_with_parent
    from derrumbe.files import atomic_write_bytes, temp_path

    _die_with_parent()
    spec, shot = Path(sys.argv[1]), Path(sys.argv[2])
    flood = "--flood" in sys.argv
    release = spec.parent / "RELEASE"
    with ShotLock(shot):
        (shot.parent / "stub.pid").write_text(str(os.getpid()))
        movie = temp_path(shot / "shot.mp4", ".mp4")
        movie.write_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 1000)
        t0 = time.time()
        i = 0
        while not release.exists() and time.time() - t0 < 120:
            i += 1
            print(json.dumps(dict(event="progress", stage="render", done=i, total=10**6, elapsed=time.time() - t0,
                                  stage_elapsed=time.time() - t0)), file=sys.stderr, flush=True)
            if not flood:
                time.sleep(0.05)
        frame = shot / "shot.1001.png"
        atomic_write_bytes(frame, b"\x89PNG\r\n\x1a\n")
        movie.rename(shot / "shot.mp4")
        manifest = {"frames": [frame.name], "movie": "shot.mp4", "movies": ["shot.mp4"],
                    "files": {frame.name: "x", "shot.mp4": "x"}}
        atomic_write_bytes(shot / "manifest.json", json.dumps(manifest).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
