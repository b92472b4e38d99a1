"""CycleGAN training: the schedule against the authors' rule, the image pool, resuming
exactly, the run seed deciding the weights."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch

from podium.core.config import ParameterError
from podium.core.device import resolve_runtime
from podium.pipelines.monet.data import to_tensor_images
from podium.pipelines.monet.submission import translate
from podium.pipelines.monet.train import (
    LR_DECAY_TIMINGS,
    SUB_MODELS,
    ImagePool,
    linear_decay,
    lr_factor,
    to_model_range,
    to_uint8,
    train_cyclegan,
)

MODEL = {
    "generator": "resnet",
    "padding": "reflect",
    "ngf": 4,
    "n_blocks": 1,
    "unet_downs": 4,
    "ndf": 4,
    "d_layers": 2,
    "init_gain": 0.02,
}
DATA = {"load_size": 20, "crop_size": 16, "flip": True}
LOSS = {"lambda_cycle": 10.0, "lambda_identity": 0.5}
OPTIMIZER = {"lr": 0.0002, "beta1": 0.5, "beta2": 0.999}
TRAIN = {
    "n_epochs": 1,
    "n_epochs_decay": 2,
    "batch_size": 2,
    "epoch_size": "max",
    "pool_size": 3,
    "grad_clip": None,
    "lr_decay_timing": "reference",
    "epochs_this_run": None,
    "resume_from": None,
}
RUNTIME = resolve_runtime({"device": "cpu", "precision": "fp32", "num_workers": 0})


def same_weights(a: Mapping, b: Mapping) -> bool:
    """Bit for bit, all four networks."""
    return a.keys() == b.keys() and all(
        a[name].keys() == b[name].keys()
        and all(torch.equal(a[name][k], b[name][k]) for k in a[name])
        for name in a
    )


def same_state(a, b) -> bool:
    """Two loaded training checkpoints (nested dicts and lists of tensors) equal exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(same_state(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def load_state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def reference_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """The authors' rule from its definition, with a plain loop: their train.py steps the
    LambdaLR at the start of each epoch, so (1-based) epoch e trains at
    1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1); the loop counts e + 1 - n_epochs."""
    past = 0
    for _ in range(n_epochs, epoch + 1):
        past += 1
    return 1.0 - past / (n_epochs_decay + 1)


def after_n_epochs_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """podium's earlier timing from its definition: 1 - max(0, e - n_epochs) / (decay + 1)."""
    past = 0
    for _ in range(n_epochs + 1, epoch + 1):
        past += 1
    return 1.0 - past / (n_epochs_decay + 1)


DEFINITIONS = {"reference": reference_factor, "after_n_epochs": after_n_epochs_factor}


def scheduled_rates(n_epochs: int, n_epochs_decay: int, timing: str, lr: float = 0.5):
    """The rate of every epoch as training sees it: read before the epoch, the LambdaLR
    stepped after it (``_train_epoch``'s order)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = linear_decay(optimizer, n_epochs, n_epochs_decay, timing)
    rates = []
    for _ in range(n_epochs + n_epochs_decay):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_the_worked_examples_of_the_authors_rule_and_of_the_old_timing():
    # 100 + 100 epochs: the reference decays from epoch 100 and trains epoch 200 at 0
    assert lr_factor(99, 100, 100) == 1.0
    assert lr_factor(100, 100, 100) == pytest.approx(0.990099, abs=1e-6)
    assert lr_factor(200, 100, 100) == 0.0
    assert lr_factor(100, 100, 100, "reference") == pytest.approx(1 - 1 / 101, rel=1e-12)
    # podium's earlier timing, one epoch later, kept as lr_decay_timing: after_n_epochs
    assert lr_factor(100, 100, 100, "after_n_epochs") == 1.0
    assert lr_factor(200, 100, 100, "after_n_epochs") == pytest.approx(0.009901, abs=1e-6)
    steps = np.diff([lr_factor(e, 100, 100) for e in range(99, 201)])
    np.testing.assert_allclose(steps, -1 / 101)  # a straight line down to 0


@pytest.mark.parametrize("timing", LR_DECAY_TIMINGS)
def test_lr_factor_is_its_definition_on_random_inputs(timing):
    rng = np.random.default_rng(0)
    definition = DEFINITIONS[timing]
    for _ in range(2000):
        n, decay = int(rng.integers(0, 400)), int(rng.integers(1, 400))
        epoch = int(rng.integers(1, n + decay + 1))
        assert lr_factor(epoch, n, decay, timing) == pytest.approx(
            definition(epoch, n, decay), abs=1e-12
        ), (epoch, n, decay)


@pytest.mark.parametrize("timing", LR_DECAY_TIMINGS)
def test_the_schedule_training_steps_gives_every_epoch_its_defined_rate(timing):
    rng = np.random.default_rng(1)
    definition = DEFINITIONS[timing]
    epochs = 0
    for _ in range(1000):
        n, decay = int(rng.integers(0, 25)), int(rng.integers(1, 25))
        expected = [0.5 * definition(e, n, decay) for e in range(1, n + decay + 1)]
        assert scheduled_rates(n, decay, timing) == pytest.approx(expected, abs=1e-12)
        epochs += n + decay
        if timing == "reference":
            assert expected[-1] == 0.0  # the reference trains its last epoch at rate 0
    assert epochs > 20_000


@pytest.mark.parametrize("timing", LR_DECAY_TIMINGS)
def test_no_decay_epochs_is_a_constant_rate_in_every_epoch(timing):
    # podium's decision: n_epochs_decay 0 is the constant schedule (the reference's formula
    # would train the last epoch, the only one of a one-epoch run, at rate 0)
    for n in (1, 2, 10, 100_000):
        assert {lr_factor(e, n, 0, timing) for e in (1, n // 2 + 1, n)} == {1.0}
    assert scheduled_rates(10, 0, timing) == [0.5] * 10


def test_an_unknown_decay_timing_names_the_parameter():
    with pytest.raises(ParameterError, match=r"monet\.train\.lr_decay_timing.*after_n_epochs"):
        lr_factor(1, 1, 1, "late")


def test_image_pool_fills_then_swaps_about_half():
    generator = torch.Generator().manual_seed(0)
    pool = ImagePool(4, generator)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # while filling, images pass through
    assert len(pool.images) == 4
    new = torch.arange(100.0, 300.0).view(200, 1, 1, 1)
    out = pool.query(new)
    from_history = (out < 100).sum().item() + sum(
        1 for i, v in enumerate(out.flatten()) if v >= 100 and v != new[i].item()
    )
    assert 70 < from_history < 130  # each image swapped for a stored one with p = 1/2
    assert len(pool.images) == 4  # never grows past its size
    assert set(out.flatten().tolist()) <= set(range(4)) | set(new.flatten().tolist())


def test_a_pool_of_size_zero_returns_its_input():
    images = torch.randn(3, 3, 4, 4)
    assert ImagePool(0, torch.Generator()).query(images) is images


def test_the_pool_state_round_trips_and_an_empty_pool_too():
    pool = ImagePool(3, torch.Generator().manual_seed(0))
    empty = ImagePool(3, torch.Generator())
    empty.load_state_dict(pool.state_dict())
    assert empty.images == []
    pool.query(torch.randn(2, 3, 4, 4))
    restored = ImagePool(3, torch.Generator())
    restored.load_state_dict(pool.state_dict())
    assert len(restored.images) == 2
    assert all(torch.equal(x, y) for x, y in zip(pool.images, restored.images, strict=True))


def _images(n, seed):
    return list(np.random.default_rng(seed).integers(0, 255, (n, 24, 24, 3), dtype=np.uint8))


def _train(train, checkpoint, resume=None, seed=7, optimizer=OPTIMIZER):
    return train_cyclegan(
        _images(5, 0),
        _images(3, 1),
        data=DATA,
        model=MODEL,
        loss=LOSS,
        optimizer=optimizer,
        train=train,
        seed=seed,
        deterministic=True,
        runtime=RUNTIME,
        checkpoint=checkpoint,
        resume=resume,
        progress=False,
    )


def test_resuming_from_a_saved_state_continues_the_schedule_exactly(tmp_path):
    straight = _train(TRAIN, tmp_path / "straight.pt")
    first = _train(TRAIN | {"epochs_this_run": 1}, tmp_path / "first.pt")
    assert first.epoch == 1 and [row["epoch"] for row in first.history] == [1]
    # a later run, its own checkpoint file, started from the state the first one saved
    resumed = _train(TRAIN, tmp_path / "second.pt", resume=first.checkpoint)
    assert [row["epoch"] for row in resumed.history] == [2, 3]  # a new stretch of epochs
    lrs = [row["lr"] for row in straight.history]
    assert lrs == pytest.approx([2e-4 * 2 / 3, 2e-4 / 3, 0.0])  # the reference's 1 + 2 epochs
    assert resumed.history == straight.history[1:]
    assert resumed.epoch == straight.epoch == 3
    assert same_weights(resumed.weights, straight.weights)
    resumed_state, straight_state = load_state(resumed.checkpoint), load_state(straight.checkpoint)
    assert resumed_state.pop("extra") != straight_state.pop("extra")  # the histories only
    assert same_state(resumed_state, straight_state)


def test_a_run_stopped_after_an_epoch_continues_its_own_checkpoint_bit_for_bit(tmp_path):
    straight = _train(TRAIN, tmp_path / "straight.pt")
    checkpoint = tmp_path / "killed.pt"
    _train(TRAIN | {"epochs_this_run": 1}, checkpoint)
    torch.manual_seed(999)  # another process state before resuming
    resumed = _train(TRAIN, checkpoint)
    assert resumed.history == straight.history  # the stopped run's epoch is kept
    assert same_weights(resumed.weights, straight.weights)
    saved, expected = load_state(checkpoint), load_state(straight.checkpoint)
    assert saved["epoch"] == 3 and same_state(saved, expected)  # Adams, pools, RNGs too


def test_the_run_seed_decides_the_weights(tmp_path):
    one_epoch = TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}
    a = _train(one_epoch, tmp_path / "a.pt")
    b = _train(one_epoch, tmp_path / "b.pt")
    other = _train(one_epoch, tmp_path / "c.pt", seed=8)
    assert same_weights(a.weights, b.weights) and a.history == b.history
    for name in SUB_MODELS:
        assert not all(
            torch.equal(t, other.weights[name][k]) for k, t in a.weights[name].items()
        ), name


def test_a_one_epoch_constant_run_learns_at_the_initial_rate(tmp_path):
    one_epoch = TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}
    trained = _train(one_epoch, tmp_path / "one.pt")
    assert [row["lr"] for row in trained.history] == [OPTIMIZER["lr"]]
    # at rate 0 the epoch leaves the initial weights: the constant one moved them
    at_rate_zero = _train(one_epoch, tmp_path / "lr0.pt", optimizer=OPTIMIZER | {"lr": 0.0})
    assert not same_weights(trained.weights, at_rate_zero.weights)


def test_gradient_clipping_changes_the_updates(tmp_path):
    one_epoch = TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}
    plain = _train(one_epoch, tmp_path / "plain.pt")
    clipped = _train(one_epoch | {"grad_clip": 1e-3}, tmp_path / "clipped.pt")
    assert not same_weights(plain.weights, clipped.weights)
    assert np.isfinite([v for row in clipped.history for v in row.values()]).all()


def test_a_finished_run_resumed_trains_nothing(tmp_path):
    done = _train(TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}, tmp_path / "done.pt")
    again = _train(
        TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}, tmp_path / "again.pt", resume=done.checkpoint
    )
    assert again.history == [] and again.epoch == 1
    assert same_weights(again.weights, done.weights)


def test_translate_writes_images_of_the_output_size(tmp_path):
    trained = _train(TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}, tmp_path / "last.pt")
    out = translate(
        trained.weights["generator_photo_to_monet"],
        _images(3, 2),
        model=MODEL,
        input_size=16,
        output_size=40,
        batch_size=2,
        runtime=RUNTIME,
    )
    assert out.shape == (3, 40, 40, 3) and out.dtype == np.uint8


def test_image_conversions_round_trip():
    images = _images(2, 3)
    batch = to_tensor_images(images, 24)
    assert batch.shape == (2, 3, 24, 24) and batch.dtype == torch.uint8
    x = to_model_range(batch)
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), np.stack(images))
    assert to_tensor_images([images[0], images[1][:12, :12]], 8).shape == (2, 3, 8, 8)
