from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from distributed import LocalCluster

from podium.core.distributed import ItemError, dask_client, iter_items, map_items, split_results


def _inverse(x: int) -> float:
    if x == 3:
        raise ValueError(f"item {x} is broken")
    return 1 / x


def test_map_items_reports_a_failing_item_without_losing_the_others():
    items = [1, 2, 0, 3, 4]
    with dask_client(n_workers=2, processes=False) as client:
        pairs = map_items(client, _inverse, items, progress=False)
        assert client.cluster is not None and len(client.cluster.workers) == 2
    assert [item for item, _ in pairs] == items  # input order kept
    good, bad = split_results(pairs)
    assert [v for _, v in good] == [1.0, 0.5, 0.25]
    assert [(e.item, e.error_type) for e in bad] == [(0, "ZeroDivisionError"), (3, "ValueError")]
    assert bad[1].error == "ValueError: item 3 is broken" and "_inverse" in bad[1].traceback


def test_dask_client_closes_only_what_it_started():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with dask_client(cluster.scheduler_address) as client:
            assert map_items(client, _inverse, [2], progress=False) == [(2, 0.5)]
        assert cluster.status.name == "running"  # an external cluster keeps running
    with dask_client(n_workers=1, processes=False) as client:
        cluster = client.cluster
    assert cluster.status.name == "closed"


def test_map_items_without_client_runs_locally():
    pairs = map_items(None, _inverse, [1, 3], progress=True)
    assert pairs[0] == (1, 1.0) and isinstance(pairs[1][1], ItemError)
    assert map_items(None, _inverse, [], progress=False) == []


def test_lambdas_run_on_the_cluster():
    with dask_client(n_workers=1, processes=False) as client:
        pairs = map_items(client, lambda x: x * 2, [1, 2], progress=False)
    assert [v for _, v in pairs] == [2, 4]


@pytest.mark.parametrize("address", ["", None])
def test_empty_address_starts_a_local_cluster(address):
    with dask_client(address, n_workers=1, processes=False) as client:
        assert client.cluster is not None


def _slow_square(x: int) -> int:
    import time

    time.sleep(0.01 * (x % 3))
    return x * x


def test_iter_items_never_has_more_than_the_window_in_flight():
    pulled = []

    def items():
        for x in range(40):
            pulled.append(x)
            yield x

    seen = {}
    with dask_client(n_workers=2, processes=False) as client:
        for item, value in iter_items(client, _slow_square, items(), window=3, progress=False):
            # running or finished but not yet handed back, beside the one in hand
            assert len(pulled) - len(seen) - 1 <= 3
            seen[item] = value
    assert seen == {x: x * x for x in range(40)}


def test_iter_items_reports_failures_and_cancels_the_rest_when_stopped():
    with dask_client(n_workers=1, processes=False) as client:
        stream = iter_items(client, _inverse, [1, 3, 2, 4, 5, 6], window=2, progress=False)
        results = dict(stream.__next__() for _ in range(2))
        stream.close()  # the caller stops early
        assert not client.futures  # nothing left running for it
    assert set(results) <= {1, 3, 2}
    if 3 in results:
        assert isinstance(results[3], ItemError) and results[3].error_type == "ValueError"
    assert dict(iter_items(None, _inverse, [1, 3], progress=False))[1] == 1.0
    with pytest.raises(ValueError, match="window"):
        next(iter_items(None, _inverse, [1], window=0))


def _report_and_wait(folder: str) -> None:
    """A task that says it is running, then waits for ever: only its worker's end ends it."""
    Path(folder, f"ready-{os.getpid()}").touch()
    time.sleep(3600)


def work_off_the_main_thread(folder: str) -> None:
    """A run whose local worker process (no daemon, as ``run_jobs`` starts them) is busy,
    its cluster held off the main thread."""

    def run() -> None:
        with dask_client(n_workers=1, processes=True, daemon=False) as client:
            client.submit(_report_and_wait, folder, pure=False).result()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_the_local_workers_die_with_a_sigkilled_run(tmp_path):
    from tests.core.test_ddp import survivors_of_sigkill

    code = (
        "from tests.core.test_distributed import work_off_the_main_thread; "
        f"work_off_the_main_thread({str(tmp_path)!r})"
    )
    assert survivors_of_sigkill(code, tmp_path, ready=1) == []
