"""The nodes on a tiny generated sample: labels, person-disjoint folds, submission, scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.layouts.mask import MaskLayoutError, age_class, read_eval_truth
from podium.pipelines.mask import nodes
from podium.pipelines.mask.data import CROPPED, FAILED, UNREADABLE


def test_training_labels_use_the_threshold_and_scores_the_competition_bins(pristine_mask_root):
    index = nodes.index_training_images(pristine_mask_root, 58)
    boundary = index[(index["age"] >= 58) & (index["age"] < 60)]
    assert not boundary.empty, "the tiny sample should hold 58-59-year-olds"
    assert (boundary["age_class"] == 2).all()  # "old" for training
    assert (boundary["competition_age_class"] == 1).all()  # 30-59 for scoring
    assert (index["competition_age_class"] == age_class(index["age"].to_numpy())).all()
    assert (
        index["class"] - index["competition_class"]
        == index["age_class"] - index["competition_age_class"]
    ).all()


def test_folds_are_person_disjoint_and_skip_unreadable_photos(pristine_mask_root):
    index = nodes.index_training_images(pristine_mask_root, 58)
    crop_index = pd.DataFrame(
        {
            "path": index["path"],
            "status": CROPPED,
            "reason": "",
            "crop": [f"d/{i}.npz" for i in range(len(index))],
            "reused": False,
        }
    )
    crop_index.loc[4, ["status", "crop"]] = [UNREADABLE, ""]
    crop_index.loc[5, "status"] = FAILED
    table = nodes.assign_person_folds(index, crop_index, {"n_splits": 3}, seed=1)
    assert len(table) == len(index) - 2 and not {4, 5} & set(table["row"])
    assert set(table["fold"]) == {0, 1, 2}
    assert (table.groupby("person")["fold"].nunique() == 1).all()
    assert np.array_equal(table["path"], index["path"].drop(index=[4, 5]))
    # the table carries each photo's crop entry: training needs no pixels to plan
    assert table["crop"].tolist() == [f"d/{r}.npz" for r in table["row"]]
    again = nodes.assign_person_folds(index, crop_index, {"n_splits": 3}, seed=1)
    assert np.array_equal(table["fold"], again["fold"])


def test_photos_without_a_usable_crop_are_told_on_the_console(caplog):
    crop_index = pd.DataFrame(
        {
            "path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
            "status": [CROPPED, UNREADABLE, FAILED, "face_not_found"],
            "reason": ["", "cannot decode", "disk full", "no face"],
        }
    )
    with caplog.at_level("INFO", logger="podium.pipelines.mask.nodes"):
        assert nodes.report_unusable(crop_index) == 2
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "2 of 4 photos" in warning and "b.jpg (unreadable: cannot decode)" in warning
    assert "c.jpg (failed: disk full)" in warning and "a.jpg" not in warning
    assert any("1 of 4 photos had no face" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert nodes.report_unusable(crop_index.iloc[:1]) == 0 and not caplog.records


def test_a_crop_index_of_other_photos_stops_with_the_node_to_run(pristine_mask_root):
    index = nodes.index_training_images(pristine_mask_root, 58)
    stale = pd.DataFrame({"path": index["path"][:-1], "status": CROPPED, "crop": "x"})
    message = r"mask_train_crop_index.*--nodes=mask\.crops\.crop_training_images`"
    with pytest.raises(ValueError, match=message):
        nodes.assign_person_folds(index, stale, {"n_splits": 3}, seed=1)


def test_photo_keys_are_unique_names_inside_the_images_folders(pristine_mask_root):
    train = nodes.index_training_images(pristine_mask_root, 58)
    keys = nodes.photo_keys(train)
    assert len(set(keys)) == len(keys)
    assert keys[0] == f"{train.loc[0, 'person']}/{train.loc[0, 'stem']}{train.loc[0, 'ext']}"
    evaluation = nodes.index_evaluation_images(pristine_mask_root)
    assert nodes.photo_keys(evaluation) == evaluation["ImageID"].tolist()


def test_submission_keeps_info_csv_order_and_uses_the_configured_vote(pristine_mask_root):
    eval_index = nodes.index_evaluation_images(pristine_mask_root)
    shuffled = eval_index.sample(frac=1.0, random_state=0)
    votes = pd.DataFrame(
        {"ImageID": shuffled["ImageID"], "soft": np.arange(len(shuffled)) % 18, "hard": 0}
    )
    submission, report = nodes.write_submission(eval_index, votes, {"submission_vote": "soft"})
    assert list(submission.columns) == ["ImageID", "ans"]
    assert submission["ImageID"].tolist() == eval_index["ImageID"].tolist()
    expected = votes.set_index("ImageID")["soft"].loc[eval_index["ImageID"]]
    assert submission["ans"].tolist() == expected.tolist()
    hard, _ = nodes.write_submission(eval_index, votes, {"submission_vote": "hard"})
    assert (hard["ans"] == 0).all()


def test_scoring_the_true_answers_gives_one(pristine_mask_root):
    truth = read_eval_truth(pristine_mask_root)
    submission = truth[["ImageID", "ans"]]
    votes = pd.DataFrame(
        {"ImageID": truth["ImageID"], "soft": truth["ans"], "hard": (truth["ans"] + 1) % 18}
    )
    metrics = nodes.score_evaluation(submission, votes, pristine_mask_root)
    assert metrics["submission/accuracy"] == {"value": 1.0, "step": 0}
    assert metrics["soft/accuracy"]["value"] == 1.0
    assert metrics["hard/accuracy"]["value"] == 0.0


def test_the_evaluation_truth_is_read_only_by_the_scoring_node(mask_root):
    (mask_root / "eval" / "_truth.csv").unlink()
    nodes.index_evaluation_images(mask_root)  # inference does not need it
    with pytest.raises(MaskLayoutError, match="_truth.csv"):
        nodes.score_evaluation(pd.DataFrame(), pd.DataFrame(), mask_root)


def test_crop_outcomes_are_counted():
    train = pd.DataFrame({"status": [CROPPED, CROPPED, UNREADABLE], "reused": [1, 0, 0]})
    evaluation = pd.DataFrame({"status": [CROPPED], "reused": [False]})
    metrics = nodes.count_crop_outcomes(train, evaluation)
    assert metrics == {
        "train/cropped": {"value": 2.0, "step": 0},
        "train/unreadable": {"value": 1.0, "step": 0},
        "train/reused": {"value": 1.0, "step": 0},
        "eval/cropped": {"value": 1.0, "step": 0},
        "eval/reused": {"value": 0.0, "step": 0},
    }
