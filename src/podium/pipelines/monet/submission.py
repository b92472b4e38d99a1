"""The competition's submission: every photo translated by the trained photo -> Monet
generator into the jpgs of images.zip, streamed one batch at a time
(:func:`translated_jpegs`), in dataset order (:func:`iter_translations`); and
:func:`translate`, all at once, for the few images of the report's grid. No kedro or
mlflow."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from podium.core.device import Runtime, autocast, to_channels_last
from podium.pipelines.monet.data import Tolerant, as_images, encode_jpeg, make_loader
from podium.pipelines.monet.model import build_generator
from podium.pipelines.monet.train import to_model_range, to_uint8


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
