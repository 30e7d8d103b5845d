"""Review media for many variants of a shot: a labelled contact sheet and a side-by-side movie.

The wedge command and the web page's wedge view both make their sheets here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes
from derrumbe.stages.movies import MovieWriter

TILE_W = 480


def labelled(rgb: np.ndarray, label: str, width: int = TILE_W) -> np.ndarray:
    """The image scaled to width (even height) with its label on a dark band across the top."""
    h = max(2, int(round(width * rgb.shape[0] / rgb.shape[1] / 2)) * 2)
    img = cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA)
    band = max(18, width // 18)
    cv2.rectangle(img, (0, 0), (width, band), (20, 20, 20), -1)
    scale = band / 47.0
    cv2.putText(img, label, (max(4, band // 3), int(band * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235),
                1, cv2.LINE_AA)
    return img


def grid(tiles: list[np.ndarray], cols: int | None = None) -> np.ndarray:
    """Tiles (RGB, one width) in rows of cols, the last row padded with black."""
    if not tiles:
        raise DerrumbeError("nothing to put on a contact sheet: no variant finished")
    cols = cols or min(4, len(tiles))
    h = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    return np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])


def contact_sheet(frames: list[Path], labels: list[str], width: int = TILE_W) -> np.ndarray:
    """One frame of each variant, labelled, in a grid."""
    tiles = []
    for p, label in zip(frames, labels):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DerrumbeError(f"cannot read {p.name} for the contact sheet")
        tiles.append(labelled(img[..., ::-1], label, width))
    return grid(tiles)


def png_bytes(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()


def write_png(path: Path, rgb: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(rgb))


def side_by_side(path: Path, sequences: list[list[Path]], labels: list[str], fps, width: int = TILE_W) -> None:
    """An H.264 review movie of the variants playing together in a grid, each labelled; a
    shorter variant holds its last frame."""
    n = max(len(s) for s in sequences)
    first = grid([labelled(np.zeros((9, 16, 3), np.uint8), "", width) for _ in sequences])
    size = (first.shape[1] // 2 * 2, first.shape[0] // 2 * 2)
    movie = MovieWriter(path, fps, size)
    try:
        for i in range(n):
            tiles = []
            for seq, label in zip(sequences, labels):
                img = cv2.imread(str(seq[min(i, len(seq) - 1)]), cv2.IMREAD_COLOR)
                tiles.append(labelled(img[..., ::-1], label, width))
            frame = grid(tiles)
            movie.add(np.ascontiguousarray(frame[:size[1], :size[0]]))
        movie.close()
    except BaseException:
        movie.abort()
        raise
