"""The deepfake and deepfake_inference parameter blocks (conf/base/parameters_deepfake.yml,
conf/base/parameters_deepfake_inference.yml), typed: Kedro checks them when the session
starts, before the first node (see podium.core.params). Each model's defaults are conf/base's
values, so a key left out behaves as conf/base.

The evaluation block's keys are read one by one (``params:deepfake.evaluation.eps``), as
plain values. No kedro or mlflow imports.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from podium.core.augment import Transforms
from podium.core.config import ParameterError
from podium.core.optim import OptimizerParams, SchedulerParams, check_optimization
from podium.core.params import (
    Bool,
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    Only,
    Params,
    PositiveFloat,
    PositiveInt,
)
from podium.faces.self_blend import BLEND_RATIOS, BlendSettings
from podium.faces.video import CropSize, ExtractionSettings, Number
from podium.sample_data.manipulations import FAMILIES

__all__ = [
    "CalibrationParams",
    "DiagnosticsParams",
    "EmbeddingParams",
    "ExtractionParams",
    "InferenceParams",
    "ModelEntry",
    "PairMixupParams",
    "PersonClusterParams",
    "SelfBlendParams",
    "SplitParams",
    "StackingParams",
    "TrainingParams",
    "VideoScoreParams",
    "fold_key",
    "split_fold_key",
    "typed",
]

Block = TypeVar("Block", bound=Params)

#: Separates a model's name from its fold in state-dict keys (``"<model>/fold<k>"``).
KEY_SEP = "/"
#: What follows the separator: ``fold`` and the fold's number.
_FOLD = "fold"


def fold_key(model: str, fold: int) -> str:
    """The key of ``model``'s fold ``fold`` in the state dicts: ``"<model>/fold<k>"``."""
    return f"{model}{KEY_SEP}{_FOLD}{int(fold)}"


def split_fold_key(key: str) -> tuple[str, int] | None:
    """``(model, fold)`` of a :func:`fold_key`; None for any other string."""
    model, sep, rest = key.rpartition(KEY_SEP)
    number = rest[len(_FOLD) :] if rest.startswith(_FOLD) else ""
    return (model, int(number)) if sep and model and number.isdigit() else None


NonNegativeNumber = Annotated[Number, Field(ge=0)]


def typed(model: type[Block], value: Any) -> Block:
    """``value`` as ``model``: a model is returned as it is, a mapping (a notebook's, a
    test's) validated, its missing keys at conf/base's values."""
    return value if isinstance(value, model) else model.model_validate(dict(value or {}))


# ------------------------------------------------------------------------------ data


class ExtractionParams(ExtractionSettings):
    """``deepfake.extraction``: MTCNN on ``n_frames`` evenly spaced frames, crops with a
    margin (podium.faces.video: the keys and their checks; conf/base's defaults here)."""

    n_frames: PositiveInt = 8
    """Frames sampled evenly per video."""
    crop_size: CropSize = 112
    """One integer (square) or [height, width] of the stored crops."""


class DiagnosticsParams(Params):
    """``deepfake.diagnostics``: the sample's truth-based checks."""

    block: ClassVar[str] = "deepfake.diagnostics"

    iou: Fraction = 0.5
    """MTCNN recall counts a face found at IoU >= this with the truth box."""
    hold_out_family: list[Literal[FAMILIES]] | None = None  # type: ignore[valid-type]
    """Leave-one-family-out (the sample's truth names each fake's manipulation family): the
    fakes of this family, or of each family of a list, are left out of training and scored
    as unseen; null: none."""

    @field_validator("hold_out_family", mode="before")
    @classmethod
    def _one_family_is_a_list_of_one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("hold_out_family")
    @classmethod
    def _once_each(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"lists a family twice: {value}")
        return value

    @property
    def held_families(self) -> tuple[str, ...]:
        """The held-out families, in the order written (empty for null)."""
        return tuple(self.hold_out_family or ())


# ---------------------------------------------------------------------------- splits


class SplitParams(Params):
    """``deepfake.split``: the validation folds; fakes always stay with their original."""

    block: ClassVar[str] = "deepfake.split"

    strategy: Literal["folder", "person_cluster", "original", "random"] = "person_cluster"
    """folder | person_cluster | original | random."""
    n_folds: Annotated[Int, Field(ge=2)] = 3


PCA, DLIB, FACENET = Only("method", "pca"), Only("method", "dlib"), Only("method", "facenet")


class EmbeddingParams(Params):
    """``deepfake.embedding`` (person_cluster only): how faces become vectors."""

    block: ClassVar[str] = "deepfake.embedding"
    only_when = ("deepfake.split", "strategy", ("person_cluster",))

    method: Literal["pca", "dlib", "facenet"] = "pca"
    """pca (offline, always there) | dlib | facenet (local weights)."""
    size: Annotated[Int, Field(ge=4), PCA] = 32
    """pca: side of the grey face vector."""
    inner_fraction: Annotated[Fraction, Field(ge=0.1), PCA] = 0.7
    """pca: the central share of the crop kept (the face, not the margin)."""
    n_components: Annotated[PositiveInt, PCA] = 16
    """pca: components kept (capped by the number of crops)."""
    whiten: Annotated[Bool, PCA] = False
    """pca: whiten the components."""
    crop_margin: Annotated[NonNegativeFloat, DLIB] = 0.0
    """dlib: the margin the crops were made with (to find the face box in a crop)."""
    num_jitters: Annotated[NonNegativeInt, DLIB] = 0
    """dlib: re-samplings per face."""
    facenet_weights: Annotated[str | None, FACENET] = None
    """facenet: a local InceptionResnetV1 checkpoint (nothing is downloaded)."""
    batch_size: Annotated[PositiveInt, FACENET] = 32
    """facenet: crops per batch."""


TSNE_DBSCAN = Only("method", "tsne_dbscan")


class PersonClusterParams(Params):
    """``deepfake.person_cluster``: REAL videos grouped into people."""

    block: ClassVar[str] = "deepfake.person_cluster"
    only_when = ("deepfake.split", "strategy", ("person_cluster",))

    method: Literal["kmeans", "tsne_dbscan"] = "kmeans"
    """kmeans | tsne_dbscan."""
    n_clusters: Annotated[PositiveInt | None, Only("method", "kmeans")] = 6
    """kmeans: clusters (at most the number of REAL videos with faces)."""
    eps: Annotated[NonNegativeFloat | None, TSNE_DBSCAN] = None
    """tsne_dbscan: DBSCAN's radius, in units of the t-SNE map's spread."""
    min_samples: Annotated[PositiveInt | None, TSNE_DBSCAN] = None
    """tsne_dbscan: DBSCAN's core size."""
    pca_components: Annotated[PositiveInt | None, TSNE_DBSCAN] = None
    """tsne_dbscan: PCA components before t-SNE."""
    perplexity: Annotated[NonNegativeFloat | None, TSNE_DBSCAN] = None
    """tsne_dbscan: t-SNE's perplexity (capped below the row count)."""

    @model_validator(mode="after")
    def _method_has_its_keys(self) -> PersonClusterParams:
        needed = ("n_clusters",) if self.method == "kmeans" else _TSNE_KEYS
        for key in needed:
            if getattr(self, key) is None:
                raise ParameterError(f"{self.block}.{key}", f"{self.method} needs it; got null")
        return self


_TSNE_KEYS = ("eps", "min_samples", "pca_components", "perplexity")


# -------------------------------------------------------------------------- training


UNET = Only("architecture", "unet_multitask")


class ModelEntry(Params):
    """One entry of ``deepfake.training.models``: a model trained over the folds."""

    name: Annotated[str, Field(min_length=1)] | None = None
    """Key of its outputs ("<name>/fold<k>", no "/"); null: <architecture>_<backbone>_s<offset>."""
    architecture: Literal["classifier", "unet_multitask"]
    """classifier | unet_multitask (a UNet decoder predicts the manipulation mask)."""
    backbone: str
    """Any timm model name (unet_multitask needs features_only support)."""
    seed_offset: NonNegativeInt = 0
    """Added to the run seed (several seeds of one backbone = an ensemble)."""
    mask_stride: Annotated[Int, UNET] = 1
    """unet_multitask: the finest stride its decoder reaches (1, 2, 4, 8, 16 or 32)."""
    decoder_channels: Annotated[PositiveInt | None, UNET] = None
    """unet_multitask: the widest decoder block (null: the UNet taper)."""

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str | None) -> str | None:
        if name is not None and (KEY_SEP in name or not name.strip()):
            raise ValueError(f"expected a non-empty string without {KEY_SEP!r}, got {name!r}")
        return name

    @field_validator("backbone")
    @classmethod
    def _known_to_timm(cls, backbone: str) -> str:
        from podium.core.models import check_backbone

        try:
            return check_backbone(backbone, "backbone")
        except ParameterError as error:  # reported under this entry's own path
            raise ValueError(error.problem) from None

    @field_validator("mask_stride")
    @classmethod
    def _power_of_two(cls, stride: int) -> int:
        if stride not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"expected 1, 2, 4, 8, 16 or 32, got {stride!r}")
        return stride

    @model_validator(mode="after")
    def _default_name(self) -> ModelEntry:
        if self.name is None:  # filled in, not "set": the logged block stays as written
            name = f"{self.architecture}_{self.backbone}_s{self.seed_offset}"
            object.__setattr__(self, "name", name)
        return self


class TrainingOptimizer(OptimizerParams):
    """``deepfake.training.optimizer`` (core.optim's shape), conf/base's defaults."""

    name: str = "adamw"
    lr: NonNegativeFloat = 2e-3
    weight_decay: NonNegativeFloat = 1e-4


_SchedulerName = SchedulerParams.model_fields["name"].annotation


class TrainingScheduler(SchedulerParams):
    """``deepfake.training.scheduler`` (core.optim's shape), conf/base's defaults."""

    name: _SchedulerName = "cosine"  # type: ignore[valid-type]
    min_lr: NonNegativeFloat = 1e-6
    decay_rate: Fraction = 0.5
    patience: NonNegativeInt = 1


class TrainingAugment(Transforms):
    """``deepfake.training.augment``: albumentations 2.x transforms of each training crop."""

    block: ClassVar[str] = "deepfake.training.augment"


class LossWeights(Params):
    """``deepfake.training.loss_weights`` (unet_multitask): the total loss is
    classification * BCE(logit) + segmentation * seg_loss."""

    classification: NonNegativeNumber = 1.0
    segmentation: NonNegativeNumber = 1.0

    @model_validator(mode="after")
    def _not_both_zero(self) -> LossWeights:
        if self.classification + self.segmentation <= 0:
            raise ValueError("the weights cannot both be 0")
        return self


_MaskSide = Annotated[Int, Field(ge=8)]
_Kernel = Annotated[Int, Field(ge=1)]


class SelfBlendParams(Params):
    """``deepfake.training.sbi`` (``pseudo_fakes: sbi``): how the Self-Blended Images are
    made (podium.faces.self_blend) and drawn; the defaults are the paper's."""

    block: ClassVar[str] = "deepfake.training.sbi"

    landmarks: Literal["dlib", "ellipse"] = "dlib"
    """dlib (68 points; an ellipse where they are unusable) | ellipse (always the ellipse)."""
    blend_ratios: Annotated[list[Annotated[Fraction, Field(gt=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: list(BLEND_RATIOS)
    )
    """The mask is scaled by one of them, drawn uniformly."""
    mask_size: tuple[_MaskSide, _MaskSide] = (192, 256)
    """[low, high]: the mask is resized to sides drawn in it before the blurs."""
    blur_kernels: tuple[_Kernel, _Kernel] = (5, 25)
    """[low, high], odd: the two Gaussian blurs' kernel sizes (in the resized mask)."""
    blur_sigma: tuple[PositiveFloat, PositiveFloat] = (5.0, 45.0)
    """[low, high]: the second blur's sigma."""
    elastic_alpha: NonNegativeFloat = 50.0
    """The mask's elastic deformation: strength (0: none) ..."""
    elastic_sigma: PositiveFloat = 7.0
    """... and smoothness."""
    fake_share: Fraction | None = None
    """With real fakes and balance_classes: the share of the FAKE draws that are
    pseudo-fakes; null: as many as their number (one per REAL crop) gives."""

    @field_validator("mask_size", "blur_kernels", "blur_sigma")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[0] > bounds[1]:
            raise ValueError(f"expected [low, high] with low <= high, got {list(bounds)}")
        return bounds

    @field_validator("blur_kernels")
    @classmethod
    def _odd(cls, kernels: tuple[int, int]) -> tuple[int, int]:
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"expected odd kernel sizes (Gaussian kernels), got {list(kernels)}")
        return kernels

    def settings(self) -> BlendSettings:
        """The blend's settings, as :func:`podium.faces.self_blend.self_blend` takes them."""
        return BlendSettings(
            blend_ratios=tuple(self.blend_ratios),
            mask_size=tuple(self.mask_size),
            blur_kernels=tuple(self.blur_kernels),
            blur_sigma=tuple(self.blur_sigma),
            elastic_alpha=self.elastic_alpha,
            elastic_sigma=self.elastic_sigma,
        )


MIXING = Only("enabled", True)


class PairMixupParams(Params):
    """``deepfake.training.pair_mixup``: the DFDC 3rd place's mixup of aligned pairs. A FAKE
    training crop is mixed with its original's crop of the same frame and face as
    ``(1 - t) * real + t * fake``, both augmented alike, labelled ``t ~ Beta(alpha, alpha)``
    (score such models with ``deepfake.video_score.rule: power_weighted``)."""

    block: ClassVar[str] = "deepfake.training.pair_mixup"

    enabled: Bool = False
    """Mix each FAKE training crop with its original's aligned crop."""
    alpha: Annotated[PositiveFloat, MIXING] = 0.5
    """t ~ Beta(alpha, alpha): 0.5 puts most draws near 0 or 1 (the 3rd place's)."""
    share: Annotated[Fraction, MIXING] = 1.0
    """The share of a FAKE crop's draws that are mixed (1: every draw, as the 3rd place)."""
    min_iou: Annotated[Fraction, Field(gt=0), MIXING] = 0.5
    """An original's crop pairs with the FAKE's of the same frame whose face box overlaps
    it at least this much (IoU): the same face; the small offset left is undone by warping
    the original's crop onto the FAKE's."""


SBI = Only("pseudo_fakes", "sbi")
_Side = Annotated[Int, Field(ge=16)]
#: The keys of the old flat block, and where they went.
_FLAT_KEYS = ("lr", "weight_decay", "momentum", "scheduler_params")
_FLAT_KEYS_HINT = (
    "lr, weight_decay and momentum live in the optimizer block, scheduler_params in the "
    "scheduler block: optimizer: {name, lr, weight_decay, momentum}, scheduler: {name, per, "
    "warmup_epochs, min_lr, ...}"
)


def _default_models() -> list[ModelEntry]:
    entry = {"name": "unet_r10t", "architecture": "unet_multitask", "backbone": "resnet10t"}
    return [ModelEntry(**entry, mask_stride=4, decoder_channels=32, seed_offset=0)]


class TrainingParams(Params):
    """``deepfake.training``: a timm CNN per model x fold on face crops (see train.py)."""

    block: ClassVar[str] = "deepfake.training"

    models: Annotated[list[ModelEntry], Field(min_length=1)] = Field(
        default_factory=_default_models
    )
    """One entry per model trained over the folds (backbone x seed x architecture)."""
    image_size: _Side | tuple[_Side, _Side] = 112
    """Crops are resized to image_size x image_size (one integer or [height, width])."""
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 32
    """The global batch, split evenly over runtime.distributed processes."""
    predict_batch_size: PositiveInt = 64
    """Validation / out-of-fold / test batches (no gradients)."""
    optimizer: TrainingOptimizer = TrainingOptimizer()
    """core.optim's shape: any timm optimizer; no weight decay on norm weights and biases
    unless decay_norm_and_bias."""
    scheduler: TrainingScheduler = TrainingScheduler()
    """core.optim's shape: cosine | step | multistep | plateau (on val_loss) | poly |
    constant | none."""
    grad_clip: PositiveFloat | None = None
    """Max gradient norm; null: no clipping."""
    accumulate: PositiveInt = 1
    """Micro-batches per optimizer step (the effective batch: accumulate x batch_size)."""
    balance_classes: Bool = True
    """Draw REAL and FAKE crops equally often (calibration restores the prior)."""
    drop_rate: Fraction = 0.2
    """Dropout before the classification layer."""
    pretrained: Bool = False
    """timm ImageNet weights: needs the hub or a local cache."""
    augment: TrainingAugment = TrainingAugment([{"name": "HorizontalFlip", "p": 0.5}])
    """albumentations 2.x transforms applied (after the resize) to each crop and its mask."""
    loss_weights: LossWeights = LossWeights()
    segmentation_loss: Literal["bce", "dice", "bce_dice"] = "bce_dice"
    """bce | dice | bce_dice (unet_multitask only)."""
    pseudo_fakes: Literal["none", "sbi"] = "none"
    """none | sbi: each REAL training crop also serves as a Self-Blended Image, labelled FAKE
    (its mask the unet_multitask target), made afresh every epoch (the sbi block)."""
    reals_only: Annotated[Bool, SBI] = False
    """true (with pseudo_fakes: sbi): the folds train on REAL crops and their pseudo-fakes
    only; validation, out-of-fold and test predictions still cover every video."""
    sbi: Annotated[SelfBlendParams, SBI] = SelfBlendParams()
    """pseudo_fakes: sbi: how the pseudo-fakes are made and drawn."""
    pair_mixup: PairMixupParams = PairMixupParams()
    """Mixup of each FAKE crop with its original's aligned crop, labelled by the mix (off in
    conf/base; the index's original, frame and box columns pair them)."""
    folds_to_train: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None
    """null: every fold of the split; else a list of folds."""
    resume_from: Literal["latest"] | None = None
    """null: train every fold afresh | latest: continue its checkpoint, or take its result."""
    record_cache: PositiveInt = 4
    """Video records each DataLoader worker keeps open (LRU)."""
    progress: Bool = True
    """Per-epoch progress bars."""

    @model_validator(mode="before")
    @classmethod
    def _no_flat_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _FLAT_KEYS:
                if key in data:
                    raise ParameterError(f"{cls.block}.{key}", f"unknown key; {_FLAT_KEYS_HINT}")
        return data

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelEntry]) -> list[ModelEntry]:
        seen: set[str] = set()
        for i, entry in enumerate(models):
            if entry.name in seen:
                raise ParameterError(
                    f"{cls.block}.models[{i}].name", f"{entry.name!r} is used by another model"
                )
            seen.add(entry.name)
        return models

    @model_validator(mode="after")
    def _reals_only_needs_pseudo_fakes(self) -> TrainingParams:
        if self.reals_only and self.pseudo_fakes == "none":
            raise ParameterError(
                f"{self.block}.reals_only",
                "true needs pseudo_fakes: sbi (trained on REAL crops alone, the FAKE class "
                "comes from the pseudo-fakes); set pseudo_fakes: sbi, or reals_only: false",
            )
        return self

    @model_validator(mode="after")
    def _optimization_builds(self) -> TrainingParams:
        # timm builds the optimizer and the schedule on a stand-in parameter: a wrong
        # combination (warm-up past the last epoch, ...) stops the run here
        check_optimization(self.optimizer, self.scheduler, epochs=self.epochs, parameter=self.block)
        return self

    def not_applicable(self) -> set[str]:
        # the segmentation branch's settings mean nothing without a unet_multitask model
        unet = any(m.architecture == "unet_multitask" for m in self.models)
        return super().not_applicable() | (set() if unet else {"loss_weights", "segmentation_loss"})

    def image_hw(self) -> tuple[int, int]:
        """``image_size`` as (height, width)."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


# ---------------------------------------------------------------------------- scores


class VideoScoreParams(Params):
    """``deepfake.video_score``: one score per video from its frame scores."""

    block: ClassVar[str] = "deepfake.video_score"

    rule: Literal["mean", "confident_strategy", "confident_mean", "median", "power_weighted"] = (
        "mean"
    )
    """mean | median | confident_strategy (the DFDC 1st place rule) | confident_mean |
    power_weighted (the 3rd place rule)."""
    band_low: Fraction = 0.2
    """Both confident rules: frames below it are confidently REAL."""
    band_high: Fraction = 0.8
    """Both confident rules: frames above it are confidently FAKE."""

    @model_validator(mode="after")
    def _ordered(self) -> VideoScoreParams:
        if self.band_low > self.band_high:
            raise ParameterError(
                f"{self.block}.band_high",
                f"must be >= band_low ({self.band_low}), got {self.band_high}",
            )
        return self

    def not_applicable(self) -> set[str]:
        confident = self.rule in ("confident_strategy", "confident_mean")
        return set() if confident else {"band_low", "band_high"}


def _default_lgbm() -> dict[str, Any]:
    return {
        "num_boost_round": 100,
        "learning_rate": 0.05,
        "num_leaves": 4,
        "min_data_in_leaf": 3,
        "min_data_in_bin": 1,
    }


class StackingParams(Params):
    """``deepfake.stacking``: LightGBM on per-video features beside the mean frame score."""

    block: ClassVar[str] = "deepfake.stacking"

    enabled: Bool = True
    """Fit and report LightGBM beside the mean frame score."""
    replace_mean: Bool = False
    """true: the stacker's score, not the models' mean, goes on to calibration."""
    lgbm: dict[str, Any] = Field(default_factory=_default_lgbm)
    """LightGBM's parameters; the rounds as num_boost_round (objective and seed are podium's)."""

    @field_validator("lgbm")
    @classmethod
    def _lightgbm_settings(cls, lgbm: dict[str, Any]) -> dict[str, Any]:
        from podium.pipelines.deepfake.stacking import lgbm_settings

        lgbm_settings(lgbm, seed=0)  # raises a ParameterError naming the key
        return lgbm


class CalibrationParams(Params):
    """``deepfake.calibration``: the ensemble's logit scaled by ``factor``, shifted by
    ``shift`` and clipped."""

    block: ClassVar[str] = "deepfake.calibration"

    factor: Literal["fit"] | Annotated[Number, Field(gt=0)] = "fit"
    """A number (< 1 tempers confident scores), or fit (on out-of-fold scores)."""
    shift: Literal["fit"] | Number = "fit"
    """The logit shift: 0 (the write-up's scale only), a number, or fit (Platt)."""
    scale_bounds: tuple[NonNegativeNumber, NonNegativeNumber] = (0.05, 1.0)
    """factor: fit searches [low, high]."""
    clip_low: Annotated[Number, Field(ge=0, le=0.5)] = 0.01
    clip_high: Annotated[Number, Field(ge=0.5, le=1)] = 0.99
    target_prior: Annotated[Number, Field(gt=0, lt=1)] | None = None
    """The share of FAKE where the model is deployed: null keeps the training prior; a
    number shifts the test videos' calibrated logit by the log-odds difference."""

    @field_validator("scale_bounds")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not bounds[0] < bounds[1]:
            raise ValueError(f"expected [low, high] with low < high, got {list(bounds)}")
        return bounds


# ------------------------------------------------------------------------- inference


class InstanceParams(Params):
    """One row of ``deepfake_inference.instances``: the cost table's instance type."""

    price_per_hour: NonNegativeNumber
    """USD per hour (on-demand)."""
    videos_per_hour: NonNegativeNumber | None = None
    """null: this run's measured rate."""
    note: str | None = None


def _default_instances() -> dict[str, InstanceParams]:
    return {
        "p3.2xlarge": InstanceParams(
            price_per_hour=3.06, videos_per_hour=444, note="V100, DFDC's reference"
        ),
        "g4dn.xlarge": InstanceParams(
            price_per_hour=0.526, videos_per_hour=222, note="T4, about half a V100"
        ),
    }


class InferenceParams(Params):
    """``deepfake_inference``: scoring a folder of mp4s with a trained deepfake ensemble."""

    block: ClassVar[str] = "deepfake_inference"

    videos_folder: str = "data/01_raw/deepfake/test_videos"
    """Every *.mp4 in it is scored."""
    model_run_id: str | None = None
    """null: the latest local ensemble; else that MLflow run's (the catalog reads it from
    --params too)."""
    fallback: Literal["prior"] | Fraction = "prior"
    """Unreadable or faceless video: prior (as the training run scores a faceless video) |
    a probability."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto | cpu | cuda (one Dask worker per GPU)."""
    thresholds: Annotated[list[Fraction], Field(min_length=3, max_length=3)] | None = None
    """MTCNN's at scoring time; null: the training crops' own."""
    videos_per_task: PositiveInt = 4
    """Videos a task scores in a row: decode and detection run ahead of the model."""
    prefetch: PositiveInt = 2
    """Videos decoded and detected ahead of the model, per task."""
    window: PositiveInt = 16
    """Tasks in flight; finished results are saved before more are held."""
    budget_seconds_per_video: NonNegativeNumber = 8.1
    """DFDC: 9 GPU-hours for 4,000 videos."""
    budget_action: Literal["warn", "fail"] = "warn"
    """warn | fail (after the submission is saved), when the budget is exceeded."""
    projected_videos: PositiveInt = 4000
    """N of "hours for N videos" (DFDC's private test set)."""
    instances: dict[str, InstanceParams] = Field(default_factory=_default_instances)
    """Instance types for the cost table."""

    @field_validator("model_run_id")
    @classmethod
    def _a_run_id(cls, run_id: str | None) -> str | None:
        if run_id is not None and not run_id.strip():
            raise ValueError(f"expected a run id or null, got {run_id!r}")
        return run_id
