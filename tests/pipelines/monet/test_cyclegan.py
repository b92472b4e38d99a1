"""CycleGAN training: the schedule at its boundaries, the image pool, resuming exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podium.core.device import resolve_runtime
from podium.core.seeding import seed_everything
from podium.pipelines.monet.cyclegan import (
    SUB_MODELS,
    ImagePool,
    lr_factor,
    to_model_range,
    to_tensor_images,
    to_uint8,
    train_cyclegan,
    translate,
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
    "epochs_this_run": None,
    "resume_from": None,
}
RUNTIME = resolve_runtime({"device": "cpu", "precision": "fp32", "num_workers": 0})


def test_lr_is_constant_then_decays_linearly_towards_zero():
    n, decay = 100, 100
    assert lr_factor(1, n, decay) == 1.0
    assert lr_factor(n, n, decay) == 1.0  # last constant epoch
    assert lr_factor(n + 1, n, decay) == pytest.approx(1 - 1 / 101)  # first decayed epoch
    assert lr_factor(n + decay, n, decay) == pytest.approx(1 / 101)  # last epoch still learns
    assert lr_factor(n + decay + 1, n, decay) == pytest.approx(0.0)  # would reach zero next
    steps = np.diff([lr_factor(e, n, decay) for e in range(n, n + decay + 1)])
    np.testing.assert_allclose(steps, -1 / 101)  # a straight line
    assert lr_factor(5, 5, 0) == 1.0  # no decay: a constant rate


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


def _images(n, seed):
    return list(np.random.default_rng(seed).integers(0, 255, (n, 24, 24, 3), dtype=np.uint8))


def _train(train, resume=None):
    seed_everything(7, deterministic=True)
    return train_cyclegan(
        _images(5, 0),
        _images(3, 1),
        data=DATA,
        model=MODEL,
        loss=LOSS,
        optimizer=OPTIMIZER,
        train=train,
        seed=7,
        runtime=RUNTIME,
        resume=resume,
        progress=False,
    )


def test_resuming_from_the_saved_sub_models_continues_the_schedule_exactly():
    straight = _train(TRAIN)
    first = _train(TRAIN | {"epochs_this_run": 1})
    assert first.epoch == 1 and [row["epoch"] for row in first.history] == [1]
    resumed = _train(TRAIN, resume=(first.weights, first.state))
    assert [row["epoch"] for row in resumed.history] == [2, 3]
    lrs = [row["lr"] for row in straight.history]
    assert lrs == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 / 3])
    assert [row["lr"] for row in resumed.history] == pytest.approx(lrs[1:])
    assert resumed.epoch == straight.epoch == 3
    for name in SUB_MODELS:
        for key, tensor in straight.weights[name].items():
            torch.testing.assert_close(resumed.weights[name][key], tensor, msg=f"{name}.{key}")
    assert resumed.history[-1] == pytest.approx(straight.history[-1])


def test_a_finished_run_resumed_trains_nothing():
    done = _train(TRAIN | {"n_epochs": 1, "n_epochs_decay": 0})
    again = _train(TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}, resume=(done.weights, done.state))
    assert again.history == [] and again.epoch == 1


def test_translate_writes_images_of_the_output_size():
    trained = _train(TRAIN | {"n_epochs": 1, "n_epochs_decay": 0})
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
