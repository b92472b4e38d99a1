"""Tiny data and models for the building-block tests: seconds on two CPU cores."""

from __future__ import annotations

import random

import numpy as np
import timm
import torch
from torch.utils.data import Dataset

TINY_BACKBONE = "test_efficientnet"  # ~0.1 M parameters, BatchNorm and dropout included


class NoisyImages(Dataset):
    """32x32 images whose class shows in the mean, plus numpy/python/torch noise per draw.

    The per-draw noise comes from the global RNGs inside DataLoader workers, so only a
    properly seeded loader gives the same batches twice.
    """

    def __init__(self, n: int = 36, n_classes: int = 3, size: int = 32, as_dict: bool = False):
        generator = torch.Generator().manual_seed(1234)
        self.labels = torch.arange(n) % n_classes
        self.images = torch.rand(n, 3, size, size, generator=generator) + self.labels.view(
            -1, 1, 1, 1
        )
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        noise = torch.from_numpy(
            np.random.normal(0, 0.1, self.images[index].shape).astype(np.float32)
        )
        image = self.images[index] + noise + 0.05 * torch.rand(1)
        if random.random() < 0.5:
            image = image.flip(-1)
        label = self.labels[index]
        if self.as_dict:
            return {"image": image, "a": label, "b": label % 2}
        return image, label


def tiny_model(num_classes: int = 3) -> torch.nn.Module:
    return timm.create_model(
        TINY_BACKBONE, num_classes=num_classes, pretrained=False, drop_rate=0.2
    )


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def tiny_cnn(num_classes: int = 3) -> torch.nn.Module:
    """A few layers with BatchNorm and dropout: the loop's behaviour at a fraction of the ops."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(8, num_classes),
    )
