"""A tiny generated mask sample and tiny pipeline parameters for the mask tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podium.sample_data.mask import generate_mask_sample
from tests.conftest import make_project, write_tree

TINY_SAMPLE = {
    "n_people": 12,
    "n_eval_people": 2,
    "width": 48,
    "height": 64,
    "young_share": 0.3,
    "boundary_share": 0.2,
    "old_share": 0.25,
}
SAMPLE_SEED = 5

#: Minutes of the default run shrunk to seconds: tiny crops, one epoch, two folds.
TINY_PARAMS = {
    "mask": {
        "crop": {"centre": {"height": 48, "width": 40}, "output": {"height": 32, "width": 24}},
        "folds": {"n_splits": 2},
        "model": {"backbones": ["resnet10t"]},
        "train": {"epochs": 1, "batch_size": 16},
        "resampling": {"factor": 2},
    },
    # Crops are made here (Dask fan-out has its own tests; the end-to-end run turns one
    # worker process on) and the DataLoader reads them in the main process.
    "runtime": {"num_workers": 0, "dask": {"n_workers": 0}},
}
#: The Dask fan-out of a real run: a LocalCluster of one worker process.
ONE_DASK_WORKER = {"runtime": {"dask": {"n_workers": 1}}}


@pytest.fixture(scope="session")
def pristine_mask_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mask_sample") / "mask"
    return write_tree(generate_mask_sample(TINY_SAMPLE, seed=SAMPLE_SEED), root)


@pytest.fixture
def project(tmp_path, monkeypatch, pristine_mask_root) -> Path:
    """A throwaway project with the tiny sample and TINY_PARAMS, as the working folder."""
    root = make_project(tmp_path / "project", TINY_PARAMS, git=False)
    shutil.copytree(pristine_mask_root, root / "data" / "01_raw" / "mask")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def mask_root(pristine_mask_root, tmp_path) -> Path:
    """A private copy a test may break."""
    return Path(shutil.copytree(pristine_mask_root, tmp_path / "mask"))
