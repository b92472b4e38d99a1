"""Split index tables, per-image statistics, rare-class sampling, simulated fisheye, datasets.

A split is a small table (``split, id, img_path, gt_path, height, width``), never an array
of pixels: :func:`inspect_images` reads every image and label once, image by image
(optionally over a Dask client), validates it and keeps only what downstream needs (its
size and, for labels, the pixels of each class at the working resolution). The torch
datasets decode and resize one item at a time inside DataLoader workers, so memory does not
grow with the number or size of the images.

Bad input: a label of the wrong size or with an unknown class value stops the run naming the
file, its csv entry and the fix (metadata to correct); an image or label that cannot be
decoded at all (a truncated PNG) is one broken item, skipped and listed in the bad-images
table with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache, partial
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from podium.core.augment import build_transforms
from podium.core.distributed import ItemError, map_items
from podium.layouts.uda import (
    IGNORE_INDEX,
    NUM_CLASSES,
    SPLITS,
    UdaLayoutError,
    read_image,
    read_label,
)
from podium.pipelines.uda import background as bg

#: Columns of the image table (one row per readable image of every split).
IMAGE_COLUMNS = ("split", "id", "img_path", "gt_path", "height", "width")
#: Columns of the bad-images report.
BAD_COLUMNS = ("split", "id", "path", "reason")
CLASS_COLUMNS = tuple(str(c) for c in range(NUM_CLASSES))
_MAX_LISTED = 5


def _resize(array: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=interpolation)


def read_resized_image(path: str, size: Sequence[int]) -> np.ndarray:
    """The RGB image at ``path`` area-resized to ``size`` (h, w): (h, w, 3) uint8."""
    return _resize(read_image(path), (int(size[0]), int(size[1])), cv2.INTER_AREA)


def read_resized_pair(img_path: str, gt_path: str, size: Sequence[int]) -> tuple:
    """Image (area-resized) and label (nearest-resized, no blended class values) at ``size``."""
    size = (int(size[0]), int(size[1]))
    image = read_image(img_path)
    label = read_label(gt_path, image.shape)
    return _resize(image, size, cv2.INTER_AREA), _resize(label, size, cv2.INTER_NEAREST)


def _class_counts(label: np.ndarray) -> np.ndarray:
    return np.bincount(label.ravel(), minlength=256)[:NUM_CLASSES]


def inspect_item(item: Mapping[str, Any], size: Sequence[int]) -> dict[str, Any]:
    """One image (and its label): decoded once to check it, then reduced to its size and,
    for a label, the pixels of each class after nearest-resizing to ``size`` (h, w).

    Raises :class:`~podium.layouts.uda.UdaUnreadableFile` for a file that cannot be decoded
    and :class:`~podium.layouts.uda.UdaLayoutError` for a label of the wrong size or with
    unknown class values.
    """
    image = read_image(item["img_path"])
    out: dict[str, Any] = {"height": int(image.shape[0]), "width": int(image.shape[1])}
    gt_path = item.get("gt_path")
    if isinstance(gt_path, str) and gt_path:
        label = read_label(gt_path, image.shape)
        resized = _resize(label, (int(size[0]), int(size[1])), cv2.INTER_NEAREST)
        out["counts"] = _class_counts(resized).tolist()
    return out


def _entry(item: Mapping[str, Any]) -> str:
    csv_name = SPLITS.get(item["split"], (f"{item['split']}.csv",))[0]
    return f"entry {item['id']!r} of {csv_name}"


def inspect_images(
    index: pd.DataFrame,
    sizes: Mapping[str, Sequence[int]],
    client: Any | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every row of ``index`` (``split, id, img_path, gt_path``) read once, image by image.

    ``sizes`` maps a split to the working size (h, w) its labels are counted at. Returns

    - the image table (:data:`IMAGE_COLUMNS`), in index order, without the broken items;
    - class pixel counts (``split, id, "0".."11"``) of every labeled image;
    - the bad images (:data:`BAD_COLUMNS`): files that could not be decoded, with why.

    A label of the wrong size or with unknown class values raises
    :class:`~podium.layouts.uda.UdaLayoutError` listing each such file with its csv entry:
    those are errors in the data to fix, not broken downloads.
    """
    items = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in index[["split", "id", "img_path", "gt_path"]].to_dict("records")
    ]
    by_split = {split: partial(inspect_item, size=tuple(size)) for split, size in sizes.items()}
    missing = sorted({item["split"] for item in items} - set(by_split))
    if missing:
        raise ValueError(f"no working size for split(s) {missing}; known: {sorted(by_split)}")
    jobs = [(item, by_split[item["split"]]) for item in items]
    pairs = map_items(client, _inspect_with_split, jobs, progress, "uda images")
    rows, counts, bad, invalid = [], [], [], []
    for (item, _), result in pairs:
        if isinstance(result, ItemError):
            message = result.error.split(": ", 1)[-1]
            if result.error_type == "UdaLayoutError":
                invalid.append(f"{message} ({_entry(item)})")
            else:  # an undecodable file or a lost worker: one broken item
                gt = item["gt_path"]
                path = gt if gt and gt in message else item["img_path"]
                bad.append(
                    {"split": item["split"], "id": item["id"], "path": path, "reason": result.error}
                )
            continue
        rows.append({**item, "height": result["height"], "width": result["width"]})
        if "counts" in result:
            per_class = dict(zip(CLASS_COLUMNS, result["counts"], strict=True))
            counts.append({"split": item["split"], "id": item["id"], **per_class})
    if invalid:
        shown = "; ".join(invalid[:_MAX_LISTED])
        more = len(invalid) - _MAX_LISTED
        raise UdaLayoutError(
            f"{len(invalid)} label file(s) do not match their images or hold unknown class "
            f"values: {shown}{f' (and {more} more)' if more > 0 else ''}; fix: correct those "
            f"label PNGs or remove their rows from the csv"
        )
    images = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
    images[["height", "width"]] = images[["height", "width"]].astype(np.int64)
    counts_table = pd.DataFrame(counts, columns=["split", "id", *CLASS_COLUMNS])
    counts_table[list(CLASS_COLUMNS)] = counts_table[list(CLASS_COLUMNS)].astype(np.int64)
    return images, counts_table, pd.DataFrame(bad, columns=list(BAD_COLUMNS))


def _inspect_with_split(job: tuple[Mapping[str, Any], Callable]) -> dict[str, Any]:
    item, inspect = job
    return inspect(item)


def class_pixel_counts(labels: Iterable[np.ndarray], ids: Sequence[str]) -> pd.DataFrame:
    """Pixels of each class per image (one row per image, one column per class index),
    one label at a time."""
    rows = [_class_counts(np.asarray(label)) for label in labels]
    counts = np.stack(rows) if rows else np.zeros((0, NUM_CLASSES), np.int64)
    return pd.DataFrame(counts, columns=list(CLASS_COLUMNS)).assign(id=list(ids))[
        ["id", *CLASS_COLUMNS]
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
def fisheye_maps(
    height: int, width: int, max_angle_deg: float, image_circle: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap tables that view a pinhole image through an equidistant fisheye lens:
    straight lines bend and the centre is magnified relative to the rim, like the target
    camera. ``image_circle``: the circle's radius over half the frame's width (1.0: it
    touches the left and right edges, as the sample's target camera; the frame's corners
    then lie outside it, see :func:`outside_image_circle`); None: it touches the frame's
    corners, so the whole frame stays covered."""
    theta_max = math.radians(max_angle_deg)
    radius = math.hypot(width, height) / 2 if image_circle is None else image_circle * width / 2
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


@lru_cache(maxsize=8)
def outside_image_circle(height: int, width: int, image_circle: float | None) -> np.ndarray:
    """Boolean (h, w): the pixels whose centre lies outside the image circle of
    :func:`fisheye_maps` (none for ``image_circle`` None)."""
    if image_circle is None:
        return np.zeros((height, width), bool)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.hypot(xs + 0.5 - width / 2, ys + 0.5 - height / 2)
    return r > image_circle * width / 2


def to_fisheye(
    image: np.ndarray,
    label: np.ndarray,
    max_angle_deg: float,
    image_circle: float | None = None,
    outside_label: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """The source image (bilinear) and its label (nearest) seen through :func:`fisheye_maps`;
    with an ``image_circle``, pixels outside it are black and labelled ``outside_label``
    (background, as the target camera's corners)."""
    h, w = image.shape[:2]
    map_x, map_y = fisheye_maps(h, w, float(max_angle_deg), image_circle)
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    warped_label = cv2.remap(
        label,
        map_x,
        map_y,
        cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=IGNORE_INDEX,
    )
    if image_circle is not None:
        outside = outside_image_circle(h, w, float(image_circle))
        warped[outside] = 0
        warped_label[outside] = outside_label
    return warped, warped_label


def _crop_first(crop_size: Sequence[int], augment: list, parameter: str):
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
    # Any fixed seed: every item reseeds both from numpy's global RNG (_reseed).
    crop = build_transforms(spec, parameter=parameter, seed=0)
    rest = build_transforms(augment, parameter=parameter, seed=0)
    return crop, rest


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


def _column(frame: pd.DataFrame, column: str) -> list[str]:
    return [str(p) for p in frame[column]]


def _reseed(*composes: Any) -> None:
    """Seed each item's augmentation draws from numpy's global RNG, as the fisheye draw is.

    That RNG is what ``seed_worker`` seeds in every DataLoader worker and what a training
    checkpoint restores in the main process, so the draws follow the run's seed with or
    without workers and a resumed run repeats them; an albumentations pipeline's own
    generator is reseeded only in fresh workers and is in no checkpoint.
    """
    for compose, seed in zip(composes, np.random.randint(0, 2**31 - 1, len(composes)), strict=True):
        compose.set_random_seed(int(seed))


class SourceDataset(Dataset):
    """Labeled source crops read lazily: each item decodes its image and label files,
    resizes them to ``size`` (h, w), then applies the optional simulated fisheye, the random
    crop and the augment list. ``frame`` needs ``img_path`` and ``gt_path``. ``background``
    (``uda.data.background``): ``class`` trains label 255 as class 12, and the fisheye's
    outside-the-circle pixels are background too; padding stays 255 (ignored).

    Returns ``(image float (3, h, w) in [0, 1], label long (h, w))``.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        size: Sequence[int],
        crop_size: Sequence[int],
        augment: list,
        fisheye: Mapping[str, Any],
        parameter: str,
        background: str = "class",
    ) -> None:
        self.img_paths, self.gt_paths = _column(frame, "img_path"), _column(frame, "gt_path")
        self.size = (int(size[0]), int(size[1]))
        self.crop, self.transform = _crop_first(crop_size, augment, parameter)
        self.fisheye = dict(fisheye)
        self.background = bg.check_mode(background)

    def __len__(self) -> int:
        return len(self.img_paths)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and label of item ``index`` at the working size, before augmentation."""
        return read_resized_pair(self.img_paths[index], self.gt_paths[index], self.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.pair(index)
        label = bg.training_label(label, self.background)
        _reseed(self.crop, self.transform)
        if self.fisheye.get("enabled") and np.random.random() < float(self.fisheye["p"]):
            circle = self.fisheye.get("image_circle")
            image, label = to_fisheye(
                image,
                label,
                float(self.fisheye["max_angle_deg"]),
                None if circle is None else float(circle),
                bg.outside_label(self.background),
            )
        out = self.crop(image=image, mask=label)
        out = self.transform(image=out["image"], mask=out["mask"])
        return _to_tensor(out["image"]), torch.from_numpy(np.asarray(out["mask"])).long()


class TargetDataset(Dataset):
    """Unlabeled target crops read lazily, with geometric augmentation only: the teacher
    must see the image as the camera took it (photometric changes come later, for the
    student only). ``frame`` needs ``img_path``."""

    def __init__(
        self,
        frame: pd.DataFrame,
        size: Sequence[int],
        crop_size: Sequence[int],
        augment: list,
        parameter: str,
    ) -> None:
        self.img_paths = _column(frame, "img_path")
        self.size = (int(size[0]), int(size[1]))
        self.crop, self.transform = _crop_first(crop_size, augment, parameter)

    def __len__(self) -> int:
        return len(self.img_paths)

    def image(self, index: int) -> np.ndarray:
        """Item ``index`` at the working size, before augmentation."""
        return read_resized_image(self.img_paths[index], self.size)

    def __getitem__(self, index: int) -> torch.Tensor:
        _reseed(self.crop, self.transform)
        out = self.crop(image=self.image(index))
        return _to_tensor(self.transform(image=out["image"])["image"])


class PairedDataset(Dataset):
    """A source and a target item per sample, for the index pairs ``(i, j)`` a
    ``core.ddp.ZipSampler`` draws: ``(source image, source label, target image)``."""

    def __init__(self, source: SourceDataset, target: TargetDataset) -> None:
        self.source, self.target = source, target

    @classmethod
    def for_training(
        cls,
        source: pd.DataFrame,
        target: pd.DataFrame,
        sizes: Sequence[Sequence[int]],
        training: Mapping[str, Any],
        parameter: str = "uda.training",
        background: str = "class",
    ) -> PairedDataset:
        """The source and target tables read as the ``uda.training`` block says (crop,
        augment lists, simulated fisheye), at the working sizes ``(source, target)``, label
        255 as ``background`` says (``uda.data.background``)."""
        t = training
        return cls(
            SourceDataset(
                source,
                sizes[0],
                t["crop_size"],
                t["source_augment"],
                t["source_fisheye"],
                f"{parameter}.source_augment",
                background,
            ),
            TargetDataset(
                target, sizes[1], t["crop_size"], t["target_augment"], f"{parameter}.target_augment"
            ),
        )

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, pair: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        i, j = pair
        return (*self.source[i], self.target[j])


class PredictDataset(Dataset):
    """Whole images for prediction, read lazily: ``(image uint8 (h, w, 3) at the working
    size, (height, width) of the original image, index)``."""

    def __init__(self, frame: pd.DataFrame, size: Sequence[int]) -> None:
        self.img_paths = _column(frame, "img_path")
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.img_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = read_image(self.img_paths[index])
        original = torch.tensor(image.shape[:2], dtype=torch.int64)
        resized = _resize(image, self.size, cv2.INTER_AREA)
        resized = np.require(resized, requirements=["C_CONTIGUOUS", "WRITEABLE"])
        return torch.from_numpy(resized), original, index
