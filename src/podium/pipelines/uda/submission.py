"""The competition's submission: one run-length encoded binary mask per test image and class.

Format (as ``sample_submission.csv``): ``id`` is ``<image id>_class_<k>``, ``mask_rle`` the
mask at :data:`~podium.layouts.uda.SUBMISSION_SIZE` flattened row-major and written as
space-separated 1-indexed ``start length`` pairs, or ``-1`` when the class is absent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from podium.layouts.uda import NUM_CLASSES, UdaLayoutError

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


def submission_table(
    ids: Sequence[str], class_maps: np.ndarray, template_ids: Sequence[str]
) -> pd.DataFrame:
    """``id, mask_rle`` rows in the template's order, one per test image and class."""
    by_id = dict(zip(ids, class_maps, strict=True))
    rows = {}
    for image_id, class_map in by_id.items():
        for k in range(NUM_CLASSES):
            rows[f"{image_id}_class_{k}"] = rle_encode(class_map == k)
    missing = [i for i in template_ids if i not in rows]
    if missing:
        raise UdaLayoutError(
            f"sample_submission.csv asks for {len(missing)} id(s) with no prediction, e.g. "
            f"{missing[:3]}; fix: test.csv and sample_submission.csv must list the same images"
        )
    return pd.DataFrame({"id": list(template_ids), "mask_rle": [rows[i] for i in template_ids]})
