"""The DFDC submission file of the deepfake pipelines: ``filename, label`` (the mp4 name and
its FAKE probability), one row per video.

:func:`submission_frame` writes it for the training run's test videos (refusing NaN,
probabilities outside [0, 1] and repeated names); :func:`submission_table` writes it for
the videos a scoring run (deepfake_inference) was given, together with its report: one row
per video with its status, the reason a video got the fallback probability, and its
timings.

No kedro or mlflow imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from podium.pipelines.deepfake.inference import (
    RESULT_KEYS,
    failed_results,
    fallback_probability,
)

__all__ = ["SUBMISSION_COLUMNS", "submission_frame", "submission_table"]

#: Columns of DFDC's submission.csv: the video file name and its FAKE probability.
SUBMISSION_COLUMNS = ["filename", "label"]


def submission_frame(filenames: Sequence[str], probs: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """DFDC's submission table: ``filename`` (the mp4 name) and ``label`` (FAKE probability),
    in the given order. Refuses NaN, probabilities outside [0, 1] and repeated names."""
    names = [str(f) for f in filenames]
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(names),):
        raise ValueError(f"{len(p)} probabilities for {len(names)} file names")
    if not np.isfinite(p).all():
        raise ValueError("submission probabilities contain NaN or inf")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("submission probabilities must lie in [0, 1]")
    repeated = pd.Index(names)[pd.Index(names).duplicated()]
    if len(repeated):
        raise ValueError(f"file names repeat in the submission: {list(repeated[:5])}")
    return pd.DataFrame({"filename": names, "label": p}, columns=SUBMISSION_COLUMNS)


def submission_table(
    videos: pd.DataFrame,
    results: Mapping[str, Mapping[str, Any]],
    scorer: Mapping[str, Any],
    fallback: float | str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(submission, report)``: exactly one row per video of ``videos``, in its order.

    ``results``: video name -> result. The submission is DFDC's ``filename, label``; a video
    without a result or without a probability gets the fallback, and its reason is in the
    report (``video, path, status, reason, prob, n_faces`` and the timings)."""
    fill = fallback_probability(scorer, fallback)
    report = []
    for row in videos.itertuples(index=False):
        found = results.get(row.video)
        if found is None:
            missing = {"video": row.video, "path": row.path}
            found = failed_results([missing], "no result (not scored)", "")[0]
        entry = {
            k: found.get(k)
            for k in RESULT_KEYS
            if k not in ("content", "content_size", "content_mtime_ns")
        }
        prob = entry.get("prob")
        if prob is None or not math.isfinite(float(prob)):
            entry["prob"] = fill
        report.append(entry)
    report_frame = pd.DataFrame(
        report, columns=[k for k in RESULT_KEYS if not k.startswith("content")]
    )
    submission = pd.DataFrame(
        {"filename": report_frame["video"], "label": report_frame["prob"].astype(float)},
        columns=SUBMISSION_COLUMNS,
    )
    return submission, report_frame
