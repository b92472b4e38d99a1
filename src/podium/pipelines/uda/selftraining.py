"""The self-training components, as pure tensor functions (DACS / DAFormer / MIC family).

- :func:`pseudo_labels`: the teacher's argmax on the un-augmented target image, every pixel
  weighted by the share of pixels whose confidence reaches a threshold: one share for the
  whole batch with ``>=`` (DAFormer), or one per image with ``>`` (podium's variant).
- :func:`daformer_alpha`, :func:`init_teacher`, :func:`update_teacher` and
  :func:`labelling_mode`: DAFormer's EMA teacher (``_init_ema_weights``, ``_update_ema``):
  the student's parameters copied at iteration 0, from iteration i >= 1 averaged before
  the step with a = min(1 - 1/(i + 1), alpha), parameters only; the teacher labels in train
  mode (BatchNorm on the batch's statistics) with dropout and drop-path off.
- :func:`class_mix_masks` and :func:`mix`: DACS pastes half of a source image's classes
  onto a target image; the pasted pixels keep their true labels with weight 1.
- :func:`mic_mask`: MIC hides random patches of the target image; the student must still
  predict the teacher's pseudo-labels there, which forces it to use context.
- :func:`distort`: the write-up's dual branch; an affine + elastic warp applied identically
  to images, labels and weights, so the student also sees a geometrically distorted view.
- :func:`photometric`: DACS' colour jitter and Gaussian blur for the student's inputs.
- :func:`strong_view` and :func:`with_distorted_view`: those two as ``uda.training``'s
  ``strong_augment`` and ``dual_branch`` blocks configure them.

The teacher itself is an exponential moving average of the student: DAFormer's rule above
(``uda.training.ema_rule: daformer``) or timm's ``ModelEmaV3`` after every optimizer step
(``timm``: podium's variant, BatchNorm buffers averaged too, the teacher in eval mode; see
``train.py``).

Images are float tensors in [0, 1] (N, 3, H, W); labels are long (N, H, W) with
``ignore_index`` for unlabeled pixels; weights are float (N, H, W). Every random draw comes
from the ``generator`` passed in, so one seed fixes all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

#: ``uda.training.pseudo_label.weight``: one confident-pixel share per batch or per image.
WEIGHT_SCOPES = ("batch", "image")


@torch.no_grad()
def pseudo_labels(
    logits: torch.Tensor,
    threshold: float,
    ignore_top: float = 0.0,
    ignore_bottom: float = 0.0,
    *,
    weight: str = "batch",
    inclusive: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (N, H, W), weights (N, H, W)) from teacher logits (N, C, H, W).

    A pixel is confident when its top probability is ``>= threshold`` (``inclusive``,
    DAFormer) or ``> threshold``. ``weight="batch"`` (DAFormer): every pixel of the batch
    gets the share of the batch's pixels that are confident, one scalar; ``"image"``
    (podium's variant): each image's pixels get that image's share. The top and bottom
    fractions of rows then get weight 0 (e.g. the ego vehicle's bonnet in a fisheye view).
    """
    probabilities = torch.softmax(logits.float(), dim=1)
    confidence, labels = probabilities.max(dim=1)
    confident = confidence >= threshold if inclusive else confidence > threshold
    if weight == "batch":  # DAFormer: sum(confident) / size, one number for the batch
        share = (confident.sum(dtype=torch.float64) / confident.numel()).float()
        weights = share.expand_as(confidence).clone()
    elif weight == "image":
        share = confident.float().mean(dim=(1, 2))
        weights = share.view(-1, 1, 1).expand_as(confidence).clone()
    else:
        raise ValueError(f"weight must be one of {WEIGHT_SCOPES}, got {weight!r}")
    height = weights.shape[1]
    top, bottom = round(ignore_top * height), round(ignore_bottom * height)
    if top:
        weights[:, :top] = 0
    if bottom:
        weights[:, height - bottom :] = 0
    return labels, weights


def daformer_alpha(iteration: int, alpha: float) -> float:
    """DAFormer's teacher momentum at ``iteration`` (>= 1): min(1 - 1/(i + 1), alpha)."""
    return min(1.0 - 1.0 / (iteration + 1), alpha)


@torch.no_grad()
def init_teacher(teacher: nn.Module, student: nn.Module) -> None:
    """DAFormer's ``_init_ema_weights``: the student's parameters copied into the teacher
    (buffers untouched)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.copy_(s.detach())


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, iteration: int, alpha: float) -> None:
    """DAFormer's ``_update_ema(iteration)``: every teacher parameter becomes
    ``a * teacher + (1 - a) * student`` with ``a = daformer_alpha(iteration, alpha)``;
    buffers (BatchNorm statistics) are not averaged."""
    a = daformer_alpha(iteration, alpha)
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.copy_(a * t + (1 - a) * s.detach())


@torch.no_grad()
def copy_buffers(teacher: nn.Module, student: nn.Module) -> None:
    """The student's buffers copied into the teacher (parameters untouched)."""
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def labelling_mode(teacher: nn.Module) -> nn.Module:
    """DAFormer's teacher mode for pseudo-labelling: train mode (BatchNorm normalises with
    the batch's statistics) with every dropout and drop-path layer off."""
    teacher.train()
    for module in teacher.modules():
        if isinstance(module, _DropoutNd | DropPath):
            module.eval()
    return teacher


def class_mix_masks(
    labels: torch.Tensor, ignore_index: int, generator: torch.Generator
) -> torch.Tensor:
    """Boolean (N, H, W) masks: for each source label map, the pixels of a random half
    (rounded up) of the classes present in it (DACS ClassMix)."""
    masks = torch.zeros_like(labels, dtype=torch.bool)
    for i, label in enumerate(labels):
        classes = torch.unique(label)
        classes = classes[classes != ignore_index]
        if classes.numel() == 0:
            continue
        order = torch.randperm(classes.numel(), generator=generator, device="cpu")
        chosen = classes[order[: (classes.numel() + 1) // 2].to(classes.device)]
        masks[i] = torch.isin(label, chosen)
    return masks


def mix(mask: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` where ``mask`` (N, H, W) is true, else ``target``; images or label maps."""
    m = mask if source.dim() == mask.dim() else mask.unsqueeze(1)
    return torch.where(m, source, target)


def mic_mask(
    shape: Sequence[int],
    patch_size: int,
    ratio: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A float (N, 1, H, W) mask, 0 on hidden patches, 1 elsewhere: each
    ``patch_size`` x ``patch_size`` block is hidden with probability ``ratio``."""
    n, height, width = int(shape[0]), int(shape[-2]), int(shape[-1])
    grid = (math.ceil(height / patch_size), math.ceil(width / patch_size))
    keep = (torch.rand((n, 1, *grid), generator=generator) > ratio).float()
    keep = keep.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return keep[:, :, :height, :width].to(device)


def photometric(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    jitter: float,
    jitter_p: float,
    blur_p: float,
    blur_sigma: Sequence[float],
) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter (factors in [1-j, 1+j]) with
    probability ``jitter_p``, then a Gaussian blur with probability ``blur_p``."""
    n = images.shape[0]

    def draw(*size: int) -> torch.Tensor:
        return torch.rand(size, generator=generator).to(images.device)

    out = images
    if jitter > 0:
        on = (draw(n) < jitter_p).view(n, 1, 1, 1)
        factors = 1 + (2 * draw(n, 3) - 1) * jitter
        brightness, contrast, saturation = (factors[:, k].view(n, 1, 1, 1) for k in range(3))
        x = out * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = (x - gray) * saturation + gray
        out = torch.where(on, x.clamp(0, 1), out)
    if blur_p > 0:
        low, high = float(blur_sigma[0]), float(blur_sigma[1])
        blurred = []
        for image, on, u in zip(out, draw(n) < blur_p, draw(n), strict=True):
            if not on:
                blurred.append(image)
                continue
            sigma = low + (high - low) * float(u)
            radius = max(1, math.ceil(2 * sigma))
            taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
            kernel = torch.exp(-(taps**2) / (2 * sigma**2))
            kernel = kernel / kernel.sum()
            x = image.unsqueeze(1)  # (3, 1, H, W): one channel per "batch" row
            x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
            x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
            blurred.append(x.squeeze(1))
        out = torch.stack(blurred)
    return out


def _smooth_noise(n: int, height: int, width: int, sigma: float, generator: torch.Generator):
    """Random displacement fields (N, 2, H, W) in [-1, 1], smooth on the scale ``sigma``."""
    coarse = (max(2, round(height / sigma)), max(2, round(width / sigma)))
    noise = torch.rand((n, 2, *coarse), generator=generator) * 2 - 1
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=True)


def distort(
    images: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    generator: torch.Generator,
    *,
    rotate_deg: float,
    scale: Sequence[float],
    translate: float,
    elastic_alpha: float,
    elastic_sigma: float,
    ignore_index: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random affine + elastic warp per sample, applied to images (bilinear), labels
    and weights (nearest). Pixels pulled from outside the frame become black, labelled
    ``ignore_index`` with weight 0. ``elastic_alpha`` is the displacement in pixels,
    ``elastic_sigma`` the smoothness (pixels between independent displacements)."""
    n, _, height, width = images.shape
    device = images.device
    u = torch.rand((n, 4), generator=generator)
    angle = (2 * u[:, 0] - 1) * math.radians(rotate_deg)
    zoom = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    shift = (2 * u[:, 2:] - 1) * translate * 2  # normalised coordinates span 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, (n, 1, height, width), align_corners=False)
    if elastic_alpha > 0:
        field = _smooth_noise(n, height, width, elastic_sigma, generator) * elastic_alpha
        field = field.permute(0, 2, 3, 1) * torch.tensor([2.0 / width, 2.0 / height])
        grid = grid + field
    grid = grid.to(device=device, dtype=images.dtype)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = (
        F.grid_sample(
            torch.ones_like(weights).unsqueeze(1),
            grid,
            mode="nearest",
            padding_mode="zeros",
            align_corners=False,
        ).squeeze(1)
        > 0.5
    )
    warped_labels = F.grid_sample(
        labels.unsqueeze(1).to(images.dtype),
        grid,
        mode="nearest",
        padding_mode="border",
        align_corners=False,
    )
    warped_labels = warped_labels.squeeze(1).round().long()
    warped_labels = torch.where(inside, warped_labels, torch.full_like(warped_labels, ignore_index))
    warped_weights = F.grid_sample(
        weights.unsqueeze(1), grid, mode="nearest", padding_mode="zeros", align_corners=False
    ).squeeze(1)
    return warped, warped_labels, warped_weights * inside


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, ignore_index: int
) -> torch.Tensor:
    """Pixel cross-entropy times ``weights``, averaged over all pixels (ignored ones count
    as 0, as in DAFormer, so a low-confidence image contributes little)."""
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none")
    if weights is not None:
        loss = loss * weights
    return loss.mean()


def strong_view(images: torch.Tensor, generator: torch.Generator, block: Mapping) -> torch.Tensor:
    """:func:`photometric` with the ``strong_augment`` block's settings."""
    keys = ("jitter", "jitter_p", "blur_p", "blur_sigma")
    return photometric(images, generator, **{k: block[k] for k in keys})


def with_distorted_view(
    images: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    generator: torch.Generator,
    block: Mapping,
    ignore_index: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The plain and the :func:`distort`-ed view in one batch when the ``dual_branch``
    block is enabled (weights 1 where none are given), else the plain view alone."""
    if not block["enabled"]:
        return images, labels, weights
    plain = torch.ones_like(labels, dtype=images.dtype) if weights is None else weights
    keys = ("rotate_deg", "scale", "translate", "elastic_alpha", "elastic_sigma")
    x, y, w = distort(
        images, labels, plain, generator, ignore_index=ignore_index, **{k: block[k] for k in keys}
    )
    return torch.cat([images, x]), torch.cat([labels, y]), torch.cat([plain, w])
