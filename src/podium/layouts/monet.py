"""On-disk layout of Kaggle's "I'm Something of a Painter Myself" (Monet) data.

The competition's ``gan-getting-started.zip`` unpacks to::

    photo_jpg/<id>.jpg     7,038 photos, 256x256 RGB
    monet_jpg/<id>.jpg     300 Monet paintings, 256x256 RGB
    photo_tfrec/*.tfrec    the same photos as TFRecords (photo00-352.tfrec, ...)
    monet_tfrec/*.tfrec    the same paintings as TFRecords (monet00-60.tfrec, ...)

Either half can be read (``source``): the jpg folders, or the TFRecord shards, read with
the ``tfrecord`` package (no TensorFlow). Each record is a ``tf.train.Example`` of three
bytes features (:data:`TFREC_FEATURES`): ``image_name`` (the jpg's name without suffix),
``image`` (the JPEG file's bytes, the same as the jpg's) and ``target``; podium reads the
first two. An image is named by a *path*: a jpg's file path, or a record's
``<shard>.tfrec@<byte offset>`` (:func:`record_path`); :func:`read_image` decodes either,
one at a time (e.g. in a DataLoader worker), so the rest of the pipeline does not care
which half it reads. The sample generator (:mod:`podium.sample_data.monet`) writes both.

Bad input (design principle 7): a malformed layout stops with an error naming the folder
and the fix; one unreadable or truncated jpg, or one corrupt or cut record, in a large
collection is skipped and reported with the reason :func:`read_image` gives, never
silently dropped.

No kedro or mlflow imports.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

from podium.core.config import check_choice

__all__ = [
    "DOMAINS",
    "IMAGE_SUFFIXES",
    "SOURCES",
    "TFREC_FEATURES",
    "MonetLayoutError",
    "index_monet",
    "read_image",
    "read_images",
    "read_record",
    "record_path",
]

logger = logging.getLogger(__name__)

#: domain -> (jpg folder, tfrec folder)
DOMAINS: dict[str, tuple[str, str]] = {
    "photo": ("photo_jpg", "photo_tfrec"),
    "monet": ("monet_jpg", "monet_tfrec"),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg")
TFREC_SUFFIX = ".tfrec"
#: Which half of the data is read: the jpg folders or the TFRecord shards.
SOURCES = ("jpg", "tfrec")
#: The competition's TFRecord features, all bytes (``tf.io.FixedLenFeature([], tf.string)``).
TFREC_FEATURES = {"image_name": "byte", "image": "byte", "target": "byte"}
#: A record's path: ``<shard>.tfrec@<byte offset of the record>``.
_RECORD_PATH = re.compile(r"^(?P<shard>.+\.tfrec)@(?P<offset>\d+)$", re.IGNORECASE)
#: TFRecord framing: uint64 length, masked crc32c of it, the data, masked crc32c of it.
_HEADER, _FOOTER = 12, 4
_FIX = (
    "unzip the competition's gan-getting-started.zip into {root} (keeping photo_jpg/ and "
    "monet_jpg/), or generate the sample with `kedro run --pipeline=sample_data --tags=monet`"
)
_FIX_TFREC = (
    "unzip the competition's gan-getting-started.zip into {root} (keeping photo_tfrec/ and "
    "monet_tfrec/), generate the sample with `kedro run --pipeline=sample_data "
    "--tags=monet`, or read the jpg folders with monet.source: jpg"
)


class MonetLayoutError(ValueError):
    """The Monet data on disk does not have the competition's layout."""


def record_path(shard: str | os.PathLike, offset: int) -> str:
    """The path :func:`read_image` reads a TFRecord's image from."""
    return f"{os.fspath(shard)}@{int(offset)}"


def index_monet(
    root: str | os.PathLike, source: str = "jpg", *, parameter: str = "source"
) -> pd.DataFrame:
    """Index the photos and Monets under ``root``: ``photo_jpg/*.jpg`` and
    ``monet_jpg/*.jpg`` (``source="jpg"``) or every record of ``photo_tfrec/*.tfrec`` and
    ``monet_tfrec/*.tfrec`` (``source="tfrec"``).

    Returns a DataFrame with the columns ``domain`` (``"photo"`` or ``"monet"``), ``path``
    (an absolute jpg path, or a record's ``<shard>@<offset>``) and ``name`` (the file name
    without suffix, or the record's ``image_name``), photos first, each domain sorted by
    name: both sources of the same data give the same names in the same order. jpg: only
    ``.jpg`` / ``.jpeg`` files (any case) are indexed, other files are logged as ignored.
    tfrec: a shard cut short or not framed as a TFRecord gets one row for its unreadable
    rest (named ``<shard stem>@<offset>``), which :func:`read_image` then reports.

    Raises :class:`MonetLayoutError` when ``root`` is missing, when only the other source's
    folders are present, when a folder is missing or holds no image, or when two records
    of a domain share a name.
    """
    check_choice(parameter, source, SOURCES)
    root = Path(root).resolve()
    if not root.is_dir():
        raise MonetLayoutError(
            f"Monet data folder {root} does not exist; fix: {_FIX.format(root=root)}"
        )
    if source == "tfrec":
        return _index_tfrec(root)
    jpg_dirs = {d: root / jpg for d, (jpg, _) in DOMAINS.items()}
    tfrec_dirs = {d: root / tfrec for d, (_, tfrec) in DOMAINS.items()}
    if not any(p.is_dir() for p in jpg_dirs.values()) and any(
        p.is_dir() for p in tfrec_dirs.values()
    ):
        present = ", ".join(p.name + "/" for p in tfrec_dirs.values() if p.is_dir())
        raise MonetLayoutError(
            f"{root} holds only the TFRecord folders ({present}), which are read with "
            f"monet.source: tfrec; fix: set it, or also extract photo_jpg/ and monet_jpg/ "
            f"from the competition's gan-getting-started.zip into {root}"
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


# ---------------------------------------------------------------------------- TFRecords


def _index_tfrec(root: Path) -> pd.DataFrame:
    rows = []
    for domain, (jpg, tfrec) in DOMAINS.items():
        folder = root / tfrec
        if not folder.is_dir():
            only_jpg = (root / jpg).is_dir()
            hint = f" ({jpg}/ is there: monet.source: jpg reads it)" if only_jpg else ""
            raise MonetLayoutError(
                f"{folder}: required folder of the {domain} TFRecords is missing{hint}; fix: "
                + _FIX_TFREC.format(root=root)
            )
        shards = sorted(
            (e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")),
            key=lambda e: e.name,
        )
        ignored = [e.name for e in shards if not e.name.lower().endswith(TFREC_SUFFIX)]
        if ignored:
            logger.warning(
                "%s: ignoring %d file(s) that are not .tfrec: %s", folder, len(ignored), ignored[:5]
            )
        shards = [e for e in shards if e.name.lower().endswith(TFREC_SUFFIX)]
        if not shards:
            raise MonetLayoutError(
                f"{folder}: holds no .tfrec files; fix: " + _FIX_TFREC.format(root=root)
            )
        entries = [row for shard in shards for row in _shard_entries(Path(shard.path))]
        names = pd.Series([name for _, name in entries])
        if names.duplicated().any():
            twice = sorted(set(names[names.duplicated()]))
            raise MonetLayoutError(
                f"{folder}: {len(twice)} image_name(s) appear in more than one record, e.g. "
                f"{twice[:3]}; images.zip needs one image per name: remove the duplicates"
            )
        rows += [(domain, path, name) for path, name in sorted(entries, key=lambda e: e[1])]
    return pd.DataFrame(rows, columns=["domain", "path", "name"])


def _shard_entries(shard: Path) -> list[tuple[str, str]]:
    """``(record path, image_name)`` per record of one shard, in file order. The framing is
    checked as it is walked (a length must fit the file and match its checksum), so a shard
    cut short, or a file that is no TFRecord, ends with one entry for its unreadable rest
    instead of a wild read; a record whose data is corrupt keeps its place (named
    ``<stem>@<offset>``) and :func:`read_image` reports it."""
    entries, offset = [], 0
    size = shard.stat().st_size
    with open(shard, "rb") as file:
        while offset < size:
            header = file.read(_HEADER)
            length = struct.unpack("<Q", header[:8])[0] if len(header) == _HEADER else -1
            end = offset + _HEADER + length + _FOOTER
            if length < 0 or header[8:] != _masked_crc(header[:8]) or end > size:
                entries.append((record_path(shard, offset), f"{shard.stem}@{offset}"))
                logger.warning("%s: not a readable TFRecord from byte %d on", shard, offset)
                break
            data = file.read(length)
            footer = file.read(_FOOTER)
            name = f"{shard.stem}@{offset}"
            if footer == _masked_crc(data):
                try:
                    name = _features(data)["image_name"].decode("utf-8", "replace")
                except ValueError:
                    pass  # read_image says what is wrong with it
            entries.append((record_path(shard, offset), name))
            offset = end
    return entries


def _features(data: bytes) -> dict[str, bytes]:
    """The bytes features of one serialised ``tf.train.Example`` (ValueError if not one)."""
    from google.protobuf.message import DecodeError
    from tfrecord import example_pb2

    try:
        example = example_pb2.Example.FromString(data)
    except DecodeError as error:
        raise ValueError(f"not a tf.train.Example ({error})") from error
    out = {}
    for key, feature in example.features.feature.items():
        if feature.WhichOneof("kind") == "bytes_list" and len(feature.bytes_list.value) == 1:
            out[key] = feature.bytes_list.value[0]
    for key in ("image_name", "image"):
        if key not in out:
            raise ValueError(f"the record has no bytes feature {key!r}")
    return out


def _masked_crc(data: bytes) -> bytes:
    from tfrecord.writer import TFRecordWriter

    return TFRecordWriter.masked_crc(data)


def read_record(shard: str | os.PathLike, offset: int) -> dict[str, bytes]:
    """The bytes features of the record at ``offset`` of ``shard``, its framing and both
    checksums verified (ValueError names what is wrong; OSError if the file cannot be
    read)."""
    with open(shard, "rb") as file:
        return _read_framed(file, offset)


def _read_framed(file: IO[bytes], offset: int) -> dict[str, bytes]:
    file.seek(offset)
    header = file.read(_HEADER)
    if len(header) < _HEADER:
        raise ValueError(f"record at byte {offset} cut short in its header")
    (length,) = struct.unpack("<Q", header[:8])
    if header[8:] != _masked_crc(header[:8]):
        raise ValueError(f"record at byte {offset}: its length's checksum does not match")
    data = file.read(length)
    footer = file.read(_FOOTER)
    if len(data) < length or len(footer) < _FOOTER:
        raise ValueError(f"record at byte {offset} cut short ({len(data)} of {length} bytes)")
    if footer != _masked_crc(data):
        raise ValueError(f"record at byte {offset}: its data's checksum does not match")
    return _features(data)


def read_image(
    path: str | os.PathLike, expected_size: Sequence[int] | None = None
) -> tuple[np.ndarray | None, str | None]:
    """Decode one jpg, or the JPEG of one TFRecord (``<shard>.tfrec@<offset>``), into an RGB
    ``uint8`` array (H, W, 3): ``(image, None)``, or ``(None, reason)`` when it is missing,
    not an image, truncated or corrupt (a record: cut short, a checksum that does not match,
    no image in it), or (with ``expected_size`` = (width, height)) of another size.
    Truncated files are never padded with grey. Meant for one item at a time, e.g. inside a
    DataLoader worker."""
    # Another module may have set PIL's global LOAD_TRUNCATED_IMAGES; never pad silently here.
    previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        record = _RECORD_PATH.match(os.fspath(path))
        if record is None:
            return _read_one(os.fspath(path), expected_size)
        return _read_record_image(record["shard"], int(record["offset"]), expected_size)
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


def _read_record_image(shard: str, offset: int, expected_size):
    try:
        features = read_record(shard, offset)
    except FileNotFoundError:
        return None, "file not found"
    except IsADirectoryError:
        return None, "unreadable: a folder, not a file"
    except (OSError, ValueError) as exc:
        return None, f"truncated or corrupt: {exc}"
    return _read_one(io.BytesIO(features["image"]), expected_size)


def _read_one(path: str | IO[bytes], expected_size) -> tuple[np.ndarray | None, str | None]:
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
