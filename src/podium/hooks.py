"""Hooks that make every ``kedro run`` reproducible from what MLflow recorded.

kedro-mlflow opens the MLflow run (named after the pipeline) and logs parameters;
these hooks seed everything from the pipeline's ``seed`` parameter (and fix torch's
thread count from ``runtime.torch_threads``: results differ across thread counts) before
the first node and tag the run with the git commit, the seed and a fingerprint of the raw data.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import mlflow
import torch
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from podium.core.seeding import seed_everything
from podium.fingerprint import combine, path_fingerprint

log = logging.getLogger(__name__)

RAW_LAYER = "raw"
RAW_FOLDER = "01_raw"


class ReproducibilityHooks:
    def __init__(self) -> None:
        self._project_path = Path.cwd()
        self._raw_outputs: dict[str, Path] = {}

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

        threads = _runtime(catalog).get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))

        read = _raw_locations(catalog, sorted(pipeline.inputs()))
        self._raw_outputs = _raw_locations(catalog, sorted(pipeline.all_outputs()))
        fingerprints = {name: path_fingerprint(path) for name, path in read.items()}
        tags = {
            "seed": str(seed) if seed is not None else "none",
            "deterministic": str(deterministic).lower(),
            "data_fingerprint": combine(fingerprints),
            "data_fingerprint.scope": "read" if read else "none",
            **_git_tags(self._project_path),
        }
        for name, fingerprint in fingerprints.items():
            tags[f"data_fingerprint.{name}"] = (
                f"{fingerprint['sha256']} ({fingerprint['files']} files, {fingerprint['bytes']} bytes)"
            )
        if mlflow.active_run() is not None:
            mlflow.set_tags(tags)

    # tryfirst: tag before kedro-mlflow's own after_pipeline_run ends the MLflow run.
    @hook_impl(tryfirst=True)
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
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
