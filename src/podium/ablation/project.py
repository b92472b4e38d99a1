"""The Kedro side: a project's resolved parameters, registry, tracking store and catalog,
its git state, the fingerprint of its data now, and one ``kedro run`` as a subprocess.

Each run is its own process (as from the shell): kedro-mlflow's hook keeps state per
process, and a crash in one grid point cannot take the others down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from podium.ablation.plan import nest
from podium.fingerprint import path_fingerprint

DEFAULT_ENV = "default"  # what the tags say when no --env was given
FINGERPRINT_PREFIX = "data_fingerprint."
QUIET_ENV = {"KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "MPLBACKEND": "Agg"}


@dataclass
class Project:
    path: Path
    env: str | None
    parameters: dict[str, Any]
    pipelines: list[str]
    tracking_uri: str
    experiment: str
    catalog: Any


def load_project(
    path: Path, env: str | None = None, runtime_params: Mapping[str, Any] | None = None
) -> Project:
    """Resolve the project's configuration as ``kedro run --env --params`` would."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    path = Path(path).resolve()
    bootstrap_project(path)
    with KedroSession.create(
        project_path=path, env=env, runtime_params=dict(runtime_params or {})
    ) as session:
        context = session.load_context()
        mlflow_config = context.mlflow  # set by kedro-mlflow's after_context_created hook
        return Project(
            path=path,
            env=env,
            parameters=context.params,
            pipelines=sorted(pipelines),
            tracking_uri=_absolute_uri(mlflow_config.server.mlflow_tracking_uri, path),
            experiment=mlflow_config.tracking.experiment.name,
            catalog=context.catalog,
        )


def _absolute_uri(uri: str, root: Path) -> str:
    # A relative sqlite path is relative to the project, wherever this process runs.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
        return f"{prefix}{root / uri[len(prefix) :]}"
    return uri


def git_state(path: Path) -> dict[str, str]:
    """``git_commit``, ``git_dirty``, ``git_branch`` as the run hooks tag them."""
    from podium.hooks import _git_tags  # one definition of what a run records

    return _git_tags(path)


def recorded_fingerprints(tags: Mapping[str, str]) -> dict[str, str]:
    """``dataset -> sha256`` from a run's ``data_fingerprint.<dataset>`` tags (the value
    reads "<sha256> (<n> files, <n> bytes)")."""
    return {
        key.removeprefix(FINGERPRINT_PREFIX): value.split(" ", 1)[0]
        for key, value in tags.items()
        if key.startswith(FINGERPRINT_PREFIX) and key != f"{FINGERPRINT_PREFIX}scope"
    }


def current_fingerprint(catalog: Any, dataset: str) -> str | None:
    """sha256 of the files behind ``dataset`` now (None if the catalog has no path)."""
    if dataset not in catalog:
        return None
    described = catalog.get(dataset)._describe()
    location = described.get("filepath") or described.get("path")
    return str(path_fingerprint(Path(str(location)))["sha256"]) if location else None


def fingerprint_drift(catalog: Any, tags: Mapping[str, str]) -> dict[str, tuple[str, str | None]]:
    """Datasets whose files changed since the run that carries ``tags``:
    ``dataset -> (recorded, now)``. Only runs that fingerprinted what they *read* count."""
    if tags.get(f"{FINGERPRINT_PREFIX}scope") != "read":
        return {}
    drift = {}
    for dataset, recorded in recorded_fingerprints(tags).items():
        now = current_fingerprint(catalog, dataset)
        if now != recorded:
            drift[dataset] = (recorded, now)
    return drift


def run_kedro(
    project: Path,
    *,
    pipeline: str,
    overrides: Mapping[str, Any],
    mlflow_run_id: str,
    log_path: Path,
    env: str | None = None,
    options: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """``kedro run --pipelines=<pipeline>`` with ``overrides`` as its params, logging into
    the existing MLflow run ``mlflow_run_id`` (kedro-mlflow resumes it: MLflow's
    ``start_run`` picks up MLFLOW_RUN_ID). Output goes to ``log_path`` (and to ``echo``).
    The overrides travel in a ``--config`` file so values keep their YAML types."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    config_path = log_path.with_suffix(".run.yml")
    section: dict[str, Any] = {"pipelines": pipeline, "params": nest(overrides), **(options or {})}
    if env:
        section["env"] = env
    config_path.write_text(yaml.safe_dump({"run": section}, sort_keys=False))
    command = [sys.executable, "-m", "kedro", "run", f"--config={config_path}"]
    environment = {**os.environ, **QUIET_ENV, "MLFLOW_RUN_ID": mlflow_run_id}
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            cwd=project,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                if echo:
                    echo(line.rstrip("\n"))
        except BaseException:  # Ctrl-C: the run must not go on (and finish) unattended
            _stop(process)
            raise
        return process.wait()


def _stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = 25) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )
