"""``kedro reproduce``: run a tracked run again from what MLflow recorded and say whether
its metrics come out the same.

The new run gets the recorded pipeline, environment, run options and runtime overrides;
parameters whose current configuration differs from the logged value are restored from
the log (and listed). Nothing is checked out: a different git commit or a dirty tree is
reported, as is data whose fingerprint differs from the recorded one. Metrics must be
bit-identical when the run was deterministic, was recorded on CPU (its ``device`` tag) and
is reproduced on CPU; otherwise they must agree within ``rtol``/``atol``, and the report
says why (see ``bit_identity_expected``). Timing and cache-bookkeeping metrics are not
compared.
"""

from __future__ import annotations

import ast
import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from podium.ablation.grid import flatten
from podium.ablation.plan import OVERRIDES, nest
from podium.ablation.project import (
    DEFAULT_ENV,
    Project,
    fingerprint_drift,
    git_state,
    load_project,
    run_kedro,
    tail,
)
from podium.core.config import soft_merged

# Metrics that measure the machine or what a cache spared this run, not the result.
VOLATILE_METRICS = (
    "*seconds*",
    "*per_second*",
    "*duration*",
    "*skipped_existing*",
    "deepfake/faces/extracted",
    "deepfake/faces/frames",
    "deepfake/faces/frames_with_face",
    "deepfake/faces/faces",
    "deepfake/faces/face_frame_rate",
)
# kedro run options kedro-mlflow records as tags, as `kedro run --config` names them.
RUN_OPTIONS = (
    "tags",
    "node_names",
    "from_nodes",
    "to_nodes",
    "from_inputs",
    "to_outputs",
    "namespaces",
)
MAX_PARAM_LENGTH = 6000  # MLflow's cap; kedro-mlflow truncates or moves longer values
METRICS_DIFFER, DATA_DIFFERS = 1, 2  # exit code bits
REPORTS = Path("data/08_reporting/reproduce")

Echo = Callable[[str], None]


class ReproduceError(RuntimeError):
    """The run cannot be reproduced as asked (unknown id, not a kedro run)."""


@dataclass
class Reproduction:
    run_id: str
    pipeline: str
    env: str | None
    overrides: dict[str, Any]
    restored: dict[str, tuple[str, str]]  # param -> (logged, current config)
    git: dict[str, str]  # recorded / current commit and dirty flag
    data_before: dict[str, tuple[str, str | None]]  # dataset -> (recorded, on disk now)
    exact: bool
    rtol: float
    atol: float
    new_run_id: str | None = None
    status: str = "not run"
    fingerprint: tuple[str, str] = ("", "")  # recorded, reproduced
    param_diffs: dict[str, tuple[str, str]] = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    report_dir: Path | None = None  # <REPORTS>/<run id>/<new run id>/
    exact_reason: str = ""  # why bit-identity is (not) demanded
    devices: tuple[str, str] = ("", "")  # recorded (from its tags), this reproduction's

    @property
    def comparison(self) -> str:
        mode = "bit-identical" if self.exact else f"within rtol={self.rtol:g}, atol={self.atol:g}"
        return f"{mode} ({self.exact_reason})" if self.exact_reason else mode

    @property
    def metrics_ok(self) -> bool:
        return (
            self.metrics is not None
            and not (self.metrics.verdict.isin(["differs", "missing"])).any()
        )

    @property
    def data_ok(self) -> bool:
        return not self.data_before and self.fingerprint[0] == self.fingerprint[1]

    @property
    def exit_code(self) -> int:
        if self.status != "FINISHED":
            return METRICS_DIFFER | (0 if not self.data_before else DATA_DIFFERS)
        return (0 if self.metrics_ok else METRICS_DIFFER) | (0 if self.data_ok else DATA_DIFFERS)


def reproduce_run(
    project_path: Path,
    run_id: str,
    *,
    rtol: float = 1e-2,
    atol: float = 1e-4,
    exact: bool | None = None,
    ignore: Iterable[str] = (),
    dry_run: bool = False,
    verbose: bool = False,
    echo: Echo = print,
) -> Reproduction:
    base = load_project(project_path)
    client = MlflowClient(tracking_uri=base.tracking_uri)
    original = _get_run(client, run_id)
    tags = original.data.tags
    pipeline = _pipeline(original)
    env = None if tags.get("env") in (None, "None", DEFAULT_ENV) else tags["env"]
    overrides = recorded_overrides(tags)
    project = load_project(project_path, env, nest(overrides)) if (env or overrides) else base
    restored = param_drift(original.data.params, project.parameters)
    overrides.update({key: parse_logged(logged) for key, (logged, _) in restored.items()})
    runtime = soft_merged(
        project.parameters.get("runtime") or {}, nest(overrides).get("runtime") or {}
    )
    device = reproduction_device(runtime)
    expected, reason = bit_identity_expected(tags, device)
    if exact is not None and exact != expected:
        reason = f"{'--exact' if exact else '--tolerant'} given; by the tags: {reason}"
    result = Reproduction(
        run_id=run_id,
        pipeline=pipeline,
        env=env,
        overrides=overrides,
        restored=restored,
        git=_git_report(tags, git_state(project.path)),
        data_before=fingerprint_drift(project.catalog, tags),
        exact=expected if exact is None else exact,
        rtol=rtol,
        atol=atol,
        exact_reason=reason,
        devices=(_recorded_device(tags), device),
    )
    _echo_preflight(echo, result)
    if dry_run:
        return result
    from podium.run_guard import check_run_lock

    check_run_lock(project.path)  # a live `kedro run` in this folder would refuse the re-run
    _rerun(client, project, original, result, verbose, echo)
    reproduced = client.get_run(result.new_run_id)
    result.fingerprint = (
        tags.get("data_fingerprint", "none"),
        reproduced.data.tags.get("data_fingerprint", "none"),
    )
    result.param_diffs = _param_diffs(original.data.params, reproduced.data.params)
    patterns = (*VOLATILE_METRICS, *ignore)
    result.metrics = compare_metrics(
        original.data.metrics, reproduced.data.metrics, result.exact, rtol, atol, patterns
    )
    _record(client, result)
    return result


def _get_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        raise ReproduceError(
            f"run {run_id} is not in the tracking store {client.tracking_uri}. "
            "Fix: copy the id from the MLflow UI (make ui) or from `kedro ablate`'s report."
        ) from error


def _pipeline(run: Run) -> str:
    raw = run.data.tags.get("pipeline_names")
    try:
        names = ast.literal_eval(raw) if raw else None
    except (ValueError, SyntaxError):
        names = None
    if not names:
        raise ReproduceError(
            f"run {run.info.run_id} has no pipeline_names tag: it was not started by kedro run "
            "(an ablation parent run? pass one of its child runs instead)."
        )
    return ",".join(names)


def recorded_overrides(tags: Mapping[str, str]) -> dict[str, Any]:
    """The runtime ``--params`` of a run, flat: kedro-mlflow's ``runtime_params`` tag, or
    the ablation's own record of them."""
    raw = tags.get("runtime_params")
    if raw:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, dict):
            return flatten(value)
    if tags.get(OVERRIDES):
        import json

        return dict(json.loads(tags[OVERRIDES]))
    return {}


def param_drift(
    logged: Mapping[str, str], parameters: Mapping[str, Any]
) -> dict[str, tuple[str, str]]:
    """Logged parameters whose value in today's configuration differs:
    ``key -> (logged, now)``. Values are compared as kedro-mlflow logs them (str)."""
    current = {key: str(value) for key, value in flatten(parameters, entries=True).items()}
    drift = {}
    for key, value in logged.items():
        if len(value) >= MAX_PARAM_LENGTH or key not in current:
            continue  # truncated in the log, or a name the current config lacks
        if current[key] != value:
            drift[key] = (value, current[key])
    return drift


def parse_logged(value: str) -> Any:
    """A logged parameter back to a value: Python literals (1, 0.5, True, None, lists,
    dicts) as such, anything else as the string it is."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _git_report(tags: Mapping[str, str], now: Mapping[str, str]) -> dict[str, str]:
    return {
        "recorded_commit": tags.get("git_commit", "not recorded"),
        "recorded_dirty": tags.get("git_dirty", "unknown"),
        "current_commit": now["git_commit"],
        "current_dirty": now["git_dirty"],
    }


def reproduction_device(runtime: Mapping[str, Any] | None) -> str:
    """The device type (cpu | cuda | mps) the reproduction trains on: its ``runtime``
    block resolved as the nodes resolve it (a block that does not resolve here: the
    default choice, GPU when one is visible)."""
    import torch

    from podium.core.device import resolve_runtime

    try:
        return resolve_runtime(dict(runtime or {})).device.type
    except Exception:  # noqa: BLE001 - the run itself will name the bad parameter
        return "cuda" if torch.cuda.is_available() else "cpu"


def _recorded_device(tags: Mapping[str, str]) -> str:
    device = tags.get("device")
    if device is None:
        return "not recorded"
    name = tags.get("device.name")
    return f"{device} ({name})" if name else device


def bit_identity_expected(
    tags: Mapping[str, str], reproduction_device: str, cuda_available: bool | None = None
) -> tuple[bool, str]:
    """Whether a reproduction must give bit-identical metrics, and why (or why not).

    Bit-identity is promised only for a run that was deterministic (``deterministic`` tag),
    recorded on CPU (``device`` tag, set by podium.hooks) and reproduced on CPU. A run
    recorded on a GPU is compared within tolerance even when deterministic: cuDNN/cuBLAS
    pick kernels by GPU model, driver and library version, and reductions may use atomics,
    so the same seed is close, not identical. A run recorded before runs carried the
    ``device`` tag keeps the old rule: bit-identical when deterministic and no GPU is
    visible to the reproduction (``cuda_available``; default: torch's answer)."""
    if tags.get("deterministic") != "true":
        return False, "the recorded run was not deterministic"
    recorded = tags.get("device")
    if recorded is None:
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        if cuda_available:
            return False, (
                "the recorded run has no device tag and a GPU is visible here, so "
                "the two runs may not share a device"
            )
        return (
            True,
            "deterministic run with no device tag (recorded before it existed), no GPU here",
        )
    if recorded not in ("cpu", "cuda", "mps"):
        return False, f"the recorded run's device is unknown (device tag {recorded!r})"
    if recorded != "cpu":
        name = tags.get("device.name")
        where = f"{recorded} ({name})" if name else recorded
        return False, (
            f"recorded on {where}: GPU kernels are not bit-identical across runs, GPU "
            "models or library versions, even when deterministic"
        )
    if reproduction_device != "cpu":
        return False, (
            f"recorded on cpu but reproduced on {reproduction_device}: CPU and GPU "
            "arithmetic round differently"
        )
    return True, "deterministic run, recorded on cpu and reproduced on cpu"


def _echo_preflight(echo: Echo, result: Reproduction) -> None:
    git = result.git
    echo(
        f"reproducing run {result.run_id}: kedro run --pipelines={result.pipeline}"
        + (f" --env={result.env}" if result.env else "")
    )
    echo(f"  overrides: {result.overrides or 'none'}")
    if git["recorded_commit"] != git["current_commit"]:
        echo(
            f"  code: recorded at commit {git['recorded_commit']}, now at {git['current_commit']}: the code may differ (nothing is checked out)"
        )
    else:
        echo(f"  code: same commit {git['current_commit'][:10]}")
    if "true" in (git["recorded_dirty"], git["current_dirty"]):
        echo(
            f"  code: uncommitted changes (recorded run dirty={git['recorded_dirty']}, now dirty={git['current_dirty']})"
        )
    for key, (logged, now) in result.restored.items():
        echo(
            f"  config: {key} is {now!r} now, {logged!r} in the recorded run: restored from the log"
        )
    for dataset, (recorded, now) in result.data_before.items():
        echo(
            f"  DATA MISMATCH: {dataset} fingerprint {recorded[:12]} recorded, {str(now)[:12]} on disk now"
        )
    recorded_device, device = result.devices
    if recorded_device or device:
        echo(f"  device: recorded on {recorded_device}, reproducing on {device}")
    echo(f"  metrics must be {result.comparison}")


def _rerun(
    client: MlflowClient,
    project: Project,
    original: Run,
    result: Reproduction,
    verbose: bool,
    echo: Echo,
) -> None:
    tags = original.data.tags
    name = f"{original.info.run_name}:reproduce"
    run = client.create_run(
        original.info.experiment_id,
        run_name=name,
        tags={"kind": "reproduction", "reproduces": result.run_id},
    )
    result.new_run_id = run.info.run_id
    result.report_dir = project.path / REPORTS / result.run_id / result.new_run_id
    log_path = result.report_dir / "run.log"
    echo(f"  new run {result.new_run_id} (log {log_path})")
    try:
        code = run_kedro(
            project.path,
            pipeline=result.pipeline,
            overrides=result.overrides,
            mlflow_run_id=result.new_run_id,
            log_path=log_path,
            env=result.env,
            options=_run_options(tags),
            echo=echo if verbose else None,
        )
    except KeyboardInterrupt:
        client.set_terminated(result.new_run_id, "KILLED")
        raise
    client.set_tag(result.new_run_id, "mlflow.runName", name)
    result.status = client.get_run(result.new_run_id).info.status
    if result.status == "RUNNING" or code != 0:
        client.set_terminated(result.new_run_id, "FAILED")
        result.status = "FAILED"
        echo(f"  the run failed (exit code {code}); last lines of {log_path}:\n{tail(log_path)}")


def _run_options(tags: Mapping[str, str]) -> dict[str, str]:
    """Node selections of the recorded run (``kedro run --tags/--nodes/...``)."""
    options = {}
    for key in RUN_OPTIONS:
        raw = tags.get(key)
        value = parse_logged(raw) if raw else None
        if value:
            options[key] = ",".join(value) if isinstance(value, list | tuple) else str(value)
    return options


def _param_diffs(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    keys = set(before) | set(after)
    return {
        k: (before.get(k, "–"), after.get(k, "–"))
        for k in sorted(keys)
        if before.get(k) != after.get(k)
    }


def compare_metrics(
    recorded: Mapping[str, float],
    reproduced: Mapping[str, float],
    exact: bool,
    rtol: float,
    atol: float,
    ignore: Iterable[str] = VOLATILE_METRICS,
) -> pd.DataFrame:
    """One row per recorded metric: both values, the difference and a verdict
    (identical, within tolerance, differs, missing, ignored)."""
    patterns = tuple(ignore)
    rows = []
    for name in sorted(recorded):
        before, after = recorded[name], reproduced.get(name)
        rows.append(
            {
                "metric": name,
                "recorded": before,
                "reproduced": after,
                "abs_diff": _diff(before, after),
                "verdict": _verdict(name, before, after, exact, rtol, atol, patterns),
            }
        )
    return pd.DataFrame(rows, columns=["metric", "recorded", "reproduced", "abs_diff", "verdict"])


def _diff(before: float, after: float | None) -> float:
    return math.nan if after is None else abs(after - before)


def _verdict(
    name: str, before: float, after: float | None, exact: bool, rtol: float, atol: float, patterns
) -> str:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
        return "ignored"
    if after is None:
        return "missing"
    if before == after or (math.isnan(before) and math.isnan(after)):
        return "identical"
    if not exact and math.isclose(before, after, rel_tol=rtol, abs_tol=atol):
        return "within tolerance"
    return "differs"


def to_markdown(result: Reproduction) -> str:
    git, (recorded_fp, reproduced_fp) = result.git, result.fingerprint
    counts = result.metrics.verdict.value_counts().to_dict() if result.metrics is not None else {}
    lines = [
        f"# Reproduction of run `{result.run_id}`",
        "",
        f"- new run: `{result.new_run_id}` ({result.status}); pipeline `{result.pipeline}`, env `{result.env or DEFAULT_ENV}`",
        f"- overrides: `{result.overrides}`",
        f"- code: recorded commit `{git['recorded_commit']}` (dirty={git['recorded_dirty']}), current `{git['current_commit']}` (dirty={git['current_dirty']})",
        f"- data fingerprint: recorded `{recorded_fp}`, reproduced `{reproduced_fp}`: {'match' if result.data_ok else 'MISMATCH'}",
        *[
            f"  - `{d}` changed: `{r[:16]}` recorded, `{str(n)[:16]}` now"
            for d, (r, n) in result.data_before.items()
        ],
        f"- restored parameters: {result.restored or 'none'}",
        f"- logged parameters that differ between the runs: {result.param_diffs or 'none'}",
        f"- device: recorded on {result.devices[0] or 'unknown'}, reproduced on {result.devices[1] or 'unknown'}",
        f"- comparison: {result.comparison}",
        f"- metrics: {counts}; verdict: {'MATCH' if result.metrics_ok else 'MISMATCH'}",
        "",
        "| metric | recorded | reproduced | abs diff | verdict |",
        "|---|---|---|---|---|",
    ]
    if result.metrics is not None:
        for row in result.metrics.to_dict("records"):
            lines.append(
                f"| {row['metric']} | {row['recorded']!r} | {row['reproduced']!r} | {row['abs_diff']:.3g} | {row['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def _record(client: MlflowClient, result: Reproduction) -> None:
    """The report beside the data and as the new run's artifacts and tags."""
    folder = result.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(to_markdown(result))
    result.metrics.to_csv(folder / "metrics.csv", index=False)
    verdict = (
        "identical"
        if result.metrics_ok and result.exact
        else ("within_tolerance" if result.metrics_ok else "mismatch")
    )
    client.set_tag(result.new_run_id, "reproduce.metrics", verdict)
    client.set_tag(result.new_run_id, "reproduce.comparison", result.comparison[:5000])
    client.set_tag(result.new_run_id, "reproduce.data", "match" if result.data_ok else "mismatch")
    for name in ("report.md", "metrics.csv", "run.log"):
        if (folder / name).exists():
            client.log_artifact(result.new_run_id, str(folder / name), artifact_path="reproduce")
