"""Model variants and losses of the mask pipeline. No kedro or mlflow imports.

The 18 classes factor into mask (3) x gender (2) x age (3). ``single18`` learns the 18-way
label directly; ``multihead`` (the write-up's final choice) shares one backbone between three
heads trained with the summed loss; ``separate`` trains one model per task. The factored
variants turn their three distributions into 18-way probabilities by their product.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from podium.core.models import build_model
from podium.layouts.mask import N_CLASSES
from podium.pipelines.mask.params import MaskLossParams

#: Task -> number of classes; the order is that of the 18-class code mask*6 + gender*3 + age.
TASK_CLASSES = {"mask": 3, "gender": 2, "age": 3}
#: Training-table column holding each task's label.
TASK_COLUMNS = {"mask": "mask", "gender": "gender", "age": "age_class", "class": "class"}


def tasks_of(variant: str) -> dict[str, int]:
    """What the variant's models predict: the 18-way class or the three factors."""
    return {"class": N_CLASSES} if variant == "single18" else dict(TASK_CLASSES)


def network_heads(variant: str) -> dict[str, Mapping[str, int] | int]:
    """The heads of each network of one fold: ``{"model": heads}``, or one per task for
    ``separate``."""
    if variant == "single18":
        return {"model": N_CLASSES}
    if variant == "multihead":
        return {"model": dict(TASK_CLASSES)}
    return dict(TASK_CLASSES)


def build_network(model: Mapping[str, Any], backbone: str, index: int, net_name: str) -> nn.Module:
    """One network of the variant (``net_name`` from :func:`network_heads`)."""
    return build_model(
        backbone,
        pretrained=bool(model["pretrained"]),
        heads=network_heads(model["variant"])[net_name],
        drop_rate=float(model["drop_rate"]),
        parameter=f"mask.model.backbones[{index}]",
    )


def build_variant(model: Mapping[str, Any], backbone: str, index: int) -> dict[str, nn.Module]:
    """The networks of one fold: ``{"model": net}``, or ``{task: net}`` for ``separate``."""
    return {
        name: build_network(model, backbone, index, name)
        for name in network_heads(model["variant"])
    }


class FocalLoss(nn.Module):
    """Cross-entropy scaled by ``(1 - p_true) ** gamma``: easy examples count less."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        ce = F.nll_loss(log_p, target, weight=self.weight, reduction="none")
        p_true = log_p.gather(1, target[:, None]).squeeze(1).exp()
        return ((1 - p_true) ** self.gamma * ce).mean()


def inverse_frequency_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Class weights proportional to 1 / count, mean 1 over the classes present."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(float)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.as_tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def make_criterion(loss: Mapping[str, Any], labels: np.ndarray, n_classes: int) -> nn.Module:
    """``ce`` | ``focal`` (``gamma``) | ``weighted_ce`` (inverse class frequency of ``labels``)."""
    loss = MaskLossParams.of(loss)
    name = loss.name
    if name == "focal":
        return FocalLoss(loss.gamma)
    if name == "weighted_ce":
        return nn.CrossEntropyLoss(weight=inverse_frequency_weights(labels, n_classes))
    return nn.CrossEntropyLoss()


class SummedLoss(nn.Module):
    """The multi-head loss: the sum of each head's loss on its own target."""

    def __init__(self, criteria: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.criteria = nn.ModuleDict(dict(criteria))

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]):
        return sum(criterion(outputs[k], targets[k]) for k, criterion in self.criteria.items())


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def class_probabilities(logits: Mapping[str, np.ndarray]) -> np.ndarray:
    """18-way probabilities from ``{"class": logits}`` or from the three task logits."""
    if "class" in logits:
        return softmax(logits["class"])
    mask, gender, age = (softmax(logits[task]) for task in TASK_CLASSES)
    # outer product in (mask, gender, age) order: flat index mask*6 + gender*3 + age
    joint = mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]
    return joint.reshape(len(mask), N_CLASSES)
