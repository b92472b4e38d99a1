"""Node-level behaviour that the end-to-end run does not pin down."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.pipelines.deepfake.nodes import ensemble_and_calibrate

CALIBRATION = {
    "factor": 1.0,
    "shift": 0.0,
    "scale_bounds": [0.05, 1.0],
    "clip_low": 0.01,
    "clip_high": 0.99,
    "eps": 1e-15,
}


def _scores(partitions, probs):
    return pd.DataFrame(
        {"partition": partitions, "target": [0, 1, 1, 1][: len(partitions)], "score_m": probs}
    )


def test_stacking_replaces_the_mean_only_when_asked():
    oof = _scores(["a", "b", "c", "d"], [0.4, 0.6, 0.6, 0.6])
    test = _scores(["t1", "t2"], [0.5, 0.5])
    oof_stacked = pd.DataFrame({"partition": ["d", "c", "b", "a"], "stacked": [0.9, 0.8, 0.7, 0.1]})
    test_stacked = pd.DataFrame({"partition": ["t1", "t2"], "stacked": [0.2, 0.95]})

    def run(**stacking):
        return ensemble_and_calibrate(
            oof, test, oof_stacked, test_stacked, {"enabled": True, **stacking}, CALIBRATION
        )

    mean_oof, _, _ = run(replace_mean=False)
    np.testing.assert_allclose(mean_oof["prob"], [0.4, 0.6, 0.6, 0.6])
    stacked_oof, stacked_test, _ = run(replace_mean=True)
    np.testing.assert_allclose(stacked_oof["prob"], [0.1, 0.7, 0.8, 0.9])  # aligned by video
    np.testing.assert_allclose(stacked_test["prob"], [0.2, 0.95])
    with pytest.raises(ValueError, match="stacked predictions lack 1 videos"):
        ensemble_and_calibrate(
            oof,
            test,
            oof_stacked.iloc[1:],
            test_stacked,
            {"enabled": True, "replace_mean": True},
            CALIBRATION,
        )
