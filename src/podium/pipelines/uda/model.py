"""The segmentation network: an encoder's feature levels and a light decoder.

Encoders: any timm name (``features_only``), or SegFormer's Mix Transformer ``mit_b0`` ..
``mit_b5`` (DAFormer's and MIC's encoder, MiT-B5 in the write-ups) from
segmentation-models-pytorch, with its ImageNet weights when ``pretrained``. Each encoder
returns the levels ``out_indices`` asks for and describes them as timm does
(``encoder.feature_info``: channels and stride per level), so every decoder takes every
encoder. MiT's levels count as those of most timm CNNs (RegNet, EfficientNet: level i at
stride 2^(i + 1)): ``out_indices`` 1..4 are its four stages, strides 4..32; it has no
stride-2 level 0.

Decoders: ``daformer`` (DAFormer's multi-level fusion: every level embedded by a 1x1 conv,
upsampled to the finest level, concatenated and fused by parallel dilated depthwise
separable convolutions, which give context at several scales for few weights), ``fpn``
(top-down feature pyramid, levels summed at the finest resolution) and ``segformer``
(SegFormer's all-MLP decoder from segmentation-models-pytorch: each level projected by a
linear layer, upsampled to the finest level, concatenated and fused by a 1x1 conv). The
network takes images scaled to [0, 1] and normalises them itself, so mixing, masking and
colour jitter work on plain pixel values. Outputs are logits at the input's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.segformer.decoder import SegformerDecoder
from segmentation_models_pytorch.encoders import get_encoder
from timm.models import FeatureInfo
from torch import nn

from podium.core.config import ParameterError
from podium.pipelines.uda.params import MIT_ENCODERS, ModelParams


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


class SegFormerHead(nn.Module):
    """SegFormer's all-MLP decoder (segmentation-models-pytorch's) and a 1x1 classifier."""

    def __init__(
        self, in_channels: Sequence[int], channels: int, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        # smp's decoder reads an smp encoder's outputs: the image first (only its size is
        # used), then the levels; the 0 stands for the image's channels, which it never reads
        self.fuse = SegformerDecoder([0, *in_channels], segmentation_channels=channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        # smp fuses at a quarter of the image's size: an empty stand-in of four times the
        # finest level's size fuses at that level's own size, whatever its stride and however
        # the encoder rounded an odd size
        finest = features[0]
        size = finest.new_empty((0, 0, 4 * finest.shape[-2], 4 * finest.shape[-1]))
        return self.classifier(self.dropout(self.fuse([size, *features])))


class MiTEncoder(nn.Module):
    """An smp Mix Transformer returning the levels asked for, described as timm's
    ``features_only`` encoders are (``feature_info``)."""

    def __init__(self, model: nn.Module, out_indices: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.levels = sorted(set(out_indices))
        # smp's outputs: the image, a 0-channel stride-2 placeholder, then strides 4..32;
        # level i (timm's counting) is smp's output i + 1
        channels = model.out_channels
        self.feature_info = FeatureInfo(
            [
                {"num_chs": channels[i + 1], "reduction": 2 ** (i + 1), "module": f"model.norm{i}"}
                for i in self.levels
            ],
            out_indices=tuple(range(len(self.levels))),
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(images)
        return [features[i + 1] for i in self.levels]


def _mit_encoder(name: str, out_indices: Sequence[int], pretrained: bool, parameter: str):
    """``name`` from smp, built only as deep as the deepest level asked for (DDP needs every
    parameter to take part in the loss)."""
    if not all(1 <= i <= 4 for i in out_indices):
        raise ParameterError(
            f"{parameter}.out_indices",
            f"{list(out_indices)} does not fit {name}'s feature levels: 1..4 (strides 4..32; "
            "MiT has no stride-2 level 0)",
        )
    depth = max(out_indices) + 1
    device = torch.get_default_device()
    # MiT's constructor reads its drop-path rates with .item(), which a meta tensor cannot
    # give: built on the CPU, then moved to the device asked for
    with torch.device("cpu" if device.type == "meta" else device):
        model = get_encoder(name, depth=depth, weights="imagenet" if pretrained else None)
    for stage in range(depth, 5):  # the stages past ``depth`` never run
        for part in ("patch_embed", "block", "norm"):
            delattr(model, f"{part}{stage}")
    return MiTEncoder(model.to(device), out_indices)


def _timm_encoder(name: str, out_indices: Sequence[int], pretrained: bool, parameter: str):
    try:
        return timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices)
        )
    except (IndexError, AssertionError, ValueError) as error:
        raise ParameterError(
            f"{parameter}.out_indices",
            f"{list(out_indices)} does not fit {name}'s feature levels ({error})",
        ) from error


class SegmentationNet(nn.Module):
    """Encoder + decoder; ``forward`` takes [0, 1] images, returns full-size logits."""

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
    if spec.encoder in MIT_ENCODERS:
        encoder = _mit_encoder(spec.encoder, spec.out_indices, spec.pretrained, parameter)
    else:
        encoder = _timm_encoder(spec.encoder, spec.out_indices, spec.pretrained, parameter)
    in_channels = encoder.feature_info.channels()
    if spec.decoder == "daformer":
        decoder = DAFormerHead(
            in_channels, spec.channels, num_classes, spec.dilations, spec.dropout
        )
    elif spec.decoder == "segformer":
        decoder = SegFormerHead(in_channels, spec.channels, num_classes, spec.dropout)
    else:
        decoder = FPNHead(in_channels, spec.channels, num_classes, spec.dropout)
    # MiT's ImageNet weights were trained on ImageNet's mean and std, timm's fallback too
    config = getattr(encoder, "pretrained_cfg", None) or {}
    mean = config.get("mean", (0.485, 0.456, 0.406))
    std = config.get("std", (0.229, 0.224, 0.225))
    return SegmentationNet(encoder, decoder, mean, std)
