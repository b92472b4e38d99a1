from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from podium.core.plots import (
    bar_figure,
    confusion_matrix_figure,
    curves_figure,
    expected_calibration_error,
    history_to_curves,
    image_grid_figure,
    reliability_bins,
    reliability_diagram_figure,
)


def _saves(fig: Figure, tmp_path) -> bool:
    path = tmp_path / "f.png"
    fig.savefig(path)
    return path.stat().st_size > 1000


def test_confusion_matrix_figure(tmp_path):
    before = plt.get_fignums()
    fig = confusion_matrix_figure([0, 1, 2, 2], [0, 2, 2, 2], ["a", "b", "c"], title="cm")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # matrix and colour bar
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(image[1], [0, 0, 1])  # rows normalised
    assert fig.axes[0].get_title() == "cm"
    assert plt.get_fignums() == before  # nothing registered with pyplot
    assert _saves(fig, tmp_path)
    counts = confusion_matrix_figure([0, 0], [0, 1], ["a", "b", "c"], normalize=False)
    assert counts.axes[0].images[0].get_array()[0].tolist() == [1, 1, 0]


def test_reliability_bins_and_diagram(tmp_path):
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.85, 0.95, 1.0])
    confidence, accuracy, counts = reliability_bins(y, p, n_bins=10)
    assert counts.sum() == 5 and counts[9] == 2 and np.isnan(accuracy[5])
    assert accuracy[0] == 0 and accuracy[9] == 1
    assert expected_calibration_error(y, p, 10) == pytest.approx(
        np.mean([0.05, 0.15, 0.15, 0.025, 0.025])
    )
    fig = reliability_diagram_figure(y, p, n_bins=5)
    assert len(fig.axes) == 2 and "ECE" in fig.axes[0].get_title()
    assert _saves(fig, tmp_path)


def test_image_grid_figure(tmp_path):
    images = [np.full((16, 16, 3), i * 40, dtype=np.uint8) for i in range(5)] + [np.zeros((8, 8))]
    fig = image_grid_figure(images, titles=[str(i) for i in range(6)], ncols=4, title="faces")
    assert len(fig.axes) == 6 and fig.axes[5].get_title() == "5"
    assert _saves(fig, tmp_path)
    with pytest.raises(ValueError, match="titles"):
        image_grid_figure(images, titles=["x"])


def test_curves_figure_from_dict_and_fit_history(tmp_path):
    fig = curves_figure({"train_loss": [1.0, 0.5, 0.3], "val_f1": [0.2, 0.4, 0.5]})
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "val_f1"
    history = [
        {"epoch": 1, "train_loss": 1.0, "lr": 0.1},
        {"epoch": 2, "train_loss": 0.5, "lr": 0.1, "val": 3},
    ]
    assert history_to_curves(history)["val"][0] != history_to_curves(history)["val"][0]  # NaN
    assert len(curves_figure(history).axes) == 3
    assert _saves(fig, tmp_path)


def test_bar_figure(tmp_path):
    fig = bar_figure(["road", "car", "sky"], [0.9, 0.5, 0.8], title="IoU")
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 3
    assert _saves(fig, tmp_path)
    with pytest.raises(ValueError):
        bar_figure(["a"], [1, 2])
