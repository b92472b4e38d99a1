"""The segmentation network: a timm encoder (features_only) and a light decoder.

Decoders: ``daformer`` (DAFormer's multi-level fusion: every level embedded by a 1x1 conv,
upsampled to the finest level, concatenated and fused by parallel dilated depthwise
separable convolutions, which give context at several scales for few weights) and ``fpn``
(top-down feature pyramid, levels summed at the finest resolution). The network takes
images scaled to [0, 1] and normalises them itself, so mixing, masking and colour jitter
work on plain pixel values. Outputs are logits at the input's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from podium.core.config import ParameterError
from podium.pipelines.uda.params import ModelParams


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(
            cin,
            cout,
            kernel,
            padding=dilation * (kernel // 2),
            dilation=dilation,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DAFormerHead(nn.Module):
    """Multi-level embedding, upsampling to the finest level, context-aware fusion."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        dilations: Sequence[int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = nn.ModuleList(_conv_bn_relu(c, channels) for c in in_channels)
        fused = channels * len(in_channels)
        self.branches = nn.ModuleList(
            _conv_bn_relu(fused, channels)
            if d == 1
            else nn.Sequential(
                _conv_bn_relu(fused, fused, 3, dilation=d, groups=fused),  # depthwise
                _conv_bn_relu(fused, channels),  # pointwise
            )
            for d in dilations
        )
        self.bottleneck = _conv_bn_relu(channels * len(dilations), channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        x = torch.cat(
            [
                F.interpolate(embed(f), size=size, mode="bilinear", align_corners=False)
                if f.shape[-2:] != size
                else embed(f)
                for embed, f in zip(self.embed, features, strict=True)
            ],
            dim=1,
        )
        x = self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))
        return self.classifier(self.dropout(x))


class FPNHead(nn.Module):
    """Top-down pyramid: coarse levels upsampled and added to finer ones, then summed."""

    def __init__(
        self, in_channels: Sequence[int], channels: int, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(_conv_bn_relu(channels, channels, 3) for _ in in_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [lateral(f) for lateral, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        size = laterals[0].shape[-2:]
        x = sum(
            F.interpolate(smooth(lat), size=size, mode="bilinear", align_corners=False)
            for smooth, lat in zip(self.smooth, laterals, strict=True)
        )
        return self.classifier(self.dropout(x))


class SegmentationNet(nn.Module):
    """timm encoder + decoder; ``forward`` takes [0, 1] images, returns full-size logits."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, mean, std) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder((images - self.mean) / self.std))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def build_network(spec: Mapping[str, Any], num_classes: int, parameter: str) -> SegmentationNet:
    """The network described by one entry of ``uda.models`` (``parameter``: its path, for
    the errors of a plain mapping and of ``out_indices`` the encoder does not have)."""
    if not isinstance(spec, ModelParams):
        spec = ModelParams.at(parameter).model_validate(spec)
    try:
        encoder = timm.create_model(
            spec.encoder,
            pretrained=spec.pretrained,
            features_only=True,
            out_indices=tuple(spec.out_indices),
        )
    except (IndexError, AssertionError, ValueError) as error:
        raise ParameterError(
            f"{parameter}.out_indices",
            f"{spec.out_indices} does not fit {spec.encoder}'s feature levels ({error})",
        ) from error
    in_channels = encoder.feature_info.channels()
    if spec.decoder == "daformer":
        decoder = DAFormerHead(
            in_channels, spec.channels, num_classes, spec.dilations, spec.dropout
        )
    else:
        decoder = FPNHead(in_channels, spec.channels, num_classes, spec.dropout)
    config = encoder.pretrained_cfg or {}
    mean = config.get("mean", (0.485, 0.456, 0.406))
    std = config.get("std", (0.229, 0.224, 0.225))
    return SegmentationNet(encoder, decoder, mean, std)
