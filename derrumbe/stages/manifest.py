"""The manifest: the full effective spec, estimates, statistics and every file's sha256.

Written last and atomically: a shot folder without manifest.json is an unfinished render.
"""

from __future__ import annotations

import json
from pathlib import Path

from derrumbe.files import atomic_write_bytes


def write_manifest(out: Path, manifest: dict) -> Path:
    p = out / "manifest.json"
    atomic_write_bytes(p, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return p
