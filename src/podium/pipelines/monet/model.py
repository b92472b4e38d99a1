"""CycleGAN's networks as the paper specifies them (Zhu et al. 2017, appendix 7.2).

- ``ResnetGenerator``: c7s1-ngf, two stride-2 downsamplings, ``n_blocks`` residual blocks,
  two fractionally strided upsamplings, c7s1-3 and tanh; instance norm throughout.
  ``padding``: ``reflect`` (the paper's, what the write-up moved to), ``replicate`` or
  ``zero`` (the Keras tutorial's "same" padding); it applies where the paper pads (the 7x7
  convolutions and the residual blocks), the strided convolutions always pad with zeros.
- ``UnetGenerator``: ``n_downs`` stride-2 encoder steps mirrored by a decoder with skip
  connections (pix2pix's U-Net); every convolution pads with ``padding``.
- ``PatchDiscriminator``: the 70x70 PatchGAN (``n_layers`` = 3): a grid of real/fake scores.

Weights are initialised from N(0, ``init_gain``) as in the reference code. No dropout: the
paper's CycleGAN uses none, and training then draws no random numbers outside its own
generator, so a resumed run repeats an uninterrupted one exactly.

No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from podium.pipelines.monet.params import MonetModelParams, validated

#: Channel multiplier cap of the PatchGAN and U-Net (the reference code's 8 x ngf/ndf).
MAX_MULT = 8
#: Slope of the discriminator's LeakyReLU (the paper's 0.2).
LEAKY_SLOPE = 0.2
#: The paper's first/last generator kernels and the PatchGAN's kernel.
STEM_KERNEL, PATCH_KERNEL = 7, 4


def _pad(padding: str, size: int) -> list[nn.Module]:
    if padding == "reflect":
        return [nn.ReflectionPad2d(size)]
    if padding == "replicate":
        return [nn.ReplicationPad2d(size)]
    return []


def _conv_padding(padding: str, size: int) -> int:
    return size if padding == "zero" else 0


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, padding: str) -> None:
        super().__init__()
        p = _conv_padding(padding, 1)
        self.block = nn.Sequential(
            *_pad(padding, 1),
            nn.Conv2d(dim, dim, 3, padding=p),
            nn.InstanceNorm2d(dim),
            nn.ReLU(True),
            *_pad(padding, 1),
            nn.Conv2d(dim, dim, 3, padding=p),
            nn.InstanceNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, ngf: int, n_blocks: int, padding: str, channels: int = 3) -> None:
        super().__init__()
        half = STEM_KERNEL // 2
        layers: list[nn.Module] = [
            *_pad(padding, half),
            nn.Conv2d(channels, ngf, STEM_KERNEL, padding=_conv_padding(padding, half)),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, padding) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1
                ),
                nn.InstanceNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [
            *_pad(padding, half),
            nn.Conv2d(ngf, channels, STEM_KERNEL, padding=_conv_padding(padding, half)),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _UnetBlock(nn.Module):
    """One encoder step, the sub-network below it (None: the bottleneck), one decoder step,
    and the skip connection around them (pix2pix's UnetSkipConnectionBlock)."""

    def __init__(
        self, outer: int, inner: int, sub: nn.Module | None, padding: str, *, outermost: bool
    ) -> None:
        super().__init__()
        mode = "zeros" if padding == "zero" else padding
        down = nn.Conv2d(outer, inner, PATCH_KERNEL, 2, 1, padding_mode=mode)
        up = nn.ConvTranspose2d(inner if sub is None else inner * 2, outer, PATCH_KERNEL, 2, 1)
        middle = [] if sub is None else [sub]
        self.outermost = outermost
        if outermost:
            layers = [down, *middle, nn.ReLU(True), up, nn.Tanh()]
        elif sub is None:  # the 1x1 bottleneck: no norm on the way down
            layers = [nn.LeakyReLU(LEAKY_SLOPE, True), down, nn.ReLU(True), up]
            layers.append(nn.InstanceNorm2d(outer))
        else:
            layers = [nn.LeakyReLU(LEAKY_SLOPE, True), down, nn.InstanceNorm2d(inner), sub]
            layers += [nn.ReLU(True), up, nn.InstanceNorm2d(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """Level k (0 at the image) has ngf * min(2**k, 8) channels, as pix2pix's unet_256."""

    def __init__(self, ngf: int, n_downs: int, padding: str, channels: int = 3) -> None:
        super().__init__()
        width = [ngf * min(2**k, MAX_MULT) for k in range(n_downs)]
        block: nn.Module | None = None
        for k in reversed(range(1, n_downs)):
            block = _UnetBlock(width[k - 1], width[k], block, padding, outermost=False)
        self.model = _UnetBlock(channels, width[0], block, padding, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` = 3 gives each output score a 70x70 receptive field."""

    def __init__(self, ndf: int, n_layers: int, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ndf, PATCH_KERNEL, 2, 1),
            nn.LeakyReLU(LEAKY_SLOPE, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, MAX_MULT)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * previous, ndf * mult, PATCH_KERNEL, stride, 1),
                nn.InstanceNorm2d(ndf * mult),
                nn.LeakyReLU(LEAKY_SLOPE, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, PATCH_KERNEL, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(module: nn.Module, gain: float) -> nn.Module:
    """N(0, gain) convolution weights and zero biases, as the reference implementation."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def build_generator(model: Mapping[str, Any]) -> nn.Module:
    """The generator ``model`` (a ``monet.model`` block; a dictionary is validated) asks for."""
    model = validated(MonetModelParams, model)
    if model.generator == "resnet":
        net = ResnetGenerator(model.ngf, model.n_blocks, model.padding)
    else:
        net = UnetGenerator(model.ngf, model.unet_downs, model.padding)
    return init_weights(net, model.init_gain)


def build_discriminator(model: Mapping[str, Any]) -> nn.Module:
    model = validated(MonetModelParams, model)
    return init_weights(PatchDiscriminator(model.ndf, model.d_layers), model.init_gain)
