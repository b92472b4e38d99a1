"""Pruning of Kedro's versioned outputs, which otherwise accumulate without limit.

A versioned dataset ``data/06_models/model.safetensors`` is stored as
``data/06_models/model.safetensors/<version>/model.safetensors`` where ``<version>`` is
a UTC timestamp such as ``2026-11-25T13.53.49.123Z``, so the newest versions sort last.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")


@dataclass(frozen=True)
class VersionedOutput:
    path: Path
    versions: tuple[str, ...]  # oldest first


def find_versioned_outputs(data_root: Path) -> list[VersionedOutput]:
    """Every folder under ``data_root`` laid out as a Kedro versioned dataset."""
    found = []
    for candidate in sorted(p for p in Path(data_root).rglob("*") if p.is_dir()):
        versions = sorted(
            child.name
            for child in candidate.iterdir()
            if child.is_dir()
            and VERSION_PATTERN.match(child.name)
            and (child / candidate.name).exists()
        )
        if versions:
            found.append(VersionedOutput(candidate, tuple(versions)))
    return found


def prune_versions(data_root: Path, keep: int, dry_run: bool = False) -> list[Path]:
    """Delete all but the ``keep`` newest versions of each versioned output.

    Returns the version folders deleted (or that would be, with ``dry_run``).
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the latest version), got {keep}")
    doomed = [
        output.path / version
        for output in find_versioned_outputs(data_root)
        for version in output.versions[:-keep]
    ]
    if not dry_run:
        for folder in doomed:
            shutil.rmtree(folder)
    return doomed
