"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from one real face.

A real crop ``I`` is blended with an altered copy of itself through a soft mask around the
face: ``I_sb = M * I_s + (1 - M) * I_t``. The source ``I_s`` gets the paper's
source-target augmentation (colour: RGB shift, hue/saturation/value, brightness/contrast;
frequency: a 2x or 4x downscale, or a sharpen) and its shape change (a small resize and
translation); the mask ``M`` is the convex hull of the face landmarks, moved with the
source, elastically deformed, resized to a random size, eroded and blurred by Gaussians of
random size, then scaled by a blending ratio drawn from ``(0.25, 0.5, 0.75, 1, 1, 1)``.
The result shows the blending artefacts of a face swap (seams, colour and sharpness
mismatch, a slightly moved face) without any second identity.

The paper augments either the source or the target at random. Here only the source is
altered and the target stays the crop itself, so a pseudo-fake equals its real crop,
bit for bit, wherever ``M`` is 0: everything that differs lies inside the mask, which stays
within the landmark hull grown by the shape change, the elastic deformation and the blur.

Landmarks: dlib's 68-point shape predictor (shipped by ``face-recognition-models``) run
inside the face box the crop was cut around (:func:`face_box_in_crop`: the detector's box
mapped through the crop's margin; a crop with a margin is no face box, and dlib's points
on the whole crop are scattered). podium's records keep MTCNN's boxes, not its five
points, so where dlib's points are unusable (too few inside the crop, a hull of
implausible size) the fallback is an ellipse inside the face box (:func:`ellipse_landmarks`).

Every draw comes from the ``numpy.random.Generator`` passed in (albumentations' transforms
are given generators drawn from it), so the same generator state gives the same
pseudo-fake in any process. No kedro or mlflow imports.
"""

from __future__ import annotations

import functools
import importlib.util
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from podium.faces.detect import crop_layout

__all__ = [
    "BLEND_RATIOS",
    "LANDMARK_SOURCES",
    "BlendSettings",
    "augment_source",
    "deform_mask",
    "dlib_landmarks",
    "ellipse_landmarks",
    "face_box_in_crop",
    "face_landmarks",
    "hull_mask",
    "load_predictor",
    "self_blend",
]

#: Where the landmarks come from: dlib's 68 points (an ellipse where they are unusable), or
#: always the ellipse.
LANDMARK_SOURCES = ("dlib", "ellipse")
#: The paper's blending ratios (1 drawn half the time).
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
#: dlib's 68-point model inside the face-recognition-models package.
_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
#: The paper's shape change of the source: translation as a fraction of the side (x, y)
#: and a scale range.
_TRANSLATE = {"x": (-0.03, 0.03), "y": (-0.015, 0.015)}
_SCALE = (0.95, 1 / 0.95)
#: Usable dlib points: this share at least inside the crop, and a hull covering this
#: range of the face box's area (a frontal face's 68 points cover about 0.4 of it).
_MIN_INSIDE = 0.9
_HULL_AREA = (0.15, 1.2)
#: The ellipse fallback, in face-box units: centre (x, y) and semi-axes (x, y), about the
#: region dlib's 68 points span (brows to chin, cheek to cheek).
_ELLIPSE = ((0.5, 0.6), (0.4, 0.36))
_ELLIPSE_POINTS = 36
#: Pixels whose eroded-mask blur falls short of 1 by less than this count as 1 (float sums).
_ERODE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class BlendSettings:
    """How a pseudo-fake is made; the defaults are the paper's.

    ``blend_ratios``: the ratio scaling the mask, one drawn uniformly per pseudo-fake;
    ``mask_size``: the mask is resized to a side drawn in [low, high] pixels (each side
    on its own) before the blurs, so their reach is relative to the face; ``blur_kernels``:
    the two Gaussian kernels' sizes, odd, drawn in [low, high]; ``blur_sigma``: the second
    blur's sigma, drawn in [low, high]; ``elastic_alpha`` and ``elastic_sigma``: the mask's
    elastic deformation (albumentations' ElasticTransform).
    """

    blend_ratios: tuple[float, ...] = BLEND_RATIOS
    mask_size: tuple[int, int] = (192, 256)
    blur_kernels: tuple[int, int] = (5, 25)
    blur_sigma: tuple[float, float] = (5.0, 45.0)
    elastic_alpha: float = 50.0
    elastic_sigma: float = 7.0


# ---------------------------------------------------------------------------- landmarks


def face_box_in_crop(
    box: Sequence[float],
    crop_hw: Sequence[int],
    frame_hw: Sequence[int],
    margin: float,
    mode: str = "aspect",
) -> tuple[float, float, float, float]:
    """The detector's ``box`` (x1, y1, x2, y2 in frame pixels) in the pixels of the crop
    :func:`podium.faces.detect.crop_face` cut around it with ``margin`` and ``mode``, from a
    frame of ``frame_hw``; clipped to the crop."""
    height, width = int(crop_hw[0]), int(crop_hw[1])
    layout = crop_layout(box, margin, frame_hw, (height, width), mode)
    x1, y1, x2, y2 = (float(v) for v in box)
    xs, ys = layout.to_crop(np.array([x1, x2]), np.array([y1, y2]))
    xs, ys = np.clip(xs, 0, width), np.clip(ys, 0, height)
    return float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1])


def _predictor_path() -> Path:
    # face_recognition_models.pose_predictor_model_location() needs pkg_resources (gone
    # from recent setuptools): find the package's folder without importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "dlib's 68-point landmarks need the packages dlib-bin and face-recognition-models: "
            "`pip install dlib-bin face-recognition-models`, or use the ellipse landmarks"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models" / _PREDICTOR_FILE


@functools.cache
def load_predictor():
    """dlib's 68-point shape predictor, loaded once per process (about 0.4 s; a process
    that loads it before forking its DataLoader workers lends it to all of them)."""
    import dlib  # late: only pseudo-fake training needs it

    return dlib.shape_predictor(str(_predictor_path()))


def dlib_landmarks(crop: np.ndarray, face_box: Sequence[float] | None = None) -> np.ndarray:
    """dlib's 68 (x, y) points, float32 (68, 2), of the face in ``face_box`` (x1, y1, x2,
    y2 crop pixels; None: the whole crop)."""
    import dlib

    height, width = crop.shape[:2]
    x1, y1, x2, y2 = (0, 0, width, height) if face_box is None else face_box
    rect = dlib.rectangle(round(x1), round(y1), max(round(x2) - 1, 0), max(round(y2) - 1, 0))
    shape = load_predictor()(np.ascontiguousarray(crop), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def ellipse_landmarks(face_box: Sequence[float]) -> np.ndarray:
    """Points on an ellipse inside ``face_box`` (brows to chin, cheek to cheek), float32."""
    x1, y1, x2, y2 = (float(v) for v in face_box)
    (cu, cv), (au, av) = _ELLIPSE
    angles = np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)
    xs = x1 + (x2 - x1) * (cu + au * np.cos(angles))
    ys = y1 + (y2 - y1) * (cv + av * np.sin(angles))
    return np.stack([xs, ys], axis=1).astype(np.float32)


def _usable(points: np.ndarray, face_box: Sequence[float], crop_hw: Sequence[int]) -> bool:
    if len(points) < 3 or not np.isfinite(points).all():
        return False
    height, width = crop_hw[0], crop_hw[1]
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0)
    inside &= points[:, 1] < height
    box_area = max((face_box[2] - face_box[0]) * (face_box[3] - face_box[1]), 1.0)
    ratio = cv2.contourArea(cv2.convexHull(points.astype(np.float32))) / box_area
    return inside.mean() >= _MIN_INSIDE and _HULL_AREA[0] <= ratio <= _HULL_AREA[1]


def face_landmarks(
    crop: np.ndarray, face_box: Sequence[float] | None = None, source: str = "dlib"
) -> tuple[np.ndarray, str]:
    """``(points float32 (n, 2), where they came from)`` for the face in ``face_box`` of
    ``crop`` (clipped to it; None: the whole crop): dlib's 68 points, or the ellipse where
    they are unusable or ``source`` is ``"ellipse"``."""
    if source not in LANDMARK_SOURCES:
        raise ValueError(f"source must be one of {', '.join(LANDMARK_SOURCES)}, got {source!r}")
    height, width = crop.shape[:2]
    box = (0.0, 0.0, float(width), float(height)) if face_box is None else face_box
    x1, x2 = np.clip([box[0], box[2]], 0, width)
    y1, y2 = np.clip([box[1], box[3]], 0, height)
    if x2 - x1 < 2 or y2 - y1 < 2:  # a box outside the crop: the crop is the face's
        x1, y1, x2, y2 = 0.0, 0.0, float(width), float(height)
    box = (float(x1), float(y1), float(x2), float(y2))
    if source == "dlib":
        points = dlib_landmarks(crop, box)
        if _usable(points, box, (height, width)):
            return points, "dlib"
    return ellipse_landmarks(box), "ellipse"


# ---------------------------------------------------------------------------- the blend


def hull_mask(shape_hw: Sequence[int], landmarks: np.ndarray) -> np.ndarray:
    """1 inside the convex hull of ``landmarks``, else 0: float32 (H, W)."""
    mask = np.zeros((int(shape_hw[0]), int(shape_hw[1])), np.float32)
    hull = cv2.convexHull(np.round(np.asarray(landmarks, np.float32)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


class _Transforms:
    """The paper's albumentations pipelines, built once per setting and process; their
    draws come from generators set before each call (one thread at a time)."""

    def __init__(self, elastic_alpha: float, elastic_sigma: float) -> None:
        # the paper's values; its HSV limits are its own (a shift well below one level)
        colour = A.Compose(
            [
                A.RGBShift((-20, 20), (-20, 20), (-20, 20), p=0.3),
                A.HueSaturationValue((-0.3, 0.3), (-0.3, 0.3), (-0.3, 0.3), p=1),
                A.RandomBrightnessContrast((-0.1, 0.1), (-0.1, 0.1), p=1),
            ],
            p=1,
        )
        # the paper's downscale: by 2 or 4, nearest down, bilinear back up
        pair = {"downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_LINEAR}
        frequency = A.OneOf(
            [
                A.OneOf(
                    [
                        A.Downscale(scale_range=(0.5, 0.5), interpolation_pair=pair, p=1),
                        A.Downscale(scale_range=(0.25, 0.25), interpolation_pair=pair, p=1),
                    ],
                    p=1,
                ),
                A.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=1),
            ],
            p=1,
        )
        self.source = A.Compose([colour, frequency], p=1)
        self.shape = A.Compose(
            [A.Affine(translate_percent=_TRANSLATE, scale=_SCALE, fit_output=False, p=1)], p=1
        )
        self.elastic = A.Compose(
            [
                A.ElasticTransform(
                    alpha=elastic_alpha, sigma=elastic_sigma, noise_distribution="uniform", p=1
                )
            ],
            p=1,
        )


@functools.cache
def _transforms(elastic_alpha: float, elastic_sigma: float) -> _Transforms:
    return _Transforms(elastic_alpha, elastic_sigma)


def _seeded(compose: A.Compose, rng: np.random.Generator) -> A.Compose:
    """``compose`` drawing from generators taken from ``rng`` (numpy's and python's)."""
    seed = int(rng.integers(2**63))
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return compose


def augment_source(
    image: np.ndarray, rng: np.random.Generator, settings: BlendSettings | None = None
) -> np.ndarray:
    """The paper's source-target augmentation of ``image`` (colour, then downscale or
    sharpen), uint8."""
    settings = settings or BlendSettings()
    transforms = _transforms(settings.elastic_alpha, settings.elastic_sigma)
    return _seeded(transforms.source, rng)(image=image)["image"]


def _odd(rng: np.random.Generator, low: int, high: int) -> int:
    choices = np.arange(low + (low + 1) % 2, high + 1, 2)
    return int(rng.choice(choices))


def deform_mask(
    mask: np.ndarray, rng: np.random.Generator, settings: BlendSettings | None = None
) -> np.ndarray:
    """The paper's blend mask from a hull mask: resized to a random size, blurred, eroded
    to where the blur is still 1, blurred again, normalised to a maximum of 1 and resized
    back. Float32 (H, W) in [0, 1]."""
    settings = settings or BlendSettings()
    height, width = mask.shape[:2]
    low, high = settings.mask_size
    size_h, size_w = (int(v) for v in rng.integers(low, high + 1, size=2))
    work = cv2.resize(mask.astype(np.float32), (size_w, size_h), interpolation=cv2.INTER_LINEAR)
    if work.max() <= 0:
        raise ValueError("the hull mask is empty: the landmarks span no pixel")
    k1 = _odd(rng, *settings.blur_kernels)
    blurred = cv2.GaussianBlur(work, (k1, k1), 0)
    eroded = (blurred / blurred.max() >= 1 - _ERODE_TOLERANCE).astype(np.float32)
    if eroded.max() <= 0:  # a hull thinner than the kernel: keep the blurred mask
        eroded = blurred / blurred.max()
    k2 = _odd(rng, *settings.blur_kernels)
    sigma = float(rng.uniform(*settings.blur_sigma))
    soft = cv2.GaussianBlur(eroded, (k2, k2), sigma)
    soft = cv2.resize(soft / soft.max(), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    settings: BlendSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A Self-Blended Image of ``image`` (uint8 (H, W, 3)) around ``landmarks`` ((n, 2) x,
    y pixels): ``(blended uint8 (H, W, 3), mask float32 (H, W) in [0, 1])``, the mask being
    the blend weight of the altered copy. The target is ``image`` itself: the blend equals
    it wherever the mask is 0. Deterministic in ``rng``."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    settings = settings or BlendSettings()
    transforms = _transforms(settings.elastic_alpha, settings.elastic_sigma)
    mask = hull_mask(image.shape[:2], landmarks)
    # only the source is altered (the paper picks source or target at random): the target
    # stays the real crop, so nothing outside the mask changes
    source = augment_source(image, rng, settings)
    moved = _seeded(transforms.shape, rng)(image=source, mask=mask)
    source, mask = moved["image"], moved["mask"]
    if mask.max() <= 0:  # the shape change cannot push a face out; keep the hull if it did
        mask = hull_mask(image.shape[:2], landmarks)
    mask = _seeded(transforms.elastic, rng)(image=mask[..., None])["image"][..., 0]
    blend = deform_mask(np.clip(mask, 0, 1), rng, settings)
    blend *= float(rng.choice(np.asarray(settings.blend_ratios, np.float32)))
    weight = blend[..., None]
    mixed = weight * source.astype(np.float32) + (1.0 - weight) * image.astype(np.float32)
    blended = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return blended, blend
