import pytest
from kedro.io.core import DatasetError

from podium.datasets import FileTreeDataset
from podium.datasets.file_tree import SAMPLE_MARKER


def test_save_writes_the_tree_and_load_gives_its_path(tmp_path):
    dataset = FileTreeDataset(path=str(tmp_path / "raw" / "deepfake"))
    assert not dataset.exists()
    dataset.save({"part_0/metadata.json": b"{}", "part_0/a.mp4": b"\x00\x01"})
    root = dataset.load()
    assert (root / "part_0" / "a.mp4").read_bytes() == b"\x00\x01"
    assert (root / SAMPLE_MARKER).exists()
    assert dataset.exists()


def test_resaving_replaces_a_generated_tree_without_stale_files(tmp_path):
    dataset = FileTreeDataset(path=str(tmp_path / "deepfake"))
    dataset.save({"old.mp4": b"1"})
    dataset.save({"new.mp4": b"2"})
    root = dataset.load()
    assert not (root / "old.mp4").exists() and (root / "new.mp4").read_bytes() == b"2"


def test_a_real_download_is_never_overwritten(tmp_path):
    real = tmp_path / "deepfake"
    real.mkdir()
    (real / "dfdc_train_part_0").mkdir()
    (real / "dfdc_train_part_0" / "metadata.json").write_text("{}")
    with pytest.raises(DatasetError, match="Refusing to overwrite.*deepfake.*conf/local"):
        FileTreeDataset(path=str(real)).save({"a.mp4": b"1"})
    assert (real / "dfdc_train_part_0" / "metadata.json").read_text() == "{}"


def test_missing_folder_error_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*sample_data"):
        FileTreeDataset(path=str(tmp_path / "absent")).load()


def test_paths_escaping_the_folder_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="escapes"):
        FileTreeDataset(path=str(tmp_path / "t")).save({"../evil": b"1"})
