"""Readers of the face-mask competition's on-disk layout (the real data or podium's sample).

```
<root>/train/train.csv                 id,gender,race,age,path
<root>/train/images/<path>/<stem>.<ext> seven photos per person: mask1..mask5, incorrect_mask,
                                       normal; ext any of .jpg/.jpeg/.png (case-insensitive)
<root>/eval/info.csv                   ImageID,ans (ans is 0 everywhere; a submission fills it)
<root>/eval/images/<ImageID>
<root>/eval/_truth.csv                 evaluation only (podium's sample; see read_eval_truth)
```

Labels: mask (wear 0, incorrect 1, not wear 2), gender (male 0, female 1), age class
(< 30: 0, 30..threshold-1: 1, >= threshold: 2) and class = mask * 6 + gender * 3 + age_class.
The competition's bins use threshold 60; training labels may use a lower "old" threshold
(58 worked better in the write-ups, because the real set's 60+ class is tiny and 58/59-year
olds look the same), while evaluation always uses 60.

Malformed metadata stops with :class:`MaskLayoutError` (a ``ValueError``) naming the file,
the row or folder, and the fix. Hidden files (such as macOS ``._mask1.jpg`` resource forks
found in the real archive) are ignored. An unreadable or truncated image is an
:class:`ImageReadError` (an ``OSError``, like the DFDC layout's ``VideoReadError``) raised
by :func:`read_image`, so a node can skip that one image and report it.

No kedro or mlflow imports.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from podium.layouts.tables import read_csv_with_columns

log = logging.getLogger(__name__)

__all__ = [
    "AGE_NAMES",
    "EVAL_TRUTH_FILE",
    "GENDER_NAMES",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "MASK_NAMES",
    "MaskLayoutError",
    "N_CLASSES",
    "STEMS",
    "STEM_MASK",
    "age_class",
    "class_name",
    "decode_class",
    "encode_class",
    "index_mask_eval",
    "index_mask_train",
    "read_eval_truth",
    "read_image",
]

#: The seven photos of every person folder, in listing order.
STEMS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
#: mask label of each photo stem: wear 0, incorrect 1, not wear 2.
STEM_MASK = {
    "mask1": 0,
    "mask2": 0,
    "mask3": 0,
    "mask4": 0,
    "mask5": 0,
    "incorrect_mask": 1,
    "normal": 2,
}
MASK_NAMES = ("wear", "incorrect", "not wear")
GENDER_NAMES = ("male", "female")
#: Age class names with the competition's threshold (60).
AGE_NAMES = ("<30", "30-59", ">=60")
N_CLASSES = 18
#: Accepted photo extensions (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
EVAL_COLUMNS = ("ImageID",)
EVAL_TRUTH_FILE = "eval/_truth.csv"
EVAL_TRUTH_COLUMNS = ("ImageID", "ans")

_FOLDER_RE = re.compile(r"^(?P<id>\d+)_(?P<gender>[A-Za-z]+)_(?P<race>[A-Za-z]+)_(?P<age>\d+)$")


class MaskLayoutError(ValueError):
    """The mask data on disk does not follow the competition's layout."""


class ImageReadError(OSError):
    """One image file cannot be decoded (missing, corrupt, truncated or not an image).

    Not a :class:`MaskLayoutError`: one bad photo in a large collection is skipped with
    its reason reported, while a layout error stops the run.
    """


# ---------------------------------------------------------------------------- labels


def age_class(age, threshold: int = 60):
    """0 for age < 30, 1 for 30 <= age < ``threshold``, 2 for age >= ``threshold``.

    Works on a number (returns an int) or an array/Series (returns an int64 array).
    ``threshold`` must be in 31..100; the competition's bins use 60, training labels
    may use e.g. 58.
    """
    threshold = int(threshold)
    if not 30 < threshold <= 100:
        raise ValueError(f"old_age_threshold must be in 31..100, got {threshold}")
    a = np.asarray(age)
    out = np.where(a < 30, 0, np.where(a < threshold, 1, 2)).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def encode_class(mask, gender, age_cls):
    """The 18-class label mask * 6 + gender * 3 + age_class (numbers or arrays)."""
    m, g, a = np.asarray(mask), np.asarray(gender), np.asarray(age_cls)
    for name, x, hi in (("mask", m, 2), ("gender", g, 1), ("age_class", a, 2)):
        if x.size and (np.any(x < 0) or np.any(x > hi)):
            raise ValueError(f"{name} must be in 0..{hi}, got {x if x.ndim == 0 else np.unique(x)}")
    out = (m * 6 + g * 3 + a).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def decode_class(c):
    """(mask, gender, age_class) of an 18-class label (numbers or arrays)."""
    x = np.asarray(c)
    if x.size and (np.any(x < 0) or np.any(x >= N_CLASSES)):
        raise ValueError(
            f"class must be in 0..{N_CLASSES - 1}, got {x if x.ndim == 0 else np.unique(x)}"
        )
    m, g, a = x // 6, (x // 3) % 2, x % 3
    if x.ndim == 0:
        return int(m), int(g), int(a)
    return m.astype(np.int64), g.astype(np.int64), a.astype(np.int64)


def class_name(c: int) -> str:
    """e.g. ``"wear/female/<30"`` for class 3 (competition age bins)."""
    m, g, a = decode_class(int(c))
    return f"{MASK_NAMES[m]}/{GENDER_NAMES[g]}/{AGE_NAMES[a]}"


# ---------------------------------------------------------------------------- csv helpers


def _read_csv(path: Path, required: Iterable[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise MaskLayoutError(
            f"{path} not found: the mask data needs {what}. Put the competition's data under "
            f"{path.parents[1]} (train/ and eval/ as downloaded) or generate the sample data."
        )
    return read_csv_with_columns(path, required, MaskLayoutError)


def _image_files(folder: Path) -> dict[str, list[Path]]:
    """Visible image files of ``folder`` by lower-case stem."""
    out: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        if f.suffix.lower() in IMAGE_EXTENSIONS:
            out.setdefault(f.stem.lower(), []).append(f)
    return out


# ---------------------------------------------------------------------------- train


def index_mask_train(root, old_age_threshold: int = 60) -> pd.DataFrame:
    """One row per training photo, in train.csv order then :data:`STEMS` order.

    ``root`` is the competition folder (holding ``train/`` and ``eval/``). Columns:
    ``person_id`` (str, as in train.csv, e.g. "000001"), ``person`` (the folder name),
    ``path`` (str: ``root``/train/images/<person>/<file>, relative if ``root`` is),
    ``stem`` (mask1..normal), ``ext`` (the file's extension as found), ``race``,
    ``mask``, ``gender``, ``age`` (years), ``age_class`` (with ``old_age_threshold`` as the
    first "old" age: 60 gives the competition's bins, 58 the write-ups' training labels)
    and ``class`` (mask * 6 + gender * 3 + age_class).

    Raises :class:`MaskLayoutError` naming the file, row or folder and the fix when
    train.csv is missing or lacks a column, a listed person folder is missing, a folder
    name is not ``<id>_<gender>_<race>_<age>`` or disagrees with its row, a gender is
    not male/female, an age is not a whole number, or a folder lacks (or has two of) one
    of the seven photos.
    """
    age_class(0, old_age_threshold)  # validates the threshold
    root = Path(root)
    csv_path = root / "train" / "train.csv"
    df = _read_csv(csv_path, TRAIN_COLUMNS, "train/train.csv (id,gender,race,age,path)")
    images = root / "train" / "images"
    if not images.is_dir():
        raise MaskLayoutError(
            f"{images} not found: train.csv lists person folders under train/images/"
        )
    dup = df["path"][df["path"].duplicated()].tolist()
    if dup:
        raise MaskLayoutError(
            f"{csv_path} lists the person folder(s) {dup[:5]} more than once; remove the duplicate rows"
        )
    rows = []
    for line, rec in enumerate(df.itertuples(index=False), start=2):
        where = f"{csv_path} line {line}"
        gender_s = str(rec.gender).strip().lower()
        if gender_s not in GENDER_NAMES:
            raise MaskLayoutError(
                f"{where}: unknown gender {rec.gender!r}; use 'male' or 'female' "
                "(and the same word in the folder name)"
            )
        try:
            age = int(str(rec.age).strip())
        except ValueError:
            raise MaskLayoutError(
                f"{where}: age {rec.age!r} is not a whole number of years; fix the age column"
            ) from None
        name = str(rec.path).strip()
        m = _FOLDER_RE.match(name)
        if m is None:
            raise MaskLayoutError(
                f"{where}: malformed person folder name {name!r}; expected "
                "<id>_<gender>_<race>_<age> such as 000001_female_Asian_45 (rename the folder "
                "and the path column together)"
            )
        if (
            m["gender"].lower() != gender_s
            or int(m["age"]) != age
            or m["id"] != str(rec.id).strip()
        ):
            raise MaskLayoutError(
                f"{where}: folder name {name!r} disagrees with the row (id {rec.id!r}, gender "
                f"{rec.gender!r}, age {rec.age!r}); make the path column and the folder name "
                "match the id, gender and age columns"
            )
        folder = images / name
        if not folder.is_dir():
            raise MaskLayoutError(
                f"{where}: person folder {folder} is missing; restore it from the original data "
                f"or remove its row from {csv_path.name}"
            )
        found = _image_files(folder)
        for stem in STEMS:
            hits = found.get(stem, [])
            if not hits:
                raise MaskLayoutError(
                    f"{folder} lacks the photo {stem!r} (any of {', '.join(IMAGE_EXTENSIONS)}); "
                    f"every person folder needs {', '.join(STEMS)}: restore it, or remove the "
                    f"person's row from {csv_path}"
                )
            if len(hits) > 1:
                raise MaskLayoutError(
                    f"{folder} holds {len(hits)} files for {stem!r} ({', '.join(h.name for h in hits)}); "
                    "keep exactly one"
                )
            g = GENDER_NAMES.index(gender_s)
            a = age_class(age, old_age_threshold)
            mask = STEM_MASK[stem]
            rows.append(
                {
                    "person_id": str(rec.id).strip(),
                    "person": name,
                    "path": str(hits[0]),
                    "stem": stem,
                    "ext": hits[0].suffix,
                    "race": str(rec.race).strip(),
                    "mask": mask,
                    "gender": g,
                    "age": age,
                    "age_class": a,
                    "class": mask * 6 + g * 3 + a,
                }
            )
    columns = [
        "person_id",
        "person",
        "path",
        "stem",
        "ext",
        "race",
        "mask",
        "gender",
        "age",
        "age_class",
        "class",
    ]
    out = pd.DataFrame(rows, columns=columns)
    for c in ("mask", "gender", "age", "age_class", "class"):
        out[c] = out[c].astype(np.int64)
    _report_unlisted(images, set(df["path"].astype(str).str.strip()), csv_path)
    return out


def _report_unlisted(images: Path, listed: set[str], csv_path: Path) -> list[str]:
    """Person folders that train.csv does not list are left out: say so, not silently."""
    unlisted = sorted(
        p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")
        and p.name not in listed
    )  # fmt: skip
    if unlisted:
        log.warning(
            "%d person folder(s) in %s are not listed in %s and are left out, e.g. %s: add "
            "their rows to train.csv to train on them",
            len(unlisted),
            images,
            csv_path,
            ", ".join(unlisted[:5]),
        )
    return unlisted


# ---------------------------------------------------------------------------- eval


def index_mask_eval(root) -> pd.DataFrame:
    """(ImageID, path) per row of eval/info.csv, in the file's order (a submission keeps it).

    Raises :class:`MaskLayoutError` naming the file and the fix when info.csv is missing,
    lacks the ImageID column, lists an ImageID twice, or lists an image that is missing.
    """
    root = Path(root)
    csv_path = root / "eval" / "info.csv"
    df = _read_csv(csv_path, EVAL_COLUMNS, "eval/info.csv (ImageID,ans)")
    images = root / "eval" / "images"
    ids = df["ImageID"].str.strip()
    dup = ids[ids.duplicated()].tolist()
    if dup:
        raise MaskLayoutError(
            f"{csv_path} lists the ImageID(s) {dup[:5]} more than once; remove the duplicate rows"
        )
    paths = []
    for line, image_id in enumerate(ids, start=2):
        f = images / image_id
        if not image_id or not f.is_file():
            raise MaskLayoutError(
                f"{csv_path} line {line}: image {f} is missing; restore eval/images/ from the "
                "original data (a submission needs every listed ImageID)"
            )
        paths.append(str(f))
    return pd.DataFrame({"ImageID": ids.tolist(), "path": paths})


def read_eval_truth(root) -> pd.DataFrame:
    """EVALUATION ONLY: eval/_truth.csv of podium's generated sample.

    Columns ImageID, ans (true 18-class label with the competition's bins) and, in the
    sample, mask, gender, age, age_class, person, stem. The real competition has no such
    file (its answers are hidden): no training or inference node may call this, only the
    evaluation of a submission. Raises :class:`MaskLayoutError` when the file is absent
    or lacks ImageID/ans.
    """
    path = Path(root) / EVAL_TRUTH_FILE
    if not path.is_file():
        raise MaskLayoutError(
            f"{path} not found: the evaluation-only truth exists for podium's generated sample "
            "only (the real competition's answers are hidden); score real submissions on the "
            "leaderboard instead"
        )
    df = _read_csv(path, EVAL_TRUTH_COLUMNS, "the evaluation-only truth")
    df["ImageID"] = df["ImageID"].str.strip()
    for c in df.columns:
        if c in ("ans", "mask", "gender", "age", "age_class"):
            try:
                df[c] = df[c].astype(np.int64)
            except ValueError:
                raise MaskLayoutError(f"{path}: column {c!r} must hold whole numbers") from None
    return df


# ---------------------------------------------------------------------------- images


def read_image(path, data: bytes | None = None) -> np.ndarray:
    """Decode one photo to an HxWx3 uint8 RGB array (EXIF orientation applied).

    ``data``: the file's bytes when the caller has read them already (a crop worker hashes
    and decodes the same bytes, so a photo replaced meanwhile cannot mix two versions);
    ``path`` then only names the file in errors.

    Raises :class:`ImageReadError` naming the file when it is missing, empty,
    truncated or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            im.load()  # decodes everything: a truncated file fails here
            im = ImageOps.exif_transpose(im)
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(
            f"cannot read image {path}: {exc}; replace or remove the file"
        ) from None
    return np.asarray(rgb, dtype=np.uint8)
