"""Crops, minority resampling and the torch Dataset of the mask pipeline.

No kedro or mlflow imports. Crops are computed once (a few hundred small uint8 arrays) and
kept in memory; the Dataset only augments and normalises them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from podium.core.config import check_choice, check_keys, check_range
from podium.faces import crop_face, detect_faces
from podium.layouts.mask import ImageReadError, read_image

CROP_METHODS = ("centre", "face")
CROP_KEYS = ("method", "centre", "face", "output")
#: Outcome of each image's crop, written to the crop report.
CROPPED, FACE_NOT_FOUND, UNREADABLE = "cropped", "face_not_found", "unreadable"
TASKS = ("mask", "gender", "age_class")


def _size(spec: Mapping[str, Any], parameter: str) -> tuple[int, int]:
    check_keys(parameter, spec, ("height", "width"), required=("height", "width"))
    for key in ("height", "width"):
        check_range(f"{parameter}.{key}", spec[key], low=1)
    return int(spec["height"]), int(spec["width"])


def centre_crop(image: np.ndarray, size: tuple[int, int], output: tuple[int, int]) -> np.ndarray:
    """The central ``size`` (height, width) region (clipped to the image), resized to ``output``."""
    height, width = image.shape[:2]
    crop_h, crop_w = min(size[0], height), min(size[1], width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    region = image[top : top + crop_h, left : left + crop_w]
    return cv2.resize(region, (output[1], output[0]), interpolation=cv2.INTER_AREA)


def crop_images(
    paths: Sequence[str], crop: Mapping[str, Any], device: torch.device | str = "cpu"
) -> tuple[np.ndarray, pd.DataFrame]:
    """Crop every photo; return an (N, H, W, 3) uint8 array and one report row per photo.

    ``face`` falls back to the centre crop where MTCNN finds no face, and an unreadable photo
    becomes a black image: both are marked in the report's ``status`` (never silent), and
    training drops the unreadable ones.
    """
    check_keys("mask.crop", crop, CROP_KEYS, required=("method", "centre", "output"))
    method = check_choice("mask.crop.method", crop["method"], CROP_METHODS)
    centre_size = _size(crop["centre"], "mask.crop.centre")
    output = _size(crop["output"], "mask.crop.output")
    images: list[np.ndarray | None] = []
    status, reasons = [], []
    for path in paths:
        try:
            images.append(read_image(path))
            status.append(CROPPED)
            reasons.append("")
        except ImageReadError as error:
            images.append(None)
            status.append(UNREADABLE)
            reasons.append(str(error))

    boxes: list = [None] * len(images)
    if method == "face":
        face = check_keys(
            "mask.crop.face",
            crop.get("face") or {},
            ("margin", "min_confidence", "batch_size", "downscale"),
            required=("margin", "min_confidence", "batch_size", "downscale"),
        )
        readable = [i for i, image in enumerate(images) if image is not None]
        found = detect_faces(
            [images[i] for i in readable],
            device=device,
            batch_size=face["batch_size"],
            downscale=face["downscale"],
            min_confidence=face["min_confidence"],
        )
        for i, detections in zip(readable, found, strict=True):
            if detections:
                boxes[i] = detections[0].box
            else:
                status[i] = FACE_NOT_FOUND
                reasons[i] = "no face above mask.crop.face.min_confidence: centre crop used"

    crops = np.zeros((len(images), *output, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        if image is None:
            continue
        if boxes[i] is not None:
            crops[i] = crop_face(image, boxes[i], crop["face"]["margin"], output)
        else:
            crops[i] = centre_crop(image, centre_size, output)
    report = pd.DataFrame({"path": list(paths), "status": status, "reason": reasons})
    return crops, report


def oversample_minority(
    frame: pd.DataFrame, column: str, minority_value: int, factor: int
) -> pd.DataFrame:
    """Rows of ``frame`` plus ``factor - 1`` extra copies of each minority row.

    The added ``augmented`` column is True exactly on the copies: only they are augmented,
    the originals keep the plain crop (the write-up's choice for the rare 60+ class).
    """
    check_range("mask.resampling.factor", factor, low=1)
    out = frame.assign(augmented=False)
    minority = out[out[column] == minority_value]
    copies = [minority.assign(augmented=True)] * (int(factor) - 1)
    return pd.concat([out, *copies], ignore_index=True)


class CropDataset(Dataset):
    """Crops with their labels: ``{"image": CHW float tensor, <target name>: label, ...}``.

    ``augment`` runs only on rows whose ``augmented`` flag is set, ``preprocess``
    (normalise, to tensor) on every row.
    """

    def __init__(
        self,
        crops: np.ndarray,
        rows: np.ndarray,
        targets: Mapping[str, np.ndarray],
        preprocess: A.Compose,
        augment: A.Compose | None = None,
        augmented: np.ndarray | None = None,
    ) -> None:
        self.crops = crops
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = {name: np.asarray(v, dtype=np.int64) for name, v in targets.items()}
        self.preprocess = preprocess
        self.augment = augment
        self.augmented = (
            np.zeros(len(self.rows), bool) if augmented is None else np.asarray(augmented, bool)
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.crops[self.rows[i]]
        if self.augment is not None and self.augmented[i]:
            image = self.augment(image=image)["image"]
        item: dict[str, Any] = {"image": self.preprocess(image=image)["image"]}
        for name, values in self.targets.items():
            item[name] = torch.as_tensor(values[i])
        return item
