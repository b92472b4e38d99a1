"""Crop-and-slide prediction with flip and multi-scale TTA, averaged over several models.

Each member network (one entry of ``uda.models``) predicts softmax probabilities by
sliding window over every test-time view; members are averaged with their ensemble
weights, the mean is resized to the image's original size and its argmax is the class map,
background (``uda.data.background``: the 13th output, or a top probability below
``uda.inference.background_threshold``) written as 255.
:func:`stream_class_maps` yields the class maps one image at a time, so a split of any
size is predicted with the memory of one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from podium.core.config import ParameterError
from podium.core.device import Runtime, autocast, eval_mode, to_channels_last
from podium.layouts.uda import NUM_CLASSES
from podium.pipelines.uda import background as bg
from podium.pipelines.uda.model import SegmentationNet, build_network
from podium.pipelines.uda.params import InferenceParams
from podium.pipelines.uda.segmentation import tta_probabilities


def inference_settings(inference: Mapping[str, Any], members: Sequence[str]) -> dict[str, Any]:
    """``uda.inference`` (a block or a plain mapping) as the predictors read it, the
    ensemble weight of each member of ``uda.models`` resolved."""
    block = InferenceParams.of(inference)
    return {**block, "ensemble": block.member_weights(list(members))}


def load_members(
    weights: Mapping[str, torch.Tensor],
    models: Mapping[str, Any],
    weight_set: str,
    background: str = "class",
) -> dict[str, SegmentationNet]:
    """Every member network with its ``ema`` or ``student`` weights, with the outputs
    ``background`` (``uda.data.background``) trains: 13 for ``class``, else 12."""
    out = {}
    for name, spec in models.items():
        prefix = f"{name}/{weight_set}/"
        state = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        if not state:
            raise ParameterError(
                "uda.models",
                f"the saved weights hold no {weight_set!r} weights for model {name!r} "
                f"(found: {sorted({k.split('/')[0] for k in weights})}); rerun training",
            )
        net = build_network(spec, bg.num_outputs(background), f"uda.models.{name}")
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise ParameterError(
                "uda.data.background",
                f"the saved weights of model {name!r} do not fit {bg.num_outputs(background)} "
                f"outputs (background: {background!r}); rerun training with this setting "
                f"({str(error).splitlines()[-1].strip()})",
            ) from error
        out[name] = net
    return out


def _prepare(members: Mapping[str, SegmentationNet], runtime: Runtime) -> None:
    for net in members.values():
        net.to(runtime.device)
        if runtime.channels_last:
            to_channels_last(net, runtime.device)


@torch.no_grad()
def batch_probabilities(
    members: Mapping[str, SegmentationNet],
    batch: torch.Tensor,
    inference: Mapping[str, Any],
    runtime: Runtime,
) -> torch.Tensor:
    """Ensemble-averaged TTA probabilities (N, C, h, w) of a (N, h, w, 3) uint8 batch (C:
    the members' outputs)."""
    device, amp = runtime.device, runtime.amp
    total_weight = sum(inference["ensemble"].values())

    def forward_with(net):
        def forward(x: torch.Tensor) -> torch.Tensor:
            x = to_channels_last(x, device) if runtime.channels_last else x
            with autocast(amp):
                return net(x).float()

        return forward

    x = batch.permute(0, 3, 1, 2).float().div_(255).to(device)
    num_outputs = _outputs(members)
    mean = None
    for name, net in members.items():
        with eval_mode(net):
            p = tta_probabilities(
                forward_with(net),
                x,
                window=inference["window"],
                stride=inference["stride"],
                num_classes=num_outputs,
                scales=inference["scales"],
                flip=bool(inference["flip"]),
            )
        p = p * (inference["ensemble"][name] / total_weight)
        mean = p if mean is None else mean + p
    return mean


def _outputs(members: Mapping[str, SegmentationNet]) -> int:
    found = {int(net.decoder.classifier.out_channels) for net in members.values()}
    if len(found) != 1:
        raise ParameterError("uda.models", f"the members predict different classes: {found}")
    return found.pop()


def class_map(
    probabilities: torch.Tensor, size: Sequence[int], background_threshold: float = 0.0
) -> np.ndarray:
    """The (H, W) uint8 class map of one image's (C, h, w) probabilities resized to
    ``size``: the argmax, background 255 (the 13th output when C is 13, else a top
    probability below ``background_threshold``)."""
    height, width = int(size[0]), int(size[1])
    p = probabilities[None]
    if p.shape[-2:] != (height, width):
        p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)
    mode = "class" if p.shape[1] == NUM_CLASSES + 1 else "ignore"
    return bg.class_map(p[0], mode, background_threshold).cpu().numpy()


def stream_class_maps(
    members: Mapping[str, SegmentationNet],
    dataset: Dataset,
    inference: Mapping[str, Any],
    runtime: Runtime,
    progress: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, class map at the image's own size)`` for every item of ``dataset`` (a
    :class:`~podium.pipelines.uda.data.PredictDataset`), one image at a time, in order.

    Images are decoded in DataLoader workers, ``inference.batch_size`` at a time; a class
    map leaves as soon as it is made, so the caller can write it before the next is
    computed and nothing of the split is held but the batch in flight.
    """
    _prepare(members, runtime)
    loader = DataLoader(
        dataset,
        batch_size=inference["batch_size"],
        shuffle=False,
        num_workers=runtime.num_workers,
        pin_memory=runtime.pin_memory,
    )
    with tqdm(total=len(dataset), desc="uda predict", disable=not progress, leave=False) as bar:
        for images, sizes, indices in loader:
            mean = batch_probabilities(members, images, inference, runtime)
            for j in range(len(indices)):
                yield (
                    int(indices[j]),
                    class_map(mean[j], sizes[j].tolist(), inference["background_threshold"]),
                )
                bar.update(1)
            del mean


def predict_class_maps(
    members: Mapping[str, SegmentationNet],
    images: np.ndarray,
    output_size: Sequence[int],
    inference: Mapping[str, Any],
    runtime: Runtime,
) -> np.ndarray:
    """(N, H, W) uint8 class maps at ``output_size`` (h, w) for (N, h', w', 3) uint8 images
    already in memory (a few images: notebooks and checks; the pipeline streams)."""
    _prepare(members, runtime)
    height, width = int(output_size[0]), int(output_size[1])
    out = np.zeros((len(images), height, width), np.uint8)
    step = inference["batch_size"]
    for start in range(0, len(images), step):
        mean = batch_probabilities(
            members, torch.from_numpy(images[start : start + step]), inference, runtime
        )
        for j in range(len(mean)):
            out[start + j] = class_map(
                mean[j], (height, width), inference.get("background_threshold", 0.0)
            )
    return out
