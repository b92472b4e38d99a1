"""``kedro ablate``: run every point x seed of a grid as a child of one MLflow parent run,
skip what is already done, then summarise against the baseline point."""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from podium.ablation import plan as p
from podium.ablation import summary as s
from podium.ablation import tracking as t
from podium.ablation.grid import (
    Grid,
    GridError,
    check_against_project,
    check_override,
    load_grid,
    parse_params,
    parse_seeds,
)
from podium.ablation.project import (
    DEFAULT_ENV,
    Project,
    fingerprint_drift,
    git_state,
    load_project,
    run_kedro,
    tail,
)

Echo = Callable[[str], None]


@dataclass
class AblationResult:
    grid: Grid
    planned: list[p.PlannedRun]
    reused: dict[str, str] = field(default_factory=dict)  # label -> run id
    ran: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    parent_id: str | None = None
    runs: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    markdown: str = ""
    paths: dict[str, Path] = field(default_factory=dict)


def resolve_grid_path(grid: str | Path, project: Path) -> Path:
    """A grid path as given, else relative to the project, else a bare grid name."""
    for candidate in (Path(grid), project / grid, project / "conf/base/ablations" / f"{grid}.yml"):
        if candidate.is_file():
            return candidate
    return Path(grid)


def prepare(
    project_path: Path,
    grid_path: str | Path,
    seeds: str | None,
    params: str | None,
    env: str | None,
) -> tuple[Grid, tuple[int, ...], dict[str, Any], Project]:
    """Load and check everything before any run starts: a bad grid costs no compute."""
    grid = load_grid(resolve_grid_path(grid_path, project_path))
    extra = parse_params(params)
    chosen = parse_seeds(seeds) if seeds else grid.seeds
    if not chosen:
        raise GridError(f"{grid.path}: no seeds. Fix: pass --seeds=0,1 or add `seeds: [0, 1]`.")
    project = load_project(project_path, env)
    check_against_project(grid, project.pipelines, project.parameters)
    for key, value in extra.items():
        check_override(project.parameters, key, value, where=f"--params: {key}")
    if grid.seed_key in extra:
        raise GridError(f"--params: {grid.seed_key}: seeds come from --seeds. Fix: remove it.")
    return grid, chosen, extra, project


def run_ablation(
    project_path: Path,
    grid_path: str | Path,
    *,
    seeds: str | None = None,
    params: str | None = None,
    env: str | None = None,
    output_root: Path = Path("data/08_reporting/ablations"),
    dry_run: bool = False,
    fail_fast: bool = False,
    verbose: bool = False,
    echo: Echo = print,
) -> AblationResult:
    grid, chosen, extra, project = prepare(project_path, grid_path, seeds, params, env)
    env_tag = env or DEFAULT_ENV
    git = git_state(project.path)
    client = MlflowClient(tracking_uri=project.tracking_uri)
    experiment = t.experiment_id(client, project.experiment)
    result = AblationResult(grid, p.plan_runs(grid, chosen, extra))
    done = p.find_completed(
        result.planned,
        t.as_tracked(t.child_runs(client, experiment, grid.name)),
        commit=git["git_commit"],
        env=env_tag,
        fingerprint_ok=_data_unchanged(project),
    )
    result.reused = {label: run.run_id for label, run in done.items()}
    pending = [run for run in result.planned if run.label not in done]
    _echo_plan(echo, grid, result, pending, git)
    if dry_run:
        for run in pending:
            echo(
                f"  would run: kedro run --pipelines={grid.pipeline} --params={p.params_argument(run.overrides)}"
            )
        return result

    # A live `kedro run` in this folder would refuse every point: stop before the first.
    from podium.run_guard import check_run_lock

    check_run_lock(project.path)
    signature = p.parent_signature(grid, extra, env_tag, git["git_commit"])
    result.parent_id = t.open_parent(
        client, experiment, grid, signature=signature, extra=extra, env=env_tag, git=git
    )
    folder = project.path / output_root / grid.name
    status = "FAILED"
    try:
        _run_pending(
            client,
            experiment,
            project,
            grid,
            pending,
            env,
            env_tag,
            folder,
            result,
            fail_fast,
            verbose,
            echo,
        )
        _summarize(client, grid, chosen, result, folder, git)
        status = "FAILED" if result.failed else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(result.parent_id, status)
    return result


def _data_unchanged(project: Project) -> Callable[[Mapping[str, str]], bool]:
    """A completed run only counts if the data it read is still what is on disk."""
    return lambda tags: not fingerprint_drift(project.catalog, tags)


def _echo_plan(
    echo: Echo, grid: Grid, result: AblationResult, pending: list, git: Mapping[str, str]
) -> None:
    echo(
        f"ablation {grid.name}: {len(grid.points)} points x {len(result.planned) // len(grid.points)} "
        f"seeds = {len(result.planned)} runs of '{grid.pipeline}'; {len(result.reused)} already "
        f"done at {git['git_commit'][:10]}, {len(pending)} to run"
    )
    if git.get("git_dirty") == "true":
        echo(
            "warning: the working tree has uncommitted changes; runs are matched by commit, "
            "so commit before an ablation whose results you want to keep"
        )


def _run_pending(
    client,
    experiment,
    project,
    grid,
    pending,
    env,
    env_tag,
    folder,
    result,
    fail_fast,
    verbose,
    echo,
) -> None:
    for index, planned in enumerate(pending, 1):
        name = t.child_name(grid, planned)
        run_id = t.create_child(client, experiment, result.parent_id, grid, planned, env_tag)
        log_path = folder / "logs" / f"{planned.point}_seed{planned.seed}.log"
        echo(f"[{index}/{len(pending)}] {planned.label}: kedro run (run {run_id}, log {log_path})")
        started = time.monotonic()
        try:
            code = run_kedro(
                project.path,
                pipeline=grid.pipeline,
                overrides=planned.overrides,
                mlflow_run_id=run_id,
                log_path=log_path,
                env=env,
                echo=echo if verbose else None,
            )
        except KeyboardInterrupt:
            t.settle_child(client, run_id, name, returncode=1, interrupted=True)
            raise
        status = t.settle_child(client, run_id, name, code)
        client.log_artifact(run_id, str(log_path), artifact_path="ablation")
        seconds = time.monotonic() - started
        if status == "FINISHED":
            result.ran[planned.label] = run_id
            _check_metric(grid, [client.get_run(run_id)])  # a misspelt metric stops here
            echo(f"    finished in {seconds:.0f} s{_metric_text(client, run_id, grid)}")
            continue
        result.failed[planned.label] = run_id
        echo(
            f"    {status} after {seconds:.0f} s (exit code {code}); last lines of {log_path}:\n{tail(log_path)}"
        )
        if fail_fast:
            break


def _metric_text(client: MlflowClient, run_id: str, grid: Grid) -> str:
    metrics = client.get_run(run_id).data.metrics
    key = t.resolve_metric(metrics, grid.metric, grid.pipeline)
    return f": {key} = {metrics[key]:.6g}" if key else ""


def _summarize(client, grid: Grid, seeds, result: AblationResult, folder: Path, git) -> None:
    ids = {**result.reused, **result.ran, **result.failed}
    runs = [client.get_run(ids[run.label]) for run in result.planned if run.label in ids]
    _check_metric(grid, runs)
    frame = s.runs_frame(t.records(runs, grid.metric, grid.pipeline, grid.metrics))
    summary = s.summarize(frame, list(grid.points), grid.baseline, grid.greater_is_better)
    notes = _notes(runs, result, git)
    markdown = s.to_markdown(
        summary,
        frame,
        name=grid.name,
        metric=grid.metric,
        greater_is_better=grid.greater_is_better,
        baseline=grid.baseline,
        notes=notes,
    )
    figure = s.plot(frame, summary, metric=grid.metric, baseline=grid.baseline)
    result.paths = s.write_report(folder, frame, summary, markdown, figure)
    t.log_summary(
        client, result.parent_id, summary.to_dict("records"), result.paths.values(), seeds
    )
    result.runs, result.summary, result.markdown = frame, summary, markdown


def _check_metric(grid: Grid, runs: list) -> None:
    """A metric no finished run logged is a grid mistake, not a missing value."""
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if not finished or any(
        t.resolve_metric(r.data.metrics, grid.metric, grid.pipeline) for r in finished
    ):
        return
    logged = sorted(finished[0].data.metrics)
    close = difflib.get_close_matches(grid.metric, logged, n=3, cutoff=0.4)
    raise GridError(
        f"{grid.path}: metric: no run logged '{grid.metric}'. Fix: use a logged key"
        f"{', e.g. ' + ' or '.join(close) if close else ''} (all: {', '.join(logged[:40])})."
    )


def _notes(runs: list, result: AblationResult, git: Mapping[str, str]) -> list[str]:
    notes = []
    fingerprints = {
        r.data.tags.get("data_fingerprint") for r in runs if r.info.status == "FINISHED"
    }
    if len(fingerprints) > 1:
        notes.append(
            f"The runs read different data ({len(fingerprints)} data fingerprints): the comparison is confounded."
        )
    if result.failed:
        notes.append(f"Failed runs (no value): {', '.join(sorted(result.failed))}.")
    if git.get("git_dirty") == "true":
        notes.append(
            "The working tree had uncommitted changes: the commit alone does not pin the code."
        )
    notes.append(
        f"{len(result.ran)} run(s) new, {len(result.reused)} reused from earlier invocations "
        f"(same point, seed, overrides, commit and data)."
    )
    return notes


def summary_table(result: AblationResult) -> str:
    """The summary part of the report, for the terminal."""
    if not result.markdown:
        return ""
    return result.markdown.split("\n## Runs")[0].strip()
