"""MLflow side of ablations: the parent run, its child runs, and the records the
summary is computed from. Imports mlflow, not kedro (the notebook uses it too)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from podium.ablation import plan as p
from podium.ablation.grid import Grid


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _search(client: MlflowClient, experiment: str, query: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment], query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def find_parent(client: MlflowClient, experiment: str, name: str, signature: str) -> Run | None:
    query = f"tags.{p.KIND} = '{p.PARENT_KIND}' and tags.{p.ABLATION} = '{name}'"
    runs = [
        r for r in _search(client, experiment, query) if r.data.tags.get(p.SIGNATURE) == signature
    ]
    return max(runs, key=lambda r: r.info.start_time) if runs else None


def latest_parent(client: MlflowClient, experiment: str, name: str) -> Run | None:
    """The newest parent run of ablation ``name`` (what the notebook shows by default)."""
    query = f"tags.{p.KIND} = '{p.PARENT_KIND}' and tags.{p.ABLATION} = '{name}'"
    runs = _search(client, experiment, query)
    return max(runs, key=lambda r: r.info.start_time) if runs else None


def open_parent(
    client: MlflowClient,
    experiment: str,
    grid: Grid,
    *,
    signature: str,
    extra: Mapping[str, Any],
    env: str,
    git: Mapping[str, str],
) -> str:
    """Reopen the parent run with this signature, or start one; returns its id."""
    existing = find_parent(client, experiment, grid.name, signature)
    if existing is not None:
        run_id = existing.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        tags = {p.KIND: p.PARENT_KIND, p.ABLATION: grid.name, p.SIGNATURE: signature, p.ENV: env}
        run_id = client.create_run(
            experiment, run_name=f"ablation:{grid.name}", tags=tags
        ).info.run_id
    # Tags, not params: a later invocation of the same grid may change them.
    for key, value in {
        "pipeline": grid.pipeline,
        "ablation.grid": grid.path.as_posix(),
        "ablation.metric": grid.metric,
        "ablation.greater_is_better": str(grid.greater_is_better).lower(),
        "ablation.baseline": grid.baseline,
        "ablation.points": json.dumps(list(grid.points)),
        "ablation.common_overrides": p.canonical({**grid.params, **extra}),
        **git,
    }.items():
        client.set_tag(run_id, key, value)
    return run_id


def child_runs(client: MlflowClient, experiment: str, name: str) -> list[Run]:
    """Every run of ablation ``name``, whatever its parent or status."""
    return _search(
        client, experiment, f"tags.{p.KIND} = '{p.CHILD_KIND}' and tags.{p.ABLATION} = '{name}'"
    )


def children_of(client: MlflowClient, experiment: str, parent_id: str) -> list[Run]:
    return _search(client, experiment, f"tags.`{p.PARENT_TAG}` = '{parent_id}'")


def as_tracked(runs: Iterable[Run]) -> list[p.TrackedRun]:
    return [
        p.TrackedRun(r.info.run_id, r.info.status, dict(r.data.tags), r.info.start_time)
        for r in runs
    ]


def child_name(grid: Grid, planned: p.PlannedRun) -> str:
    return f"{grid.pipeline}:{planned.point}:seed{planned.seed}"


def create_child(
    client: MlflowClient,
    experiment: str,
    parent_id: str,
    grid: Grid,
    planned: p.PlannedRun,
    env: str,
) -> str:
    """A child run that ``kedro run`` then resumes (through MLFLOW_RUN_ID) and fills."""
    run = client.create_run(
        experiment,
        run_name=child_name(grid, planned),
        tags={
            p.PARENT_TAG: parent_id,
            p.KIND: p.CHILD_KIND,
            p.ABLATION: grid.name,
            p.POINT: planned.point,
            p.SEED: str(planned.seed),
            p.OVERRIDES: planned.signature,
            p.ENV: env,
        },
    )
    return run.info.run_id


def settle_child(
    client: MlflowClient, run_id: str, name: str, returncode: int, interrupted: bool = False
) -> str:
    """After ``kedro run`` exits: restore the child's name (kedro-mlflow renames runs after
    their pipeline) and end a run the process left RUNNING (killed, crashed before its
    hooks) as FAILED, or KILLED when interrupted. Returns the final status."""
    client.set_tag(run_id, "mlflow.runName", name)
    status = client.get_run(run_id).info.status
    if interrupted or status == "RUNNING" or (returncode != 0 and status == "FINISHED"):
        status = "KILLED" if interrupted else "FAILED"
        client.set_terminated(run_id, status, end_time=int(time.time() * 1000))
    return status


def resolve_metric(metrics: Mapping[str, float], metric: str, pipeline: str) -> str | None:
    """The logged key for ``metric``: itself, or under the pipeline's name
    (``report/oof/log_loss`` -> ``deepfake/report/oof/log_loss``)."""
    for key in (metric, f"{pipeline}/{metric}"):
        if key in metrics:
            return key
    return None


def records(
    runs: Iterable[Run], metric: str, pipeline: str, secondary: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Rows for :func:`podium.ablation.summary.runs_frame`: point, seed, run_id, status,
    value (primary metric; NaN unless the run finished), then secondary metrics."""
    rows = []
    for run in runs:
        metrics = run.data.metrics
        key = resolve_metric(metrics, metric, pipeline)
        finished = run.info.status == "FINISHED"
        row = {
            "point": run.data.tags.get(p.POINT),
            "seed": int(run.data.tags.get(p.SEED, -1)),
            "run_id": run.info.run_id,
            "status": run.info.status,
            "value": metrics[key] if key and finished else float("nan"),
        }
        for name in secondary:
            found = resolve_metric(metrics, name, pipeline)
            row[name] = metrics[found] if found and finished else float("nan")
        rows.append(row)
    return rows


def log_summary(
    client: MlflowClient,
    parent_id: str,
    summary_rows: Iterable[Mapping[str, Any]],
    files: Iterable[str],
    seeds: Sequence[int],
) -> None:
    """Per point mean / std / paired difference as parent metrics
    (``ablation/<point>/<stat>``, comparable in the UI),
    the report files as artifacts under ``ablation/``."""
    client.set_tag(parent_id, "ablation.seeds", json.dumps(list(seeds)))
    for row in summary_rows:
        for stat in ("mean", "std", "diff_mean", "t_p", "wilcoxon_p"):
            value = row.get(stat)
            if value is not None and value == value:  # NaN is not logged
                client.log_metric(parent_id, f"ablation/{row['point']}/{stat}", float(value))
    for path in files:
        client.log_artifact(parent_id, str(path), artifact_path="ablation")
