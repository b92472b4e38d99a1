"""mask on podium's one training engine: seeding, `deterministic`, DDP, checkpoints, specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from podium.core import ddp
from podium.core.config import ParameterError
from podium.core.device import amp_settings
from podium.pipelines.mask import nodes, train
from podium.pipelines.mask.pipeline import create_pipeline
from podium.pipelines.mask.train import FoldJob, Runtime, train_cross_validated, train_fold

REPO = Path(__file__).resolve().parents[3]
CPU = Runtime(torch.device("cpu"), amp_settings("cpu", "fp32"), 0, False, False)
#: One loader worker: fresh workers each epoch are seeded from the loader's generator, which
#: the checkpoint restores, so the augmentations after a resume are the uninterrupted run's.
ONE_WORKER = Runtime(torch.device("cpu"), amp_settings("cpu", "fp32"), 1, False, False)
#: GroupNorm, no batch statistics: N processes then train exactly what one process trains.
NO_BATCH_STATS = "test_efficientnet_gn"
MODEL = {"variant": "multihead", "backbones": [NO_BATCH_STATS], "pretrained": False}
OPTIMIZER = {"name": "adamw", "lr": 0.01, "weight_decay": 0.05}
SCHEDULER = {"name": "cosine", "per": "step", "warmup_epochs": 1, "min_lr": 0.0}
TWO_RANKS = ddp.DistributedSettings(nproc_per_node=2, backend="gloo")


@pytest.fixture(autouse=True)
def _one_thread_and_torch_flags_kept():
    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(flag, warn_only=True)


def _data(n_people: int = 8, photos: int = 4) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = n_people * photos
    person = np.repeat(np.arange(n_people), photos)
    table = pd.DataFrame(
        {
            "row": np.arange(n),
            "person": person,
            "fold": person % 2,
            "mask": np.tile(np.arange(photos) % 3, n_people),
            "gender": person % 2,
            "age_class": person % 3,
        }
    )
    table["class"] = table["mask"] * 6 + table["gender"] * 3 + table["age_class"]
    table["competition_class"] = table["class"]
    return rng.integers(0, 255, (n, 32, 24, 3), dtype=np.uint8), table


def _job(
    seed: int = 3, *, deterministic: bool = True, drop_rate: float = 0.0, **changes
) -> FoldJob:
    crops, table = _data()
    frame = table[table["fold"] != 0].assign(augmented=False)
    settings = {
        "crops": crops,
        "frame": frame,
        "model": {**MODEL, "drop_rate": drop_rate},
        "backbone": NO_BATCH_STATS,
        "index": 0,
        "fold": 0,
        "loss": {"name": "focal", "gamma": 2.0},
        "optimizer": OPTIMIZER,
        "scheduler": SCHEDULER,
        "epochs": 2,
        "batch_size": 8,
        "grad_clip": 1.0,
        "accumulate": 1,
        "augment": [],  # per-rank augmentation draws would differ from one process's
        "preprocess": [{"name": "Normalize"}, {"name": "ToTensorV2"}],
        "seed": seed,
        "deterministic": deterministic,
        "runtime": CPU,
    }
    return FoldJob(**{**settings, **changes})


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_another_seed_other_weights():
    first, again, other = (train_fold(_job(seed, drop_rate=0.2)) for seed in (3, 3, 4))
    assert _equal(first["weights"], again["weights"])
    assert first["history"] == again["history"]
    assert not _equal(first["weights"], other["weights"])
    assert (
        first["history"]["model"][-1]["train_loss"] != other["history"]["model"][-1]["train_loss"]
    )


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_reaches_torch(deterministic):
    torch.use_deterministic_algorithms(not deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = not deterministic
    train_fold(_job(deterministic=deterministic, epochs=1, scheduler={"name": "cosine"}))
    assert torch.are_deterministic_algorithms_enabled() is deterministic
    assert torch.backends.cudnn.deterministic is deterministic


def test_two_gloo_processes_train_what_one_process_trains():
    """GroupNorm and no dropout: the ranks' local batches together are the one process's
    global batch and DDP averages their gradients, so only float summation order differs."""
    job = _job(runtime=ONE_WORKER)  # a loader worker in each rank, forked
    single = train_fold(job)
    ranked = ddp.launch(train_fold, job, settings=TWO_RANKS)
    for key, tensor in single["weights"].items():
        torch.testing.assert_close(ranked["weights"][key], tensor, rtol=1e-5, atol=1e-6)
    for a, b in zip(ranked["history"]["model"], single["history"]["model"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    untrained = train_fold(_job(optimizer={**OPTIMIZER, "lr": 0.0}))
    assert not _equal(untrained["weights"], single["weights"])  # it really trained


def test_norm_weights_and_biases_get_no_weight_decay(monkeypatch):
    seen = {}

    def spy(net, loader, *, optimizer, **kwargs):
        seen["groups"] = [
            (g["weight_decay"], {id(p) for p in g["params"]}) for g in optimizer.param_groups
        ]
        seen["flat"] = {id(p) for p in net.parameters() if p.ndim <= 1}
        return []

    monkeypatch.setattr(train, "fit", spy)
    train_fold(_job(epochs=1, scheduler={"name": "none"}))
    no_decay = set().union(*(ids for decay, ids in seen["groups"] if decay == 0.0))
    assert seen["flat"] and seen["flat"] <= no_decay
    assert any(decay == OPTIMIZER["weight_decay"] for decay, _ in seen["groups"])


class Interrupted(Exception):
    pass


def _cross_validate(
    checkpoints: Path | None, resume_from: str | None, lr: float = 0.01, distributed=None
):
    crops, table = _data()
    return train_cross_validated(
        crops,
        table,
        model={**MODEL, "drop_rate": 0.1},
        loss={"name": "ce"},
        optimizer={**OPTIMIZER, "lr": lr},
        scheduler=SCHEDULER,
        train={"epochs": 2, "batch_size": 8, "resume_from": resume_from},
        resampling={"enabled": True, "factor": 2},
        augment=[{"name": "HorizontalFlip", "p": 0.5}],
        preprocess=[{"name": "Normalize"}, {"name": "ToTensorV2"}],
        seed=5,
        runtime=ONE_WORKER,
        checkpoints=checkpoints,
        distributed=distributed,
    )


def test_checkpoints_resume_a_killed_run_and_a_fresh_run_removes_them(tmp_path, monkeypatch):
    reference = _cross_validate(tmp_path / "reference", None).weights
    real_fit, calls = train.fit, []

    def fit(net, loader, *, checkpoint_path, kill_at=None, **kwargs):
        calls.append((Path(checkpoint_path), Path(checkpoint_path).exists()))
        if kill_at is not None:

            def stop(epoch, metrics):
                if epoch == kill_at:
                    raise Interrupted  # after epoch 1's checkpoint, before epoch 2's

            kwargs["on_epoch_end"] = stop
        return real_fit(net, loader, checkpoint_path=checkpoint_path, **kwargs)

    folder = tmp_path / "checkpoints"
    monkeypatch.setattr(train, "fit", lambda *a, **k: fit(*a, kill_at=2, **k))
    with pytest.raises(Interrupted):
        _cross_validate(folder, None)
    ((path, existed),) = calls
    assert not existed and path.is_file() and path.parents[4] == folder
    assert torch.load(path, weights_only=True)["epoch"] == 1

    monkeypatch.setattr(train, "fit", fit)
    calls.clear()
    resumed = _cross_validate(folder, "latest").weights
    assert [existed for _, existed in calls] == [True, False]  # fold 0 resumed, fold 1 fresh
    assert calls[0][0] == path and _equal(resumed, reference)

    calls.clear()
    _cross_validate(folder, "latest", lr=0.02)  # another configuration: its own folder
    assert [existed for _, existed in calls] == [False, False]
    assert all(p.parents[3] != path.parents[3] for p, _ in calls)

    calls.clear()
    assert _equal(_cross_validate(folder, None).weights, reference)
    assert [existed for _, existed in calls] == [False, False]  # stale checkpoints removed


def test_the_pipeline_gives_training_the_catalog_checkpoint_folder(tmp_path, monkeypatch):
    catalog = yaml.safe_load((REPO / "conf" / "base" / "catalog_mask.yml").read_text())
    assert catalog["mask_checkpoints"]["type"] == "podium.datasets.FolderStoreDataset"
    assert catalog["mask_checkpoints"]["path"] == "data/06_models/mask/checkpoints"
    (node,) = [n for n in create_pipeline().nodes if n.name == "mask.models.train_models"]
    assert "mask_checkpoints" in node.inputs

    seen = {}

    def capture(crops, table, **kwargs):
        seen.update(kwargs)
        raise Interrupted

    monkeypatch.setattr(nodes, "train_cross_validated", capture)
    _, table = _data()
    runtime = {"device": "cpu", "num_workers": 0, "distributed": {"nproc_per_node": 2}}
    with pytest.raises(Interrupted):
        nodes.train_models(
            tmp_path, table.assign(crop="x.npz"), tmp_path / "ckpt", MODEL, {}, {}, {}, {}, {},
            [], [], 5, False, runtime,
        )  # fmt: skip
    assert seen["checkpoints"] == tmp_path / "ckpt" and seen["deterministic"] is False
    assert seen["distributed"] == TWO_RANKS


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        ("optimizer", {"name": "adamm"}, r"mask\.optimizer\.name.*adamw"),
        ("optimizer", {"lr": -1.0}, r"mask\.optimizer\.lr"),
        ("optimizer", {"weight_decay": -0.1}, r"mask\.optimizer\.weight_decay"),
        ("optimizer", {"momentum": 1.5}, r"mask\.optimizer\.momentum"),
        ("optimizer", {"betas": [0.9]}, r"mask\.optimizer\.betas"),
        ("optimizer", {"lrr": 0.1}, r"mask\.optimizer.*'lrr'"),
        ("scheduler", {"name": "onecycle"}, r"mask\.scheduler\.name.*cosine"),
        ("scheduler", {"warmup_epochs": 2}, r"mask\.scheduler\.warmup_epochs"),
        ("scheduler", {"factor": 0.5}, r"mask\.scheduler.*'factor'"),
        ("train", {"resume_from": "earliest"}, r"mask\.train\.resume_from.*latest"),
        ("train", {"batch_size": 7}, r"mask\.train\.batch_size.*multiple of 2"),
    ],
)
def test_bad_specs_stop_before_training_naming_the_parameter(where, change, message, monkeypatch):
    monkeypatch.setattr(train, "train_fold", None)  # never reached
    specs = {
        "optimizer": OPTIMIZER,
        "scheduler": SCHEDULER,
        "train": {"epochs": 2, "batch_size": 8, "resume_from": None},
    }
    specs[where] = {**specs[where], **change}
    crops, table = _data()
    with pytest.raises(ParameterError, match=message):
        train_cross_validated(
            crops,
            table,
            model={**MODEL, "drop_rate": 0.0},
            loss={"name": "ce"},
            resampling={"enabled": False, "factor": 1},
            augment=[],
            preprocess=[{"name": "Normalize"}, {"name": "ToTensorV2"}],
            seed=0,
            runtime=CPU,
            distributed=TWO_RANKS,
            **specs,
        )


def test_folds_trained_side_by_side_equal_folds_trained_one_after_the_other(tmp_path):
    # strategy jobs: each fold in its own Dask worker process (one per GPU on a GPU box),
    # with a DataLoader worker of its own; the same computation as one fold after another
    side_by_side = ddp.resolve_distributed({"nproc_per_node": 2, "strategy": "jobs"})
    parallel = _cross_validate(tmp_path / "jobs", None, distributed=side_by_side)
    sequential = _cross_validate(None, None)
    assert parallel.weights.keys() == sequential.weights.keys()
    for key, tensor in sequential.weights.items():
        torch.testing.assert_close(parallel.weights[key], tensor, rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(
        pd.concat(parallel.out_of_fold), pd.concat(sequential.out_of_fold), atol=1e-5
    )


def test_accumulated_half_batches_train_what_the_full_batch_trains():
    job = _job()
    usable = len(job.frame) - len(job.frame) % 8  # whole batches of 8 in both runs
    frame = job.frame.iloc[:usable]
    full = train_fold(_job(frame=frame, batch_size=8))
    halves = train_fold(_job(frame=frame, batch_size=4, accumulate=2))
    quarters = train_fold(_job(frame=frame, batch_size=4))
    for key, tensor in full["weights"].items():
        torch.testing.assert_close(halves["weights"][key], tensor, rtol=1e-5, atol=1e-6)
    assert not _equal(full["weights"], quarters["weights"])
