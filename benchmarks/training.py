"""Training, per pipeline: the real step end to end against the same model's bare step.

Issue 18, part 1. For each pipeline one training run goes through podium's own training
function (deepfake ``train_frame_models``, mask ``train_fold``, uda ``train_members``,
monet ``train_cyclegan``): its dataset read item by item, its DataLoader and workers, its
augmentations, its precision and channels_last, its loss or recipe step, its optimizer,
clipping, EMA and schedule. Only the engine's entry point is wrapped, as the tests do,
without changing podium: ``core.training.fit`` as the pipeline module sees it (monet: the
CycleGAN epoch loop and its loader). Inside one run, one after the other:

- **real**: the pipeline's epoch; the train loader is wrapped so that the time blocked in
  ``next()`` (waiting for a batch: loading, decoding, augmenting, collating in the main
  process or a worker not yet done) is told apart from the time spent on the step;
- **resident**: the same ``fit`` (monet: the same loop body) again on the epoch's first
  batch, kept in memory on the device and replayed: the step with its real loss, recipe,
  clipping and EMA, without any data loading or host-to-device copy;
- **bare**: the same model object and optimizer, ``forward + backward + optimizer.step``
  on a random tensor of the real input's shape, dtype and memory format under the same
  autocast (monet: ``CycleGAN.step``, the four networks' own update, on random images).

The first ``--warmup`` batches of each are not timed (worker start-up, cuDNN autotuning,
allocator warm-up); each window is synchronised with the GPU at both ends. Every
(pipeline, num_workers) setting is measured ``--repeats`` times, the settings interleaved,
and the medians kept; the ratios are taken inside each run (real and bare seconds apart)
and then their median.

Columns: ``ratio`` = real / bare (the headline; issue 18's goal is 0.9 on a GPU),
``loader`` = real / resident (what data loading and copies cost), ``step`` = resident / bare
(what the recipe adds beyond one forward and backward: the loss, extra passes, EMA,
clipping). ``wait`` = the share of the real window spent blocked on the loader. ``limited
by`` names the larger of the two losses.

Inputs: deepfake and mask read synthetic face records and crops written in the
pipelines' own formats (what extraction and cropping produce) at the configured sizes;
uda and monet read the embedded sample in ``data/01_raw`` (written if absent). The
configured model and settings are used (``--env`` chooses the configuration, ``--params``
overrides leaves), shortened to one epoch of ``--warmup + --batches`` batches, pretrained
weights off (speed does not depend on them), uda's pseudo-labels on from the first
iteration (the recipe of most of its iterations).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from podium.core.config import soft_merged

#: Every case, in the order they run.
PIPELINES = ("deepfake", "mask", "uda", "monet")
#: Below this ratio a setting is called "limited by" its larger loss.
GOAL = 0.9


# ---------------------------------------------------------------------------- arguments


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0 like 0,1,2, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training suite")
    group.add_argument("--pipelines", default=",".join(PIPELINES), help="e.g. mask,uda")
    group.add_argument(
        "--workers",
        type=_ints,
        default=None,
        help="DataLoader num_workers to sweep (default: 0,1,2 on up to 2 cores, else 0,2,4,8)",
    )
    group.add_argument(
        "--batches",
        type=int,
        default=None,
        help="timed batches per run (CPU: deepfake 3, mask 6, uda and monet 8; CUDA: 40)",
    )
    group.add_argument("--warmup", type=int, default=None, help="untimed batches (cpu 1, cuda 8)")
    group.add_argument("--precision", default=None, help="override runtime.precision")
    group.add_argument(
        "--params",
        type=json.loads,
        default=None,
        help='JSON merged into the parameters, e.g. \'{"mask": {"train": {"batch_size": 8}}}\'',
    )


@dataclass(frozen=True)
class Plan:
    warmup: int
    batches: int

    @property
    def total(self) -> int:
        return self.warmup + self.batches


# ---------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Window:
    """One timed stretch of batches."""

    batches: int
    images: int
    seconds: float
    wait: float = 0.0  # of which blocked in the loader's next()
    start: float = 0.0  # iterator creation and first batch (workers starting): untimed
    cpu: float = math.nan  # this process's CPU seconds over the wall seconds: on a CPU run
    # with one torch thread, below 1 where other work took the core (a disturbed window)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        return _first_tensor(batch["image"] if "image" in batch else next(iter(batch.values())))
    if isinstance(batch, list | tuple):
        return _first_tensor(batch[0])
    raise TypeError(f"no tensor in a batch of type {type(batch).__name__}")


def _images(batch: Any) -> int:
    """Samples in a batch: its input's leading size (uda: pairs; monet: photo-Monet pairs)."""
    return int(_first_tensor(batch).shape[0])


def _detached_copy(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.detach().clone()
    if isinstance(batch, Mapping):
        return {k: _detached_copy(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_detached_copy(v) for v in batch)
    return batch


class TimedLoader:
    """A loader as the training sees it (length, sampler, generator, dataset forwarded),
    timing each epoch: the time blocked in ``next()`` and the time between batches (the
    step), from batch ``warmup`` on; the first batch it gives is kept (a copy)."""

    def __init__(self, loader: Any, device: torch.device, warmup: int) -> None:
        self.__dict__.update(_loader=loader, _device=device, _warmup=warmup)
        self.__dict__.update(first=None, windows=[])

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_loader"], name)

    def __iter__(self) -> Iterator[Any]:
        try:
            expected = len(self._loader)
        except TypeError:
            expected = None
        started = time.perf_counter()
        iterator = iter(self._loader)
        count, images, wait, begin, end, start = 0, 0, 0.0, None, None, 0.0
        cpu_begin = cpu_end = 0.0
        while True:
            if count == self._warmup:
                _sync(self._device)
                begin, cpu_begin = time.perf_counter(), time.process_time()
            if expected is not None and count == expected and begin is not None:
                _sync(self._device)  # the last step done: stop before the workers shut down
                end, cpu_end = time.perf_counter(), time.process_time()
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            got = time.perf_counter()
            if count == 0:
                start = got - started
            if begin is not None:
                wait += got - asked
                images += _images(batch)
            if self.first is None:
                self.__dict__["first"] = _detached_copy(batch)
            count += 1
            yield batch
        if begin is None:
            raise ValueError(
                f"the loader gave {count} batches, not more than the {self._warmup} warm-up "
                "ones: raise the input size or lower --warmup"
            )
        if end is None:
            _sync(self._device)
            end, cpu_end = time.perf_counter(), time.process_time()
        seconds = end - begin
        cpu = (cpu_end - cpu_begin) / seconds if seconds > 0 else math.nan
        self.windows.append(Window(count - self._warmup, images, seconds, wait, start, cpu))


class Replay:
    """One batch ``times`` times: a loader without loading."""

    def __init__(self, batch: Any, times: int) -> None:
        self.batch, self.times = batch, times

    def __len__(self) -> int:
        return self.times

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.times):
            yield self.batch


def timed_steps(step: Callable[[], Any], plan: Plan, device: torch.device, images: int) -> Window:
    """``step()`` run ``plan.total`` times, the last ``plan.batches`` of them timed."""
    for _ in range(plan.warmup):
        step()
    _sync(device)
    begin, cpu_begin = time.perf_counter(), time.process_time()
    for _ in range(plan.batches):
        step()
    _sync(device)
    seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    return Window(plan.batches, plan.batches * images, seconds, cpu=cpu / seconds)


def _scalar(outputs: Any) -> torch.Tensor:
    """A loss that touches every output: the sum of their means."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float().mean()
    if isinstance(outputs, Mapping):
        return sum(_scalar(v) for v in outputs.values())
    return sum(_scalar(v) for v in outputs)


def random_like(example: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A random tensor of ``example``'s shape, dtype and memory format on ``device``."""
    if example.dtype == torch.uint8:
        x = torch.randint(0, 256, example.shape, dtype=torch.uint8, device=device)
    else:
        x = torch.randn(example.shape, device=device).to(example.dtype)
    if example.dim() == 4 and example.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def bare_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    example: torch.Tensor,
    amp: Any,
    channels_last: bool,
    device: torch.device,
) -> Callable[[], None]:
    """The model's bare training step on a random input like ``example``."""
    from podium.core.device import autocast, make_grad_scaler, to_channels_last

    x = random_like(example, device)
    if channels_last:
        x = to_channels_last(x, device)
    scaler = make_grad_scaler(amp)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(amp):
            loss = _scalar(model(x))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


@dataclass
class Sample:
    """One training run's measurements: the real epoch and, in the run that measures the
    references, the resident and bare steps right after it."""

    real: Window
    resident: Window | None
    bare: Window | None
    input_shape: tuple[int, ...]
    input_dtype: str
    precision: str
    channels_last: bool


class Probe:
    """Collects the samples of the wrapped training runs."""

    def __init__(self, plan: Plan, reference: bool = True) -> None:
        self.plan = plan
        self.reference = reference  # measure the resident and bare steps too
        self.samples: list[Sample] = []


@contextlib.contextmanager
def patched(module: Any, name: str, replacement: Any) -> Iterator[Any]:
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield original
    finally:
        setattr(module, name, original)


def measuring_fit(real_fit: Callable[..., Any], probe: Probe) -> Callable[..., Any]:
    """``core.training.fit`` as the pipeline calls it, measured: its real epoch, then the
    same fit on the first batch replayed from the device, then the model's bare step."""
    plan = probe.plan

    def fit(model: torch.nn.Module, train_loader: Any, **kwargs: Any) -> Any:
        from podium.core.device import amp_settings
        from podium.core.training import move_to_device, split_batch

        device = torch.device(kwargs["device"])
        amp = kwargs.get("amp") or amp_settings(device, "fp32")
        timed = TimedLoader(train_loader, device, plan.warmup)
        history = real_fit(model, timed, **kwargs)
        first = timed.first
        if kwargs.get("step_fn") is None:
            example = split_batch(first, kwargs.get("input_key", "image"))[0]
        else:
            example = _first_tensor(first)
        if not isinstance(example, torch.Tensor):
            example = _first_tensor(example)
        channels_last = bool(kwargs.get("channels_last"))
        resident = bare = None
        if probe.reference:
            # the batches before the window run untimed inside fit: Replay's warm-up
            replay = Replay(move_to_device(first, device), plan.total)
            replayed = TimedLoader(replay, device, plan.warmup)
            quiet = {"val_fn": None, "on_epoch_end": None, "checkpoint_path": None}
            real_fit(model, replayed, **{**kwargs, **quiet, "epochs": 1, "progress": False})
            resident = replayed.windows[-1]
            step = bare_step(model, kwargs["optimizer"], example, amp, channels_last, device)
            bare = timed_steps(step, plan, device, int(example.shape[0]))
        probe.samples.append(
            Sample(
                timed.windows[-1],
                resident,
                bare,
                tuple(example.shape),
                str(example.dtype).removeprefix("torch."),
                amp.name,
                channels_last and device.type == "cuda",
            )
        )
        return history

    return fit


# ---------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One pipeline: inputs built once, then one measured training run per call."""

    name: str
    model: Callable[[dict], str]  # parameters -> the model's name, for the table
    batch_size: Callable[[dict], int]
    prepare: Callable[[dict, Plan, Path, Any], Any]  # parameters, plan, scratch, context
    train: Callable[[Any, dict, Probe], None]  # inputs, runtime block, probe
    step: str  # what the real step adds beyond one forward and backward
    cpu_batches: int = 6  # timed batches on CPU by default (--batches overrides)


def _runtime(parameters: dict, device: str, workers: int, precision: str | None) -> dict:
    runtime = dict(parameters.get("runtime") or {})
    runtime |= {"device": device, "num_workers": workers}
    if precision is not None:
        runtime["precision"] = precision
    runtime["distributed"] = {**(runtime.get("distributed") or {}), "nproc_per_node": 1}
    runtime["distributed"] |= {"nnodes": 1, "strategy": "ddp"}
    return runtime


# deepfake ------------------------------------------------------------------------------


def _deepfake_settings(parameters: dict) -> dict:
    settings = dict(parameters["deepfake"]["training"])
    return settings | {
        "models": list(settings["models"])[:1],
        "epochs": 1,
        "folds_to_train": [0],
        "progress": False,
        "pretrained": False,
        "resume_from": None,
    }


def _deepfake_prepare(parameters: dict, plan: Plan, scratch: Path, context: Any) -> dict:
    """Face records in extraction's format (joblib, compressed as the catalog saves them):
    ``n_frames`` crops of ``crop_size`` per video, manipulation masks on the fakes; two small
    videos held out as fold 0 (validated once per run, untimed), the rest fold 1."""
    import joblib

    extraction = parameters["deepfake"]["extraction"]
    settings = _deepfake_settings(parameters)
    size, per_video = int(extraction["crop_size"]), int(extraction["n_frames"])
    need = plan.total * int(settings["batch_size"])
    n_train = math.ceil(need / per_video)
    rng = np.random.default_rng(0)
    folder = scratch / "deepfake" / "faces"
    folder.mkdir(parents=True)
    loaders, rows, videos = {}, [], []
    for v in range(n_train + 2):
        fake, name = v % 2 == 1, f"bench_part/video{v:04d}"
        crops = rng.integers(0, 256, (per_video, size, size, 3), dtype=np.uint8)
        masks = np.zeros((per_video, size, size), np.uint8)
        if fake:
            top, left = rng.integers(0, size // 2, size=2)
            masks[:, top : top + size // 3, left : left + size // 3] = 1
        record = {
            "video": f"video{v:04d}.mp4",
            "label": "FAKE" if fake else "REAL",
            "frame_indices": np.arange(per_video, dtype=np.int64) * 30,
            "crops": crops,
            "boxes": np.tile(np.float32([0, 0, size, size]), (per_video, 1)),
            "confidences": np.ones(per_video, np.float32),
            "masks": masks if fake else None,
        }
        path = folder / f"video{v:04d}.joblib"
        joblib.dump(record, path, compress=3)
        loaders[name] = functools.partial(joblib.load, str(path))
        rows += [{"partition": name, "crop": j} for j in range(per_video)]
        fold = 0 if v >= n_train else 1
        videos.append({"partition": name, "label": record["label"], "fold": fold})
    index = pd.DataFrame(rows)
    # exactly `need` training crops: the last training video keeps fewer (as short ones do)
    held_out = index["partition"].isin([v["partition"] for v in videos if v["fold"] == 0])
    keep = held_out | (np.cumsum(~held_out) <= need)
    return {
        "loaders": loaders,
        "index": index[keep].reset_index(drop=True),
        "videos": pd.DataFrame(videos),
        "settings": settings,
        "seed": int(parameters["deepfake"].get("seed", 0)),
        "deterministic": bool(parameters["deepfake"].get("deterministic", False)),
    }


def _deepfake_train(inputs: dict, runtime: dict, probe: Probe) -> None:
    from podium.pipelines.deepfake import train as training

    with patched(training, "fit", None) as real_fit:
        training.fit = measuring_fit(real_fit, probe)
        training.train_frame_models(
            inputs["loaders"],
            inputs["index"],
            inputs["videos"],
            inputs["settings"],
            runtime,
            inputs["seed"],
            deterministic=inputs["deterministic"],
        )


def _deepfake_model(parameters: dict) -> str:
    spec = _deepfake_settings(parameters)["models"][0]
    size = parameters["deepfake"]["training"]["image_size"]
    return f"{spec.get('architecture', '')} {spec['backbone']} @{size}"


# mask ----------------------------------------------------------------------------------


def _mask_prepare(parameters: dict, plan: Plan, scratch: Path, context: Any) -> dict:
    """Crops in the crop store's format (one npz entry per photo at ``mask.crop.output``,
    read per item by ``CropFiles``), labels drawn for 7 photos a person; the training
    frame resampled as the pipeline does (old-age copies, the only augmented rows)."""
    from podium.pipelines.mask.data import (
        CropFiles,
        crop_settings,
        entry_name,
        oversample_minority,
        write_entry,
    )
    from podium.pipelines.mask.train import OLD_AGE_CLASS

    m = parameters["mask"]
    crop = crop_settings(m["crop"])
    height, width = crop.output
    need = plan.total * int(m["train"]["batch_size"])
    rng = np.random.default_rng(0)
    n = need
    person = np.arange(n) // 7
    table = pd.DataFrame(
        {
            "row": np.arange(n),
            "person": person,
            "fold": 1,
            "mask": np.tile([0, 0, 0, 0, 0, 1, 2], math.ceil(n / 7))[:n],
            "gender": (person % 2),
            "age_class": rng.choice(3, size=n, p=[0.45, 0.4, 0.15])[person],
        }
    )
    table["class"] = table["mask"] * 6 + table["gender"] * 3 + table["age_class"]
    store = scratch / "mask" / "crops"
    entries = {}
    for row in range(n):
        name = entry_name(f"person{person[row]:05d}/photo{row % 7}.jpg", f"{row:016x}", crop.digest)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        write_entry(store / name, pixels, "cropped", "")
        entries[row] = name
    factor = m["resampling"]["factor"] if m["resampling"]["enabled"] else 1
    frame = oversample_minority(table, "age_class", OLD_AGE_CLASS, factor)
    frame = frame.sample(n=need, random_state=0).reset_index(drop=True)
    return {"crops": CropFiles(store, entries, crop.output), "frame": frame, "mask": m}


def _mask_train(inputs: dict, runtime: dict, probe: Probe) -> None:
    from podium.core.device import resolve_runtime
    from podium.pipelines.mask import train

    m = inputs["mask"]
    model = {**m["model"], "pretrained": False}
    values = {
        "crops": inputs["crops"],
        "frame": inputs["frame"],
        "model": model,
        "backbone": model["backbones"][0],
        "index": 0,
        "fold": 0,
        "loss": m["loss"],
        "optimizer": m["optimizer"],
        "scheduler": m["scheduler"],
        "epochs": 1,
        "batch_size": int(m["train"]["batch_size"]),
        "grad_clip": m["train"].get("grad_clip"),
        "accumulate": int(m["train"].get("accumulate", 1)),
        "augment": m["augment"],
        "preprocess": m["preprocess"],
        "seed": int(m.get("seed", 0)),
        "deterministic": bool(m.get("deterministic", False)),
        "runtime": resolve_runtime(runtime),
    }
    known = {f.name for f in dataclasses.fields(train.FoldJob)}
    job = train.FoldJob(**{k: v for k, v in values.items() if k in known})
    with patched(train, "fit", None) as real_fit:
        train.fit = measuring_fit(real_fit, probe)
        train.train_fold(job)


def _mask_model(parameters: dict) -> str:
    m = parameters["mask"]
    out = m["crop"]["output"]
    return f"{m['model']['variant']} {m['model']['backbones'][0]} @{out['height']}x{out['width']}"


# uda -----------------------------------------------------------------------------------


def _uda_training(parameters: dict, plan: Plan) -> dict:
    training = parameters["uda"]["training"]
    return soft_merged(
        training,
        {
            "iterations": plan.total,
            "iterations_per_epoch": plan.total,
            "resume_from": None,
            "pseudo_label": {"start_iteration": 0},
            "scheduler": {"warmup_epochs": 0},
        },
    )


def _uda_prepare(parameters: dict, plan: Plan, scratch: Path, context: Any) -> dict:
    """The embedded sample's training splits, indexed and inspected by the pipeline's own
    functions (image sizes, class pixels for rare-class sampling)."""
    from podium.pipelines.uda import data as uda_data
    from podium.pipelines.uda import nodes

    u = parameters["uda"]
    index, _ = nodes.index_data(context.raw("uda"))
    index = index[index["split"].isin(["train_source", "train_target"])]
    sizes = (nodes._size(u["data"], "source_size"), nodes._size(u["data"], "target_size"))
    images, counts, _ = uda_data.inspect_images(
        index, {"train_source": sizes[0], "train_target": sizes[1]}, None, progress=False
    )
    source = images[images["split"] == "train_source"].reset_index(drop=True)
    target = images[images["split"] == "train_target"].reset_index(drop=True)
    counts = counts[counts["split"] == "train_source"].drop(columns="split")
    name, spec = next(iter(nodes._check_models(u["models"]).items()))
    return {
        "source": source,
        "target": target,
        "counts": counts.set_index("id").loc[source["id"]].reset_index(),
        "specs": {name: {**spec, "pretrained": False}},
        "training": _uda_training(parameters, plan),
        "sizes": sizes,
        "seed": int(u.get("seed", 0)),
        "deterministic": bool(u.get("deterministic", False)),
    }


def _uda_train(inputs: dict, runtime: dict, probe: Probe) -> None:
    from podium.core.device import resolve_runtime
    from podium.pipelines.uda import train

    with patched(train, "fit", None) as real_fit:
        train.fit = measuring_fit(real_fit, probe)
        train.train_members(
            inputs["source"],
            inputs["target"],
            inputs["counts"],
            inputs["specs"],
            inputs["training"],
            seed=inputs["seed"],
            deterministic=inputs["deterministic"],
            runtime=resolve_runtime(runtime),
            sizes=inputs["sizes"],
            progress=False,
        )


def _uda_model(parameters: dict) -> str:
    u = parameters["uda"]
    spec = next(iter(u["models"].values()))
    crop = u["training"]["crop_size"]
    return f"{spec['decoder']} {spec['encoder']} @{crop[0]}x{crop[1]}"


def _uda_step(parameters: dict) -> str:
    """What uda's step trains on, in batches of the bare step: the student's passes
    (forward and backward) and the teacher's (forward only, about a third of one)."""
    t = parameters["uda"]["training"]
    views = 2 if t["dual_branch"]["enabled"] else 1  # plain + distorted view in one batch
    student, parts = views, [f"source x{views}"]
    teacher = 0
    if t["regime"] == "self_training":
        student += views + bool(t["mic"]["enabled"])
        parts += [f"mixed target x{views}"] + (["MIC target"] if t["mic"]["enabled"] else [])
        teacher = 1
    own = 1 / (student + teacher / 3)
    return (
        f"the recipe: {student} student batches a step ({', '.join(parts)})"
        + (f" + {teacher} teacher batch, EMA" if teacher else "")
        + f"; its own ceiling is about {own:.2f} of the bare step"
    )


# monet ---------------------------------------------------------------------------------


def _monet_prepare(parameters: dict, plan: Plan, scratch: Path, context: Any) -> dict:
    """The embedded sample's jpgs (decoded per item by ``JpegImages``), as many as one
    epoch of ``plan.total`` batches needs (cycled where the sample has fewer)."""
    from podium.layouts.monet import index_monet

    m = parameters["monet"]
    index = index_monet(context.raw("monet"))
    n = plan.total * int(m["train"]["batch_size"])

    def paths(domain: str) -> list[str]:
        found = index.loc[index["domain"] == domain, "path"].tolist()
        return [found[i % len(found)] for i in range(n)]

    train = m["train"] | {
        "n_epochs": 1,
        "n_epochs_decay": 0,
        "epochs_this_run": None,
        "resume_from": None,
        "epoch_size": "max",
    }
    return {
        "photos": paths("photo"),
        "monets": paths("monet"),
        "monet": m | {"train": train},
        "checkpoints": scratch / "monet",
    }


def _monet_train(inputs: dict, runtime: dict, probe: Probe) -> None:
    from podium.core.device import resolve_runtime, to_channels_last
    from podium.pipelines.monet import train as cyclegan
    from podium.pipelines.monet.data import JpegImages

    m, plan = inputs["monet"], probe.plan
    real_epoch, real_make_loader = cyclegan._train_epoch, cyclegan.make_loader

    def measured_epoch(gan, domains, epoch, data, train, loader_seed, progress):
        made: list[TimedLoader] = []
        device = gan.runtime.device

        def make_loader(*args: Any, **kwargs: Any) -> TimedLoader:
            made.append(TimedLoader(real_make_loader(*args, **kwargs), device, plan.warmup))
            return made[-1]

        with patched(cyclegan, "make_loader", make_loader):
            row = real_epoch(gan, domains, epoch, data, train, loader_seed, progress)
        (timed,) = made
        loaded_a, loaded_b = timed.first
        size, crop = int(loaded_a.shape[0]), int(data["crop_size"])
        shape = (size, 3, crop, crop)
        resident = bare = None
        if probe.reference:

            def loop_body() -> None:  # _train_epoch's, on the first loaded batch
                gan.step(gan.prepare(loaded_a, data), gan.prepare(loaded_b, data))

            resident = timed_steps(loop_body, plan, device, size)
            real_a, real_b = (torch.rand(shape, device=device) * 2 - 1 for _ in "ab")
            if gan.runtime.channels_last:
                real_a, real_b = (to_channels_last(x, device) for x in (real_a, real_b))
            bare = timed_steps(lambda: gan.step(real_a, real_b), plan, device, size)
        probe.samples.append(
            Sample(
                timed.windows[-1],
                resident,
                bare,
                shape,
                f"{loaded_a.dtype}".removeprefix("torch.") + " (loaded)",
                gan.runtime.amp.name,
                gan.runtime.channels_last,
            )
        )
        return row

    checkpoint = inputs["checkpoints"] / f"run{len(probe.samples)}" / "checkpoint.pt"
    with patched(cyclegan, "_train_epoch", measured_epoch):
        cyclegan.train_cyclegan(
            JpegImages(inputs["photos"], m["data"]["load_size"]),
            JpegImages(inputs["monets"], m["data"]["load_size"]),
            data=m["data"],
            model=m["model"],
            loss=m["loss"],
            optimizer=m["optimizer"],
            train=m["train"],
            seed=int(m.get("seed", 0)),
            runtime=resolve_runtime(runtime),
            checkpoint=checkpoint,
            deterministic=bool(m.get("deterministic", False)),
            progress=False,
        )
    checkpoint.unlink(missing_ok=True)  # a later run must start afresh, not resume


def _monet_model(parameters: dict) -> str:
    model, crop = parameters["monet"]["model"], parameters["monet"]["data"]["crop_size"]
    return f"CycleGAN {model['generator']} ngf{model['ngf']} @{crop}"


CASES: dict[str, Case] = {
    "deepfake": Case(
        "deepfake",
        _deepfake_model,
        lambda p: int(p["deepfake"]["training"]["batch_size"]),
        _deepfake_prepare,
        _deepfake_train,
        "multi-task loss (BCE + Dice on the mask head), gradient clipping if set",
        3,
    ),
    "mask": Case(
        "mask",
        _mask_model,
        lambda p: int(p["mask"]["train"]["batch_size"]),
        _mask_prepare,
        _mask_train,
        "focal loss per head, gradient clipping",
        6,
    ),
    "uda": Case(
        "uda",
        _uda_model,
        lambda p: int(p["uda"]["training"]["batch_size"]),
        _uda_prepare,
        _uda_train,
        "",  # from the parameters: _uda_step
        8,
    ),
    "monet": Case(
        "monet",
        _monet_model,
        lambda p: int(p["monet"]["train"]["batch_size"]),
        _monet_prepare,
        _monet_train,
        "the jitter (crop, flip) of each loaded batch and its copy to the device",
        8,
    ),
}


# ---------------------------------------------------------------------------- running


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def limited_by(ratio: float, loader: float, step: float, wait: float, case: Case) -> str:
    """What keeps ``ratio`` below the goal: the larger of the loader's and the step's loss."""
    if not math.isfinite(ratio):
        return "not measured"
    if ratio >= GOAL:
        return f"nothing: within {1 - GOAL:.0%} of the bare step"
    if max(1 - loader, 1 - step) < 0.5 * (1 - ratio):  # the parts do not add up: noise
        return (
            f"unclear: neither the loader ({loader:.2f}) nor the step ({step:.2f}) accounts "
            "for it; a disturbed run? (more --repeats)"
        )
    if (1 - loader) >= (1 - step):
        return (
            f"loader: {1 - loader:.0%} slower than the resident step "
            f"({wait:.0%} of the time blocked on the next batch)"
        )
    return f"step: {1 - step:.0%} of the time on {case.step}"


def summarise(case: Case, workers: int, samples: Sequence[Sample], extra: dict) -> dict:
    """One table row: the medians over the repeats of one (pipeline, num_workers)."""
    ratios = [s.real.images_per_second / s.bare.images_per_second for s in samples]
    ratio = _median(ratios)
    loader = _median([s.real.images_per_second / s.resident.images_per_second for s in samples])
    step = _median([s.resident.images_per_second / s.bare.images_per_second for s in samples])
    wait = _median([s.real.wait / s.real.seconds for s in samples])
    first = samples[0]
    return {
        "case": case.name,
        "num_workers": workers,
        **extra,
        "input": "x".join(str(d) for d in first.input_shape),
        "input_dtype": first.input_dtype,
        "precision": first.precision,
        "channels_last": first.channels_last,
        "repeats": len(samples),
        "timed_batches": first.real.batches,
        "images_per_second": _median([s.real.images_per_second for s in samples]),
        "resident_images_per_second": _median([s.resident.images_per_second for s in samples]),
        "bare_images_per_second": _median([s.bare.images_per_second for s in samples]),
        "ratio_to_bare": ratio,
        "ratio_to_bare_min": min(ratios),
        "ratio_to_bare_max": max(ratios),
        "ratio_to_resident": loader,
        "resident_to_bare": step,
        "loader_wait_share": wait,
        "first_batch_seconds": _median([s.real.start for s in samples]),
        "real_cpu_share": _median([s.real.cpu for s in samples]),
        "bare_cpu_share": _median([s.bare.cpu for s in samples]),
        "limited_by": limited_by(ratio, loader, step, wait, case),
        "samples": [asdict(s) for s in samples],
    }


def _default_workers() -> list[int]:
    return [0, 1, 2] if (os.cpu_count() or 1) <= 2 else [0, 2, 4, 8]


def _plan(args: argparse.Namespace, case: Case, cuda: bool) -> Plan:
    plan = Plan(
        warmup=args.warmup if args.warmup is not None else (8 if cuda else 1),
        batches=args.batches if args.batches is not None else (40 if cuda else case.cpu_batches),
    )
    if plan.batches < 1 or plan.warmup < 0:
        raise SystemExit("--batches must be at least 1 and --warmup at least 0")
    return plan


def _progress(name: str, repeat: int, repeats: int, workers: int, sample: Sample) -> None:
    line = f"    {name} repeat {repeat + 1}/{repeats} workers {workers}: real "
    line += f"{sample.real.images_per_second:7.1f} img/s (waiting "
    line += f"{sample.real.wait / sample.real.seconds:.0%})"
    if sample.bare is not None:
        line += f", resident {sample.resident.images_per_second:7.1f}, bare "
        line += f"{sample.bare.images_per_second:7.1f}"
    print(line, flush=True)


def measure(case: Case, inputs: Any, plan: Plan, workers: Sequence[int], repeats: int, runtime):
    """``repeats`` rounds over the worker settings; in each round the middle setting's run
    also measures the resident and bare steps, which the round's other runs share (the
    middle: the nearest in time to all of them)."""
    samples: dict[int, list[Sample]] = {w: [] for w in workers}
    for repeat in range(repeats):
        rounds = []
        for i, w in enumerate(workers):  # interleaved: each setting sees the same moods
            probe = Probe(plan, reference=i == len(workers) // 2)
            case.train(inputs, runtime(w), probe)
            if not probe.samples:
                raise RuntimeError(f"{case.name}: the training ran no measured epoch")
            rounds.append((w, probe.samples[-1]))
            _progress(case.name, repeat, repeats, w, probe.samples[-1])
        reference = rounds[len(workers) // 2][1]
        for w, sample in rounds:
            samples[w].append(
                dataclasses.replace(sample, resident=reference.resident, bare=reference.bare)
            )
    return samples


def run(args: argparse.Namespace, context: Any) -> list[dict]:
    chosen = [p for p in args.pipelines.split(",") if p]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown pipeline(s) {unknown}; choose from {list(CASES)}")
    parameters = soft_merged(context.parameters, copy.deepcopy(args.params or {}))
    threads = (parameters.get("runtime") or {}).get("torch_threads")
    with _torch_state():
        if threads:  # as the project's hook does before every run
            torch.set_num_threads(int(threads))
        return [row for name in chosen for row in _run_case(args, context, parameters, name)]


@contextlib.contextmanager
def _torch_state() -> Iterator[None]:
    """Threads and determinism flags as they were: the pipelines' seeding changes them."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _run_case(args: argparse.Namespace, context: Any, parameters: dict, name: str) -> list[dict]:
    """Every worker setting of one pipeline: its table rows."""
    workers = list(dict.fromkeys(args.workers or _default_workers()))
    case = CASES[name]
    if name == "uda":
        case = dataclasses.replace(case, step=_uda_step(parameters))
    plan = _plan(args, case, context.device.startswith("cuda"))
    print(f"==> training {name}: preparing inputs", flush=True)
    begun = time.perf_counter()
    inputs = case.prepare(parameters, plan, context.scratch, context)

    def runtime(w: int) -> dict:
        return _runtime(parameters, context.device, w, args.precision)

    samples = measure(case, inputs, plan, workers, args.repeats, runtime)
    extra = {
        "model": case.model(parameters),
        "batch_size": case.batch_size(parameters),
        "torch_threads": torch.get_num_threads(),
        "warmup_batches": plan.warmup,
        "case_seconds": round(time.perf_counter() - begun, 1),
    }
    return [summarise(case, w, samples[w], extra) for w in workers]


# ---------------------------------------------------------------------------- reporting


def _f(value: float, digits: int = 1) -> str:
    return "" if not math.isfinite(value) else f"{value:,.{digits}f}"


def markdown(rows: Sequence[dict]) -> str:
    lines = [
        "### Training: the real step end to end against the same model's bare step",
        "",
        "img/s: training images a second (uda: source-target pairs, monet: photo-Monet "
        "pairs). real: the pipeline's epoch (dataset, DataLoader with `workers`, "
        "augmentation, precision, loss, optimizer); resident: the same step on one batch "
        "replayed from the device (no loading); bare: forward + backward + optimizer step "
        "on random tensors of the same shape. ratio = real / bare (median over the repeats, "
        "their range in brackets), loader = real / resident, step = resident / bare, "
        "wait = share of the real time blocked on the loader.",
        "",
        "| pipeline | model | batch | precision | workers | real img/s | resident img/s "
        "| bare img/s | ratio | loader | step | wait | limited by |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = ""
        if r["repeats"] > 1 and "ratio_to_bare_min" in r:
            spread = f" ({_f(r['ratio_to_bare_min'], 2)}-{_f(r['ratio_to_bare_max'], 2)})"
        lines.append(
            f"| {r['case']} | {r['model']} | {r['batch_size']} | {r['precision']}"
            f"{' cl' if r['channels_last'] else ''} | {r['num_workers']} "
            f"| {_f(r['images_per_second'])} | {_f(r['resident_images_per_second'])} "
            f"| {_f(r['bare_images_per_second'])} | {_f(r['ratio_to_bare'], 2)}{spread} "
            f"| {_f(r['ratio_to_resident'], 2)} | {_f(r['resident_to_bare'], 2)} "
            f"| {_f(100 * r['loader_wait_share'], 0)}% | {r['limited_by']} |"
        )
    return "\n".join(lines)


METRICS = (
    "images_per_second",
    "resident_images_per_second",
    "bare_images_per_second",
    "ratio_to_bare",
    "ratio_to_resident",
    "resident_to_bare",
    "loader_wait_share",
)


def metrics(rows: Sequence[dict]) -> dict[str, float]:
    """``bench/train/<pipeline>/workers_<n>/<metric>`` for every row, and per pipeline the
    best setting's figures as ``bench/train/<pipeline>/<metric>`` (with
    ``best_num_workers``)."""
    out: dict[str, float] = {}
    for r in rows:
        for key in METRICS:
            if math.isfinite(r[key]):
                out[f"bench/train/{r['case']}/workers_{r['num_workers']}/{key}"] = float(r[key])
    for case in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == case]
        best = max(mine, key=lambda r: r["images_per_second"])
        for key in METRICS:
            if math.isfinite(best[key]):
                out[f"bench/train/{case}/{key}"] = float(best[key])
        out[f"bench/train/{case}/best_num_workers"] = float(best["num_workers"])
    return out
