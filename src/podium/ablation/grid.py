"""Ablation grid files (``conf/base/ablations/<name>.yml``): loading and validation.

A grid names one pipeline, its primary metric and direction, and named points, each a
set of dotted parameter overrides (what ``kedro run --params`` takes). Every mistake
stops with a :class:`GridError` naming the file, the entry and the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from podium.core.params import by_position

REQUIRED = ("name", "pipeline", "metric", "greater_is_better", "baseline", "points")
OPTIONAL = ("description", "seeds", "params", "metrics")
# Names end up in MLflow tags, run names and report folders.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SCALARS = (str, int, float, bool, type(None))


class GridError(ValueError):
    """A malformed grid file, seed list or override."""


@dataclass(frozen=True)
class Grid:
    name: str
    pipeline: str
    metric: str
    greater_is_better: bool
    baseline: str
    points: dict[str, dict[str, Any]]
    path: Path
    description: str = ""
    seeds: tuple[int, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  # applied to every point
    metrics: tuple[str, ...] = ()  # secondary metrics shown beside the primary one

    @property
    def seed_key(self) -> str:
        return f"{self.pipeline}.seed"


def load_grid(path: str | Path) -> Grid:
    """Read and structurally check a grid file (no project needed)."""
    path = Path(path)
    if not path.is_file():
        raise GridError(
            f"{path}: no such grid file. Fix: pass --grid=conf/base/ablations/<name>.yml"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML ({error}). Fix the syntax.") from error
    if not isinstance(raw, Mapping):
        raise GridError(f"{path}: expected a mapping. Fix: give the keys {', '.join(REQUIRED)}.")
    _check_keys(path, raw)
    name = _name(path, "name", raw["name"])
    if not isinstance(raw["baseline"], str):
        raise GridError(f"{path}: baseline: {raw['baseline']!r} is not text. Fix: quote it.")
    points = _points(path, raw["points"])
    baseline = str(raw["baseline"])
    if baseline not in points:
        raise GridError(
            f"{path}: baseline: '{baseline}' is not a point of this grid. "
            f"Fix: set baseline to one of {sorted(points)}."
        )
    if not isinstance(raw["greater_is_better"], bool):
        raise GridError(f"{path}: greater_is_better: expected true or false. Fix: set it.")
    metrics = raw.get("metrics") or []
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise GridError(f"{path}: metrics: expected a list. Fix: metrics: [name, ...].")
    return Grid(
        name=name,
        pipeline=str(raw["pipeline"]),
        metric=str(raw["metric"]),
        greater_is_better=raw["greater_is_better"],
        baseline=baseline,
        points=points,
        path=path,
        description=str(raw.get("description") or ""),
        seeds=parse_seeds(raw["seeds"], f"{path}: seeds") if raw.get("seeds") is not None else (),
        params=_overrides(path, "params", raw.get("params") or {}),
        metrics=tuple(metrics),
    )


def check_against_project(
    grid: Grid, pipelines: Collection[str], parameters: Mapping[str, Any]
) -> None:
    """The grid's pipeline is registered and every override names an existing parameter
    of a compatible type; the seed comes from --seeds, never from a point."""
    if grid.pipeline not in pipelines:
        raise GridError(
            f"{grid.path}: pipeline: '{grid.pipeline}' is not a registered pipeline. "
            f"Fix: use one of {sorted(p for p in pipelines if p != '__default__')}."
        )
    found, _ = lookup(parameters, grid.seed_key)
    if not found:
        raise GridError(
            f"{grid.path}: pipeline '{grid.pipeline}' has no '{grid.seed_key}' parameter, so "
            f"seeds cannot vary. Fix: add {grid.seed_key} to its parameters file."
        )
    entries = [("params", grid.params)] + [(f"points.{p}", o) for p, o in grid.points.items()]
    for entry, overrides in entries:
        for key, value in overrides.items():
            if key == grid.seed_key:
                raise GridError(
                    f"{grid.path}: {entry}.{key}: the seed is set per run by --seeds. "
                    "Fix: remove it from the grid and pass --seeds=0,1,2."
                )
            check_override(parameters, key, value, where=f"{grid.path}: {entry}.{key}")


def check_override(parameters: Mapping[str, Any], key: str, value: Any, where: str) -> None:
    """``key`` exists in ``parameters`` and ``value`` has a compatible type."""
    found, current = lookup(parameters, key)
    if not found:
        close = difflib.get_close_matches(key, list(flatten(parameters)), n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise GridError(
            f"{where}: no such parameter in the project's parameters "
            f"(conf/<env>/parameters*.yml). {hint}Fix: use an existing dotted key."
        )
    if isinstance(current, Mapping):
        raise GridError(
            f"{where}: is a block of parameters, not one value. "
            f"Fix: override its leaves, e.g. {key}.{next(iter(current), '<leaf>')}."
        )
    if not _compatible(current, value):
        raise GridError(
            f"{where}: {value!r} ({type(value).__name__}) does not fit the current value "
            f"{current!r} ({type(current).__name__}). Fix: give a {type(current).__name__}."
        )


def parse_seeds(text: Any, where: str = "--seeds") -> tuple[int, ...]:
    """``"0,1,2"`` or ``[0, 1, 2]`` -> ``(0, 1, 2)``: distinct integers, in order."""
    items = text if isinstance(text, list | tuple) else str(text).split(",")
    try:
        seeds = tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError as error:
        raise GridError(
            f"{where}: {text!r} is not a seed list. Fix: integers like 0,1,2."
        ) from error
    if not seeds or len(set(seeds)) != len(seeds):
        raise GridError(f"{where}: {text!r} is not a seed list. Fix: distinct integers like 0,1,2.")
    return seeds


def parse_params(text: str | None) -> dict[str, Any]:
    """``kedro run --params`` syntax, ``"a.b=1,c=x"`` -> ``{"a.b": 1, "c": "x"}``; values
    are typed as YAML reads them (1 -> int, true -> bool, null -> None)."""
    overrides: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GridError(
                f"--params: '{item}' must look like key=value. Fix: e.g. deepfake.training.epochs=1."
            )
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return overrides


def lookup(parameters: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = parameters
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def flatten(
    parameters: Mapping[str, Any], prefix: str = "", *, entries: bool = False
) -> dict[str, Any]:
    """Dotted keys of every leaf (lists are leaves: an ablation axis sets a whole list).

    ``entries``: a list of blocks (model entries, transforms) is flattened by position too
    (``deepfake.training.models.0.backbone``), as podium logs it to MLflow."""
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        dotted = f"{prefix}{key}"
        if entries and by_position(value) is not None:
            value = by_position(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}.", entries=entries))
        else:
            flat[dotted] = value
    return flat


def _check_keys(path: Path, raw: Mapping[str, Any]) -> None:
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise GridError(
            f"{path}: missing {', '.join(missing)}. Fix: add them (see conf/base/ablations/)."
        )
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise GridError(
            f"{path}: unknown key(s) {', '.join(unknown)}. "
            f"Fix: use only {', '.join(REQUIRED + OPTIONAL)}."
        )


def _name(path: Path, entry: str, value: Any) -> str:
    name = str(value)
    if not NAME_PATTERN.match(name):
        raise GridError(
            f"{path}: {entry}: '{name}' must be letters, digits, '_', '.' or '-'. Fix: rename it."
        )
    return name


def _points(path: Path, raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, Mapping) or len(raw) < 2:
        raise GridError(
            f"{path}: points: expected at least two named points. Fix: points: {{name: {{key: value}}, ...}}."
        )
    for name in raw:
        if not isinstance(name, str):
            raise GridError(
                f"{path}: points: the point name {name!r} is not text (YAML reads on/off/yes/no "
                "as booleans and bare numbers as numbers). Fix: quote it or rename it."
            )
    return {
        _name(path, f"points.{name}", name): _overrides(path, f"points.{name}", overrides)
        for name, overrides in raw.items()
    }


def _overrides(path: Path, entry: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise GridError(
            f"{path}: {entry}: expected a mapping. Fix: {{dotted.parameter.key: value}}."
        )
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise GridError(
                f"{path}: {entry}: {key!r} is not a parameter name. Fix: use a dotted key."
            )
        if isinstance(value, Mapping):
            raise GridError(
                f"{path}: {entry}.{key}: a mapping value replaces a whole block. "
                f"Fix: override its leaves one by one ({key}.<leaf>: value)."
            )
    return dict(raw)


def _compatible(current: Any, value: Any) -> bool:
    if current is None or value is None:
        return True
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, int | float):
        return isinstance(value, int | float)
    if isinstance(current, str):
        # A parameter such as calibration.factor takes "fit" or a number.
        return isinstance(value, str | int | float)
    if isinstance(current, list | tuple):
        return isinstance(value, list | tuple)
    return True
