"""Images and labels as arrays, rare-class sampling weights, simulated fisheye, datasets.

Every split is read once, validated (a label of the wrong size or with an unknown class
value stops the run naming the file) and resized to its working resolution, so training
reads arrays instead of decoding PNGs thousands of times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from podium.core.augment import build_transforms
from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES, UdaLayoutError, read_image, read_label

Arrays = dict[str, Any]


def _resize(array: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=interpolation)


def load_split(
    frame: pd.DataFrame, size: Sequence[int], *, labeled: bool, keep_original_labels: bool
) -> Arrays:
    """The split's images resized to ``size`` (h, w) as (N, h, w, 3) uint8, with ``ids``
    and ``original_size``; labeled splits add ``labels`` (nearest-resized to ``size``) and,
    with ``keep_original_labels``, ``original_labels`` at the images' own size for scoring.

    All images of a split must share one size (as in the competition): predictions are
    returned at that size.
    """
    size = (int(size[0]), int(size[1]))
    images, labels, originals = [], [], []
    original_size: tuple[int, int] | None = None
    for row in frame.itertuples(index=False):
        image = read_image(row.img_path)
        if original_size is None:
            original_size = image.shape[:2]
        elif image.shape[:2] != original_size:
            raise UdaLayoutError(
                f"image file {row.img_path} is {image.shape[1]}x{image.shape[0]} (WxH) but the "
                f"split's first image is {original_size[1]}x{original_size[0]}; fix: every "
                f"image of a split must have one size"
            )
        images.append(_resize(image, size, cv2.INTER_AREA))
        if labeled:
            label = read_label(row.gt_path, image.shape)
            labels.append(_resize(label, size, cv2.INTER_NEAREST))
            if keep_original_labels:
                originals.append(label)
    n = len(images)
    out: Arrays = {
        "ids": frame["id"].tolist(),
        "images": np.stack(images) if n else np.zeros((0, *size, 3), np.uint8),
        "original_size": list(original_size or size),
    }
    if labeled:
        out["labels"] = np.stack(labels) if n else np.zeros((0, *size), np.uint8)
        if keep_original_labels:
            out["original_labels"] = (
                np.stack(originals) if n else np.zeros((0, *out["original_size"]), np.uint8)
            )
    return out


def class_pixel_counts(labels: np.ndarray, ids: Sequence[str]) -> pd.DataFrame:
    """Pixels of each class per image (one row per image, one column per class index)."""
    counts = (
        np.stack([np.bincount(label.ravel(), minlength=256)[:NUM_CLASSES] for label in labels])
        if len(labels)
        else np.zeros((0, NUM_CLASSES), np.int64)
    )
    return pd.DataFrame(counts, columns=[str(c) for c in range(NUM_CLASSES)]).assign(id=list(ids))[
        ["id", *[str(c) for c in range(NUM_CLASSES)]]
    ]


def rare_class_probabilities(counts: pd.DataFrame, temperature: float) -> np.ndarray:
    """DAFormer's rare-class sampling: P(c) proportional to exp((1 - f_c) / T), f_c the
    class's share of labeled pixels; classes never seen get probability 0."""
    pixels = counts[[str(c) for c in range(NUM_CLASSES)]].to_numpy(np.float64).sum(axis=0)
    if pixels.sum() == 0:
        raise ValueError("rare-class sampling needs labeled source pixels; none were found")
    frequency = pixels / pixels.sum()
    logits = np.where(pixels > 0, (1 - frequency) / temperature, -np.inf)
    logits = logits - logits[np.isfinite(logits)].max()
    p = np.exp(logits)
    return p / p.sum()


def rare_class_image_weights(
    counts: pd.DataFrame, temperature: float, min_pixels: int
) -> np.ndarray:
    """Sampling probability of each image: draw a class c with :func:`rare_class_probabilities`,
    then uniformly one of the images holding at least ``min_pixels`` of c."""
    class_p = rare_class_probabilities(counts, temperature)
    present = counts[[str(c) for c in range(NUM_CLASSES)]].to_numpy() >= min_pixels
    holders = present.sum(axis=0)
    per_image = np.where(present, class_p / np.maximum(holders, 1), 0.0).sum(axis=1)
    if per_image.sum() == 0:
        return np.full(len(counts), 1.0 / max(len(counts), 1))
    return per_image / per_image.sum()


@lru_cache(maxsize=8)
def fisheye_maps(height: int, width: int, max_angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap tables that view a pinhole image through an equidistant fisheye lens whose
    image circle touches the frame's corners, so the whole frame stays covered: straight
    lines bend and the centre is magnified relative to the rim, like the target camera."""
    theta_max = math.radians(max_angle_deg)
    radius = math.hypot(width, height) / 2
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs + 0.5 - width / 2, ys + 0.5 - height / 2
    r = np.hypot(dx, dy) / radius
    theta = r * theta_max
    # pinhole radius for angle theta, scaled so the corners map onto the corners
    scale = np.where(theta > 1e-9, np.tan(theta) / np.maximum(theta, 1e-9), 1.0)
    scale = scale / (math.tan(theta_max) / theta_max)
    map_x = (dx * scale + width / 2 - 0.5).astype(np.float32)
    map_y = (dy * scale + height / 2 - 0.5).astype(np.float32)
    return map_x, map_y


def to_fisheye(
    image: np.ndarray, label: np.ndarray, max_angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """The source image (bilinear) and its label (nearest) seen through :func:`fisheye_maps`."""
    map_x, map_y = fisheye_maps(image.shape[0], image.shape[1], float(max_angle_deg))
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    warped_label = cv2.remap(
        label,
        map_x,
        map_y,
        cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=IGNORE_INDEX,
    )
    return warped, warped_label


def _crop_first(crop_size: Sequence[int], augment: list, parameter: str, seed: int | None):
    height, width = int(crop_size[0]), int(crop_size[1])
    spec = [
        {
            "name": "PadIfNeeded",
            "min_height": height,
            "min_width": width,
            "border_mode": cv2.BORDER_CONSTANT,
            "fill": 0,
            "fill_mask": IGNORE_INDEX,
        },
        {"name": "RandomCrop", "height": height, "width": width},
    ]
    crop = build_transforms(spec, parameter=parameter, seed=seed)
    rest = build_transforms(augment, parameter=parameter, seed=seed)
    return crop, rest


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


class SourceDataset(Dataset):
    """Labeled source crops: optional simulated fisheye, random crop, then the augment list.

    Returns ``(image float (3, h, w) in [0, 1], label long (h, w))``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        crop_size: Sequence[int],
        augment: list,
        fisheye: Mapping[str, Any],
        parameter: str,
        seed: int | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.crop, self.transform = _crop_first(crop_size, augment, parameter, seed)
        self.fisheye = dict(fisheye)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.images[index], self.labels[index]
        # numpy's global RNG: seed_worker reseeds it per DataLoader worker
        if self.fisheye.get("enabled") and np.random.random() < float(self.fisheye["p"]):
            image, label = to_fisheye(image, label, float(self.fisheye["max_angle_deg"]))
        out = self.crop(image=image, mask=label)
        out = self.transform(image=out["image"], mask=out["mask"])
        return _to_tensor(out["image"]), torch.from_numpy(np.asarray(out["mask"])).long()


class TargetDataset(Dataset):
    """Unlabeled target crops with geometric augmentation only: the teacher must see the
    image as the camera took it (photometric changes come later, for the student only)."""

    def __init__(
        self,
        images: np.ndarray,
        crop_size: Sequence[int],
        augment: list,
        parameter: str,
        seed: int | None = None,
    ) -> None:
        self.images = images
        self.crop, self.transform = _crop_first(crop_size, augment, parameter, seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        out = self.crop(image=self.images[index])
        return _to_tensor(self.transform(image=out["image"])["image"])
