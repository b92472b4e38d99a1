"""Nodes of the sample_data pipeline: the generators live in podium.sample_data."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from podium.fingerprint import iter_files
from podium.sample_data import deepfake, mask, monet, uda


def read_tree(root: Path) -> dict[str, bytes]:
    """A written sample folder back as ``{relative path: bytes}`` (samples are small)."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in iter_files(root)}


def deepfake_contact_sheet(root: Path) -> Figure:
    return deepfake.contact_sheet(read_tree(root))


def mask_contact_sheet(root: Path) -> Figure:
    return mask.contact_sheet(read_tree(root))


def uda_contact_sheet(root: Path) -> Figure:
    return uda.contact_sheet(read_tree(root))


def monet_contact_sheet(root: Path) -> Figure:
    return monet.contact_sheet(read_tree(root))
