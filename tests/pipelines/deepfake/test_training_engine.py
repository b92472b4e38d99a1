"""Frame-model training on podium's engine: seeding, determinism, DDP, checkpoints, resume.

The synthetic records of test_training.py (a bright square marks the fakes), written to disk
as the pipeline's records are, so their load functions travel to DDP processes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

from podium.core import resume
from podium.pipelines.deepfake import train
from podium.pipelines.deepfake.train import train_frame_models
from tests.pipelines.deepfake.test_training import (  # noqa: F401 (one_thread: autouse)
    RUNTIME,
    _data,
    _settings,
    _store,
    one_thread,
)

#: GroupNorm instead of BatchNorm: no batch statistics, so a global batch split over two
#: processes gives the gradients of the one-process batch and the runs agree to rounding.
NO_BATCH_STATS = "test_efficientnet_gn"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Records as joblib files and picklable load functions (PartitionedDataset-like)."""
    records, videos = _data(n_videos=8, n_crops=3, seed=11)
    folder = tmp_path_factory.mktemp("records")
    loaders = {}
    for name, record in records.items():
        path = folder / f"{name}.joblib"
        joblib.dump(record, path)
        loaders[name] = functools.partial(joblib.load, path)
    _, index = _store(records)
    return loaders, index, videos


def _train(stored, settings, runtime=RUNTIME, seed=0, **kwargs):
    loaders, index, videos = stored
    return train_frame_models(loaders, index, videos, settings, runtime, seed, **kwargs)


def _fold0(**overrides):
    return _settings(**{"folds_to_train": [0], "epochs": 2, **overrides})


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_seed_decides_the_weights(stored):
    settings = _fold0(epochs=1)
    first, again, other = (_train(stored, settings, seed=s)[0]["tiny/fold0"] for s in (3, 3, 4))
    assert _same_weights(first, again)
    assert not _same_weights(first, other)


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_reaches_torch_inside_training(stored, monkeypatch, deterministic):
    seen = []
    real_fit = train.fit

    def spy(*args, **kwargs):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", spy)
    torch.use_deterministic_algorithms(not deterministic)  # the opposite, to be overridden
    try:
        _train(stored, _fold0(epochs=1), deterministic=deterministic)
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [deterministic]


def test_two_gloo_processes_train_what_one_process_trains(stored):
    """2 ranks x 4 crops per batch = the one-process batch of 8; without batch statistics,
    dropout or augmentation (each rank draws its own) the weights and OOF agree to 1e-5."""
    settings = _fold0(
        models=[{"name": "tiny", "architecture": "classifier", "backbone": NO_BATCH_STATS}],
        augment=[],
        balance_classes=True,  # the distributed weighted draw
    )
    one = _train(stored, settings, seed=5)
    two = _train(
        stored,
        settings,
        runtime={**RUNTIME, "distributed": {"nproc_per_node": 2, "backend": "gloo"}},
        seed=5,
    )
    for key, state in one[0].items():
        for name, tensor in state.items():
            torch.testing.assert_close(two[0][key][name], tensor, rtol=0, atol=1e-5)
    assert set(two[2]["tiny"]) == set(one[2]["tiny"])
    for partition, probabilities in one[2]["tiny"].items():
        np.testing.assert_allclose(two[2]["tiny"][partition], probabilities, atol=1e-5)
    columns = ["train_loss", "val_loss", "val_log_loss"]
    np.testing.assert_allclose(two[1][columns], one[1][columns], rtol=1e-5)


class Killed(RuntimeError):
    pass


def _folders(root: Path) -> list[Path]:
    """Every fold's folder: <root>/<settings digest>/<model>-<spec digest>/fold<k>."""
    return sorted(p for p in root.glob("*/tiny-*/fold*") if p.is_dir())


def test_a_killed_fold_resumes_from_its_checkpoint_and_a_finished_one_is_reused(
    stored, tmp_path, monkeypatch
):
    # one loader worker: workers reseed the augmentations from the loader generator each
    # epoch, which the checkpoint restores, so a resumed fold repeats the uninterrupted one
    runtime = {**RUNTIME, "num_workers": 1}
    settings = _fold0(augment=[{"name": "HorizontalFlip", "p": 0.5}])
    reference = _train(stored, settings, runtime)
    real_fit = train.fit
    calls = []

    def killed_after_one_epoch(*args, **kwargs):
        real_fit(*args, **{**kwargs, "epochs": 1})
        raise Killed

    def spy(*args, **kwargs):
        path = kwargs["checkpoint_path"]
        calls.append((Path(path), Path(path).exists()))
        return real_fit(*args, **kwargs)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setattr(train, "fit", killed_after_one_epoch)
    with pytest.raises(Killed):
        _train(stored, settings, runtime, checkpoint_dir=checkpoints)
    (folder,) = _folders(checkpoints)
    checkpoint = folder / resume.CHECKPOINTS / train.CHECKPOINT_FILE
    assert folder.name == "fold0" and checkpoint.exists()

    monkeypatch.setattr(train, "fit", spy)
    latest = {**settings, "resume_from": "latest"}
    resumed = _train(stored, latest, runtime, checkpoint_dir=checkpoints)
    assert calls == [(checkpoint, True)]  # the pipeline passed it
    assert _same_weights(resumed[0]["tiny/fold0"], reference[0]["tiny/fold0"])
    pd.testing.assert_frame_equal(resumed[1], reference[1])
    for partition, probabilities in reference[2]["tiny"].items():
        np.testing.assert_array_equal(resumed[2]["tiny"][partition], probabilities)
    assert (folder / resume.RESULT_FILE).exists() and not checkpoint.exists()

    monkeypatch.setattr(train, "fit", must_not_train)
    reused = _train(stored, latest, runtime, checkpoint_dir=checkpoints)
    assert _same_weights(reused[0]["tiny/fold0"], reference[0]["tiny/fold0"])
    pd.testing.assert_frame_equal(reused[1], reference[1])

    calls.clear()
    monkeypatch.setattr(train, "fit", spy)
    _train(stored, settings, runtime, checkpoint_dir=checkpoints)  # resume_from: null
    assert calls == [(checkpoint, False)]  # started afresh

    calls.clear()
    other = {**latest, "optimizer": {"name": "adam", "lr": 1e-3}}
    _train(stored, other, runtime, checkpoint_dir=checkpoints)
    assert len(calls) == 1 and calls[0][0].parents[1] != folder and not calls[0][1]
    assert len(_folders(checkpoints)) == 2  # another configuration, another checkpoint


def test_resume_latest_needs_a_checkpoint_folder(stored):
    with pytest.raises(train.ParameterError, match=r"deepfake\.training\.resume_from"):
        _train(stored, _fold0(resume_from="latest"))


def test_the_global_batch_must_split_over_the_processes(stored):
    runtime = {**RUNTIME, "distributed": {"nproc_per_node": 3, "backend": "gloo"}}
    with pytest.raises(train.ParameterError, match=r"deepfake\.training\.batch_size"):
        _train(stored, _fold0(), runtime)
