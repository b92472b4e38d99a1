"""podium.core.fid against its references: torchmetrics' FID equals the hand-written Frechet
distance podium had before, Kaggle's memorisation distance and MiFID from their
definitions (plain loops), and the FID Inception weights taken from the local cache,
fetched once into it, or (offline) replaced by the stand-in, the tag saying which."""

from __future__ import annotations

import hashlib
import http.server
import math
import socket
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from podium.core.fid import (
    COSINE_DISTANCE_EPS,
    FID_EPSILON,
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_URL,
    _inception,
    build_inception_extractor,
    extract_features,
    fetch_weights,
    fid_from_features,
    memorization_distance,
    mifid,
    resolve_inception_weights,
)
from podium.pipelines.monet.evaluate import extractor_for, score
from podium.pipelines.monet.running_fid import RunningMemorization

#: Inception-v3's smallest input: keeps the extractor fast.
SMALL = 75
EVALUATION = {
    "inception_weights": None,
    "inception_weights_url": None,
    "standin_seed": 0,
    "standin_centering": True,
    "image_size": SMALL,
    "batch_size": 4,
    "cosine_distance_eps": 0.1,
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------- FID: torchmetrics vs the old maths


def previous_fid(generated: np.ndarray, reference: np.ndarray) -> float:
    """podium's hand-written FID before torchmetrics, restated here: the unbiased Gaussian
    fits, scipy's sqrtm of S1 S2 (retried with 1e-6 on the diagonals when singular), its
    rounding's imaginary part dropped, floored at zero."""
    mu1, mu2 = generated.mean(axis=0), reference.mean(axis=0)
    s1, s2 = np.cov(generated, rowvar=False), np.cov(reference, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = linalg.sqrtm(s1 @ s2)
        root = root[0] if isinstance(root, tuple) else root
        if not np.isfinite(root).all():
            offset = np.eye(len(s1)) * 1e-6
            root = linalg.sqrtm((s1 + offset) @ (s2 + offset))
            root = root[0] if isinstance(root, tuple) else root
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real)), 0.0)


def test_fid_equals_the_previous_hand_written_values_on_fixed_inputs():
    # the figures podium's own Frechet maths gave on these inputs (sqrtm method)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 64)), rng.normal(0.3, 1.2, size=(300, 64))
    assert fid_from_features(x, y) == pytest.approx(15.98291263569206, rel=1e-10)
    assert fid_from_features(x, y) == pytest.approx(previous_fid(x, y), rel=1e-10)
    # more dimensions than images: singular covariances, as with 2048-d pool3 features
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 128)), rng.normal(0.3, 1.2, size=(30, 128))
    assert fid_from_features(x, y) == pytest.approx(207.39609269224403, rel=1e-8)
    assert fid_from_features(x, y) == pytest.approx(previous_fid(x, y), rel=1e-8)


def test_fid_of_known_gaussians_and_of_a_set_with_itself():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 16))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    # a shifted copy: identical covariances, so FID is exactly |delta|^2
    for size in (0.5, 1.0, 2.0):
        assert fid_from_features(x + size, x) == pytest.approx(size**2 * 16, rel=1e-8)


def test_the_pipelines_fid_on_fixed_images_equals_the_previous_one():
    rng = np.random.default_rng(1)
    generated = rng.integers(0, 120, (6, 64, 64, 3), dtype=np.uint8)
    monets = rng.integers(100, 255, (5, 64, 64, 3), dtype=np.uint8)

    def batches(images):
        for start in range(0, len(images), 4):
            yield images[start : start + 4]

    scores = score(batches(generated), batches(monets), EVALUATION, progress=False)
    extractor = build_inception_extractor(None, 0)
    f_generated = extract_features(extractor, generated, batch_size=4, image_size=SMALL)
    f_monets = extract_features(extractor, monets, batch_size=4, image_size=SMALL)
    assert scores["fid"] == pytest.approx(previous_fid(f_generated, f_monets), rel=1e-7)
    # the figure podium's hand-written FID gave (this machine's kernels: a looser tolerance)
    assert scores["fid"] == pytest.approx(0.13648199128559407, rel=1e-5)
    assert scores["memorization_distance"] == pytest.approx(0.5650475032232726, rel=1e-6)
    assert scores["fid_extractor"] == "standin-random-inception_v3-seed0"
    assert scores["fid_weights"].startswith("offline: ")


def test_too_few_rows_for_a_covariance_is_an_error():
    with pytest.raises(ValueError, match="at least two"):
        fid_from_features(np.ones((1, 4)), np.ones((5, 4)))


# ------------------------------------------ Kaggle's memorisation distance, by definition


def kaggle_memorization(generated: np.ndarray, training: np.ndarray) -> float:
    """Kaggle's definition with plain loops: for each generated image (all-zero rows left
    out), the smallest 1 - |cos| to any training image; their mean."""
    minima = []
    for g in generated:
        if sum(g) == 0:
            continue
        g_norm = math.sqrt(sum(v * v for v in g))
        smallest = math.inf
        for t in training:
            if sum(t) == 0:
                continue
            t_norm = math.sqrt(sum(v * v for v in t))
            cos = sum(a * b for a, b in zip(g, t, strict=True)) / (g_norm * t_norm)
            smallest = min(smallest, 1.0 - abs(cos))
        minima.append(smallest)
    return sum(minima) / len(minima)


def kaggle_mifid(fid: float, distance: float, eps: float) -> float:
    """MiFID by definition: FID / (d + 1e-14) when d < eps (memorisation), else FID / (1 +
    1e-14)."""
    if distance < eps:
        return fid / (distance + 1e-14)
    return fid / (1.0 + 1e-14)


def test_the_memorization_distance_is_kaggles_definition_on_random_inputs():
    rng = np.random.default_rng(3)
    for trial in range(1000):
        dim = int(rng.integers(2, 10))
        training = rng.normal(size=(int(rng.integers(1, 7)), dim))
        generated = rng.normal(size=(int(rng.integers(1, 7)), dim))
        if trial % 4 == 0:  # near-copies (scaled, sign-flipped), where the penalty bites
            picks = rng.integers(0, len(training), len(generated))
            scale = rng.choice([-2.0, 0.5, 3.0], size=(len(generated), 1))
            generated = training[picks] * scale + rng.normal(0, 1e-3, generated.shape)
        if trial % 7 == 0:
            generated = np.vstack([generated, np.zeros((1, dim))])  # left out, as Kaggle
        expected = kaggle_memorization(generated.tolist(), training.tolist())
        assert memorization_distance(generated, training) == pytest.approx(
            expected, rel=1e-9, abs=1e-12
        )
        running = RunningMemorization(training)
        for batch in np.array_split(generated, 2):
            running.add(batch)
        assert running.distance() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mifid_is_its_definition_on_random_inputs():
    rng = np.random.default_rng(4)
    for _ in range(1000):
        fid, distance = float(rng.uniform(0, 300)), float(rng.uniform(0, 0.3))
        value, thresholded = mifid(fid, distance)
        assert value == pytest.approx(kaggle_mifid(fid, distance, 0.1), rel=1e-12)
        assert thresholded == (distance if distance < 0.1 else 1.0)
    assert (COSINE_DISTANCE_EPS, FID_EPSILON) == (0.1, 1e-14)


def test_memorization_worked_examples():
    training = np.array([[1.0, 0.0], [0.0, 1.0]])
    # opposite (|cos| 1: a copy, 0), all-zero (left out), diagonal (1 - sqrt(1/2))
    generated = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert memorization_distance(generated, training) == pytest.approx((1 - np.sqrt(0.5)) / 2)
    assert mifid(12.0, 0.04) == (pytest.approx(12.0 / 0.04), 0.04)  # memorised: penalised
    assert mifid(12.0, 0.5) == (pytest.approx(12.0), 1.0)  # not memorised: FID itself


# ----------------------------------------------------------------- the Inception weights


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


class _Server:
    """A local HTTP server for ``folder``, counting the requests it answers."""

    def __init__(self, folder: Path) -> None:
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):  # noqa: N802
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    (tmp_path / "served").mkdir()
    running = _Server(tmp_path / "served")
    yield running
    running.close()


def test_pytorch_fids_url_and_file_name():
    assert FID_WEIGHTS_URL == (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth"
    )
    assert FID_WEIGHTS_URL.endswith("/" + FID_WEIGHTS_FILE)


def test_offline_the_standin_is_used_and_the_tag_says_so(tmp_path):
    cache = tmp_path / "fid" / FID_WEIGHTS_FILE
    url = f"http://127.0.0.1:{_closed_port()}/{FID_WEIGHTS_FILE}"  # refused: offline
    source = resolve_inception_weights(cache, url, timeout=5)
    assert source.offline and source.path is None
    assert source.description.startswith(f"offline: {url} unreachable")
    assert not cache.exists() and not list(cache.parent.glob("*"))  # no partial file left
    evaluation = EVALUATION | {"inception_weights": str(cache), "inception_weights_url": url}
    extractor, weights = extractor_for(evaluation)
    assert extractor.is_standin and extractor.name == "standin-random-inception_v3-seed0"
    assert weights.description.startswith("offline: ")
    # no URL, or no file to cache into: offline without trying
    assert resolve_inception_weights(cache, None).description.startswith("offline: ")
    assert resolve_inception_weights(None, url).description.startswith("offline: ")


def test_the_cached_file_is_used_without_fetching(tmp_path, server):
    cache = tmp_path / "fid" / FID_WEIGHTS_FILE
    cache.parent.mkdir()
    model = _inception(1008, fid_blocks=True)  # a locally written FID Inception state dict
    torch.save(model.state_dict(), cache)
    evaluation = EVALUATION | {
        "inception_weights": str(cache),
        "inception_weights_url": f"{server.url}/{FID_WEIGHTS_FILE}",
    }
    extractor, weights = extractor_for(evaluation)
    assert server.requests == []  # the cache was enough
    assert weights.description == f"cached: {cache}" and weights.path == cache
    assert not extractor.is_standin and extractor.name == f"fid_inception:{FID_WEIGHTS_FILE}"
    loaded = extractor.model.state_dict()["Mixed_7c.branch_pool.conv.weight"]
    assert torch.equal(loaded, model.Mixed_7c.branch_pool.conv.weight)


def test_weights_are_fetched_once_into_the_cache_and_checked_against_their_name(tmp_path, server):
    payload = np.random.default_rng(5).bytes(3 << 20)  # three chunks' worth
    name = f"weights-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    (tmp_path / "served" / name).write_bytes(payload)
    cache = tmp_path / "cache" / name
    first = resolve_inception_weights(cache, f"{server.url}/{name}")
    assert first.description == f"fetched: {server.url}/{name}" and first.path == cache
    assert cache.read_bytes() == payload
    again = resolve_inception_weights(cache, f"{server.url}/{name}")
    assert again.description == f"cached: {cache}"
    assert server.requests == [f"/{name}"]  # fetched once
    # a download that does not match the sha256 prefix in its name is not kept
    (tmp_path / "served" / "other-00000000.pth").write_bytes(payload)
    bad = tmp_path / "cache" / "other-00000000.pth"
    with pytest.raises(ValueError, match="does not start with 00000000"):
        fetch_weights(f"{server.url}/other-00000000.pth", bad)
    assert sorted(p.name for p in bad.parent.iterdir()) == [name]
    assert resolve_inception_weights(bad, f"{server.url}/other-00000000.pth").offline
