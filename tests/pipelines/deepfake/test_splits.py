"""Split strategies on the generated DFDC sample, with its ground-truth actors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from podium.core.config import ParameterError
from podium.layouts.deepfake import index_deepfake
from podium.pipelines.deepfake.splits import (
    STRATEGIES,
    assign_video_folds,
    cluster_people,
    cluster_purity,
    families,
    leakage,
)
from podium.sample_data.deepfake import TRUTH_FILE, generate_deepfake_sample
from tests.conftest import ONE_FAMILY, write_tree

# three part folders, three home actors each, one of them also filming in the next folder
SAMPLE = {
    "n_parts": 3,
    "reals_per_part": 9,
    "fakes_per_real": 1,
    "actors_per_part": 3,
    "cross_folder_actor_share": 0.34,
    "n_test_videos": 0,
    "seconds": 1.0,
    "fps": 4,
    "width": 96,
    "height": 72,
}
N_FOLDS = 3
SEED = 7


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """(videos table, video -> actor) of a freshly generated sample."""
    root = write_tree(
        generate_deepfake_sample({**SAMPLE, **ONE_FAMILY}, seed=1),
        tmp_path_factory.mktemp("deepfake"),
    )
    videos, _ = index_deepfake(root)
    actors = {}
    for truth in root.glob(f"*/{TRUTH_FILE}"):
        actors.update({v: e["actor"] for v, e in json.loads(truth.read_text())["videos"].items()})
    return videos, actors


def _perfect_clusters(videos, actors):
    reals = videos[videos["label"] == "REAL"]
    return pd.Series(
        [int(actors[v].split("_")[1]) for v in reals["video"]], index=reals["video"].to_numpy()
    )


def _folds(videos, actors, strategy, seed=SEED):
    clusters = _perfect_clusters(videos, actors) if strategy == "person_cluster" else None
    return assign_video_folds(videos, strategy, N_FOLDS, seed, person_clusters=clusters)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_covers_all_videos_and_keeps_fakes_with_their_original(sample, strategy):
    videos, actors = sample
    folds = _folds(videos, actors, strategy)
    assert folds.index.equals(videos.index) and folds.name == "fold"
    assert sorted(folds.unique()) == list(range(N_FOLDS))
    fold_of = dict(zip(videos["video"], folds, strict=True))
    fakes = videos[videos["label"] == "FAKE"]
    assert len(fakes) > 0
    for fake, original in zip(fakes["video"], fakes["original"], strict=True):
        assert fold_of[fake] == fold_of[original], (strategy, fake, original)


def test_strategies_give_different_leakage_in_the_expected_order(sample):
    videos, actors = sample
    share = {s: leakage(videos, _folds(videos, actors, s), actors)["mean"] for s in STRATEGIES}
    assert len(set(share.values())) == len(STRATEGIES), share
    # people are the groups: nobody leaks; folders leak only the actors filming in two parts;
    # families alone leave every recurring actor on both sides
    assert share["person_cluster"] == 0.0
    assert 0.0 < share["folder"] < min(share["original"], share["random"])


def test_folder_strategy_keeps_each_folder_in_one_fold(sample):
    videos, actors = sample
    folds = _folds(videos, actors, "folder")
    assert (folds.groupby(videos["folder"]).nunique() == 1).all()


def test_same_seed_same_folds_and_random_depends_on_seed(sample):
    videos, actors = sample
    a = _folds(videos, actors, "random", seed=1)
    assert a.equals(_folds(videos, actors, "random", seed=1))
    others = [_folds(videos, actors, "random", seed=s) for s in range(2, 6)]
    assert any(not a.equals(o) for o in others)


def test_family_key_is_the_original_for_fakes():
    videos = pd.DataFrame(
        {"video": ["r.mp4", "f.mp4"], "original": [None, "r.mp4"], "target": [0, 1]}
    )
    assert families(videos).tolist() == ["r.mp4", "r.mp4"]


def test_bad_parameters_name_the_parameter(sample):
    videos, actors = sample
    with pytest.raises(ParameterError, match=r"deepfake\.split\.strategy.*did you mean 'folder'"):
        assign_video_folds(videos, "folders", N_FOLDS, SEED)
    with pytest.raises(ParameterError, match=r"deepfake\.split\.n_folds"):
        assign_video_folds(videos, "folder", 4, SEED)  # only three folders
    with pytest.raises(ParameterError, match="person clusters"):
        assign_video_folds(videos, "person_cluster", N_FOLDS, SEED)


def test_person_cluster_with_perfect_embeddings_is_pure_and_leak_free(sample):
    videos, actors = sample
    reals = videos[videos["label"] == "REAL"]
    real_actors = [actors[v] for v in reals["video"]]
    ids = sorted(set(real_actors))
    rng = np.random.default_rng(0)
    embeddings = np.eye(len(ids))[[ids.index(a) for a in real_actors]]
    embeddings = embeddings + rng.normal(0, 0.01, embeddings.shape)
    labels = cluster_people(embeddings, "kmeans", seed=0, n_clusters=len(ids))
    assert cluster_purity(labels, real_actors) == 1.0
    clusters = pd.Series(labels, index=reals["video"].to_numpy())
    folds = assign_video_folds(videos, "person_cluster", N_FOLDS, SEED, person_clusters=clusters)
    assert leakage(videos, folds, actors)["mean"] == 0.0


def _blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [0.0, 10.0, 0.0, 0.0]])
    return np.concatenate([c + rng.normal(0, 0.1, (8, 4)) for c in centres])


def test_tsne_dbscan_finds_separated_people():
    labels = cluster_people(
        _blobs(), "tsne_dbscan", seed=0, eps=0.3, min_samples=3, pca_components=3, perplexity=5
    )
    truth = np.repeat([0, 1, 2], 8)
    assert len(np.unique(labels)) == 3
    assert cluster_purity(labels, truth) == 1.0


def test_tsne_dbscan_noise_points_become_singletons_not_dropped():
    x = _blobs()
    # an eps far below any distance: DBSCAN calls every point noise
    labels = cluster_people(
        x, "tsne_dbscan", seed=0, eps=1e-9, min_samples=2, pca_components=3, perplexity=5
    )
    assert len(labels) == len(x)
    assert sorted(labels) == list(range(len(x)))


def test_cluster_purity_counts_the_majority_actor():
    assert cluster_purity([0, 0, 0, 1], ["a", "a", "b", "b"]) == 0.75
    with pytest.raises(ParameterError, match=r"deepfake\.person_cluster\.method"):
        cluster_people(np.zeros((4, 2)), "hdbscan", seed=0)


def test_leakage_per_fold_by_hand():
    videos = pd.DataFrame({"video": ["a", "b", "c", "d"]})
    actors = {"a": "x", "b": "x", "c": "y", "d": "z"}
    result = leakage(videos, [0, 1, 1, 0], actors)
    # fold 0 validates a (x seen in training via b) and d (z unseen): 1/2; fold 1 likewise
    assert result["per_fold"] == {0: 0.5, 1: 0.5}
    assert result["mean"] == 0.5 and result["max"] == 0.5
