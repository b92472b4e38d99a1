"""Cross-validated training of the mask models and their predictions. No kedro or mlflow imports.

For every backbone and every person-disjoint fold, the variant's networks train on the other
folds (minority rows resampled) and predict the held-out fold: those out-of-fold predictions
score the whole setup honestly, and the fold models vote on the evaluation images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from podium.core.augment import build_transforms
from podium.core.checkpoints import unwrap_model
from podium.core.config import check_choice, check_keys, check_range
from podium.core.device import Runtime
from podium.core.training import fit, predict, seeded_loader
from podium.layouts.mask import AGE_NAMES
from podium.pipelines.mask.data import CropDataset, CropFiles, oversample_minority
from podium.pipelines.mask.models import (
    TASK_COLUMNS,
    SummedLoss,
    build_variant,
    check_model_params,
    class_probabilities,
    make_criterion,
    tasks_of,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "step")
#: The rare class the write-up oversampled: the last age bin ("old").
OLD_AGE_CLASS = len(AGE_NAMES) - 1
#: Separator of the model name and the parameter name in the saved weights' keys.
KEY_SEP = "/"


@dataclass
class CrossValidated:
    """What cross-validated training produces."""

    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    out_of_fold: list[pd.DataFrame] = field(default_factory=list)
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)


def model_name(backbone: str, fold: int) -> str:
    return f"{backbone}{KEY_SEP}fold{fold}"


def make_optimizer(parameters, spec: Mapping[str, Any]) -> torch.optim.Optimizer:
    check_keys(
        "mask.optimizer", spec, ("name", "lr", "weight_decay", "momentum"), required=("name", "lr")
    )
    name = check_choice("mask.optimizer.name", spec["name"], OPTIMIZERS)
    lr = float(check_range("mask.optimizer.lr", spec["lr"], low=0))
    weight_decay = float(spec.get("weight_decay", 0.0))
    if name == "sgd":
        momentum = float(spec.get("momentum", 0.0))
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    optimizer = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer, spec: Mapping[str, Any], epochs: int) -> tuple[Any, str]:
    """The scheduler and how ``core.training.fit`` steps it (per epoch or on a plateau)."""
    keys = ("name", "min_lr", "factor", "patience", "step_size", "gamma")
    check_keys("mask.scheduler", spec, keys, required=("name",))
    name = check_choice("mask.scheduler.name", spec["name"], SCHEDULERS)
    lr_scheduler = torch.optim.lr_scheduler
    if name == "plateau":
        scheduler = lr_scheduler.ReduceLROnPlateau(
            optimizer,
            factor=float(spec["factor"]),
            patience=int(spec["patience"]),
            min_lr=float(spec.get("min_lr", 0.0)),
        )
        return scheduler, "plateau"
    if name == "cosine":
        eta_min = float(spec.get("min_lr", 0.0))
        return lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(epochs, 1), eta_min=eta_min
        ), "epoch"
    step = lr_scheduler.StepLR(
        optimizer, step_size=int(spec["step_size"]), gamma=float(spec["gamma"])
    )
    return step, "epoch"


def _targets(frame: pd.DataFrame, tasks: Mapping[str, int], net_name: str) -> dict[str, np.ndarray]:
    """Batch entries of a network's labels: ``target`` for one task, one per head otherwise."""
    if net_name in tasks:  # one of the `separate` models
        return {"target": frame[TASK_COLUMNS[net_name]].to_numpy()}
    if len(tasks) == 1:
        (task,) = tasks
        return {"target": frame[TASK_COLUMNS[task]].to_numpy()}
    return {task: frame[TASK_COLUMNS[task]].to_numpy() for task in tasks}


def _criterion(
    loss: Mapping[str, Any], frame: pd.DataFrame, tasks: Mapping[str, int], net_name: str
) -> nn.Module:
    if net_name in tasks:
        return make_criterion(loss, frame[TASK_COLUMNS[net_name]].to_numpy(), tasks[net_name])
    if len(tasks) == 1:
        ((task, n_classes),) = tasks.items()
        return make_criterion(loss, frame[TASK_COLUMNS[task]].to_numpy(), n_classes)
    return SummedLoss(
        {t: make_criterion(loss, frame[TASK_COLUMNS[t]].to_numpy(), n) for t, n in tasks.items()}
    )


def _as_task_logits(outputs, net_name: str, tasks: Mapping[str, int]) -> dict[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        return dict(outputs)
    if net_name in tasks:
        return {net_name: outputs}
    (task,) = tasks
    return {task: outputs}


def predict_classes(
    nets: Mapping[str, nn.Module],
    crops: CropFiles | np.ndarray,
    rows: np.ndarray,
    preprocess: A.Compose,
    tasks: Mapping[str, int],
    batch_size: int,
    seed: int,
    runtime: Runtime,
) -> np.ndarray:
    """18-way probabilities of one fold's networks on the given crop rows."""
    loader = seeded_loader(
        CropDataset(crops, rows, {}, preprocess),
        batch_size,
        shuffle=False,
        seed=seed,
        runtime=runtime,
    )
    logits: dict[str, np.ndarray] = {}
    for net_name, net in nets.items():
        outputs = predict(
            net, loader, runtime.device, runtime.amp, channels_last=runtime.channels_last
        )
        logits.update(_as_task_logits(outputs, net_name, tasks))
    return class_probabilities(logits)


def train_cross_validated(
    crops: CropFiles | np.ndarray,
    table: pd.DataFrame,
    *,
    model: Mapping[str, Any],
    loss: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    train: Mapping[str, Any],
    resampling: Mapping[str, Any],
    augment: list,
    preprocess: list,
    seed: int,
    runtime: Runtime,
) -> CrossValidated:
    """Train every backbone on every fold; ``table`` has one row per usable crop (``row``
    indexes ``crops``: a :class:`CropFiles` read item by item in the DataLoader workers, or
    an array) with labels, ``person`` and ``fold``."""
    check_model_params(model)
    check_keys(
        "mask.train",
        train,
        ("epochs", "batch_size", "grad_clip"),
        required=("epochs", "batch_size"),
    )
    check_keys("mask.resampling", resampling, ("enabled", "factor"), required=("enabled", "factor"))
    # Built before any training so a bad name stops the run at once.
    augment_transform = build_transforms(augment, parameter="mask.augment")
    preprocess_transform = build_transforms(preprocess, parameter="mask.preprocess")
    tasks = tasks_of(model["variant"])
    epochs, batch_size = int(train["epochs"]), int(train["batch_size"])
    result = CrossValidated()
    for index, backbone in enumerate(model["backbones"]):
        for fold in sorted(table["fold"].unique()):
            name = model_name(backbone, int(fold))
            fold_seed = seed + int(fold)
            validation = table[table["fold"] == fold]
            # factor 1 adds no copies: resampling off is the same code path
            factor = resampling["factor"] if resampling["enabled"] else 1
            training = oversample_minority(
                table[table["fold"] != fold], "age_class", OLD_AGE_CLASS, factor
            )
            nets = build_variant(model, backbone, index)
            for net_name, net in nets.items():
                dataset = CropDataset(
                    crops,
                    training["row"].to_numpy(),
                    _targets(training, tasks, net_name),
                    preprocess_transform,
                    augment_transform,
                    training["augmented"].to_numpy(),
                )
                label = f"{name}{KEY_SEP}{net_name}"
                result.history[label] = _train_network(
                    net,
                    seeded_loader(
                        dataset, batch_size, shuffle=True, seed=fold_seed, runtime=runtime
                    ),
                    _criterion(loss, training, tasks, net_name),
                    optimizer=optimizer,
                    scheduler=scheduler,
                    epochs=epochs,
                    grad_clip=train.get("grad_clip"),
                    runtime=runtime,
                    label=label,
                )
                for key, tensor in unwrap_model(net).state_dict().items():
                    result.weights[f"{label}{KEY_SEP}{key}"] = tensor.detach().cpu().contiguous()
            rows = validation["row"].to_numpy()
            probabilities = predict_classes(
                nets, crops, rows, preprocess_transform, tasks, batch_size, fold_seed, runtime
            )
            fold_f1 = f1_score(
                validation["competition_class"], probabilities.argmax(1), average="macro"
            )
            log.info("%s: out-of-fold macro F1 %.4f on %d images", name, fold_f1, len(validation))
            result.out_of_fold.append(
                probability_frame(validation[["row"]], probabilities, backbone, name)
            )
    return result


def _train_network(
    net: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    *,
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    epochs: int,
    grad_clip: float | None,
    runtime: Runtime,
    label: str,
) -> list[dict[str, float]]:
    """One network's training run (core.training.fit); returns its per-epoch history."""
    optim = make_optimizer(net.parameters(), optimizer)
    sched, step_style = make_scheduler(optim, scheduler, epochs)

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        log.info("%s epoch %d/%d: train_loss %.4f", label, epoch, epochs, metrics["train_loss"])

    return fit(
        net,
        loader,
        loss_fn=criterion.to(runtime.device),
        optimizer=optim,
        epochs=epochs,
        device=runtime.device,
        amp=runtime.amp,
        scheduler=sched,
        scheduler_step=step_style,
        grad_clip=grad_clip,
        progress=False,
        channels_last=runtime.channels_last,
        on_epoch_end=report,
    )


def probability_frame(
    ids: pd.DataFrame, probabilities: np.ndarray, backbone: str, name: str
) -> pd.DataFrame:
    """Long-format predictions: id columns, ``backbone``, ``model`` and ``p0``..``p17``."""
    frame = ids.reset_index(drop=True).assign(backbone=backbone, model=name)
    columns = pd.DataFrame(probabilities, columns=[f"p{c}" for c in range(probabilities.shape[1])])
    return pd.concat([frame, columns], axis=1)


def split_weights(
    weights: Mapping[str, torch.Tensor],
) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """``{model name: {network name: state dict}}`` from the flat saved weights."""
    out: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for key, tensor in weights.items():
        backbone, fold, net_name, parameter = key.split(KEY_SEP, 3)
        out.setdefault(f"{backbone}{KEY_SEP}{fold}", {}).setdefault(net_name, {})[parameter] = (
            tensor
        )
    return out


def predict_with_saved_models(
    weights: Mapping[str, torch.Tensor],
    crops: CropFiles | np.ndarray,
    ids: pd.DataFrame,
    *,
    model: Mapping[str, Any],
    preprocess: list,
    batch_size: int,
    seed: int,
    runtime: Runtime,
) -> pd.DataFrame:
    """Every saved fold model's 18-way probabilities on ``crops`` (rows aligned with ``ids``)."""
    check_model_params(model)
    tasks = tasks_of(model["variant"])
    preprocess_transform = build_transforms(preprocess, parameter="mask.preprocess")
    rows = np.arange(len(crops))
    saved = split_weights(weights)
    frames = []
    for index, backbone in enumerate(model["backbones"]):
        names = sorted(n for n in saved if n.split(KEY_SEP)[0] == backbone)
        if not names:
            raise ValueError(f"no saved weights for backbone {backbone!r} (have {sorted(saved)})")
        for name in names:
            nets = build_variant(model, backbone, index)
            for net_name, net in nets.items():
                net.load_state_dict(saved[name][net_name])
            probabilities = predict_classes(
                nets, crops, rows, preprocess_transform, tasks, batch_size, seed, runtime
            )
            frames.append(probability_frame(ids, probabilities, backbone, name))
    return pd.concat(frames, ignore_index=True)
