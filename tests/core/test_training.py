from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from podium.core.config import ParameterError
from podium.core.device import amp_settings, resolve_runtime
from podium.core.models import build_model
from podium.core.seeding import dataloader_kwargs, seed_everything
from podium.core.training import fit, move_to_device, predict, seeded_loader, split_batch
from tests.core.helpers import TINY_BACKBONE, NoisyImages, state_equal, tiny_cnn


def _setup(seed: int = 0, n: int = 36, num_workers: int = 0):
    seed_everything(seed, deterministic=True)
    model = tiny_cnn()
    loader = DataLoader(
        NoisyImages(n), batch_size=12, shuffle=True, **dataloader_kwargs(seed, num_workers)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, loader, optimizer, scheduler


def _val_fn(model):
    x = NoisyImages().images[:12]
    return {"val_loss": F.cross_entropy(model(x), NoisyImages().labels[:12]).item()}


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    model, loader, optimizer, scheduler = _setup(num_workers=2)
    full = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=3,
        device="cpu",
        scheduler=scheduler,
        val_fn=_val_fn,
        progress=False,
    )
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    ckpt = tmp_path / "run" / "last.pt"
    model, loader, optimizer, scheduler = _setup(num_workers=2)
    fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=1,
        device="cpu",
        scheduler=scheduler,
        val_fn=_val_fn,
        checkpoint_path=ckpt,
        progress=False,
    )
    assert ckpt.exists()

    seed_everything(12345)  # a "new process": different global RNG state before resuming
    model, loader, optimizer, scheduler = _setup(seed=99, num_workers=2)
    seen = []
    resumed = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=3,
        device="cpu",
        scheduler=scheduler,
        val_fn=_val_fn,
        checkpoint_path=ckpt,
        progress=False,
        on_epoch_end=lambda epoch, metrics: seen.append(epoch),
    )
    assert seen == [2, 3]
    assert resumed == full
    assert state_equal(model.state_dict(), expected)
    # a finished run resumes to nothing more
    again = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=3,
        device="cpu",
        checkpoint_path=ckpt,
        progress=False,
    )
    assert again == full


def test_history_records_loss_lr_and_val_metrics():
    model, loader, optimizer, scheduler = _setup(n=24)
    history = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=2,
        device="cpu",
        scheduler=scheduler,
        val_fn=_val_fn,
        progress=True,
    )
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["lr"] for h in history] == pytest.approx([3e-3, 1.5e-3])
    assert all(math.isfinite(h["train_loss"]) and "val_loss" in h for h in history)


def test_multi_head_dict_batches_train_and_predict():
    seed_everything(0)
    model = build_model(TINY_BACKBONE, heads={"a": 3, "b": 2})
    dataset = NoisyImages(n=24, as_dict=True)
    loader = DataLoader(dataset, batch_size=8)

    def loss_fn(outputs, targets):
        return sum(F.cross_entropy(outputs[k], targets[k]) for k in outputs)

    history = fit(
        model,
        loader,
        loss_fn=loss_fn,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        epochs=1,
        device="cpu",
        progress=False,
    )
    assert math.isfinite(history[0]["train_loss"])
    out = predict(model, loader, "cpu")
    assert out["a"].shape == (24, 3) and out["b"].shape == (24, 2) and out["a"].dtype == np.float32


def test_predict_returns_logits_in_loader_order():
    seed_everything(0)
    model = tiny_cnn()
    model.train()
    x = torch.randn(10, 3, 32, 32)
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=4)
    logits = predict(model, loader, "cpu")
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_batch_and_plateau_scheduling():
    model, loader, optimizer, _ = _setup()
    onecycle = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.01, total_steps=len(loader) * 2
    )
    fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=2,
        device="cpu",
        scheduler=onecycle,
        scheduler_step="batch",
        progress=False,
    )
    assert onecycle.last_epoch == len(loader) * 2

    model, loader, optimizer, _ = _setup(n=12)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.1)
    history = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=3,
        device="cpu",
        scheduler=plateau,
        scheduler_step="plateau",
        monitor="worse",
        val_fn=lambda m: {"worse": 1.0},
        progress=False,
    )
    # lr is the rate used during each epoch; no improvement after epoch 1 -> a drop per epoch
    assert [h["lr"] for h in history] == pytest.approx([3e-3, 3e-3, 3e-4])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-5)
    with pytest.raises(ParameterError, match="scheduler_step"):
        fit(
            model,
            loader,
            loss_fn=F.cross_entropy,
            optimizer=optimizer,
            epochs=1,
            device="cpu",
            scheduler=plateau,
            scheduler_step="step",
            progress=False,
        )
    with pytest.raises(ParameterError, match="ReduceLROnPlateau"):
        fit(
            model,
            loader,
            loss_fn=F.cross_entropy,
            optimizer=optimizer,
            epochs=1,
            device="cpu",
            scheduler=plateau,
            scheduler_step="epoch",
            progress=False,
        )


def test_val_fn_runs_in_eval_mode_without_gradients():
    model, loader, optimizer, _ = _setup(n=12)
    seen = {}

    def val_fn(m):
        seen["training"], seen["grad"] = m.training, torch.is_grad_enabled()
        return {"score": 1}

    fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=1,
        device="cpu",
        val_fn=val_fn,
        progress=False,
    )
    assert seen == {"training": False, "grad": False} and model.training


def test_early_stop_from_callback(tmp_path):
    model, loader, optimizer, _ = _setup(n=12)
    ckpt = tmp_path / "c.pt"
    history = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=5,
        device="cpu",
        on_epoch_end=lambda epoch, m: epoch == 2,
        checkpoint_path=ckpt,
        progress=False,
    )
    assert len(history) == 2
    again = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=5,
        device="cpu",
        checkpoint_path=ckpt,
        progress=False,
    )
    assert again == history


def test_grad_clip_bounds_the_update():
    seed_everything(0)
    model = torch.nn.Linear(4, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    loader = [(torch.full((8, 4), 100.0), torch.full((8, 1), -100.0))]
    fit(
        model,
        loader,
        loss_fn=F.mse_loss,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        epochs=1,
        device="cpu",
        grad_clip=0.5,
        progress=False,
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 0.5 + 1e-5


def test_non_finite_loss_stops_with_a_hint():
    model = torch.nn.Linear(2, 1)
    loader = [(torch.tensor([[float("nan"), 1.0]]), torch.zeros(1, 1))]
    with pytest.raises(FloatingPointError, match=r"epoch 1 \(by batch 0\)"):
        fit(
            model,
            loader,
            loss_fn=F.mse_loss,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=1,
            device="cpu",
            progress=False,
        )


def test_bf16_autocast_on_cpu_trains():
    model, loader, optimizer, _ = _setup(n=24)
    history = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        epochs=1,
        device="cpu",
        amp=amp_settings("cpu", "bf16"),
        progress=False,
    )
    assert math.isfinite(history[0]["train_loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_split_batch_and_move_to_device():
    x, y = torch.zeros(2), torch.ones(2)
    assert split_batch((x, y)) == (x, y)
    assert split_batch({"image": x, "target": y}) == (x, y)
    inputs, targets = split_batch({"image": x, "mask": y, "age": y})
    assert inputs is x and set(targets) == {"mask", "age"}
    assert split_batch(x) == (x, None)
    moved = move_to_device({"a": [x, (y, "s")]}, "cpu")
    assert torch.equal(moved["a"][0], x) and moved["a"][1][1] == "s"
    with pytest.raises(KeyError, match="image"):
        split_batch({"pixels": x})


def test_seeded_loader_draws_by_sample_weights_reproducibly():
    labels = torch.tensor([1] * 90 + [0] * 10)
    dataset = TensorDataset(torch.arange(100), labels)
    weights = np.where(labels.numpy() == 1, 1 / 90, 1 / 10)  # classes drawn equally often
    runtime = resolve_runtime({"device": "cpu"})

    def drawn(seed):
        loader = seeded_loader(
            dataset, 10, shuffle=True, seed=seed, runtime=runtime, sample_weights=weights
        )
        return torch.cat([index for _ in range(20) for index, _ in loader])

    first = drawn(3)
    assert len(first) == 20 * 100
    share_minority = (first >= 90).float().mean().item()
    assert 0.45 < share_minority < 0.55  # 10% of the data, half of the draws
    assert torch.equal(first, drawn(3))
    assert not torch.equal(first, drawn(4))
    with pytest.raises(ValueError, match="one weight >= 0 per sample"):
        seeded_loader(dataset, 10, shuffle=True, seed=0, runtime=runtime, sample_weights=[1.0])
