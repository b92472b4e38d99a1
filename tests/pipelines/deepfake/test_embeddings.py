"""Face embeddings: the offline PCA default, dlib's descriptor, facenet with local weights."""

from __future__ import annotations

import importlib.util
import json
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch

from podium.core.config import ParameterError
from podium.faces.detect import crop_face
from podium.layouts.deepfake import index_deepfake, read_frames
from podium.pipelines.deepfake.embeddings import embed_faces, video_embeddings
from podium.pipelines.deepfake.splits import (
    assign_video_folds,
    cluster_people,
    cluster_purity,
    leakage,
)
from podium.sample_data.deepfake import TRUTH_FILE, generate_deepfake_sample
from tests.conftest import ONE_FAMILY, write_tree

SAMPLE = {
    "n_parts": 2,
    "reals_per_part": 6,
    "fakes_per_real": 1,
    "actors_per_part": 3,
    "cross_folder_actor_share": 0.34,
    "n_test_videos": 0,
    "seconds": 1.0,
    "fps": 4,
    "width": 160,
    "height": 120,
}
MARGIN = 0.2
FRAMES = [0, 2]
PCA = {"size": 32, "inner_fraction": 0.7, "n_components": 4, "whiten": False}
HAS_DLIB = (
    importlib.util.find_spec("dlib") is not None
    and importlib.util.find_spec("face_recognition_models") is not None
)


class Faces(NamedTuple):
    crops: np.ndarray
    owner: list[str]
    actors: list[str]
    videos: pd.DataFrame
    actor_of: dict[str, str]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Face crops of the sample's REAL videos (two frames each, cut at the true boxes), the
    video of each crop, the actor of each REAL video; plus the videos table and the actor of
    every video (``.videos``, ``.actor_of``) for the end-to-end split test."""
    root = write_tree(
        generate_deepfake_sample({**SAMPLE, **ONE_FAMILY}, seed=1),
        tmp_path_factory.mktemp("deepfake"),
    )
    videos, _ = index_deepfake(root)
    truth = {}
    for doc in root.glob(f"*/{TRUTH_FILE}"):
        truth.update(json.loads(doc.read_text())["videos"])
    reals = videos[videos["label"] == "REAL"]
    crops, owner = [], []
    for video, path in zip(reals["video"], reals["path"], strict=True):
        for i, frame in zip(FRAMES, read_frames(path, FRAMES), strict=True):
            crops.append(crop_face(frame, truth[video]["boxes"][i], MARGIN, (96, 96)))
            owner.append(video)
    return Faces(
        np.stack(crops),
        owner,
        [truth[v]["actor"] for v in reals["video"]],
        videos,
        {v: e["actor"] for v, e in truth.items()},
    )


def _same_to_different_distance(video_emb: np.ndarray, actors: list[str]) -> float:
    d = np.linalg.norm(video_emb[:, None] - video_emb[None], axis=2)
    same = np.equal.outer(actors, actors)
    off_diagonal = ~np.eye(len(actors), dtype=bool)
    return float(d[same & off_diagonal].mean() / d[~same].mean())


def test_pca_embeddings_are_unit_rows_and_deterministic(faces):
    crops = faces.crops
    a = embed_faces(crops, "pca", seed=0, **PCA)
    assert a.shape == (len(crops), PCA["n_components"]) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, embed_faces(crops, "pca", seed=0, **PCA))


def test_pca_ignores_global_brightness_and_contrast(faces):
    crops = faces.crops
    darker = (crops.astype(np.float64) * 0.6 + 10).round().astype(np.uint8)
    both = embed_faces(np.concatenate([crops, darker]), "pca", seed=0, **PCA)
    n = len(crops)
    # each face's darker copy is (nearly) the same point; other faces are farther
    self_distance = np.linalg.norm(both[:n] - both[n:], axis=1)
    nearest_other = np.array(
        [np.sort(np.linalg.norm(both[:n] - both[i], axis=1))[2] for i in range(n)]
    )
    assert (self_distance < 0.05).all()
    assert np.median(nearest_other) > 3 * self_distance.max()


def test_pca_puts_one_actor_closer_together_than_different_actors(faces):
    crops, owner, actors = faces.crops, faces.owner, faces.actors
    per_video = video_embeddings(embed_faces(crops, "pca", seed=0, **PCA), owner)
    assert list(per_video.index) == list(dict.fromkeys(owner))
    assert _same_to_different_distance(per_video.to_numpy(), actors) < 0.7
    labels = cluster_people(per_video.to_numpy(), "kmeans", seed=0, n_clusters=len(set(actors)))
    assert cluster_purity(labels, actors) >= 0.75  # chance is about 0.4 on this sample


def test_person_cluster_split_from_pca_embeddings_leaks_less_than_other_splits(faces):
    crops, owner, actors = faces.crops, faces.owner, faces.actors
    videos, actor_of = faces.videos, faces.actor_of
    per_video = video_embeddings(embed_faces(crops, "pca", seed=0, **PCA), owner)
    labels = cluster_people(per_video.to_numpy(), "kmeans", seed=0, n_clusters=len(set(actors)))
    clusters = pd.Series(labels, index=per_video.index)
    share = {
        strategy: leakage(
            videos,
            assign_video_folds(videos, strategy, 2, 0, person_clusters=clusters),
            actor_of,
        )["mean"]
        for strategy in ("person_cluster", "folder", "original")
    }
    assert share["person_cluster"] < min(share["folder"], share["original"]) - 0.2, share


@pytest.mark.skipif(not HAS_DLIB, reason="dlib-bin / face-recognition-models not installed")
def test_dlib_descriptors_separate_actors(faces):
    crops, owner, actors = faces.crops, faces.owner, faces.actors
    emb = embed_faces(crops, "dlib", crop_margin=MARGIN, num_jitters=0)
    assert emb.shape == (len(crops), 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    per_video = video_embeddings(emb, owner).to_numpy()
    assert _same_to_different_distance(per_video, actors) < 0.8


def test_facenet_without_weights_names_the_parameter_and_the_fix(faces, tmp_path):
    crops = faces.crops
    with pytest.raises(ParameterError) as info:
        embed_faces(crops[:2], "facenet", facenet_weights=str(tmp_path / "missing.pt"))
    message = str(info.value)
    assert "deepfake.embedding.facenet_weights" in message
    assert "vggface2" in message and "pca" in message


def test_facenet_with_local_weights_gives_512_d_unit_rows(faces, tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    # a checkpoint shaped like facenet-pytorch's VGGFace2 file (with its classifier)
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=3)
    path = tmp_path / "facenet.pt"
    torch.save(model.state_dict(), path)
    crops = faces.crops
    emb = embed_faces(crops[:2], "facenet", facenet_weights=path, batch_size=1)
    assert emb.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_unknown_method_and_bad_crops_are_refused(faces):
    crops = faces.crops
    with pytest.raises(ParameterError, match=r"deepfake\.embedding\.method"):
        embed_faces(crops, "arcface")
    with pytest.raises(ValueError, match="uint8"):
        embed_faces(crops.astype(np.float32), "pca")
