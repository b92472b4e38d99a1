import pytest
from click.testing import CliRunner

from podium.cli import cli
from podium.versions import find_versioned_outputs, prune_versions


def _versioned(root, name, stamps):
    for stamp in stamps:
        (root / name / stamp).mkdir(parents=True)
        (root / name / stamp / name).write_text(stamp)


STAMPS = [f"2026-11-2{d}T10.00.00.000Z" for d in range(5)]


def test_finds_versioned_outputs_only(tmp_path):
    _versioned(tmp_path / "06_models", "model.safetensors", STAMPS)
    (tmp_path / "01_raw" / "deepfake" / "2026-11-20T10.00.00.000Z").mkdir(parents=True)  # no file
    found = find_versioned_outputs(tmp_path)
    assert [o.path.name for o in found] == ["model.safetensors"]
    assert found[0].versions == tuple(STAMPS)


def test_prune_keeps_the_newest(tmp_path):
    _versioned(tmp_path, "scores.csv", reversed(STAMPS))
    deleted = prune_versions(tmp_path, keep=2)
    assert sorted(p.name for p in deleted) == STAMPS[:3]
    assert sorted(p.name for p in (tmp_path / "scores.csv").iterdir()) == STAMPS[3:]
    with pytest.raises(ValueError, match="at least 1"):
        prune_versions(tmp_path, keep=0)


def test_cli_dry_run_deletes_nothing(tmp_path):
    _versioned(tmp_path, "scores.csv", STAMPS)
    result = CliRunner().invoke(cli, ["prune", "--keep", "1", "--data", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would delete 4 old versions" in result.output
    assert len(list((tmp_path / "scores.csv").iterdir())) == 5
