"""The submission file and its report, from votes and the evaluation crop index."""

from __future__ import annotations

import pandas as pd

from podium.pipelines.mask.data import CROPPED, FACE_NOT_FOUND, UNREADABLE
from podium.pipelines.mask.submission import submission_report, submission_table


def test_the_submission_follows_info_csv_order_with_the_chosen_vote():
    eval_index = pd.DataFrame({"ImageID": ["c.jpg", "a.jpg", "b.jpg"]})
    votes = pd.DataFrame({"ImageID": ["a.jpg", "b.jpg", "c.jpg"], "soft": [1, 2, 3], "hard": 0})
    soft = submission_table(eval_index, votes, "soft")
    assert soft.to_dict("list") == {"ImageID": ["c.jpg", "a.jpg", "b.jpg"], "ans": [3, 1, 2]}
    assert submission_table(eval_index, votes, "hard")["ans"].tolist() == [0, 0, 0]


def test_the_report_marks_the_answers_made_from_a_blank_crop():
    submission = pd.DataFrame({"ImageID": ["a.jpg", "b.jpg", "c.jpg"], "ans": [1, 2, 3]})
    crop_index = pd.DataFrame(
        {
            "status": [CROPPED, UNREADABLE, FACE_NOT_FOUND],
            "reason": [None, "cannot decode", "no face"],
        }
    )
    report = submission_report(submission, crop_index)
    assert list(report.columns) == ["ImageID", "ans", "crop_status", "reason", "blank_crop"]
    assert report["blank_crop"].tolist() == [False, True, False]
    assert report.loc[1, "reason"] == "cannot decode"
    without = submission_report(submission)
    assert (without["crop_status"] == CROPPED).all() and not without["blank_crop"].any()
