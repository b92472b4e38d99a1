"""From a grid to runs: one per point x seed, and which of them are already done.

A planned run is identified by its point, its seed and the exact overrides it passes;
a tracked run counts as done for it only if it finished at the same git commit, in the
same configuration environment, on the same data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from podium.ablation.grid import Grid

# Tag keys every ablation run carries (the notebook and the UI filter on them).
KIND = "kind"
ABLATION = "ablation"
POINT = "ablation.point"
SEED = "ablation.seed"
OVERRIDES = "ablation.overrides"
SIGNATURE = "ablation.signature"
ENV = "ablation.env"
PARENT_KIND = "ablation"
CHILD_KIND = "ablation_run"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class PlannedRun:
    point: str
    seed: int
    overrides: dict[str, Any]  # dotted key -> value, seed included

    @property
    def label(self) -> str:
        return f"{self.point}/seed={self.seed}"

    @property
    def signature(self) -> str:
        return canonical(self.overrides)


@dataclass(frozen=True)
class TrackedRun:
    """What planning needs to know of one tracked child run."""

    run_id: str
    status: str
    tags: Mapping[str, str]
    start_time: int = 0


def canonical(overrides: Mapping[str, Any]) -> str:
    """One string per set of overrides, whatever their order."""
    return json.dumps(dict(sorted(overrides.items())), sort_keys=True, default=str)


def plan_runs(grid: Grid, seeds: Iterable[int], extra: Mapping[str, Any]) -> list[PlannedRun]:
    """Every point x seed: the grid's common params, then ``--params``, then the point's own
    overrides, then the seed (later wins)."""
    return [
        PlannedRun(point, seed, {**grid.params, **extra, **overrides, grid.seed_key: seed})
        for point, overrides in grid.points.items()
        for seed in seeds
    ]


def parent_signature(grid: Grid, extra: Mapping[str, Any], env: str, commit: str) -> str:
    """Runs of one grid share a parent while its pipeline, common overrides, environment and
    code stay the same; new points or seeds join that parent."""
    key = canonical({"pipeline": grid.pipeline, "params": {**grid.params, **extra}, "env": env})
    return hashlib.sha256(f"{grid.name}|{key}|{commit}".encode()).hexdigest()[:16]


def find_completed(
    planned: Iterable[PlannedRun],
    tracked: Iterable[TrackedRun],
    *,
    commit: str,
    env: str,
    fingerprint_ok: Any = lambda tags: True,
) -> dict[str, TrackedRun]:
    """``label -> run`` for each planned run a FINISHED tracked run already answers (the
    newest one when several do). ``fingerprint_ok(tags)`` says whether a run's recorded
    data fingerprint still matches the data on disk."""
    done: dict[str, TrackedRun] = {}
    candidates = sorted(
        (r for r in tracked if r.status == "FINISHED"), key=lambda r: r.start_time, reverse=True
    )
    for run in planned:
        for candidate in candidates:
            tags = candidate.tags
            if (
                tags.get(POINT) == run.point
                and tags.get(SEED) == str(run.seed)
                and tags.get(OVERRIDES) == run.signature
                and tags.get("git_commit") == commit
                and tags.get(ENV, "") == env
                and fingerprint_ok(tags)
            ):
                done[run.label] = candidate
                break
    return done


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (what ``kedro run --config`` takes as params)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def params_argument(flat: Mapping[str, Any]) -> str:
    """The ``--params`` string a person would type for these overrides (for logs)."""

    def text(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return ",".join(f"{key}={text(value)}" for key, value in flat.items())
