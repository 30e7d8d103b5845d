"""The view: the plate, its mattes and the camera at the output size, what every frame reads.

Cheap to make (resizes), so each process that renders frames makes its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.colour import linear_to_u8
from derrumbe.stages.matte import sky_likelihood
from derrumbe.stages.plate import resize_linear


@dataclass
class View:
    """The plate, camera and mattes at the output size (cheap; every process makes its own)."""
    ocam: object
    plate_out: np.ndarray
    plate_u8: np.ndarray
    bmatte: np.ndarray
    hold_still: np.ndarray
    hold_z_still: np.ndarray
    skyness: np.ndarray
    still_objects: list


def output_view(plate, matte, cam, out_size: tuple[int, int]) -> View:
    """The plate (a Plate), the building and holdout mattes and the camera at the output size."""
    out_w, out_h = out_size
    size = plate.size
    lin = plate.linear()
    ocam = cam.scaled(out_w, out_h)
    plate_out = resize_linear(lin, (out_w, out_h))
    plate_u8 = plate.srgb if (out_w, out_h) == size else linear_to_u8(plate_out)
    bmatte = cv2.resize(matte.building, (out_w, out_h), interpolation=cv2.INTER_AREA) > 0.5
    # One pixel of dilation: the building's anti-aliased edge goes with it.
    bmatte = cv2.dilate(bmatte.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    hold_still, hold_z_still = _holdout_layers(matte.objects, (out_w, out_h))
    # (each its own matte: the EXR writes them, and the comp coats each with its own dust)
    still_objects = [(o.id, o.kind, cv2.resize(o.full(size[::-1]), (out_w, out_h), interpolation=cv2.INTER_AREA))
                     for o in matte.objects.objects]
    return View(ocam, plate_out, plate_u8, bmatte, hold_still, hold_z_still, sky_likelihood(plate_u8), still_objects)


def min_pool(z: np.ndarray, size) -> np.ndarray:
    """The smallest value of z in each cell of a W x H grid laid over it."""
    W, H = size
    h, w = z.shape
    zz = np.where(np.isfinite(z), z, 1e30).astype(np.float32)
    # Cell starts along each axis (the grid is coarser than z, so no cell is empty).
    y0 = np.searchsorted(np.arange(h) * H // h, np.arange(H))
    x0 = np.searchsorted(np.arange(w) * W // w, np.arange(W))
    return np.minimum.reduceat(np.minimum.reduceat(zz, y0, axis=0), x0, axis=1)


def _holdout_layers(objects, size) -> tuple[np.ndarray, np.ndarray]:
    """The holdouts' union matte and per-pixel depth (inf where none) at the output size."""
    W, H = size
    hold = np.clip(cv2.resize(objects.matte(), (W, H), interpolation=cv2.INTER_AREA), 0, 1)
    # A pixel all but covered by a foreground object is the object's: the last per cent
    # of an edge blend would let the dust tint the plate's own pixels.
    hold[hold > 0.97] = 1.0
    z = objects.depth_map()
    if W <= z.shape[1] and H <= z.shape[0]:
        z = min_pool(z, (W, H))        # a thin pole keeps its depth when the frame shrinks
    else:
        z = cv2.resize(np.where(np.isfinite(z), z, 1e30).astype(np.float32), (W, H), interpolation=cv2.INTER_NEAREST)
    return hold.astype(np.float32), np.where(z < 1e29, z, np.inf).astype(np.float32)
