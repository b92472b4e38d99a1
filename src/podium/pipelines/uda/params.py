"""The uda pipeline's parameter blocks (conf/base/parameters_uda.yml), typed: Kedro checks
them when the session starts, before the first node (see podium.core.params).

Defaults are conf/base's values, so a key left out behaves as conf/base. What needs data,
the network or the processes stays where they are known: ``optimizer.lr_multipliers``
against the network's submodules and ``batch_size`` against the world size
(``train.train_members``), ``inference.ensemble`` against ``uda.models`` (the prediction
nodes), ``resume_from: latest`` against the checkpoint folder.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

import timm
from pydantic import ConfigDict, Field, RootModel, field_validator, model_validator

from podium.core.augment import Transforms
from podium.core.config import ParameterError, check_keys, describe_choices
from podium.core.models import check_backbone
from podium.core.optim import OptimizerParams, SchedulerParams, check_optimization
from podium.core.params import (
    Bool,
    Float,
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    Only,
    ParametersInvalid,
    Params,
    PositiveFloat,
    PositiveInt,
    TypedBlock,
)

Background = Literal["class", "ignore"]
#: Image sides in pixels: ``[height, width]``, or one integer for a square.
Pair = tuple[Annotated[Int, Field(ge=8)], Annotated[Int, Field(ge=8)]]
Window = tuple[PositiveInt, PositiveInt]
#: SegFormer's Mix Transformer encoders, from segmentation-models-pytorch.
MIT_ENCODERS = tuple(f"mit_b{i}" for i in range(6))


def _square(value: Any) -> Any:
    """One integer ``n`` is the square ``[n, n]``."""
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


# ------------------------------------------------------------------------------- data


class DataParams(Params):
    """``uda.data``: the working sizes and how label 255 (background) is trained."""

    block: ClassVar[str] = "uda.data"

    source_size: Pair = (128, 256)
    """[height, width] source images are resized to."""
    target_size: Pair = (144, 256)
    """[height, width] target images are resized to."""
    background: Background = "class"
    """class: label 255 trained as class 12 (13 outputs) | ignore: not trained, background
    at inference is a top probability below ``uda.inference.background_threshold``."""

    _squares = field_validator("source_size", "target_size", mode="before")(_square)


# ----------------------------------------------------------------------------- models


DAFORMER = Only("decoder", "daformer")


class ModelParams(Params):
    """One member of ``uda.models``: an encoder and a decoder."""

    encoder: str
    """Any timm name with features_only support (a ``.tag`` suffix allowed), or SegFormer's
    Mix Transformer ``mit_b0`` .. ``mit_b5`` (segmentation-models-pytorch)."""
    pretrained: Bool = False
    """ImageNet weights: timm's for the name (its tag), smp's ``imagenet`` for MiT."""
    decoder: Literal["daformer", "fpn", "segformer"] = "daformer"
    """daformer: multi-level context-aware fusion | fpn: feature pyramid | segformer:
    SegFormer's all-MLP decoder (segmentation-models-pytorch); each takes any encoder."""
    channels: PositiveInt = 64
    """Decoder width."""
    out_indices: Annotated[list[NonNegativeInt], Field(min_length=1)] = [1, 2, 3, 4]
    """Encoder levels fed to the decoder (MiT: 1..4, strides 4..32)."""
    dilations: Annotated[list[NonNegativeInt], Field(min_length=1), DAFORMER] = [1, 2, 3]
    """DAFormer fusion branches."""
    dropout: Fraction = 0.1

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, encoder: str) -> str:
        if encoder in MIT_ENCODERS:
            return encoder
        try:
            return check_backbone(encoder, "encoder")
        except ParameterError:  # told below with the close matches of both families
            pass
        choices = describe_choices(encoder, [*timm.list_models(), *MIT_ENCODERS], "values")
        raise ValueError(
            f"{encoder!r} is not allowed; {choices} (see timm.list_models(); MiT: mit_b0..mit_b5)"
        )


class ModelsParams(TypedBlock, RootModel[dict[str, ModelParams]]):
    """``uda.models``: ``{member name: model block}``, one or more networks whose
    probabilities are averaged at inference. Reads as that mapping."""

    block: ClassVar[str] = "uda.models"
    model_config = ConfigDict(frozen=True)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Each member checked under its own path (``uda.models.m1.encoder``)."""
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping) or not obj:
            raise ParametersInvalid([(cls.block, f"expected {{name: model block}}, got {obj!r}")])
        problems: list[tuple[str, str]] = []
        for name, spec in obj.items():
            try:
                ModelParams.at(f"{cls.block}.{name}").model_validate(spec)
            except ParametersInvalid as error:
                problems += error.problems
        if problems:
            raise ParametersInvalid(problems)
        return super().model_validate(
            {name: ModelParams.model_validate(dict(spec)) for name, spec in obj.items()},
            *args,
            **kwargs,
        )

    def __getitem__(self, name: str) -> ModelParams:
        return self.root[name]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # names, as a Mapping's
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __contains__(self, name: object) -> bool:
        return name in self.root

    def keys(self):
        return self.root.keys()

    def values(self):
        return self.root.values()

    def items(self):
        return self.root.items()

    def get(self, name: str, default: Any = None) -> Any:
        return self.root.get(name, default)


Mapping.register(ModelsParams)


# --------------------------------------------------------------------------- training


class SourceAugment(Transforms):
    block: ClassVar[str] = "uda.training.source_augment"


class TargetAugment(Transforms):
    block: ClassVar[str] = "uda.training.target_augment"


class FisheyeParams(Params):
    """``uda.training.source_fisheye``: source images seen through a simulated fisheye."""

    enabled: Bool = True
    p: Fraction = 0.5
    max_angle_deg: Annotated[Float, Field(ge=1, le=89)] = 70.0
    """Ray angle at the image circle's rim."""
    image_circle: Annotated[Float, Field(ge=0.05)] | None = 0.85
    """Image-circle radius / half the frame width (outside: black, background) | null: the
    circle touches the frame's corners."""


class RareClassSamplingParams(Params):
    """``uda.training.rare_class_sampling``: DAFormer's rare-class sampling of sources."""

    enabled: Bool = True
    temperature: Annotated[Float, Field(ge=1e-6)] = 0.1
    """Lower: rarer classes drawn more often."""
    min_pixels: NonNegativeInt = 16
    """An image "holds" a class from this many pixels."""


class PseudoLabelParams(Params):
    """``uda.training.pseudo_label``: the teacher's labels and their weights."""

    start_iteration: NonNegativeInt = 100
    """Source-only iterations before the teacher's labels are used."""
    threshold: Fraction = 0.9
    ignore_top: Fraction = 0.0
    """Fraction of rows at the top given weight 0."""
    ignore_bottom: Fraction = 0.0
    teacher_augment: Bool = False
    """true: the teacher sees the jittered image."""
    weight: Literal["batch", "image"] = "batch"
    """batch: one share of confident pixels for the whole batch (DAFormer) | image: one per
    image."""
    inclusive: Bool = True
    """true: confident is top probability >= threshold (DAFormer) | false: >."""


def _ordered_pair(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"expected [low, high] with low <= high, got {list(pair)}")
    return pair


class StrongAugmentParams(Params):
    """``uda.training.strong_augment``: DACS colour jitter and blur (student, target side)."""

    enabled: Bool = True
    jitter: Fraction = 0.2
    """Brightness, contrast and saturation factors in [1 - jitter, 1 + jitter]."""
    jitter_p: Fraction = 0.8
    blur_p: Fraction = 0.5
    blur_sigma: tuple[PositiveFloat, PositiveFloat] = (0.15, 1.15)
    """[low, high] of the Gaussian blur's sigma."""

    _ordered = field_validator("blur_sigma")(_ordered_pair)


class ClassMixParams(Params):
    """``uda.training.class_mix``: DACS, half of a source image's classes pasted on a target."""

    enabled: Bool = True


class MicParams(Params):
    """``uda.training.mic``: masked image consistency."""

    enabled: Bool = True
    patch_size: PositiveInt = 16
    mask_ratio: Fraction = 0.7
    loss_weight: NonNegativeFloat = 1.0


class DualBranchParams(Params):
    """``uda.training.dual_branch``: the student also sees an affine + elastic view."""

    enabled: Bool = True
    rotate_deg: Annotated[Float, Field(ge=0, le=180)] = 10.0
    scale: tuple[PositiveFloat, PositiveFloat] = (0.8, 1.2)
    """[low, high] zoom factors."""
    translate: Fraction = 0.05
    """Fraction of the image size."""
    elastic_alpha: NonNegativeFloat = 6.0
    """Displacement in pixels."""
    elastic_sigma: Annotated[Float, Field(ge=1)] = 16.0
    """Pixels between independent displacements."""

    _ordered = field_validator("scale")(_ordered_pair)


SELF_TRAINING = Only("regime", "self_training")


class TrainingParams(Params):
    """``uda.training``: the regime, the iteration budget and every self-training switch."""

    block: ClassVar[str] = "uda.training"

    regime: Literal["source_only", "self_training"] = "self_training"
    iterations: PositiveInt = 320
    iterations_per_epoch: PositiveInt = 40
    """An epoch (a checkpoint, a curve point); divides iterations."""
    batch_size: PositiveInt = 2
    """Source and target images per iteration, each: the global batch over the processes."""
    crop_size: Pair = (128, 128)
    """Random crop from the resized images."""
    grad_clip: NonNegativeFloat | None = 10.0
    ema_alpha: Fraction = 0.99
    ema_rule: Literal["daformer", "timm"] = "daformer"
    """daformer: the reference teacher update before each step | timm: ModelEmaV3 after it."""
    resume_from: Literal["latest"] | None = None
    """null: afresh | latest: continue a killed run from uda_checkpoints."""
    optimizer: OptimizerParams = OptimizerParams(
        name="adamw",
        lr=0.002,
        weight_decay=0.01,
        betas=(0.9, 0.999),
        lr_multipliers={"decoder": 10.0},
    )
    scheduler: SchedulerParams = SchedulerParams(
        name="poly", per="step", warmup_epochs=1.25, warmup_lr=1.0e-6, min_lr=0.0, power=1.0
    )
    source_augment: SourceAugment = SourceAugment(
        [
            {"name": "HorizontalFlip", "p": 0.5},
            {"name": "RandomBrightnessContrast", "brightness_limit": 0.2,
             "contrast_limit": 0.2, "p": 0.5},
        ]
    )  # fmt: skip
    # what source_only never runs (it trains on the source batch alone, with the same EMA
    # teacher, sampling, fisheye and dual branch): not logged for it
    target_augment: Annotated[TargetAugment, SELF_TRAINING] = TargetAugment(
        [{"name": "HorizontalFlip", "p": 0.5}]
    )
    source_fisheye: FisheyeParams = FisheyeParams()
    rare_class_sampling: RareClassSamplingParams = RareClassSamplingParams()
    pseudo_label: Annotated[PseudoLabelParams, SELF_TRAINING] = PseudoLabelParams()
    strong_augment: Annotated[StrongAugmentParams, SELF_TRAINING] = StrongAugmentParams()
    class_mix: Annotated[ClassMixParams, SELF_TRAINING] = ClassMixParams()
    mic: Annotated[MicParams, SELF_TRAINING] = MicParams()
    dual_branch: DualBranchParams = DualBranchParams()

    _squares = field_validator("crop_size", mode="before")(_square)

    @model_validator(mode="after")
    def _whole_epochs_and_a_schedule(self) -> TrainingParams:
        iterations, per_epoch = self.iterations, self.iterations_per_epoch
        if iterations % per_epoch:
            rounded = -(-iterations // per_epoch) * per_epoch
            raise ParameterError(
                f"{self.block}.iterations",
                f"{iterations} is not a multiple of {self.block}.iterations_per_epoch "
                f"({per_epoch}): training checkpoints whole epochs; use e.g. {rounded}",
            )
        # the schedule over the run (warm-up shorter than it, milestones, ...) on a stand-in
        check_optimization(
            self.optimizer,
            self.scheduler,
            epochs=iterations // per_epoch,
            parameter=self.block,
        )
        return self

    def shaping(self) -> dict[str, Any]:
        """The block as the checkpoint folder's digest reads it: every key but
        ``resume_from``, the optimizer and scheduler as the configuration wrote them."""
        shaping = self.model_dump(mode="json", exclude={"resume_from"})
        shaping["optimizer"] = self.optimizer.model_dump(mode="json", exclude_unset=True)
        shaping["scheduler"] = self.scheduler.model_dump(mode="json", exclude_unset=True)
        return shaping


# -------------------------------------------------------------------------- inference


class InferenceParams(Params):
    """``uda.inference``: sliding-window TTA prediction, averaged over the members."""

    block: ClassVar[str] = "uda.inference"

    weights: Literal["ema", "student"] = "ema"
    """ema: the teacher | student."""
    window: Window = (128, 128)
    """Crop-and-slide window on the resized image."""
    stride: Window = (64, 128)
    """Window step: smaller than the window means overlap."""
    flip: Bool = True
    """Horizontal-flip TTA."""
    scales: Annotated[list[PositiveFloat], Field(min_length=1)] = [1.0]
    """Multi-scale TTA."""
    batch_size: PositiveInt = 4
    ensemble: dict[str, NonNegativeFloat] | None = None
    """{member: weight}; null: equal weights for all of uda.models."""
    background_threshold: Fraction = 0.3
    """uda.data.background ignore only: a pixel whose top probability is below this is
    background (0: never)."""

    _squares = field_validator("window", "stride", mode="before")(_square)

    @field_validator("ensemble")
    @classmethod
    def _some_weight(cls, ensemble: dict[str, float] | None) -> dict[str, float] | None:
        if ensemble is not None and sum(ensemble.values()) <= 0:
            raise ValueError(f"weights must be >= 0, not all 0: {ensemble}")
        return ensemble

    def member_weights(self, members: list[str]) -> dict[str, float]:
        """Each member's ensemble weight (equal without ``ensemble``); the names must be
        those of ``uda.models``."""
        ensemble = self.ensemble or {m: 1.0 for m in members}
        check_keys(f"{self.block}.ensemble", ensemble, members, required=members)
        return {m: float(w) for m, w in ensemble.items()}


# ------------------------------------------------------------------------- evaluation


class EvaluationParams(Params):
    """``uda.evaluation``: scoring and the overlay figure."""

    block: ClassVar[str] = "uda.evaluation"

    overlays: PositiveInt = 4
    """Target validation images drawn with prediction and truth."""
    background: Literal["count", "ignore"] = "count"
    """count: a background pixel given a class counts against it (the competition) | ignore:
    background pixels are not scored."""


#: Every typed block of ``uda``, by key.
BLOCKS: dict[str, type] = {
    "data": DataParams,
    "models": ModelsParams,
    "training": TrainingParams,
    "inference": InferenceParams,
    "evaluation": EvaluationParams,
}
