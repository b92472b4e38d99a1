"""Video metrics, per-folder log loss, the DFDC submission table and the figures."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from podium.pipelines.deepfake.evaluate import (
    constant_prior_log_loss,
    face_grid_figure,
    overlay_mask,
    per_folder_log_loss,
    roc_figure,
    video_metrics,
)
from podium.pipelines.deepfake.submission import submission_frame

EPS = 1e-15


def test_video_metrics_by_hand():
    y = [0, 0, 1, 1]
    p = [0.1, 0.6, 0.4, 0.9]
    m = video_metrics(y, p, eps=EPS)
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert m["log_loss"] == pytest.approx(expected)
    assert m["accuracy"] == 0.5  # 0.6 and 0.4 are on the wrong side of 0.5
    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 (fake, real) pairs ordered right
    assert m["auc_defined"] == 1.0 and m["n_videos"] == 4 and m["fake_share"] == 0.5


def test_video_metrics_with_one_class_omit_auc_and_stay_finite():
    m = video_metrics([1, 1, 1], [0.9, 0.8, 1.0], eps=1e-6)
    assert "auc" not in m and m["auc_defined"] == 0.0
    assert all(math.isfinite(v) for v in m.values())
    assert m["log_loss"] < 0.2  # p = 1.0 is clipped, not log(0)


def test_per_folder_log_loss_splits_by_folder():
    df = pd.DataFrame(
        {
            "folder": ["b", "a", "a", "b"],
            "target": [1, 0, 1, 0],
            "prob": [0.5, 0.2, 0.8, 0.5],
        }
    )
    table = per_folder_log_loss(df, eps=EPS)
    assert table["folder"].tolist() == ["a", "b"]
    assert table["n_videos"].tolist() == [2, 2]
    assert table.loc[0, "log_loss"] == pytest.approx(-math.log(0.8))
    assert table.loc[1, "log_loss"] == pytest.approx(math.log(2))


def test_constant_prior_log_loss_is_the_entropy_on_the_same_distribution():
    y = [1, 1, 1, 0]
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert constant_prior_log_loss(y, y, eps=EPS) == pytest.approx(entropy)
    # a prior from a different training mix costs more on the same evaluation set
    assert constant_prior_log_loss([1, 0], y, eps=EPS) > entropy


def test_submission_frame_in_dfdc_format():
    sub = submission_frame(["b.mp4", "a.mp4"], [0.7, 0.2])
    assert sub.columns.tolist() == ["filename", "label"]
    assert sub["filename"].tolist() == ["b.mp4", "a.mp4"]
    text = sub.to_csv(index=False)
    assert text.splitlines()[0] == "filename,label"
    assert pd.read_csv(io.StringIO(text))["label"].tolist() == [0.7, 0.2]
    with pytest.raises(ValueError, match="NaN"):
        submission_frame(["a.mp4"], [float("nan")])
    with pytest.raises(ValueError, match="repeat"):
        submission_frame(["a.mp4", "a.mp4"], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        submission_frame(["a.mp4"], [1.2])


def test_roc_figure_draws_the_curve_and_reports_auc():
    fig = roc_figure([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert "AUC 0.750" in ax.get_title()
    assert len(ax.lines) == 2  # chance diagonal + model curve
    fig.savefig(io.BytesIO(), format="png")
    one_class = roc_figure([1, 1], [0.3, 0.8])
    assert "undefined" in one_class.axes[0].get_title()


def test_overlay_tints_only_masked_pixels():
    crop = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4))
    mask[:2] = 1.0
    out = overlay_mask(crop, mask, alpha=0.5)
    np.testing.assert_array_equal(out[2:], crop[2:])
    np.testing.assert_array_equal(out[0, 0], [178, 50, 50])  # halfway to pure red
    np.testing.assert_array_equal(overlay_mask(crop, None, 0.5), crop)


def test_face_grid_figure_titles_carry_scores():
    crops = [np.zeros((8, 8, 3), np.uint8) for _ in range(3)]
    masks = [np.ones((8, 8)), None, np.zeros((8, 8))]
    fig = face_grid_figure(crops, masks, [0.91, 0.1, 0.5], ["a.mp4", "b.mp4", "c.mp4"], ncols=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a.mp4\np=0.91", "b.mp4\np=0.10", "c.mp4\np=0.50"]
    fig.savefig(io.BytesIO(), format="png")
    with pytest.raises(ValueError, match="scores"):
        face_grid_figure(crops, masks, [0.5], None)
