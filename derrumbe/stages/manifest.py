"""The manifest: the full effective spec, estimates, statistics and every file's sha256.

Written last and atomically: a shot folder without manifest.json is an unfinished render.
Each version keeps its own manifest too, NAME_v003.manifest.json, beside the others';
manifest.json is the folder's last finished render's.
"""

from __future__ import annotations

import json
from pathlib import Path

from derrumbe.files import atomic_write_bytes


def version_manifest_path(out: Path, stem: str) -> Path:
    return out / f"{stem}.manifest.json"


def write_manifest(out: Path, manifest: dict, stem: str | None = None) -> Path:
    """The version's own manifest (NAME_v003.manifest.json) first, then manifest.json, the
    folder's last finished render: each complete before it appears."""
    data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
    if stem:
        atomic_write_bytes(version_manifest_path(out, stem), data)
    p = out / "manifest.json"
    atomic_write_bytes(p, data)
    return p
