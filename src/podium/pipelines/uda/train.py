"""Iteration-based training: ``source_only`` or ``self_training`` with an EMA teacher.

One iteration of ``self_training`` (after ``pseudo_label.start_iteration`` source-only
warm-up iterations, which give the teacher something to teach):

1. a source batch (rare-class sampled, optionally fisheye-warped) and a target batch
   (geometric augmentation only);
2. the EMA teacher labels the un-augmented target batch, each image weighted by its share
   of confident pixels;
3. ClassMix pastes half of each source image's classes onto a target image;
4. the student learns from the source batch, the mixed batch (colour jitter and blur) and,
   with MIC, the masked target batch; with the dual branch each of these is seen plain and
   affine+elastic distorted;
5. the teacher moves towards the student (EMA).

``source_only`` runs only the source part of step 4 (with its data choices: rare-class
sampling, simulated fisheye, the dual branch's distorted view) and keeps the same EMA,
so the two regimes differ only in what the target images contribute.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from podium.core.config import (
    ParameterError,
    check_choice,
    check_int,
    check_keys,
    check_range,
    check_size,
)
from podium.core.device import Runtime, autocast, make_grad_scaler, to_channels_last
from podium.core.seeding import dataloader_kwargs, make_generator
from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES
from podium.pipelines.uda import selftraining as st
from podium.pipelines.uda.data import SourceDataset, TargetDataset, rare_class_image_weights
from podium.pipelines.uda.network import build_network

REGIMES = ("source_only", "self_training")
P = "uda.training"

#: Keys of each switchable block and the numbers they need.
BLOCKS: dict[str, tuple[str, ...]] = {
    "optimizer": ("lr", "head_lr_mult", "weight_decay", "betas"),
    "scheduler": ("warmup_iterations", "power", "min_lr_ratio"),
    "source_fisheye": ("enabled", "p", "max_angle_deg"),
    "rare_class_sampling": ("enabled", "temperature", "min_pixels"),
    "pseudo_label": (
        "threshold",
        "start_iteration",
        "ignore_top",
        "ignore_bottom",
        "teacher_augment",
    ),
    "strong_augment": ("enabled", "jitter", "jitter_p", "blur_p", "blur_sigma"),
    "class_mix": ("enabled",),
    "mic": ("enabled", "patch_size", "mask_ratio", "loss_weight"),
    "dual_branch": (
        "enabled",
        "rotate_deg",
        "scale",
        "translate",
        "elastic_alpha",
        "elastic_sigma",
    ),
}
TOP_KEYS = (
    "regime",
    "iterations",
    "batch_size",
    "crop_size",
    "grad_clip",
    "ema_alpha",
    "log_every",
    "source_augment",
    "target_augment",
    *BLOCKS,
)


def check_training(training: Mapping[str, Any]) -> dict[str, Any]:
    """The ``uda.training`` block validated; errors name the parameter and the fix."""
    check_keys(P, training, TOP_KEYS, required=TOP_KEYS)
    for block, keys in BLOCKS.items():
        check_keys(f"{P}.{block}", training[block], keys, required=keys)
    t = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in training.items()}
    check_choice(f"{P}.regime", t["regime"], REGIMES)
    t["iterations"] = check_int(f"{P}.iterations", t["iterations"], low=1)
    t["batch_size"] = check_int(f"{P}.batch_size", t["batch_size"], low=1)
    t["crop_size"] = check_size(f"{P}.crop_size", t["crop_size"], minimum=8)
    t["log_every"] = check_int(f"{P}.log_every", t["log_every"], low=1)
    check_range(f"{P}.ema_alpha", t["ema_alpha"], low=0.0, high=1.0)
    if t["grad_clip"] is not None:
        check_range(f"{P}.grad_clip", t["grad_clip"], low=0.0)
    check_range(f"{P}.optimizer.lr", t["optimizer"]["lr"], low=0.0)
    check_range(f"{P}.scheduler.power", t["scheduler"]["power"], low=0.0)
    check_int(f"{P}.scheduler.warmup_iterations", t["scheduler"]["warmup_iterations"], low=0)
    check_range(f"{P}.source_fisheye.p", t["source_fisheye"]["p"], low=0.0, high=1.0)
    check_range(
        f"{P}.source_fisheye.max_angle_deg",
        t["source_fisheye"]["max_angle_deg"],
        low=1.0,
        high=89.0,
    )
    check_range(
        f"{P}.rare_class_sampling.temperature", t["rare_class_sampling"]["temperature"], low=1e-6
    )
    pl = t["pseudo_label"]
    check_range(f"{P}.pseudo_label.threshold", pl["threshold"], low=0.0, high=1.0)
    check_int(f"{P}.pseudo_label.start_iteration", pl["start_iteration"], low=0)
    for key in ("ignore_top", "ignore_bottom"):
        check_range(f"{P}.pseudo_label.{key}", pl[key], low=0.0, high=1.0)
    mic = t["mic"]
    check_int(f"{P}.mic.patch_size", mic["patch_size"], low=1)
    check_range(f"{P}.mic.mask_ratio", mic["mask_ratio"], low=0.0, high=1.0)
    check_range(f"{P}.mic.loss_weight", mic["loss_weight"], low=0.0)
    scale = t["dual_branch"]["scale"]
    if not (isinstance(scale, list | tuple) and len(scale) == 2 and 0 < scale[0] <= scale[1]):
        raise ParameterError(f"{P}.dual_branch.scale", f"expected [low, high] > 0, got {scale!r}")
    check_range(f"{P}.dual_branch.elastic_sigma", t["dual_branch"]["elastic_sigma"], low=1.0)
    return t


@dataclass
class TrainedNetwork:
    student: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor]
    history: list[dict[str, float]]


def _infinite_loaders(source, target, counts, t, seed, runtime):
    total = t["iterations"] * t["batch_size"]
    rcs = t["rare_class_sampling"]
    if rcs["enabled"]:
        weights = rare_class_image_weights(counts, rcs["temperature"], rcs["min_pixels"])
    else:
        weights = np.full(len(source), 1.0 / len(source))
    source_sampler = WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),
        total,
        replacement=True,
        generator=make_generator(seed),
    )
    target_sampler = RandomSampler(
        target, replacement=True, num_samples=total, generator=make_generator(seed + 1)
    )
    kwargs = dataloader_kwargs(seed, runtime.num_workers, pin_memory=runtime.pin_memory)
    return (
        DataLoader(source, batch_size=t["batch_size"], sampler=source_sampler, **kwargs),
        DataLoader(target, batch_size=t["batch_size"], sampler=target_sampler, **kwargs),
    )


def _learning_rate_factor(iteration: int, t: Mapping[str, Any]) -> float:
    """Linear warm-up, then polynomial decay to ``min_lr_ratio`` (DAFormer's schedule)."""
    s = t["scheduler"]
    if iteration < s["warmup_iterations"]:
        return (iteration + 1) / s["warmup_iterations"]
    progress = min(1.0, iteration / max(1, t["iterations"]))
    floor = float(s["min_lr_ratio"])
    return floor + (1 - floor) * (1 - progress) ** float(s["power"])


def _optimizer(net: nn.Module, o: Mapping[str, Any]) -> torch.optim.Optimizer:
    # A randomly initialised or pretrained encoder learns slower than the fresh decoder.
    groups = [
        {"params": list(net.encoder.parameters()), "lr": float(o["lr"])},
        {"params": list(net.decoder.parameters()), "lr": float(o["lr"]) * o["head_lr_mult"]},
    ]
    return torch.optim.AdamW(groups, weight_decay=float(o["weight_decay"]), betas=tuple(o["betas"]))


def _distorted_too(x, y, w, generator, db, t):
    """Plain and distorted views in one batch (the dual branch), or the plain view alone."""
    if not t["dual_branch"]["enabled"]:
        return x, y, w
    xd, yd, wd = st.distort(
        x,
        y,
        torch.ones_like(y, dtype=x.dtype) if w is None else w,
        generator,
        rotate_deg=db["rotate_deg"],
        scale=db["scale"],
        translate=db["translate"],
        elastic_alpha=db["elastic_alpha"],
        elastic_sigma=db["elastic_sigma"],
        ignore_index=IGNORE_INDEX,
    )
    w_plain = torch.ones_like(y, dtype=x.dtype) if w is None else w
    return torch.cat([x, xd]), torch.cat([y, yd]), torch.cat([w_plain, wd])


def _strong(x, generator, sa):
    return st.photometric(
        x,
        generator,
        jitter=sa["jitter"],
        jitter_p=sa["jitter_p"],
        blur_p=sa["blur_p"],
        blur_sigma=sa["blur_sigma"],
    )


def train_network(
    spec: Mapping[str, Any],
    parameter: str,
    source: pd.DataFrame,
    target: pd.DataFrame,
    counts: pd.DataFrame,
    training: Mapping[str, Any],
    seed: int,
    runtime: Runtime,
    sizes: tuple[Sequence[int], Sequence[int]],
    progress: bool = True,
) -> TrainedNetwork:
    """Train one network; return student and EMA-teacher weights and the logged curves.

    ``source`` (``img_path, gt_path``) and ``target`` (``img_path``) are index tables: the
    datasets decode each image in the DataLoader workers, resized to ``sizes`` (the source
    and the target working size, each (h, w)). ``counts`` holds the source images' class
    pixels in ``source``'s order.
    """
    if list(counts["id"]) != list(source["id"]):
        raise ValueError("the class pixel counts must list the source images in table order")
    t = check_training(training)
    device, amp = runtime.device, runtime.amp
    student = build_network(spec, NUM_CLASSES, parameter).to(device)
    if runtime.channels_last:
        to_channels_last(student, device)
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = _optimizer(student, t["optimizer"])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scaler = make_grad_scaler(amp)
    generator = make_generator(seed + 2)  # mixing, masking, jitter, distortion draws

    source_set = SourceDataset(
        source,
        sizes[0],
        t["crop_size"],
        t["source_augment"],
        t["source_fisheye"],
        f"{P}.source_augment",
    )
    target_set = TargetDataset(
        target, sizes[1], t["crop_size"], t["target_augment"], f"{P}.target_augment"
    )
    source_loader, target_loader = _infinite_loaders(
        source_set, target_set, counts, t, seed, runtime
    )
    pl, sa, db, mic = t["pseudo_label"], t["strong_augment"], t["dual_branch"], t["mic"]
    self_training = t["regime"] == "self_training"

    def prepared(v: torch.Tensor) -> torch.Tensor:
        return to_channels_last(v, device) if runtime.channels_last else v

    history: list[dict[str, float]] = []
    window: dict[str, list[float]] = {}
    started = time.perf_counter()
    bar = tqdm(
        zip(source_loader, target_loader, strict=True),
        total=t["iterations"],
        desc=f"uda {t['regime']}",
        disable=not progress,
        leave=False,
    )
    for iteration, ((xs, ys), xt) in enumerate(bar):
        factor = _learning_rate_factor(iteration, t)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        xs, ys, xt = xs.to(device), ys.to(device), xt.to(device)
        student.train()
        optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}

        x, y, w = _distorted_too(xs, ys, None, generator, db, t)
        with autocast(amp):
            loss = st.weighted_cross_entropy(student(prepared(x)), y, w, IGNORE_INDEX)
        logged["loss_source"] = float(loss.detach())

        if self_training and iteration >= pl["start_iteration"]:
            with torch.no_grad(), autocast(amp):
                teacher_in = _strong(xt, generator, sa) if pl["teacher_augment"] else xt
                labels, weights = st.pseudo_labels(
                    teacher(prepared(teacher_in)),
                    pl["threshold"],
                    pl["ignore_top"],
                    pl["ignore_bottom"],
                )
            logged["pseudo_weight"] = float(weights.mean())
            if t["class_mix"]["enabled"]:
                masks = st.class_mix_masks(ys, IGNORE_INDEX, generator)
                xm = st.mix(masks, xs, xt)
                ym = st.mix(masks, ys, labels)
                wm = st.mix(masks, torch.ones_like(weights), weights)
            else:
                xm, ym, wm = xt, labels, weights
            if sa["enabled"]:
                xm = _strong(xm, generator, sa)
            x, y, w = _distorted_too(xm, ym, wm, generator, db, t)
            with autocast(amp):
                target_loss = st.weighted_cross_entropy(student(prepared(x)), y, w, IGNORE_INDEX)
            logged["loss_target"] = float(target_loss.detach())
            loss = loss + target_loss
            if mic["enabled"]:
                xk = _strong(xt, generator, sa) if sa["enabled"] else xt
                xk = xk * st.mic_mask(
                    xk.shape, mic["patch_size"], mic["mask_ratio"], generator, device
                )
                with autocast(amp):
                    mic_loss = st.weighted_cross_entropy(
                        student(prepared(xk)), labels, weights, IGNORE_INDEX
                    )
                logged["loss_mic"] = float(mic_loss.detach())
                loss = loss + mic["loss_weight"] * mic_loss

        scaler.scale(loss).backward()
        if t["grad_clip"] is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(student.parameters(), t["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        st.ema_update(teacher, student, t["ema_alpha"], iteration)

        total = float(loss.detach())
        if not math.isfinite(total):
            raise FloatingPointError(
                f"uda training loss became {total} at iteration {iteration}: lower "
                f"{P}.optimizer.lr or set {P}.grad_clip"
            )
        logged["loss"] = total
        for key, value in logged.items():
            window.setdefault(key, []).append(value)
        if (iteration + 1) % t["log_every"] == 0 or iteration + 1 == t["iterations"]:
            row = {k: float(np.mean(v)) for k, v in window.items()}
            row.update(
                iteration=iteration + 1,
                lr=optimizer.param_groups[0]["lr"],
                iterations_per_second=(iteration + 1) / (time.perf_counter() - started),
            )
            history.append(row)
            window = {}
            bar.set_postfix(loss=f"{row['loss']:.3f}")
    bar.close()
    return TrainedNetwork(
        student={k: v.detach().cpu() for k, v in student.state_dict().items()},
        teacher={k: v.detach().cpu() for k, v in teacher.state_dict().items()},
        history=history,
    )
