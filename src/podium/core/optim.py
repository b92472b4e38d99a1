"""Optimizers and learning-rate schedules from timm's factories, one parameter shape for all.

Every pipeline describes its optimizer and schedule with the same two blocks::

    optimizer:
      name: adamw              # any timm optimizer: adamw | adam | sgd (nesterov) | momentum | ...
      lr: 1.0e-3
      weight_decay: 1.0e-4
      momentum: 0.9            # optimizers with momentum only (sgd, momentum, rmsprop, ...)
      betas: [0.9, 0.999]      # optional, Adam-like optimizers only
      eps: 1.0e-8              # optional
      decay_norm_and_bias: false   # true: weight decay on norm weights and biases (1-d) too
      lr_multipliers: {decoder: 10.0}   # optional: submodule -> multiple of lr (a fresh head)

    scheduler:
      name: cosine             # cosine | step | multistep | plateau | poly | constant | none
      per: epoch               # epoch | step: update the rate after each epoch or each batch
      warmup_epochs: 1         # linear warm-up from warmup_lr, in epochs even per step (then
                               # fractions too); the schedule after it counts from the run's
                               # start (timm's way)
      warmup_lr: 1.0e-6
      min_lr: 1.0e-6           # floor of cosine, poly and plateau
      step_size: 2             # step: epochs between decays
      milestones: [4, 8]       # multistep: epochs to decay at
      decay_rate: 0.1          # step, multistep, plateau: the lr multiplier at each decay
      patience: 2              # plateau: epochs without improvement before a decay
      mode: min                # plateau: min (a loss) | max (a score)
      monitor: val_loss        # plateau: the epoch metric watched (default val_loss/train_loss)
      power: 1.0               # poly: the polynomial power

Every key of the scheduler shape is accepted for every ``name`` and used where it applies
(``step_size`` means nothing to cosine), so an ablation can switch ``name`` alone. Unknown
keys and bad values raise :class:`~podium.core.config.ParameterError` naming the full
parameter path (``parameter=`` prefix, e.g. ``mask.optimizer``).

timm schedules are functions of the epoch or update count: ``core.training.fit`` drives a
:class:`LrSchedule` (what :func:`build_scheduler` returns) with ``after_update(n)`` after
every optimizer step and ``after_epoch(epoch, metric)`` after every epoch, and saves its
state in each checkpoint. Plateau's state (best value, bad epochs, cooldown) is saved whole
here, which timm's own ``PlateauLRScheduler.state_dict`` does not do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import torch
from pydantic import field_validator
from torch import nn

from podium.core.config import (
    ParameterError,
    check_choice,
    check_keys,
    check_range,
    describe_choices,
)
from podium.core.params import (
    Bool,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    Params,
    PositiveInt,
)

SCHEDULE_PER = ("epoch", "step")
PLATEAU_MODES = ("min", "max")


class OptimizerParams(Params):
    """The ``optimizer`` block of every training (see the module docstring)."""

    name: str
    lr: NonNegativeFloat
    weight_decay: NonNegativeFloat = 0.0
    momentum: Fraction = 0.9
    betas: tuple[Fraction, Fraction] | None = None
    eps: NonNegativeFloat | None = None
    decay_norm_and_bias: Bool = False
    lr_multipliers: dict[str, NonNegativeFloat] | None = None

    @field_validator("name")
    @classmethod
    def _known_to_timm(cls, name: str) -> str:
        if name.lower() not in optimizer_names():
            choices = describe_choices(name, optimizer_names(), "values")
            raise ValueError(f"{name!r} is not a timm optimizer; {choices}")
        return name

    def not_applicable(self) -> set[str]:
        from timm.optim import get_optimizer_info

        info = get_optimizer_info(self.name.lower())
        unused = set() if info.has_momentum else {"momentum"}
        unused |= set() if info.has_betas else {"betas"}
        unused |= set() if info.has_eps else {"eps"}
        return unused if self.lr_multipliers else unused | {"lr_multipliers"}


SchedulerName = Literal["cosine", "step", "multistep", "plateau", "poly", "constant", "none"]


class SchedulerParams(Params):
    """The ``scheduler`` block of every training; every key is accepted for every
    ``name`` and used where it applies, so an ablation can switch ``name`` alone."""

    name: SchedulerName
    per: Literal["epoch", "step"] = "epoch"
    warmup_epochs: NonNegativeInt | NonNegativeFloat = 0  # fractions only per: step
    warmup_lr: NonNegativeFloat = 1e-6
    min_lr: NonNegativeFloat = 0.0
    step_size: PositiveInt = 1
    milestones: list[PositiveInt] = []
    decay_rate: Fraction = 0.1
    patience: NonNegativeInt = 2
    mode: Literal["min", "max"] = "min"
    monitor: str | None = None
    power: NonNegativeFloat = 1.0

    def not_applicable(self) -> set[str]:
        uses = {
            "cosine": {"min_lr"},
            "step": {"step_size", "decay_rate"},
            "multistep": {"milestones", "decay_rate"},
            "plateau": {"min_lr", "decay_rate", "patience", "mode", "monitor"},
            "poly": {"min_lr", "power"},
            "constant": set(),
            "none": set(),
        }[self.name]
        specific = {"min_lr", "step_size", "milestones", "decay_rate", "patience", "mode"}
        specific |= {"monitor", "power"}
        warmup = set() if self.warmup_epochs else {"warmup_lr"}
        if self.name == "none":
            warmup |= {"per", "warmup_epochs", "warmup_lr"}
        return (specific - uses) | warmup


OPTIMIZER_KEYS = tuple(OptimizerParams.model_fields)
SCHEDULER_NAMES = get_args(SchedulerName)
SCHEDULER_KEYS = tuple(SchedulerParams.model_fields)
#: Defaults of the scheduler shape (timm's own defaults where they are sensible for podium).
SCHEDULER_DEFAULTS: dict[str, Any] = {
    k: v.default for k, v in SchedulerParams.model_fields.items() if k != "name"
}


def _number(parameter: str, value: Any, *, low: float, high: float | None = None) -> float:
    check_range(parameter, value, low=low, high=high)
    if not math.isfinite(value):
        raise ParameterError(parameter, f"expected a finite number, got {value!r}")
    return float(value)


def _integer(parameter: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(parameter, f"expected an integer >= {low}, got {value!r}")
    check_range(parameter, value, low=low)
    return int(value)


def optimizer_names() -> list[str]:
    """The optimizer names timm knows (``timm.optim.list_optimizers()``)."""
    from timm.optim import list_optimizers

    return [str(n) for n in list_optimizers()]


def build_optimizer(
    model: nn.Module | Iterable[Any],
    spec: Mapping[str, Any],
    *,
    parameter: str = "optimizer",
) -> torch.optim.Optimizer:
    """An optimizer from ``spec`` through ``timm.optim.create_optimizer_v2``.

    Given a model, norm weights, biases (every 1-d parameter) and the names in the model's
    ``no_weight_decay()`` get no weight decay unless ``decay_norm_and_bias: true`` (timm's
    ``filter_bias_and_bn``). Given parameters or parameter groups instead, they are used as
    they are. ``momentum``, ``betas`` and ``eps`` reach only the optimizers that take them.
    """
    from timm.optim import create_optimizer_v2

    check_keys(parameter, spec, OPTIMIZER_KEYS, required=("name", "lr"))
    name = spec["name"]
    if not isinstance(name, str) or name.lower() not in optimizer_names():
        check_choice(
            f"{parameter}.name", name, optimizer_names(), hint="timm.optim.list_optimizers()"
        )
    kwargs: dict[str, Any] = {
        "lr": _number(f"{parameter}.lr", spec["lr"], low=0.0),
        "weight_decay": _number(
            f"{parameter}.weight_decay", spec.get("weight_decay", 0.0), low=0.0
        ),
        "momentum": _number(f"{parameter}.momentum", spec.get("momentum", 0.9), low=0.0, high=1.0),
    }
    decay_all = spec.get("decay_norm_and_bias", False)
    if not isinstance(decay_all, bool):
        raise ParameterError(
            f"{parameter}.decay_norm_and_bias", f"expected true or false, got {decay_all!r}"
        )
    if spec.get("betas") is not None:
        betas = spec["betas"]
        if isinstance(betas, str | bytes) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ParameterError(f"{parameter}.betas", f"expected [beta1, beta2], got {betas!r}")
        kwargs["betas"] = tuple(
            _number(f"{parameter}.betas[{i}]", b, low=0.0, high=1.0) for i, b in enumerate(betas)
        )
    if spec.get("eps") is not None:
        kwargs["eps"] = _number(f"{parameter}.eps", spec["eps"], low=0.0)
    multipliers = _check_multipliers(f"{parameter}.lr_multipliers", spec.get("lr_multipliers"))
    if multipliers and not isinstance(model, nn.Module):
        raise ParameterError(
            f"{parameter}.lr_multipliers", "needs the model, not a list of parameters"
        )
    if multipliers:
        groups = _scaled_groups(
            model, multipliers, kwargs["lr"], kwargs["weight_decay"], not decay_all, parameter
        )
        return create_optimizer_v2(groups, opt=name.lower(), **kwargs)
    return create_optimizer_v2(model, opt=name.lower(), filter_bias_and_bn=not decay_all, **kwargs)


def _check_multipliers(parameter: str, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParameterError(parameter, f"expected {{submodule: multiplier}}, got {value!r}")
    return {str(k): _number(f"{parameter}.{k}", v, low=0.0) for k, v in value.items()}


def _scaled_groups(
    model: nn.Module,
    multipliers: Mapping[str, float],
    lr: float,
    weight_decay: float,
    no_decay_1d: bool,
    parameter: str,
) -> list[dict[str, Any]]:
    """Parameter groups with ``lr * multiplier`` per submodule (its own base rate, which
    timm's schedules then scale as they scale every group) and no weight decay on 1-d
    parameters and ``no_weight_decay()`` names when ``no_decay_1d``."""
    names = dict(model.named_modules())
    unknown = sorted(set(multipliers) - set(names))
    if unknown:
        top = sorted(n for n in names if n and "." not in n)
        raise ParameterError(
            f"{parameter}.lr_multipliers",
            f"no submodule named {unknown} in {type(model).__name__} (top-level: {top})",
        )
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    grouped: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, tensor in model.named_parameters():
        if not tensor.requires_grad:
            continue
        owner = max((m for m in multipliers if name.startswith(f"{m}.")), key=len, default=None)
        scale = 1.0 if owner is None else multipliers[owner]
        decay = not (no_decay_1d and (tensor.ndim <= 1 or name.endswith(".bias") or name in skip))
        grouped.setdefault((scale, decay), []).append(tensor)
    return [
        {"params": params, "lr": lr * scale, "weight_decay": weight_decay if decay else 0.0}
        for (scale, decay), params in grouped.items()
    ]


def check_optimization(
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    *,
    epochs: int,
    parameter: str,
) -> None:
    """The ``<parameter>.optimizer`` and ``<parameter>.scheduler`` blocks checked on a
    stand-in parameter, before any data is read or a DDP process starts (an error inside
    a process reaches the run only as a ChildFailedError)."""
    stand_in = build_optimizer(
        [nn.Parameter(torch.zeros(1))],
        {k: v for k, v in optimizer.items() if k != "lr_multipliers"},
        parameter=f"{parameter}.optimizer",
    )
    _check_multipliers(f"{parameter}.optimizer.lr_multipliers", optimizer.get("lr_multipliers"))
    build_scheduler(
        stand_in, scheduler, epochs=epochs, steps_per_epoch=1, parameter=f"{parameter}.scheduler"
    )


class LrSchedule:
    """A timm scheduler together with how ``fit`` steps it and what it watches.

    ``after_update(num_updates)`` follows every optimizer step, ``after_epoch(epoch,
    metric)`` every epoch (``epoch`` counted from 1, timm's "index of the next epoch"):
    exactly timm's own training loop. A timm scheduler stepped per update ignores the epoch
    calls and vice versa, so both are always made.
    """

    def __init__(
        self,
        scheduler: Any,
        *,
        per: str = "epoch",
        monitor: str | None = None,
        name: str = "",
    ) -> None:
        check_choice("scheduler.per", per, SCHEDULE_PER)
        self.scheduler = scheduler
        self.per = per
        self.monitor = monitor
        self.name = name or type(scheduler).__name__
        self.needs_metric = hasattr(scheduler, "lr_scheduler") and isinstance(
            scheduler.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        )

    @classmethod
    def wrap(cls, scheduler: Any) -> LrSchedule:
        """An LrSchedule around a timm scheduler built elsewhere (per step if not in epochs)."""
        return cls(scheduler, per="epoch" if getattr(scheduler, "t_in_epochs", True) else "step")

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.scheduler.optimizer

    def after_update(self, num_updates: int) -> None:
        self.scheduler.step_update(num_updates=num_updates)

    def after_epoch(self, epoch: int, metric: float | None = None) -> None:
        if self.needs_metric and metric is None:
            raise ValueError(f"the {self.name} schedule needs the monitored metric each epoch")
        self.scheduler.step(epoch, metric)

    def state_dict(self) -> dict[str, Any]:
        if self.needs_metric:  # timm keeps only `best`: save the whole plateau state
            return {
                "plateau": self.scheduler.lr_scheduler.state_dict(),
                "restore_lr": self.scheduler.restore_lr,
            }
        return self.scheduler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.needs_metric:
            self.scheduler.lr_scheduler.load_state_dict(dict(state["plateau"]))
            self.scheduler.restore_lr = state["restore_lr"]
        else:
            self.scheduler.load_state_dict(dict(state))

    def __repr__(self) -> str:
        return f"LrSchedule({self.name}, per={self.per!r}, monitor={self.monitor!r})"


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    spec: Mapping[str, Any],
    *,
    epochs: int,
    steps_per_epoch: int,
    parameter: str = "scheduler",
) -> LrSchedule | None:
    """A learning-rate schedule from ``spec`` through ``timm.scheduler.create_scheduler_v2``.

    ``epochs`` is the length of the run (cosine and poly reach ``min_lr`` there),
    ``steps_per_epoch`` the optimizer steps per epoch (``len(train_loader)``), needed for
    ``per: step``. ``name: none`` returns None (a constant rate, no warm-up).
    """
    from timm.scheduler import create_scheduler_v2

    check_keys(parameter, spec, SCHEDULER_KEYS, required=("name",))
    name = check_choice(f"{parameter}.name", spec["name"], SCHEDULER_NAMES)
    s = {**SCHEDULER_DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    epochs = _integer("epochs", epochs, low=1)
    steps_per_epoch = _integer("steps_per_epoch", steps_per_epoch, low=1)
    per = check_choice(f"{parameter}.per", s["per"], SCHEDULE_PER)
    mode = check_choice(f"{parameter}.mode", s["mode"], PLATEAU_MODES)
    if s["monitor"] is not None and not isinstance(s["monitor"], str):
        raise ParameterError(
            f"{parameter}.monitor", f"expected a metric name, got {s['monitor']!r}"
        )
    if per == "step":  # a fraction of an epoch is a whole number of steps
        warmup_epochs = _number(f"{parameter}.warmup_epochs", s["warmup_epochs"], low=0.0)
    else:
        warmup_epochs = _integer(f"{parameter}.warmup_epochs", s["warmup_epochs"], low=0)
    if warmup_epochs >= epochs and name != "none":
        raise ParameterError(
            f"{parameter}.warmup_epochs",
            f"{warmup_epochs} warm-up epochs leave nothing of a {epochs}-epoch run to schedule",
        )
    milestones = s["milestones"]
    if isinstance(milestones, str | bytes) or not isinstance(milestones, list | tuple):
        raise ParameterError(
            f"{parameter}.milestones", f"expected a list of epochs, got {milestones!r}"
        )
    milestones = [
        _integer(f"{parameter}.milestones[{i}]", m, low=1) for i, m in enumerate(milestones)
    ]
    if name == "multistep" and not milestones:
        raise ParameterError(f"{parameter}.milestones", "multistep needs at least one epoch")
    if name == "plateau" and per != "epoch":
        raise ParameterError(f"{parameter}.per", "plateau watches an epoch metric: use per: epoch")
    decay_rate = _number(f"{parameter}.decay_rate", s["decay_rate"], low=0.0, high=1.0)
    power = _number(f"{parameter}.power", s["power"], low=0.0)
    kwargs: dict[str, Any] = {
        "sched": name,
        "num_epochs": epochs,
        "decay_epochs": _integer(f"{parameter}.step_size", s["step_size"], low=1),
        "decay_milestones": milestones,
        "decay_rate": power if name == "poly" else decay_rate,  # timm: poly's power
        "patience_epochs": _integer(f"{parameter}.patience", s["patience"], low=0),
        "min_lr": _number(f"{parameter}.min_lr", s["min_lr"], low=0.0),
        "warmup_lr": _number(f"{parameter}.warmup_lr", s["warmup_lr"], low=0.0),
        "warmup_epochs": warmup_epochs,
        "plateau_mode": mode,
        "step_on_epochs": per == "epoch",
        "updates_per_epoch": steps_per_epoch,
    }
    if name == "plateau":
        kwargs["cooldown_epochs"] = 0
    with warnings.catch_warnings():
        # timm deprecates PlateauLRScheduler because its state is not checkpointed;
        # LrSchedule saves that state itself.
        warnings.filterwarnings("ignore", "PlateauLRScheduler is deprecated", FutureWarning)
        scheduler, _ = create_scheduler_v2(optimizer, **kwargs)
    if scheduler is None:
        return None
    return LrSchedule(scheduler, per=per, monitor=s["monitor"], name=name)
