"""The mask pipeline's parameter blocks (conf/base/parameters_mask.yml), typed: Kedro
checks them when the session starts, before the first node (see podium.core.params).
Each default is conf/base's value, so a key left out behaves as the embedded sample run."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from podium.core.augment import Transforms
from podium.core.models import check_backbone
from podium.core.optim import OptimizerParams, SchedulerName, SchedulerParams
from podium.core.params import (
    Bool,
    Float,
    Fraction,
    NonNegativeFloat,
    Only,
    Params,
    PositiveFloat,
    PositiveInt,
)


class Size(Params):
    height: PositiveInt
    width: PositiveInt


class FaceCrop(Params):
    """``face`` crops: MTCNN's box grown by ``margin``; the centre crop where none is found."""

    margin: NonNegativeFloat = 0.35
    """Box grown by this fraction of its size on each side."""
    min_confidence: Fraction = 0.9
    """Weaker detections count as "no face": centre crop instead."""
    downscale: Annotated[float, Field(ge=1e-3, le=1)] = 0.5
    """Detect on a smaller copy (boxes mapped back to full size)."""


class MaskCropParams(Params):
    block: ClassVar[str] = "mask.crop"

    method: Literal["centre", "face"] = "centre"
    centre: Annotated[Size, Only("method", "centre")] = Size(height=400, width=300)
    """The middle of the 512x384 photo: the whole head and hair."""
    face: Annotated[FaceCrop, Only("method", "face")] = FaceCrop()
    output: Size = Size(height=128, width=96)
    """Every crop resized to this (the model's input)."""
    window: PositiveInt = 64
    """Photos in flight over runtime.dask's workers; the driver holds only their records."""


class MaskFoldsParams(Params):
    block: ClassVar[str] = "mask.folds"

    n_splits: Annotated[int, Field(strict=True, ge=2)] = 3
    """Person-level StratifiedGroupKFold: no person in two folds."""


class MaskModelParams(Params):
    block: ClassVar[str] = "mask.model"

    variant: Literal["single18", "multihead", "separate"] = "multihead"
    backbones: Annotated[list[str], Field(min_length=1)] = ["regnetx_002"]
    """timm names; several are ensembled."""
    pretrained: Bool = False
    drop_rate: Fraction = 0.1

    @field_validator("backbones")
    @classmethod
    def _known_to_timm(cls, backbones: list[str]) -> list[str]:
        for i, backbone in enumerate(backbones):
            check_backbone(backbone, f"mask.model.backbones[{i}]")
        return backbones


class MaskLossParams(Params):
    block: ClassVar[str] = "mask.loss"

    name: Literal["ce", "focal", "weighted_ce"] = "focal"
    """weighted_ce: inverse class frequency per fold."""
    gamma: Annotated[NonNegativeFloat, Only("name", "focal")] = 2.0


class MaskOptimizerParams(OptimizerParams):
    block: ClassVar[str] = "mask.optimizer"

    name: str = "adamw"
    lr: NonNegativeFloat = 0.003
    weight_decay: NonNegativeFloat = 0.0001


class MaskSchedulerParams(SchedulerParams):
    block: ClassVar[str] = "mask.scheduler"

    name: SchedulerName = "cosine"
    min_lr: NonNegativeFloat = 0.00001
    decay_rate: Fraction = 0.5
    step_size: PositiveInt = 5
    monitor: str | None = "train_loss"
    """Mask trains without validation: plateau watches the training loss."""


class MaskTrainParams(Params):
    block: ClassVar[str] = "mask.train"

    epochs: PositiveInt = 14
    batch_size: PositiveInt = 32
    """The global batch: split evenly over runtime.distributed's processes."""
    grad_clip: PositiveFloat | None = 5.0
    """Max gradient norm (null: no clipping)."""
    accumulate: PositiveInt = 1
    """Micro-batches per optimizer step (effective batch: accumulate x batch_size)."""
    resume_from: Literal["latest"] | None = None
    """null: train afresh (this configuration's checkpoints are removed first); latest:
    continue from them (a killed run resumes where it stopped)."""


class MaskResamplingParams(Params):
    block: ClassVar[str] = "mask.resampling"

    enabled: Bool = True
    factor: PositiveInt = 4
    """Each old row appears this many times (1 original + factor - 1 augmented copies)."""


class MaskEnsembleParams(Params):
    block: ClassVar[str] = "mask.ensemble"

    submission_vote: Literal["soft", "hard"] = "soft"
    """Both are scored; this one is submitted."""
    backbone_weights: dict[str, Float] | None = None
    """{backbone: weight} for the votes; null: equal weights."""
    unusable_photos: Literal["answer", "stop"] = "answer"
    """An evaluation photo without a usable crop: answered from a blank crop (marked
    blank_crop in submission_report.csv), or the run stops before training."""


MaskAugment = Transforms.at("mask.augment")
MaskPreprocess = Transforms.at("mask.preprocess")
