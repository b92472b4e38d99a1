"""benchmarks/scoring_faults.py's way of telling a Dask worker process apart, on a real
LocalCluster started here (as podium's runs start theirs: the scheduler and the nannies
in this process, each worker a spawned child): the scheduler is found among this
process's listening ports, and each worker comes with its pid, as a spawned child of this
process, and with the videos of the task it is running. Seconds; the whole demonstration
(minutes) is ``python benchmarks/scoring_faults.py``."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _faults():
    path = REPO / "benchmarks" / "scoring_faults.py"
    spec = importlib.util.spec_from_file_location("podium_scoring_faults", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_arguments_need_a_worker_to_spare():
    faults = _faults()
    assert faults.arguments([]).videos == 100
    with pytest.raises(SystemExit):
        faults.arguments(["--workers", "1"])


def test_a_worker_process_is_named_by_dask_with_the_videos_it_holds():
    from distributed import Client, LocalCluster

    faults = _faults()
    job = {"videos": [{"video": "abc.mp4", "path": "/videos/abc.mp4"}]}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        busy = client.submit(lambda job: time.sleep(30), job, pure=False)
        deadline = time.monotonic() + 30
        while not any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        nannies = {nanny.address for nanny in cluster.workers.values()}
        scheduler = faults.find_scheduler(os.getpid(), timeout=30)
        workers = faults.dask_workers(os.getpid(), scheduler)
        client.cancel(busy, force=True)  # the cluster's close ends the sleeping worker

    assert scheduler == cluster.scheduler_address
    assert len(workers) == 2
    assert all(w.spawned and w.parent == os.getpid() for w in workers)
    assert {w.nanny for w in workers} == nannies  # in this process: not what is killed
    (holder,) = [w for w in workers if w.tasks]
    assert holder.videos == ["abc.mp4"] and holder.tasks == 1
