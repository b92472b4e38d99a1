"""Frame models of the deepfake pipeline: K-fold training, out-of-fold and test predictions.

Every face crop is one sample labelled by its video (FAKE = 1). Each model spec
(backbone x seed x architecture) is trained once per fold on the other folds' videos and
predicts its own fold's videos, so every video gets out-of-fold (OOF) frame probabilities
from the one fold model that never saw it. Unseen (test) videos get the mean of a model's
fold-model **logits**, turned into a probability.

Architectures (:mod:`podium.pipelines.deepfake.model`): ``classifier`` and
``unet_multitask`` (a UNet decoder predicts the manipulation mask, the record's ``masks``,
beside a classification branch at the encoder's end); its loss is ``w_cls * BCE(logit) +
w_seg * seg_loss(mask)``, ``seg_loss`` one of ``bce``, ``dice``, ``bce_dice``; a FAKE whose
record has no masks adds no segmentation loss.

Pseudo-fakes (``pseudo_fakes: sbi``, :mod:`podium.faces.self_blend`): every REAL crop a
fold trains on also serves as a Self-Blended Image, labelled FAKE, made afresh each epoch
in the DataLoader workers; its mask (the unet_multitask target) is what the blend changed,
thresholded as a fake's is against its original. A training set then holds its crops plus
one pseudo-fake per REAL crop (the paper pairs each real face with its blend), so
``balance_classes`` keeps REAL and FAKE draws equal, the pseudo-fakes sharing the FAKE half
with the real fakes in proportion to their number (or ``sbi.fake_share``). ``reals_only``
trains on the REAL crops and their pseudo-fakes alone; validation and out-of-fold
predictions still cover every video of the fold.

Pair mixup (``pair_mixup.enabled``, the DFDC 3rd place's cure for overfitting): a FAKE crop
a fold trains on is served as ``(1 - t) * real + t * fake``, labelled ``t ~ Beta(alpha,
alpha)`` (a soft label: BCE with logits takes it as it is), where ``real`` is its original's
crop of the same frame and face, both given the same augmentations. The extraction cuts each
video around its own detections, so the pair is found in the face index (the ``original``
it names, the same ``frame_index``, box IoU >= ``min_iou``) and the original's crop is
resampled onto the FAKE's cut (:func:`_aligned_original`). A FAKE crop without such a
partner is served unmixed (counted in the log); REAL crops are served as they are. With
pseudo-fakes on too, only the real fakes are mixed (a pseudo-fake is its own source's blend).

Here is only the competition's part: the lazy crop dataset, the losses, the validation pass
(frame log loss, mask IoU) and the K-fold recipe. The engine is ``podium.core``: ``optim``
(timm's optimizer and schedule factories, the shared ``optimizer`` / ``scheduler`` blocks),
``training.fit`` (AMP, channels_last, a checkpoint every epoch, resume), ``ddp.launch``
(each (model, fold) in ``runtime.distributed`` processes, or with ``strategy: jobs`` the
(model, fold) trainings side by side, one process each; one process: in the caller) and
``seeding.training_seed``. Settings: the ``deepfake.training`` block, its keys and defaults
in :class:`~podium.pipelines.deepfake.params.TrainingParams`; errors name
``deepfake.training.<key>``.

Seeding: each process seeds itself with ``training_seed(seed + seed_offset, model=<name>,
fold=<k>, rank=<rank>)`` and ``deepfake.deterministic``, so a fold model is the same whether
trained alone (``folds_to_train``) or with the others. The training loader always samples
the distributed way (one seeded global order, each rank a share of the global
``batch_size``): a network without batch statistics trains to the same weights on 1 or N
processes; BatchNorm sees per-rank batches, so there the runs agree within noise.

Resume (``core.resume``): with a checkpoint folder each (model, fold) checkpoints every epoch
in ``<folder>/<settings digest>/<model>-<spec digest>/fold<k>/`` and keeps its result
(weights, history, OOF logits) there once finished; the settings digest covers what shapes
the training (settings, seed, data, device, precision, processes), the spec digest the
model's own entry, so adding a model keeps the others' folds. ``resume_from: latest``
continues a checkpoint or takes a finished result; ``null`` empties an earlier run's folder
and starts afresh.

Memory: :class:`_FrameDataset` holds only face-index rows and the records' load functions;
each DataLoader worker opens a record when it first needs one of its crops and keeps the
last ``record_cache`` (LRU), so memory does not grow with the number of videos. Several
processes get the load functions pickled (PartitionedDataset's are). No kedro or mlflow.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from podium.core import ddp
from podium.core.augment import build_transforms
from podium.core.checkpoints import cpu_state_dict
from podium.core.config import ParameterError
from podium.core.device import Runtime, autocast, eval_mode, resolve_runtime, to_channels_last
from podium.core.ensemble import sigmoid
from podium.core.optim import build_optimizer, build_scheduler
from podium.core.resume import (
    RESUME_FROM,
    check_resume_from,
    checkpoint_folder,
    data_digest,
    run_jobs,
    runtime_shaping,
    short_digest,
)
from podium.core.seeding import seed_everything, training_seed
from podium.core.training import (
    fit,
    move_to_device,
    predict,
    seeded_loader,
    split_batch,
    updates_per_epoch,
)
from podium.faces.detect import CropLayout, crop_layout
from podium.faces.self_blend import face_box_in_crop, face_landmarks, load_predictor, self_blend
from podium.faces.video import DEFAULT_SETTINGS, manipulation_masks
from podium.pipelines.deepfake.model import build_network
from podium.pipelines.deepfake.params import (
    PairMixupParams,
    SelfBlendParams,
    TrainingParams,
    fold_key,
    split_fold_key,
    typed,
)

__all__ = [
    "RESUME_FROM",
    "check_state_dicts",
    "fold_network",
    "original_partners",
    "predict_frame_models",
    "predict_videos",
    "video_batches",
    "train_fold",
    "train_frame_models",
]

log = logging.getLogger(__name__)

#: Parameter path of the settings block in conf/base/parameters_deepfake.yml.
PARAMETER = "deepfake.training"
LABELS = {"REAL": 0.0, "FAKE": 1.0}
CHECKPOINT_FILE = "checkpoint.pt"
#: Settings that change neither a fold model nor its predictions (left out of the digest).
#: How an error asks for a node of the deepfake pipeline to be run again.
_RERUN = "kedro run --pipelines=deepfake --nodes="
_NOT_SHAPING = ("models", "folds_to_train", "record_cache", "progress", "resume_from")
#: Pseudo-fake settings: in the digest only when pseudo-fakes are on, so the digests of the
#: configurations without them stay what they were before the keys existed.
_PSEUDO_FAKE_KEYS = ("pseudo_fakes", "reals_only", "sbi")
#: The face-index columns that pair a FAKE's crops with its original's (pair mixup).
_PAIR_COLUMNS = ("video", "original", "frame_index", "x1", "y1", "x2", "y2", "height", "width")
#: The optimizer and scheduler keys a checkpoint's settings digest always holds (conf/base
#: sets them); a key set beyond them joins the digest, one left at its default does not, so
#: the digest of a configuration stays what it was when the shared shapes grow a key.
_DIGESTED = {
    "optimizer": ("name", "lr", "weight_decay", "momentum"),
    "scheduler": ("name", "per", "warmup_epochs", "min_lr", "step_size", "decay_rate", "patience"),
}


# ---------------------------------------------------------------------------- settings


def _param(key: str) -> str:
    return f"{PARAMETER}.{key}"


def shaping_settings(config: TrainingParams) -> dict[str, Any]:
    """The settings part of a checkpoint folder's digest: every setting that shapes a fold
    model, as plain JSON-able values (``image_size`` as [height, width])."""
    shaping: dict[str, Any] = {}
    for key in type(config).model_fields:
        if key in _NOT_SHAPING or (key in _PSEUDO_FAKE_KEYS and config.pseudo_fakes == "none"):
            continue
        if key == "pair_mixup" and not config.pair_mixup.enabled:  # digests as before the key
            continue
        value = config[key]
        if key in _DIGESTED:
            keys = [*_DIGESTED[key], *sorted(value.model_fields_set - set(_DIGESTED[key]))]
            value = {k: value[k] for k in keys}
        elif key == "image_size":
            value = config.image_hw()
        elif key == "augment":
            value = list(value.root)
        elif key == "loss_weights":
            value = dict(value)
        elif key in ("sbi", "pair_mixup"):
            value = value.as_dict()
        shaping[key] = value
    return shaping


# ---------------------------------------------------------------------------- data


def _check_record(partition: str, record: Any) -> dict:
    crops = record.get("crops") if isinstance(record, Mapping) else None
    if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(
            f"record {partition!r}: `crops` must be a uint8 array (n, H, W, 3), got "
            f"{getattr(crops, 'shape', type(crops).__name__)}; fix: delete the record and "
            f"run {_RERUN}deepfake.faces.extract_faces"
        )
    return record


def _crop_rows(index: pd.DataFrame, partitions: Sequence[str]) -> pd.DataFrame:
    """The face-index rows of ``partitions``, in their order and then crop order."""
    missing = {"partition", "crop"} - set(index.columns)
    if missing:
        raise ValueError(f"the face index lacks column(s) {sorted(missing)}")
    order = pd.Series(np.arange(len(partitions)), index=pd.Index(partitions))
    rows = index.loc[index["partition"].isin(order.index), ["partition", "crop"]]
    absent = sorted(set(partitions) - set(rows["partition"]))
    if absent:
        raise ValueError(
            f"{len(absent)} video(s) have no crops in the face index, e.g. {absent[:3]}; fix: "
            f"run {_RERUN}deepfake.faces.index_faces (or mark them has_faces = false)"
        )
    rows = rows.assign(_order=rows["partition"].map(order).to_numpy())
    return rows.sort_values(["_order", "crop"], kind="stable").drop(columns="_order")


def _check_videos(videos: pd.DataFrame) -> pd.DataFrame:
    missing = {"partition", "label", "fold"} - set(videos.columns)
    if missing:
        raise ValueError(f"videos table lacks column(s) {sorted(missing)}")
    if videos.empty:
        raise ValueError("videos table is empty: nothing to train on")
    if videos["partition"].duplicated().any():
        dupes = videos.loc[videos["partition"].duplicated(), "partition"].tolist()[:5]
        raise ValueError(f"videos table lists partitions more than once, e.g. {dupes}")
    bad = sorted(set(videos["label"]) - set(LABELS))
    if bad:
        raise ValueError(f"videos.label must be REAL or FAKE, found {bad}")
    if videos["fold"].isna().any():
        raise ValueError("videos.fold has missing values: every video needs a fold")
    return videos.reset_index(drop=True)


class _PseudoFakes:
    """The Self-Blended Images of a training set (``pseudo_fakes: sbi``).

    ``sources``: the positions, among the dataset's stored crops, of the REAL crops each
    pseudo-fake is made from (one pseudo-fake per REAL crop, as the paper pairs every real
    face with its blend). Every draw of an item (its blend and the training augmentations)
    comes from a generator seeded by ``(seed, epoch, index)``, the epoch read from
    ``sampler`` (the training loader's, which ``fit`` moves on each epoch): the same item of
    the same epoch is the same tensor in any DataLoader worker, DDP rank or resumed run.
    """

    def __init__(self, sources: np.ndarray, seed: int, params: SelfBlendParams) -> None:
        self.sources = np.asarray(sources, dtype=np.int64)
        self.seed = int(seed)
        self.landmarks = params.landmarks
        self.settings = params.settings()
        self.fake_share = params.fake_share
        self.sampler: Any = None

    def __len__(self) -> int:
        return len(self.sources)

    def generators(self, index: int) -> list[np.random.Generator]:
        """The blend's and the augmentations' generators of item ``index`` this epoch."""
        return _item_generators(self.seed, self.sampler, index)[:2]


def _item_generators(seed: int, sampler: Any, index: int) -> list[np.random.Generator]:
    """Item ``index``'s generators this epoch (the epoch read from ``sampler``): the blend's,
    the augmentations' and the mix's. Spawned children depend on their position only, so
    the first two are the same whatever else a training set draws."""
    epoch = int(getattr(sampler, "epoch", 0))
    return np.random.default_rng([int(seed), epoch, int(index)]).spawn(3)


class _PairMixup:
    """The aligned real-fake pairs of a training set (``pair_mixup.enabled``).

    ``partners``: per stored crop, the position of its original's aligned crop among the
    dataset's crops (-1: none, or not a FAKE). A FAKE crop with a partner is served, in
    ``share`` of its draws, as ``(1 - t) * real + t * fake`` labelled ``t ~ Beta(alpha,
    alpha)``; ``t`` and the shared augmentations come from the item's generators seeded by
    ``(seed, epoch, index)`` as :class:`_PseudoFakes`' are, ``sampler`` giving the epoch.
    """

    def __init__(self, partners: np.ndarray, seed: int, params: PairMixupParams) -> None:
        self.partners = np.asarray(partners, dtype=np.int64)
        self.seed = int(seed)
        self.alpha = float(params.alpha)
        self.share = float(params.share)
        self.sampler: Any = None

    def draw(self, rng: np.random.Generator) -> float | None:
        """This draw's ``t``, or None when it is served unmixed."""
        if rng.random() >= self.share:
            return None
        return float(rng.beta(self.alpha, self.alpha))


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes ``a`` and ``b`` ((n, 4) x1, y1, x2, y2)."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def original_partners(
    index: pd.DataFrame, rows: pd.DataFrame, labels: np.ndarray, folds: np.ndarray, min_iou: float
) -> np.ndarray:
    """Per row of ``rows`` (``partition``, ``crop``), the position in ``rows`` of its
    original's crop of the same frame and face (-1: none; always -1 for a REAL).

    The original is the REAL video the face index's ``original`` column names (by its
    ``video``); its crop of the same ``frame_index`` and frame size whose box has the
    highest IoU with the FAKE's, at least ``min_iou``, in the same fold (fakes stay with
    their original in every split, so a fold never trains on one without the other)."""
    missing = sorted(set(_PAIR_COLUMNS) - set(index.columns))
    if missing:
        raise ValueError(
            f"{_param('pair_mixup')} pairs crops by the face index's columns, which lacks "
            f"{missing}; fix: run {_RERUN}deepfake.faces.index_faces"
        )
    table = rows[["partition", "crop"]].reset_index(drop=True)
    table = table.assign(_pos=np.arange(len(table)), _label=labels, _fold=folds)
    table = table.merge(
        index[["partition", "crop", *_PAIR_COLUMNS]], on=["partition", "crop"], how="left"
    )
    keys = ["frame_index", "height", "width", "_fold"]
    fakes = table[table["_label"] == LABELS["FAKE"]].rename(columns={"original": "_original"})
    reals = table[table["_label"] == LABELS["REAL"]]
    pairs = fakes.merge(
        reals, left_on=["_original", *keys], right_on=["video", *keys], suffixes=("", "_real")
    )
    partners = np.full(len(table), -1, np.int64)
    if pairs.empty:
        return partners
    box = ["x1", "y1", "x2", "y2"]
    iou = _box_iou(
        pairs[box].to_numpy(np.float64), pairs[[f"{c}_real" for c in box]].to_numpy(np.float64)
    )
    pairs = pairs.assign(_iou=iou)[iou >= min_iou]
    best = pairs.sort_values(["_pos", "_iou"], ascending=[True, False], kind="stable")
    best = best.drop_duplicates("_pos")
    partners[best["_pos"].to_numpy()] = best["_pos_real"].to_numpy()
    return partners


def _subset_partners(partners: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``partners`` (positions among all rows) as positions among the ``chosen`` rows; a
    partner that is not chosen is none (-1)."""
    position = np.cumsum(chosen) - 1
    ok = partners >= 0
    ok[ok] = chosen[partners[ok]]
    return np.where(ok, position[np.where(ok, partners, 0)], -1)[chosen]


def _seed_transforms(transforms: A.Compose, rng: np.random.Generator) -> None:
    seed = int(rng.integers(2**63))
    transforms.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _crop_geometry(record: Mapping[str, Any]) -> tuple[tuple[int, int], float, str] | None:
    """``(frame_hw, margin, crop_mode)`` the record's crops were cut with; None for a record
    without boxes or frame size."""
    if record.get("boxes") is None or record.get("height") is None or record.get("width") is None:
        return None
    settings = {**DEFAULT_SETTINGS, **(record.get("settings") or {})}
    frame_hw = (int(record["height"]), int(record["width"]))
    return frame_hw, float(settings["margin"]), settings["crop_mode"]


def _face_box(
    record: Mapping[str, Any], j: int, crop_hw: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """Crop ``j``'s face box in crop pixels, from its detected box and the extraction's
    margin and crop mode; None (the whole crop) for a record without them."""
    geometry = _crop_geometry(record)
    if geometry is None:
        return None
    frame_hw, margin, mode = geometry
    return face_box_in_crop(record["boxes"][j], crop_hw, frame_hw, margin, mode)


def _record_crop_layout(record: Mapping[str, Any], j: int) -> CropLayout | None:
    """Where crop ``j`` of ``record`` came from (:func:`podium.faces.detect.crop_layout`, the
    geometry it was cut with); None for a record without boxes or frame size."""
    geometry = _crop_geometry(record)
    if geometry is None:
        return None
    frame_hw, margin, mode = geometry
    box = [float(v) for v in record["boxes"][j]]
    return crop_layout(box, margin, frame_hw, record["crops"].shape[1:3], mode)


def _along(layout: CropLayout, axis: int) -> tuple[int, float, int, int]:
    """``(region start, scale, offset, resized length)`` of ``layout`` along ``axis`` (0: x,
    1: y): frame coordinate ``c`` lands at ``(c - start) * scale + offset`` in the crop, its
    content ``resized length`` pixels from ``offset`` on (the rest padding)."""
    return (
        layout.region[axis],
        layout.scale[axis],
        layout.offset[1 - axis],
        layout.resized[1 - axis],
    )


def _axis_map(fake: CropLayout, real: CropLayout, n: int, axis: int) -> np.ndarray:
    """The real crop's pixel coordinate of each of the FAKE crop's ``n`` pixel centres
    along ``axis`` (0: x, 1: y), through the frame (cv2's half-pixel convention)."""
    start, scale, offset, _ = _along(fake, axis)
    frame = start + (np.arange(n) - offset + 0.5) / scale - 0.5
    real_start, real_scale, real_offset, _ = _along(real, axis)
    return (frame - real_start + 0.5) * real_scale - 0.5 + real_offset


def _same_cut(a: CropLayout, b: CropLayout) -> bool:
    """Whether two crops hold the same frame pixels at the same places."""
    return (a.region, a.resized, a.offset) == (b.region, b.resized, b.offset)


def _aligned_original(
    fake: Mapping[str, Any], j: int, real: Mapping[str, Any], k: int
) -> np.ndarray:
    """The original's crop ``k`` resampled onto the FAKE's crop ``j`` (the same frame and
    face, cut around each video's own detection): pixel for pixel the same place of the
    frame. Where the original's crop holds none of it (past its region, or padding), the
    FAKE's own pixels: a face swap leaves the surroundings as they were."""
    image, source = fake["crops"][j], real["crops"][k]
    fake_layout, real_layout = _record_crop_layout(fake, j), _record_crop_layout(real, k)
    if fake_layout is None or real_layout is None or _same_cut(fake_layout, real_layout):
        return source  # the same cut (or no geometry to tell otherwise)
    height, width = image.shape[:2]
    xs, ys = (_axis_map(fake_layout, real_layout, n, a) for a, n in ((0, width), (1, height)))
    matrix = np.array([[xs[1] - xs[0], 0, xs[0]], [0, ys[1] - ys[0], ys[0]]], np.float64)
    warped = cv2.warpAffine(
        source,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )

    def inside(coords: np.ndarray, layout: CropLayout, axis: int) -> np.ndarray:
        _, _, offset, size = _along(layout, axis)
        return (coords >= offset - 0.5) & (coords <= offset + size - 0.5)

    own_x, own_y = np.arange(width), np.arange(height)
    valid = (inside(ys, real_layout, 1) & inside(own_y, fake_layout, 1))[:, None] & (
        inside(xs, real_layout, 0) & inside(own_x, fake_layout, 0)
    )[None, :]
    return np.where(valid[..., None], warped, image)


def _pseudo_fake(
    record: Mapping[str, Any], j: int, pseudo: _PseudoFakes, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)``: crop ``j``'s Self-Blended Image and its manipulation mask, the
    pixels it changes by the extraction's own rule (``mask_threshold``, ``mask_blur``), as
    a FAKE's mask is made against its original."""
    image = record["crops"][j]
    points, _ = face_landmarks(image, _face_box(record, j, image.shape[:2]), pseudo.landmarks)
    blended, _ = self_blend(image, points, rng, pseudo.settings)
    settings = {**DEFAULT_SETTINGS, **(record.get("settings") or {})}
    threshold, blur = float(settings["mask_threshold"]), float(settings["mask_blur"])
    mask = manipulation_masks(blended[None], image[None], threshold=threshold, blur=blur)[0]
    return blended, mask


class _FrameDataset(Dataset):
    """One sample per face crop, read lazily: ``{"image": uint8 (3, H, W), "target": {...}}``.

    ``rows``: face-index rows (``partition``, ``crop``), one per sample; ``loaders``: the
    records' load functions by partition; ``labels``: the FAKE label of each row. A worker
    opens a record when it first needs one of its crops and keeps the last ``cache_size``.
    The target holds ``label`` (float 0/1) and, ``with_masks``, ``mask`` (uint8 (1, H, W))
    and ``mask_weight`` (0 for a FAKE without masks: no segmentation loss for it).
    ``pseudo`` (:class:`_PseudoFakes`): after the rows come their pseudo-fakes, labelled
    FAKE, each with the mask of what its blend changed. ``mixup`` (:class:`_PairMixup`): a
    FAKE row with an original's partner is served mixed with it, labelled ``t``.
    """

    def __init__(
        self,
        loaders: Mapping[str, Callable[[], dict]],
        rows: pd.DataFrame,
        labels: np.ndarray,
        resize: A.Compose,
        augment: A.Compose | None = None,
        with_masks: bool = False,
        cache_size: int = 4,
        pseudo: _PseudoFakes | None = None,
        mixup: _PairMixup | None = None,
    ) -> None:
        codes, names = pd.factorize(rows["partition"])
        self.names = list(names)
        self.video = codes.astype(np.int64)
        self.crop = rows["crop"].to_numpy(np.int64)
        self.loaders = [loaders[name] for name in self.names]
        self.labels = np.asarray(labels, dtype=np.float32)
        self.resize = resize
        self.augment = augment
        self.with_masks = with_masks
        self.cache_size = cache_size
        self.pseudo = pseudo
        self.mixup = mixup
        if mixup is not None:  # the original's crop takes every draw the FAKE's takes
            for transforms in (resize, augment):
                if transforms is not None:
                    transforms.add_targets({"real": "image"})
        self._open: OrderedDict[int, dict] = OrderedDict()

    def __len__(self) -> int:
        return len(self.crop) + (0 if self.pseudo is None else len(self.pseudo))

    def class_balanced_weights(self) -> np.ndarray:
        """Per-crop sampling weights giving REAL and FAKE equal total weight.

        With pseudo-fakes they are FAKE items like the others; ``fake_share`` (when the
        rows hold FAKE crops too) gives them that share of the FAKE half instead."""
        labels = self.labels
        if self.pseudo is not None:
            labels = np.concatenate([labels, np.ones(len(self.pseudo), np.float32)])
        weights = np.zeros(len(labels), dtype=np.float64)
        for value in np.unique(labels):
            chosen = labels == value
            weights[chosen] = 1.0 / chosen.sum()
        real_fakes = int((self.labels == 1.0).sum())
        if self.pseudo is not None and self.pseudo.fake_share is not None and real_fakes:
            share, stored = float(self.pseudo.fake_share), len(self.labels)
            weights[:stored][self.labels == 1.0] = (1.0 - share) / real_fakes
            weights[stored:] = share / len(self.pseudo)
        return weights

    def _record(self, v: int) -> dict:
        record = self._open.get(v)
        if record is None:
            record = _check_record(self.names[v], self.loaders[v]())
            self._open[v] = record
            if len(self._open) > self.cache_size:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(v)
        return record

    def __getitem__(self, i: int) -> dict[str, Any]:
        mix_rng = None
        seeded = self.pseudo if self.pseudo is not None else self.mixup
        if seeded is not None:
            blend_rng, augment_rng, mix_rng = _item_generators(seeded.seed, seeded.sampler, i)
            if self.augment is not None:
                _seed_transforms(self.augment, augment_rng)
            if self.pseudo is not None and i >= len(self.crop):
                return self._pseudo_fake(int(self.pseudo.sources[i - len(self.crop)]), blend_rng)
        record = self._record(int(self.video[i]))
        j = int(self.crop[i])
        label = self.labels[i]
        mask = self._stored_mask(record, j, label) if self.with_masks else None
        if self.mixup is not None and self.mixup.partners[i] >= 0:
            t = self.mixup.draw(mix_rng)
            if t is not None:
                return self._mixed(record, j, int(self.mixup.partners[i]), t, mask)
        return self._sample(record["crops"][j], label, mask)

    def _mixed(
        self, record: dict, j: int, k: int, t: float, mask: tuple[np.ndarray, float] | None
    ) -> dict[str, Any]:
        """FAKE crop ``j`` of ``record`` mixed with stored crop ``k`` (its original's aligned
        crop): ``(1 - t) * real + t * fake`` of the pair resized and augmented alike (as
        uint8, rounded), labelled ``t``. The unet_multitask target stays the FAKE's mask, its
        weight times ``t``: the mixed pixels differ from the original exactly there at any
        ``t`` > 0 (the mask says where, the label how much), and a nearly real mix, whose
        traces are faint, asks little of the segmentation."""
        real = _aligned_original(record, j, self._record(int(self.video[k])), int(self.crop[k]))
        if mask is not None:
            mask = (mask[0], mask[1] * t)
        sample = self._sample(record["crops"][j], np.float32(t), mask, real=real)
        fake, real = sample.pop("image").float(), sample.pop("real").float()
        sample["image"] = torch.round((1.0 - t) * real + t * fake).to(torch.uint8)
        return sample

    def _pseudo_fake(self, k: int, rng: np.random.Generator) -> dict[str, Any]:
        """The pseudo-fake of stored crop ``k`` (a REAL one), labelled FAKE."""
        record = self._record(int(self.video[k]))
        image, changed = _pseudo_fake(record, int(self.crop[k]), self.pseudo, rng)
        return self._sample(image, np.float32(1.0), (changed, 1.0) if self.with_masks else None)

    @staticmethod
    def _stored_mask(record: Mapping[str, Any], j: int, label: float) -> tuple[np.ndarray, float]:
        masks = record.get("masks")
        if masks is not None:
            return np.asarray(masks[j], dtype=np.uint8), 1.0
        # a REAL: nothing manipulated; a FAKE without masks: ignored
        return np.zeros(record["crops"].shape[1:3], np.uint8), float(label == 0.0)

    def _sample(
        self,
        image: np.ndarray,
        label: Any,
        mask: tuple[np.ndarray, float] | None,
        real: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The resized, augmented sample; ``mask``: (mask, weight) with ``with_masks``;
        ``real``: a second image (``"real"`` in the sample) given the very same draws."""
        target: dict[str, Any] = {"label": torch.tensor(label)}
        extra = {} if real is None else {"real": real}
        if mask is None:
            out = self.resize(image=image, **extra)
            if self.augment is not None:
                out = self.augment(image=out["image"], **_others(out, extra))
        else:
            out = self.resize(image=image, mask=mask[0], **extra)
            if self.augment is not None:
                out = self.augment(image=out["image"], mask=out["mask"], **_others(out, extra))
            target["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"]))[None]
            target["mask_weight"] = torch.tensor(mask[1], dtype=torch.float32)
        sample = {"image": _chw(out["image"]), "target": target}
        if real is not None:
            sample["real"] = _chw(out["real"])
        return sample


def _others(out: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    return {key: out[key] for key in extra}


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _resize(size: tuple[int, int]) -> A.Compose:
    return A.Compose([A.Resize(height=size[0], width=size[1])], seed=0)


# ---------------------------------------------------------------------------- losses


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample soft Dice loss (smoothed: an empty target asks for an empty prediction)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    intersection = (p * t).sum(1)
    return 1.0 - (2.0 * intersection + 1.0) / (p.sum(1) + t.sum(1) + 1.0)


def _make_loss(
    architecture: str, weights: Mapping[str, float], segmentation_loss: str
) -> Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], torch.Tensor]:
    w_cls, w_seg = float(weights["classification"]), float(weights["segmentation"])

    def classification(outputs: Mapping[str, torch.Tensor], targets: Mapping) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            outputs["logit"].float(), targets["label"].float()
        )

    if architecture == "classifier":
        return classification

    def multitask(outputs: Mapping[str, torch.Tensor], targets: Mapping) -> torch.Tensor:
        logits = outputs["mask"].float()
        target = targets["mask"].float()
        per_sample = torch.zeros(logits.shape[0], device=logits.device)
        if segmentation_loss in ("bce", "bce_dice"):
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            per_sample = per_sample + bce.flatten(1).mean(1)
        if segmentation_loss in ("dice", "bce_dice"):
            per_sample = per_sample + _dice_loss(logits, target)
        weight = targets["mask_weight"].float()
        segmentation = (per_sample * weight).sum() / weight.sum().clamp_min(1.0)
        return w_cls * classification(outputs, targets) + w_seg * segmentation

    return multitask


# ---------------------------------------------------------------------------- evaluation


def _batches(model: nn.Module, loader: DataLoader, runtime: Runtime):
    """``(outputs, targets)`` per batch, forward only, on ``runtime.device``."""
    for batch in loader:
        inputs, targets = split_batch(batch)
        inputs = move_to_device(inputs, runtime.device, non_blocking=True)
        targets = move_to_device(targets, runtime.device, non_blocking=True)
        if runtime.channels_last:
            inputs = to_channels_last(inputs, runtime.device)
        with autocast(runtime.amp):
            outputs = model(inputs)
        yield outputs, targets


def _validator(
    loader: DataLoader,
    loss_fn: Callable[..., torch.Tensor],
    runtime: Runtime,
    last: dict[str, np.ndarray],
) -> Callable[[nn.Module], dict[str, float]]:
    """``val_fn`` for ``fit``: val_loss, per-frame val_log_loss, val_mask_iou (masks).

    Each DDP rank scores its block of the fold (``ddp.rank_block``); the sums and logits are
    gathered, so every rank returns the fold's metrics. Keeps the latest epoch's logits of
    the whole fold in ``last["logit"]``: after the final epoch they are the fold model's
    out-of-fold predictions (no second pass over the fold).
    """

    def validate(model: nn.Module) -> dict[str, float]:
        # loss, log loss, mask intersection, mask union (fp32: MPS has no fp64)
        sums = torch.zeros(4, device=runtime.device)
        has_masks, count, chunks = False, 0, []
        with eval_mode(model), torch.no_grad():
            for outputs, targets in _batches(model, loader, runtime):
                size = int(targets["label"].shape[0])
                logits = outputs["logit"].float()
                sums[0] += loss_fn(outputs, targets).float() * size
                sums[1] += F.binary_cross_entropy_with_logits(
                    logits, targets["label"].float(), reduction="sum"
                )
                count += size
                chunks.append(logits.cpu())
                if "mask" in outputs:
                    has_masks = True
                    keep = targets["mask_weight"].view(-1, 1, 1, 1) > 0
                    predicted = (outputs["mask"] > 0) & keep
                    actual = (targets["mask"] > 0) & keep
                    sums[2] += (predicted & actual).sum()
                    sums[3] += (predicted | actual).sum()
        local = torch.cat(chunks).numpy() if chunks else np.zeros(0, np.float32)
        parts = ddp.all_gather_objects((sums.cpu().numpy(), count, has_masks, local))
        total = np.sum([p[0] for p in parts], axis=0) if len(parts) > 1 else parts[0][0]
        count = sum(p[1] for p in parts)
        last["logit"] = np.concatenate([p[3] for p in parts]).astype(np.float32)
        metrics = {"val_loss": float(total[0]) / count, "val_log_loss": float(total[1]) / count}
        if any(p[2] for p in parts):  # nothing predicted where nothing is manipulated: 1
            metrics["val_mask_iou"] = float(total[2] / total[3]) if total[3] > 0 else 1.0
        return metrics

    return validate


def _split(values: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _probabilities(logits: np.ndarray) -> np.ndarray:
    return sigmoid(logits).astype(np.float32)


# ---------------------------------------------------------------------------- one fold


def _network(spec: Mapping[str, Any], config: Mapping[str, Any], pretrained: bool) -> nn.Module:
    return build_network(
        spec["architecture"],
        spec["backbone"],
        pretrained=pretrained,
        drop_rate=config["drop_rate"],
        mask_stride=spec["mask_stride"],
        decoder_channels=spec["decoder_channels"],
        parameter=_param("models"),
    )


def _check_landmarks(config: TrainingParams) -> None:
    """dlib's landmarks load here, before any training, or the run stops naming the key."""
    if config.pseudo_fakes == "none" or config.sbi.landmarks != "dlib":
        return
    try:
        load_predictor()
    except (ImportError, RuntimeError) as error:
        raise ParameterError(
            _param("sbi.landmarks"), f"dlib's 68 points are unavailable ({error}); or use ellipse"
        ) from error


def _training_crops(
    config: TrainingParams, labels: np.ndarray, held_out: np.ndarray, seed: int
) -> tuple[np.ndarray, _PseudoFakes | None]:
    """The crops a fold trains on (the other folds'; their REAL crops only with
    ``reals_only``) and, with ``pseudo_fakes: sbi``, the pseudo-fakes of their REAL crops,
    drawn from ``seed`` (the fold's loader seed)."""
    chosen = ~held_out
    if config.reals_only:
        chosen = chosen & (labels == LABELS["REAL"])
    if config.pseudo_fakes == "none":
        return chosen, None
    if config.sbi.landmarks == "dlib":
        load_predictor()  # once, before the loader's workers fork: they share it
    sources = np.flatnonzero(labels[chosen] == LABELS["REAL"])
    return chosen, _PseudoFakes(sources, seed, config.sbi)


def train_fold(job: Mapping[str, Any], checkpoints: str | None = None) -> dict[str, Any]:
    """Train one (model, fold) and predict its fold: the body every DDP process runs.

    Top level (``ddp.launch`` spawns it). ``job``: ``records`` (load functions), ``rows``
    (face-index rows of every crop), ``labels``, ``in_fold`` (the crops validated on),
    ``config`` (checked settings), ``spec`` (the model), ``fold``, ``seed`` (run seed +
    seed offset), ``deterministic``, ``runtime`` (the block), ``partners`` (with pair
    mixup: :func:`original_partners` of the rows), ``checkpoint`` (path or None).
    Returns ``{"state_dict", "history", "logits"}`` (CPU tensors and plain values).
    """
    config, spec, fold = job["config"], job["spec"], int(job["fold"])
    rt = ddp.rank_runtime(resolve_runtime(job["runtime"]))
    # One global sampling order for all ranks; each rank its own dropout and augmentations.
    loader_seed = training_seed(job["seed"], model=spec["name"], fold=fold)
    seed_everything(
        training_seed(job["seed"], model=spec["name"], fold=fold, rank=ddp.rank()),
        job["deterministic"],
    )
    with_masks = spec["architecture"] == "unet_multitask"
    loss_fn = _make_loss(spec["architecture"], config["loss_weights"], config["segmentation_loss"])
    network = _network(spec, config, pretrained=config["pretrained"])
    augment = build_transforms(list(config.augment), parameter=_param("augment"))
    rows, labels, held_out = job["rows"], job["labels"], job["in_fold"]
    common = (_resize(config.image_hw()), with_masks, config.record_cache)

    def crops(
        chosen: np.ndarray,
        transforms: A.Compose | None,
        pseudo: _PseudoFakes | None = None,
        mixup: _PairMixup | None = None,
    ) -> _FrameDataset:
        resize, masks, cache = common
        return _FrameDataset(
            job["records"],
            rows[chosen],
            labels[chosen],
            resize,
            transforms,
            masks,
            cache,
            pseudo,
            mixup,
        )

    trained_on, pseudo = _training_crops(config, labels, held_out, loader_seed)
    mixup = None
    if config.pair_mixup.enabled:
        partners = _subset_partners(job["partners"], trained_on)
        mixup = _PairMixup(partners, loader_seed, config.pair_mixup)
    train_set = crops(trained_on, augment, pseudo, mixup)
    val_set = crops(held_out, None)
    optimizer = build_optimizer(network, config["optimizer"], parameter=_param("optimizer"))
    train_loader = seeded_loader(
        train_set,
        config["batch_size"],
        shuffle=True,
        seed=loader_seed,
        runtime=rt,
        sample_weights=train_set.class_balanced_weights() if config["balance_classes"] else None,
        distributed=True,  # one process draws what N processes draw together
    )
    for seeded in (pseudo, mixup):  # their draws follow the epochs fit gives this sampler
        if seeded is not None:
            seeded.sampler = train_loader.sampler
    schedule = build_scheduler(
        optimizer,
        config["scheduler"],
        epochs=config["epochs"],
        steps_per_epoch=updates_per_epoch(train_loader, config["accumulate"]),
        parameter=_param("scheduler"),
    )
    val_loader = seeded_loader(
        ddp.rank_block(val_set),
        config["predict_batch_size"],
        shuffle=False,
        seed=loader_seed,
        runtime=rt,
    )
    last: dict[str, np.ndarray] = {}
    validate = _validator(val_loader, loss_fn, rt, last)
    key = fold_key(spec["name"], fold)
    history = fit(
        network,
        train_loader,
        loss_fn=loss_fn,
        optimizer=optimizer,
        epochs=config["epochs"],
        device=rt.device,
        amp=rt.amp,
        scheduler=schedule,
        val_fn=validate,
        checkpoint_path=None if checkpoints is None else Path(checkpoints) / CHECKPOINT_FILE,
        grad_clip=config["grad_clip"],
        accumulate=config["accumulate"],
        progress=config["progress"],
        channels_last=rt.channels_last,
        on_epoch_end=lambda epoch, m: log.info("%s epoch %d: %s", key, epoch, m),
    )
    if "logit" not in last:  # resumed from its final epoch's checkpoint: predict the fold
        validate(network)
    return {
        "state_dict": cpu_state_dict(network),
        "history": history,
        "logits": torch.from_numpy(last["logit"]),
    }


# ---------------------------------------------------------------------------- nodes


def train_frame_models(
    records: Mapping[str, Any],
    index: pd.DataFrame,
    videos: pd.DataFrame,
    settings: Mapping,
    runtime: Mapping,
    seed: int,
    *,
    deterministic: bool = False,
    checkpoint_dir: str | Path | None = None,
    data_key: str = "",
) -> tuple[dict[str, dict[str, torch.Tensor]], pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Train every model of ``settings["models"]`` on every fold of ``videos``.

    Args:
        records: partition name -> load function of its extraction record
            (``faces.video``: ``crops`` uint8 (n, H, W, 3), ``masks`` uint8 0/1 (n, H, W) or
            None), called inside the DataLoader workers.
        index: the face index (``partition``, ``crop``: one row per crop; with pair mixup
            also ``video``, ``original``, ``frame_index``, the box and the frame size).
        videos: one row per training video: ``partition``, ``label`` (REAL/FAKE), ``fold``.
        settings: the ``deepfake.training`` block (:class:`TrainingParams`, or a mapping
            validated by it).
        runtime: the ``runtime`` block: device, precision, num_workers, channels_last and
            ``distributed`` (processes per (model, fold), see ``core.ddp``).
        seed: the run seed; model ``m`` fold ``k`` rank ``r`` is seeded with
            ``training_seed(seed + m.seed_offset, model=m.name, fold=k, rank=r)``.
        deterministic: deterministic torch kernels (``seed_everything``).
        checkpoint_dir: where each (model, fold) keeps its checkpoint and result (None:
            no checkpoints); ``settings["resume_from"]`` says whether they are continued.
        data_key: what identifies the records' content (the extraction settings digest),
            part of each checkpoint's digest.

    Returns:
        ``(state_dicts, history, out_of_fold)``: CPU state dicts keyed ``"<model>/fold<k>"``;
        one history row per model, fold and epoch (model, fold, epoch, train_loss, val_loss,
        val_log_loss, + val_mask_iou when a unet_multitask model is trained, lr);
        model -> partition -> float32 per-crop FAKE probabilities from the fold model that
        did not train on that video (every video of the trained folds).
    """
    config = typed(TrainingParams, settings)
    rt = resolve_runtime(runtime)
    processes = ddp.resolve_distributed(runtime.get("distributed"), device=rt.device)
    resume = check_resume_from(_param("resume_from"), config.resume_from, checkpoint_dir)
    videos = _check_videos(videos)
    folds = sorted(int(f) for f in videos["fold"].unique())
    if len(folds) < 2:
        raise ValueError(f"videos.fold has {len(folds)} distinct fold(s): K-fold needs >= 2")
    trained = folds if config.folds_to_train is None else [int(f) for f in config.folds_to_train]
    unknown = sorted(set(trained) - set(folds))
    if unknown:
        raise ParameterError(
            _param("folds_to_train"), f"fold(s) {unknown} not in videos.fold (folds: {folds})"
        )
    # The batch split checked before any (long) loading or training.
    ddp.local_batch_size(config.batch_size, processes.world_size, parameter=_param("batch_size"))
    _check_landmarks(config)

    unknown_records = sorted(set(videos["partition"]) - set(records))
    if unknown_records:
        raise KeyError(
            f"video partition(s) {unknown_records[:3]} have no extraction record; fix: "
            f"run {_RERUN}deepfake.faces.extract_faces"
        )
    rows = _crop_rows(index, list(videos["partition"]))
    video_of = videos.set_index("partition")
    labels = rows["partition"].map(video_of["label"].map(LABELS)).to_numpy(np.float32)
    fold_of = rows["partition"].map(video_of["fold"].astype(int)).to_numpy()
    lengths_of = rows.groupby("partition", sort=False).size()
    partners = None
    if config.pair_mixup.enabled:
        partners = original_partners(index, rows, labels, fold_of, config.pair_mixup.min_iou)
        unpaired = int(((labels == LABELS["FAKE"]) & (partners < 0)).sum())
        log.info(
            "pair mixup: %d of %d FAKE crops have no aligned crop of their original in the "
            "videos (served unmixed)",
            unpaired,
            int((labels == LABELS["FAKE"]).sum()),
        )
    log.info(
        "training %d model(s) x %d fold(s) on %d videos / %d crops (%s, %s, %d process(es))",
        len(config["models"]),
        len(trained),
        len(videos),
        len(rows),
        rt.device,
        rt.amp.name,
        processes.world_size,
    )
    root = None
    if checkpoint_dir is not None:
        shaping = {
            "settings": shaping_settings(config),
            "seed": int(seed),
            "deterministic": bool(deterministic),
            "runtime": runtime_shaping(rt, processes.world_size),
            "data": data_digest(rows.assign(label=labels, fold=fold_of), extra=data_key),
        }
        root = checkpoint_folder(checkpoint_dir, shaping, resume)
    state_dicts: dict[str, dict[str, torch.Tensor]] = {}
    epochs: list[dict[str, Any]] = []
    out_of_fold: dict[str, dict[str, np.ndarray]] = {}
    jobs, trained_folds = [], []
    for spec in config.models:
        for fold in trained:
            in_fold = fold_of == fold
            if not in_fold.any() or in_fold.all():
                raise ValueError(f"fold {fold}: no crops to train on or to validate")
            if config.pseudo_fakes == "sbi" and not (~in_fold & (labels == 0.0)).any():
                raise ValueError(
                    f"fold {fold}: the other folds hold no REAL crop to make pseudo-fakes from "
                    f"({_param('pseudo_fakes')}: sbi blends REAL crops)"
                )
            job = {
                "records": records,
                "rows": rows,
                "labels": labels,
                "in_fold": in_fold,
                "config": config,
                "spec": spec,
                "fold": fold,
                "seed": int(seed) + int(spec["seed_offset"]),
                "deterministic": bool(deterministic),
                "runtime": dict(runtime),
                "partners": partners,
            }
            # a model's folder follows its own spec: adding a model keeps the others' folds
            name = spec["name"]
            folder = (
                None
                if root is None
                else root / f"{name}-{short_digest(spec.as_dict())}" / f"fold{fold}"
            )
            jobs.append((job, folder))
            trained_folds.append((name, fold, in_fold))
    results = run_jobs(train_fold, jobs, settings=processes)
    for (name, fold, in_fold), result in zip(trained_folds, results, strict=True):
        epochs.extend({"model": name, "fold": fold, **m} for m in result["history"])
        state_dicts[fold_key(name, fold)] = result["state_dict"]
        val_videos = list(pd.unique(rows.loc[in_fold, "partition"]))
        lengths = lengths_of.loc[val_videos].tolist()
        logits = result["logits"].numpy()
        oof = out_of_fold.setdefault(name, {})
        for partition, values in zip(val_videos, _split(logits, lengths), strict=True):
            oof[partition] = _probabilities(values)

    history_frame = pd.DataFrame(epochs)
    columns = ["model", "fold", "epoch", "train_loss", "val_loss", "val_log_loss"]
    if "val_mask_iou" in history_frame:
        columns.append("val_mask_iou")
    columns += [c for c in history_frame.columns if c not in columns]
    history_frame = history_frame[columns]
    history_frame["epoch"] = history_frame["epoch"].astype(int)
    return state_dicts, history_frame, out_of_fold


def _fold_keys(state_dicts: Mapping[str, Any], name: str) -> list[str]:
    split = {k: split_fold_key(k) for k in state_dicts}
    return sorted((k for k, s in split.items() if s and s[0] == name), key=lambda k: split[k][1])


def check_state_dicts(
    state_dicts: Mapping[str, Mapping[str, torch.Tensor]],
    config: TrainingParams | Mapping[str, Any],
) -> dict[str, list[str]]:
    """The fold keys of every model of ``config`` (the ``deepfake.training`` settings): each
    model has at least one ``"<name>/fold<k>"`` entry and every entry belongs to a model of
    the settings."""
    names = [spec.name for spec in typed(TrainingParams, config).models]
    strays = sorted(
        k for k in state_dicts if not (split := split_fold_key(k)) or split[0] not in names
    )
    if strays:
        raise ParameterError(
            _param("models"),
            f"state dicts {strays[:5]} belong to no model of the settings (models: {names}): "
            "predict with the settings the models were trained with",
        )
    keys = {name: _fold_keys(state_dicts, name) for name in names}
    for name, found in keys.items():
        if not found:
            raise ParameterError(
                _param("models"),
                f"no trained state dict for model {name!r} (expected keys like "
                f"'{fold_key(name, 0)}'; got {sorted(state_dicts)[:5]})",
            )
    return keys


def fold_network(
    spec: Mapping[str, Any], config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> nn.Module:
    """One trained fold model, its weights loaded, in eval mode."""
    network = _network(spec, config, pretrained=False)  # the trained weights replace them
    network.load_state_dict(state_dict)
    return network.eval()


def video_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of at most ``batch_size`` consecutive samples that never span two videos
    (``lengths``: each video's crops, in order), so a video's predictions are the same
    whatever else is scored with it: in one training run or one video at a time."""
    batches, start = [], 0
    for length in lengths:
        for offset in range(0, length, batch_size):
            batches.append(list(range(start + offset, start + min(offset + batch_size, length))))
        start += length
    return batches


def predict_videos(
    records: Mapping[str, Any],
    index: pd.DataFrame,
    networks: Mapping[str, Callable[[], Iterable[nn.Module]]],
    config: TrainingParams | Mapping[str, Any],
    rt: Runtime,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-crop FAKE probabilities: model -> partition -> float32 array, each model's the
    ``sigmoid`` of the mean of its fold models' logits. ``networks``: per model name, a
    function giving its fold networks (built one at a time, or already loaded); ``config``:
    the ``deepfake.training`` settings."""
    config = typed(TrainingParams, config)
    partitions = sorted(index["partition"].unique())
    rows = _crop_rows(index, partitions)
    lengths = rows.groupby("partition", sort=False).size().loc[partitions].tolist()
    dataset = _FrameDataset(
        records,
        rows,
        np.zeros(len(rows)),
        _resize(config.image_hw()),
        cache_size=config.record_cache,
    )
    batches = video_batches(lengths, config["predict_batch_size"])
    loader = seeded_loader(
        dataset,
        config["predict_batch_size"],
        shuffle=False,
        seed=0,
        runtime=rt,
        batch_sampler=batches,
    )
    result: dict[str, dict[str, np.ndarray]] = {}
    for name, folds in networks.items():
        total, count = np.zeros(len(dataset), dtype=np.float64), 0
        for network in folds():
            total += predict(
                network,
                loader,
                rt.device,
                rt.amp,
                output_key="logit",
                channels_last=rt.channels_last,
            )
            count += 1
        mean = total / count
        result[name] = {
            p: _probabilities(v) for p, v in zip(partitions, _split(mean, lengths), strict=True)
        }
    return result


def predict_frame_models(
    records: Mapping[str, Any],
    index: pd.DataFrame,
    state_dicts: Mapping[str, Mapping[str, torch.Tensor]],
    settings: Mapping,
    runtime: Mapping,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-crop FAKE probabilities of unseen videos: model -> partition -> float32 array.

    ``records``: load functions by partition; ``index``: the face-index rows of the videos
    to score (every partition in it is scored, its records read in order by the loader
    workers). Each model's probability is ``sigmoid(mean of its fold models' logits)``;
    batches never span two videos (:func:`video_batches`). Every model of
    ``settings["models"]`` must have at least one ``"<name>/fold<k>"`` entry in
    ``state_dicts``, and every entry must belong to a model of the settings. Fold models
    are built one at a time.
    """
    config = typed(TrainingParams, settings)
    rt = resolve_runtime(runtime)
    keys = check_state_dicts(state_dicts, config)

    def folds(spec: Mapping[str, Any]) -> Callable[[], Iterator[nn.Module]]:
        def build() -> Iterator[nn.Module]:
            for key in keys[spec["name"]]:
                yield fold_network(spec, config, state_dicts[key])
                log.info("predicted with %s", key)

        return build

    networks = {spec.name: folds(spec) for spec in config.models}
    return predict_videos(records, index, networks, config, rt)
