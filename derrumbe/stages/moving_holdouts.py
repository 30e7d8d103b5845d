"""Moving holdouts: what moves in front of the building in a video plate, frame by frame.

A locked-off plate's temporal median has no passing cars or people in it (plate.py); what
differs from the median in a frame is something moving. Each such blob that stands on
the ground in front of the building's base line is one holdout of that frame, with its
own depth from its ground contact (the camera's ground plane), so a bus passing in front
of the collapse stays in front of it and dust that reaches its depth swallows it. Blobs
are tracked from frame to frame (overlap with the last frame's), so each moving object
keeps one id (its EXR layer, holdout.m<id>) while it crosses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.stages.holdouts import FRONT_MARGIN_M, contact_depth, soft_alpha

DIFF_LAB = 18.0          # a pixel differs from the median by more than this (CIELAB units, 8-bit scale)
MIN_SHARE = 3e-4         # blobs smaller than this share of the frame are noise (leaves, compression)


@dataclass
class Track:
    id: int
    mask: np.ndarray      # bool, the last frame's blob
    last: int             # the last frame it was seen in


class MovingHoldouts:
    """Per frame of a moving plate: the moving objects' union matte and per-pixel depth."""

    def __init__(self, median_srgb: np.ndarray, building: np.ndarray, cam, facade_m: float):
        self.median = median_srgb
        self.building = building
        self.cam = cam
        self.facade_m = facade_m
        self.tracks: list[Track] = []
        self.next_id = 1
        self._by_size: dict = {}
        self._objects: dict[int, list] = {}

    def _at(self, size):
        """The median and the base line at a frame's size (the output size)."""
        if size not in self._by_size:
            W, H = size
            med = cv2.resize(self.median, (W, H), interpolation=cv2.INTER_AREA) if self.median.shape[1] != W \
                else self.median
            b = cv2.resize(self.building.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA) > 0.5
            rows = np.nonzero(b.any(axis=1))[0]
            base = float(rows.max() + 1) if rows.size else float(H)
            self._by_size[size] = (cv2.cvtColor(med, cv2.COLOR_RGB2LAB).astype(np.float32), base,
                                   self.cam.scaled(W, H))
        return self._by_size[size]

    def blobs(self, frame_srgb: np.ndarray) -> list[np.ndarray]:
        """What differs from the median, as clean blobs standing low enough to be in front."""
        H, W = frame_srgb.shape[:2]
        med_lab, base, _ = self._at((W, H))
        lab = cv2.cvtColor(frame_srgb, cv2.COLOR_RGB2LAB).astype(np.float32)
        d = np.linalg.norm(cv2.GaussianBlur(lab - med_lab, (0, 0), 1.0), axis=2)
        m = (d > DIFF_LAB).astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        k = max(3, int(0.01 * W) | 1)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        n, lab_, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        out = []
        for i in range(1, n):
            x, y, ww, hh, a = stats[i]
            # Something moving whose lowest point is above the building's base (a flag, a
            # reflection in a window) is not in front of it.
            if a < MIN_SHARE * W * H or y + hh < base - 0.02 * H:
                continue
            out.append(lab_ == i)
        return out

    def _track(self, i: int, blobs: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
        """Each blob takes the id of the track it overlaps most (last seen within 3 frames)."""
        out, taken = [], set()
        for b in blobs:
            best, score = None, 0.0
            for t in self.tracks:
                if t.id in taken or i - t.last > 3 or t.mask.shape != b.shape:
                    continue
                inter = (t.mask & b).sum()
                s = inter / max(min(t.mask.sum(), b.sum()), 1)
                if s > score:
                    best, score = t, s
            if best is None or score < 0.2:
                best = Track(self.next_id, b, i)
                self.next_id += 1
                self.tracks.append(best)
            best.mask, best.last = b, i
            taken.add(best.id)
            out.append((best.id, b))
        self.tracks = [t for t in self.tracks if i - t.last <= 3]
        return out

    def frame(self, i: int, frame_srgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame i's moving holdouts: union alpha and depth (inf where none)."""
        H, W = frame_srgb.shape[:2]
        _, _, cam = self._at((W, H))
        bgr = cv2.cvtColor(frame_srgb, cv2.COLOR_RGB2BGR)
        alpha = np.zeros((H, W), np.float32)
        z = np.full((H, W), np.inf, np.float32)
        near_facade = max(0.5, self.facade_m - FRONT_MARGIN_M)
        objs = []
        for tid, b in self._track(i, self.blobs(frame_srgb)):
            ys = np.nonzero(b.any(axis=1))[0]
            bottom = float(ys.max() + 1)
            zc = contact_depth(min(bottom, float(H)), cam.f_px, cam.cy, cam.eye_m)
            depth = near_facade if zc is None else min(zc, near_facade)
            a = soft_alpha(bgr, b, 2)
            # The soft edge may only widen the blob by its filter's reach, never move it.
            a = np.where(cv2.dilate(b.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0, np.maximum(a, b), 0.0)
            alpha = 1 - (1 - alpha) * (1 - a)
            z[a > 0.02] = np.minimum(z[a > 0.02], depth)
            objs.append((tid, a.astype(np.float32)))
        self._objects = {i: objs}
        return alpha.astype(np.float32), z

    def objects_of(self, i: int) -> list[tuple[int, np.ndarray]]:
        """(track id, alpha) of frame i's moving holdouts, once frame(i) has run."""
        return self._objects.get(i, [])
