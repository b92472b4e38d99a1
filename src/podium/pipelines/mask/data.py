"""Crops on disk, minority resampling and the lazy torch Dataset of the mask pipeline.

No kedro or mlflow imports. Cropping fans out one photo per task over a Dask client; each
worker reads its photo, crops it and writes the crop itself into a crop store (a folder),
so the driver never holds pixels, only one small record per photo:

```
<store>/<settings digest>/settings.json                     the crop settings, for people
<store>/<settings digest>/<photo key>/<content digest>.npz  crop (H, W, 3) uint8, status, reason
```

(the photo key is ``<person folder>/mask1.jpg`` or an evaluation ``ImageID``: one small folder
per photo, so replacing its entry never lists a folder of 12,600 evaluation photos)

The settings digest covers every setting that changes a crop (a crop ablation keeps its
own crops beside the others'); the content digest is a hash of the photo's bytes, so a
re-run reuses each crop whose photo is unchanged and crops a replaced photo again. An entry
is written under a temporary name and renamed into place: a run killed mid-write leaves at
most a stray temporary file, which is ignored and removed later, and an entry that does not
load (damaged on disk) is cropped again. Training and prediction read one entry per item
inside DataLoader workers (:class:`CropFiles` under :class:`CropDataset`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from podium.core.distributed import ItemError, iter_items
from podium.faces import crop_face, detect_faces
from podium.layouts.mask import ImageReadError, read_image
from podium.pipelines.mask.params import MaskCropParams

#: Outcome of each photo's crop, written to the crop report. ``failed``: the photo was
#: read but its crop could not be made or stored (the reason says why, e.g. a full disk
#: or a lost worker); like ``unreadable`` it is skipped by training.
CROPPED, FACE_NOT_FOUND, UNREADABLE, FAILED = "cropped", "face_not_found", "unreadable", "failed"
#: Outcomes that leave a crop entry (``face_not_found`` holds the centre crop).
USABLE = (CROPPED, FACE_NOT_FOUND)
TASKS = ("mask", "gender", "age_class")
#: Columns of the crop index (one row per photo, in the photos' order); the report keeps
#: the first three and ``reused``.
CROP_INDEX_COLUMNS = ("path", "status", "reason", "crop", "reused")
REPORT_COLUMNS = ("path", "status", "reason", "reused")
#: Raised with the entry layout or the cropping code: old entries then no longer match.
CROP_FORMAT = 1
#: Hex digits of the settings digest and of a photo's content digest in entry names.
SETTINGS_DIGEST_CHARS = 16
CONTENT_DIGEST_BYTES = 8
ENTRY_SUFFIX = ".npz"
SETTINGS_FILE = "settings.json"


class CropEntryError(ValueError):
    """A crop entry that training or prediction needs is missing or damaged."""


@dataclass(frozen=True)
class CropSettings:
    """What decides a crop's pixels (validated ``mask.crop``); ``face`` only with ``face``."""

    method: str
    centre: tuple[int, int]
    output: tuple[int, int]
    margin: float | None = None
    min_confidence: float | None = None
    downscale: float | None = None

    @property
    def digest(self) -> str:
        """Names this setting's folder in the crop store (the format version included)."""
        text = json.dumps({"format": CROP_FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:SETTINGS_DIGEST_CHARS]


def crop_settings(crop: MaskCropParams | Mapping[str, Any]) -> CropSettings:
    """What of ``mask.crop`` decides the pixels; face settings count only for the ``face``
    method (a centre crop is the same whatever the margin, so it keeps its cache)."""
    crop = MaskCropParams.of(crop)
    centre = (crop.centre.height, crop.centre.width)
    output = (crop.output.height, crop.output.width)
    if crop.method != "face":
        return CropSettings(crop.method, centre, output)
    face = crop.face
    return CropSettings(
        crop.method, centre, output, face.margin, face.min_confidence, face.downscale
    )


def centre_crop(image: np.ndarray, size: tuple[int, int], output: tuple[int, int]) -> np.ndarray:
    """The central ``size`` (height, width) region (clipped to the image), resized to ``output``."""
    height, width = image.shape[:2]
    crop_h, crop_w = min(size[0], height), min(size[1], width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    region = image[top : top + crop_h, left : left + crop_w]
    return cv2.resize(region, (output[1], output[0]), interpolation=cv2.INTER_AREA)


def crop_photo(
    image: np.ndarray, settings: CropSettings, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, str, str]:
    """One photo's crop, its status and the reason: ``face`` falls back to the centre crop
    where MTCNN finds no face (status ``face_not_found``)."""
    if settings.method == "face":
        (found,) = detect_faces(
            [image],
            device=device,
            batch_size=1,
            downscale=settings.downscale,
            min_confidence=settings.min_confidence,
        )
        if found:
            return crop_face(image, found[0].box, settings.margin, settings.output), CROPPED, ""
        reason = "no face above mask.crop.face.min_confidence: centre crop used"
        return centre_crop(image, settings.centre, settings.output), FACE_NOT_FOUND, reason
    return centre_crop(image, settings.centre, settings.output), CROPPED, ""


# ---------------------------------------------------------------------------- crop store


def entry_name(key: str, content: str, settings_digest: str) -> str:
    """The entry of photo ``key`` (e.g. ``<person folder>/mask1.jpg``) with content digest
    ``content``, relative to the store root."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        raise ValueError(
            f"photo key {key!r} must be a relative path inside its images folder (no '..')"
        )
    return f"{settings_digest}/{key}/{content}{ENTRY_SUFFIX}"


def read_entry(path: Path, output: tuple[int, int] | None = None) -> tuple[np.ndarray, str, str]:
    """``(crop, status, reason)`` of one entry; :class:`CropEntryError` naming the file
    when it is missing, damaged, or of another size than ``output``."""
    try:
        with np.load(path, allow_pickle=False) as entry:
            crop, status, reason = entry["crop"], str(entry["status"]), str(entry["reason"])
    except FileNotFoundError:
        raise CropEntryError(
            f"crop entry {path} is missing; run the crop nodes again (kedro run "
            "--pipelines=mask --nodes=mask.crops.crop_training_images,"
            "mask.crops.crop_evaluation_images)"
        ) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CropEntryError(
            f"crop entry {path} is damaged ({type(error).__name__}: {error}); run the crop "
            "node again: it crops damaged entries anew"
        ) from None
    shape = (*output, 3) if output is not None else crop.shape
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape != shape or status not in USABLE:
        raise CropEntryError(
            f"crop entry {path} holds a {crop.dtype} {crop.shape} crop with status {status!r}, "
            f"expected uint8 {shape} and one of {USABLE}; run the crop node again"
        )
    return crop, status, reason


def write_entry(path: Path, crop: np.ndarray, status: str, reason: str) -> None:
    """Write one entry atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, crop=crop, status=np.str_(status), reason=np.str_(reason))
        os.replace(temporary, path)
    except FileNotFoundError:
        # a concurrent run cropping the same photo removed our temporary file: its entry
        # is the same crop
        if not path.exists():
            raise
    finally:
        temporary.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    """Everything else in the photo's folder: entries of its older bytes, and temporary
    files a killed run left behind."""
    for other in path.parent.iterdir():
        if other != path and (other.suffix == ENTRY_SUFFIX or other.name.endswith(".tmp")):
            other.unlink(missing_ok=True)


@dataclass(frozen=True)
class CropJob:
    """One photo for a crop worker: ``row`` is its position in the index."""

    row: int
    path: str
    key: str
    store: str
    settings: CropSettings
    device: str = "cpu"


def _record(job: CropJob, status: str, reason: str, crop: str = "", reused: bool = False):
    return {
        "row": job.row,
        "path": job.path,
        "status": status,
        "reason": reason,
        "crop": crop,
        "reused": reused,
    }


def crop_entry(job: CropJob) -> dict[str, Any]:
    """A worker's task: reuse the photo's entry if its bytes and the settings are unchanged,
    else decode, crop and write it. Returns the photo's record (never pixels); never raises
    for one photo: what goes wrong becomes its status and reason."""
    try:
        return _crop_entry(job)
    except Exception as error:  # one bad photo is data, not a crash
        return _record(job, FAILED, f"{type(error).__name__}: {error}")


def _crop_entry(job: CropJob) -> dict[str, Any]:
    path = Path(job.path)
    try:
        data = path.read_bytes()
    except OSError as error:
        return _record(job, UNREADABLE, f"cannot read image {path}: {error}; replace the file")
    content = hashlib.blake2b(data, digest_size=CONTENT_DIGEST_BYTES).hexdigest()
    name = entry_name(job.key, content, job.settings.digest)
    target = Path(job.store) / name
    if target.exists():
        try:
            _, status, reason = read_entry(target, job.settings.output)
        except CropEntryError:
            pass  # damaged: crop it again below
        else:
            _remove_stale(target)
            return _record(job, status, reason, name, reused=True)
    try:
        image = read_image(path, data)
    except ImageReadError as error:
        if target.parent.is_dir():
            _remove_stale(target)  # the crop of its earlier bytes no longer applies
        return _record(job, UNREADABLE, str(error))
    crop, status, reason = crop_photo(image, job.settings, job.device)
    write_entry(target, crop, status, reason)
    _remove_stale(target)
    return _record(job, status, reason, name)


def stream_crops(
    jobs: Iterable[CropJob], client: Any | None = None, window: int = 1
) -> Iterator[dict[str, Any]]:
    """Each job's record as its task completes, with at most ``window`` tasks submitted
    and not yet collected; ``client=None`` crops here, one photo after another. A lost
    worker is that photo's ``failed`` record, never a lost row."""
    for job, record in iter_items(client, crop_entry, jobs, window, progress=False):
        if isinstance(record, ItemError):  # the worker died, or the task could not be sent
            record = _record(job, FAILED, f"crop task lost: {record.error}")
        yield record


def crop_to_store(
    paths: Sequence[str],
    keys: Sequence[str],
    crop: Mapping[str, Any],
    store: Path | str,
    client: Any | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Crop every photo into ``store``; return the crop index, one row per photo in input
    order: ``path``, ``status``, ``reason``, ``crop`` (the entry, relative to ``store``;
    empty when the photo could not be cropped) and ``reused`` (an entry from an earlier run).

    ``keys`` name the photos inside the store (unique, relative, e.g. ``<person>/mask1.jpg``).
    """
    settings = crop_settings(crop)
    window = MaskCropParams.of(crop).window
    paths, keys = [str(p) for p in paths], [str(k) for k in keys]
    if len(paths) != len(keys):
        raise ValueError(f"{len(paths)} photos but {len(keys)} photo keys; give one key each")
    duplicated = pd.Series(keys)[pd.Series(keys).duplicated()].tolist()
    if duplicated:
        raise ValueError(
            f"photo keys {duplicated[:5]} name more than one photo; each photo needs its own "
            "key (its path inside the images folder)"
        )
    for key in keys:
        entry_name(key, "0", settings.digest)  # a bad key fails before any work
    root = Path(store).resolve()
    _write_settings(root / settings.digest, settings)
    jobs = (
        CropJob(row, path, key, str(root), settings, str(device))
        for row, (path, key) in enumerate(zip(paths, keys, strict=True))
    )
    records = list(
        tqdm(
            stream_crops(jobs, client, window),
            total=len(paths),
            desc="mask crops",
            disable=not progress,
            leave=False,
        )
    )
    frame = pd.DataFrame(records, columns=["row", *CROP_INDEX_COLUMNS])
    frame = frame.sort_values("row").reset_index(drop=True)
    frame["reused"] = frame["reused"].astype(bool)
    return frame[list(CROP_INDEX_COLUMNS)]


def _write_settings(folder: Path, settings: CropSettings) -> None:
    """``settings.json`` of a settings folder (atomically), saying what its crops are."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / SETTINGS_FILE
    text = json.dumps({"format": CROP_FORMAT, **asdict(settings)}, indent=2) + "\n"
    if target.exists() and target.read_text() == text:
        return
    temporary = target.with_name(f".{SETTINGS_FILE}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(text)
    os.replace(temporary, target)


class CropFiles:
    """Crops by row, read from the store on each access (memory does not grow with the
    photos): ``crops[row]`` loads ``entries[row]``; an empty entry (an unreadable photo)
    gives a black crop of ``blank`` (height, width), so every photo still gets a prediction.
    """

    def __init__(
        self,
        store: Path | str,
        entries: Mapping[int, str],
        blank: tuple[int, int] | None = None,
    ) -> None:
        self.store = Path(store)
        self.entries = {int(row): str(entry) for row, entry in entries.items()}
        self.blank = blank
        missing = [row for row, entry in self.entries.items() if not entry]
        if missing and blank is None:
            raise CropEntryError(
                f"rows {missing[:5]} have no crop entry (unreadable photos); leave them out "
                "of the table or give a blank size"
            )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, row: int) -> np.ndarray:
        entry = self.entries[int(row)]
        if not entry:
            return np.zeros((*self.blank, 3), np.uint8)
        return read_entry(self.store / entry, self.blank)[0]


def oversample_minority(
    frame: pd.DataFrame, column: str, minority_value: int, factor: int
) -> pd.DataFrame:
    """Rows of ``frame`` plus ``factor - 1`` extra copies of each minority row.

    The added ``augmented`` column is True exactly on the copies: only they are augmented,
    the originals keep the plain crop (the write-up's choice for the rare 60+ class).
    """
    out = frame.assign(augmented=False)
    minority = out[out[column] == minority_value]
    copies = [minority.assign(augmented=True)] * (int(factor) - 1)
    return pd.concat([out, *copies], ignore_index=True)


class CropDataset(Dataset):
    """Crops with their labels (``crops[row]``: a :class:`CropFiles` or an in-memory array): ``{"image": CHW float tensor, <target name>: label, ...}``.

    ``augment`` runs only on rows whose ``augmented`` flag is set, ``preprocess``
    (normalise, to tensor) on every row.
    """

    def __init__(
        self,
        crops: CropFiles | np.ndarray,
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
