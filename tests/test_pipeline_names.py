"""An unknown pipeline name stops `kedro run` and `make run` at the door: one paragraph naming
it, the registered pipelines and the closest match, a non-zero exit, nothing run. Valid names
reach Kedro's own `kedro run` as before, without importing the other pipelines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from kedro.framework.cli.project import run as kedro_run

from podium import cli as podium_cli
from podium.cli import cli, pipeline_folders, unknown_pipelines_message
from tests.conftest import REPO, kedro_cli, make_project

VENV = Path(sys.executable).parent.parent


def make(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``make <args>`` as from a shell: under ``make test`` the parent's MAKELEVEL and
    MAKEFLAGS would make it print "Entering directory" lines and pass on flags."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A throwaway project folder: were the check to let a name through, nothing of the
    real checkout would be written."""
    root = make_project(tmp_path_factory.mktemp("names") / "project", git=False)
    shutil.copy(REPO / "Makefile", root / "Makefile")
    return root


def error_paragraph(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    return line


def assert_nothing_started(project: Path) -> None:
    assert not (project / "mlflow.db").exists()  # no session: kedro-mlflow never set up
    assert not (project / "data" / ".podium-run.lock").exists()
    assert sorted(p.name for p in (project / "data").iterdir()) == [
        "01_raw",
        "02_intermediate",
        "08_reporting",
    ]
    assert not any((project / "data" / "01_raw").iterdir())  # no sample data written


def test_kedro_run_with_a_misspelt_pipeline_stops_naming_the_registered_ones(project):
    done = kedro_cli(project, "run", "--pipelines=deepfak", timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    message = error_paragraph(done.stderr)
    assert "Unknown pipeline 'deepfak' (did you mean 'deepfake'?)" in message
    registered = message.split("Registered pipelines: ")[1].split(" (and __default__")[0]
    assert {"deepfake", "mask", "monet", "sample_data", "uda"} <= set(registered.split(", "))
    assert message.endswith("Nothing was run.")
    assert "Kedro project podium" not in done.stdout + done.stderr  # session.run never began
    assert_nothing_started(project)


def test_kedro_run_with_a_misspelt_parameter_stops_before_the_first_node(project):
    done = kedro_cli(
        project, "run", "--pipelines=deepfake", "--params=deepfake.split.n_fold=3", timeout=120
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "deepfake.split.n_fold: unknown key; did you mean 'n_folds'?" in done.stderr
    assert (
        "Fix: correct the --params value (the block's file: conf/base/parameters_deepfake.yml)"
        in done.stderr
    )
    assert "Nothing was run." in done.stderr
    assert not (project / "data" / ".podium-run.lock").exists()
    assert not any((project / "data" / "01_raw").iterdir())


def test_make_run_with_a_misspelt_pipeline_stops_before_the_sample_data(project):
    # -o: the venv counts as installed (no pip); VENV: this interpreter's, with its kedro.
    done = make(
        "-o", f"{VENV}/.installed", "run", f"VENV={VENV}", "PIPELINE=mask,deepfak",
        cwd=project, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout[-3000:]
    message = error_paragraph(done.stderr)
    assert "Unknown pipeline 'deepfak' (did you mean 'deepfake'?)" in message
    assert "sample data" not in done.stdout and "==> kedro run" not in done.stdout
    assert_nothing_started(project)


def test_make_run_checks_the_names_before_anything_else(project):
    # -n prints the recipe and runs none of it (the recursive sample-data make prints too).
    done = make(
        "-n", "-o", f"{VENV}/.installed", "run", f"VENV={VENV}", "PIPELINE=deepfake",
        cwd=project, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{VENV}/bin/kedro check-pipelines 'deepfake'"
    assert lines[-1] == f"{VENV}/bin/kedro run --pipelines='deepfake'"
    assert any("--pipelines=sample_data" in line for line in lines[1:-1])
    assert_nothing_started(project)


@pytest.fixture
def no_registry(monkeypatch) -> None:
    """A valid name must pass on the pipeline folders alone, importing no other pipeline."""

    def loaded():
        raise AssertionError("a valid name made the check import every pipeline")

    monkeypatch.setattr(podium_cli, "registered_pipelines", loaded)


def test_check_pipelines_passes_registered_names_and_the_default(no_registry):
    done = CliRunner().invoke(cli, ["check-pipelines", "deepfake,uda", "__default__"])
    assert done.exit_code == 0, done.output
    assert done.output == ""


@pytest.fixture
def kedro_run_seen(monkeypatch) -> list[dict]:
    """Kedro's own run command, recording the arguments it gets instead of running."""
    seen: list[dict] = []
    monkeypatch.setattr(kedro_run, "callback", lambda **kwargs: seen.append(kwargs))
    return seen


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--pipelines=deepfake"],
        ["--pipelines", "uda,monet", "--tags=train", "--params=uda.seed=3", "-e", "full"],
        ["--pipeline=mask", "--runner=SequentialRunner"],
    ],
)
def test_valid_names_reach_kedros_run_unchanged_and_load_no_other_pipeline(
    args, kedro_run_seen, no_registry
):
    ours = CliRunner().invoke(cli, ["run", *args])
    assert ours.exit_code == 0, ours.output
    kedros = CliRunner().invoke(kedro_run, args)
    assert kedros.exit_code == 0, kedros.output
    assert kedro_run_seen[0] == kedro_run_seen[1]


def test_the_message_names_each_unknown_name_with_its_closest_match():
    registered = ["__default__", "deepfake", "mask", "monet", "sample_data", "uda"]
    message = unknown_pipelines_message(["msk", "zzzzzz", "msk"], registered)
    assert message == (
        "Unknown pipelines 'msk' (did you mean 'mask'?), 'zzzzzz' (nothing registered is "
        "close). Registered pipelines: deepfake, mask, monet, sample_data, uda (and "
        "__default__, which runs when --pipelines is not given). Nothing was run."
    )
    assert "\n" not in message


def test_the_folders_are_the_pipelines_find_pipelines_discovers():
    assert {"deepfake", "mask", "monet", "sample_data", "uda"} <= pipeline_folders()
    assert "__pycache__" not in pipeline_folders()
