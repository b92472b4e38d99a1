"""timm optimizers and schedules from one parameter shape, and fit stepping them."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from podium.core.config import ParameterError
from podium.core.optim import LrSchedule, build_optimizer, build_scheduler
from podium.core.training import fit

LR = 0.1


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.LayerNorm(4 * 6 * 6),
        torch.nn.Linear(4 * 6 * 6, 2),
    )


def _decayed_after_one_step(spec: dict) -> dict[str, bool]:
    """Which parameters AdamW's decoupled weight decay shrank in one step with zero gradients."""
    torch.manual_seed(0)
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    optimizer = build_optimizer(model, spec)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {name: bool((p < 1.0).all()) for name, p in model.named_parameters()}


def test_no_weight_decay_on_norms_and_biases_unless_asked():
    spec = {"name": "adamw", "lr": LR, "weight_decay": 0.1}
    decayed = _decayed_after_one_step(spec)
    weights = {"0.weight", "4.weight"}  # the conv and linear kernels
    assert {n for n, d in decayed.items() if d} == weights
    assert all(_decayed_after_one_step({**spec, "decay_norm_and_bias": True}).values())


def test_optimizer_options_reach_timm():
    model = _model()
    sgd = build_optimizer(model, {"name": "sgd", "lr": LR, "momentum": 0.8})
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] is True
    assert sgd.defaults["momentum"] == 0.8 and sgd.param_groups[0]["lr"] == LR
    adam = build_optimizer(model, {"name": "adam", "lr": LR, "betas": [0.8, 0.9], "eps": 1e-6})
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.8, 0.9)
    assert adam.defaults["eps"] == 1e-6
    # momentum is dropped for optimizers without it (the same block serves adam and sgd)
    assert (
        "momentum"
        not in build_optimizer(model, {"name": "adamw", "lr": LR, "momentum": 0.9}).defaults
    )


@pytest.mark.parametrize(
    ("spec", "parameter", "text"),
    [
        ({"nmae": "adamw", "lr": LR}, "mask.optimizer", "nmae"),
        ({"name": "adamx", "lr": LR}, "mask.optimizer.name", "adam"),
        ({"name": "adamw", "lr": -1.0}, "mask.optimizer.lr", "-1.0"),
        ({"name": "adamw", "lr": LR, "weight_decay": "x"}, "mask.optimizer.weight_decay", "number"),
        ({"name": "adamw", "lr": LR, "betas": [0.9]}, "mask.optimizer.betas", "beta1"),
        (
            {"name": "adamw", "lr": LR, "decay_norm_and_bias": "no"},
            "mask.optimizer.decay_norm_and_bias",
            "true",
        ),
    ],
)
def test_bad_optimizer_specs_name_the_parameter(spec, parameter, text):
    with pytest.raises(ParameterError) as error:
        build_optimizer(_model(), spec, parameter="mask.optimizer")
    assert error.value.parameter == parameter and text in str(error.value)


def _lrs(spec: dict, epochs: int = 6, steps: int = 2, metrics=None) -> list[float]:
    """The rate of each epoch's first step, stepped the way fit steps it."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    schedule = build_scheduler(optimizer, spec, epochs=epochs, steps_per_epoch=steps)
    seen, updates = [], 0
    for epoch in range(1, epochs + 1):
        seen.append(optimizer.param_groups[0]["lr"])
        for _ in range(steps):
            updates += 1
            schedule.after_update(updates)
        schedule.after_epoch(epoch, None if metrics is None else metrics[epoch - 1])
    return seen


def test_each_schedule_changes_the_rate_as_expected():
    assert _lrs({"name": "step", "step_size": 2, "decay_rate": 0.5}) == pytest.approx(
        [LR, LR, LR / 2, LR / 2, LR / 4, LR / 4]
    )
    # timm's multistep milestones are the 1-based epochs from which each decay applies
    assert _lrs({"name": "multistep", "milestones": [2, 4], "decay_rate": 0.1}) == pytest.approx(
        [LR, LR / 10, LR / 10, LR / 100, LR / 100, LR / 100]
    )
    cosine = _lrs({"name": "cosine", "min_lr": 0.0})
    assert cosine == pytest.approx([LR * (1 + math.cos(math.pi * t / 6)) / 2 for t in range(6)])
    poly = _lrs({"name": "poly", "power": 2.0, "min_lr": 0.0})
    assert poly == pytest.approx([LR * (1 - t / 6) ** 2 for t in range(6)])
    warm = _lrs({"name": "cosine", "warmup_epochs": 2, "warmup_lr": 0.0})
    # linear warm-up, then the cosine, which counts its epochs from the start (timm's way)
    assert warm[:3] == pytest.approx([0.0, LR / 2, LR * (1 + math.cos(math.pi * 2 / 6)) / 2])
    assert _lrs({"name": "constant"}) == pytest.approx([LR] * 6)
    assert (
        build_scheduler(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR),
            {"name": "none"},
            epochs=3,
            steps_per_epoch=1,
        )
        is None
    )


def test_per_step_schedules_change_the_rate_within_an_epoch():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    schedule = build_scheduler(
        optimizer,
        {"name": "cosine", "warmup_epochs": 1, "warmup_lr": 0.0, "per": "step"},
        epochs=3,
        steps_per_epoch=4,
    )
    seen = []
    for update in range(1, 6):  # the warm-up epoch: 4 updates from 0 towards LR
        schedule.after_update(update)
        seen.append(optimizer.param_groups[0]["lr"])
        if update == 4:
            schedule.after_epoch(1)  # ignored by a per-step schedule
    cosine = [LR * (1 + math.cos(math.pi * t / 12)) / 2 for t in (4, 5)]  # 12 updates in all
    assert seen == pytest.approx([LR / 4, LR / 2, 3 * LR / 4, *cosine])


def test_plateau_decays_only_when_the_metric_stalls():
    spec = {"name": "plateau", "patience": 1, "decay_rate": 0.5, "mode": "min"}
    improving = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    assert _lrs(spec, metrics=improving) == pytest.approx([LR] * 6)
    stalled = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert _lrs(spec, metrics=stalled) == pytest.approx([LR, LR, LR, LR / 2, LR / 2, LR / 4])


@pytest.mark.parametrize("name", ["cosine", "step", "multistep", "plateau", "poly", "constant"])
def test_schedule_state_survives_a_weights_only_round_trip(name):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    spec = {"name": name, "milestones": [2], "warmup_epochs": 1}
    schedule = build_scheduler(optimizer, spec, epochs=4, steps_per_epoch=1)
    for epoch in (1, 2):
        schedule.after_epoch(epoch, 1.0)
    buffer = io.BytesIO()
    torch.save(schedule.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_scheduler(optimizer, spec, epochs=4, steps_per_epoch=1)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.state_dict() == schedule.state_dict()


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        ({"name": "cosin"}, "mask.scheduler.name"),
        ({"name": "cosine", "warmup_epoch": 1}, "mask.scheduler"),
        ({"name": "cosine", "per": "batch"}, "mask.scheduler.per"),
        ({"name": "plateau", "per": "step"}, "mask.scheduler.per"),
        ({"name": "cosine", "warmup_epochs": 5}, "mask.scheduler.warmup_epochs"),
        ({"name": "multistep"}, "mask.scheduler.milestones"),
        ({"name": "step", "step_size": 0}, "mask.scheduler.step_size"),
        ({"name": "step", "decay_rate": 2.0}, "mask.scheduler.decay_rate"),
        ({"name": "plateau", "mode": "up"}, "mask.scheduler.mode"),
    ],
)
def test_bad_scheduler_specs_name_the_parameter(spec, parameter):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(ParameterError) as error:
        build_scheduler(optimizer, spec, epochs=5, steps_per_epoch=2, parameter="mask.scheduler")
    assert error.value.parameter == parameter
    if spec.get("per") == "batch":
        assert "epoch, step" in str(error.value)  # the allowed values are listed


def _fit_lrs(spec: dict, epochs: int = 4, **kwargs) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    loader = DataLoader(TensorDataset(torch.randn(8, 3), torch.randn(8, 1)), batch_size=4)
    optimizer = build_optimizer(model, {"name": "sgd", "lr": LR})
    schedule = build_scheduler(optimizer, spec, epochs=epochs, steps_per_epoch=len(loader))
    history = fit(
        model,
        loader,
        loss_fn=F.mse_loss,
        optimizer=optimizer,
        scheduler=schedule,
        epochs=epochs,
        device="cpu",
        progress=False,
        **kwargs,
    )
    return [h["lr"] for h in history]


def test_fit_steps_timm_schedules_per_epoch_per_step_and_on_a_plateau():
    assert _fit_lrs({"name": "step", "step_size": 1, "decay_rate": 0.5}) == pytest.approx(
        [LR, LR / 2, LR / 4, LR / 8]
    )
    per_step = _fit_lrs({"name": "cosine", "per": "step", "warmup_epochs": 1, "warmup_lr": 0.0})
    # two updates of warm-up, then the cosine over 8 updates: epoch 2 starts at update 2
    assert per_step[:2] == pytest.approx([0.0, LR * (1 + math.cos(math.pi * 2 / 8)) / 2])
    # the rate a constant val metric leaves: fit hands the monitored metric to the schedule
    plateau = _fit_lrs(
        {"name": "plateau", "patience": 0, "decay_rate": 0.5, "mode": "min"},
        val_fn=lambda model: {"val_score": 1.0},
        monitor="val_score",
    )
    assert plateau == pytest.approx([LR, LR, LR / 2, LR / 4])
    with pytest.raises(ParameterError, match="scheduler_step"):
        _fit_lrs({"name": "step"}, scheduler_step="batch")


def test_fit_steps_a_bare_timm_scheduler_timms_way():
    from timm.scheduler import StepLRScheduler

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    scheduler = StepLRScheduler(optimizer, decay_t=1, decay_rate=0.5)
    assert LrSchedule.wrap(scheduler).per == "epoch"
    loader = DataLoader(TensorDataset(torch.randn(8, 3), torch.randn(8, 1)), batch_size=4)
    history = fit(
        model,
        loader,
        loss_fn=F.mse_loss,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=3,
        device="cpu",
        progress=False,
    )
    assert [h["lr"] for h in history] == pytest.approx([LR, LR / 2, LR / 4])
