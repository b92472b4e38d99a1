"""Cross-validated training of the mask models and their predictions. No kedro or mlflow imports.

For every backbone and every person-disjoint fold, the variant's networks train on the other
folds (minority rows resampled) and predict the held-out fold: those out-of-fold predictions
score the whole setup honestly, and the fold models vote on the evaluation images.

The training itself is podium's one engine: timm's optimizer and schedule from
``mask.optimizer`` / ``mask.scheduler`` (``core.optim``; no weight decay on norms and biases
by default), one seed per (network, fold, rank) from the run's ``seed``
(``core.seeding.training_seed``), ``core.training.fit`` checkpointing every epoch of every
network and fold, and :func:`train_fold` started by ``core.ddp.launch`` in
``runtime.distributed``'s processes (in the caller with one). The training loader always
draws one seeded global order (``seeded_loader(distributed=True)``), so 1 and N processes
see the same global batches. What stays here is the competition's own: labels per head,
losses, resampling of the old rows, and how the fold models are named and predict.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from torch import nn

from podium.core import ddp
from podium.core.augment import build_transforms
from podium.core.checkpoints import cpu_state_dict
from podium.core.device import Runtime
from podium.core.optim import build_optimizer, build_scheduler, check_optimization
from podium.core.params import configured
from podium.core.resume import (
    check_resume_from,
    checkpoint_folder,
    data_digest,
    run_jobs,
    runtime_shaping,
)
from podium.core.seeding import seed_everything, training_seed
from podium.core.training import fit, predict, seeded_loader, updates_per_epoch
from podium.layouts.mask import AGE_NAMES
from podium.pipelines.mask.data import CropDataset, CropFiles, oversample_minority
from podium.pipelines.mask.model import (
    TASK_COLUMNS,
    SummedLoss,
    build_network,
    build_variant,
    class_probabilities,
    make_criterion,
    network_heads,
    tasks_of,
)
from podium.pipelines.mask.params import (
    MaskLossParams,
    MaskModelParams,
    MaskResamplingParams,
    MaskTrainParams,
)

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class FoldJob:
    """Everything the processes of one (backbone, fold) training need; pickled to each."""

    crops: CropFiles | np.ndarray
    frame: pd.DataFrame  # the training rows, resampled: row, labels, augmented
    model: Mapping[str, Any]
    backbone: str
    index: int  # the backbone's position in mask.model.backbones (error messages)
    fold: int
    loss: Mapping[str, Any]
    optimizer: Mapping[str, Any]
    scheduler: Mapping[str, Any]
    epochs: int
    batch_size: int
    grad_clip: float | None
    accumulate: int  # micro-batches per optimizer step
    augment: list
    preprocess: list
    seed: int
    deterministic: bool
    runtime: Runtime


def model_name(backbone: str, fold: int) -> str:
    return f"{backbone}{KEY_SEP}fold{fold}"


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


def train_fold(job: FoldJob, checkpoints: str | None = None) -> dict[str, Any]:
    """Every network of one (backbone, fold), trained by ``core.training.fit``: the body that
    ``core.resume.launch_resumable`` runs in each process (in the caller with one process),
    each network checkpointing every epoch in ``checkpoints`` (None: no checkpoints).

    Each network is built right after seeding the process with ``training_seed(seed,
    model="<backbone>/<network>", fold=fold, rank=rank)`` (DDP then copies rank 0's initial
    weights to every rank); the loader's global order is seeded with rank 0's seed, the same
    on every rank. Returns ``{"weights": {"<network>/<parameter>": tensor}, "history":
    {network: per-epoch metrics}}``, plain tensors and numbers (``launch`` hands rank 0's
    back with ``weights_only=True``).
    """
    runtime = ddp.rank_runtime(job.runtime)
    tasks = tasks_of(job.model["variant"])
    out: dict[str, Any] = {"weights": {}, "history": {}}
    for net_name in network_heads(job.model["variant"]):
        key = f"{job.backbone}{KEY_SEP}{net_name}"
        shared_seed = training_seed(job.seed, model=key, fold=job.fold)
        seed_everything(
            training_seed(job.seed, model=key, fold=job.fold, rank=ddp.rank()),
            deterministic=job.deterministic,
        )
        net = build_network(job.model, job.backbone, job.index, net_name)
        dataset = CropDataset(
            job.crops,
            job.frame["row"].to_numpy(),
            _targets(job.frame, tasks, net_name),
            build_transforms(job.preprocess, parameter="mask.preprocess"),
            build_transforms(job.augment, parameter="mask.augment"),
            job.frame["augmented"].to_numpy(),
        )
        loader = seeded_loader(
            dataset,
            job.batch_size,
            shuffle=True,
            seed=shared_seed,
            runtime=runtime,
            distributed=True,  # one global order, whatever the number of processes
        )
        optimizer = build_optimizer(net, job.optimizer, parameter="mask.optimizer")
        label = f"{model_name(job.backbone, job.fold)}{KEY_SEP}{net_name}"

        def report(epoch: int, metrics: Mapping[str, float], label: str = label) -> None:
            log.info(
                "%s epoch %d/%d: train_loss %.4f", label, epoch, job.epochs, metrics["train_loss"]
            )

        out["history"][net_name] = fit(
            net,
            loader,
            loss_fn=_criterion(job.loss, job.frame, tasks, net_name).to(runtime.device),
            optimizer=optimizer,
            scheduler=build_scheduler(
                optimizer,
                job.scheduler,
                epochs=job.epochs,
                steps_per_epoch=updates_per_epoch(loader, job.accumulate),
                parameter="mask.scheduler",
            ),
            epochs=job.epochs,
            device=runtime.device,
            amp=runtime.amp,
            grad_clip=job.grad_clip,
            accumulate=job.accumulate,
            progress=False,
            channels_last=runtime.channels_last,
            checkpoint_path=None if checkpoints is None else Path(checkpoints) / f"{net_name}.pt",
            on_epoch_end=report,
        )
        for name, tensor in cpu_state_dict(net).items():
            out["weights"][f"{net_name}{KEY_SEP}{name}"] = tensor
    return out


def _data_digest(crops: CropFiles | np.ndarray, table: pd.DataFrame) -> str:
    """What the training reads: the table's rows, labels and folds, and the crops' entries
    (each entry's name carries its photo's content digest) or, in memory, their pixels."""
    columns = [c for c in ("row", "fold", *TASK_COLUMNS.values()) if c in table]
    if isinstance(crops, CropFiles):
        content = sorted(crops.entries.items())
    else:
        content = hashlib.sha256(np.ascontiguousarray(crops).tobytes()).hexdigest()
    return data_digest(table[columns], extra=content)


def _check_training(
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    train: Mapping[str, Any],
    loss: Mapping[str, Any],
    world_size: int,
) -> tuple[int, int, int, bool]:
    """Epochs, global batch, micro-batches per step and whether to resume, with every spec
    checked before any process starts (an error inside a DDP process reaches the run as a
    ChildFailedError)."""
    train = MaskTrainParams.of(train)
    ddp.local_batch_size(train.batch_size, world_size, parameter="mask.train.batch_size")
    resume = check_resume_from("mask.train.resume_from", train.resume_from)
    MaskLossParams.of(loss)
    # warm-up against the run's length: a rule across two blocks
    check_optimization(optimizer, scheduler, epochs=train.epochs, parameter="mask")
    return train.epochs, train.batch_size, train.accumulate, resume


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
    deterministic: bool = True,
    distributed: ddp.DistributedSettings | None = None,
    checkpoints: Path | str | None = None,
) -> CrossValidated:
    """Train every backbone on every fold; ``table`` has one row per usable crop (``row``
    indexes ``crops``: a :class:`CropFiles` read item by item in the DataLoader workers, or
    an array) with labels, ``person`` and ``fold``.

    ``distributed``: the processes of each (backbone, fold) training (one, in this
    process, by default). ``checkpoints``: the folder under which each network and fold
    checkpoints every epoch (``core.resume.checkpoint_folder``: one folder per training
    configuration, a finished fold's result kept in it); None trains without.
    """
    distributed = distributed or ddp.DistributedSettings()
    model, resampling = MaskModelParams.of(model), MaskResamplingParams.of(resampling)
    epochs, batch_size, accumulate, resume = _check_training(
        optimizer, scheduler, train, loss, distributed.world_size
    )
    build_transforms(augment, parameter="mask.augment")  # a bad name stops the run at once
    preprocess_transform = build_transforms(preprocess, parameter="mask.preprocess")
    folder = None
    if checkpoints is not None:
        blocks = dict(model=model, loss=loss, optimizer=optimizer, scheduler=scheduler)
        blocks |= dict(resampling=resampling, augment=augment, preprocess=preprocess)
        shaping = {
            **{name: configured(block) for name, block in blocks.items()},
            "seed": seed,
            "train": {k: v for k, v in configured(train).items() if k != "resume_from"},
            "deterministic": bool(deterministic),
            "runtime": runtime_shaping(runtime, distributed.world_size),
            "data": _data_digest(crops, table),
        }
        folder = checkpoint_folder(checkpoints, shaping, resume)
    tasks = tasks_of(model["variant"])
    # factor 1 adds no copies: resampling off is the same code path
    factor = resampling["factor"] if resampling["enabled"] else 1
    jobs = []
    for index, backbone in enumerate(model["backbones"]):
        for fold in sorted(int(f) for f in table["fold"].unique()):
            frame = oversample_minority(
                table[table["fold"] != fold], "age_class", OLD_AGE_CLASS, factor
            )
            job = FoldJob(
                crops, frame, model, backbone, index, fold, loss, optimizer, scheduler,
                epochs, batch_size, train.get("grad_clip"), accumulate, augment, preprocess, seed,
                bool(deterministic), runtime,
            )  # fmt: skip
            jobs.append((job, None if folder is None else folder / backbone / f"fold{fold}"))
    result = CrossValidated()
    for (job, _), trained in zip(
        jobs, run_jobs(train_fold, jobs, settings=distributed), strict=True
    ):
        name = model_name(job.backbone, job.fold)
        for net_name, history in trained["history"].items():
            result.history[f"{name}{KEY_SEP}{net_name}"] = history
        for key, tensor in trained["weights"].items():
            result.weights[f"{name}{KEY_SEP}{key}"] = tensor
        validation = table[table["fold"] == job.fold]
        nets = _load_networks(model, job.backbone, job.index, split_weights(result.weights)[name])
        probabilities = predict_classes(
            nets,
            crops,
            validation["row"].to_numpy(),
            preprocess_transform,
            tasks,
            batch_size,
            seed,
            runtime,
        )
        fold_f1 = f1_score(
            validation["competition_class"], probabilities.argmax(1), average="macro"
        )
        log.info("%s: out-of-fold macro F1 %.4f on %d images", name, fold_f1, len(validation))
        result.out_of_fold.append(
            probability_frame(validation[["row"]], probabilities, job.backbone, name)
        )
    return result


def _load_networks(
    model: Mapping[str, Any],
    backbone: str,
    index: int,
    states: Mapping[str, Mapping[str, torch.Tensor]],
) -> dict[str, nn.Module]:
    nets = build_variant(model, backbone, index)
    for net_name, net in nets.items():
        net.load_state_dict(dict(states[net_name]))
    return nets


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
    model = MaskModelParams.of(model)
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
            nets = _load_networks(model, backbone, index, saved[name])
            probabilities = predict_classes(
                nets, crops, rows, preprocess_transform, tasks, batch_size, seed, runtime
            )
            frames.append(probability_frame(ids, probabilities, backbone, name))
    return pd.concat(frames, ignore_index=True)
