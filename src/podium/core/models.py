"""A timm model factory: one backbone name in the parameters, one or several heads.

The competitions swap backbones constantly (EfficientNet-B0..B7, ResNeXt, ...), so the
backbone is a string validated against ``timm.list_models()``; a typo fails at once with
close matches. Several heads (mask / gender / age) share one backbone's pooled features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
from timm.models import split_model_name_tag
from torch import nn

from podium.core.config import ParameterError, check_choice

#: Prefixes timm resolves to a weights source instead of a registered architecture.
_SOURCE_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def _sibling(parameter: str, name: str) -> str:
    """``deepfake.model.backbone`` -> ``deepfake.model.<name>`` for related errors."""
    return f"{parameter.rsplit('.', 1)[0]}.{name}" if "." in parameter else name


def check_backbone(backbone: str, parameter: str = "model.backbone") -> str:
    """Return ``backbone`` if timm knows it (a ``.tag`` suffix allowed), else ParameterError."""
    if isinstance(backbone, str) and backbone.startswith(_SOURCE_PREFIXES):
        return backbone
    if isinstance(backbone, str):
        architecture, _tag = split_model_name_tag(backbone)
        if timm.is_model(architecture):
            return backbone
    check_choice(parameter, backbone, timm.list_models(), hint="see timm.list_models()")
    return backbone


def _check_heads(heads: Mapping[str, int] | int, parameter: str) -> Mapping[str, int] | int:
    def bad_count(n: Any) -> bool:
        return isinstance(n, bool) or not isinstance(n, int) or n < 1

    if isinstance(heads, Mapping):
        if not heads:
            raise ParameterError(parameter, "expected at least one head")
        for name, n in heads.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ParameterError(parameter, f"head name {name!r} must be a python identifier")
            if bad_count(n):
                raise ParameterError(
                    f"{parameter}.{name}", f"expected a class count >= 1, got {n!r}"
                )
        return heads
    if bad_count(heads):
        raise ParameterError(parameter, f"expected a class count >= 1 or a mapping, got {heads!r}")
    return heads


class MultiHeadModel(nn.Module):
    """A timm backbone's pooled features feeding one linear head per task.

    ``forward`` returns ``{head name: logits}`` so a summed multi-task loss can be written
    as ``sum(ce(out[k], y[k]) for k in out)``.
    """

    def __init__(self, backbone: nn.Module, heads: Mapping[str, int]) -> None:
        super().__init__()
        self.backbone = backbone
        # Models with a pre-logits stage (MobileNetV3's conv_head) emit head_hidden_size
        # features once num_classes=0, not num_features.
        self.num_features = int(
            getattr(backbone, "head_hidden_size", None) or backbone.num_features
        )
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.num_features, n) for name, n in heads.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)  # num_classes=0: pooled (and head-dropout) features
        return {name: head(features) for name, head in self.heads.items()}


def build_model(
    backbone: str,
    pretrained: bool = False,
    heads: Mapping[str, int] | int = 1,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    *,
    parameter: str = "model.backbone",
    **timm_kwargs: Any,
) -> nn.Module:
    """Create a timm classifier (``heads`` an int) or a ``MultiHeadModel`` (``heads`` a mapping).

    ``parameter`` is the backbone's path in the parameters file, used in error messages.
    ``timm_kwargs`` go to ``timm.create_model`` (e.g. ``drop_path_rate``, ``checkpoint_path``).
    """
    check_backbone(backbone, parameter)
    heads = _check_heads(heads, _sibling(parameter, "heads"))
    num_classes = 0 if isinstance(heads, Mapping) else heads
    try:
        model = timm.create_model(
            backbone,
            pretrained=pretrained,
            num_classes=num_classes,
            in_chans=in_chans,
            drop_rate=drop_rate,
            **timm_kwargs,
        )
    except TypeError as error:  # an unknown keyword for this architecture
        raise ParameterError(_sibling(parameter, "timm_kwargs"), f"{backbone}: {error}") from error
    except Exception as error:
        if not pretrained:
            raise
        raise RuntimeError(
            f"Could not load pretrained weights for {backbone!r} ({error}). Offline, set "
            f"`{_sibling(parameter, 'pretrained')}: false` or pass checkpoint_path / "
            "pretrained_cfg_overlay={'file': <local weights>}."
        ) from error
    if isinstance(heads, Mapping):
        return MultiHeadModel(model, heads)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements: a quick size check worth logging."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
