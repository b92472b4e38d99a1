"""A tiny generated UDA sample and tiny pipeline parameters for the uda tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podium.sample_data.uda import generate_uda_sample
from tests.conftest import make_project, write_tree

TINY_SAMPLE = {
    "n_train_source": 4,
    "n_val_source": 2,
    "n_train_target": 4,
    "n_val_target": 2,
    "n_test": 2,
    "source_width": 96,
    "source_height": 48,
    "target_width": 96,
    "target_height": 54,
}
SAMPLE_SEED = 3

#: The default run shrunk to seconds: a narrow decoder, a few iterations, small crops.
TINY_PARAMS = {
    "uda": {
        "data": {"source_size": [48, 96], "target_size": [54, 96]},
        "models": {"m1": {"channels": 8, "dilations": [1, 2]}},
        "training": {
            "iterations": 4,
            "iterations_per_epoch": 2,
            "batch_size": 2,
            "crop_size": [48, 48],
            "scheduler": {"warmup_epochs": 0.5},
            "pseudo_label": {"start_iteration": 1, "threshold": 0.0},
        },
        "inference": {"window": [48, 48], "stride": [32, 32], "scales": [1.0, 0.75]},
        "evaluation": {"overlays": 2},
    },
    "runtime": {"num_workers": 0},
}


@pytest.fixture(scope="session")
def pristine_uda_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uda_sample") / "uda"
    return write_tree(generate_uda_sample(TINY_SAMPLE, seed=SAMPLE_SEED), root)


@pytest.fixture
def project(tmp_path, monkeypatch, pristine_uda_root) -> Path:
    """A throwaway project with the tiny sample and TINY_PARAMS, as the working folder."""
    root = make_project(tmp_path / "project", TINY_PARAMS, git=False)
    shutil.copytree(pristine_uda_root, root / "data" / "01_raw" / "uda")
    monkeypatch.chdir(root)
    return root
