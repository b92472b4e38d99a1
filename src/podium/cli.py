"""podium's own Kedro project commands (``kedro <command>`` inside the project)."""

from __future__ import annotations

from pathlib import Path

import click

from podium.versions import find_versioned_outputs, prune_versions


@click.group(name="podium")
def cli() -> None:
    """podium project commands."""


@cli.command("prune")
@click.option("--keep", default=3, show_default=True, help="Versions kept per output.")
@click.option("--data", "data_root", default="data", show_default=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
def prune(keep: int, data_root: str, dry_run: bool) -> None:
    """Delete all but the KEEP newest versions of every versioned output under data/."""
    outputs = find_versioned_outputs(Path(data_root))
    doomed = prune_versions(Path(data_root), keep=keep, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for folder in doomed:
        click.echo(f"{verb} {folder}")
    click.echo(f"{len(outputs)} versioned outputs, {verb} {len(doomed)} old versions")
