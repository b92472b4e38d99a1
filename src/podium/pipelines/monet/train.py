"""CycleGAN training: LSGAN, cycle and identity losses, image pools, the paper's schedule.

Domain A is the photos, B the Monet paintings. Per step, as the reference implementation:
the generators minimise ``LSGAN(D_monet(G(photo)), 1) + LSGAN(D_photo(F(monet)), 1)
+ lambda_cycle (|F(G(a)) - a| + |G(F(b)) - b|) + lambda_identity lambda_cycle
(|G(b) - b| + |F(a) - a|)``; then each discriminator minimises
``0.5 (LSGAN(D(real), 1) + LSGAN(D(pool(fake)), 0))``, its fakes drawn from a 50-image
history pool. Adam (2e-4, beta1 0.5) and the reference code's "linear" schedule: the
rate is held, then decays linearly over ``n_epochs_decay`` epochs to zero in the last one
(``lr_factor``; ``lr_decay_timing`` keeps podium's older timing, one epoch later).

Four networks and two optimisers do not fit ``core.training.fit``'s one-model step, so the
epoch loop is here, built from the engine's parts: ``core.seeding`` for the seeds,
``core.device`` for autocast, the GradScaler and channels_last, ``core.checkpoints`` for the
whole state after every epoch. Every draw of training (order, crops, flips, pool) comes from
one torch Generator saved with it, so a continued run ends with an uninterrupted run's
weights (on CPU, bit for bit), whether it was killed or stopped by ``epochs_this_run``.

No kedro or mlflow imports.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from podium.core.checkpoints import (
    TrainingState,
    cpu_state_dict,
    load_training_checkpoint,
    save_training_checkpoint,
)
from podium.core.config import ParameterError, check_choice
from podium.core.device import Runtime, autocast, make_grad_scaler, to_channels_last
from podium.core.seeding import derive_seed, make_generator, seed_everything, training_seed
from podium.pipelines.monet.data import (
    PairedBatches,
    as_images,
    make_loader,
)
from podium.pipelines.monet.model import build_discriminator, build_generator
from podium.pipelines.monet.params import (
    LR_DECAY_TIMINGS,
    MonetDataParams,
    MonetLossParams,
    MonetModelParams,
    MonetOptimizerParams,
    MonetTrainParams,
    validated,
)

logger = logging.getLogger(__name__)

#: The four sub-models, each saved on its own.
SUB_MODELS = (
    "generator_photo_to_monet",
    "generator_monet_to_photo",
    "discriminator_monet",
    "discriminator_photo",
)
GENERATORS = SUB_MODELS[:2]
DISCRIMINATORS = SUB_MODELS[2:]
LOSS_NAMES = (
    "g_gan_photo_to_monet",
    "g_gan_monet_to_photo",
    "cycle_photo",
    "cycle_monet",
    "identity_photo",
    "identity_monet",
    "d_monet",
    "d_photo",
)
_TRAIN = MonetTrainParams.block


# --------------------------------------------------------------------------- schedule


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int, timing: str = "reference") -> float:
    """Learning-rate multiplier in (1-based) ``epoch`` of ``n_epochs + n_epochs_decay``.

    ``reference``: the authors' rule. Their ``train.py`` steps the LambdaLR at the start of
    every epoch, so epoch ``e`` trains at ``1 - max(0, e + 1 - n_epochs) / (n_epochs_decay
    + 1)``: the decay's first step falls in epoch ``n_epochs`` (0.990099 at epoch 100 of
    100 + 100) and the last epoch trains at exactly 0.

    ``after_n_epochs``: podium's earlier timing, the same line one epoch later,
    ``1 - max(0, e - n_epochs) / (n_epochs_decay + 1)``: ``n_epochs`` whole epochs at the
    initial rate, the last epoch at ``1 / (n_epochs_decay + 1)`` (0.009901 at epoch 200).

    ``n_epochs_decay`` 0 is a constant schedule under either timing: 1 in every epoch.
    (The reference's formula would give 0 in epoch ``n_epochs``, the decay's zero-length
    line reaching into the constant epochs: a one-epoch run would learn nothing, and the
    constant-rate baseline it stands for, the Keras tutorial's, trains every epoch at the
    initial rate.)
    """
    check_choice(f"{_TRAIN}.lr_decay_timing", timing, LR_DECAY_TIMINGS)
    if n_epochs_decay == 0:
        return 1.0
    late = 1 if timing == "reference" else 0
    return 1.0 - max(0, epoch + late - n_epochs) / float(n_epochs_decay + 1)


def total_epochs(train: Mapping[str, Any]) -> int:
    return int(train["n_epochs"]) + int(train["n_epochs_decay"])


def linear_decay(
    optimizer: torch.optim.Optimizer,
    n_epochs: int,
    n_epochs_decay: int,
    timing: str = "reference",
) -> LambdaLR:
    """``lr_factor`` as a LambdaLR stepped once at the end of every epoch (its step count is
    the epochs done, so epoch ``e`` trains at ``lr_factor(e)``: the reference's rate, which
    it reaches by stepping at the start of every epoch instead; an unknown ``timing`` is
    refused when LambdaLR first calls it, here)."""
    return LambdaLR(optimizer, lambda done: lr_factor(done + 1, n_epochs, n_epochs_decay, timing))


# ---------------------------------------------------------------------------- the pool


class ImagePool:
    """Shrivastava et al.'s history of generated images, as CycleGAN uses it.

    Until ``size`` images are stored every image is stored and returned as is; afterwards
    each image is, with probability 1/2, swapped for a random stored one (which is returned)
    and otherwise returned as is. ``size`` 0 disables the pool. Its stored images are part
    of the training checkpoint (``state_dict``), its draws come from ``generator``.
    """

    def __init__(
        self, size: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> None:
        self.size = size
        self.generator = generator
        self.device = torch.device(device)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                slot = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"images": torch.cat(self.images).cpu() if self.images else torch.zeros(0)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        stored = state["images"]
        self.images = [t.unsqueeze(0).to(self.device) for t in stored] if stored.numel() else []


# ---------------------------------------------------------------------- settings, data


#: The blocks of one training, by ``train_cyclegan``'s argument names, and their models.
TRAINING_BLOCKS = {
    "data": MonetDataParams,
    "model": MonetModelParams,
    "loss": MonetLossParams,
    "optimizer": MonetOptimizerParams,
    "train": MonetTrainParams,
}


def check_training(
    data: Mapping[str, Any],
    train: Mapping[str, Any],
    loss: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    model: Mapping[str, Any],
) -> dict[str, Any]:
    """The data, model, loss, optimizer and train blocks as their models (dictionaries
    validated), by name, once the U-Net is known to fit the training crop."""
    given = dict(data=data, model=model, loss=loss, optimizer=optimizer, train=train)
    blocks = {name: validated(TRAINING_BLOCKS[name], block) for name, block in given.items()}
    blocks["model"].check_fits(blocks["data"].crop_size)
    return blocks


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the generator's tanh range)."""
    return batch.float() / 127.5 - 1.0


def to_uint8(batch: torch.Tensor) -> np.ndarray:
    """float [-1, 1] (N, 3, H, W) -> uint8 (N, H, W, 3)."""
    images = ((batch.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def _augment(
    images: torch.Tensor, crop: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """The paper's jitter: a random ``crop`` window of the resized image, random h-flip."""
    n, _, height, width = images.shape
    out = []
    for image in images:
        top = int(torch.randint(height - crop + 1, (), generator=generator))
        left = int(torch.randint(width - crop + 1, (), generator=generator))
        image = image[:, top : top + crop, left : left + crop]
        if flip and torch.rand((), generator=generator).item() < 0.5:
            image = image.flip(-1)
        out.append(image)
    return torch.stack(out)


def _epoch_order(n_a: int, n_b: int, epoch_size: str, generator: torch.Generator):
    """Index pairs of one epoch: both domains shuffled, the shorter one cycled (``max``) or
    the longer one cut (``min``); the sets are unpaired, so pairs are arbitrary."""
    length = max(n_a, n_b) if epoch_size == "max" else min(n_a, n_b)

    def order(n: int) -> torch.Tensor:
        repeats = math.ceil(length / n)
        return torch.cat([torch.randperm(n, generator=generator) for _ in range(repeats)])

    return order(n_a)[:length], order(n_b)[:length]


# ---------------------------------------------------------------------------- training


@dataclass
class TrainingResult:
    """What one training run leaves: the four sub-models' weights, the epochs done in all,
    the losses per epoch (those of this stretch of epochs, see ``train_cyclegan``) and the
    checkpoint file holding the whole state after the last of them."""

    weights: dict[str, dict[str, torch.Tensor]]
    epoch: int
    history: list[dict[str, float]]
    checkpoint: Path


class CycleGAN:
    """The four networks, their two optimisers and schedules, the pools and the loss weights."""

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        train: Mapping[str, Any],
        runtime: Runtime,
        generator: torch.Generator,
    ) -> None:
        self.runtime = runtime
        self.generator = generator
        self.nets = nn.ModuleDict(
            {name: build_generator(model) for name in GENERATORS}
            | {name: build_discriminator(model) for name in DISCRIMINATORS}
        ).to(runtime.device)
        if runtime.channels_last:
            to_channels_last(self.nets, runtime.device)
        betas = (optimizer["beta1"], optimizer["beta2"])
        self.opt_g = torch.optim.Adam(self._params(GENERATORS), lr=optimizer["lr"], betas=betas)
        self.opt_d = torch.optim.Adam(self._params(DISCRIMINATORS), lr=optimizer["lr"], betas=betas)
        decay = (int(train["n_epochs"]), int(train["n_epochs_decay"]), train["lr_decay_timing"])
        self.sched_g = linear_decay(self.opt_g, *decay)
        self.sched_d = linear_decay(self.opt_d, *decay)
        self.scaler = make_grad_scaler(runtime.amp)
        self.pool_a, self.pool_b = (
            ImagePool(train["pool_size"], generator, runtime.device) for _ in "ab"
        )
        self.grad_clip = train["grad_clip"]
        self.lambda_cycle = float(loss["lambda_cycle"])
        self.lambda_identity = float(loss["lambda_identity"])

    def prepare(self, loaded: torch.Tensor, data: Mapping[str, Any]) -> torch.Tensor:
        """A loaded uint8 batch jittered (from the training's generator) in model range."""
        device = self.runtime.device
        batch = loaded.to(device, non_blocking=True)
        batch = to_model_range(
            _augment(batch, data["crop_size"], bool(data["flip"]), self.generator)
        )
        return to_channels_last(batch, device) if self.runtime.channels_last else batch

    def _params(self, names: Sequence[str]) -> list[nn.Parameter]:
        return [p for name in names for p in self.nets[name].parameters()]

    def _requires_grad(self, names: Sequence[str], flag: bool) -> None:
        for p in self._params(names):
            p.requires_grad_(flag)

    def _update(
        self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, names: Sequence[str]
    ) -> None:
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self._params(names), self.grad_clip)
        self.scaler.step(optimizer)

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator update and one discriminator update; the losses, detached."""
        g_ab, g_ba = self.nets["generator_photo_to_monet"], self.nets["generator_monet_to_photo"]
        d_b, d_a = self.nets["discriminator_monet"], self.nets["discriminator_photo"]
        lsgan = lambda pred, real: F.mse_loss(pred, torch.full_like(pred, float(real)))  # noqa: E731
        self._requires_grad(DISCRIMINATORS, False)  # the generators' loss moves no D weight
        self.opt_g.zero_grad(set_to_none=True)
        with autocast(self.runtime.amp):
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            losses = {
                "g_gan_photo_to_monet": lsgan(d_b(fake_b), 1),
                "g_gan_monet_to_photo": lsgan(d_a(fake_a), 1),
                "cycle_photo": F.l1_loss(g_ba(fake_b), real_a) * self.lambda_cycle,
                "cycle_monet": F.l1_loss(g_ab(fake_a), real_b) * self.lambda_cycle,
            }
            if self.lambda_identity > 0:
                weight = self.lambda_identity * self.lambda_cycle
                losses["identity_monet"] = F.l1_loss(g_ab(real_b), real_b) * weight
                losses["identity_photo"] = F.l1_loss(g_ba(real_a), real_a) * weight
        self._update(self.opt_g, sum(losses.values()), GENERATORS)

        self._requires_grad(DISCRIMINATORS, True)
        self.opt_d.zero_grad(set_to_none=True)
        with autocast(self.runtime.amp):
            pooled_b = self.pool_b.query(fake_b.detach())
            pooled_a = self.pool_a.query(fake_a.detach())
            losses["d_monet"] = 0.5 * (lsgan(d_b(real_b), 1) + lsgan(d_b(pooled_b), 0))
            losses["d_photo"] = 0.5 * (lsgan(d_a(real_a), 1) + lsgan(d_a(pooled_a), 0))
        self._update(self.opt_d, losses["d_monet"] + losses["d_photo"], DISCRIMINATORS)
        self.scaler.update()
        return {k: v.detach().float() for k, v in losses.items()}

    def _parts(self) -> dict[str, Any]:
        """What ``core.checkpoints`` saves and restores of this training, by its names."""
        return {
            "model": self.nets,
            "optimizer": self.opt_g,
            "scheduler": self.sched_g,
            "scaler": self.scaler,
            "states": {
                "optimizer_d": self.opt_d,
                "scheduler_d": self.sched_d,
                "pool_a": self.pool_a,
                "pool_b": self.pool_b,
            },
            "generators": {"training": self.generator},
        }

    def save(self, path: Path, epoch: int, history: list[dict[str, float]]) -> None:
        save_training_checkpoint(path, epoch=epoch, extra={"history": history}, **self._parts())

    def load(self, path: str | os.PathLike[str]) -> TrainingState:
        try:
            return load_training_checkpoint(path, map_location="cpu", **self._parts())
        except RuntimeError as error:  # a state dict of other shapes: other model settings
            raise ParameterError(
                f"{_TRAIN}.resume_from",
                f"{path} does not fit monet.model ({str(error).splitlines()[0]}); resume with "
                "the model parameters of the saved run, or set it to null",
            ) from error

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: cpu_state_dict(net) for name, net in self.nets.items()}


def _train_epoch(
    gan: CycleGAN,
    domains: tuple[Dataset, Dataset],
    epoch: int,
    data: Mapping[str, Any],
    train: Mapping[str, Any],
    loader_seed: int,
    progress: bool,
) -> dict[str, float]:
    """One epoch over both domains in the generator's order; its mean losses and rate."""
    device, generator = gan.runtime.device, gan.generator
    lr = float(gan.opt_g.param_groups[0]["lr"])
    gan.nets.train()
    order = _epoch_order(len(domains[0]), len(domains[1]), train["epoch_size"], generator)
    steps = PairedBatches(*domains, *order, train["batch_size"])
    batches = make_loader(steps, gan.runtime, batch_size=None, seed=loader_seed)
    sums = {name: torch.zeros((), device=device) for name in LOSS_NAMES}
    bar = tqdm(batches, total=len(steps), desc=f"cyclegan epoch {epoch}", disable=not progress)
    for loaded_a, loaded_b in bar:
        real_a, real_b = gan.prepare(loaded_a, data), gan.prepare(loaded_b, data)
        for name, value in gan.step(real_a, real_b).items():
            sums[name] += value
    gan.sched_g.step()
    gan.sched_d.step()
    row = {"epoch": float(epoch), "lr": lr}
    row |= {name: float(total) / len(steps) for name, total in sums.items()}
    if not all(math.isfinite(v) for v in row.values()):
        raise FloatingPointError(
            f"CycleGAN losses became non-finite in epoch {epoch}: {row}; lower "
            "monet.optimizer.lr, set monet.train.grad_clip or use runtime.precision: fp32"
        )
    return row


def train_cyclegan(
    photos: Dataset | Sequence[np.ndarray],
    monets: Dataset | Sequence[np.ndarray],
    *,
    data: Mapping[str, Any],
    model: Mapping[str, Any],
    loss: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    train: Mapping[str, Any],
    seed: int,
    runtime: Runtime,
    checkpoint: str | os.PathLike[str],
    resume: str | os.PathLike[str] | None = None,
    deterministic: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingResult:
    """Train a CycleGAN on uint8 images, writing the whole state to ``checkpoint`` after
    every epoch (then calling ``on_epoch_end``).

    Where it starts: ``checkpoint`` itself if it exists (a run killed after an epoch goes
    on, its losses history too), else the training checkpoint ``resume`` (a finished
    stretch of epochs saved by an earlier run: a new history starts), else afresh. It runs
    up to ``n_epochs + n_epochs_decay`` epochs in all, at most ``epochs_this_run`` of them
    in this call.

    ``photos`` and ``monets``: Datasets of uint8 (3, load_size, load_size) tensors (read per
    item in ``runtime.num_workers`` DataLoader workers; ``data.JpegImages``) or decoded
    (H, W, 3) arrays. Either gives the same batches: the epoch order, crops, flips and pool
    draws all come from the seeded generator in this process, the workers only decode.
    Seeds: the process is seeded with ``training_seed(seed, model="cyclegan")`` (the weight
    init), the draws' generator and each epoch's loader with seeds derived from it.
    """
    blocks = check_training(data, train, loss, optimizer, model)
    data, model, loss, optimizer, train = (
        blocks[name] for name in ("data", "model", "loss", "optimizer", "train")
    )
    run_seed = seed_everything(training_seed(seed, model="cyclegan"), deterministic)
    gan = CycleGAN(
        model, loss, optimizer, train, runtime, make_generator(derive_seed(run_seed, "draws"))
    )
    checkpoint = Path(checkpoint)
    done, history = 0, []
    if checkpoint.exists():
        state = gan.load(checkpoint)
        done, history = state.epoch, list(state.extra["history"])
    elif resume is not None:
        done = gan.load(resume).epoch
    last = total_epochs(train)
    if train["epochs_this_run"] is not None:
        last = min(last, done + int(train["epochs_this_run"]))
    if done >= last:
        logger.warning("CycleGAN already trained %d of %d epochs: nothing to do", done, last)
        gan.save(checkpoint, done, history)  # the checkpoint holds the state after every call
    domains = (as_images(photos, data["load_size"]), as_images(monets, data["load_size"]))
    for epoch in range(done + 1, last + 1):
        loader_seed = derive_seed(run_seed, "loader", epoch)
        history.append(_train_epoch(gan, domains, epoch, data, train, loader_seed, progress))
        gan.save(checkpoint, epoch, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(history[-1]))
    return TrainingResult(gan.weights(), max(done, last), history, checkpoint)
