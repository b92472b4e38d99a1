"""The two frame networks of the deepfake pipeline, both on a timm backbone.

* ``classifier``: a timm classifier (``core.models.build_model``) with one logit: FAKE vs REAL.
* ``unet_multitask``: a timm encoder (``features_only=True``) feeding a UNet-style decoder
  that predicts the manipulated-pixel mask, and a classification branch on the encoder's
  deepest feature map (global average pooling, dropout, one linear logit).

Both take a **uint8** image batch ``(B, 3, H, W)`` (0-255) and normalise it inside the
network with the backbone's mean and std (non-persistent buffers: the state dict holds only
weights). Sending uint8 to the GPU moves a quarter of the bytes of float32, and the saved
weights need no separate preprocessing recipe. Both return a dict: ``{"logit": (B,)}`` and,
for ``unet_multitask``, also ``{"mask": (B, 1, H, W)}`` mask logits at the input size.

No kedro or mlflow imports.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn

from podium.core.config import ParameterError, check_choice
from podium.core.models import build_model, check_backbone

__all__ = ["ARCHITECTURES", "FrameClassifier", "UnetMultitask", "build_network"]

#: Architectures a model spec may name.
ARCHITECTURES = ("classifier", "unet_multitask")


class _Normalise(nn.Module):
    """uint8 (or 0-255 float) images -> ``(x / 255 - mean) / std`` in float32."""

    def __init__(self, mean: Any, std: Any) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def _mean_std(model: nn.Module) -> tuple[Any, Any]:
    config = resolve_model_data_config(model)
    return config["mean"], config["std"]


class FrameClassifier(nn.Module):
    """A timm classifier with a single logit, returned as ``{"logit": (B,)}``."""

    def __init__(self, backbone: str, pretrained: bool, drop_rate: float, parameter: str) -> None:
        super().__init__()
        self.model = build_model(
            backbone, pretrained=pretrained, heads=1, drop_rate=drop_rate, parameter=parameter
        )
        self.normalise = _Normalise(*_mean_std(self.model))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logit": self.model(self.normalise(x)).squeeze(1)}


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _conv_bn_relu(in_channels + skip_channels, out_channels),
            _conv_bn_relu(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.block(torch.cat([x, skip], dim=1))


class UnetMultitask(nn.Module):
    """timm encoder + UNet decoder (mask logits) + classification branch (one logit).

    The decoder walks the encoder's feature maps from the deepest up; the block at each
    level outputs as many channels as that level's skip connection (a plain UNet taper,
    no extra parameter). It stops at the finest level whose stride is at least
    ``mask_stride``: 1 decodes every level, 4 stops at a quarter of the input size, which
    keeps most of the dense supervision for a fraction of the decoder's cost on a CPU.
    ``decoder_channels`` caps every block's width (None: the skip's width): the masks are
    smooth blobs, and a narrow decoder costs a fraction of the encoder instead of more. The
    mask logits are upsampled bilinearly to the input size, so encoders whose first
    feature map is at stride 2, 4 or 16 all work.
    """

    def __init__(
        self,
        backbone: str,
        pretrained: bool,
        drop_rate: float,
        parameter: str,
        mask_stride: int = 1,
        decoder_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_backbone(backbone, parameter)
        try:
            self.encoder = timm.create_model(backbone, pretrained=pretrained, features_only=True)
        except Exception as error:  # e.g. an architecture without feature extraction
            raise ParameterError(
                parameter,
                f"{backbone!r} cannot serve as a unet_multitask encoder (timm features_only "
                f"failed: {error}); pick a CNN such as efficientnet_b0 or use `classifier`",
            ) from error
        strides = list(self.encoder.feature_info.reduction())
        # the finer maps are still computed on the way down; the decoder just skips them
        self.levels = [i for i, s in enumerate(strides) if s >= mask_stride] or [len(strides) - 1]
        all_channels = self.encoder.feature_info.channels()
        channels = [all_channels[i] for i in self.levels]
        self.normalise = _Normalise(*_mean_std(self.encoder))
        widths = [c if decoder_channels is None else min(c, decoder_channels) for c in channels]
        widths[-1] = channels[-1]  # the deepest map enters the decoder as the encoder made it
        self.blocks = nn.ModuleList(
            _DecoderBlock(widths[i + 1], channels[i], widths[i])  # in: the deeper block's out
            for i in range(len(channels) - 2, -1, -1)
        )
        self.mask_head = nn.Conv2d(widths[0], 1, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate), nn.Linear(channels[-1], 1)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.encoder(self.normalise(x))
        features = [features[i] for i in self.levels]
        y = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            y = block(y, skip)
        mask = F.interpolate(self.mask_head(y), size=size, mode="bilinear", align_corners=False)
        return {"logit": self.classifier(features[-1]).squeeze(1), "mask": mask}


def build_network(
    architecture: str,
    backbone: str,
    *,
    pretrained: bool = False,
    drop_rate: float = 0.0,
    mask_stride: int = 1,
    decoder_channels: int | None = None,
    parameter: str = "deepfake.training.models",
) -> nn.Module:
    """``classifier`` or ``unet_multitask`` on ``backbone``; errors name ``parameter``.
    ``mask_stride``, ``decoder_channels`` (unet_multitask only): the finest stride the
    decoder reaches and its widest block (None: a plain UNet taper)."""
    check_choice(f"{parameter}.architecture", architecture, ARCHITECTURES)
    where = f"{parameter}.backbone"
    if architecture == "classifier":
        return FrameClassifier(backbone, bool(pretrained), float(drop_rate), where)
    return UnetMultitask(
        backbone, bool(pretrained), float(drop_rate), where, int(mask_stride), decoder_channels
    )
