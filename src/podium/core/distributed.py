"""Per-item fan-out over Dask distributed that survives bad items.

A truncated mp4 among 100,000 videos must not stop a run: ``map_items`` turns each
failure into an ``ItemError`` carrying the item and the reason, so callers can count it
and write a bad-items report while every other result still comes back.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
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


def _call_captured(fn: Callable[..., Any], item: Any, *shared: Any) -> Any:
    try:
        return fn(item, *shared)
    except Exception as error:  # one bad item is data, not a crash
        return _Failure(_describe(error), traceback.format_exc())


@contextmanager
def dask_client(
    scheduler_address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    daemon: bool = True,
    **cluster_kwargs: Any,
) -> Iterator[Any]:
    """Yield a ``distributed.Client``: to ``scheduler_address`` if given, else a LocalCluster.

    Only what this context started is closed on exit; an external cluster keeps running.
    The local dashboard is off so parallel runs and tests never clash on port 8787.
    ``daemon=False``: the local worker processes are not daemons (a daemon may not start
    processes of its own, e.g. a DataLoader's workers), also when a nanny restarts one.
    """
    import dask
    from distributed import Client, LocalCluster  # its config defaults exist from here on

    # for the whole life of the cluster: a nanny restarting a lost worker reads it again
    with dask.config.set({} if daemon else {"distributed.worker.daemon": False}):
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


def iter_items(
    client: Any | None,
    fn: Callable[[T], R],
    items: Iterable[T],
    window: int = 16,
    progress: bool = True,
    description: str = "items",
    total: int | None = None,
    *,
    shared: Any = None,
    resources: Mapping[str, float] | None = None,
) -> Iterator[tuple[T, R | ItemError]]:
    """Run ``fn`` on every item; yield ``(item, result or ItemError)`` as each finishes.

    ``shared`` (not None): ``fn(item, shared)``, the shared value sent to each worker once
    (scattered with ``broadcast``), not with every item: model weights, say. ``resources``:
    the Dask worker resources each item needs (e.g. ``{"GPU": 1}``).

    At most ``window`` items are submitted and not yet yielded, so results waiting for the
    caller never pile up, whatever the number of items: a caller that saves each result
    before asking for the next holds one at a time. ``items`` is consumed lazily. Never
    raises because of one item: exceptions inside ``fn`` and lost workers alike become
    ``ItemError``. With ``client=None`` the items run here, one after another.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if total is None and isinstance(items, Sized):
        total = len(items)
    bar = tqdm(total=total, desc=description, disable=not progress, leave=False)
    try:
        extra = () if shared is None else (shared,)
        if client is None:
            for item in items:
                value = _call_captured(fn, item, *extra)
                bar.update(1)
                yield item, _as_error(item, value)
            return
        from distributed import as_completed

        if shared is not None:
            # a list of one: a dict would be scattered value by value
            extra = (client.scatter([shared], broadcast=True, hash=False)[0],)
        options = {"resources": dict(resources)} if resources else {}
        pending = iter(items)
        in_flight: dict[str, tuple[Any, Any]] = {}  # key -> (future, item)
        running = as_completed()

        def submit_next() -> bool:
            for item in pending:
                future = client.submit(_call_captured, fn, item, *extra, pure=False, **options)
                in_flight[future.key] = (future, item)
                running.add(future)
                return True
            return False

        try:
            while len(in_flight) < window and submit_next():
                pass
            for future in running:
                _, item = in_flight.pop(future.key)
                value = _collect(future, item)
                future.release()
                bar.update(1)
                submit_next()  # one in, one out: the window stays full while items remain
                yield item, value
        finally:  # the caller stopped early (an error, Ctrl-C): nothing is left running
            if in_flight:
                running.clear()
                # A generator closed at interpreter exit finds its client already closed,
                # where cancel would wait for ever: its cluster is gone with its futures.
                if getattr(client, "status", "running") == "running":
                    client.cancel([future for future, _ in in_flight.values()], force=True)
    finally:
        bar.close()


def _as_error(item: Any, value: Any) -> Any:
    if isinstance(value, _Failure):
        return ItemError(item, value.error, value.traceback)
    return value


def _collect(future: Any, item: Any) -> Any:
    if future.status == "finished":
        return _as_error(item, future.result())
    try:  # the worker died, the task was cancelled, or fn could not be sent
        message = _describe(future.exception())
    except Exception as exc:  # e.g. CancelledError when asking a cancelled one
        message = _describe(exc)
    return ItemError(item, message)


def map_items(
    client: Any | None,
    fn: Callable[[T], R],
    items: Sequence[T],
    progress: bool = True,
    description: str = "items",
) -> list[tuple[T, R | ItemError]]:
    """Run ``fn`` on every item; return ``(item, result or ItemError)`` in input order.

    Every result is held at once: for small results. A collection whose results are large
    (face crops, images) streams through :func:`iter_items` instead.
    """
    items = list(items)
    indexed = list(enumerate(items))
    results: list[Any] = [None] * len(items)
    for (index, _item), value in iter_items(
        client,
        _Indexed(fn),
        indexed,
        window=max(len(items), 1),
        progress=progress,
        description=description,
    ):
        if isinstance(value, ItemError):
            value = ItemError(items[index], value.error, value.traceback)
        results[index] = value
    return list(zip(items, results, strict=True))


@dataclass(frozen=True)
class _Indexed:
    """``fn`` applied to the item of an ``(index, item)`` pair (picklable for workers)."""

    fn: Callable[[Any], Any]

    def __call__(self, pair: tuple[int, Any]) -> Any:
        return self.fn(pair[1])


def split_results(
    pairs: Sequence[tuple[T, R | ItemError]],
) -> tuple[list[tuple[T, R]], list[ItemError]]:
    """Separate ``map_items`` output into successes and failures (for a bad-items report)."""
    good = [(item, value) for item, value in pairs if not isinstance(value, ItemError)]
    bad = [value for _item, value in pairs if isinstance(value, ItemError)]
    return good, bad  # type: ignore[return-value]
