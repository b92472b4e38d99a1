"""The Kedro project as a user meets it: registry, a tracked run, kedro-viz."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project

from tests.conftest import REPO, free_port, kedro_run, stop_group, tracked_runs


def test_registry_holds_only_pipelines_with_nodes():
    bootstrap_project(REPO)
    from podium.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    assert "sample_data" in pipelines
    assert all(pipe.nodes for pipe in pipelines.values())
    generators = {n.name for n in pipelines["sample_data"].nodes if n.name.startswith("generate_")}
    assert generators == {f"generate_{c}_sample" for c in ("deepfake", "mask", "uda", "monet")}


@pytest.mark.slow
def test_a_run_is_one_tracked_mlflow_run_with_reproducibility_tags(tiny_project):
    import torch

    torch.set_num_threads(2)
    kedro_run(tiny_project, "sample_data")
    assert torch.get_num_threads() == 1  # runtime.torch_threads
    client, runs = tracked_runs(tiny_project)
    assert len(runs) == 1
    run = runs[0]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tiny_project, capture_output=True, text=True
    ).stdout.strip()
    assert run.info.run_name == "sample_data"
    assert run.info.status == "FINISHED"
    assert run.data.tags["git_commit"] == head
    assert run.data.tags["git_dirty"] == "false"
    assert run.data.tags["seed"] == str(run.data.params["sample_data.seed"])
    assert run.data.tags["data_fingerprint.scope"] == "written"
    assert len(run.data.tags["data_fingerprint"]) == 64
    assert {"data_fingerprint.deepfake_raw", "data_fingerprint.mask_raw"} <= set(run.data.tags)
    # parameters are flattened: one MLflow parameter per leaf
    assert any(key.startswith("sample_data.deepfake.") for key in run.data.params)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "sample_data")}
    assert "sample_data/deepfake_contact_sheet.png" in artifacts
    assert (
        tiny_project / "data" / "08_reporting" / "sample_data" / "mask_contact_sheet.png"
    ).exists()


@pytest.mark.slow
def test_same_seed_same_fingerprint_other_seed_another(tiny_project):
    kedro_run(tiny_project, "sample_data")
    kedro_run(tiny_project, "sample_data")
    kedro_run(tiny_project, "sample_data", {"sample_data": {"seed": 12345}})
    _, runs = tracked_runs(tiny_project)
    assert len({r.info.run_id for r in runs}) == 3
    first, again, other = (r.data.tags["data_fingerprint"] for r in runs)
    assert first == again
    assert other != first
    assert runs[2].data.tags["seed"] == "12345"


def test_an_unknown_generator_parameter_fails_naming_it(tiny_project):
    with pytest.raises(ValueError, match="frames_per_vidoe"):
        kedro_run(
            tiny_project, "sample_data", {"sample_data": {"deepfake": {"frames_per_vidoe": 3}}}
        )


@pytest.mark.slow
def test_kedro_viz_serves_the_registered_pipelines(tmp_path):
    port = free_port()
    kedro = Path(sys.executable).with_name("kedro")
    log = (tmp_path / "viz.log").open("w")
    server = subprocess.Popen(
        [str(kedro), "viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # kedro viz serves from a child process: stop both together
    )
    try:
        payload = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/main", timeout=5
                ) as reply:
                    payload = json.load(reply)
                break
            except OSError:
                time.sleep(1)
        output = (tmp_path / "viz.log").read_text()[-3000:]
        assert payload is not None, f"kedro viz did not answer on /api/main:\n{output}"
        pipeline_ids = {p["id"] for p in payload["pipelines"]}
        assert {"sample_data", "deepfake"} <= pipeline_ids
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/pipelines/sample_data", timeout=30
        ) as reply:
            sample = json.load(reply)
        names = {n["name"] for n in sample["nodes"]}
        assert "generate_deepfake_sample" in names and "deepfake_raw" in names
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/pipelines/deepfake", timeout=30
        ) as reply:
            deepfake = {n["name"] for n in json.load(reply)["nodes"]}
        assert {"extract_faces", "train_frame_models", "deepfake_submission"} <= deepfake
    finally:
        stop_group(server)
        log.close()
