"""A small, seeded, realistic sample of the Samsung AI Challenge 2023 UDA data.

The competition (camera-invariant domain adaptation, Dacon 236132) gives labeled pinhole
street scenes (source) and unlabeled fisheye street scenes (target). Nobody can download it
on a fresh machine, so podium draws procedural street scenes in the competition's own
layout (see :mod:`podium.layouts.uda`, which reads both this sample and the real data)::

    train_source.csv  val_source.csv          id, img_path, gt_path
    train_target.csv  test.csv                id, img_path
    val_target.csv                            id, img_path, gt_path   (EVALUATION ONLY)
    sample_submission.csv                     id, mask_rle  (TEST_0000_class_0 .. _class_11, -1)
    train_source_image/TRAIN_SOURCE_0000.png  train_source_gt/TRAIN_SOURCE_0000.png
    val_source_image/VALID_SOURCE_000.png     val_source_gt/VALID_SOURCE_000.png
    train_target_image/TRAIN_TARGET_0000.png  test_image/TEST_0000.png
    val_target_image/VALID_TARGET_0000.png    val_target_gt/VALID_TARGET_0000.png

Names follow the real data, including its 3-digit ``VALID_SOURCE_000`` numbering.
``val_target*`` is podium's addition: labeled fisheye images that exist only so a run can
report target mIoU; the real competition had no such split and no training node may read it.

Content. Each image is a street drawn in 3-D (a pinhole camera over a ground plane): a road
with lane marks, dashed and centre lines and crosswalks, sidewalks with kerbs and tiles,
yards of grass, building facades with windows and doors, a distant skyline and tree line,
fences (rails, panels, mesh), poles and street lamps, traffic lights (on poles and on mast
arms over the road), traffic signs, trees, pedestrians, riders on bicycles and motorbikes,
cars (driving, oncoming, parked) with shadows, sky with clouds, and unlabeled clutter (bins,
bus shelters, hydrants: label 255). Image and label are rasterised by the same polygon
calls, so every drawn pixel carries the class of what was drawn there. Every class appears
in every source image unless occluded (each scene places at least one of each object).

Source images: pinhole, daylight palette, little noise. Target images: the same kind of
street drawn with a wide-angle pinhole camera and remapped through an equidistant fisheye
lens (``fisheye_max_angle_deg`` at the image circle, so the sample's field of view is twice
that; the real lens has 200 degrees, which a pinhole render cannot reach), black corners
outside the image circle, the ego vehicle's bonnet at the bottom (label 255, as the real
target images show the car's own body), a dark vignette, a dusk palette (warm sky, brick,
reddish paving, yellow centre lines, olive foliage), a warm colour cast, lower exposure,
lens blur and sensor noise (``target_color_shift`` scales all of it). Target labels are
remapped with the same map (nearest neighbour), so they match the distorted pixels.

No kedro or mlflow imports.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import cv2
import numpy as np
from matplotlib.figure import Figure

from podium.core.params import Bool, Fraction, NonNegativeInt, Params, PositiveInt
from podium.layouts.uda import CLASSES, IGNORE_INDEX, NUM_CLASSES, colorize
from podium.sample_data.drawing import child_rng, decode_image, encode_png, lerp, value_noise
from podium.sample_data.params import between

__all__ = [
    "UdaSampleParams",
    "contact_sheet",
    "generate_uda_sample",
    "iter_uda_sample",
    "render_source",
    "render_target",
]

#: An image side in pixels.
_Side = between(32, 4096, int)


class UdaSampleParams(Params):
    """``sample_data.uda``: every parameter of :func:`generate_uda_sample`; a key left out
    takes conf/base's value."""

    block: ClassVar[str] = "sample_data.uda"

    # --- how many images per split
    n_train_source: PositiveInt = 32
    """Labeled pinhole images (train_source.csv)."""
    n_val_source: PositiveInt = 8
    """Labeled pinhole images (val_source.csv)."""
    n_train_target: PositiveInt = 32
    """Unlabeled fisheye images (train_target.csv)."""
    n_val_target: NonNegativeInt = 8
    """Labeled fisheye images for evaluation only (val_target.csv); 0 = none."""
    n_test: PositiveInt = 8
    """Unlabeled fisheye images (test.csv, sample_submission.csv)."""
    # --- image sizes in pixels, 32..4096 (real: source 2048x1024, target 1920x1080)
    source_width: _Side = 320
    source_height: _Side = 160
    target_width: _Side = 320
    target_height: _Side = 180
    # --- the domain gap (difficulty)
    fisheye_max_angle_deg: between(10.0, 85.0) = 75.0
    """Ray angle at the image circle (equidistant lens)."""
    fisheye_radius: between(0.3, 3.0) = 1.0
    """Image-circle radius / half the image width; > ~0.9 cuts the circle."""
    target_color_shift: Fraction = 1.0
    """0 = source palette and lighting, 1 = full dusk / warm shift."""
    target_vignette: Fraction = 0.6
    """Darkening at the image circle's rim."""
    target_noise: between(0.0, 64.0) = 5.0
    """Std of target sensor noise (0..255 scale)."""
    source_noise: between(0.0, 64.0) = 1.5
    """Std of source sensor noise (0..255 scale)."""
    ego_vehicle: Bool = True
    """Draw the ego car's bonnet at the bottom of target images (label 255)."""
    clutter: between(0.0, 4.0) = 1.0
    """Multiplier on the number of cars, people, poles, signs, trees, ..."""


# split -> (csv, image folder, label folder or None, id prefix, digits, domain, stream key)
_SPLITS = {
    "train_source": ("train_source.csv", "train_source_image", "train_source_gt",
                     "TRAIN_SOURCE_", 4, "source", 1),
    "val_source": ("val_source.csv", "val_source_image", "val_source_gt",
                   "VALID_SOURCE_", 3, "source", 2),
    "train_target": ("train_target.csv", "train_target_image", None,
                     "TRAIN_TARGET_", 4, "target", 3),
    "val_target": ("val_target.csv", "val_target_image", "val_target_gt",
                   "VALID_TARGET_", 4, "target", 4),
    "test": ("test.csv", "test_image", None, "TEST_", 4, "target", 5),
}  # fmt: skip

R, SW, CONS, FENCE, POLE, LIGHT, SIGN, NAT, SKY, PERSON, RIDER, CAR = range(NUM_CLASSES)
IGN = IGNORE_INDEX
_ZNEAR = 0.3

# ----------------------------------------------------------------------------- styles
# Every palette list has the same length in both styles: the target colour is a lerp.
_SOURCE_STYLE: dict = {
    "sky_top": (62, 122, 205),
    "sky_horizon": (188, 212, 236),
    "cloud": (246, 247, 250),
    "road": (96, 96, 100),
    "road_patch": (82, 82, 88),
    "mark": (236, 236, 236),
    "center_mark": (236, 236, 236),
    "sidewalk": (176, 172, 166),
    "curb": (205, 205, 205),
    "grass": (88, 128, 56),
    "skyline": (150, 160, 175),
    "buildings": [(152, 152, 158), (194, 184, 168), (124, 114, 104), (178, 162, 142),
                  (204, 204, 208), (142, 152, 164), (168, 140, 120)],
    "glass": (74, 94, 126),
    "frame": (228, 228, 228),
    "foliage": [(58, 110, 40), (80, 132, 52), (48, 96, 46)],
    "trunk": (92, 72, 52),
    "fences": [(120, 120, 126), (150, 118, 88), (92, 104, 92)],
    "pole": (112, 112, 118),
    "cars": [(200, 30, 30), (30, 60, 160), (230, 230, 230), (30, 30, 32), (150, 150, 155),
             (40, 110, 60), (220, 180, 40), (110, 70, 50)],
    "clothes": [(40, 40, 60), (170, 40, 40), (60, 90, 150), (200, 200, 190), (90, 90, 90),
                (40, 100, 70), (210, 150, 40)],
    "skin": [(236, 192, 160), (200, 150, 110), (140, 96, 66), (96, 64, 44)],
    "clutter": (70, 90, 80),
    "exposure": 1.0,
}  # fmt: skip
_TARGET_STYLE: dict = {
    "sky_top": (44, 52, 98),
    "sky_horizon": (238, 160, 104),
    "cloud": (240, 186, 160),
    "road": (76, 68, 62),
    "road_patch": (56, 50, 48),
    "mark": (228, 214, 172),
    "center_mark": (236, 188, 56),
    "sidewalk": (152, 110, 96),
    "curb": (176, 164, 150),
    "grass": (100, 112, 50),
    "skyline": (120, 96, 104),
    "buildings": [(150, 78, 62), (172, 120, 90), (108, 88, 80), (192, 170, 140),
                  (92, 86, 98), (130, 60, 50), (160, 140, 110)],
    "glass": (176, 136, 100),
    "frame": (208, 190, 170),
    "foliage": [(88, 104, 40), (112, 112, 46), (72, 90, 42)],
    "trunk": (70, 52, 40),
    "fences": [(96, 90, 90), (128, 86, 60), (70, 76, 62)],
    "pole": (84, 80, 80),
    "cars": [(170, 40, 30), (40, 50, 110), (214, 204, 190), (26, 24, 24), (120, 116, 112),
             (50, 80, 50), (200, 150, 50), (90, 60, 44)],
    "clothes": [(30, 30, 40), (140, 40, 30), (60, 60, 100), (190, 170, 150), (70, 64, 60),
                (60, 80, 50), (180, 110, 40)],
    "skin": [(226, 176, 136), (190, 136, 96), (130, 86, 56), (86, 56, 40)],
    "clutter": (60, 64, 56),
    "exposure": 0.75,
}  # fmt: skip


def _style(t: float) -> dict:
    """The palette at shift ``t`` (0 = source, 1 = target)."""
    out = {}
    for key, a in _SOURCE_STYLE.items():
        b = _TARGET_STYLE[key]
        if isinstance(a, list):
            out[key] = [tuple(lerp(x, y, t)) for x, y in zip(a, b, strict=True)]
        elif isinstance(a, tuple):
            out[key] = tuple(lerp(a, b, t))
        else:
            out[key] = float(lerp(a, b, t))
    return out


# ----------------------------------------------------------------------------- canvas
@dataclass(frozen=True)
class _Camera:
    width: int
    height: int
    f: float
    cx: float
    cy: float
    cam_h: float

    def project(self, pts: np.ndarray) -> np.ndarray:
        z = pts[:, 2]
        u = self.cx + self.f * pts[:, 0] / z
        v = self.cy - self.f * (pts[:, 1] - self.cam_h) / z
        return np.stack([u, v], axis=1)


def _clip_near(pts: np.ndarray, znear: float = _ZNEAR) -> np.ndarray:
    """Sutherland-Hodgman clip of a 3-D polygon against the plane z = znear."""
    if (pts[:, 2] >= znear).all():
        return pts
    out = []
    n = len(pts)
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        a_in, b_in = a[2] >= znear, b[2] >= znear
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (znear - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))


class _Canvas:
    """An RGB float image and its label map, drawn by the same polygon calls."""

    SHIFT = 2  # sub-pixel bits of cv2 coordinates

    def __init__(self, cam: _Camera):
        self.cam = cam
        self.img = np.zeros((cam.height, cam.width, 3), np.float32)
        self.lab = np.full((cam.height, cam.width), IGN, np.uint8)
        self._lim = 4.0e5  # keep fixed-point coordinates far inside int32

    def _pts(self, pts2: np.ndarray) -> np.ndarray | None:
        if len(pts2) < 3 or not np.isfinite(pts2).all():
            return None
        lo, hi = pts2.min(axis=0), pts2.max(axis=0)
        if hi[0] < -1 or hi[1] < -1 or lo[0] > self.cam.width or lo[1] > self.cam.height:
            return None
        pts2 = np.clip(pts2, -self._lim, self._lim)
        return np.rint(pts2 * (1 << self.SHIFT)).astype(np.int32)

    def poly(self, pts2, colour, cls: int | None) -> None:
        p = self._pts(np.asarray(pts2, np.float64))
        if p is None:
            return
        cv2.fillPoly(self.img, [p], tuple(float(c) for c in colour), cv2.LINE_8, self.SHIFT)
        if cls is not None:
            cv2.fillPoly(self.lab, [p], int(cls), cv2.LINE_8, self.SHIFT)

    def poly3(self, pts3, colour, cls: int | None) -> None:
        pts3 = _clip_near(np.asarray(pts3, np.float64))
        if len(pts3) >= 3:
            self.poly(self.cam.project(pts3), colour, cls)

    def polyline(self, pts2, colour, cls: int | None, thickness_px: float, closed=False) -> None:
        p = self._pts(np.asarray(pts2, np.float64)) if len(pts2) >= 3 else None
        if p is None:
            arr = np.asarray(pts2, np.float64)
            if not np.isfinite(arr).all():
                return
            p = np.rint(np.clip(arr, -self._lim, self._lim) * (1 << self.SHIFT)).astype(np.int32)
        t = max(1, int(round(thickness_px)))
        cv2.polylines(self.img, [p], closed, tuple(float(c) for c in colour), t, cv2.LINE_8,
                      self.SHIFT)  # fmt: skip
        if cls is not None:
            cv2.polylines(self.lab, [p], closed, int(cls), t, cv2.LINE_8, self.SHIFT)

    # billboards: objects facing the camera at depth z, sizes in metres
    def anchor(self, x: float, z: float) -> tuple[float, float, float]:
        """Screen (u, v) of the ground point (x, 0, z) and pixels per metre there."""
        s = self.cam.f / z
        return self.cam.cx + x * s, self.cam.cy + self.cam.cam_h * s, s

    def bpoly(self, x, z, pts_m, colour, cls) -> None:
        u, v, s = self.anchor(x, z)
        pts = np.asarray(pts_m, np.float64)
        self.poly(np.stack([u + pts[:, 0] * s, v - pts[:, 1] * s], 1), colour, cls)

    def bellipse(self, x, z, cx, cy, ax, ay, colour, cls, n=18) -> None:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        self.bpoly(x, z, np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1), colour, cls)

    def bseg(self, x, z, p, q, width, colour, cls) -> None:
        """A straight bar of ``width`` metres from p to q (metres, billboard plane)."""
        p, q = np.asarray(p, float), np.asarray(q, float)
        d = q - p
        n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * width / 2
        self.bpoly(x, z, [p + n, q + n, q - n, p - n], colour, cls)


def _jit(rng: np.random.Generator, colour, amount: float = 0.12) -> tuple:
    return tuple(min(255.0, max(0.0, c * rng.uniform(1 - amount, 1 + amount))) for c in colour)


def _pick(rng: np.random.Generator, colours: list, amount: float = 0.1) -> tuple:
    return _jit(rng, colours[int(rng.integers(len(colours)))], amount)


def _shade(colour, k: float) -> tuple:
    return tuple(min(255.0, max(0.0, float(c) * k)) for c in colour)


# ----------------------------------------------------------------------------- objects
def _draw_person(cv: _Canvas, rng, st, x, z) -> None:
    h = rng.uniform(1.55, 1.92)
    stride = rng.uniform(-0.18, 0.18)
    pants, shirt = _pick(rng, st["clothes"]), _pick(rng, st["clothes"])
    skin = _pick(rng, st["skin"], 0.05)
    hair = _shade(_pick(rng, [(60, 40, 30), (20, 20, 20), (150, 110, 60)]), 1.0)
    hip, sh = 0.47 * h, 0.80 * h
    cv.bseg(x, z, (-0.07, hip), (-0.07 - stride, 0.02), 0.12, pants, PERSON)
    cv.bseg(x, z, (0.07, hip), (0.07 + stride, 0.02), 0.12, _shade(pants, 0.85), PERSON)
    cv.bpoly(x, z, [(-0.15, hip - 0.02), (0.15, hip - 0.02), (0.19, sh), (-0.19, sh)], shirt,
             PERSON)  # fmt: skip
    swing = rng.uniform(-0.12, 0.12)
    cv.bseg(x, z, (-0.18, sh - 0.02), (-0.23 + swing, 0.47 * h), 0.08, _shade(shirt, 0.85), PERSON)
    cv.bseg(x, z, (0.18, sh - 0.02), (0.23 - swing, 0.47 * h), 0.08, _shade(shirt, 0.9), PERSON)
    cv.bpoly(x, z, [(-0.05, sh), (0.05, sh), (0.05, sh + 0.05), (-0.05, sh + 0.05)], skin, PERSON)
    cv.bellipse(x, z, 0, 0.91 * h, 0.075 * h / 1.7 * 1.5, 0.09 * h, skin, PERSON)
    cv.bellipse(x, z, 0, 0.95 * h, 0.07 * h / 1.7 * 1.5, 0.055 * h, hair, PERSON)
    if rng.random() < 0.3:  # a bag
        cv.bpoly(x, z, [(0.17, 0.5 * h), (0.33, 0.5 * h), (0.33, 0.66 * h), (0.17, 0.66 * h)],
                 _pick(rng, st["clothes"]), PERSON)  # fmt: skip


def _draw_rider(cv: _Canvas, rng, st, x, z) -> None:
    """A side-view cyclist or motorcyclist; bike and person are both labelled rider."""
    facing = 1.0 if rng.random() < 0.5 else -1.0
    motor = rng.random() < 0.35
    wheel_r = 0.33 if not motor else 0.3
    base = 0.55 if not motor else 0.7
    frame = _pick(rng, st["cars"])
    _, _, s = cv.anchor(x, z)
    tyre = (25, 25, 25)
    for wx in (-base, base):
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        u, v, _ = cv.anchor(x, z)
        ring = np.stack(
            [u + (wx + wheel_r * np.cos(t)) * s, v - (wheel_r + wheel_r * np.sin(t)) * s], 1
        )
        cv.polyline(ring, tyre, RIDER, max(1.0, 0.07 * s), closed=True)
    f = facing
    if motor:
        cv.bpoly(x, z, [(-base * f, wheel_r), (base * f, wheel_r), (0.45 * f, 0.9), (-0.3 * f, 0.85)],
                 frame, RIDER)  # fmt: skip
        seat_y, bar = 0.92, (0.55 * f, 1.05)
    else:
        for p, q in [
            ((-base * f, wheel_r), (0, wheel_r)),
            ((0, wheel_r), (0.45 * f, 0.85)),
            ((-base * f, wheel_r), (-0.12 * f, 0.85)),
            ((-0.12 * f, 0.85), (0.45 * f, 0.85)),
            ((0.45 * f, 0.85), (base * f, wheel_r)),
            ((0, wheel_r), (-0.12 * f, 0.85)),
        ]:
            cv.bseg(x, z, p, q, 0.05, frame, RIDER)  # fmt: skip
        seat_y, bar = 0.9, (0.48 * f, 1.0)
    shirt, pants = _pick(rng, st["clothes"]), _pick(rng, st["clothes"])
    skin = _pick(rng, st["skin"], 0.05)
    hip = (-0.15 * f, seat_y + 0.05)
    shoulder = (0.15 * f, seat_y + 0.6)
    cv.bseg(x, z, hip, (0.05 * f, wheel_r + 0.05), 0.13, pants, RIDER)
    cv.bseg(x, z, hip, shoulder, 0.3, shirt, RIDER)
    cv.bseg(x, z, shoulder, bar, 0.08, _shade(shirt, 0.85), RIDER)
    head = (shoulder[0] + 0.08 * f, shoulder[1] + 0.2)
    cv.bellipse(x, z, head[0], head[1], 0.11, 0.13, skin, RIDER)
    helmet = _pick(rng, st["cars"]) if motor or rng.random() < 0.5 else (40, 30, 25)
    cv.bellipse(x, z, head[0], head[1] + 0.05, 0.12, 0.09, helmet, RIDER)


def _draw_pole(cv: _Canvas, rng, st, x, z, h, side: float, lamp: bool) -> None:
    col = _jit(rng, st["pole"], 0.08)
    cv.bpoly(x, z, [(-0.08, 0), (0.08, 0), (0.06, h), (-0.06, h)], col, POLE)
    if lamp:  # an arm reaching over the road and a lamp head, both part of the pole
        arm = -side * rng.uniform(1.0, 2.0)
        cv.bseg(x, z, (0, h - 0.1), (arm, h + 0.3), 0.09, col, POLE)
        cv.bpoly(x, z, [(arm - 0.35, h + 0.22), (arm + 0.35, h + 0.22), (arm + 0.25, h + 0.38),
                        (arm - 0.25, h + 0.38)], _shade(col, 0.8), POLE)  # fmt: skip


def _light_housing(cv: _Canvas, rng, x, z, y0, horizontal: bool = False) -> None:
    body = (32, 34, 30) if rng.random() < 0.7 else (190, 160, 40)
    lit = int(rng.integers(3))
    colours = [((220, 40, 30), (70, 20, 20)), ((240, 170, 30), (70, 50, 15)),
               ((40, 220, 110), (15, 60, 35))]  # fmt: skip
    if horizontal:
        w, hh = 0.95, 0.34
        cv.bpoly(
            x, z, [(-w / 2, y0), (w / 2, y0), (w / 2, y0 + hh), (-w / 2, y0 + hh)], body, LIGHT
        )
        centres = [(-0.3 + 0.3 * k, y0 + hh / 2) for k in range(3)]
    else:
        w, hh = 0.34, 0.95
        cv.bpoly(
            x, z, [(-w / 2, y0), (w / 2, y0), (w / 2, y0 + hh), (-w / 2, y0 + hh)], body, LIGHT
        )
        centres = [(0, y0 + hh - 0.17 - 0.3 * k) for k in range(3)]
    for k, (cx, cy) in enumerate(centres):
        cv.bellipse(x, z, cx, cy, 0.11, 0.11, colours[k][0 if k == lit else 1], LIGHT, n=12)


def _draw_traffic_light(cv: _Canvas, rng, st, x, z, side: float, road_center: float) -> None:
    col = _jit(rng, st["pole"], 0.08)
    if rng.random() < 0.5:  # a mast arm over the road with a hanging light
        h = rng.uniform(5.2, 6.2)
        reach = min(abs(x - road_center) + rng.uniform(-2, 1), 7.0)
        cv.bpoly(x, z, [(-0.1, 0), (0.1, 0), (0.08, h), (-0.08, h)], col, POLE)
        cv.bseg(x, z, (0, h - 0.2), (-side * reach, h - 0.2), 0.12, col, POLE)
        _light_housing(cv, rng, x - side * reach * 0.8, z, h - 1.3, horizontal=rng.random() < 0.4)
        if reach > 3.5:
            _light_housing(cv, rng, x - side * reach * 0.4, z, h - 1.3)
    else:
        h = rng.uniform(2.6, 3.2)
        cv.bpoly(x, z, [(-0.07, 0), (0.07, 0), (0.07, h), (-0.07, h)], col, POLE)
        _light_housing(cv, rng, x, z, h)


def _draw_sign(cv: _Canvas, rng, st, x, z) -> None:
    h = rng.uniform(2.1, 2.8)
    cv.bpoly(x, z, [(-0.04, 0), (0.04, 0), (0.04, h), (-0.04, h)], _jit(rng, st["pole"]), POLE)
    kind = int(rng.integers(5))
    r = rng.uniform(0.3, 0.42)
    cy = h + r * 0.8
    red, white, blue = (200, 30, 30), (235, 235, 235), (30, 70, 170)
    if kind == 0:  # prohibitory circle
        cv.bellipse(x, z, 0, cy, r, r, red, SIGN, n=20)
        cv.bellipse(x, z, 0, cy, 0.72 * r, 0.72 * r, white, SIGN, n=20)
        cv.bpoly(x, z, [(-0.3 * r, cy - 0.35 * r), (0.3 * r, cy - 0.35 * r), (0.3 * r, cy + 0.35 * r),
                        (-0.3 * r, cy + 0.35 * r)], (30, 30, 30), SIGN)  # fmt: skip
    elif kind == 1:  # warning triangle
        tri = [(-r * 1.1, cy - r * 0.8), (r * 1.1, cy - r * 0.8), (0, cy + r * 1.1)]
        cv.bpoly(x, z, tri, red, SIGN)
        cv.bpoly(
            x, z, [(px * 0.65, cy + (py - cy) * 0.65 - 0.08 * r) for px, py in tri], white, SIGN
        )
    elif kind == 2:  # mandatory blue circle with an arrow
        cv.bellipse(x, z, 0, cy, r, r, blue, SIGN, n=20)
        cv.bseg(x, z, (0, cy - 0.6 * r), (0, cy + 0.5 * r), 0.16 * r, white, SIGN)
    elif kind == 3:  # stop octagon
        t = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        cv.bpoly(x, z, np.stack([r * np.cos(t), cy + r * np.sin(t)], 1), red, SIGN)
        cv.bpoly(x, z, [(-0.6 * r, cy - 0.12 * r), (0.6 * r, cy - 0.12 * r), (0.6 * r, cy + 0.12 * r),
                        (-0.6 * r, cy + 0.12 * r)], white, SIGN)  # fmt: skip
    else:  # rectangular direction / info sign
        col = blue if rng.random() < 0.5 else (30, 120, 60)
        w = r * rng.uniform(1.4, 2.2)
        cv.bpoly(x, z, [(-w, cy - r), (w, cy - r), (w, cy + r), (-w, cy + r)], col, SIGN)
        cv.bpoly(x, z, [(-0.7 * w, cy - 0.1 * r), (0.7 * w, cy - 0.1 * r), (0.7 * w, cy + 0.2 * r),
                        (-0.7 * w, cy + 0.2 * r)], white, SIGN)  # fmt: skip


def _draw_tree(cv: _Canvas, rng, st, x, z, scale: float = 1.0) -> None:
    h = rng.uniform(3.0, 4.5) * scale
    trunk = _jit(rng, st["trunk"])
    cv.bpoly(x, z, [(-0.14 * scale, 0), (0.14 * scale, 0), (0.1 * scale, h), (-0.1 * scale, h)],
             trunk, NAT)  # fmt: skip
    base = _pick(rng, st["foliage"], 0.08)
    n = int(rng.integers(6, 11))
    for _ in range(n):
        cx = rng.normal(0, 0.7) * scale
        cy = h + rng.uniform(0.2, 2.2) * scale
        a = rng.uniform(0.8, 1.6) * scale
        cv.bellipse(x, z, cx, cy, a, a * rng.uniform(0.7, 1.0), _shade(base, rng.uniform(0.75, 1.2)),
                    NAT, n=16)  # fmt: skip


def _draw_car(cv: _Canvas, rng, st, xc, z, oncoming: bool, shadow_ok: bool = True) -> None:
    """A car box, near face at depth z, drawn as its visible faces (all labelled car)."""
    w, length = rng.uniform(1.7, 1.95), rng.uniform(4.0, 4.8)
    hb, hc = rng.uniform(0.85, 1.0), rng.uniform(1.4, 1.6)
    body = _pick(rng, st["cars"], 0.08)
    glass = _shade(_jit(rng, st["glass"]), 0.55)
    x0, x1, z1 = xc - w / 2, xc + w / 2, z + length
    if shadow_ok:  # a soft dark patch on the road (image only: it is still road)
        sh = _shade(st["road"], 0.45)
        cv.poly3([(x0 - 0.15, 0, z - 0.2), (x1 + 0.15, 0, z - 0.2), (x1 + 0.15, 0, z1),
                  (x0 - 0.15, 0, z1)], sh, None)  # fmt: skip
    # side face visible from the camera
    if x0 > 0 or x1 < 0:
        xs = x0 if x0 > 0 else x1
        side = _shade(body, 0.82)
        cv.poly3([(xs, 0.28, z), (xs, hb, z), (xs, hb, z1), (xs, 0.28, z1)], side, CAR)
        cv.poly3([(xs, hb, z + 0.9), (xs, hc, z + 1.5), (xs, hc, z1 - 1.3), (xs, hb, z1 - 0.6)],
                 side, CAR)  # fmt: skip
        cv.poly3([(xs, hb + 0.05, z + 1.05), (xs, hc - 0.07, z + 1.55), (xs, hc - 0.07, z1 - 1.35),
                  (xs, hb + 0.05, z1 - 0.75)], glass, CAR)  # fmt: skip
        for wz in (z + 0.85, z1 - 0.85):
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            ring = np.stack(
                [np.full_like(t, xs), 0.33 + 0.33 * np.sin(t), wz + 0.33 * np.cos(t)], 1
            )
            cv.poly3(ring, (22, 22, 24), CAR)
    # near face (rear of a car ahead, front of an oncoming one)
    cv.poly3([(x0, 0.28, z), (x1, 0.28, z), (x1, hb, z), (x0, hb, z)], body, CAR)
    inset = 0.18
    cv.poly3([(x0 + 0.05, hb, z + 0.5), (x1 - 0.05, hb, z + 0.5), (x1 - inset, hc, z + 1.0),
              (x0 + inset, hc, z + 1.0)], _shade(body, 0.95), CAR)  # fmt: skip
    cv.poly3([(x0 + 0.14, hb + 0.04, z + 0.55), (x1 - 0.14, hb + 0.04, z + 0.55),
              (x1 - inset - 0.04, hc - 0.06, z + 0.98), (x0 + inset + 0.04, hc - 0.06, z + 0.98)],
             glass, CAR)  # fmt: skip
    for xa, xb in ((x0, x0 + 0.28), (x1 - 0.28, x1)):
        cv.poly3([(xa, 0.0, z + 0.3), (xb, 0.0, z + 0.3), (xb, 0.3, z + 0.3), (xa, 0.3, z + 0.3)],
                 (22, 22, 24), CAR)  # fmt: skip
    lamp = (245, 240, 210) if oncoming else (210, 30, 30)
    for xa, xb in ((x0 + 0.08, x0 + 0.4), (x1 - 0.4, x1 - 0.08)):
        cv.poly3([(xa, 0.65, z - 0.01), (xb, 0.65, z - 0.01), (xb, 0.8, z - 0.01),
                  (xa, 0.8, z - 0.01)], lamp, CAR)  # fmt: skip
    cv.poly3([(xc - 0.25, 0.38, z - 0.01), (xc + 0.25, 0.38, z - 0.01), (xc + 0.25, 0.5, z - 0.01),
              (xc - 0.25, 0.5, z - 0.01)], (232, 232, 225), CAR)  # fmt: skip


def _draw_clutter(cv: _Canvas, rng, st, x, z, side: float) -> None:
    """Unlabeled street furniture (label 255): bins, bus shelters, hydrants, boxes."""
    kind = int(rng.integers(4))
    col = _jit(rng, st["clutter"], 0.25)
    if kind == 0:  # wheelie bin
        cv.bpoly(x, z, [(-0.3, 0), (0.3, 0), (0.34, 1.0), (-0.34, 1.0)], col, IGN)
        cv.bpoly(
            x, z, [(-0.37, 1.0), (0.37, 1.0), (0.37, 1.08), (-0.37, 1.08)], _shade(col, 0.7), IGN
        )
    elif kind == 1:  # bus shelter: a roof on two posts and a glass pane
        cv.bpoly(x, z, [(-1.6, 0), (-1.5, 0), (-1.5, 2.4), (-1.6, 2.4)], (90, 90, 95), IGN)
        cv.bpoly(x, z, [(1.5, 0), (1.6, 0), (1.6, 2.4), (1.5, 2.4)], (90, 90, 95), IGN)
        cv.bpoly(
            x, z, [(-1.5, 0.3), (1.5, 0.3), (1.5, 2.2), (-1.5, 2.2)], _jit(rng, st["glass"]), IGN
        )
        cv.bpoly(x, z, [(-1.8, 2.4), (1.8, 2.4), (1.8, 2.6), (-1.8, 2.6)], col, IGN)
    elif kind == 2:  # hydrant
        red = (190, 40, 35)
        cv.bpoly(x, z, [(-0.12, 0), (0.12, 0), (0.12, 0.6), (-0.12, 0.6)], red, IGN)
        cv.bellipse(x, z, 0, 0.62, 0.13, 0.1, red, IGN, n=10)
    else:  # utility box
        cv.bpoly(x, z, [(-0.45, 0), (0.45, 0), (0.45, 1.3), (-0.45, 1.3)], _jit(rng, (150, 150, 140)),
                 IGN)  # fmt: skip


def _draw_fence(cv: _Canvas, rng, st, xf, z0, z1) -> None:
    col = _pick(rng, st["fences"], 0.1)
    kind = int(rng.integers(3))
    h = rng.uniform(1.0, 1.8)
    if kind == 0:  # solid panels with slat lines
        cv.poly3([(xf, 0, z0), (xf, h, z0), (xf, h, z1), (xf, 0, z1)], col, FENCE)
        for zz in np.arange(z0, z1, 0.5):
            cv.poly3([(xf, 0, zz), (xf, h, zz), (xf, h, zz + 0.04), (xf, 0, zz + 0.04)],
                     _shade(col, 0.7), FENCE)  # fmt: skip
        return
    step = rng.uniform(1.8, 2.8)
    for zz in np.arange(z0, z1 + 1e-6, step):  # posts
        cv.poly3([(xf, 0, zz), (xf, h + 0.05, zz), (xf, h + 0.05, zz + 0.1), (xf, 0, zz + 0.1)],
                 _shade(col, 0.85), FENCE)  # fmt: skip
    rails = (0.3 * h, 0.65 * h, h - 0.05) if kind == 1 else (0.05, h - 0.05)
    for y in rails:
        cv.poly3([(xf, y, z0), (xf, y + 0.07, z0), (xf, y + 0.07, z1), (xf, y, z1)], col, FENCE)
    if kind == 2:  # wire mesh: diagonal lines, labelled fence where drawn
        pts = []
        for zz in np.arange(z0, z1 - h, 0.6):
            pts.append(np.array([[xf, 0.05, zz], [xf, h - 0.05, zz + h]]))
            pts.append(np.array([[xf, h - 0.05, zz], [xf, 0.05, zz + h]]))
        for seg in pts:
            seg = _clip_near(np.vstack([seg, seg[::-1] + [0, 0, 1e-3]]))
            if len(seg) >= 2:
                p2 = cv.cam.project(seg[:2])
                cv.polyline(p2, _shade(col, 0.8), FENCE, 1.0)


# ----------------------------------------------------------------------------- scene
def _draw_street(cv: _Canvas, rng: np.random.Generator, st: dict, clutter: float) -> None:
    cam = cv.cam
    H, W = cam.height, cam.width
    rows = np.arange(H, dtype=np.float32)[:, None]
    t = np.clip(rows / max(cam.cy, 1.0), 0, 1) ** 0.8
    sky = lerp(st["sky_top"], st["sky_horizon"], t[..., None])
    cv.img[:] = np.broadcast_to(sky, (H, W, 3))
    cloudy = rng.uniform(0.0, 0.9)
    clouds = value_noise(rng, H, W, cells=rng.uniform(3, 6), octaves=4)
    a = np.clip((clouds - (1 - 0.5 * cloudy)) / 0.25, 0, 1)[..., None] * (1 - 0.6 * t[..., None])
    cv.img[:] = cv.img * (1 - a) + np.asarray(st["cloud"], np.float32) * a
    cv.lab[:] = SKY

    far = 420.0
    xs = far * max(W / 2, cam.cx) / cam.f * 1.2
    # ground, far skyline and tree line
    cv.poly3([(-xs, 0, _ZNEAR), (xs, 0, _ZNEAR), (xs, 0, far * 3), (-xs, 0, far * 3)],
             _jit(rng, st["grass"]), NAT)  # fmt: skip
    x = -xs
    while x < xs:
        w = rng.uniform(8, 40)
        if rng.random() < 0.55:
            h = rng.uniform(8, 45)
            cv.poly3([(x, 0, far), (x + w, 0, far), (x + w, h, far), (x, h, far)],
                     _shade(_jit(rng, st["skyline"]), rng.uniform(0.85, 1.1)), CONS)  # fmt: skip
        else:
            h = rng.uniform(6, 16)
            n = 12
            tt = np.linspace(0, np.pi, n)
            top = np.stack(
                [x + w / 2 - w / 2 * np.cos(tt), h * (0.7 + 0.3 * np.sin(tt)), np.full(n, far)], 1
            )
            cv.poly3(np.vstack([[(x, 0, far)], top, [(x + w, 0, far)]]),
                     _shade(_pick(rng, st["foliage"]), 0.8), NAT)  # fmt: skip
        x += w

    # road geometry (right-hand traffic)
    lane_w = rng.uniform(3.0, 3.6)
    n_lanes = int(rng.choice([2, 2, 3, 4]))
    n_on = n_lanes // 2  # oncoming lanes on the left
    ego = int(rng.integers(n_on, n_lanes))
    left = -(ego + 0.5) * lane_w + rng.normal(0, 0.3)
    right = left + n_lanes * lane_w
    sw = (rng.uniform(2.5, 5.0), rng.uniform(2.5, 5.0))
    yard = (rng.uniform(0, 4.0) * (rng.random() < 0.6), rng.uniform(0, 4.0) * (rng.random() < 0.6))
    zf = far * 2
    road = _jit(rng, st["road"], 0.08)
    cv.poly3([(left, 0, _ZNEAR), (right, 0, _ZNEAR), (right, 0, zf), (left, 0, zf)], road, R)
    for _ in range(int(rng.integers(2, 7))):  # patches and repairs
        pz, px = rng.uniform(3, 60), rng.uniform(left, right - 1.5)
        pw, pl = rng.uniform(0.8, 2.5), rng.uniform(1.5, 6)
        cv.poly3([(px, 0, pz), (px + pw, 0, pz), (px + pw, 0, pz + pl), (px, 0, pz + pl)],
                 _jit(rng, st["road_patch"], 0.06), R)  # fmt: skip
    mark = st["mark"]

    def ground_strip(xa, xb, za, zb, colour, cls):
        cv.poly3([(xa, 0, za), (xb, 0, za), (xb, 0, zb), (xa, 0, zb)], colour, cls)

    for k in range(1, n_lanes):
        xb = left + k * lane_w
        if k == n_on:  # centre line: double solid
            for off in (-0.12, 0.12):
                ground_strip(xb + off - 0.06, xb + off + 0.06, _ZNEAR, 250, st["center_mark"], R)
        else:
            phase = rng.uniform(0, 9)
            for zz in np.arange(phase - 9, 250, 9.0):
                ground_strip(xb - 0.07, xb + 0.07, max(zz, _ZNEAR), zz + 3.0, mark, R)
    for xe in (left + 0.3, right - 0.45):
        ground_strip(xe, xe + 0.15, _ZNEAR, 250, mark, R)
    if rng.random() < 0.4:  # crosswalk
        zc = rng.uniform(12, 35)
        for xx in np.arange(left + 0.5, right - 0.5, 1.0):
            ground_strip(xx, xx + 0.5, zc, zc + 3.0, mark, R)

    # sidewalks with kerbs and tile joints, then yards
    side_x = {}
    for side, edge, width, yw in ((-1, left, sw[0], yard[0]), (1, right, sw[1], yard[1])):
        outer = edge + side * width
        paving = _jit(rng, st["sidewalk"], 0.08)
        ground_strip(min(edge, outer), max(edge, outer), _ZNEAR, zf, paving, SW)
        ground_strip(min(edge, edge + side * 0.25), max(edge, edge + side * 0.25), _ZNEAR, zf,
                     st["curb"], SW)  # fmt: skip
        step = rng.uniform(1.2, 2.2)
        for zz in np.arange(rng.uniform(0, step), 120, step):
            ground_strip(min(edge, outer), max(edge, outer), zz, zz + 0.05, _shade(paving, 0.8), SW)
        yard_out = outer + side * yw
        if yw > 0:
            grass = rng.random() < 0.6
            ground_strip(min(outer, yard_out), max(outer, yard_out), _ZNEAR, zf,
                         _jit(rng, st["grass"] if grass else st["sidewalk"]), NAT if grass else SW)  # fmt: skip
        side_x[side] = (edge, outer, yard_out)

    sun = 1.0 if rng.random() < 0.5 else -1.0
    exposure = st["exposure"]

    # buildings: facades along both sides, drawn far to near
    facades = []
    for side in (-1, 1):
        z = rng.uniform(-25, 0)
        base_x = side_x[side][2]
        while z < 260:
            length = rng.uniform(8, 35)
            if rng.random() < 0.2:
                facades.append(("gap", side, z, z + length, base_x + side * rng.uniform(2, 6)))
            else:
                facades.append(("bld", side, z, z + length, base_x + side * rng.uniform(0, 2.5)))
            z += length
    facades.sort(key=lambda b: -b[2])
    for kind, side, z0, z1, xb in facades:
        if z1 <= _ZNEAR:
            continue
        if kind == "gap":
            _draw_tree(cv, rng, st, xb, max((z0 + z1) / 2, 2.0), scale=rng.uniform(1.2, 2.0))
            continue
        h = rng.uniform(6, 32)
        light = 1.08 if side == sun else 0.72
        col = _shade(_pick(rng, st["buildings"], 0.08), light * exposure**0.2)
        depth = 25.0
        cv.poly3([(xb, 0, z0), (xb + side * depth, 0, z0), (xb + side * depth, h, z0), (xb, h, z0)],
                 _shade(col, 0.72), CONS)  # fmt: skip
        cv.poly3([(xb, 0, z0), (xb, h, z0), (xb, h, z1), (xb, 0, z1)], col, CONS)
        if cam.f * 1.2 / max(z0, 1.0) < 1.5:  # windows would be under ~1.5 px: skip
            continue
        glass = _shade(_jit(rng, st["glass"]), light)
        frame = _shade(st["frame"], light * 0.9)
        floor_h = rng.uniform(2.9, 3.5)
        bay = rng.uniform(2.2, 3.4)
        win_w, win_h = bay * rng.uniform(0.4, 0.65), floor_h * rng.uniform(0.4, 0.6)
        framed = rng.random() < 0.5
        y = floor_h
        while y + win_h < h - 0.5:
            for zz in np.arange(z0 + bay / 2, z1 - win_w, bay):
                if zz + win_w < _ZNEAR:
                    continue
                quad = [
                    (xb, y, zz),
                    (xb, y + win_h, zz),
                    (xb, y + win_h, zz + win_w),
                    (xb, y, zz + win_w),
                ]
                if framed:
                    fq = [
                        (xb, y - 0.1, zz - 0.1),
                        (xb, y + win_h + 0.1, zz - 0.1),
                        (xb, y + win_h + 0.1, zz + win_w + 0.1),
                        (xb, y - 0.1, zz + win_w + 0.1),
                    ]
                    cv.poly3(fq, frame, CONS)
                cv.poly3(quad, _shade(glass, rng.uniform(0.8, 1.2)), CONS)
            y += floor_h
        if rng.random() < 0.7:  # ground floor: door or shop window
            zd = rng.uniform(z0 + 0.5, max(z0 + 0.6, z1 - 3.0))
            wd = rng.uniform(1.0, 3.0)
            cv.poly3([(xb, 0, zd), (xb, 2.3, zd), (xb, 2.3, zd + wd), (xb, 0, zd + wd)],
                     _shade(glass, 0.6), CONS)  # fmt: skip

    # fences along the sidewalks' outer edges (at least one per scene)
    fences = []
    for side in (-1, 1):
        z = rng.uniform(0, 10)
        while z < 90:
            length = rng.uniform(6, 30)
            if rng.random() < 0.35 * clutter:
                fences.append((side, z, z + length))
            z += length + rng.uniform(3, 20)
    if not fences:
        fences.append((1 if rng.random() < 0.5 else -1, rng.uniform(4, 12), rng.uniform(20, 40)))
    for side, z0, z1 in sorted(fences, key=lambda f: -f[1]):
        _draw_fence(cv, rng, st, side_x[side][1] - side * 0.05, z0, z1)

    # street objects, drawn far to near
    items: list[tuple[float, Callable[[], None]]] = []

    def add(z, fn, *args):
        items.append((z, lambda: fn(cv, rng, st, *args)))

    def kerb_x(side, inset=0.6):
        return side_x[side][0] + side * inset

    def walk_x(side):
        edge, outer, _ = side_x[side]
        return rng.uniform(min(edge, outer) + 0.6, max(edge, outer) - 0.6)

    def n_of(mean, minimum=0):
        return max(minimum, int(rng.poisson(mean * clutter)))

    for side in (-1, 1):
        z = rng.uniform(3, 15)
        while z < 140:
            add(z, _draw_pole, kerb_x(side), z, rng.uniform(5, 8.5), side, rng.random() < 0.6)
            z += rng.uniform(14, 30)
    z = rng.uniform(7, 18)  # make sure one pole stands near the camera
    add(z, _draw_pole, kerb_x(1), z, rng.uniform(5, 8), 1, rng.random() < 0.5)
    road_center = (left + right) / 2
    for i in range(n_of(0.8, 1)):
        side = 1 if (i == 0 or rng.random() < 0.6) else -1
        z = rng.uniform(14, 40)
        items.append((z, (lambda s, zz: lambda: _draw_traffic_light(
            cv, rng, st, kerb_x(s, 0.5), zz, s, road_center))(side, z)))  # fmt: skip
    for i in range(n_of(1.2, 1)):
        side = -1 if (i == 0 and rng.random() < 0.5) else (1 if rng.random() < 0.6 else -1)
        z = rng.uniform(6, 35)
        add(z, _draw_sign, kerb_x(side, 0.4), z)
    for _ in range(n_of(2.5, 1)):
        side = 1 if rng.random() < 0.5 else -1
        z = rng.uniform(5, 70)
        add(z, _draw_tree, kerb_x(side, rng.uniform(0.7, 1.2)), z, rng.uniform(0.9, 1.3))
    for i in range(n_of(2.5, 1)):
        side = 1 if (i == 0 or rng.random() < 0.5) else -1
        z = rng.uniform(6, 16) if i == 0 else rng.uniform(5, 60)
        add(z, _draw_person, walk_x(side), z)
    for i in range(n_of(0.8, 1)):
        z = rng.uniform(8, 25) if i == 0 else rng.uniform(6, 45)
        xr = right - rng.uniform(0.8, 1.4) if rng.random() < 0.7 else left + rng.uniform(0.8, 1.4)
        add(z, _draw_rider, xr, z)
    for _ in range(n_of(1.2)):
        side = 1 if rng.random() < 0.5 else -1
        z = rng.uniform(5, 50)
        add(z, _draw_clutter, walk_x(side), z, side)
    # cars: per lane, plus parked ones along the right kerb
    first = True
    for lane in range(n_lanes):
        xc = left + (lane + 0.5) * lane_w + rng.normal(0, 0.2)
        z = rng.uniform(9, 22) if lane == ego else rng.uniform(4, 25)
        while z < 140:
            if first or rng.random() < 0.55 * min(clutter, 1.5):
                items.append((z, (lambda x_, z_, o_: lambda: _draw_car(cv, rng, st, x_, z_, o_))(
                    xc, z, lane < n_on)))  # fmt: skip
                first = False
            z += rng.uniform(9, 30) / max(clutter, 0.3)
    if rng.random() < 0.5 * clutter:
        z = rng.uniform(4, 20)
        while z < 80:
            if rng.random() < 0.6:
                items.append(
                    (z, (lambda z_: lambda: _draw_car(cv, rng, st, right - 1.1, z_, False))(z))
                )
            z += rng.uniform(5.5, 9)

    for _, draw in sorted(items, key=lambda it: -it[0]):
        draw()


# ----------------------------------------------------------------------------- finishing
_GRAIN = np.zeros(256, np.float32)
_GRAIN[[R, SW, CONS, FENCE, POLE, LIGHT, SIGN, NAT, SKY, PERSON, RIDER, CAR, IGN]] = [
    9, 7, 7, 4, 4, 3, 2, 22, 1.5, 4, 4, 3, 5,
]  # fmt: skip


def _texture(rng, img: np.ndarray, lab: np.ndarray, noise_std: float) -> np.ndarray:
    """Per-class grain (asphalt, leaves, plaster) plus sensor noise."""
    h, w = lab.shape
    fine = value_noise(rng, h, w, cells=max(w, h) / 3.0, octaves=2) - 0.5
    mid = value_noise(rng, h, w, cells=max(w, h) / 24.0, octaves=2) - 0.5
    amp = _GRAIN[lab][..., None]
    img = img + amp * (1.4 * fine + 0.8 * mid)[..., None]
    if noise_std > 0:
        img = img + rng.normal(0, noise_std, img.shape).astype(np.float32)
    return img


def render_source(rng: np.random.Generator, width: int, height: int, p: Mapping) -> tuple:
    """One pinhole source scene: (RGB uint8 image (H, W, 3), label uint8 (H, W))."""
    f = width * rng.uniform(0.5, 0.6)
    cam = _Camera(width, height, f, width / 2 + rng.normal(0, 0.02) * width,
                  height * rng.uniform(0.4, 0.5), rng.uniform(1.3, 1.6))  # fmt: skip
    cv = _Canvas(cam)
    st = _style(0.0)
    _draw_street(cv, rng, st, float(p["clutter"]))
    img = _texture(rng, cv.img, cv.lab, float(p["source_noise"]))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), cv.lab


@lru_cache(maxsize=8)
def _fisheye_geometry(wt: int, ht: int, max_angle_deg: float, radius_frac: float):
    """Remap tables from output fisheye pixels to a wide pinhole canvas (equidistant lens)."""
    R_ = radius_frac * wt / 2.0
    theta_max = math.radians(max_angle_deg)
    fp = R_ / theta_max  # pinhole focal length matching the fisheye's centre resolution
    ys, xs = np.mgrid[0:ht, 0:wt].astype(np.float64)
    dx, dy = xs + 0.5 - wt / 2.0, ys + 0.5 - ht / 2.0
    r = np.hypot(dx, dy) / R_
    inside = r <= 1.0
    theta = np.minimum(r, 1.0) * theta_max
    scale = np.where(theta > 1e-9, np.tan(theta) / np.maximum(theta, 1e-9), 1.0)
    px, py = dx * scale, dy * scale
    half_w = int(np.ceil(np.abs(px[inside]).max())) + 3
    half_h = int(np.ceil(np.abs(py[inside]).max())) + 3
    map_x = (px + half_w).astype(np.float32)
    map_y = (py + half_h).astype(np.float32)
    map_x[~inside] = -10
    map_y[~inside] = -10
    return map_x, map_y, inside, r.astype(np.float32), fp, half_w, half_h


def _ego_mask(wt: int, ht: int) -> np.ndarray:
    yy, xx = np.mgrid[0:ht, 0:wt].astype(np.float32)
    return ((xx + 0.5 - wt / 2) / (0.62 * wt)) ** 2 + (
        (yy + 0.5 - 1.36 * ht) / (0.52 * ht)
    ) ** 2 <= 1


def render_target(
    rng: np.random.Generator, width: int, height: int, p: Mapping
) -> tuple[np.ndarray, np.ndarray]:
    """One fisheye target scene: (RGB uint8 image (H, W, 3), label uint8 (H, W))."""
    map_x, map_y, inside, r, fp, half_w, half_h = _fisheye_geometry(
        int(width), int(height), float(p["fisheye_max_angle_deg"]), float(p["fisheye_radius"])
    )
    shift = float(p["target_color_shift"])
    pitch = rng.normal(0, 0.03) * fp
    cam = _Camera(2 * half_w + 1, 2 * half_h + 1, fp, float(half_w), half_h + pitch,
                  rng.uniform(1.3, 1.7))  # fmt: skip
    cv = _Canvas(cam)
    st = _style(shift)
    _draw_street(cv, rng, st, float(p["clutter"]))
    canvas = _texture(rng, cv.img, cv.lab, 0.0)
    img = cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=(0, 0, 0))  # fmt: skip
    lab = cv2.remap(cv.lab, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=IGN)  # fmt: skip
    if p["ego_vehicle"]:
        ego = _ego_mask(int(width), int(height))
        yy = np.arange(height, dtype=np.float32)[:, None, None] / height
        paint = lerp((48, 50, 56), (18, 18, 22), np.clip((yy - 0.84) / 0.16, 0, 1))
        paint = np.broadcast_to(paint, img.shape)
        img = np.where(ego[..., None], paint, img)
        lab = np.where(ego, IGN, lab).astype(np.uint8)
    # lens and lighting: blur, warm cast, exposure, vignette, sensor noise
    img = cv2.GaussianBlur(img, (0, 0), 0.45 + 0.35 * shift)
    gain = np.array([1 + 0.12 * shift, 1.0, 1 - 0.2 * shift], np.float32)
    img = 255.0 * np.clip(img * gain / 255.0, 0, 1) ** (1 + 0.3 * shift)
    img *= np.float32(1 - 0.15 * shift)
    vig = 1 - float(p["target_vignette"]) * np.clip(r, 0, 1) ** 2.5
    img *= vig[..., None]
    if float(p["target_noise"]) > 0:
        img += rng.normal(0, float(p["target_noise"]), img.shape).astype(np.float32)
    img[~inside] = 0
    lab = np.where(inside, lab, IGN).astype(np.uint8)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), lab


# ----------------------------------------------------------------------------- generator
def _csv_bytes(header: tuple[str, ...], rows: list[tuple]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def iter_uda_sample(params: UdaSampleParams | None, seed: int) -> Iterator[tuple[str, bytes]]:
    """The files of :func:`generate_uda_sample` one at a time, ``(relative path, bytes)``:
    each image is drawn, encoded and handed over before the next is drawn, so a writer that
    saves each file as it comes holds one image, whatever the counts and sizes (the
    competition's full 2048x1024 source and 1920x1080 target images included)."""
    p = UdaSampleParams.of({} if params is None else params)
    counts = {
        "train_source": p["n_train_source"],
        "val_source": p["n_val_source"],
        "train_target": p["n_train_target"],
        "val_target": p["n_val_target"],
        "test": p["n_test"],
    }
    for split, (csv_name, img_dir, gt_dir, prefix, digits, domain, key) in _SPLITS.items():
        n = counts[split]
        if n == 0:
            continue
        rows = []
        for i in range(n):
            rng = child_rng(seed, key, i)
            if domain == "source":
                img, lab = render_source(rng, p["source_width"], p["source_height"], p)
            else:
                img, lab = render_target(rng, p["target_width"], p["target_height"], p)
            name = f"{prefix}{i:0{digits}d}"
            img_rel = f"{img_dir}/{name}.png"
            yield img_rel, encode_png(img)
            row = [name, f"./{img_rel}"]
            if gt_dir is not None:
                gt_rel = f"{gt_dir}/{name}.png"
                yield gt_rel, encode_png(lab)
                row.append(f"./{gt_rel}")
            rows.append(tuple(row))
        header = ("id", "img_path", "gt_path") if gt_dir else ("id", "img_path")
        yield csv_name, _csv_bytes(header, rows)
    test_ids = [f"TEST_{i:04d}" for i in range(p["n_test"])]
    yield (
        "sample_submission.csv",
        _csv_bytes(
            ("id", "mask_rle"),
            [(f"{t}_class_{c}", "-1") for t in test_ids for c in range(NUM_CLASSES)],
        ),
    )


def generate_uda_sample(params: UdaSampleParams | None, seed: int) -> dict[str, bytes]:
    """Draw the UDA sample: ``{relative path: file bytes}`` in the competition's layout.

    ``params``: a :class:`UdaSampleParams`, a plain dict of some of its keys (the rest take
    their defaults; an unknown key or a value out of range raises
    :class:`~podium.core.params.ParametersInvalid` naming ``sample_data.uda.<key>``) or
    None (all defaults); ``seed`` fixes every pixel and byte: the same (params, seed) always
    gives identical bytes, another seed other images. Each image draws from its own random
    stream (seed, split, index), so changing one split's count leaves the others' images as
    they were. Image sizes go up to 4096 a side, so the competition's full sizes (source
    2048x1024, target 1920x1080) can be drawn; :func:`iter_uda_sample` yields the same files
    one at a time for a sample too large to hold.
    """
    return dict(iter_uda_sample(params, seed))


# ----------------------------------------------------------------------------- contact sheet
def _pairs(
    files: Mapping[str, bytes], csv_name: str, n: int
) -> list[tuple[str, bytes, bytes | None]]:
    if csv_name not in files:
        return []
    rows = list(csv.DictReader(io.StringIO(files[csv_name].decode("utf-8"))))
    out = []
    for row in rows[:n]:
        img = files.get(row["img_path"].removeprefix("./"))
        gt = files.get(row.get("gt_path", "").removeprefix("./")) if row.get("gt_path") else None
        if img is not None:
            out.append((row["id"], img, gt))
    return out


def contact_sheet(files: Mapping[str, bytes], n: int = 8) -> Figure:
    """A figure of ``n`` source and ``n`` target samples, each with its label overlaid.

    Row pairs: image, then image blended with the label colours (class legend below; black =
    255 background). Targets come from ``val_target`` (labeled) when present, else from
    ``train_target`` without overlay. Uses the Agg-compatible ``Figure`` API, never pyplot.
    """
    cols = max(1, (n + 1) // 2)
    source = _pairs(files, "train_source.csv", cols)
    target = _pairs(files, "val_target.csv", cols) or _pairs(files, "train_target.csv", cols)
    groups = [("source", source), ("target", target)]
    fig = Figure(figsize=(2.6 * cols, 6.9), dpi=110)
    grid = fig.add_gridspec(5, cols, height_ratios=[1, 1, 1.1, 1.1, 0.3], left=0.01, right=0.99,
                            top=0.92, bottom=0.01, wspace=0.04, hspace=0.28)  # fmt: skip
    for g, (domain, samples) in enumerate(groups):
        for c in range(cols):
            ax_img, ax_lab = fig.add_subplot(grid[2 * g, c]), fig.add_subplot(grid[2 * g + 1, c])
            for ax in (ax_img, ax_lab):
                ax.set_axis_off()
            if c >= len(samples):
                continue
            sid, img_b, gt_b = samples[c]
            img = decode_image(img_b)
            ax_img.imshow(img)
            ax_img.set_title(f"{domain}: {sid}", fontsize=7)
            if gt_b is not None:
                lab = decode_image(gt_b, mode=None)
                over = (0.45 * img + 0.55 * colorize(lab)).astype(np.uint8)
                ax_lab.imshow(over)
                present = [CLASSES[k] for k in np.unique(lab) if k < NUM_CLASSES]
                ax_lab.set_title(f"{len(present)} classes", fontsize=6)
            else:
                ax_lab.imshow(img)
                ax_lab.set_title("(unlabeled)", fontsize=6)
    ax = fig.add_subplot(grid[4, :])
    ax.set_axis_off()
    from matplotlib.patches import Patch

    from podium.layouts.uda import PALETTE

    handles = [
        Patch(color=PALETTE[k] / 255.0, label=f"{k} {name}") for k, name in enumerate(CLASSES)
    ]
    handles.append(Patch(color=(0, 0, 0), label="255 background"))
    ax.legend(handles=handles, loc="center", ncol=min(7, len(handles)), fontsize=6, frameon=False)
    fig.suptitle("UDA sample: pinhole source (top) vs fisheye target (bottom), labels overlaid",
                 fontsize=9)  # fmt: skip
    return fig
