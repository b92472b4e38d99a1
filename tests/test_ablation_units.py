"""Ablation grids, run planning and summary statistics (no Kedro run, no MLflow)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from podium.ablation.grid import (
    GridError,
    check_against_project,
    load_grid,
    parse_params,
    parse_seeds,
)
from podium.ablation.plan import (
    OVERRIDES,
    POINT,
    SEED,
    TrackedRun,
    find_completed,
    nest,
    params_argument,
    plan_runs,
)
from podium.ablation.summary import paired_t_p, runs_frame, summarize, to_markdown, wilcoxon_p

PARAMS = {
    "deepfake": {
        "seed": 42,
        "split": {"strategy": "person_cluster", "n_folds": 3},
        "stacking": {"enabled": True},
        "calibration": {"factor": "fit"},
        "training": {"models": [{"name": "m"}]},
    }
}
GRID = {
    "name": "deepfake_split",
    "pipeline": "deepfake",
    "metric": "deepfake/report/oof/log_loss",
    "greater_is_better": False,
    "baseline": "folder",
    "points": {
        "folder": {"deepfake.split.strategy": "folder"},
        "person_cluster": {"deepfake.split.strategy": "person_cluster"},
    },
}


def write(tmp_path: Path, grid: dict, text: str | None = None) -> Path:
    path = tmp_path / "grid.yml"
    path.write_text(text if text is not None else yaml.safe_dump(grid))
    return path


def grid_error(tmp_path: Path, grid: dict | None = None, text: str | None = None) -> str:
    with pytest.raises(GridError) as caught:
        loaded = load_grid(write(tmp_path, grid or {}, text))
        check_against_project(loaded, ["deepfake", "mask"], PARAMS)
    return str(caught.value)


def test_a_valid_grid_loads_and_checks(tmp_path):
    grid = load_grid(write(tmp_path, GRID))
    check_against_project(grid, ["deepfake"], PARAMS)
    assert grid.baseline == "folder" and list(grid.points) == ["folder", "person_cluster"]
    assert grid.seed_key == "deepfake.seed"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"pipeline": "deepfak"}, "pipeline: 'deepfak' is not a registered pipeline"),
        ({"baseline": "random"}, "baseline: 'random' is not a point"),
        (
            {"points": {**GRID["points"], "folder": {"deepfake.splits.strategy": "folder"}}},
            "points.folder.deepfake.splits.strategy: no such parameter",
        ),
        (
            {"points": {**GRID["points"], "x": {"deepfake.stacking.enabled": "yes"}}},
            "does not fit the current value True",
        ),
        (
            {"points": {**GRID["points"], "x": {"deepfake.seed": 3}}},
            "the seed is set per run by --seeds",
        ),
        ({"points": {"folder": {}}}, "at least two named points"),
        ({"greater_is_beter": True}, "unknown key(s) greater_is_beter"),
        (
            {"points": {**GRID["points"], "x": {"deepfake.split": "folder"}}},
            "is a block of parameters",
        ),
    ],
)
def test_grid_mistakes_name_the_file_the_entry_and_the_fix(tmp_path, change, expected):
    message = grid_error(tmp_path, {**GRID, **change})
    assert expected in message
    assert str(tmp_path / "grid.yml") in message and "Fix:" in message


def test_a_misspelt_key_gets_a_suggestion(tmp_path):
    points = {**GRID["points"], "folder": {"deepfake.splits.strategy": "folder"}}
    assert "Did you mean 'deepfake.split.strategy'" in grid_error(
        tmp_path, {**GRID, "points": points}
    )


def test_yaml_booleans_as_point_names_are_caught(tmp_path):
    text = yaml.safe_dump(GRID) + "\n"
    text = text.replace("person_cluster:\n", "off:\n", 1)  # YAML 1.1 reads `off` as false
    assert "is not text" in grid_error(tmp_path, text=text)


def test_a_number_may_replace_a_string_parameter(tmp_path):
    # calibration.factor takes "fit" or a number
    points = {
        "a": {"deepfake.calibration.factor": "fit"},
        "b": {"deepfake.calibration.factor": 0.8},
    }
    grid = load_grid(write(tmp_path, {**GRID, "points": points, "baseline": "a"}))
    check_against_project(grid, ["deepfake"], PARAMS)


def test_seeds_and_params_parse_like_kedro_run():
    assert parse_seeds("0, 1,2") == (0, 1, 2)
    for bad in ("", "a", "1,1"):
        with pytest.raises(GridError):
            parse_seeds(bad)
    assert parse_params("deepfake.training.epochs=1,deepfake.stacking.enabled=false,x=fit") == {
        "deepfake.training.epochs": 1,
        "deepfake.stacking.enabled": False,
        "x": "fit",
    }
    with pytest.raises(GridError, match="key=value"):
        parse_params("deepfake.seed")


def test_plan_applies_extra_params_then_the_point_then_the_seed(tmp_path):
    grid = load_grid(write(tmp_path, GRID))
    planned = plan_runs(grid, (0, 1), {"deepfake.split.strategy": "random", "deepfake.x": 1})
    assert [r.label for r in planned] == [
        "folder/seed=0",
        "folder/seed=1",
        "person_cluster/seed=0",
        "person_cluster/seed=1",
    ]
    assert planned[1].overrides == {
        "deepfake.split.strategy": "folder",
        "deepfake.x": 1,
        "deepfake.seed": 1,
    }
    assert nest(planned[1].overrides) == {
        "deepfake": {"split": {"strategy": "folder"}, "x": 1, "seed": 1}
    }
    assert params_argument({"a": True, "b": None}) == "a=true,b=null"


def test_only_a_finished_run_with_same_overrides_commit_env_and_data_counts(tmp_path):
    grid = load_grid(write(tmp_path, GRID))
    run = plan_runs(grid, (0,), {})[0]
    tags = {
        POINT: "folder",
        SEED: "0",
        OVERRIDES: run.signature,
        "git_commit": "abc",
        "ablation.env": "default",
    }

    def done(status="FINISHED", fingerprint_ok=lambda tags: True, **changes):
        tracked = [TrackedRun("r1", status, {**tags, **changes}, 1)]
        found = find_completed(
            [run], tracked, commit="abc", env="default", fingerprint_ok=fingerprint_ok
        )
        return found.get(run.label)

    assert done().run_id == "r1"
    assert done(status="FAILED") is None
    assert done(git_commit="def") is None
    assert done(**{OVERRIDES: '{"deepfake.seed": 0}'}) is None
    assert done(**{"ablation.env": "full"}) is None
    assert done(fingerprint_ok=lambda tags: False) is None


def frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return runs_frame(
        {"point": point, "seed": seed, "run_id": f"{point}{seed}", "status": "FINISHED", "value": v}
        for point, series in values.items()
        for seed, v in enumerate(series)
    )


def test_summary_pairs_each_point_with_the_baseline_on_the_same_seed():
    runs = frame({"folder": [0.60, 0.70, 0.65], "person_cluster": [0.50, 0.61, 0.54]})
    summary = summarize(runs, ["folder", "person_cluster"], "folder", greater_is_better=False)
    base, point = summary.to_dict("records")
    assert base["verdict"] == "baseline" and base["n"] == 3
    assert point["mean"] == pytest.approx(np.mean([0.50, 0.61, 0.54]))
    assert point["diff_mean"] == pytest.approx(-0.1)
    # the differences barely vary, so the paired test sees what an unpaired one would miss
    assert point["t_p"] < 0.05 and point["verdict"] == "better (p<0.05)"
    assert point["wilcoxon_p"] == pytest.approx(0.25)  # 3 pairs: 2/2**3 at best


def test_summary_edge_cases_stay_defined():
    assert paired_t_p(np.array([0.0, 0.0])) == 1.0
    assert wilcoxon_p(np.array([0.0, 0.0])) == 1.0
    assert math.isnan(paired_t_p(np.array([0.1])))
    runs = frame({"a": [1.0, 2.0], "b": [1.0, 2.0]})
    same = summarize(runs, ["a", "b"], "a", greater_is_better=True).iloc[1]
    assert same.verdict == "same" and same.t_p == 1.0
    missing = runs_frame(
        [{"point": "a", "seed": 0, "run_id": "x", "status": "FINISHED", "value": 1.0}]
    )
    lonely = summarize(missing, ["a", "b"], "a", greater_is_better=True).iloc[1]
    assert lonely.n == 0 and lonely.verdict == "no paired runs"


def test_markdown_has_every_run_and_says_how_weak_the_tests_are():
    runs = frame({"folder": [0.6, 0.7], "person_cluster": [0.5, 0.65]})
    summary = summarize(runs, ["folder", "person_cluster"], "folder", greater_is_better=False)
    text = to_markdown(
        summary, runs, name="s", metric="m", greater_is_better=False, baseline="folder"
    )
    assert "| person_cluster | 2 | 0.5750 ± 0.1061 | -0.0750 ± 0.0354 |" in text
    assert all(
        f"| {p} | {s} | {p}{s} |" in text for p in ("folder", "person_cluster") for s in (0, 1)
    )
    assert "smallest possible p is 0.5" in text


GRIDS = sorted((Path(__file__).resolve().parents[1] / "conf/base/ablations").glob("*.yml"))


@pytest.fixture(scope="module")
def project_configuration():
    from kedro.framework.project import pipelines, settings
    from kedro.framework.startup import bootstrap_project

    from tests.conftest import REPO

    bootstrap_project(REPO)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(REPO / "conf"), **settings.CONFIG_LOADER_ARGS
    )
    return list(pipelines), loader["parameters"]


@pytest.mark.parametrize("path", GRIDS, ids=[p.stem for p in GRIDS])
def test_every_shipped_grid_names_real_parameters(path, project_configuration):
    registered, parameters = project_configuration
    grid = load_grid(path)
    assert grid.name == path.stem, "the grid's name is its file name"
    check_against_project(grid, registered, parameters)
