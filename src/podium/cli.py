"""podium's own Kedro project commands (``kedro <command>`` inside the project)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from difflib import get_close_matches
from importlib import resources
from pathlib import Path

import click
from kedro.framework.cli.project import run as kedro_run

from podium.core.params import ParametersInvalid
from podium.versions import find_versioned_outputs, prune_versions


@click.group(name="podium")
def cli() -> None:
    """podium project commands."""


# ---------------------------------------------------------------- pipeline names, at the door


class UnknownPipelineError(click.ClickException):
    """A pipeline name that is not registered: a usage error (exit code 2), told in one
    paragraph before any session starts."""

    exit_code = 2


def pipeline_folders(package: str = "podium") -> set[str]:
    """The folders under ``<package>/pipelines/``, which ``find_pipelines`` would discover
    (the same skips); none is imported."""
    root = resources.files(f"{package}.pipelines")
    return {
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and entry.name != "__pycache__" and not entry.name.startswith(".")
    }


def registered_pipelines() -> list[str]:
    """Every name ``register_pipelines`` returns (this imports every pipeline)."""
    from kedro.framework.project import pipelines

    pipelines.set_requested(None)  # all of them, not the selection of a previous run
    return sorted(pipelines.keys())


def unknown_pipelines_message(unknown: Iterable[str], registered: Iterable[str]) -> str:
    """One paragraph: the unknown names, each with its closest registered name (difflib),
    and the registered pipelines."""
    unknown = list(dict.fromkeys(unknown))
    runnable = sorted(name for name in registered if name != "__default__")

    def told(name: str) -> str:
        match = get_close_matches(name, runnable, n=1)
        return f"'{name}' ({f'did you mean {match[0]!r}?' if match else 'nothing registered is close'})"

    what = "pipeline" if len(unknown) == 1 else "pipelines"
    return (
        f"Unknown {what} {', '.join(told(name) for name in unknown)}. Registered pipelines: "
        f"{', '.join(runnable) or 'none'} (and __default__, which runs when --pipelines is not "
        "given). Nothing was run."
    )


def check_pipeline_names(names: Iterable[str], package: str = "podium") -> None:
    """Raise :class:`UnknownPipelineError` unless every name is a registered pipeline.

    A name that is a folder of ``<package>/pipelines/`` passes without importing anything,
    so a valid ``kedro run --pipelines=X`` still loads X alone (Kedro's selective loading);
    only another name makes this read the whole registry, to be sure and to list it."""
    doubtful = [name for name in names if name not in pipeline_folders(package) | {"__default__"}]
    if not doubtful:
        return
    registered = registered_pipelines()
    unknown = [name for name in doubtful if name not in registered]
    if unknown:
        raise UnknownPipelineError(unknown_pipelines_message(unknown, registered))


class InvalidParametersExit(click.ClickException):
    """Parameters that do not validate: a usage error (exit code 2), every problem listed,
    no traceback; the session stopped before its first node."""

    exit_code = 2


def _package(metadata) -> str:
    return getattr(metadata, "package_name", None) or "podium"


@cli.command(
    "run",
    params=list(kedro_run.params),
    context_settings=kedro_run.context_settings,
    short_help=kedro_run.short_help,
    help=f"{kedro_run.help.rstrip()}\n\nA --pipelines (or --pipeline) name that is not "
    "registered stops the command before any session starts, naming the registered "
    "pipelines and the closest match (exit code 2). Parameters that do not validate stop it "
    "before the first node, each problem with its path, the allowed values and the file to "
    "edit (exit code 2).",
)
@click.pass_context
def run(ctx: click.Context, **kwargs):
    """Kedro's own ``kedro run``, after the pipeline names are checked."""
    names = [*kwargs["pipelines"], *([kwargs["pipeline"]] if kwargs["pipeline"] else [])]
    check_pipeline_names(names, _package(ctx.obj))
    try:
        return ctx.invoke(kedro_run, **kwargs)
    except ParametersInvalid as error:
        raise InvalidParametersExit(f"{error}\nNothing was run.") from None


@cli.command("check-pipelines")
@click.argument("names", nargs=-1)
@click.pass_obj
def check_pipelines(metadata, names: tuple[str, ...]) -> None:
    """Exit 0 if every NAME (comma-separated lists too) is a registered pipeline, else exit 2
    naming the registered pipelines and the closest match. Runs nothing: `make run` asks it
    before writing the sample data."""
    split = [part.strip() for name in names for part in name.split(",") if part.strip()]
    check_pipeline_names(split, _package(metadata))


@cli.command("prune")
@click.option("--keep", default=3, show_default=True, help="Versions kept per output.")
@click.option("--data", "data_root", default="data", show_default=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.option(
    "--runs/--no-runs",
    default=True,
    show_default=True,
    help="Also mark MLflow runs left RUNNING by dead processes of this host (SIGKILL) as "
    "KILLED, and delete a run lock whose process is gone.",
)
@click.option("--env", "-e", default=None, help="Kedro environment whose mlflow.yml is read.")
@click.pass_obj
def prune(metadata, keep: int, data_root: str, dry_run: bool, runs: bool, env: str | None) -> None:
    """Delete all but the KEEP newest versions of every versioned output under data/;
    end runs that a killed process left RUNNING (KILLED) and its stale run lock."""
    outputs = find_versioned_outputs(Path(data_root))
    doomed = prune_versions(Path(data_root), keep=keep, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for folder in doomed:
        click.echo(f"{verb} {folder}")
    click.echo(f"{len(outputs)} versioned outputs, {verb} {len(doomed)} old versions")
    if runs and metadata is not None:  # inside a project (`kedro prune`)
        _prune_runs(_project_path(metadata), getattr(metadata, "package_name", None), env, dry_run)


def _prune_runs(project: Path, package: str | None, env: str | None, dry_run: bool) -> None:
    from mlflow.tracking import MlflowClient

    from podium.run_guard import LOCK_PATH, describe_lock, mark_dead_runs, release_stale_lock

    stale = release_stale_lock(project, dry_run=dry_run)
    if stale is not None:
        what = stale.get("unreadable") or describe_lock(stale)
        click.echo(
            f"{'would delete' if dry_run else 'deleted'} the run lock {project / LOCK_PATH} "
            f"of a run that is no longer running ({what})"
        )
    try:
        uri, name = _tracking_store(project, package, env)
    except Exception as error:  # noqa: BLE001 - the versions are pruned; say why runs are not
        click.echo(f"MLflow runs not checked: mlflow.yml could not be read ({error})")
        return
    if uri is None:
        click.echo("MLflow runs not checked: no tracking store yet")
        return
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        click.echo(f"MLflow runs not checked: no experiment '{name}' in {uri}")
        return
    found = mark_dead_runs(client, [experiment.experiment_id], by="kedro prune", dry_run=dry_run)
    verb = "would mark" if dry_run else "marked"
    for run in found:
        click.echo(
            f"{verb} KILLED: MLflow run {run.info.run_id} ({run.info.run_name}), left RUNNING "
            f"by process {run.data.tags.get('podium.pid')}, which is gone"
        )
    click.echo(f"{len(found)} MLflow runs left RUNNING by dead processes, {verb} KILLED")


def _tracking_store(project: Path, package: str | None, env: str | None):
    """(tracking URI, experiment name) from the project's mlflow.yml, as kedro-mlflow reads
    it; the URI is None where its sqlite file does not exist yet (nothing to check, and
    nothing to create)."""
    from kedro.config import OmegaConfigLoader

    from podium.ablation.project import _absolute_uri

    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"),
        base_env="base",
        default_run_env="local",
        env=env,
        config_patterns={"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    )
    conf = loader["mlflow"]
    uri = _absolute_uri((conf.get("server") or {}).get("mlflow_tracking_uri") or "", project)
    name = ((conf.get("tracking") or {}).get("experiment") or {}).get("name") or package
    prefix = "sqlite:///"
    if not uri or (uri.startswith(prefix) and not Path(uri[len(prefix) :]).exists()):
        return None, name
    return uri, name or "podium"


def _project_path(metadata) -> Path:
    # kedro passes the project's metadata to project commands; cwd outside kedro's CLI.
    return Path(getattr(metadata, "project_path", None) or Path.cwd())


@cli.command("ablate")
@click.option(
    "--grid",
    "grid_path",
    required=True,
    help="Grid file, e.g. conf/base/ablations/deepfake_split.yml (or its name).",
)
@click.option(
    "--seeds", default=None, help="Comma-separated seeds, e.g. 0,1,2 (default: the grid's `seeds`)."
)
@click.option("--params", default=None, help="Overrides for every point, as kedro run --params.")
@click.option("--env", "-e", default=None, help="Kedro configuration environment, e.g. full.")
@click.option(
    "--output",
    default="data/08_reporting/ablations",
    show_default=True,
    type=click.Path(),
    help="Report folder; <name>/ is added.",
)
@click.option(
    "--dry-run", is_flag=True, help="Check the grid and list the runs it would start; run nothing."
)
@click.option(
    "--fail-fast",
    is_flag=True,
    help="Stop at the first failed run (default: run the rest, then fail).",
)
@click.option("--verbose", "-v", is_flag=True, help="Stream each kedro run's output.")
@click.pass_obj
def ablate(metadata, grid_path, seeds, params, env, output, dry_run, fail_fast, verbose) -> None:
    """Run every point x seed of an ablation grid as MLflow child runs, then summarise.

    Repeating the command runs only what is not already done at this commit."""
    from podium.ablation.ablate import run_ablation, summary_table
    from podium.ablation.grid import GridError

    try:
        result = run_ablation(
            _project_path(metadata),
            grid_path,
            seeds=seeds,
            params=params,
            env=env,
            output_root=Path(output),
            dry_run=dry_run,
            fail_fast=fail_fast,
            verbose=verbose,
            echo=click.echo,
        )
    except GridError as error:
        raise click.ClickException(str(error)) from error
    if dry_run:
        return
    click.echo(f"\n{summary_table(result)}\n")
    click.echo(f"parent run {result.parent_id}; report in {result.paths['markdown'].parent}")
    if result.failed:
        click.echo(
            f"{len(result.failed)} run(s) failed: {', '.join(sorted(result.failed))}", err=True
        )
        sys.exit(1)


@cli.command("reproduce")
@click.option("--run-id", required=True, help="The MLflow run to reproduce.")
@click.option(
    "--rtol",
    default=1e-2,
    show_default=True,
    help="Relative tolerance when bit-identity is not expected.",
)
@click.option(
    "--atol",
    default=1e-4,
    show_default=True,
    help="Absolute tolerance when bit-identity is not expected.",
)
@click.option(
    "--exact/--tolerant",
    default=None,
    help="Force bit-identical or tolerant comparison (default: bit-identical for deterministic runs recorded and reproduced on CPU).",
)
@click.option(
    "--ignore-metric",
    multiple=True,
    help="Glob of metrics not compared (repeatable), besides timing and cache counters.",
)
@click.option(
    "--dry-run", is_flag=True, help="Report code, configuration and data differences; run nothing."
)
@click.option("--verbose", "-v", is_flag=True, help="Stream the kedro run's output.")
@click.pass_obj
def reproduce(metadata, run_id, rtol, atol, exact, ignore_metric, dry_run, verbose) -> None:
    """Re-run a tracked run from its recorded parameters and compare its metrics.

    Exit code: 0 match; 1 metrics differ (or the run failed); 2 data fingerprint differs; 3 both."""
    from podium.ablation.reproduce import ReproduceError, reproduce_run

    try:
        result = reproduce_run(
            _project_path(metadata),
            run_id,
            rtol=rtol,
            atol=atol,
            exact=exact,
            ignore=ignore_metric,
            dry_run=dry_run,
            verbose=verbose,
            echo=click.echo,
        )
    except ReproduceError as error:
        raise click.ClickException(str(error)) from error
    if dry_run:
        sys.exit(2 if result.data_before else 0)
    table = result.metrics
    if table is not None:
        compared = table[table.verdict != "ignored"]
        for row in compared[compared.verdict.isin(["differs", "missing"])].to_dict("records"):
            click.echo(
                f"  {row['verdict']}: {row['metric']} recorded {row['recorded']!r}, now {row['reproduced']!r}"
            )
        click.echo(
            f"  metrics: {compared.verdict.value_counts().to_dict()} ({len(table) - len(compared)} timing/cache metrics not compared)"
        )
    click.echo(
        f"  data: {'same fingerprint' if result.data_ok else 'FINGERPRINT MISMATCH: the run read different data'}"
    )
    verdict = "REPRODUCED" if result.exit_code == 0 else "NOT REPRODUCED"
    click.echo(
        f"{verdict} (new run {result.new_run_id}, exit code {result.exit_code}); report in {result.report_dir}"
    )
    sys.exit(result.exit_code)
