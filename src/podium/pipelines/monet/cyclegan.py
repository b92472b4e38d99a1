"""CycleGAN training: LSGAN, cycle and identity losses, image pools, the paper's schedule.

Domain A is the photos, B the Monet paintings. Per step, as the reference implementation:
the generators minimise ``LSGAN(D_monet(G(photo)), 1) + LSGAN(D_photo(F(monet)), 1)
+ lambda_cycle (|F(G(a)) - a| + |G(F(b)) - b|) + lambda_identity lambda_cycle
(|G(b) - b| + |F(a) - a|)``; then each discriminator minimises
``0.5 (LSGAN(D(real), 1) + LSGAN(D(pool(fake)), 0))``, its fakes drawn from a 50-image
history pool. Adam (2e-4, beta1 0.5); the rate stays constant for ``n_epochs`` and then
decays linearly over ``n_epochs_decay`` (the reference code's "linear" lambda rule).

Every random draw of training (order, crops, flips, pool) comes from one torch Generator
seeded by the run's seed, and the state saved after the last epoch (optimisers, pools,
that generator, the epoch) lets a later run continue the schedule where this one stopped:
on CPU, 2 + 2 epochs over two runs give the same weights as 4 epochs in one.

No kedro or mlflow imports.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from podium.core.config import ParameterError, check_choice, check_int, check_keys, check_range
from podium.core.device import Runtime, autocast, make_grad_scaler, to_channels_last
from podium.pipelines.monet.data import (
    ArrayImages,
    PairedBatches,
    Tolerant,
    encode_jpeg,
    make_loader,
    to_chw_uint8,
)
from podium.pipelines.monet.networks import build_discriminator, build_generator, check_model

logger = logging.getLogger(__name__)

#: The four sub-models, each saved on its own: name -> (builder, role).
SUB_MODELS = (
    "generator_photo_to_monet",
    "generator_monet_to_photo",
    "discriminator_monet",
    "discriminator_photo",
)
GENERATORS = SUB_MODELS[:2]
DISCRIMINATORS = SUB_MODELS[2:]
EPOCH_SIZES = ("max", "min")
TRAIN_KEYS = (
    "n_epochs",
    "n_epochs_decay",
    "batch_size",
    "epoch_size",
    "pool_size",
    "epochs_this_run",
    "resume_from",
)
DATA_KEYS = ("load_size", "crop_size", "flip")
LOSS_KEYS = ("lambda_cycle", "lambda_identity")
OPTIMIZER_KEYS = ("lr", "beta1", "beta2")
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
_TRAIN, _DATA = "monet.train", "monet.data"


# --------------------------------------------------------------------------- schedule


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Learning-rate multiplier in (1-based) ``epoch``: 1 up to ``n_epochs``, then falling by
    ``1 / (n_epochs_decay + 1)`` per epoch, so the last epoch still learns at
    ``1 / (n_epochs_decay + 1)`` and the rate would reach zero one epoch later (the
    reference code's rule ``1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)``)."""
    return 1.0 - max(0, epoch - n_epochs) / float(n_epochs_decay + 1)


def total_epochs(train: Mapping[str, Any]) -> int:
    return int(train["n_epochs"]) + int(train["n_epochs_decay"])


# ---------------------------------------------------------------------------- the pool


class ImagePool:
    """Shrivastava et al.'s history of generated images, as CycleGAN uses it.

    Until ``size`` images are stored every image is stored and returned as is; afterwards
    each image is, with probability 1/2, swapped for a random stored one (which is returned)
    and otherwise returned as is. ``size`` 0 disables the pool.
    """

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size = size
        self.generator = generator
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

    def state(self) -> torch.Tensor:
        if not self.images:
            return torch.zeros(0)
        return torch.cat(self.images).cpu()

    def load(self, stored: torch.Tensor, device: torch.device) -> None:
        self.images = [t.unsqueeze(0).to(device) for t in stored] if stored.numel() else []


# ------------------------------------------------------------------------------- data


def check_training(
    data: Mapping[str, Any],
    train: Mapping[str, Any],
    loss: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    model: Mapping[str, Any],
) -> None:
    """Validate the data, train, loss, optimizer and model blocks, naming the bad key."""
    check_keys(_DATA, data, DATA_KEYS, required=DATA_KEYS)
    check_keys(_TRAIN, train, TRAIN_KEYS, required=TRAIN_KEYS)
    check_keys("monet.loss", loss, LOSS_KEYS, required=LOSS_KEYS)
    check_keys("monet.optimizer", optimizer, OPTIMIZER_KEYS, required=OPTIMIZER_KEYS)
    crop = check_int(f"{_DATA}.crop_size", data["crop_size"], low=8)
    load = check_int(f"{_DATA}.load_size", data["load_size"], low=1)
    if load < crop:
        raise ParameterError(f"{_DATA}.load_size", f"{load} is smaller than crop_size {crop}")
    for key in ("n_epochs", "n_epochs_decay", "pool_size"):
        check_int(f"{_TRAIN}.{key}", train[key], low=0)
    check_int(f"{_TRAIN}.batch_size", train["batch_size"], low=1)
    check_choice(f"{_TRAIN}.epoch_size", train["epoch_size"], EPOCH_SIZES)
    if train["epochs_this_run"] is not None:
        check_int(f"{_TRAIN}.epochs_this_run", train["epochs_this_run"], low=1)
    for key in LOSS_KEYS:
        check_range(f"monet.loss.{key}", loss[key], low=0.0)
    check_range("monet.optimizer.lr", optimizer["lr"], low=0.0)
    for key in ("beta1", "beta2"):
        check_range(f"monet.optimizer.{key}", optimizer[key], low=0.0, high=1.0)
    check_model(model, crop)


def to_tensor_images(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 (H, W, 3) images of any sizes -> one uint8 (N, 3, size, size) tensor, each
    image area-resized where its size differs (the same tensors the Datasets give)."""
    return torch.stack([to_chw_uint8(image, size) for image in images]).contiguous()


def as_images(images: Dataset | Sequence[np.ndarray], size: int) -> Dataset:
    """A Dataset of uint8 (3, size, size) tensors: a Dataset (e.g. ``data.JpegImages`` built
    with ``size``) as it is, decoded arrays wrapped in ``data.ArrayImages``."""
    return images if isinstance(images, Dataset) else ArrayImages(images, size)


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


# ----------------------------------------------------------------------- checkpoints


def _flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's per-parameter moments and step counts as flat tensors (safetensors-friendly);
    the hyperparameters come from the parameters file, the rate from the schedule."""
    flat = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            flat[f"{prefix}/{index}/{key}"] = torch.as_tensor(value).detach().cpu().clone()
    return flat


def _unflatten_optimizer(
    prefix: str, optimizer: torch.optim.Optimizer, flat: Mapping[str, torch.Tensor]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        if name.startswith(prefix + "/"):
            _, index, key = name.split("/")
            state.setdefault(int(index), {})[key] = tensor
    saved = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


@dataclass
class TrainingResult:
    """What one training run leaves: the four sub-models' weights, the state to resume
    from, and per-epoch losses (this run's epochs only)."""

    weights: dict[str, dict[str, torch.Tensor]]
    state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


# ---------------------------------------------------------------------------- training


class CycleGAN:
    """The four networks, their two optimisers, the pools and the loss weights."""

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        pool_size: int,
        runtime: Runtime,
        generator: torch.Generator,
    ) -> None:
        self.runtime = runtime
        self.nets = nn.ModuleDict(
            {name: build_generator(model) for name in GENERATORS}
            | {name: build_discriminator(model) for name in DISCRIMINATORS}
        ).to(runtime.device)
        if runtime.channels_last:
            to_channels_last(self.nets, runtime.device)
        betas = (optimizer["beta1"], optimizer["beta2"])
        params = lambda names: [p for n in names for p in self.nets[n].parameters()]  # noqa: E731
        self.opt_g = torch.optim.Adam(params(GENERATORS), lr=optimizer["lr"], betas=betas)
        self.opt_d = torch.optim.Adam(params(DISCRIMINATORS), lr=optimizer["lr"], betas=betas)
        self.base_lr = float(optimizer["lr"])
        self.scaler = make_grad_scaler(runtime.amp)
        self.pools = {
            "monet": ImagePool(pool_size, generator),
            "photo": ImagePool(pool_size, generator),
        }
        self.lambda_cycle = float(loss["lambda_cycle"])
        self.lambda_identity = float(loss["lambda_identity"])

    def set_lr(self, lr: float) -> None:
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _requires_grad(self, names: Sequence[str], flag: bool) -> None:
        for name in names:
            for p in self.nets[name].parameters():
                p.requires_grad_(flag)

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator update and one discriminator update; the losses, detached."""
        g_ab, g_ba = self.nets["generator_photo_to_monet"], self.nets["generator_monet_to_photo"]
        d_b, d_a = self.nets["discriminator_monet"], self.nets["discriminator_photo"]
        lsgan = lambda pred, real: F.mse_loss(pred, torch.full_like(pred, float(real)))  # noqa: E731
        self._requires_grad(DISCRIMINATORS, False)
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
            loss_g = sum(losses.values())
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)

        self._requires_grad(DISCRIMINATORS, True)
        self.opt_d.zero_grad(set_to_none=True)
        with autocast(self.runtime.amp):
            pooled_b = self.pools["monet"].query(fake_b.detach())
            pooled_a = self.pools["photo"].query(fake_a.detach())
            losses["d_monet"] = 0.5 * (lsgan(d_b(real_b), 1) + lsgan(d_b(pooled_b), 0))
            losses["d_photo"] = 0.5 * (lsgan(d_a(real_a), 1) + lsgan(d_a(pooled_a), 0))
        self.scaler.scale(losses["d_monet"] + losses["d_photo"]).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return {k: v.detach().float() for k, v in losses.items()}

    def state(self, epoch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        state = {
            "epoch": torch.tensor(epoch, dtype=torch.int64),
            "data_rng": generator.get_state(),
            "pool/monet": self.pools["monet"].state(),
            "pool/photo": self.pools["photo"].state(),
            **_flatten_optimizer("optimizer_g", self.opt_g),
            **_flatten_optimizer("optimizer_d", self.opt_d),
        }
        if self.scaler.is_enabled():
            state["scaler/scale"] = torch.tensor(self.scaler.get_scale())
        return state

    def load(
        self,
        weights: Mapping[str, Mapping[str, torch.Tensor]],
        state: Mapping[str, torch.Tensor],
        generator: torch.Generator,
    ) -> int:
        """Restore a saved run; return the number of epochs it had completed."""
        for name in SUB_MODELS:
            try:
                self.nets[name].load_state_dict(weights[name])
            except RuntimeError as error:
                raise ParameterError(
                    f"{_TRAIN}.resume_from",
                    f"the saved {name} does not fit monet.model ({str(error).splitlines()[0]}); "
                    "resume with the model parameters of the saved run, or set it to null",
                ) from error
        _unflatten_optimizer("optimizer_g", self.opt_g, state)
        _unflatten_optimizer("optimizer_d", self.opt_d, state)
        for domain, pool in self.pools.items():
            pool.load(state[f"pool/{domain}"], self.runtime.device)
        generator.set_state(state["data_rng"])
        if "scaler/scale" in state and self.scaler.is_enabled():
            self.scaler.update(float(state["scaler/scale"]))
        return int(state["epoch"])

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            name: {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            for name, net in self.nets.items()
        }


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
    resume: tuple[Mapping[str, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]
    | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingResult:
    """Train (or, with ``resume`` = (weights, state), continue) a CycleGAN on uint8 images.

    ``photos`` and ``monets``: Datasets of uint8 (3, load_size, load_size) tensors (read per
    item in ``runtime.num_workers`` DataLoader workers; ``data.JpegImages``) or decoded
    (H, W, 3) arrays. Either gives the same batches: the epoch order, crops, flips and pool
    draws all come from the seeded generator in this process, the workers only decode.

    Runs up to ``n_epochs + n_epochs_decay`` epochs in all, at most ``epochs_this_run`` of
    them in this call; the network weights are initialised from torch's global RNG (seeded
    by the caller), every other draw from a generator seeded with ``seed``.
    """
    check_training(data, train, loss, optimizer, model)
    generator = torch.Generator().manual_seed(seed)
    gan = CycleGAN(model, loss, optimizer, train["pool_size"], runtime, generator)
    done = gan.load(*resume, generator) if resume is not None else 0
    last = total_epochs(train)
    if train["epochs_this_run"] is not None:
        last = min(last, done + int(train["epochs_this_run"]))
    if done >= last:
        logger.warning("CycleGAN already trained %d of %d epochs: nothing to do", done, last)

    crop, flip, batch_size = data["crop_size"], bool(data["flip"]), train["batch_size"]
    domain_a = as_images(photos, data["load_size"])
    domain_b = as_images(monets, data["load_size"])
    history = []
    for epoch in range(done + 1, last + 1):
        lr = gan.base_lr * lr_factor(epoch, train["n_epochs"], train["n_epochs_decay"])
        gan.set_lr(lr)
        gan.nets.train()
        order_a, order_b = _epoch_order(
            len(domain_a), len(domain_b), train["epoch_size"], generator
        )
        sums = {name: torch.zeros((), device=runtime.device) for name in LOSS_NAMES}
        steps = PairedBatches(domain_a, domain_b, order_a, order_b, batch_size)
        batches = make_loader(steps, runtime, batch_size=None, seed=seed + epoch)
        progress_bar = tqdm(
            batches, total=len(steps), desc=f"cyclegan epoch {epoch}/{last}", disable=not progress
        )
        for loaded_a, loaded_b in progress_bar:
            batch_a = _augment(
                loaded_a.to(runtime.device, non_blocking=True), crop, flip, generator
            )
            batch_b = _augment(
                loaded_b.to(runtime.device, non_blocking=True), crop, flip, generator
            )
            real_a, real_b = to_model_range(batch_a), to_model_range(batch_b)
            if runtime.channels_last:
                real_a = to_channels_last(real_a, runtime.device)
                real_b = to_channels_last(real_b, runtime.device)
            for name, value in gan.step(real_a, real_b).items():
                sums[name] += value
        row = {"epoch": float(epoch), "lr": lr}
        row |= {name: float(total) / len(steps) for name, total in sums.items()}
        if not all(math.isfinite(v) for v in row.values()):
            raise FloatingPointError(
                f"CycleGAN losses became non-finite in epoch {epoch}: {row}; lower "
                "monet.optimizer.lr or use runtime.precision: fp32"
            )
        history.append(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(row))
    return TrainingResult(gan.weights(), gan.state(max(done, last), generator), history)


# ---------------------------------------------------------------------------- generate


@dataclass
class TranslatedBatch:
    """One batch of translations: the items' positions in the dataset, their uint8
    (n, out, out, 3) images, and ``(position, reason)`` of the items that could not be read."""

    indices: list[int]
    images: np.ndarray
    skipped: list[tuple[int, str]]


def load_generator(
    generator_weights: Mapping[str, torch.Tensor], model: Mapping[str, Any], runtime: Runtime
) -> nn.Module:
    net = build_generator(model)
    net.load_state_dict(generator_weights)
    net = net.to(runtime.device).eval()
    if runtime.channels_last:
        to_channels_last(net, runtime.device)
    return net


@torch.no_grad()
def iter_translations(
    generator_weights: Mapping[str, torch.Tensor],
    images: Dataset | Sequence[np.ndarray],
    *,
    model: Mapping[str, Any],
    input_size: int,
    output_size: int,
    batch_size: int,
    runtime: Runtime,
    seed: int = 0,
) -> Iterator[TranslatedBatch]:
    """Run a saved generator over images, one batch at a time, in dataset order: each image
    resized to ``input_size`` (area; ``images`` a ``data.JpegImages`` built with that size,
    or decoded arrays), translated, and resized to ``output_size`` (bicubic). An unreadable
    image is left out of its batch and listed in ``skipped``; only one batch of images is
    alive at a time (plus what the loader's workers prefetch)."""
    net = load_generator(generator_weights, model, runtime)
    items = Tolerant(as_images(images, input_size), input_size)
    for positions, batch, reasons in make_loader(items, runtime, batch_size=batch_size, seed=seed):
        good = [k for k, reason in enumerate(reasons) if not reason]
        skipped = [(int(positions[k]), reasons[k]) for k in range(len(reasons)) if reasons[k]]
        if not good:
            yield TranslatedBatch([], np.zeros((0, output_size, output_size, 3), np.uint8), skipped)
            continue
        x = to_model_range(batch[good].to(runtime.device))
        if runtime.channels_last:
            x = to_channels_last(x, runtime.device)
        with autocast(runtime.amp):
            y = net(x).float()
        if y.shape[-1] != output_size:
            y = F.interpolate(y, size=(output_size, output_size), mode="bicubic")
        yield TranslatedBatch([int(positions[k]) for k in good], to_uint8(y), skipped)


def translate(
    generator_weights: Mapping[str, torch.Tensor],
    images: Dataset | Sequence[np.ndarray],
    *,
    model: Mapping[str, Any],
    input_size: int,
    output_size: int,
    batch_size: int,
    runtime: Runtime,
) -> np.ndarray:
    """All translations at once, uint8 (N, out, out, 3): for a handful of images (the
    preview grid, notebooks); images.zip streams with :func:`iter_translations`."""
    batches = iter_translations(
        generator_weights,
        images,
        model=model,
        input_size=input_size,
        output_size=output_size,
        batch_size=batch_size,
        runtime=runtime,
    )
    out = []
    for batch in batches:
        if batch.skipped:
            raise ValueError(f"unreadable images (position, reason): {batch.skipped}")
        out.append(batch.images)
    return np.concatenate(out) if out else np.zeros((0, output_size, output_size, 3), np.uint8)


class LazyEntries:
    """A re-iterable stream: each ``iter()`` calls ``produce()`` afresh. A node returns one
    so that its dataset writes the entries as they are produced."""

    def __init__(self, produce: Callable[[], Iterator[Any]]) -> None:
        self._produce = produce

    def __iter__(self) -> Iterator[Any]:
        return self._produce()


def translated_jpegs(
    generator_weights: Mapping[str, torch.Tensor],
    images: Dataset | Sequence[np.ndarray],
    names: Sequence[str],
    *,
    jpeg_quality: int,
    on_skipped: Callable[[str, str], None] | None = None,
    progress: bool = True,
    **settings: Any,
) -> Iterator[tuple[str, bytes]]:
    """``(f"{name}.jpg", jpg bytes)`` per translated image, batch by batch, in dataset order
    (``settings``: those of :func:`iter_translations`). An unreadable image is passed to
    ``on_skipped(name, reason)`` and left out."""
    with tqdm(total=len(names), desc="translating photos", disable=not progress) as bar:
        for batch in iter_translations(generator_weights, images, **settings):
            for position, reason in batch.skipped:
                if on_skipped is not None:
                    on_skipped(names[position], reason)
            for position, image in zip(batch.indices, batch.images, strict=True):
                yield f"{names[position]}.jpg", encode_jpeg(image, jpeg_quality)
            bar.update(len(batch.indices) + len(batch.skipped))
