"""The mask competition's submission file and its report. No kedro or mlflow imports.

The submission is ``ImageID, ans`` in info.csv's order, ``ans`` the 18-way class of the
configured vote; the report is the submission with each photo's crop status and reason and
whether its answer came from a blank crop (a photo that could not be read or cropped).
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from podium.pipelines.mask.data import CROPPED, USABLE


def submission_table(
    eval_index: pd.DataFrame, votes: pd.DataFrame, method: Literal["soft", "hard"]
) -> pd.DataFrame:
    """``ImageID, ans`` in ``eval_index``'s (info.csv's) order, ``ans`` from ``votes[method]``."""
    answers = votes.set_index("ImageID")[method]
    return pd.DataFrame(
        {"ImageID": eval_index["ImageID"], "ans": answers.loc[eval_index["ImageID"]].to_numpy()}
    )


def submission_report(
    submission: pd.DataFrame, crop_index: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The submission with ``crop_status``, ``reason`` and ``blank_crop`` per row;
    ``crop_index`` lists the evaluation photos in the submission's order (None: every photo
    counts as cropped)."""
    if crop_index is None:
        status = pd.Series(CROPPED, index=submission.index)
        reason = pd.Series(None, index=submission.index, dtype=object)
    else:
        status, reason = crop_index["status"].to_numpy(), crop_index["reason"].to_numpy()
    report = submission.assign(crop_status=status, reason=reason)
    report["blank_crop"] = ~report["crop_status"].isin(USABLE)
    return report
