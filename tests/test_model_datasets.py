import torch
from kedro.io import Version

from podium.datasets import CachedPartitionsDataset, SafetensorsModelsDataset


def test_models_round_trip_through_one_versioned_safetensors_file(tmp_path):
    models = {
        "effnet/fold0": {"w": torch.randn(3, 2), "b": torch.zeros(2)},
        "effnet/fold1": {"w": torch.randn(3, 2), "b": torch.ones(2)},
    }
    path = str(tmp_path / "frame_models.safetensors")
    SafetensorsModelsDataset(path, version=Version(None, None)).save(models)
    loaded = SafetensorsModelsDataset(path, version=Version(None, None)).load()
    assert loaded.keys() == models.keys()
    for name, state in models.items():
        assert all(torch.equal(loaded[name][k], v) for k, v in state.items())
    versions = list((tmp_path / "frame_models.safetensors").iterdir())
    assert len(versions) == 1 and (versions[0] / "frame_models.safetensors").exists()


def test_cache_of_partitions_is_empty_before_the_first_run_then_lists_them(tmp_path):
    config = {"path": str(tmp_path / "faces"), "dataset": "pickle.PickleDataset"}
    assert CachedPartitionsDataset(**config).load() == {}
    CachedPartitionsDataset(**config).save({"part/a": [1], "part/b": [2]})
    loaded = CachedPartitionsDataset(**config).load()
    assert sorted(loaded) == ["part/a", "part/b"] and loaded["part/b"]() == [2]
