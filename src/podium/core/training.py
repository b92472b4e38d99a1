"""A compact supervised training loop shared by the pipelines, resumable bit for bit.

``fit`` handles what every competition loop repeats: device moves, autocast and the
GradScaler (fp16 only), gradient clipping, the scheduler stepping styles (torch schedulers per
epoch, per batch or on a plateau; timm schedules from ``core.optim`` per epoch or per update),
validation, progress bars and an every-epoch checkpoint from which an interrupted run
continues to the same final weights (on CPU) as an uninterrupted one.

Inside a DDP process group (``core.ddp.launch``) the same ``fit`` and ``seeded_loader``
train in N processes: the loader gives each rank its share of one seeded global shuffle or
weighted draw (``batch_size`` stays the global batch), ``fit`` wraps the model in
``DistributedDataParallel``, averages the epoch metrics over the ranks, calls
``on_epoch_end`` and writes checkpoints on rank 0 only (with every rank's random state), and
every rank resumes from the same checkpoint. Without a process group nothing of this
applies and the loop is the single-process one.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from podium.core import ddp
from podium.core.checkpoints import (
    load_training_checkpoint,
    rank_state,
    save_training_checkpoint,
)
from podium.core.config import ParameterError, check_choice
from podium.core.device import (
    AmpSettings,
    Runtime,
    amp_settings,
    autocast,
    eval_mode,
    make_grad_scaler,
    to_channels_last,
)
from podium.core.optim import LrSchedule
from podium.core.seeding import dataloader_kwargs, derive_seed, reseed_main_process_transforms

SCHEDULER_STEPS = ("epoch", "batch", "plateau")
#: Batches between the loss reads that sync with the GPU (progress bar, NaN check).
SYNC_EVERY = 20

Batch = Any
LossFn = Callable[[Any, Any], torch.Tensor]
StepFn = Callable[[nn.Module, Any, int], "torch.Tensor | tuple[torch.Tensor, Mapping[str, Any]]"]


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    runtime: Runtime,
    sample_weights: Sequence[float] | np.ndarray | None = None,
    distributed: bool | None = None,
    sampler: torch.utils.data.Sampler | None = None,
    batch_sampler: Iterable[Sequence[int]] | None = None,
) -> DataLoader:
    """A DataLoader seeded like every other (workers included), pinned on CUDA.

    ``sample_weights`` (with ``shuffle``): draw ``len(dataset)`` samples per epoch with
    replacement in proportion to the weights (e.g. class-balanced), from the same seeded
    generator, so the draws are as reproducible as a shuffle.

    ``distributed`` (default: a shuffled loader inside a DDP process group): each rank gets
    its share of one global order, seeded by ``seed`` and the epoch (``fit`` calls
    ``set_epoch``) — a ``DistributedSampler``, or a ``DistributedWeightedSampler`` with
    ``sample_weights`` — and ``batch_size / world_size`` samples per batch, so ``batch_size``
    is the global batch. ``distributed=True`` without a process group is the same sampling
    in one process (what N processes together draw); a non-shuffled distributed loader pads
    with repeated samples to a multiple of the world size. Loader workers are seeded per rank.

    ``sampler``: a ready sampler that already gives this rank its share (e.g. a
    ``ddp.ZipSampler`` of ``DistributedWeightedSampler`` samplers for paired draws), used as it is
    with the rank's share of the global ``batch_size``.

    ``batch_sampler``: the batches as lists of indices, used as they are (``batch_size`` is
    then ignored), e.g. one video's crops per batch so that no prediction depends on what
    else it was batched with (CPU kernels round differently at other batch sizes).
    """
    if batch_sampler is not None:
        kwargs = _rank_loader_kwargs(seed, runtime)
        return _fork_workers(DataLoader(dataset, batch_sampler=batch_sampler, **kwargs))
    if sampler is not None:
        return _sampled_loader(dataset, batch_size, seed, runtime, sampler)
    if distributed is None:
        distributed = shuffle and ddp.is_distributed()
    if distributed:
        loader = _distributed_loader(dataset, batch_size, shuffle, seed, runtime, sample_weights)
    else:
        loader = _local_loader(dataset, batch_size, shuffle, seed, runtime, sample_weights)
    return _fork_workers(loader)


def _checked_weights(
    sample_weights: Sequence[float] | np.ndarray, shuffle: bool, size: int
) -> np.ndarray:
    weights = np.asarray(sample_weights, dtype=np.float64)
    if not shuffle or len(weights) != size or not bool((weights >= 0).all()):
        raise ValueError(
            f"sample_weights need shuffle=True and one weight >= 0 per sample "
            f"({len(weights)} weights for {size} samples)"
        )
    return weights


def _rank_loader_kwargs(seed: int, runtime: Runtime) -> dict[str, Any]:
    """DataLoader arguments whose workers are seeded per DDP rank (``seed`` in one process)."""
    worker_seed = seed if ddp.world_size() == 1 else derive_seed(seed, ddp.rank())
    return dataloader_kwargs(worker_seed, runtime.num_workers, pin_memory=runtime.pin_memory)


def _sampled_loader(
    dataset: Dataset, batch_size: int, seed: int, runtime: Runtime, sampler: Any
) -> DataLoader:
    replicas = ddp.world_size()
    kwargs = _rank_loader_kwargs(seed, runtime)
    loader = DataLoader(
        dataset, batch_size=ddp.local_batch_size(batch_size, replicas), sampler=sampler, **kwargs
    )
    return _fork_workers(loader)


def _fork_workers(loader: DataLoader) -> DataLoader:
    if loader.num_workers and ddp.is_distributed() and sys.platform.startswith("linux"):
        # A rank started by launch's spawn would spawn its loader workers too, each epoch
        # importing podium afresh; fork them, as torchrun's own ranks do.
        loader.multiprocessing_context = "fork"
    return loader


def _local_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    runtime: Runtime,
    sample_weights: Sequence[float] | np.ndarray | None,
) -> DataLoader:
    kwargs = dataloader_kwargs(seed, runtime.num_workers, pin_memory=runtime.pin_memory)
    # A last training batch of one sample breaks BatchNorm: drop the ragged end when shuffling.
    drop_last = shuffle and len(dataset) > batch_size
    if sample_weights is None:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs
        )
    weights = torch.as_tensor(_checked_weights(sample_weights, shuffle, len(dataset)))
    sampler = WeightedRandomSampler(
        weights, num_samples=len(dataset), replacement=True, generator=kwargs["generator"]
    )
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs
    )


def _distributed_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    runtime: Runtime,
    sample_weights: Sequence[float] | np.ndarray | None,
) -> DataLoader:
    replicas, rank = ddp.world_size(), ddp.rank()
    local_batch = ddp.local_batch_size(batch_size, replicas)
    kwargs = _rank_loader_kwargs(seed, runtime)
    sampler: torch.utils.data.Sampler[int]
    if sample_weights is None:
        sampler = DistributedSampler(
            dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=shuffle
        )
    else:
        weights = _checked_weights(sample_weights, shuffle, len(dataset))
        sampler = ddp.DistributedWeightedSampler(
            weights, len(dataset), num_replicas=replicas, rank=rank, seed=seed
        )
    drop_last = shuffle and len(sampler) > local_batch
    return DataLoader(
        dataset, batch_size=local_batch, sampler=sampler, drop_last=drop_last, **kwargs
    )


def _epoch_sampler(loader: Iterable[Any]) -> Any | None:
    """The loader's epoch-seeded sampler (DistributedSampler and kin: ``set_epoch``), if any."""
    for owner in (
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        if callable(getattr(owner, "set_epoch", None)):
            return owner
    return None


def _schedule(scheduler: Any, scheduler_step: str | None) -> tuple[Any, str]:
    """The scheduler as fit steps it, and its stepping style (see ``fit``)."""
    if scheduler is not None and not isinstance(scheduler, LrSchedule):
        if callable(getattr(scheduler, "step_update", None)) and hasattr(scheduler, "t_in_epochs"):
            scheduler = LrSchedule.wrap(scheduler)  # a bare timm scheduler
    if isinstance(scheduler, LrSchedule):
        style = (
            "plateau"
            if scheduler.needs_metric
            else ("batch" if scheduler.per == "step" else "epoch")
        )
        if scheduler_step is not None and scheduler_step != style:
            raise ParameterError(
                "scheduler_step",
                f"{scheduler_step!r} does not fit the {scheduler.name} schedule, which steps "
                f"per {scheduler.per}{' on a metric' if scheduler.needs_metric else ''}: leave "
                "scheduler_step unset for schedules from core.optim",
            )
        return scheduler, "timm"
    scheduler_step = "epoch" if scheduler_step is None else scheduler_step
    check_choice("scheduler_step", scheduler_step, SCHEDULER_STEPS)
    is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if scheduler is not None and is_plateau != (scheduler_step == "plateau"):
        raise ParameterError(
            "scheduler_step",
            f"{scheduler_step!r} does not fit {type(scheduler).__name__}: use 'plateau' exactly "
            "for ReduceLROnPlateau (it steps on a monitored metric)",
        )
    return scheduler, scheduler_step


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return nn.parallel.DistributedDataParallel(model, device_ids=[index], output_device=index)
    return nn.parallel.DistributedDataParallel(model)


def move_to_device(obj: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Tensors inside nested dicts, lists and tuples moved to ``device``; others untouched."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(move_to_device(v, device, non_blocking) for v in obj)
    return obj


def split_batch(
    batch: Batch, input_key: str = "image", target_key: str = "target"
) -> tuple[Any, Any]:
    """``(inputs, targets)`` from an ``(x, y)`` tuple, a dict, or a bare input tensor.

    A dict gives ``batch[input_key]`` as input and ``batch[target_key]`` as target, or, when
    there is no ``target_key``, every other entry as a dict of targets (multi-head labels).
    """
    if isinstance(batch, Mapping):
        if input_key not in batch:
            raise KeyError(f"batch has no {input_key!r} entry (keys: {sorted(batch)})")
        if target_key in batch:
            return batch[input_key], batch[target_key]
        return batch[input_key], {k: v for k, v in batch.items() if k != input_key}
    if isinstance(batch, list | tuple):
        if len(batch) == 1:
            return batch[0], None
        return batch[0], batch[1]
    return batch, None


def _batch_size(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, Mapping):
        return _batch_size(next(iter(inputs.values())))
    return len(inputs)


def _loader_generators(loader: Iterable[Any]) -> dict[str, torch.Generator]:
    """The generators that decide a DataLoader's shuffling and worker seeds."""
    found: dict[str, torch.Generator] = {}
    for name, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None))):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(
            generator is not g for g in found.values()
        ):
            found[name] = generator
    return found


def _finite_mean(loss_sum: torch.Tensor, count: int, epoch: int, step: int | str) -> float:
    """Mean loss so far; a NaN or infinite loss stops training instead of wasting the run."""
    if count == 0:
        return math.nan
    mean = float(loss_sum) / count
    if not math.isfinite(mean):
        raise FloatingPointError(
            f"training loss became {mean} in epoch {epoch} (by batch {step}): lower the learning "
            "rate, clip gradients (grad_clip), or use bf16/fp32"
        )
    return mean


def _group_size(step: int, accumulate: int, batches: int | None) -> int:
    """Micro-batches in the accumulation group of batch ``step`` (the last may be short)."""
    if batches is None:
        return 1
    start = step - step % accumulate
    return min(accumulate, batches - start)


def _step_output(out: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
    if isinstance(out, tuple):
        loss, parts = out
        return loss, dict(parts)
    return out, {}


def updates_per_epoch(loader: Any, accumulate: int = 1) -> int:
    """Optimizer steps per epoch of ``loader`` with gradient accumulation (at least 1)."""
    return max(1, math.ceil(len(loader) / accumulate))


def _plateau_value(metrics: Mapping[str, float], monitor: str | None) -> float:
    key = monitor or ("val_loss" if "val_loss" in metrics else "train_loss")
    if key not in metrics:
        check_choice("monitor", key, metrics)
    return float(metrics[key])


def fit(
    model: nn.Module,
    train_loader: Iterable[Batch],
    *,
    loss_fn: LossFn | None = None,
    step_fn: StepFn | None = None,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str,
    amp: AmpSettings | None = None,
    scheduler: Any | None = None,
    scheduler_step: str | None = None,
    monitor: str | None = None,
    val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    grad_clip: float | None = None,
    accumulate: int = 1,
    ema: Any | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    states: Mapping[str, Any] | None = None,
    progress: bool = True,
    channels_last: bool = False,
    input_key: str = "image",
    target_key: str = "target",
) -> list[dict[str, float]]:
    """Train for ``epochs`` epochs; return one dict per epoch (epoch, train_loss, lr, val metrics).

    - ``loss_fn(outputs, targets)``: outputs may be a dict (multi-head) and targets a dict.
    - ``step_fn(net, batch, num_updates)`` instead of ``loss_fn``, for a recipe whose step is more than
      one forward pass (a teacher's pseudo-labels, mixed batches, several views): the loss
      of one batch (moved to ``device``; channels_last is the step's own business), or
      ``(loss, parts)`` whose named parts are logged as ``train_<name>``. ``net`` is the
      network being trained (DDP-wrapped in a process group), ``num_updates`` the optimizer
      steps done so far (resumed with the run: a recipe's iteration-based switches follow
      it). Losses are then averaged
      over batches rather than samples.
    - ``accumulate``: micro-batches per optimizer step (gradient accumulation; gradients are
      synchronised across DDP ranks on the last one only). An epoch's last, shorter group
      is stepped too, its loss averaged over the micro-batches it has. Schedules count
      optimizer steps: build them with ``steps_per_epoch=updates_per_epoch(loader, k)``.
    - ``ema``: an EMA of the weights (``timm.utils.ModelEmaV3``), updated after every
      optimizer step with the step count and checkpointed with the rest.
    - ``generators`` and ``states``: more random generators (e.g. a recipe's own mixing
      draws) and objects with a state dict (a second optimizer) saved in every checkpoint
      and restored on resume, so a resumed run repeats an uninterrupted one.
    - ``scheduler``: a torch scheduler, stepped as ``scheduler_step`` says: ``epoch`` (the
      default, after each epoch), ``batch`` (after each optimizer step, e.g. OneCycle) or
      ``plateau`` (ReduceLROnPlateau on ``monitor``, default ``val_loss`` if validated, else
      ``train_loss``). Or an :class:`~podium.core.optim.LrSchedule` (``build_scheduler``) or a
      bare timm scheduler: stepped timm's way, ``step_update(n)`` after the n-th optimizer step
      and ``step(epoch, metric)`` after each epoch, the metric being ``monitor`` (or the
      schedule's own ``monitor``); leave ``scheduler_step`` unset for those.
    - ``val_fn(model)`` runs in eval mode without gradients and returns metrics to record.
    - ``on_epoch_end(epoch, metrics)`` may return True to stop early.
    - ``checkpoint_path``: saved after every epoch; if it exists at start, training resumes
      after the saved epoch with model, optimizer, scheduler, scaler, RNG and loader
      shuffling state restored.
    - ``amp``: ``None`` means fp32. ``lr`` is the first param group's rate during the epoch.

    In a DDP process group (see ``core.ddp``): the model is wrapped in
    DistributedDataParallel for the training steps (``val_fn`` gets the bare model and runs
    on every rank; its metrics and the training loss are averaged over the ranks, so every
    rank returns the same history), ``on_epoch_end`` runs on rank 0 only and its stop
    decision holds for all, the checkpoint is written by rank 0 with every rank's RNG and
    loader-generator state, and every rank resumes from it.
    """
    device = torch.device(device)
    amp = amp or amp_settings(device, "fp32")
    scheduler, scheduler_step = _schedule(scheduler, scheduler_step)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ParameterError("epochs", f"expected an integer >= 0, got {epochs!r}")
    if (loss_fn is None) == (step_fn is None):
        raise TypeError(
            "fit needs exactly one of loss_fn (outputs, targets) or step_fn (net, batch)"
        )
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ParameterError("accumulate", f"expected an integer >= 1, got {accumulate!r}")
    batches = len(train_loader) if accumulate > 1 else None  # type: ignore[arg-type]
    distributed = ddp.is_distributed()
    main = ddp.is_main()
    model.to(device)
    if channels_last:
        to_channels_last(model, device)
    if ema is not None:
        ema.module.to(device)
    scaler = make_grad_scaler(amp)
    generators = {**_loader_generators(train_loader), **dict(generators or {})}
    states = {**dict(states or {}), **({"ema": ema} if ema is not None else {})}
    # An epoch-seeded sampler draws from (seed + epoch): its seed is resumed like a generator.
    sampler = _epoch_sampler(train_loader)
    sampler_seed = getattr(sampler, "seed", None)
    history: list[dict[str, float]] = []
    start_epoch = 0
    num_updates = 0  # optimizer steps so far: the count timm schedules step on
    stopped_early = False
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_training_checkpoint(
            checkpoint_path,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            generators=generators,
            map_location="cpu",  # RNG states must stay CPU tensors
            rank=ddp.rank() if distributed else None,
            states=states,
        )
        start_epoch = state.epoch
        history = [dict(row) for row in state.extra.get("history", [])]
        num_updates = int(state.extra.get("num_updates", 0))
        stopped_early = bool(state.extra.get("stopped_early"))
        if sampler_seed is not None and state.extra.get("sampler_seed") is not None:
            sampler.seed = sampler_seed = int(state.extra["sampler_seed"])
        if distributed and state.world_size != ddp.world_size():
            raise RuntimeError(
                f"{checkpoint_path} was saved by {state.world_size} process(es) and this run has "
                f"{ddp.world_size()}: resume with the same runtime.distributed settings"
            )
    if distributed:
        found = ddp.all_gather_objects(start_epoch)
        if len(set(found)) != 1:
            raise RuntimeError(
                f"the ranks found different checkpoints at {checkpoint_path} (epochs {found}): "
                "every machine must see the same checkpoint folder"
            )
    if stopped_early:
        return history
    net = _wrap_ddp(model, device) if distributed else model

    for epoch in range(start_epoch + 1, epochs + 1):
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        reseed_main_process_transforms(train_loader, epoch)
        lr = float(optimizer.param_groups[0]["lr"])
        loss_sum = torch.zeros((), device=device)  # stays on device: no sync per batch
        total_count = 0
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch}/{epochs}",
            disable=not (progress and main),
            leave=False,
        )
        part_sums: dict[str, torch.Tensor] = {}
        optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(bar):
            group = _group_size(step, accumulate, batches)
            last_micro = batches is None or (step + 1) % accumulate == 0 or step + 1 == batches
            sync = contextlib.nullcontext() if last_micro or not distributed else net.no_sync()
            with sync:
                if step_fn is None:
                    inputs, targets = split_batch(batch, input_key, target_key)
                    inputs = move_to_device(inputs, device, non_blocking=True)
                    targets = move_to_device(targets, device, non_blocking=True)
                    if channels_last:
                        inputs = to_channels_last(inputs, device)
                    with autocast(amp):
                        loss = loss_fn(net(inputs), targets)
                    size, parts = _batch_size(inputs), {}
                else:
                    with autocast(amp):
                        out = step_fn(net, move_to_device(batch, device), num_updates)
                    loss, parts = _step_output(out)
                    size = 1
                scaler.scale(loss / group).backward()
            if last_micro:
                if grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                num_updates += 1
                if ema is not None:
                    ema.update(model, step=num_updates)
                if scheduler is not None and scheduler_step == "batch":
                    scheduler.step()
                elif scheduler_step == "timm":
                    scheduler.after_update(num_updates)
            loss_sum += loss.detach().float() * size
            for name, value in parts.items():
                part_sums[name] = part_sums.get(name, 0.0) + torch.as_tensor(value).detach().float()
            total_count += size
            if step % SYNC_EVERY == 0:
                mean_loss = _finite_mean(loss_sum, total_count, epoch, step)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
        bar.close()

        local_loss = _finite_mean(loss_sum, total_count, epoch, "last")
        metrics: dict[str, float] = {
            "epoch": epoch,
            "train_loss": ddp.global_mean(loss_sum, total_count) if distributed else local_loss,
            "lr": lr,
        }
        for name, value in part_sums.items():
            metrics[f"train_{name}"] = (
                ddp.global_mean(value, total_count) if distributed else float(value) / total_count
            )
        if val_fn is not None:
            with eval_mode(model), torch.no_grad():
                scores = {k: float(v) for k, v in val_fn(model).items()}
            metrics.update(ddp.mean_metrics(scores) if distributed else scores)
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        elif scheduler is not None and scheduler_step == "plateau":
            scheduler.step(_plateau_value(metrics, monitor))
        elif scheduler_step == "timm":
            watched = monitor or scheduler.monitor
            metric = _plateau_value(metrics, watched) if scheduler.needs_metric else None
            scheduler.after_epoch(epoch, metric)
        history.append(metrics)
        stop = False
        if on_epoch_end is not None and main:
            stop = bool(on_epoch_end(epoch, dict(metrics)))
        if distributed:
            stop = bool(ddp.broadcast_object(stop))
        if checkpoint_path is not None:
            ranks = ddp.all_gather_objects(rank_state(generators)) if distributed else None
            if main:
                save_training_checkpoint(
                    checkpoint_path,
                    model=model,
                    epoch=epoch,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    generators=generators,
                    states=states,
                    extra={
                        "history": history,
                        "stopped_early": stop,
                        "num_updates": num_updates,
                        "sampler_seed": sampler_seed,
                    },
                    rank_states=ranks,
                )
            ddp.barrier()  # the checkpoint exists for every rank once any rank goes on
        if stop:
            break
    return history


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device | str,
    amp: AmpSettings | None = None,
    *,
    input_key: str = "image",
    output_key: str | None = None,
    channels_last: bool = False,
    progress: bool = False,
) -> np.ndarray | dict[str, np.ndarray]:
    """Raw float32 outputs (logits) for every batch, concatenated in loader order.

    A multi-head model gives a dict of arrays, or only its ``output_key`` entry (the others,
    e.g. a dense mask head, are dropped batch by batch instead of held for every sample).
    Softmax or sigmoid is left to the caller, so calibration and voting can work on logits
    or probabilities as they need.
    """
    device = torch.device(device)
    amp = amp or amp_settings(device, "fp32")
    model.to(device)
    if channels_last:
        to_channels_last(model, device)
    chunks: list[Any] = []
    with eval_mode(model):
        for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
            inputs, _ = split_batch(batch, input_key)
            inputs = move_to_device(inputs, device, non_blocking=True)
            if channels_last:
                inputs = to_channels_last(inputs, device)
            with autocast(amp):
                outputs = model(inputs)
            if output_key is not None:
                outputs = outputs[output_key]
            if isinstance(outputs, Mapping):
                chunks.append({k: v.float().cpu().numpy() for k, v in outputs.items()})
            else:
                chunks.append(outputs.float().cpu().numpy())
    if not chunks:
        raise ValueError("predict got an empty loader")
    if isinstance(chunks[0], dict):
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return np.concatenate(chunks)
