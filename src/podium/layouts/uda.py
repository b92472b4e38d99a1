"""On-disk layout of the Samsung AI Challenge 2023 "Camera-Invariant Domain Adaptation" data.

The competition (Dacon 236132) ships ``open.zip``; unpacked, its root holds::

    train_source.csv        id, img_path, gt_path   (TRAIN_SOURCE_0000 ..., 2048x1024 pinhole)
    val_source.csv          id, img_path, gt_path   (VALID_SOURCE_000 ..., 2048x1024 pinhole)
    train_target.csv        id, img_path            (TRAIN_TARGET_0000 ..., 1920x1080 fisheye,
                                                     no labels)
    test.csv                id, img_path            (TEST_0000 ..., 1920x1080 fisheye)
    sample_submission.csv   id, mask_rle            (one row per test image AND class)
    train_source_image/  train_source_gt/  val_source_image/  val_source_gt/
    train_target_image/  test_image/

Paths in the csvs are relative to the root (``./train_source_image/TRAIN_SOURCE_0000.png``).
Label PNGs are single-channel uint8 with the class index 0..11 (:data:`CLASSES`) per pixel
and 255 for background / ignore (the Dacon baseline maps 255 to a 13th class, 12).

podium's sample (:mod:`podium.sample_data.uda`) adds one split the competition did not have:
``val_target.csv`` (id, img_path, gt_path) with ``val_target_image/`` and ``val_target_gt/``,
labeled fisheye images for EVALUATION ONLY (target mIoU); no training node may read them.
It is optional here: the real data has no such split.

Submission format (the real ``sample_submission.csv``): ids ``TEST_0000_class_0`` ...
``TEST_0000_class_11`` (12 rows per test image, in that order), ``mask_rle`` the binary mask
of that class at :data:`SUBMISSION_SIZE` (960x540), run-length encoded over the row-major
(C-order, ``mask.flatten()``) pixels as space-separated 1-indexed ``start length`` pairs, or
``-1`` when the class is absent.

No kedro or mlflow imports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from podium.layouts.tables import read_csv_with_columns

__all__ = [
    "CLASSES",
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "PALETTE",
    "SPLITS",
    "SUBMISSION_FILE",
    "SUBMISSION_SIZE",
    "UdaLayoutError",
    "UdaUnreadableFile",
    "colorize",
    "index_uda",
    "read_image",
    "read_label",
]

#: Class names by index, as in the competition.
CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "construction",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "nature",
    "sky",
    "person",
    "rider",
    "car",
)
NUM_CLASSES = len(CLASSES)
#: Label value of background / unlabeled pixels (never scored).
IGNORE_INDEX = 255
#: (width, height) of the masks a submission encodes.
SUBMISSION_SIZE = (960, 540)

#: Display colours per class (the Cityscapes colours of the matching classes).
PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
    ],
    dtype=np.uint8,
)

#: split -> (csv file, required columns, required in every copy of the data).
SPLITS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "train_source": ("train_source.csv", ("id", "img_path", "gt_path"), True),
    "val_source": ("val_source.csv", ("id", "img_path", "gt_path"), True),
    "train_target": ("train_target.csv", ("id", "img_path"), True),
    "val_target": ("val_target.csv", ("id", "img_path", "gt_path"), False),
    "test": ("test.csv", ("id", "img_path"), True),
}
SUBMISSION_FILE = "sample_submission.csv"
_SUBMISSION_COLUMNS = ("id", "mask_rle")

_FIX_DATA = (
    "unpack the competition's open.zip into {root}, or generate the sample with "
    "`kedro run --pipeline=sample_data --tags=uda`"
)
_MAX_LISTED = 5


class UdaLayoutError(ValueError):
    """The UDA data on disk does not have the competition's layout (names the file and fix)."""


class UdaUnreadableFile(UdaLayoutError):
    """One image or label file is missing or cannot be decoded (truncated, not an image).

    A subclass of :class:`UdaLayoutError`, so callers that stop on any layout error still do;
    callers walking a large collection can skip and report just these.
    """


def _listing(items: Sequence, limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(str(x) for x in list(items)[:limit])
    more = len(items) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def _read_csv(csv_path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    df = read_csv_with_columns(csv_path, columns, UdaLayoutError)
    for column in columns:
        empty = df.index[df[column].str.strip() == ""].tolist()
        if empty:
            raise UdaLayoutError(
                f"{csv_path}: column {column!r} is empty in row(s) "
                f"{_listing([i + 2 for i in empty])} (1-based line numbers); fix: fill in or "
                f"delete those rows"
            )
    duplicated = df["id"][df["id"].duplicated()].unique().tolist()
    if duplicated:
        raise UdaLayoutError(
            f"{csv_path}: duplicate id(s) {_listing(duplicated)}; fix: every id must be unique"
        )
    return df


def _resolve(root: Path, relative: str) -> str:
    return os.path.normpath(os.path.join(root, relative.strip()))


def index_uda(root: str | os.PathLike, check_files: bool = True) -> dict[str, pd.DataFrame]:
    """Index the UDA data under ``root``: one DataFrame per split, paths made absolute.

    Returns a dict with the keys ``train_source``, ``val_source``, ``train_target``, ``test``
    (always), ``val_target`` (podium's evaluation-only labeled target split, when present) and
    ``sample_submission`` (when present). Split frames have the columns ``id``, ``img_path``
    and, for labeled splits, ``gt_path``, as absolute normalised path strings, in csv order.
    ``sample_submission`` keeps its columns ``id`` and ``mask_rle`` as read.

    Raises :class:`UdaLayoutError` (a ``ValueError``) naming the csv and the fix when a
    required csv is absent, unparsable, lacks a column, has empty cells or duplicate ids, and
    (with ``check_files``) naming the missing files when an image or label does not exist.
    Image contents are not read here: :func:`read_image` and :func:`read_label` validate them.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise UdaLayoutError(
            f"UDA data folder {root} does not exist; fix: {_FIX_DATA.format(root=root)}"
        )
    out: dict[str, pd.DataFrame] = {}
    for split, (csv_name, columns, required) in SPLITS.items():
        csv_path = root / csv_name
        if not csv_path.is_file():
            if required:
                raise UdaLayoutError(
                    f"{csv_path}: required csv of split {split!r} is missing; fix: "
                    + _FIX_DATA.format(root=root)
                )
            continue
        df = _read_csv(csv_path, columns)
        frame = pd.DataFrame({"id": df["id"].str.strip()})
        for column in columns[1:]:
            frame[column] = [_resolve(root, p) for p in df[column]]
            if check_files:
                missing = [p for p in frame[column] if not os.path.isfile(p)]
                if missing:
                    kind = "label" if column == "gt_path" else "image"
                    raise UdaLayoutError(
                        f"{csv_path}: {len(missing)} {kind} file(s) listed in column "
                        f"{column!r} do not exist: {_listing(missing)}; fix: restore those "
                        f"files or remove their rows from {csv_name}"
                    )
        out[split] = frame.reset_index(drop=True)
    submission = root / SUBMISSION_FILE
    if submission.is_file():
        out["sample_submission"] = _read_csv(submission, _SUBMISSION_COLUMNS)[
            list(_SUBMISSION_COLUMNS)
        ]
    return out


def _open(path: str | os.PathLike, kind: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise UdaUnreadableFile(f"{kind} file {path} does not exist")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UdaUnreadableFile(f"{kind} file {path} cannot be read as an image: {exc}") from exc
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image at ``path`` as an RGB ``uint8`` array of shape (H, W, 3)."""
    image = _open(path, "image")
    return np.asarray(image.convert("RGB"))


def read_label(path: str | os.PathLike, image_shape: Sequence[int] | None = None) -> np.ndarray:
    """The label PNG at ``path`` as a ``uint8`` array of shape (H, W) of class indices.

    Accepts single-channel PNGs (mode L or P: the stored index is the class) and, leniently,
    RGB(A) PNGs whose colour channels are equal. ``image_shape`` ((H, W) or (H, W, C)) is the
    shape of the matching image: a label of another size raises. A value outside 0..11 and
    255 raises, naming the file and the bad values.
    """
    image = _open(path, "label")
    if image.mode in ("L", "P"):
        label = np.asarray(image)
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        label = np.asarray(image)
        if label.size and (label.min() < 0 or label.max() > 255):
            bad = np.unique(label[(label < 0) | (label > 255)])
            raise UdaLayoutError(
                f"label file {path} holds unknown class value(s) {_listing(bad.tolist(), 10)}; "
                f"allowed: 0..{NUM_CLASSES - 1} and {IGNORE_INDEX}"
            )
        label = label.astype(np.uint8)
    elif image.mode in ("RGB", "RGBA", "LA"):
        channels = np.asarray(image)[..., : 1 if image.mode == "LA" else 3]
        if not (channels == channels[..., :1]).all():
            raise UdaLayoutError(
                f"label file {path} is a colour ({image.mode}) image with differing channels; "
                f"fix: labels must be single-channel PNGs of class indices 0..{NUM_CLASSES - 1} "
                f"and {IGNORE_INDEX}"
            )
        label = channels[..., 0]
    else:
        raise UdaLayoutError(
            f"label file {path} has unsupported image mode {image.mode!r}; fix: labels must be "
            f"single-channel (mode L) PNGs"
        )
    label = np.ascontiguousarray(label, dtype=np.uint8)
    if image_shape is not None and tuple(label.shape) != tuple(image_shape[:2]):
        raise UdaLayoutError(
            f"label file {path} is {label.shape[1]}x{label.shape[0]} (WxH) but its image is "
            f"{image_shape[1]}x{image_shape[0]}; fix: a label must have its image's size"
        )
    values = np.unique(label)
    bad = values[(values >= NUM_CLASSES) & (values != IGNORE_INDEX)]
    if bad.size:
        raise UdaLayoutError(
            f"label file {path} holds unknown class value(s) {_listing(bad.tolist(), 10)}; "
            f"allowed: 0..{NUM_CLASSES - 1} ({', '.join(CLASSES)}) and {IGNORE_INDEX} "
            f"(background)"
        )
    return label


def colorize(label: np.ndarray, ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """An (H, W, 3) ``uint8`` picture of a label map in :data:`PALETTE` colours."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = np.asarray(ignore_color, dtype=np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[label]
