"""OpenVDB output: the dust volume of each frame as a .vdb file (density, temperature,
velocity), for an artist to re-light or re-simulate in Houdini, Blender or Nuke.

No maintained OpenVDB writer installs from PyPI (the official Python bindings are not
published there; tinyvdb reads .vdb and re-saves grids it has read, but cannot build a
grid from an array), so this module writes the format itself, following OpenVDB's
io/Archive.cc, tree/*Node.h and io/Compression.h at file format version 224: the
standard Tree_float_5_4_3 and Tree_vec3s_5_4_3 trees (root > 32^3 > 16^3 > 8^3 leaves),
active-mask compression (only active voxels are stored, as OpenVDB itself stores fog
volumes), a uniform-scale-translate transform. The tests read the files back with
tinyvdb (an independent reader) and compare every voxel.

Axes are the scene's: metres, y up, the camera at the origin looking down -z (the USD
stage's convention); a voxel's index (i, j, k) is its cell (x, y, z) in the dust grid.
"""

from __future__ import annotations

import io
import struct
import uuid as uuidlib
from pathlib import Path

import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes

FILE_VERSION = 224
LIBRARY_VERSION = (10, 0)
_MAGIC = 0x56444220
_ACTIVE_MASK = 0x2


def vdb_path(out: Path, name: str, frame: int) -> Path:
    return out / "vdb" / f"{name}.{frame:04d}.vdb"


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def _meta(items: list) -> bytes:
    """A MetaMap: (name, type name, value bytes) entries."""
    out = [struct.pack("<I", len(items))]
    for name, typ, val in items:
        out += [_str(name), _str(typ), struct.pack("<I", len(val)), val]
    return b"".join(out)


def _mask_bytes(bits: np.ndarray) -> bytes:
    """A node mask: bit n of word n >> 6 (little-endian words), n the node's offset."""
    return np.packbits(bits.astype(np.uint8), bitorder="little").tobytes()


def _tree(values: np.ndarray, active: np.ndarray) -> tuple[bytes, bytes, int]:
    """Topology and buffers of a 5-4-3 tree holding values[x, y, z(, c)] where active, all
    in the root's first child (indices 0..4095). Returns (topology, buffers, leaves)."""
    comp = values.shape[3] if values.ndim == 4 else 1
    vals = values.reshape(values.shape[:3] + (comp,)).astype("<f4")
    nx, ny, nz = active.shape
    px, py, pz = (-(-n // 8) * 8 for n in (nx, ny, nz))
    act = np.zeros((px, py, pz), bool)
    act[:nx, :ny, :nz] = active
    val = np.zeros((px, py, pz, comp), "<f4")
    val[:nx, :ny, :nz] = np.where(active[..., None], vals, 0)
    # Leaves: 8^3 blocks with any active voxel, in the order the tree walks them.
    lx, ly, lz = px // 8, py // 8, pz // 8
    blocks = act.reshape(lx, 8, ly, 8, lz, 8).any(axis=(1, 3, 5))
    leaf = np.argwhere(blocks)                                  # (L, 3) leaf coordinates / 8
    if len(leaf) == 0:
        return b"", b"", 0
    if (leaf * 8 >= 4096).any():
        raise DerrumbeError("the dust grid is too large for one VDB root child (4096 voxels a side)")
    i1 = leaf // 16                                             # internal-1 node (128^3) of each leaf
    # Sort by internal-1 offset within the root child (x-major), then by leaf offset in it.
    off1 = (i1[:, 0] << 10) + (i1[:, 1] << 5) + i1[:, 2]
    l_in = leaf % 16
    off0 = (l_in[:, 0] << 8) + (l_in[:, 1] << 4) + l_in[:, 2]
    order = np.lexsort((off0, off1))
    leaf, off1, off0 = leaf[order], off1[order], off0[order]
    topo = [struct.pack("<f", 0.0) * comp, struct.pack("<II", 0, 1), struct.pack("<iii", 0, 0, 0)]
    # Internal-2 (root child, 32^3 of 128^3 nodes): child mask, value mask, tile values
    # (mask-compressed: all inactive, all background, so only the metadata byte).
    cm2 = np.zeros(32 ** 3, bool)
    cm2[np.unique(off1)] = True
    topo += [_mask_bytes(cm2), _mask_bytes(np.zeros(32 ** 3, bool)), b"\x00"]
    bufs = []
    for o1 in np.unique(off1):
        sel = off1 == o1
        cm1 = np.zeros(16 ** 3, bool)
        cm1[off0[sel]] = True
        topo += [_mask_bytes(cm1), _mask_bytes(np.zeros(16 ** 3, bool)), b"\x00"]
        for bx, by, bz in leaf[sel]:
            a = act[bx * 8:bx * 8 + 8, by * 8:by * 8 + 8, bz * 8:bz * 8 + 8].reshape(-1)  # offset = x<<6|y<<3|z
            v = val[bx * 8:bx * 8 + 8, by * 8:by * 8 + 8, bz * 8:bz * 8 + 8].reshape(-1, comp)
            m = _mask_bytes(a)
            topo.append(m)
            bufs += [m, b"\x00", np.ascontiguousarray(v[a]).tobytes()]
    return b"".join(topo), b"".join(bufs), len(leaf)


def _grid(name: str, values: np.ndarray, active: np.ndarray, origin, h: float, vector: bool) -> bytes:
    """One grid after its descriptor: compression, metadata, transform, tree."""
    topo, bufs, _ = _tree(values, active)
    if not topo:            # an empty tree: background only
        topo = struct.pack("<f", 0.0) * (3 if vector else 1) + struct.pack("<II", 0, 0)
    idx = np.argwhere(active)
    lo = idx.min(0) if len(idx) else np.zeros(3, int)
    hi = idx.max(0) if len(idx) else np.zeros(3, int)
    meta = [("class", "string", (b"unknown" if vector else b"fog volume")),
            ("file_bbox_max", "vec3i", struct.pack("<iii", *map(int, hi))),
            ("file_bbox_min", "vec3i", struct.pack("<iii", *map(int, lo))),
            ("file_compression", "string", b"active values"),
            ("file_voxel_count", "int64", struct.pack("<q", len(idx))),
            ("is_local_space", "bool", b"\x00"),
            ("is_saved_as_half_float", "bool", b"\x00"),
            ("name", "string", name.encode()),
            ("value_type", "string", b"vec3s" if vector else b"float")]
    if vector:
        meta.append(("vector_type", "string", b"invariant"))
    s = float(h)
    t = np.asarray(origin, float) + 0.5 * s           # voxel centres at integer indices
    xform = _str("UniformScaleTranslateMap") + struct.pack(
        "<18d", *t, s, s, s, s, s, s, 1 / s, 1 / s, 1 / s, 1 / s ** 2, 1 / s ** 2, 1 / s ** 2,
        0.5 / s, 0.5 / s, 0.5 / s)
    head = struct.pack("<I", _ACTIVE_MASK) + _meta(meta) + xform + struct.pack("<i", 1) + topo
    return head, bufs


def write_vdb(path: Path, grids: dict, origin, h: float, threshold: float = 1e-5) -> None:
    """grids: name -> array (nz, ny, nx) or (3, nz, ny, nx) on the dust grid (z, y, x
    order, as the solver keeps them); a voxel is active where the density grid exceeds
    threshold (every grid shares that topology). Written atomically."""
    dens = grids["density"]
    active = np.ascontiguousarray(np.transpose(dens > threshold, (2, 1, 0)))     # (x, y, z)
    buf = io.BytesIO()
    buf.write(struct.pack("<q", _MAGIC) + struct.pack("<III", FILE_VERSION, *LIBRARY_VERSION) + b"\x01")
    buf.write(str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"derrumbe:{path.name}")).upper().encode())
    buf.write(_meta([("creator", "string", b"derrumbe")]))
    buf.write(struct.pack("<i", len(grids)))
    for name, arr in grids.items():
        vector = arr.ndim == 4
        vals = np.moveaxis(arr, 0, -1) if vector else arr
        vals = np.ascontiguousarray(np.transpose(vals, (2, 1, 0, 3) if vector else (2, 1, 0)), np.float32)
        buf.write(_str(name) + _str("Tree_vec3s_5_4_3" if vector else "Tree_float_5_4_3") + _str(""))
        pos_at = buf.tell()
        buf.write(b"\x00" * 24)
        grid_pos = buf.tell()
        head, bufs = _grid(name, vals, active, origin, h, vector)
        buf.write(head)
        block_pos = buf.tell()
        buf.write(bufs)
        end_pos = buf.tell()
        buf.seek(pos_at)
        buf.write(struct.pack("<qqq", grid_pos, block_pos, end_pos))
        buf.seek(end_pos)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def dust_grids(state: dict) -> tuple[dict, np.ndarray, float]:
    """The grids of one stored dust state: density (extinction, 1/m, what a renderer's
    volume shader takes as density with a scale of 1), temperature (K above ambient) and
    velocity (m/s)."""
    shape = tuple(int(x) for x in state["shape"])
    if "empty" in state:
        z = np.zeros(shape, np.float32)
        return {"density": z}, np.asarray(state["origin"], float), float(state["h"][0])
    g = {"density": state["sigma"].astype(np.float32), "temperature": state["heat"].astype(np.float32),
         "velocity": state["vel"].astype(np.float32)}
    return g, np.asarray(state["origin"], float), float(state["h"][0])
