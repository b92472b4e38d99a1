"""Iteration-based training: ``source_only`` or ``self_training`` with an EMA teacher.

One iteration of ``self_training`` (after ``pseudo_label.start_iteration`` source-only
iterations, which give the teacher something to teach): a rare-class sampled source batch
(optionally fisheye-warped) and a target batch; the teacher first moves towards the student
(DAFormer: copied at iteration 0, from iteration i >= 1 averaged with
a = min(1 - 1/(i + 1), ema_alpha), parameters only), then labels the un-augmented target
batch in train mode with dropout and drop-path off, every pixel weighted by the batch's
share of pixels with top probability >= the threshold; ClassMix pastes half of each source
image's classes onto a target image; the student learns from the source batch, the jittered
mixed batch and, with MIC, the masked target batch, each seen plain and distorted with the
dual branch. ``source_only`` runs only the source part, with the same data choices and EMA.
``ema_rule: timm`` is podium's earlier teacher instead: timm's ``ModelEmaV3`` after every
optimizer step (a = 0 after step 1, min(1 - 1/i, ema_alpha) after step i), BatchNorm
buffers averaged, the teacher labelling in eval mode.

The loop is podium's one engine (``core.training.fit``): an epoch is
``iterations_per_epoch`` iterations (a checkpoint and a curve point), the teacher is kept in
a ``ModelEmaV3`` (checkpointed with the rest; updated by the step, or by fit with
``ema_rule: timm``), optimizer and poly schedule come from ``core.optim``, and the members train
through ``core.resume.run_jobs`` in ``runtime.distributed``'s processes, resumable from
their last epoch. What stays here is the competition's own: the paired draws and the step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch import nn

from podium.core import ddp, optim, resume, seeding
from podium.core.checkpoints import cpu_state_dict
from podium.core.device import Runtime, to_channels_last
from podium.core.training import fit, seeded_loader
from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES
from podium.pipelines.uda import background as bg
from podium.pipelines.uda import selftraining as st
from podium.pipelines.uda.data import PairedDataset, rare_class_image_weights
from podium.pipelines.uda.model import build_network
from podium.pipelines.uda.params import ModelParams, ModelsParams, TrainingParams

log = logging.getLogger(__name__)

P = "uda.training"
CHECKPOINT_FILE = "checkpoint.pt"


def check_lr_multipliers(spec: ModelParams, optimizer: Mapping, parameter: str) -> None:
    """``uda.training.optimizer.lr_multipliers`` checked against the network of ``spec``
    (``parameter``), built without weights on the meta device before any process starts."""
    with torch.device("meta"):
        net = build_network(spec.model_copy(update={"pretrained": False}), NUM_CLASSES, parameter)
    optim.build_optimizer(net, optimizer, parameter=f"{P}.optimizer")


@dataclass(frozen=True)
class MemberJob:
    """Everything the processes of one member's training need; pickled to each."""

    name: str
    spec: Mapping[str, Any]  # a ModelParams
    source: pd.DataFrame  # img_path, gt_path
    target: pd.DataFrame  # img_path
    source_weights: np.ndarray  # sampling probability of each source image
    training: Mapping[str, Any]  # a TrainingParams
    sizes: tuple[tuple[int, int], tuple[int, int]]  # source and target working size (h, w)
    seed: int
    deterministic: bool
    runtime: Runtime
    progress: bool = True
    background: str = "class"  # uda.data.background


def source_weights(counts: pd.DataFrame, rcs: Mapping[str, Any]) -> np.ndarray:
    """Each source image's sampling weight: rare-class sampling, or uniform without it."""
    if rcs["enabled"]:
        return rare_class_image_weights(counts, rcs["temperature"], rcs["min_pixels"])
    return np.full(len(counts), 1.0 / len(counts))


def paired_loader(job: MemberJob, seed: int, runtime: Runtime) -> torch.utils.data.DataLoader:
    """One epoch of ``(source image, label, target image)`` batches: ``iterations_per_epoch``
    global batches, each rank's share of two seeded weighted draws (epoch-seeded by fit)."""
    t = job.training
    dataset = PairedDataset.for_training(
        job.source, job.target, job.sizes, t, P, background=job.background
    )
    n = t["iterations_per_epoch"] * t["batch_size"]
    source = ddp.DistributedWeightedSampler(
        job.source_weights, n, seed=seeding.derive_seed(seed, "source")
    )
    target = ddp.DistributedWeightedSampler(
        np.ones(len(job.target)), n, seed=seeding.derive_seed(seed, "target")
    )
    return seeded_loader(
        dataset,
        t["batch_size"],
        shuffle=True,
        seed=seeding.derive_seed(seed, "loader"),
        runtime=runtime,
        sampler=ddp.ZipSampler(source, target),
    )


def uda_step(
    net: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    num_updates: int,
    *,
    teacher: nn.Module,
    t: Mapping[str, Any],
    generator: torch.Generator,
    channels_last: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One iteration's loss (``fit``'s ``step_fn``) and its parts: ``source``, and with
    self-training ``target``, ``pseudo_weight`` and (MIC) ``mic``, 0 before
    ``pseudo_label.start_iteration`` (every rank logs the same parts every iteration).

    With ``ema_rule: daformer`` the step first moves the teacher (iteration
    ``num_updates``: 0 copies the student's parameters, i >= 1 averages them with
    :func:`~podium.pipelines.uda.selftraining.daformer_alpha`), as DAFormer does at the
    start of its ``forward_train``; the teacher then labels in train mode with dropout and
    drop-path off, so its BatchNorm normalises with the batch's statistics and its buffers
    change nothing it labels. They are set to the student's at every update (and once
    more after the last step, :func:`train_member`): DAFormer never predicts with its
    teacher, uda's ``inference.weights: ema`` does, in eval mode, and the running
    statistics of the teacher's own target-only forwards ruin that (source mIoU 0.02 on
    the sample against 0.36 with the student's)."""
    xs, ys, xt = batch
    pl, sa, db, mic = t["pseudo_label"], t["strong_augment"], t["dual_branch"], t["mic"]
    if t["ema_rule"] == "daformer":
        student = getattr(net, "module", net)  # the bare network inside DDP
        if num_updates == 0:
            st.init_teacher(teacher, student)
        else:
            st.update_teacher(teacher, student, num_updates, t["ema_alpha"])
        st.copy_buffers(teacher, student)

    def loss_of(x: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None):
        x = to_channels_last(x, x.device) if channels_last else x
        return st.weighted_cross_entropy(net(x), labels, weights, IGNORE_INDEX)

    loss = loss_of(*st.with_distorted_view(xs, ys, None, generator, db, IGNORE_INDEX))
    parts = {"source": loss.detach()}
    if t["regime"] == "source_only":
        return loss, parts
    zero = torch.zeros((), device=xs.device)
    parts |= {"target": zero, "pseudo_weight": zero, **({"mic": zero} if mic["enabled"] else {})}
    if num_updates < pl["start_iteration"]:
        return loss, parts

    with torch.no_grad():
        seen = st.strong_view(xt, generator, sa) if pl["teacher_augment"] else xt
        seen = to_channels_last(seen, seen.device) if channels_last else seen
        if t["ema_rule"] == "daformer":
            st.labelling_mode(teacher)
        labels, weights = st.pseudo_labels(
            teacher(seen),
            pl["threshold"],
            pl["ignore_top"],
            pl["ignore_bottom"],
            weight=pl["weight"],
            inclusive=pl["inclusive"],
        )
    parts["pseudo_weight"] = weights.mean()
    xm, ym, wm = xt, labels, weights
    if t["class_mix"]["enabled"]:
        masks = st.class_mix_masks(ys, IGNORE_INDEX, generator)
        xm, ym = st.mix(masks, xs, xt), st.mix(masks, ys, labels)
        wm = st.mix(masks, torch.ones_like(weights), weights)
    xm = st.strong_view(xm, generator, sa) if sa["enabled"] else xm
    target_loss = loss_of(*st.with_distorted_view(xm, ym, wm, generator, db, IGNORE_INDEX))
    parts["target"], loss = target_loss.detach(), loss + target_loss
    if mic["enabled"]:
        xk = st.strong_view(xt, generator, sa) if sa["enabled"] else xt
        xk = xk * st.mic_mask(xk.shape, mic["patch_size"], mic["mask_ratio"], generator, xk.device)
        mic_loss = loss_of(xk, labels, weights)
        parts["mic"], loss = mic_loss.detach(), loss + mic["loss_weight"] * mic_loss
    return loss, parts


def _report(name: str, epochs: int, per_epoch: int, epoch: int, metrics: Mapping) -> None:
    done, loss = epoch * per_epoch, metrics["train_loss"]
    log.info("uda %s: epoch %d/%d (iteration %d), loss %.4f", name, epoch, epochs, done, loss)


def train_member(job: MemberJob, checkpoints: str | None) -> dict[str, Any]:
    """One member trained by ``core.training.fit``, in each of its processes.

    Each process is seeded with ``training_seed(seed, model=<member>, rank=<rank>)`` (its
    mixing, masking and jitter draws too), the paired draws with seeds derived from rank
    0's, the same on every rank. Returns the student's and the EMA teacher's weights, the
    per-epoch history and the seconds spent, as tensors and plain values.
    """
    t, runtime = job.training, ddp.rank_runtime(job.runtime)
    own = seeding.training_seed(job.seed, model=job.name, rank=ddp.rank())
    seeding.seed_everything(own, deterministic=job.deterministic)
    student = build_network(job.spec, bg.num_outputs(job.background), f"uda.models.{job.name}")
    # timm: warmup_power 1 gives decay 0 after step 1, then min(1 - 1/step, ema_alpha) after
    # each later optimizer step (podium's earlier teacher). daformer: the container only,
    # updated by uda_step and checkpointed by fit through `states`.
    ema = ModelEmaV3(student, t["ema_alpha"], use_warmup=True, warmup_gamma=1.0, warmup_power=1.0)
    daformer = t["ema_rule"] == "daformer"
    if daformer:
        ema.module.to(runtime.device)
    if runtime.channels_last:  # fit converts the student; the teacher sees the same inputs
        to_channels_last(ema.module, runtime.device)
    epochs, per_epoch = t["iterations"] // t["iterations_per_epoch"], t["iterations_per_epoch"]
    optimizer = optim.build_optimizer(student, t["optimizer"], parameter=f"{P}.optimizer")
    scheduler = optim.build_scheduler(
        optimizer,
        t["scheduler"],
        epochs=epochs,
        steps_per_epoch=per_epoch,
        parameter=f"{P}.scheduler",
    )
    mixing = seeding.make_generator(seeding.derive_seed(own, "mixing"))
    step = partial(
        uda_step, teacher=ema.module, t=t, generator=mixing, channels_last=runtime.channels_last
    )
    started = time.perf_counter()
    history = fit(
        student,
        paired_loader(job, seeding.training_seed(job.seed, model=job.name), runtime),
        step_fn=step,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=epochs,
        device=runtime.device,
        amp=runtime.amp,
        grad_clip=t["grad_clip"],
        ema=None if daformer else ema,
        states={"ema": ema} if daformer else None,
        generators={"mixing": mixing},
        checkpoint_path=None if checkpoints is None else Path(checkpoints) / CHECKPOINT_FILE,
        progress=job.progress,
        channels_last=runtime.channels_last,
        on_epoch_end=partial(_report, job.name, epochs, per_epoch),
    )
    if daformer:  # the buffers the eval-mode teacher predicts with (see uda_step)
        st.copy_buffers(ema.module, student)
    return {
        "student": cpu_state_dict(student),
        "ema": cpu_state_dict(ema.module),
        "history": history,
        "seconds": time.perf_counter() - started,
    }


def train_members(
    source: pd.DataFrame,
    target: pd.DataFrame,
    counts: pd.DataFrame,
    specs: Mapping[str, Mapping[str, Any]],
    training: Mapping[str, Any],  # a TrainingParams, or its plain mapping
    *,
    seed: int,
    deterministic: bool,
    runtime: Runtime,
    sizes: tuple[tuple[int, int], tuple[int, int]],
    distributed: ddp.DistributedSettings | None = None,
    checkpoints: str | Path | None = None,
    progress: bool = True,
    background: str = "class",
) -> dict[str, dict[str, Any]]:
    """Every member of ``specs`` trained (:func:`train_member`), keyed by name.

    ``source`` (``img_path, gt_path``) and ``target`` (``img_path``) are index tables read
    item by item at ``sizes``; ``counts`` the source images' class pixels in ``source``'s
    order. ``distributed``: the processes of each member's training (or the members side by
    side, ``strategy: jobs``). ``checkpoints``: the root of each member's checkpoint folder
    (``<digest of what shapes it>/<member>``), continued with ``resume_from: latest``.
    ``background``: ``uda.data.background`` (``class``: label 255 trained as class 12).
    ``specs`` (``uda.models``) and ``training`` (``uda.training``): the typed blocks, or
    plain mappings validated as they are.
    """
    distributed = distributed or ddp.DistributedSettings()
    if list(counts["id"]) != list(source["id"]):
        raise ValueError("the class pixel counts must list the source images in table order")
    t, specs = TrainingParams.of(training), ModelsParams.of(specs)
    ddp.local_batch_size(t.batch_size, distributed.world_size, parameter=f"{P}.batch_size")
    resumed = resume.check_resume_from(f"{P}.resume_from", t.resume_from, checkpoints)
    for name, spec in specs.items():
        check_lr_multipliers(spec, t.optimizer, f"uda.models.{name}")
    weights = source_weights(counts, t.rare_class_sampling)
    shaping = {
        "training": t.shaping(),
        "sizes": sizes,
        "background": background,
        "seed": seed,
        "deterministic": deterministic,
        "runtime": resume.runtime_shaping(runtime, distributed.world_size),
        "data": resume.data_digest(source, target, counts),
    }
    jobs: list[tuple[MemberJob, Path | None]] = []
    for name, spec in specs.items():
        job = MemberJob(
            name, spec, source, target, weights, t, sizes, seed, deterministic, runtime, progress,
            background,
        )  # fmt: skip
        folder = None
        if checkpoints is not None:  # the member's seeds derive from its name
            member = {**shaping, "member": name, "model": spec.as_dict()}
            folder = resume.checkpoint_folder(checkpoints, member, resumed) / name
        jobs.append((job, folder))
    results = resume.run_jobs(train_member, jobs, settings=distributed)
    return dict(zip(specs, results, strict=True))
