"""The two UIs people compare runs in, driven by headless Chromium (Debian's package):
kedro-viz draws the deepfake pipeline, and the MLflow UI lists an ablation's runs with
their parameters. Each test saves a screenshot under data/08_reporting/browser/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, make_project, stop_group, tracked_runs

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("PODIUM_CHROMIUM", "/usr/bin/chromium"))
# Offline and quiet: no sandbox (root in CI), no GPU, no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "data" / "08_reporting" / "browser"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs chromium before the tests")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        yield context
        context.close()


@contextmanager
def serve(command: list[str], cwd: Path, url: str, log: Path, timeout: float = 180):
    """Start a server, wait until ``url`` answers, stop it afterwards."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    with log.open("w") as out:
        # A session of its own: the MLflow UI forks workers and job consumers, and they
        # must all go when the test ends.
        server = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    assert server.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
                    assert time.monotonic() < deadline, f"no answer:\n{log.read_text()[-3000:]}"
                    time.sleep(1)
            yield server
        finally:
            stop_group(server)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _dismiss_overlays(page) -> None:
    """kedro-viz's release banner and its first-visit tour cover part of the flowchart."""
    for name in ("Dismiss", "Close"):
        button = page.get_by_role("button", name=name)
        if button.count():
            button.first.click()
    tour = page.locator(".feature-hints__close, [aria-label='Close']")
    if tour.count():
        tour.first.click()


def test_kedro_viz_draws_the_deepfake_pipeline(browser, tmp_path):
    """Collapsed, the flowchart is the write-up's recipe: one box per stage (a namespace
    deepfake.<stage>), in order; expanded, every node sits in the layer bands of its data."""
    project = make_project(tmp_path / "project", git=False)
    port = free_port()
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro), "viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser"]
    url = f"http://127.0.0.1:{port}"
    with serve(command, project, f"{url}/api/main", tmp_path / "viz.log"):
        page = browser.new_page()
        page.goto(f"{url}/?pid=deepfake", wait_until="networkidle")
        page.wait_for_selector("svg .pipeline-node--modularPipeline", timeout=60_000)
        _dismiss_overlays(page)
        page.locator(".pipeline-node--modularPipeline").first.click()  # deepfake: its stages
        page.wait_for_selector("text=deepfake.scoring", timeout=30_000)
        page.wait_for_timeout(1_000)  # the layout settles
        stages = page.locator(".pipeline-node--modularPipeline text").all_text_contents()
        collapsed = screenshot(page, "kedro_viz_deepfake_stages.png")

        page.goto(f"{url}/?pid=deepfake&expandAllPipelines=true", wait_until="networkidle")
        page.wait_for_selector("svg .pipeline-node--task", timeout=60_000)
        _dismiss_overlays(page)
        labels = page.locator(".pipeline-node--task text").all_text_contents()
        # One band (svg rect.pipeline-layer) per layer, its name beside it (li.pipeline-layer-
        # name); none at all when the layers are in a cycle (see DRAWN_ELSEWHERE in
        # tests/test_catalog_layers.py and podium.pipelines.stages).
        page.wait_for_selector(".pipeline-layer-name", timeout=30_000)
        layer_names = [
            name.strip() for name in page.locator(".pipeline-layer-name").all_text_contents()
        ]
        bands = page.locator("svg rect.pipeline-layer").count()
        expanded = screenshot(page, "kedro_viz_deepfake.png")
        page.close()
    names = ("data", "faces", "split", "models", "scoring", "submission", "report")
    assert sorted(stages) == sorted(f"deepfake.{name}" for name in names), stages
    text = " ".join(labels).lower().replace(" ", "_")
    for node in ("extract_faces", "train_frame_models", "ensemble_and_calibrate"):
        assert node in text, f"{node} not drawn; labels: {labels[:40]}"
    # deepfake's datasets are in seven of Kedro's eight layers (no 04_feature), in order
    assert layer_names == [
        "raw",
        "intermediate",
        "primary",
        "model_input",
        "models",
        "model_output",
        "reporting",
    ]
    assert bands == len(layer_names)
    assert collapsed.stat().st_size > 10_000 and expanded.stat().st_size > 10_000


def test_mlflow_ui_compares_an_ablations_runs_with_their_parameters(
    browser, ablated_project, tmp_path
):
    client, runs = tracked_runs(ablated_project)
    children = [r for r in runs if r.data.tags.get("ablation") == "tiny_split"]
    children = [r for r in children if r.data.tags.get("kind") == "ablation_run"]
    experiment = children[0].info.experiment_id
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    store = f"sqlite:///{ablated_project / 'mlflow.db'}"
    command = [str(mlflow), "ui", "--backend-store-uri", store, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]  # one worker starts in half the time
    url = f"http://127.0.0.1:{port}"
    ids = ",".join(f'"{r.info.run_id}"' for r in children)
    with serve(command, ablated_project, f"{url}/health", tmp_path / "mlflow.log"):
        page = browser.new_page()
        page.goto(f'{url}/#/compare-runs?runs=[{ids}]&experiments=["{experiment}"]')
        page.wait_for_selector("text=deepfake:folder:seed1", timeout=60_000)
        page.wait_for_selector("text=deepfake.split.strategy", timeout=60_000)
        content = page.content()
        close = page.get_by_role("button", name="Close")  # the assistant side panel
        if close.count():
            close.first.click()
        # the compare view scrolls inside its own pane: bring the parameter table into view
        diff_only = page.locator('[aria-label="Parameters - Show diff only"]')
        if diff_only.count():  # the parameters that tell the runs apart, in view
            diff_only.first.scroll_into_view_if_needed(timeout=10_000)
            diff_only.first.click()
            page.wait_for_selector("text=deepfake.split.strategy", timeout=10_000)
        path = screenshot(page, "mlflow_ablation_compare.png")
        page.close()
    for run in children:
        assert run.info.run_name in content
    assert "deepfake.split.strategy" in content and "deepfake.seed" in content
    assert ">original<" in content and ">folder<" in content
    # the metric table lists the runs' metrics by name (the first rows are drawn)
    assert "deepfake/models/tiny/fold0/val_log_loss" in content
    assert path.stat().st_size > 10_000


def test_mlflow_ui_lists_the_runs_by_their_headline_metric(browser, ablated_project, tmp_path):
    """The experiment opens on its runs table (model development, not GenAI), sorted by
    deepfake/score, each run's name telling its point and seed."""
    client, runs = tracked_runs(ablated_project)
    children = [r for r in runs if r.data.tags.get("kind") == "ablation_run"]
    scores = {r.info.run_name: r.data.metrics["deepfake/score"] for r in children}
    experiment = client.get_experiment(children[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    store = f"sqlite:///{ablated_project / 'mlflow.db'}"
    command = [str(mlflow), "ui", "--backend-store-uri", store, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    order = "orderByKey=metrics.%60deepfake%2Fscore%60&orderByAsc=true"
    with serve(command, ablated_project, f"{url}/health", tmp_path / "mlflow.log"):
        page = browser.new_page()
        page.set_viewport_size({"width": 2000, "height": 900})
        page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs?{order}")
        page.wait_for_selector("text=deepfake:folder:seed1", timeout=60_000)
        # the headline metric as a column of the runs table
        page.get_by_role("button", name="Columns").first.click()
        page.locator("input[placeholder='Search columns']").fill("deepfake/score")
        page.get_by_text("deepfake/score", exact=True).last.click()
        page.keyboard.press("Escape")
        close = page.get_by_role("button", name="Close")  # the assistant side panel
        if close.count():
            close.first.click()
        page.wait_for_selector("[role=columnheader] >> text=deepfake/score", timeout=30_000)
        headers = page.locator("[role=columnheader]").all_inner_texts()
        rows = page.locator("[role=row]").all_inner_texts()
        path = screenshot(page, "mlflow_runs_headline.png")
        page.close()
    assert "deepfake/score" in headers
    drawn = [  # a run name on its own in a row (not inside a reproduced run's name)
        name
        for text in rows
        for name in scores
        if re.search(rf"(^|\s){re.escape(name)}(\s|$)", text)
    ]
    assert drawn == sorted(scores, key=scores.get), (drawn, scores)  # best (lowest) first
    assert path.stat().st_size > 10_000
