"""Crop-and-slide prediction with flip and multi-scale TTA, averaged over several models.

Each member network (one entry of ``uda.models``) predicts softmax probabilities by
sliding window over every test-time view; members are averaged with their ensemble
weights, the mean is resized to the images' original size and its argmax is the class map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from podium.core.config import ParameterError, check_choice, check_int, check_keys, check_size
from podium.core.device import Runtime, autocast, eval_mode, to_channels_last
from podium.layouts.uda import NUM_CLASSES
from podium.pipelines.uda.network import SegmentationNet, build_network
from podium.pipelines.uda.segmentation import tta_probabilities

P = "uda.inference"
INFERENCE_KEYS = ("weights", "window", "stride", "flip", "scales", "batch_size", "ensemble")
WEIGHT_SETS = ("ema", "student")


def check_inference(inference: Mapping[str, Any], members: Sequence[str]) -> dict[str, Any]:
    check_keys(P, inference, INFERENCE_KEYS, required=INFERENCE_KEYS)
    i = dict(inference)
    check_choice(f"{P}.weights", i["weights"], WEIGHT_SETS)
    i["window"] = check_size(f"{P}.window", i["window"])
    i["stride"] = check_size(f"{P}.stride", i["stride"])
    i["batch_size"] = check_int(f"{P}.batch_size", i["batch_size"], low=1)
    scales = i["scales"]
    if (
        not isinstance(scales, list | tuple)
        or not scales
        or any(isinstance(s, bool) or not isinstance(s, int | float) or s <= 0 for s in scales)
    ):
        raise ParameterError(f"{P}.scales", f"expected a list of positive numbers, got {scales!r}")
    ensemble = i["ensemble"] or {m: 1.0 for m in members}
    check_keys(f"{P}.ensemble", ensemble, members, required=members)
    if any(float(w) < 0 for w in ensemble.values()) or sum(map(float, ensemble.values())) <= 0:
        raise ParameterError(f"{P}.ensemble", f"weights must be >= 0, not all 0: {ensemble}")
    i["ensemble"] = {m: float(w) for m, w in ensemble.items()}
    return i


def load_members(
    weights: Mapping[str, torch.Tensor], models: Mapping[str, Any], weight_set: str
) -> dict[str, SegmentationNet]:
    """Every member network with its ``ema`` or ``student`` weights."""
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
        net = build_network(spec, NUM_CLASSES, f"uda.models.{name}")
        net.load_state_dict(state)
        out[name] = net
    return out


@torch.no_grad()
def predict_class_maps(
    members: Mapping[str, SegmentationNet],
    images: np.ndarray,
    output_size: Sequence[int],
    inference: Mapping[str, Any],
    runtime: Runtime,
    progress: bool = True,
) -> np.ndarray:
    """(N, H, W) uint8 class maps at ``output_size`` (h, w) for (N, h', w', 3) uint8 images."""
    device, amp = runtime.device, runtime.amp
    total_weight = sum(inference["ensemble"].values())
    height, width = int(output_size[0]), int(output_size[1])
    out = np.zeros((len(images), height, width), np.uint8)
    for net in members.values():
        net.to(device)
        if runtime.channels_last:
            to_channels_last(net, device)

    def forward_with(net):
        def forward(x: torch.Tensor) -> torch.Tensor:
            x = to_channels_last(x, device) if runtime.channels_last else x
            with autocast(amp):
                return net(x).float()

        return forward

    step = inference["batch_size"]
    for start in tqdm(
        range(0, len(images), step), desc="uda predict", disable=not progress, leave=False
    ):
        batch = torch.from_numpy(images[start : start + step]).permute(0, 3, 1, 2)
        batch = batch.float().div_(255).to(device)
        mean = None
        for name, net in members.items():
            with eval_mode(net):
                p = tta_probabilities(
                    forward_with(net),
                    batch,
                    window=inference["window"],
                    stride=inference["stride"],
                    num_classes=NUM_CLASSES,
                    scales=inference["scales"],
                    flip=bool(inference["flip"]),
                )
            p = p * (inference["ensemble"][name] / total_weight)
            mean = p if mean is None else mean + p
        if mean.shape[-2:] != (height, width):
            mean = F.interpolate(mean, size=(height, width), mode="bilinear", align_corners=False)
        out[start : start + step] = mean.argmax(dim=1).to(torch.uint8).cpu().numpy()
    return out
