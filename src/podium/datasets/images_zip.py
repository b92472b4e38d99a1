"""``ImagesZipDataset``: image files <-> a flat zip, the format of Kaggle's ``images.zip``
submissions (no folders inside; Kaggle unzips and scores every image).

Saving takes either ``{file name: bytes}`` (written in name order) or any iterable of
``(file name, bytes)`` pairs, written one entry at a time in the order given: a node can
hand over a lazy stream and no more than one file's bytes are held at once. Either way the
zip is written under a temporary name beside the target and renamed only once complete, so
a killed or failed run never leaves a half ``images.zip`` that a later run (or Kaggle)
would take. Entries carry a fixed timestamp: the same files give the same zip bytes.

Loading gives a read-only mapping ``{file name: bytes}`` that reads a member only when it
is asked for (it can be handed to DataLoader workers), so scoring a 7,038-image zip never
holds every file at once.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kedro.io.core import DatasetError

from podium.datasets.local import LocalVersionedDataset

#: The zip format's earliest date: entries carry it instead of the time of writing.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Marks a zip still being written (or left by a killed run): never a finished images.zip.
PARTIAL_SUFFIX = ".partial"


class ZipMembers(Mapping[str, bytes]):
    """The files of a written zip, read one at a time: ``members[name] -> bytes``.

    The archive is opened on first access and re-opened in each process that uses it (a
    DataLoader worker gets its own handle), so it pickles as a path and a name list.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with zipfile.ZipFile(self.path) as archive:
            self._names = archive.namelist()
        self._archive: zipfile.ZipFile | None = None
        self._pid: int | None = None

    def _open(self) -> zipfile.ZipFile:
        if self._archive is None or self._pid != os.getpid():
            self._archive, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._archive

    def __getitem__(self, name: str) -> bytes:
        if name not in self._names:
            raise KeyError(name)
        return self._open().read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
        self._archive = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_names": self._names, "_archive": None, "_pid": None}

    def __repr__(self) -> str:
        return f"ZipMembers({str(self.path)!r}, {len(self)} files)"


def _check_name(name: Any, seen: set[str]) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise DatasetError(f"images.zip must be flat; this name holds folders: {name!r}")
    if name in seen:
        raise DatasetError(f"images.zip: {name!r} is given twice")
    seen.add(name)
    return name


def write_flat_zip(path: str | os.PathLike, files: Iterable[tuple[str, bytes]]) -> int:
    """Write ``(name, bytes)`` pairs as an uncompressed flat zip at ``path``, atomically: the
    entries go to a temporary file in the same folder, renamed to ``path`` once the last
    entry is written. A failure (or a kill) leaves no file at ``path``; the temporary file
    is removed on a failure and carries ``PARTIAL_SUFFIX`` after a kill. Returns the count
    of entries written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")
    seen: set[str] = set()
    try:
        with open(partial, "wb") as handle:
            # jpgs are already compressed: storing them is as small and much faster
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, data in files:
                    info = zipfile.ZipInfo(_check_name(name, seen), date_time=ZIP_EPOCH)
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, bytes(data))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return len(seen)


class ImagesZipDataset(LocalVersionedDataset):
    """A flat zip of images, written atomically (a mapping in name order, or a stream of
    ``(name, bytes)`` pairs in its own order) and read lazily; versioned like any Kedro
    dataset."""

    def load(self) -> ZipMembers:
        return ZipMembers(Path(self._get_load_path()))

    def save(self, data: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> None:
        if isinstance(data, Mapping):
            bad = [name for name in data if "/" in name or "\\" in name or not name]
            if bad:
                raise DatasetError(f"images.zip must be flat; these names hold folders: {bad[:5]}")
            entries: Iterable[tuple[str, bytes]] = ((name, data[name]) for name in sorted(data))
        else:
            entries = data
        write_flat_zip(Path(self._get_save_path()), entries)
