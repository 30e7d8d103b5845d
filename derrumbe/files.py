"""Files, below every stage: atomic writes, the temporaries a killed writer leaves, digests.

Every file derrumbe writes goes to a temporary name in its own folder, is synced to the
disk, renamed into place and its folder synced, so a power cut or a kill leaves the old
file or the new one, never a truncated file under a final name. This holds on a render
farm's shared storage as on a laptop: rename within one folder is atomic on NFS and SMB.
Digests are sha256, the one hash the cache, the manifest and the plates use.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read a megabyte at a time (plates and movies are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | None) -> str | None:
    """A short content digest of an optional input file (what cache keys hold)."""
    return sha256_file(path)[:24] if path else None
