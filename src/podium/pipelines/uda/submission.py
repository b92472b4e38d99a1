"""The competition's submission: one run-length encoded binary mask per test image and class.

Format (as ``sample_submission.csv``): ``id`` is ``<image id>_class_<k>``, ``mask_rle`` the
mask at :data:`~podium.layouts.uda.SUBMISSION_SIZE` flattened row-major and written as
space-separated 1-indexed ``start length`` pairs, or ``-1`` when the class is absent.
Background (255 in a class map) is in no class's mask, as in the DACON baseline, which
trains it as class 12 and encodes classes 0..11 only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from podium.layouts.uda import NUM_CLASSES, SUBMISSION_SIZE, UdaLayoutError

EMPTY = "-1"


def rle_encode(mask: np.ndarray) -> str:
    """Run-length encoding of a binary mask (row-major, 1-indexed starts); ``-1`` if empty."""
    flat = np.asarray(mask, dtype=bool).ravel()
    if not flat.any():
        return EMPTY
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-indexed run starts and ends
    starts, ends = edges[::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


def rle_decode(rle: str, shape: Sequence[int]) -> np.ndarray:
    """The binary (H, W) mask of ``rle``; raises ValueError on malformed or out-of-range runs."""
    height, width = int(shape[0]), int(shape[1])
    flat = np.zeros(height * width, dtype=bool)
    text = str(rle).strip()
    if text in (EMPTY, ""):
        return flat.reshape(height, width)
    numbers = np.asarray(text.split(), dtype=np.int64)
    if numbers.size % 2:
        raise ValueError(f"run-length string has an odd number of values: {text[:60]!r}")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    if (starts < 0).any() or (lengths < 1).any() or (starts + lengths > flat.size).any():
        raise ValueError(f"run-length string has runs outside a {width}x{height} mask")
    for s, n in zip(starts, lengths, strict=True):
        flat[s : s + n] = True
    return flat.reshape(height, width)


def to_submission_size(class_map: np.ndarray) -> np.ndarray:
    """A class map resized to :data:`~podium.layouts.uda.SUBMISSION_SIZE` as the DACON
    baseline does: PIL's NEAREST (``Image.resize((960, 540), Image.NEAREST)``), which takes
    output pixel i from input pixel int((i + 0.5) * n_in / n_out), the one under the output
    pixel's centre (1920 -> 960: columns 1, 3, 5, ...; 2048 -> 960 too; 1024 -> 540: rows 0,
    2, 4, ...; 1080 -> 540: rows 1, 3, 5, ...). Background (255) stays 255."""
    m = np.ascontiguousarray(class_map, dtype=np.uint8)
    width, height = SUBMISSION_SIZE
    if m.shape == (height, width):
        return m
    return np.asarray(Image.fromarray(m).resize((width, height), Image.NEAREST))


def labelled_share(rles: Iterable[str], shape: Sequence[int]) -> float:
    """The share of an image's pixels that lie in at least one of its class masks
    (``rles``: its rows' run-length strings): 1 when no pixel was left as background."""
    covered = np.zeros((int(shape[0]), int(shape[1])), bool)
    for rle in rles:
        covered |= rle_decode(rle, shape)
    return float(covered.mean())


Group = tuple[str, list[tuple[str, int]]]


def submission_groups(template_ids: Sequence[str], available: Iterable[str]) -> list[Group]:
    """The template's rows as runs of one image each: ``[(image id, [(row id, class)])]``
    in the template's order (an image whose rows are not contiguous gives several runs).

    Raises :class:`~podium.layouts.uda.UdaLayoutError` for a row id that is not
    ``<image id>_class_<k>`` with k in 0..11, or whose image is not in ``available``.
    """
    available = set(available)
    groups: list[Group] = []
    malformed, missing = [], []
    for row_id in template_ids:
        image_id, sep, k = str(row_id).rpartition("_class_")
        if not sep or not k.isdigit() or int(k) >= NUM_CLASSES:
            malformed.append(row_id)
            continue
        if image_id not in available:
            missing.append(row_id)
            continue
        if groups and groups[-1][0] == image_id:
            groups[-1][1].append((row_id, int(k)))
        else:
            groups.append((image_id, [(row_id, int(k))]))
    if malformed:
        raise UdaLayoutError(
            f"sample_submission.csv has {len(malformed)} id(s) that are not "
            f"'<image id>_class_<0..{NUM_CLASSES - 1}>', e.g. {malformed[:3]}; fix: restore "
            f"the competition's sample_submission.csv"
        )
    if missing:
        raise UdaLayoutError(
            f"sample_submission.csv asks for {len(missing)} id(s) with no prediction, e.g. "
            f"{missing[:3]}; fix: test.csv and sample_submission.csv must list the same images"
        )
    return groups


def submission_rows(rows: Sequence[tuple[str, int]], class_map: np.ndarray) -> pd.DataFrame:
    """``id, mask_rle`` of ``rows`` (row id, class) for one image's class map."""
    return pd.DataFrame(
        {"id": [r for r, _ in rows], "mask_rle": [rle_encode(class_map == k) for _, k in rows]}
    )


def submission_table(
    ids: Sequence[str], class_maps: Sequence[np.ndarray], template_ids: Sequence[str]
) -> pd.DataFrame:
    """``id, mask_rle`` rows in the template's order, one per test image and class, from
    class maps in memory (the pipeline streams the same rows image by image)."""
    by_id = dict(zip(ids, class_maps, strict=True))
    groups = submission_groups(template_ids, by_id)
    columns = {"id": [], "mask_rle": []}
    for image_id, rows in groups:
        chunk = submission_rows(rows, by_id[image_id])
        columns["id"] += chunk["id"].tolist()
        columns["mask_rle"] += chunk["mask_rle"].tolist()
    return pd.DataFrame(columns)
