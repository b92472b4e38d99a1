"""Nodes of the monet pipeline: thin wrappers over data.py, train.py, submission.py and
evaluate.py.

Each node turns parameters into arguments and catalog data into the shapes the modules
expect; metrics leave as ``{name: {"value", "step"}}`` for kedro-mlflow's metrics dataset.
Between nodes the photos and Monets travel as small tables (domain, path, name): pixels are
decoded per item inside DataLoader workers, never a whole domain at once.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from podium.core.checkpoints import atomic_path
from podium.core.config import ParameterError
from podium.core.device import Runtime, resolve_runtime
from podium.core.params import RuntimeParams
from podium.core.plots import curves_figure, image_grid_figure
from podium.core.resume import checkpoint_folder, data_digest, runtime_shaping
from podium.layouts.monet import index_monet, read_images
from podium.pipelines.monet import evaluate, submission
from podium.pipelines.monet import train as training
from podium.pipelines.monet.data import (
    ImageChecks,
    JpegImages,
    LazyEntries,
    ZipJpegs,
    make_loader,
    to_tensor_images,
)
from podium.pipelines.monet.params import (
    RUN_KEYS,
    MonetDataParams,
    MonetEvaluationParams,
    MonetGenerateParams,
    MonetLossParams,
    MonetModelParams,
    MonetOptimizerParams,
    MonetReportParams,
    MonetTrainParams,
    Source,
    validated,
)
from podium.pipelines.tracking import Metrics, as_metrics, metric_curves

logger = logging.getLogger(__name__)

#: The resumable training state saved beside the four sub-models: the bytes of the
#: training checkpoint file (``core.checkpoints``) as one uint8 tensor under STATE_KEY.
TRAINING_STATE = "training_state"
STATE_KEY = "checkpoint"
#: The epoch checkpoint inside the settings' folder of ``monet_checkpoints``.
CHECKPOINT_FILE = "checkpoint.pt"
_RESUME_FROM = f"{MonetTrainParams.block}.resume_from"


def index_images(raw_root: Path, source: Source = "jpg") -> pd.DataFrame:
    """One row per image: the jpgs of ``photo_jpg/`` and ``monet_jpg/`` (``source: jpg``)
    or the records of ``photo_tfrec/*.tfrec`` and ``monet_tfrec/*.tfrec`` (``tfrec``)."""
    index = index_monet(raw_root, source=source, parameter="monet.source")
    other = {"jpg": "tfrec", "tfrec": "jpg"}[source]
    logger.info(
        "monet: indexed %d photos and %d paintings from the %s folders (the %s folders are "
        "not read)",
        (index["domain"] == "photo").sum(),
        (index["domain"] == "monet").sum(),
        source,
        other,
    )
    return index


def check_images(
    index: pd.DataFrame, runtime: RuntimeParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Metrics]:
    """Decode every image once (a jpg, or a TFRecord's JPEG), one at a time in the loader's
    workers, keeping no pixels: the readable photos and Monets as two tables (domain, path,
    name), and the unreadable ones listed with their reason (skipped and counted, never
    silently dropped)."""
    settings = resolve_runtime(runtime)
    checks = make_loader(ImageChecks(index["path"].tolist()), settings, batch_size=None)
    reasons = list(tqdm(checks, total=len(index), desc="checking images"))
    checked = index.assign(reason=reasons)
    tables, reports, counts = [], [], {}
    for domain in ("photo", "monet"):
        rows = checked[checked["domain"] == domain]
        good, bad = rows[rows["reason"] == ""], rows[rows["reason"] != ""]
        if good.empty:
            raise ValueError(f"monet: none of the {len(rows)} {domain} jpgs could be read")
        tables.append(good[["domain", "path", "name"]].reset_index(drop=True))
        reports.append(bad[["domain", "path", "reason"]])
        counts |= {f"{domain}/read": len(good), f"{domain}/unreadable": len(bad)}
        for path, reason in zip(bad["path"], bad["reason"], strict=True):
            logger.warning("monet: skipping unreadable %s image %s: %s", domain, path, reason)
    report = pd.concat(reports, ignore_index=True)
    if len(report):
        logger.warning(
            "monet: %d of %d image(s) unreadable and skipped, listed in the unreadable-images "
            "report",
            len(report),
            len(index),
        )
    return tables[0], tables[1], report, as_metrics(counts)


def _saved_runs(saved: Mapping[str, Callable[[], Any]]) -> dict[str, dict[str, Callable]]:
    """Versioned sub-model files by save version: ``{version: {sub-model: loader}}``.

    Partition ids look like ``generator_photo_to_monet.safetensors/<version>/generator_...``.
    """
    runs: dict[str, dict[str, Callable]] = {}
    for partition, loader in saved.items():
        parts = partition.split("/")
        if len(parts) == 3:
            runs.setdefault(parts[1], {})[parts[2]] = loader
    wanted = {*training.SUB_MODELS, TRAINING_STATE}
    return {version: files for version, files in runs.items() if wanted <= set(files)}


def _write_state(state: Mapping[str, torch.Tensor], path: Path) -> Path:
    """A saved ``monet_training_state`` back as the training checkpoint file it holds."""
    if STATE_KEY not in state:
        raise ParameterError(
            _RESUME_FROM,
            "the saved training state predates podium's training checkpoints and cannot be "
            "continued; set it to null to start afresh",
        )
    with atomic_path(path) as tmp:
        tmp.write_bytes(state[STATE_KEY].numpy().tobytes())
    return path


def _epochs_done(checkpoint: Path) -> int:
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return int(payload["epoch"])


def _resume_file(
    saved: Mapping[str, Callable[[], Any]],
    resume_from: str | None,
    checkpoint: Path,
    scratch: Path,
) -> Path | None:
    """The saved run's state to start from (a file in ``scratch``), or None: continue
    ``checkpoint`` if it exists, else start afresh.

    ``latest`` takes whichever is further along: the newest saved run, or ``checkpoint``
    (this configuration's epoch checkpoint) when it holds more epochs, i.e. a run killed
    mid-way. A checkpoint no further along is deleted, so training starts from the save.
    """
    if resume_from is None:
        return None
    runs = _saved_runs(saved)
    if resume_from == "latest" and not runs:
        if checkpoint.exists():
            return None
        raise ParameterError(
            _RESUME_FROM,
            "'latest' asked for, but neither a complete set of saved sub-models nor a "
            "checkpoint of these settings was found (data/06_models/monet/ per "
            "catalog_monet.yml); set it to null to start afresh",
        )
    version = max(runs) if resume_from == "latest" else resume_from
    if version not in runs:
        raise ParameterError(
            _RESUME_FROM,
            f"no saved run {version!r}; saved runs: {', '.join(sorted(runs))} (or 'latest')",
        )
    state = _write_state(runs[version][TRAINING_STATE](), scratch / "saved_state.pt")
    killed_after = _epochs_done(checkpoint) if checkpoint.exists() else 0
    if killed_after > _epochs_done(state):
        logger.info("monet: continuing the run killed after epoch %d", killed_after)
        return None
    checkpoint.unlink(missing_ok=True)
    logger.info("monet: resuming from the state saved by run %s", version)
    return state


def _shaping(
    photos: pd.DataFrame, monets: pd.DataFrame, settings: Runtime, **blocks: Any
) -> dict[str, Any]:
    """Everything that decides the trained weights, for the checkpoint folder's digest: the
    parameter blocks (as dictionaries of every key) less the keys that only say how far a
    run goes, the image tables, the runtime."""
    train = {k: v for k, v in blocks.pop("train").items() if k not in RUN_KEYS}
    return {
        **blocks,
        "train": train,
        "runtime": runtime_shaping(settings, 1),
        "images": data_digest(photos, monets),
    }


def train_cyclegan(
    photos: pd.DataFrame,
    monets: pd.DataFrame,
    saved: Mapping[str, Callable[[], Any]],
    checkpoints: Path,
    data: MonetDataParams,
    model: MonetModelParams,
    loss: MonetLossParams,
    optimizer: MonetOptimizerParams,
    train: MonetTrainParams,
    seed: int,
    deterministic: bool,
    runtime: RuntimeParams,
) -> tuple:
    """The four sub-models' weights (each its own dataset), the resumable state, the losses
    per epoch as MLflow metric histories and as a table. Photos and Monets are read from
    their paths per batch.

    A checkpoint is written after every epoch to ``checkpoints/<digest of the settings>/``;
    ``monet.train.resume_from`` says where training starts: null afresh (that folder
    emptied), a save version from that run's saved state, ``latest`` from whichever is
    further along, the newest saved run or a killed run's epoch checkpoint (see
    ``_resume_file``). The curves and the table hold the epochs trained since the saved
    state it started from.
    """
    blocks = training.check_training(data, train, loss, optimizer, model)
    settings = resolve_runtime(runtime)
    resume_from = blocks["train"].resume_from
    plain = {name: block.as_dict() for name, block in blocks.items()}
    shaping = _shaping(photos, monets, settings, seed=seed, deterministic=deterministic, **plain)
    folder = checkpoint_folder(checkpoints, shaping, resume=resume_from == "latest")
    checkpoint = folder / CHECKPOINT_FILE
    load_size = blocks["data"].load_size
    with tempfile.TemporaryDirectory(prefix="monet-resume-") as scratch:
        result = training.train_cyclegan(
            JpegImages(photos["path"], load_size),
            JpegImages(monets["path"], load_size),
            **blocks,
            seed=seed,
            deterministic=deterministic,
            runtime=settings,
            checkpoint=checkpoint,
            resume=_resume_file(saved, resume_from, checkpoint, Path(scratch)),
        )
    state = {STATE_KEY: torch.frombuffer(bytearray(checkpoint.read_bytes()), dtype=torch.uint8)}
    # A run with nothing left to train (resume_from latest on a finished run) logs no
    # curves: an MLflow metric history cannot be empty.
    curves = metric_curves(result.history, ("lr", *training.LOSS_NAMES))
    history = pd.DataFrame(result.history, columns=["epoch", "lr", *training.LOSS_NAMES])
    weights = [result.weights[name] for name in training.SUB_MODELS]
    return (*weights, state, curves, history)


def plot_training_curves(history: pd.DataFrame) -> Figure:
    curves = {c: history[c].tolist() for c in history.columns if c != "epoch"}
    return curves_figure(curves, title="CycleGAN losses and learning rate (this run's epochs)")


def _in_zip_order(photos: pd.DataFrame) -> pd.DataFrame:
    """Photos sorted by their images.zip file name, the order the zip lists them in."""
    files = photos["name"] + ".jpg"
    return photos.iloc[files.argsort(kind="stable")].reset_index(drop=True)


def write_images_zip(
    generator_weights: dict[str, torch.Tensor],
    photos: pd.DataFrame,
    model: MonetModelParams,
    data: MonetDataParams,
    generate: MonetGenerateParams,
    runtime: RuntimeParams,
) -> LazyEntries:
    """Every photo translated to a ``generate.output_size`` jpg: the files of images.zip, as
    a stream the dataset writes one photo at a time as the batches come out of the
    generator (nothing is translated until the dataset asks)."""
    generate = validated(MonetGenerateParams, generate)
    input_size = generate.input_side(data)
    rows = _in_zip_order(photos)
    settings = resolve_runtime(runtime)

    def skipped(name: str, reason: str) -> None:
        logger.warning("monet: photo %s left out of images.zip: %s", name, reason)

    return LazyEntries(
        lambda: submission.translated_jpegs(
            generator_weights,
            JpegImages(rows["path"], input_size),
            rows["name"].tolist(),
            jpeg_quality=generate.jpeg_quality,
            on_skipped=skipped,
            model=model,
            input_size=input_size,
            output_size=generate.output_size,
            batch_size=generate.batch_size,
            runtime=settings,
        )
    )


def plot_translation_grid(
    photo_to_monet: dict[str, torch.Tensor],
    monet_to_photo: dict[str, torch.Tensor],
    photos: pd.DataFrame,
    model: MonetModelParams,
    data: MonetDataParams,
    generate: MonetGenerateParams,
    report: MonetReportParams,
    runtime: RuntimeParams,
) -> Figure:
    """Rows of photo -> Monet -> reconstructed photo, for the first ``report.grid_photos``."""
    generate = validated(MonetGenerateParams, generate)
    input_size = generate.input_side(data)
    report = validated(MonetReportParams, report)
    shown, _ = read_images(photos["path"].head(report.grid_photos))
    settings = dict(
        model=model,
        input_size=input_size,
        output_size=input_size,
        batch_size=generate.batch_size,
        runtime=resolve_runtime(runtime),
    )
    painted = submission.translate(photo_to_monet, shown, **settings)
    back = submission.translate(monet_to_photo, list(painted), **settings)
    small = to_tensor_images(shown, input_size).permute(0, 2, 3, 1).numpy()
    cells = [im for row in zip(small, painted, back, strict=True) for im in row]
    titles = ["photo", "photo -> Monet", "-> photo again"] * len(shown)
    return image_grid_figure(cells, titles, ncols=3, title="CycleGAN on photos")


def score_images(
    images_zip: Mapping[str, bytes],
    photos: pd.DataFrame,
    monets: pd.DataFrame,
    evaluation_params: MonetEvaluationParams,
    runtime: RuntimeParams,
) -> tuple[Metrics, dict[str, str], dict[str, Any]]:
    """FID and MiFID of images.zip against the training Monets, the extractor's name and
    where its weights came from as MLflow tags (``monet.fid_extractor``,
    ``monet.fid_weights``), and the whole summary for the record. Both sides are decoded
    per batch in the loader's workers; the photos missing from the zip are counted and
    named."""
    evaluation_params = validated(MonetEvaluationParams, evaluation_params)
    settings = resolve_runtime(runtime)
    batch_size = evaluation_params.batch_size
    names = sorted(images_zip)
    generated = make_loader(ZipJpegs(images_zip, names), settings, batch_size=batch_size)
    paintings = make_loader(JpegImages(monets["path"]), settings, batch_size=batch_size)
    scores = evaluate.score(
        generated,
        (batch.permute(0, 2, 3, 1) for batch in paintings),  # (n, H, W, 3), as decoded
        evaluation_params,
        settings.device,
    )
    missing = sorted(set(photos["name"] + ".jpg") - set(names))
    if missing:
        logger.warning(
            "monet: %d photo(s) have no image in images.zip: %s", len(missing), missing[:10]
        )
    scores |= {"photos_missing_from_zip": len(missing), "missing_from_zip": missing}
    metrics = {k: v for k, v in scores.items() if isinstance(v, int | float)}
    logger.info(
        "monet: FID %.3f, MiFID %.3f (memorisation distance %.4f) on %s",
        scores["fid"],
        scores["mifid"],
        scores["memorization_distance"],
        scores["fid_extractor"],
    )
    tags = {key: scores[key] for key in ("fid_extractor", "fid_weights")}
    return as_metrics(metrics), tags, scores
