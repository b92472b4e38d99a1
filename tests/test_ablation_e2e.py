"""`kedro ablate` end to end: a tiny 2-point x 2-seed deepfake split ablation."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from podium.ablation.ablate import run_ablation
from podium.ablation.grid import GridError
from tests.conftest import TINY_ABLATION_GRID, tracked_runs

pytestmark = pytest.mark.slow


def ablation_runs(project):
    client, runs = tracked_runs(project)
    parents = [r for r in runs if r.data.tags.get("kind") == "ablation"]
    children = [r for r in runs if r.data.tags.get("kind") == "ablation_run"]
    return client, parents, children


def test_each_point_and_seed_is_one_child_run_of_one_parent(ablated_project):
    _, parents, children = ablation_runs(ablated_project)
    assert len(parents) == 1 and parents[0].data.tags["ablation"] == "tiny_split"
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    seen = set()
    for run in children:
        tags, params = run.data.tags, run.data.params
        point, seed = tags["ablation.point"], tags["ablation.seed"]
        seen.add((point, seed))
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["ablation"] == "tiny_split"
        assert run.info.run_name == f"deepfake:{point}:seed{seed}"
        # the overrides reached the run: kedro-mlflow logged them, the hooks seeded with them
        assert params["deepfake.split.strategy"] == point
        assert params["deepfake.seed"] == seed == tags["seed"]
        assert tags["git_commit"] == parent.data.tags["git_commit"]
        assert "deepfake/report/oof/log_loss" in run.data.metrics
    assert seen == {(p, s) for p in ("original", "folder") for s in ("0", "1")}


def test_the_summary_has_every_run_and_is_logged_to_the_parent(ablated_project):
    client, parents, children = ablation_runs(ablated_project)
    folder = ablated_project / "data/08_reporting/ablations/tiny_split"
    runs = pd.read_csv(folder / "runs.csv")
    metrics = {r.info.run_id: r.data.metrics["deepfake/report/oof/log_loss"] for r in children}
    assert sorted(runs.run_id) == sorted(metrics)
    for row in runs.itertuples():
        assert row.value == metrics[row.run_id]
    summary = pd.read_csv(folder / "summary.csv").set_index("point")
    assert summary.loc["original", "verdict"] == "baseline"
    assert summary.loc["folder", "n_pairs"] == 2
    expected = (
        runs[runs.point == "folder"].value.mean() - runs[runs.point == "original"].value.mean()
    )
    assert summary.loc["folder", "diff_mean"] == pytest.approx(expected)
    markdown = (folder / "summary.md").read_text()
    assert all(run_id in markdown for run_id in metrics)
    assert (folder / "summary.png").stat().st_size > 5000
    parent = parents[0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "ablation")}
    assert {"ablation/summary.md", "ablation/summary.csv", "ablation/summary.png"} <= artifacts
    assert "ablation/folder/diff_mean" in parent.data.metrics
    assert json.loads(parent.data.tags["ablation.seeds"]) == [0, 1]


def test_repeating_the_command_runs_nothing_new(ablated_project):
    before = {r.info.run_id for r in ablation_runs(ablated_project)[2]}
    lines: list[str] = []
    result = run_ablation(ablated_project, "tiny_split", seeds="0,1", echo=lines.append)
    assert not result.ran and not result.failed and len(result.reused) == 4
    assert any("4 already done" in line and "0 to run" in line for line in lines)
    _, parents, children = ablation_runs(ablated_project)
    assert {r.info.run_id for r in children} == before and len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    assert "| folder | 2 |" in result.markdown  # the summary is made again from the same runs


def test_a_new_seed_plans_only_its_own_runs(ablated_project):
    lines: list[str] = []
    result = run_ablation(
        ablated_project, "tiny_split", seeds="0,1,2", dry_run=True, echo=lines.append
    )
    assert len(result.reused) == 4
    would = [line for line in lines if "would run" in line]
    assert len(would) == 2 and all("deepfake.seed=2" in line for line in would)


def test_a_bad_grid_stops_before_any_run(ablated_project):
    bad = {
        **TINY_ABLATION_GRID,
        "points": {"a": {"deepfake.splits.strategy": "folder"}, "b": {}},
        "baseline": "a",
    }
    path = ablated_project / "conf/base/ablations/bad.yml"
    path.write_text(yaml.safe_dump(bad))
    try:
        with pytest.raises(GridError) as caught:
            run_ablation(ablated_project, path, seeds="0", echo=lambda line: None)
    finally:
        path.unlink()
    message = str(caught.value)
    assert str(path) in message and "points.a.deepfake.splits.strategy" in message
    assert "deepfake.split.strategy" in message and "Fix:" in message
