"""Hooks that make every ``kedro run`` reproducible from what MLflow recorded.

kedro-mlflow opens the MLflow run (named after the pipeline) and logs parameters;
these hooks seed everything from the pipeline's ``seed`` parameter (and fix torch's
thread count from ``runtime.torch_threads``: results differ across thread counts) before
the first node and tag the run with the git commit, the seed, a fingerprint of the raw data
and the device it trained on (``device``, ``device.name``, ``device.precision``,
``torch.version``, ``cuda.version``, ``distributed.world_size``, ...: see ``device_tags``).

Trained weights and submissions go under the run as artifacts. A catalog entry whose
``metadata`` has ``mlflow: {artifact_path: models/<pipeline>}`` gets the file this run
saved logged there as soon as it is saved (``after_dataset_saved``), so
``mlflow.artifacts.download_artifacts(run_id=..., artifact_path="models/<pipeline>/<file>")``
gives back exactly that file (``podium.models_registry.download_model``). kedro-mlflow's
``MlflowArtifactDataset`` cannot do it for these entries: they are all ``versioned: true``,
and the wrapper builds its inner dataset itself, with a save version of its own (the time
it was built) instead of the session's; Kedro 1.x's catalog refuses a dataset whose save
version differs from the catalog's (``VersionAlreadyExistsError`` when kedro-mlflow's
``after_catalog_created`` materializes it, i.e. every ``kedro run`` fails), and
``--load-versions`` would never reach the inner dataset. Logging from the hook leaves each
dataset's type, its versions and its loads untouched, and logs only while an MLflow run is
active (never opening a stray run of its own, e.g. from a notebook's ``catalog.save``).

A versioned dataset this run saved is read back by later nodes at the version the run
wrote, not at whatever is newest on disk by then (another run may have saved since).

Typed parameter blocks (``podium.core.params``) are checked when the context is created,
before any node, and reach kedro-mlflow as the dictionaries the configuration wrote
(``TypedParametersHooks``), so each leaf stays its own MLflow parameter
(``deepfake.split.n_folds``) instead of one string per block.

Each run's status and the one-run-per-folder lock: ``podium.run_guard``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, DataCatalog, Version
from kedro.pipeline import Pipeline

from podium.core.config import describe_choices, parameter_file
from podium.core.ddp import resolve_distributed
from podium.core.device import check_runtime_keys, resolve_runtime
from podium.core.params import RUNTIME_SOURCE, ParametersInvalid, TypedBlock, by_position
from podium.core.seeding import seed_everything
from podium.fingerprint import combine, path_fingerprint

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file alone
    fcntl = None

log = logging.getLogger(__name__)

RAW_LAYER = "raw"
RAW_FOLDER = "01_raw"


#: ``metadata: {mlflow: {artifact_path: ...}}`` in a catalog entry: log what it saves there.
METADATA_KEY = "mlflow"


class TypedParametersHooks:
    """Every typed block checked when the context is created, and logged leaf by leaf.

    Kedro validates the same annotations itself when the session builds the catalog; this
    check comes first so the error is podium's :class:`ParametersInvalid` (every problem of
    every block at once, with its path, the allowed values and the file) rather than
    Kedro's summary string, and it covers every registered pipeline: the configuration is
    the project's, a typo in one pipeline's file is a typo whichever pipeline runs.
    """

    # tryfirst: before kedro-mlflow sets up its tracking store (seconds on a fresh project)
    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        from kedro.framework.project import pipelines

        loader = context.config_loader
        try:
            check_typed_parameters(loader["parameters"], dict(pipelines))
        except ParametersInvalid as error:
            env = getattr(loader, "env", None) or context.env
            sources = ParameterSources(Path(loader.conf_source), env, loader.runtime_params)
            raise error.told_where(sources) from None

    # tryfirst: before kedro-mlflow's before_node_run, on the copy of the inputs Kedro
    # hands the hooks (the node itself still gets the typed model).
    @hook_impl(tryfirst=True)
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        inputs.update(logged_blocks(inputs))


class ParameterSources:
    """Where a parameter's value was set: ``--params``, the run environment's parameters
    file that writes it (``conf/full/parameters_deepfake.yml``), or else conf/base's file
    for its block (:func:`podium.core.config.parameter_file`)."""

    def __init__(self, conf_source: Path, env: str | None, runtime: Mapping | None) -> None:
        self._runtime = runtime or {}
        self._env_files: list[tuple[str, Any]] = []
        if env and env != "base":
            for path in sorted((conf_source / env).glob("**/parameters*.y*ml")):
                with contextlib.suppress(OSError, yaml.YAMLError):
                    rel = f"{conf_source.name}/{path.relative_to(conf_source)}"
                    self._env_files.append((rel, yaml.safe_load(path.read_text()) or {}))

    def __call__(self, path: str) -> str:
        keys = [int(k) if k.isdigit() else k for k in re.split(r"\.|\[|\]\.?", path) if k]
        if _writes(self._runtime, keys):
            return RUNTIME_SOURCE
        for name, tree in self._env_files:
            if _writes(tree, keys):
                return name
        return parameter_file(path)


def _writes(tree: Any, keys: list[Any]) -> bool:
    """Whether ``tree`` sets the value at ``keys``, or a list or value above it."""
    for key in keys:
        if isinstance(tree, Mapping) and key in tree:
            tree = tree[key]
            if not isinstance(tree, Mapping):
                return True  # a leaf, or a list written whole, on the path
        elif isinstance(tree, list) and isinstance(key, int) and key < len(tree):
            return True
        else:
            return False
    return True


def logged_blocks(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The typed blocks among a node's inputs as kedro-mlflow should log them: the keys that
    apply, lists entry by entry, and nothing of a block whose ``only_when`` block (read by
    the same node) chose otherwise."""
    blocks = {
        name.removeprefix("params:"): value
        for name, value in inputs.items()
        if isinstance(value, TypedBlock)
    }
    logged = {}
    for name, value in inputs.items():
        if not isinstance(value, TypedBlock):
            continue
        rule = type(value).only_when
        chooser = blocks.get(rule[0]) if rule else None
        if chooser is not None and getattr(chooser, rule[1]) not in rule[2]:
            logged[name] = {}  # flattened by kedro-mlflow into no parameter at all
        else:
            logged[name] = logged_entries(value.as_logged())
    return logged


def logged_entries(value: Any) -> Any:
    """Lists of blocks (model entries, transforms) as ``{"0": ..., "1": ...}``, so
    kedro-mlflow logs each entry's keys (``deepfake.training.models.0.backbone``) instead
    of one string for the list; ``kedro reproduce`` compares them the same way
    (``ablation.grid.flatten(..., entries=True)``)."""
    value = by_position(value) or value
    if isinstance(value, Mapping):
        return {key: logged_entries(item) for key, item in value.items()}
    return value


#: Blocks that moved, and where to: a configuration still using the old path is told the new.
RENAMED_BLOCKS = {"sample_data.dfdc": "sample_data.deepfake"}


def _unknown_key(path: str, key: str, allowed: list[str]) -> str:
    if path in RENAMED_BLOCKS:
        return f"renamed: write it as {RENAMED_BLOCKS[path]}"
    return f"unknown key; {describe_choices(key, allowed, 'keys')}"


def check_typed_parameters(
    parameters: Mapping[str, Any], pipelines: Mapping[str, Pipeline]
) -> None:
    """Raise :class:`ParametersInvalid` unless every block a node of ``pipelines`` reads as a
    typed model (its annotation, found by Kedro's own type extractor) validates, and no
    block under a pipeline's name that holds the blocks nodes read has a key that no node
    of ``pipelines`` reads (a misspelt block, ``deepfake.trainng``; ``seed`` and
    ``deterministic`` of ``<pipeline>`` are the run's, read by ReproducibilityHooks)."""
    from kedro.validation.type_extractor import TypeExtractor
    from kedro.validation.utils import _MISSING, _unwrap_optional, resolve_nested_dict_path

    parameters = dict(parameters)
    errors: list[ParametersInvalid] = []
    for key, expected in TypeExtractor(dict(pipelines)).extract_types_from_pipelines().items():
        model = _unwrap_optional(expected)
        value = resolve_nested_dict_path(parameters, key)
        if value is _MISSING or value is None or not issubclass(model, TypedBlock):
            continue
        try:
            model.model_validate(value)
        except ParametersInvalid as error:
            errors.append(error)
    read = {
        name.removeprefix("params:")
        for pipeline in pipelines.values()
        for name in pipeline.inputs()
        if name.startswith("params:")
    }
    children: dict[str, set[str]] = {}
    for key in read:
        parts = key.split(".")
        for depth in range(1, len(parts)):
            children.setdefault(".".join(parts[:depth]), set()).add(parts[depth])
    unknown: list[tuple[str, str]] = []
    for parent, known in sorted(children.items()):
        if parent in read or parent.split(".")[0] not in pipelines:
            continue  # read whole (its node or typed model checks it), or no pipeline's block
        value = resolve_nested_dict_path(parameters, parent)
        if not isinstance(value, Mapping):
            continue
        allowed = sorted(known | ({"seed", "deterministic"} if "." not in parent else set()))
        unknown += [
            (f"{parent}.{k}", _unknown_key(f"{parent}.{k}", str(k), allowed))
            for k in value
            if k not in allowed
        ]
    if unknown:
        errors.append(ParametersInvalid(unknown))
    if errors:
        raise ParametersInvalid.combine(errors)


class ReproducibilityHooks:
    def __init__(self) -> None:
        self._project_path = Path.cwd()
        self._raw_outputs: dict[str, Path] = {}
        self._catalog: DataCatalog | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)

    # trylast: run after kedro-mlflow's hook has started the MLflow run.
    @hook_impl(trylast=True)
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        names = run_params.get("pipeline_names") or ["__default__"]
        seed, deterministic = _run_seed(catalog, pipeline, names)
        if seed is not None:
            seed_everything(seed, deterministic=deterministic)
            log.info(
                "Seeded python, numpy and torch with %s (deterministic=%s)", seed, deterministic
            )

        runtime = check_runtime_keys(_runtime(catalog))  # a typo stops the run here
        threads = runtime.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))

        check_writable(catalog, sorted(pipeline.all_outputs()))
        self._catalog = catalog
        read = _raw_locations(catalog, sorted(pipeline.inputs()))
        self._raw_outputs = _raw_locations(catalog, sorted(pipeline.all_outputs()))
        fingerprints = {name: path_fingerprint(path) for name, path in read.items()}
        tags = {
            "seed": str(seed) if seed is not None else "none",
            "deterministic": str(deterministic).lower(),
            "data_fingerprint": combine(fingerprints),
            "data_fingerprint.scope": "read" if read else "none",
            **_git_tags(self._project_path),
            **device_tags(runtime),
        }
        for name, fingerprint in fingerprints.items():
            tags[f"data_fingerprint.{name}"] = (
                f"{fingerprint['sha256']} ({fingerprint['files']} files, {fingerprint['bytes']} bytes)"
            )
        if mlflow.active_run() is not None:
            mlflow.set_tags(tags)
            log_raw_inputs(read, fingerprints)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._catalog is None:
            return
        dataset = self._catalog.get(dataset_name)
        path = saved_path(dataset)
        pin_saved_version(dataset)
        artifact_path = mlflow_artifact_path(dataset)
        if artifact_path is None or path is None:
            return
        if mlflow.active_run() is None:
            # kedro-mlflow is off for this pipeline (tracking.disable_tracking): nothing to
            # log under, and logging would open a run of its own.
            log.info("%s saved to %s; no active MLflow run, not logged", dataset_name, path)
            return
        if path.is_dir():
            mlflow.log_artifacts(str(path), f"{artifact_path}/{path.name}")
        else:
            mlflow.log_artifact(str(path), artifact_path)
        log.info("Logged %s (%s) under the MLflow run at %s/", dataset_name, path, artifact_path)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog):
        self._catalog = None

    # tryfirst: tag before kedro-mlflow's own after_pipeline_run ends the MLflow run.
    @hook_impl(tryfirst=True)
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        self._catalog = None
        if not self._raw_outputs or mlflow.active_run() is None:
            return
        # A generator pipeline reads no raw data; its fingerprint is what it wrote, so
        # two runs with one seed can be checked to have produced the same bytes.
        written = {name: path_fingerprint(path) for name, path in self._raw_outputs.items()}
        tags = {"data_fingerprint": combine(written), "data_fingerprint.scope": "written"}
        for name, fingerprint in written.items():
            tags[f"data_fingerprint.{name}"] = (
                f"{fingerprint['sha256']} ({fingerprint['files']} files, {fingerprint['bytes']} bytes)"
            )
        mlflow.set_tags(tags)


def log_raw_inputs(locations: Mapping[str, Path], fingerprints: Mapping[str, Any]) -> None:
    """Each raw input the run read as an MLflow dataset input (its path and fingerprint), so
    the run page's Datasets section lists what it trained on."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    for name, path in locations.items():
        with warnings.catch_warnings():  # MLflow finds two local sources for a folder
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(path))
        digest = fingerprints[name]["sha256"][:16]
        mlflow.log_input(MetaDataset(source, name=name, digest=digest), context="raw")


def _run_seed(
    catalog: DataCatalog, pipeline: Pipeline, names: list[str]
) -> tuple[int | None, bool]:
    """The ``seed`` (and ``deterministic``) of the run: ``<pipeline>.seed`` for the named
    pipeline, else the first parameter block read by the pipeline's nodes that has one."""
    blocks = [name for name in names if name != "__default__"]
    blocks += sorted(
        {
            i.removeprefix("params:").split(".")[0]
            for i in pipeline.inputs()
            if i.startswith("params:")
        }
    )
    for block in blocks:
        key = f"params:{block}"
        values = catalog.load(key) if key in catalog else None
        if isinstance(values, dict) and "seed" in values:
            return int(values["seed"]), bool(values.get("deterministic", False))
    return None, False


def _runtime(catalog: DataCatalog) -> dict[str, Any]:
    return catalog.load("params:runtime") if "params:runtime" in catalog else {}


def device_tags(runtime: Mapping[str, Any] | None) -> dict[str, str]:
    """What a run trains on, as MLflow tags: ``device`` (cpu | cuda | mps, the resolved
    ``runtime.device``), ``device.name`` (the GPU's name, or the CPU's model and
    architecture), ``device.count`` (GPUs visible), ``device.precision`` (fp32 | bf16 |
    fp16), ``torch.version``, ``cuda.version`` (the CUDA torch was built with, "none" for
    a CPU build), ``cudnn.version`` (on CUDA only), ``distributed.world_size`` and
    ``distributed.backend`` (``runtime.distributed``; "none" in one process).

    A block that does not resolve (say ``device: cuda`` on a box without one) is tagged
    ``unresolved`` with the error: the node that reads it stops the run naming the
    parameter, and a hook raising here would leave the MLflow run RUNNING."""
    runtime = dict(runtime or {})
    tags = {
        "torch.version": torch.__version__,
        "cuda.version": torch.version.cuda or "none",
        "device.count": str(torch.cuda.device_count() if torch.cuda.is_available() else 0),
    }
    try:
        resolved = resolve_runtime(runtime)
    except Exception as error:  # noqa: BLE001 - reported, the node raises it properly
        return {**tags, "device": "unresolved", "device.error": str(error)[:1000]}
    device = resolved.device
    tags.update(
        {
            "device": device.type,
            "device.name": _device_name(device),
            "device.precision": resolved.amp.name,
        }
    )
    if device.type == "cuda":
        tags["cudnn.version"] = str(torch.backends.cudnn.version() or "none")
    try:
        distributed = resolve_distributed(runtime.get("distributed"), device=device)
    except Exception as error:  # noqa: BLE001
        tags["distributed.world_size"] = "unresolved"
        tags["distributed.error"] = str(error)[:1000]
    else:
        tags["distributed.world_size"] = str(distributed.world_size)
        tags["distributed.backend"] = distributed.backend if distributed.enabled else "none"
    return tags


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return f"{_cpu_model() or platform.processor() or 'CPU'} ({platform.machine()})"


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() or None
    return None


def mlflow_artifact_path(dataset: Any) -> str | None:
    """The ``metadata.mlflow.artifact_path`` of a catalog entry (None: not logged)."""
    metadata = getattr(dataset, "metadata", None) or {}
    block = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    path = block.get("artifact_path") if isinstance(block, Mapping) else None
    return str(path).strip("/") if path else None


def saved_path(dataset: Any) -> Path | None:
    """The local file (or folder) a dataset's last ``save`` wrote: for a versioned dataset
    ``<filepath>/<save version>/<name>``, the version of this session, not the newest."""
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None:
        filepath = getattr(dataset, "_path", None)
    if filepath is None:
        return None
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version:
        version = dataset.resolve_save_version()
        if version:
            return Path(str(dataset._get_versioned_path(version)))
    return Path(str(filepath))


def pin_saved_version(dataset: Any) -> None:
    """After a save, later loads of a versioned dataset read the version just written (a
    load version given to the run, ``--load-versions``, is kept)."""
    if not isinstance(dataset, AbstractVersionedDataset) or not dataset._version:
        return
    version = dataset._version
    if version.load is None and version.save:
        dataset._version = Version(version.save, version.save)


class OutputNotWritableError(PermissionError):
    """An output of the run lies where this process cannot write."""


def _local_location(dataset: Any) -> Path | None:
    description = dataset._describe() if hasattr(dataset, "_describe") else {}
    location = description.get("filepath") or description.get("path")
    if not location:
        return None
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        return None  # object stores: their own credentials decide
    return Path(text.removeprefix("file://"))


def check_writable(catalog: DataCatalog, dataset_names: list[str]) -> None:
    """Stop before the first node if an output cannot be written (a read-only folder),
    rather than after hours of extraction and training: each output's folder, or the
    nearest folder above it that exists, must be writable."""
    blocked = []
    for name in dataset_names:
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            continue
        location = _local_location(catalog.get(name))
        if location is None:
            continue
        folder = location.absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK):
            blocked.append(f"{name} -> {location} ({folder} is not writable)")
    if blocked:
        raise OutputNotWritableError(
            f"{len(blocked)} output(s) of this run cannot be written: "
            + "; ".join(blocked[:5])
            + ". Fix: make those folders writable (chmod/chown), or point the entries at "
            "a writable place in conf/local/catalog.yml"
        )


def _raw_locations(catalog: DataCatalog, dataset_names: list[str]) -> dict[str, Path]:
    """Paths of the named datasets that belong to the raw layer."""
    found = {}
    for name in dataset_names:
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            continue
        dataset = catalog.get(name)
        description = dataset._describe() if hasattr(dataset, "_describe") else {}
        location = description.get("filepath") or description.get("path")
        layer = ((getattr(dataset, "metadata", None) or {}).get("kedro-viz") or {}).get("layer")
        if location and (layer == RAW_LAYER or RAW_FOLDER in Path(str(location)).parts):
            found[name] = Path(str(location))
    return found


def _git_tags(project_path: Path) -> dict[str, str]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=project_path, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit or "unknown (not a git checkout)",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "git_branch": git("rev-parse", "--abbrev-ref", "HEAD") or "unknown",
    }
