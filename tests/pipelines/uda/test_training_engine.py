"""uda on podium's one training engine: resume, seeding, DDP, the paired draws, parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from podium.core import ddp
from podium.core.config import ParameterError
from podium.core.device import Runtime, amp_settings
from podium.pipelines.uda import data, nodes, train
from podium.pipelines.uda.params import TrainingParams
from podium.pipelines.uda.pipeline import create_pipeline
from tests.conftest import REPO, soft_merged
from tests.pipelines.uda.conftest import TINY_PARAMS

CPU = Runtime(torch.device("cpu"), amp_settings("cpu", "fp32"), 0, False, False)
ONE_WORKER = Runtime(torch.device("cpu"), amp_settings("cpu", "fp32"), 1, False, False)
TWO_RANKS = ddp.DistributedSettings(nproc_per_node=2, backend="gloo")
SIZES = ((48, 96), (54, 96))


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def _one_thread_and_torch_flags_kept():
    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(flag, warn_only=True)


@pytest.fixture(scope="module")
def uda() -> dict:
    base = yaml.safe_load((REPO / "conf" / "base" / "parameters_uda.yml").read_text())
    return soft_merged(base, {"uda": TINY_PARAMS["uda"]})["uda"]


@pytest.fixture(scope="module")
def tables(pristine_uda_root):
    index, _ = nodes.index_data(pristine_uda_root)
    sizes = {s: SIZES[0] if "source" in s else SIZES[1] for s in index["split"].unique()}
    images, counts, _ = data.inspect_images(index, sizes, progress=False)
    source = images[images["split"] == "train_source"].reset_index(drop=True)
    target = images[images["split"] == "train_target"].reset_index(drop=True)
    counts = counts[counts["split"] == "train_source"].drop(columns="split")
    return source, target, counts.reset_index(drop=True)


def _train(tables, uda, *, seed=42, runtime=CPU, changes=None, **kwargs):
    source, target, counts = tables
    training = soft_merged(uda["training"], {"iterations": 6, **(changes or {})})
    return train.train_members(
        source,
        target,
        counts,
        uda["models"],
        training,
        seed=seed,
        deterministic=True,
        runtime=runtime,
        sizes=SIZES,
        progress=False,
        **kwargs,
    )["m1"]


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("runtime", [CPU, ONE_WORKER], ids=["no-workers", "one-worker"])
def test_a_run_killed_after_an_epoch_resumes_to_the_uninterrupted_weights(
    tables, uda, runtime, tmp_path, monkeypatch
):
    reference = _train(tables, uda, runtime=runtime, checkpoints=tmp_path / "reference")
    real_step, steps = train.uda_step, []

    def killed(net, batch, num_updates, **kwargs):
        if num_updates == 4:  # the first iteration of epoch 3: epoch 2's checkpoint exists
            raise Interrupted
        return real_step(net, batch, num_updates, **kwargs)

    monkeypatch.setattr(train, "uda_step", killed)
    folder = tmp_path / "checkpoints"
    with pytest.raises(Interrupted):
        _train(tables, uda, runtime=runtime, checkpoints=folder)
    (checkpoint,) = folder.glob("*/m1/checkpoints/checkpoint.pt")
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2

    def counted(net, batch, num_updates, **kwargs):
        steps.append(num_updates)
        return real_step(net, batch, num_updates, **kwargs)

    monkeypatch.setattr(train, "uda_step", counted)
    resumed = _train(
        tables, uda, runtime=runtime, checkpoints=folder, changes={"resume_from": "latest"}
    )
    assert steps == [4, 5]  # only epoch 3 was trained again
    assert _equal(resumed["student"], reference["student"])
    assert _equal(resumed["ema"], reference["ema"])
    assert resumed["history"] == reference["history"]
    assert not checkpoint.exists() and (checkpoint.parents[1] / "result.pt").is_file()

    steps.clear()  # a finished member is taken from its result, not trained again
    again = _train(
        tables, uda, runtime=runtime, checkpoints=folder, changes={"resume_from": "latest"}
    )
    assert steps == [] and _equal(again["ema"], reference["ema"])


def test_the_same_seed_trains_the_same_weights_another_seed_others(tables, uda):
    first, again, other = (_train(tables, uda, seed=seed) for seed in (42, 42, 43))
    assert _equal(first["student"], again["student"]) and _equal(first["ema"], again["ema"])
    assert first["history"] == again["history"]
    assert not _equal(first["student"], other["student"])
    assert first["history"][-1]["train_loss"] != other["history"][-1]["train_loss"]


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k] - b[k]).norm() ** 2) for k in a if a[k].is_floating_point()) ** 0.5


def test_two_gloo_processes_train_close_to_one_process(tables, uda, tmp_path):
    """The same global batches and initial weights; per-rank BatchNorm statistics (one image
    per rank) and per-rank mixing draws make the results close rather than equal."""
    changes = {"iterations": 4}
    single = _train(tables, uda, changes=changes)
    ranked = _train(tables, uda, changes=changes, distributed=TWO_RANKS, checkpoints=tmp_path)
    other_seed = _train(tables, uda, seed=43, changes=changes)
    for key in ("student", "ema"):
        assert ranked[key].keys() == single[key].keys()
        assert _distance(ranked[key], single[key]) < 0.5 * _distance(other_seed[key], single[key])
    assert [r["epoch"] for r in ranked["history"]] == [1, 2]
    for a, b in zip(ranked["history"], single["history"], strict=True):
        assert a.keys() == b.keys() and a["lr"] == b["lr"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.15)
        assert a["train_pseudo_weight"] == pytest.approx(b["train_pseudo_weight"])


def test_the_paired_loader_gives_an_epoch_of_epoch_seeded_rare_class_pairs(tables, uda):
    source, target, counts = tables
    t = TrainingParams.of(uda["training"])
    weights = train.source_weights(counts, t["rare_class_sampling"])
    job = train.MemberJob(
        "m1", uda["models"]["m1"], source, target, weights, t, SIZES, 1, True, CPU
    )
    loader = train.paired_loader(job, 7, CPU)
    assert len(loader) == t["iterations_per_epoch"]
    xs, ys, xt = next(iter(loader))
    assert xs.shape == (2, 3, 48, 48) and ys.shape == (2, 48, 48) and xt.shape == (2, 3, 48, 48)

    def pairs(epoch: int) -> list[tuple[int, int]]:
        loader.sampler.set_epoch(epoch)
        return list(loader.sampler)

    assert pairs(1) == pairs(1) != pairs(2)
    drawn = [i for epoch in range(1, 40) for i, _ in pairs(epoch)]
    share = np.bincount(drawn, minlength=len(source)) / len(drawn)
    np.testing.assert_allclose(share, weights, atol=0.1)  # rare-class weights, not uniform
    assert {j for _, j in pairs(1)} <= set(range(len(target)))


def test_the_pipeline_gives_training_the_catalog_checkpoint_folder(tmp_path, monkeypatch):
    catalog = yaml.safe_load((REPO / "conf" / "base" / "catalog_uda.yml").read_text())
    assert catalog["uda_checkpoints"]["type"] == "podium.datasets.FolderStoreDataset"
    (node,) = [n for n in create_pipeline().nodes if n.name == "uda.models.train_models"]
    assert "uda_checkpoints" in node.inputs
    seen = {}

    def capture(*args, **kwargs):
        seen.update(kwargs)
        raise Interrupted

    monkeypatch.setattr(nodes, "train_members", capture)
    runtime = {"device": "cpu", "num_workers": 0, "distributed": {"nproc_per_node": 2}}
    images = pd.DataFrame(columns=list(data.IMAGE_COLUMNS))
    counts = pd.DataFrame(columns=["id", *data.CLASS_COLUMNS])
    uda = TINY_PARAMS["uda"]
    with pytest.raises(Interrupted):
        nodes.train_models(
            images, counts, uda["data"], {"m1": {"encoder": "regnetx_002", "decoder": "fpn"}},
            {}, 5, False, runtime, tmp_path / "ckpt",
        )  # fmt: skip
    assert seen["checkpoints"] == tmp_path / "ckpt" and seen["deterministic"] is False
    assert seen["distributed"] == TWO_RANKS


@pytest.mark.parametrize(
    ("changes", "world_size", "message"),
    [
        ({"iterations": 5}, 1, r"uda\.training\.iterations\b.*multiple.*iterations_per_epoch"),
        ({"iterations_per_epoch": 0}, 1, r"uda\.training\.iterations_per_epoch"),
        ({"batch_size": 3}, 2, r"uda\.training\.batch_size.*multiple of 2"),
        ({"resume_from": "earliest"}, 1, r"uda\.training\.resume_from.*latest"),
        ({"log_every": 20}, 1, r"uda\.training.*log_every"),
        ({"optimizer": {"name": "adamm"}}, 1, r"uda\.training\.optimizer\.name"),
        ({"optimizer": {"head_lr_mult": 10.0}}, 1, r"uda\.training\.optimizer.*head_lr_mult"),
        ({"scheduler": {"warmup_epochs": 2}}, 1, r"uda\.training\.scheduler\.warmup_epochs"),
        ({"scheduler": {"name": "polly"}}, 1, r"uda\.training\.scheduler\.name.*poly"),
        ({"ema_rule": "dacs"}, 1, r"uda\.training\.ema_rule.*daformer"),
        ({"pseudo_label": {"weight": "pixel"}}, 1, r"uda\.training\.pseudo_label\.weight.*batch"),
        ({"pseudo_label": {"inclusive": "yes"}}, 1, r"uda\.training\.pseudo_label\.inclusive"),
        (
            {"source_fisheye": {"image_circle": 0}},
            1,
            r"uda\.training\.source_fisheye\.image_circle",
        ),
        (
            {"optimizer": {"lr_multipliers": {"head": 10.0}}},
            1,
            r"uda\.training\.optimizer\.lr_multipliers.*head.*decoder",
        ),
    ],
)
def test_bad_training_parameters_stop_before_training_naming_the_key(
    tables, uda, changes, world_size, message, monkeypatch
):
    monkeypatch.setattr(train.resume, "run_jobs", None)  # never reached
    distributed = ddp.DistributedSettings(nproc_per_node=world_size)
    with pytest.raises(ParameterError, match=message):
        _train(tables, uda, changes={"iterations": 4, **changes}, distributed=distributed)
