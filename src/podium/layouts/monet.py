"""On-disk layout of Kaggle's "I'm Something of a Painter Myself" (Monet) data.

The competition's ``gan-getting-started.zip`` unpacks to::

    photo_jpg/<id>.jpg     7,038 photos, 256x256 RGB
    monet_jpg/<id>.jpg     300 Monet paintings, 256x256 RGB
    photo_tfrec/*.tfrec    the same photos as TFRecords
    monet_tfrec/*.tfrec    the same paintings as TFRecords

podium reads ONLY the jpg folders. The TFRecord folders (``photo_tfrec/``, ``monet_tfrec/``)
are not read: with both kinds present the tfrec folders are ignored, and with only tfrec
folders :func:`index_monet` raises :class:`MonetLayoutError` asking for the jpg folders.
The sample generator (:mod:`podium.sample_data.monet`) writes the jpg folders only.

Bad input (design principle 7): a malformed layout stops with an error naming the folder
and the fix; one unreadable or truncated jpg in a large collection is skipped and reported
with the reason :func:`read_image` gives (one jpg at a time, e.g. in a DataLoader worker),
never silently dropped.

No kedro or mlflow imports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "DOMAINS",
    "IMAGE_SUFFIXES",
    "MonetLayoutError",
    "index_monet",
    "read_image",
    "read_images",
]

logger = logging.getLogger(__name__)

#: domain -> (jpg folder, tfrec folder)
DOMAINS: dict[str, tuple[str, str]] = {
    "photo": ("photo_jpg", "photo_tfrec"),
    "monet": ("monet_jpg", "monet_tfrec"),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg")
_FIX = (
    "unzip the competition's gan-getting-started.zip into {root} (keeping photo_jpg/ and "
    "monet_jpg/), or generate the sample with `kedro run --pipeline=sample_data --tags=monet`"
)


class MonetLayoutError(ValueError):
    """The Monet data on disk does not have the competition's jpg layout."""


def index_monet(root: str | os.PathLike) -> pd.DataFrame:
    """Index ``photo_jpg/*.jpg`` and ``monet_jpg/*.jpg`` under ``root``.

    Returns a DataFrame with the columns ``domain`` (``"photo"`` or ``"monet"``), ``path``
    (absolute path string) and ``name`` (file name without suffix), photos first, each domain
    sorted by name. Only ``.jpg`` / ``.jpeg`` files (any case) are indexed; other files in the
    folders are logged as ignored.

    The TFRecord variant (``photo_tfrec/``, ``monet_tfrec/``) is NOT read. Raises
    :class:`MonetLayoutError` when ``root`` is missing, when only the tfrec folders are
    present, or when a jpg folder is missing or holds no jpg.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise MonetLayoutError(
            f"Monet data folder {root} does not exist; fix: {_FIX.format(root=root)}"
        )
    jpg_dirs = {d: root / jpg for d, (jpg, _) in DOMAINS.items()}
    tfrec_dirs = {d: root / tfrec for d, (_, tfrec) in DOMAINS.items()}
    if not any(p.is_dir() for p in jpg_dirs.values()) and any(
        p.is_dir() for p in tfrec_dirs.values()
    ):
        present = ", ".join(p.name + "/" for p in tfrec_dirs.values() if p.is_dir())
        raise MonetLayoutError(
            f"{root} holds only the TFRecord folders ({present}), which podium does not read; "
            f"fix: also extract photo_jpg/ and monet_jpg/ from the competition's "
            f"gan-getting-started.zip into {root}"
        )
    rows = []
    for domain, folder in jpg_dirs.items():
        if not folder.is_dir():
            raise MonetLayoutError(
                f"{folder}: required folder of the {domain} images is missing; fix: "
                + _FIX.format(root=root)
            )
        images, ignored = [], []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_file() or entry.name.startswith("."):
                continue
            if entry.name.lower().endswith(IMAGE_SUFFIXES):
                images.append(entry)
            else:
                ignored.append(entry.name)
        if ignored:
            logger.warning(
                "%s: ignoring %d file(s) that are not .jpg: %s", folder, len(ignored), ignored[:5]
            )
        if not images:
            raise MonetLayoutError(f"{folder}: holds no .jpg files; fix: " + _FIX.format(root=root))
        rows += [
            (domain, os.path.join(folder, e.name), os.path.splitext(e.name)[0]) for e in images
        ]
    return pd.DataFrame(rows, columns=["domain", "path", "name"])


def read_image(
    path: str | os.PathLike, expected_size: Sequence[int] | None = None
) -> tuple[np.ndarray | None, str | None]:
    """Decode one jpg into an RGB ``uint8`` array (H, W, 3): ``(image, None)``, or
    ``(None, reason)`` when it is missing, not an image, truncated or corrupt, or (with
    ``expected_size`` = (width, height)) of another size. Truncated files are never padded
    with grey. Meant for one item at a time, e.g. inside a DataLoader worker."""
    # Another module may have set PIL's global LOAD_TRUNCATED_IMAGES; never pad silently here.
    previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        return _read_one(os.fspath(path), expected_size)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def read_images(
    paths: Iterable[str | os.PathLike], expected_size: Sequence[int] | None = None
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Decode jpgs into RGB ``uint8`` arrays (H, W, 3), skipping and reporting bad ones.

    Returns ``(images, problems)``: ``images`` holds the readable images in input order (the
    paths not listed in ``problems``); ``problems`` is a DataFrame with the columns ``path``
    and ``reason``, one row per skipped file (see :func:`read_image`). Holds every image in
    memory: for a few images (tests, previews); pipelines decode per item with
    :func:`read_image`.
    """
    images: list[np.ndarray] = []
    problems: list[tuple[str, str]] = []
    for path in paths:
        image, reason = read_image(path, expected_size)
        if image is None:
            problems.append((os.fspath(path), reason))
        else:
            images.append(image)
    return images, pd.DataFrame(problems, columns=["path", "reason"])


def _read_one(path: str, expected_size) -> tuple[np.ndarray | None, str | None]:
    try:
        with Image.open(path) as im:
            im.load()  # raises OSError on truncated data (LOAD_TRUNCATED_IMAGES is False)
            if expected_size is not None and tuple(im.size) != tuple(expected_size):
                size = f"{im.size[0]}x{im.size[1]}"
                want = f"{expected_size[0]}x{expected_size[1]}"
                return None, f"size {size}, expected {want}"
            return np.asarray(im.convert("RGB")), None
    except FileNotFoundError:
        return None, "file not found"
    except IsADirectoryError:
        return None, "unreadable: a folder, not a file"
    except UnidentifiedImageError:
        return None, "unreadable: not a recognised image file"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"truncated or corrupt: {exc}"
