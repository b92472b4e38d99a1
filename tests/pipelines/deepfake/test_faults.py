"""A `kedro run` killed in the middle of face extraction loses only the work in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pytest

from tests.conftest import (
    TINY_DEEPFAKE,
    TINY_SAMPLE,
    kedro_run,
    make_project,
    tracked_runs,
)

SAMPLE = {
    **TINY_SAMPLE["sample_data"]["dfdc"],
    "n_parts": 2,
    "reals_per_part": 4,
    "fakes_per_real": 2,
    "n_test_videos": 2,
}
PARAMETERS = {
    "sample_data": {"dfdc": SAMPLE},
    "deepfake": {**TINY_DEEPFAKE["deepfake"], "extraction": {"n_frames": 6, "window": 1}},
    "runtime": {"num_workers": 0, "dask": {"n_workers": 1}},
}


def _saved(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.joblib")) if folder.exists() else []


@pytest.mark.slow
def test_a_killed_extraction_keeps_what_it_saved_and_the_rerun_does_the_rest(tmp_path):
    project = make_project(tmp_path / "project", PARAMETERS)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        kedro_run(project, "sample_data", tags=["dfdc"])
        kedro_run(project, "deepfake", nodes=["index_training_videos", "index_test_videos"])
    finally:
        os.chdir(cwd)
    videos = 2 * 4 * (1 + 2) + 2
    rows = project / "data" / "03_primary" / "deepfake" / "face_rows"
    faces = project / "data" / "03_primary" / "deepfake" / "faces"
    kedro = Path(sys.executable).with_name("kedro")
    run = subprocess.Popen(
        [str(kedro), "run", "--pipelines=deepfake", "--nodes=extract_faces"],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Dask workers share the group: the kill reaches them too
    )
    deadline = time.monotonic() + 300
    while len(_saved(rows)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, run.communicate()[0][-3000:]
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    kept = _saved(rows)
    assert 3 <= len(kept) < videos, "the run must be killed half-way for this test to mean much"
    for path in _saved(faces):  # whatever was listed is whole: a record, not a fragment
        assert joblib.load(path)["crops"].ndim == 4
    records = {p.relative_to(faces) for p in _saved(faces)}
    assert {p.relative_to(rows) for p in kept} <= records  # rows only ever follow a record

    kedro_run(project, "deepfake", nodes=["extract_faces", "index_faces"])
    _, runs = tracked_runs(project)
    metrics = runs[-1].data.metrics
    assert metrics["extraction.skipped_existing"] == len(kept)
    assert metrics["extraction.extracted"] == videos - len(kept)
    assert len(_saved(rows)) == videos
