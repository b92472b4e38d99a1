"""The competition's 13th class, background (label 255: the fisheye corners, the bonnet).

The Samsung challenge labels background 255 and scores only the 12 classes of
:data:`~podium.layouts.uda.CLASSES`: a background pixel the submission gives a class counts
against that class, a background pixel in no class's mask counts for nothing. The DACON
baseline trains background as a 13th class (index 12) and leaves it out of the run-length
encoding. ``uda.data.background`` says how uda treats it:

- ``class`` (the baseline, the 1st place team's explicit background): label 255 of the
  source labels is trained as class :data:`BACKGROUND` (12); the network has 13 outputs,
  the teacher's pseudo-labels may be background, and a pixel predicted 12 is background.
- ``ignore`` (podium before, plus a threshold): label 255 is not trained (the loss skips
  it); at inference a pixel whose top probability is below
  ``uda.inference.background_threshold`` is background (0: never, podium before).

Predicted class maps hold background as :data:`~podium.layouts.uda.IGNORE_INDEX` (255),
the labels' own value, so a map and its label compare pixel by pixel; padding and pixels
pulled from outside a frame stay 255 in training labels, where the loss skips them.

No kedro or mlflow imports.
"""

from __future__ import annotations

import numpy as np
import torch

from podium.core.config import check_choice
from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES

MODES = ("class", "ignore")
#: The trained index of background in ``class`` mode (the DACON baseline's 12).
BACKGROUND = NUM_CLASSES


def check_mode(mode: str, parameter: str = "uda.data.background") -> str:
    return check_choice(parameter, mode, MODES)


def num_outputs(mode: str) -> int:
    """The network's outputs: 13 when background is trained as a class, else 12."""
    return NUM_CLASSES + 1 if check_mode(mode) == "class" else NUM_CLASSES


def training_label(label: np.ndarray, mode: str) -> np.ndarray:
    """A label as the loss sees it: 255 becomes :data:`BACKGROUND` in ``class`` mode."""
    if check_mode(mode) != "class":
        return label
    return np.where(label == IGNORE_INDEX, np.uint8(BACKGROUND), label).astype(label.dtype)


def outside_label(mode: str) -> int:
    """The label of a pixel outside a simulated lens's image circle: background."""
    return BACKGROUND if check_mode(mode) == "class" else IGNORE_INDEX


def class_map(probabilities: torch.Tensor, mode: str, threshold: float = 0.0) -> torch.Tensor:
    """The (..., H, W) uint8 class map of (..., C, H, W) probabilities (C = 12 or 13, the
    class axis at -3), background as 255: the argmax 12 in ``class`` mode, a top
    probability below ``threshold`` in ``ignore`` mode."""
    confidence, labels = probabilities.max(dim=-3)
    background = torch.zeros_like(labels, dtype=torch.bool)
    if check_mode(mode) == "class":
        background = labels == BACKGROUND
    elif threshold > 0:
        background = confidence < threshold
    labels = torch.where(background, torch.full_like(labels, IGNORE_INDEX), labels)
    return labels.to(torch.uint8)
