"""Per-item fan-out over Dask distributed that survives bad items.

A truncated mp4 among 100,000 videos must not stop a run: ``map_items`` turns each
failure into an ``ItemError`` carrying the item and the reason, so callers can count it
and write a bad-items report while every other result still comes back.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ItemError:
    """Why one item failed: ``error`` is ``"ExceptionType: message"``."""

    item: Any
    error: str
    traceback: str = ""

    @property
    def error_type(self) -> str:
        return self.error.split(":", 1)[0]


@dataclass(frozen=True)
class _Failure:
    """What a worker returns instead of raising (so no 'Compute Failed' log per bad item)."""

    error: str
    traceback: str


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _call_captured(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as error:  # one bad item is data, not a crash
        return _Failure(_describe(error), traceback.format_exc())


@contextmanager
def dask_client(
    scheduler_address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    **cluster_kwargs: Any,
) -> Iterator[Any]:
    """Yield a ``distributed.Client``: to ``scheduler_address`` if given, else a LocalCluster.

    Only what this context started is closed on exit; an external cluster keeps running.
    The local dashboard is off so parallel runs and tests never clash on port 8787.
    """
    from distributed import Client, LocalCluster

    if scheduler_address:
        client = Client(scheduler_address)
        try:
            yield client
        finally:
            client.close()
        return
    cluster_kwargs.setdefault("dashboard_address", None)
    cluster_kwargs.setdefault("silence_logs", logging.ERROR)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        **cluster_kwargs,
    )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def map_items(
    client: Any | None,
    fn: Callable[[T], R],
    items: Sequence[T],
    progress: bool = True,
    description: str = "items",
) -> list[tuple[T, R | ItemError]]:
    """Run ``fn`` on every item; return ``(item, result or ItemError)`` in input order.

    One task per item, gathered as they complete (the progress bar moves with them). Never
    raises because of one item: exceptions inside ``fn`` and lost workers alike become
    ``ItemError``. With ``client=None`` the items run here, one after another.
    """
    items = list(items)
    results: list[R | ItemError | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=description, disable=not progress, leave=False)

    def store(index: int, value: Any) -> None:
        if isinstance(value, _Failure):
            value = ItemError(items[index], value.error, value.traceback)
        results[index] = value
        bar.update(1)

    try:
        if client is None:
            for index, item in enumerate(items):
                store(index, _call_captured(fn, item))
        else:
            from distributed import as_completed

            futures = [client.submit(_call_captured, fn, item, pure=False) for item in items]
            position = {future.key: index for index, future in enumerate(futures)}
            for future in as_completed(futures):
                index = position[future.key]
                if future.status == "finished":
                    store(index, future.result())
                else:  # the worker died, the task was cancelled, or fn could not be sent
                    try:
                        error = future.exception()
                        message = _describe(error)
                    except Exception as exc:  # e.g. CancelledError when asking a cancelled one
                        message = _describe(exc)
                    store(index, ItemError(items[index], message))
                future.release()
    finally:
        bar.close()
    return list(zip(items, results, strict=True))  # type: ignore[arg-type]


def split_results(
    pairs: Sequence[tuple[T, R | ItemError]],
) -> tuple[list[tuple[T, R]], list[ItemError]]:
    """Separate ``map_items`` output into successes and failures (for a bad-items report)."""
    good = [(item, value) for item, value in pairs if not isinstance(value, ItemError)]
    bad = [value for _item, value in pairs if isinstance(value, ItemError)]
    return good, bad  # type: ignore[return-value]
