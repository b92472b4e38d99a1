"""A compact supervised training loop shared by the pipelines, resumable bit for bit.

``fit`` handles what every competition loop repeats: device moves, autocast and the
GradScaler (fp16 only), gradient clipping, the three scheduler stepping styles, validation,
progress bars and an every-epoch checkpoint from which an interrupted run continues to the
same final weights (on CPU) as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm.auto import tqdm

from podium.core.checkpoints import load_training_checkpoint, save_training_checkpoint
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
from podium.core.seeding import dataloader_kwargs

SCHEDULER_STEPS = ("epoch", "batch", "plateau")
#: Batches between the loss reads that sync with the GPU (progress bar, NaN check).
SYNC_EVERY = 20

Batch = Any
LossFn = Callable[[Any, Any], torch.Tensor]


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    runtime: Runtime,
    sample_weights: Sequence[float] | np.ndarray | None = None,
) -> DataLoader:
    """A DataLoader seeded like every other (workers included), pinned on CUDA.

    ``sample_weights`` (with ``shuffle``): draw ``len(dataset)`` samples per epoch with
    replacement in proportion to the weights (e.g. class-balanced), from the same seeded
    generator, so the draws are as reproducible as a shuffle.
    """
    kwargs = dataloader_kwargs(seed, runtime.num_workers, pin_memory=runtime.pin_memory)
    # A last training batch of one sample breaks BatchNorm: drop the ragged end when shuffling.
    drop_last = shuffle and len(dataset) > batch_size
    if sample_weights is None:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs
        )
    weights = torch.as_tensor(np.asarray(sample_weights, dtype=np.float64))
    if not shuffle or len(weights) != len(dataset) or not bool((weights >= 0).all()):
        raise ValueError(
            f"sample_weights need shuffle=True and one weight >= 0 per sample "
            f"({len(weights)} weights for {len(dataset)} samples)"
        )
    sampler = WeightedRandomSampler(
        weights, num_samples=len(dataset), replacement=True, generator=kwargs["generator"]
    )
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs
    )


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


def _plateau_value(metrics: Mapping[str, float], monitor: str | None) -> float:
    key = monitor or ("val_loss" if "val_loss" in metrics else "train_loss")
    if key not in metrics:
        check_choice("monitor", key, metrics)
    return float(metrics[key])


def fit(
    model: nn.Module,
    train_loader: Iterable[Batch],
    *,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str,
    amp: AmpSettings | None = None,
    scheduler: Any | None = None,
    scheduler_step: str = "epoch",
    monitor: str | None = None,
    val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    grad_clip: float | None = None,
    progress: bool = True,
    channels_last: bool = False,
    input_key: str = "image",
    target_key: str = "target",
) -> list[dict[str, float]]:
    """Train for ``epochs`` epochs; return one dict per epoch (epoch, train_loss, lr, val metrics).

    - ``loss_fn(outputs, targets)``: outputs may be a dict (multi-head) and targets a dict.
    - ``scheduler_step``: ``epoch`` (after each epoch), ``batch`` (after each optimizer step,
      e.g. OneCycle) or ``plateau`` (ReduceLROnPlateau on ``monitor``, default ``val_loss``
      if validated, else ``train_loss``).
    - ``val_fn(model)`` runs in eval mode without gradients and returns metrics to record.
    - ``on_epoch_end(epoch, metrics)`` may return True to stop early.
    - ``checkpoint_path``: saved after every epoch; if it exists at start, training resumes
      after the saved epoch with model, optimizer, scheduler, scaler, RNG and loader
      shuffling state restored.
    - ``amp``: ``None`` means fp32. ``lr`` is the first param group's rate during the epoch.
    """
    device = torch.device(device)
    amp = amp or amp_settings(device, "fp32")
    check_choice("scheduler_step", scheduler_step, SCHEDULER_STEPS)
    is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if scheduler is not None and is_plateau != (scheduler_step == "plateau"):
        raise ParameterError(
            "scheduler_step",
            f"{scheduler_step!r} does not fit {type(scheduler).__name__}: use 'plateau' exactly "
            "for ReduceLROnPlateau (it steps on a monitored metric)",
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ParameterError("epochs", f"expected an integer >= 0, got {epochs!r}")
    model.to(device)
    if channels_last:
        to_channels_last(model, device)
    scaler = make_grad_scaler(amp)
    generators = _loader_generators(train_loader)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_training_checkpoint(
            checkpoint_path,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            generators=generators,
            map_location="cpu",  # RNG states must stay CPU tensors
        )
        start_epoch = state.epoch
        history = [dict(row) for row in state.extra.get("history", [])]
        if state.extra.get("stopped_early"):
            return history

    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        lr = float(optimizer.param_groups[0]["lr"])
        loss_sum = torch.zeros((), device=device)  # stays on device: no sync per batch
        total_count = 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            inputs, targets = split_batch(batch, input_key, target_key)
            inputs = move_to_device(inputs, device, non_blocking=True)
            targets = move_to_device(targets, device, non_blocking=True)
            if channels_last:
                inputs = to_channels_last(inputs, device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(amp):
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            size = _batch_size(inputs)
            loss_sum += loss.detach().float() * size
            total_count += size
            if step % SYNC_EVERY == 0:
                mean_loss = _finite_mean(loss_sum, total_count, epoch, step)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
        bar.close()

        metrics: dict[str, float] = {
            "epoch": epoch,
            "train_loss": _finite_mean(loss_sum, total_count, epoch, "last"),
            "lr": lr,
        }
        if val_fn is not None:
            with eval_mode(model), torch.no_grad():
                metrics.update({k: float(v) for k, v in val_fn(model).items()})
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        elif scheduler is not None and scheduler_step == "plateau":
            scheduler.step(_plateau_value(metrics, monitor))
        history.append(metrics)
        stop = bool(on_epoch_end(epoch, dict(metrics))) if on_epoch_end is not None else False
        if checkpoint_path is not None:
            save_training_checkpoint(
                checkpoint_path,
                model=model,
                epoch=epoch,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                generators=generators,
                extra={"history": history, "stopped_early": stop},
            )
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
    channels_last: bool = False,
    progress: bool = False,
) -> np.ndarray | dict[str, np.ndarray]:
    """Raw float32 outputs (logits) for every batch, concatenated in loader order.

    A multi-head model gives a dict of arrays. Softmax or sigmoid is left to the caller, so
    calibration and voting can work on logits or probabilities as they need.
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
            if isinstance(outputs, Mapping):
                chunks.append({k: v.float().cpu().numpy() for k, v in outputs.items()})
            else:
                chunks.append(outputs.float().cpu().numpy())
    if not chunks:
        raise ValueError("predict got an empty loader")
    if isinstance(chunks[0], dict):
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return np.concatenate(chunks)
