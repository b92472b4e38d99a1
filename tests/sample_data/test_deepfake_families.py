"""The DFDC sample's manipulation families and test-video distractors: every family makes a
valid fake that changes only its own region, the families leave measurably different
traces, shares are honoured, the truth sidecars record both, and one family alone gives
the single-method generator's files byte for byte."""

from __future__ import annotations

import hashlib
import io
import json

import av
import cv2
import numpy as np
import pytest

from podium.core.params import ParametersInvalid
from podium.sample_data.deepfake import (
    DEFAULT_FAMILIES,
    TRUTH_FILE,
    DeepfakeSampleParams,
    _render_real,
    encode_mp4,
    generate_deepfake_sample,
)
from podium.sample_data.faces import face_region_mask, random_appearance
from podium.sample_data.manipulations import (
    DISTRACTORS,
    FAMILIES,
    apply_distractor,
    draw_distractors,
    draw_families,
    finish,
    render_family,
)

# one family, as a conf/local override writes it (it merges into conf/base's mapping, so the
# other families are given share 0), and no distractors
SINGLE = {
    "families": {f: 1.0 if f == "face_swap" else 0.0 for f in FAMILIES},
    "test_distractors": {"share": 0.0},
}
UNIFORM = {f: 1.0 / len(FAMILIES) for f in FAMILIES}
# tiny videos for unit tests: 64x64, 6 frames
UNIT = {"width": 64, "height": 64, "fps": 6, "seconds": 1.0}


def _decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _scene(params: dict, seed: int = 1):
    """An original (clean frames, noise, poses) and a target/donor pair, rendered directly."""
    p = DeepfakeSampleParams.of(params)
    n = int(round(p.fps * p.seconds))
    rng = np.random.default_rng(seed)
    target, donor = random_appearance(rng), random_appearance(rng)
    orig = _render_real(np.random.default_rng(seed + 1), p, "actor_000", target, "x.mp4", n)
    real = [finish(f, z) for f, z in zip(orig.clean, orig.noise, strict=True)]
    return p, orig, target, donor, real


def _region(box, shape, family: str) -> np.ndarray:
    """Where ``family`` may change pixels: the face box grown a little (the feathered mask
    and its jitter reach past the box), or for talking_head the whole head: hair above the
    forehead, ears, neck below the chin (the face box grown by most of a face height)."""
    x1, y1, x2, y2 = box
    fh = y2 - y1
    if family == "talking_head":
        grow = (0.45 * fh + 4, 0.55 * fh + 4, 0.45 * fh + 4, 0.75 * fh + 4)  # l, t, r, b
    else:
        grow = (0.15 * fh + 5,) * 4
    region = np.zeros(shape, bool)
    region[
        max(0, int(y1 - grow[1])) : int(y2 + grow[3]) + 1,
        max(0, int(x1 - grow[0])) : int(x2 + grow[2]) + 1,
    ] = True
    return region


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_makes_a_valid_fake(family):
    p, orig, target, donor, real = _scene(UNIT)
    fake = render_family(family, np.random.default_rng(3), p, orig, target, donor)
    assert len(fake) == len(real) == 6
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in fake)
    inside = []
    for k, (a, b) in enumerate(zip(real, fake, strict=True)):
        diff = np.abs(a.astype(int) - b).sum(axis=2)
        x1, y1, x2, y2 = (int(v) for v in orig.boxes[k])
        inside.append(diff[y1 : y2 + 1, x1 : x2 + 1].mean())
        outside = ~_region(orig.boxes[k], diff.shape, family)
        assert (diff[outside] == 0).all(), (family, k, int(diff[outside].max()))
    assert np.mean(inside) > 1.5, (family, inside)
    decoded = _decode(encode_mp4(fake, fps=6))
    assert decoded.shape == (6, 64, 64, 3)


def test_talking_head_replaces_the_whole_head():
    """Hair above the forehead changes too (a face swap leaves it alone)."""
    p, orig, target, donor, real = _scene(UNIT)
    for family, expected in (("talking_head", True), ("face_swap", False)):
        fake = render_family(family, np.random.default_rng(3), p, orig, target, donor)
        x1, y1, x2, y2 = (int(v) for v in orig.boxes[0])
        top = slice(max(0, y1 - (y2 - y1) // 4), y1)
        changed = np.abs(real[0][top, x1:x2].astype(int) - fake[0][top, x1:x2]).sum() > 0
        assert changed == expected, family


# ---------------------------------------------------------------------------- traces


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _highpass(frame: np.ndarray) -> np.ndarray:
    g = _grey(frame)
    return g - cv2.GaussianBlur(g, (0, 0), 1.0)


def _inner_face(orig, target, k: int, shrink: float = 0.8) -> np.ndarray:
    pose = orig.poses[k]
    shape = orig.clean[k].shape[:2]
    return face_region_mask(shape, target, (pose.cx, pose.cy), pose.fh * shrink, pose.angle) > 0.5


def trace_statistics(frames, real, orig, target) -> dict[str, float]:
    """Per video, inside the face (the target's inner face region, shrunk), before encoding,
    the head holding still (so what changes over time is noise and the fake's doing):

    - ``fine_noise``: fresh camera noise: the median absolute finest detail (minus a
      sigma-1 blur) of each frame minus the video's mean frame, relative to the real
      video's: a decoder's or generator's output (no camera noise) shows as < 1, texture
      frozen from one frame as 0;
    - ``temporal_noise``: the median over the face of each pixel's standard deviation
      over time, relative to the real video's: flicker and a face that wobbles against
      the head show as > 1, frozen texture as < 1;
    - ``detail``: the energy of each frame's finest detail (minus a sigma-1 blur), relative
      to the real video's: resolution loss and smoothing show as < 1;
    - ``nyquist``: the share of that spectrum's energy at the Nyquist frequencies (pi, 0),
      (0, pi), (pi, pi), over white noise's share: an upsampling checkerboard shows as >> 1;
    - ``boundary``: mean gradient of (fake - real), blurred, on a ring around the face
      mask's edge (grey levels per pixel): seams and hard edges show there.
    """
    grey, grey_real = np.stack([_grey(f) for f in frames]), np.stack([_grey(f) for f in real])
    face = _inner_face(orig, target, 0)
    fine, fine_real, detail, detail_real, nyq, boundary = [], [], [], [], [], []
    for k, (f, r) in enumerate(zip(frames, real, strict=True)):
        for out, g in (
            (fine, grey[k] - grey.mean(0)),
            (fine_real, grey_real[k] - grey_real.mean(0)),
        ):
            out.append(float(np.median(np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0))[face])))
        hf = _highpass(f)
        detail.append(float((hf[face] ** 2).mean()))
        detail_real.append(float((_highpass(r)[face] ** 2).mean()))
        ys, xs = np.nonzero(face)
        crop = hf[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        crop = crop[: crop.shape[0] // 2 * 2, : crop.shape[1] // 2 * 2]
        power = np.abs(np.fft.fft2(crop - crop.mean())) ** 2
        h2, w2 = crop.shape[0] // 2, crop.shape[1] // 2
        nyq.append(
            float((power[h2, 0] + power[0, w2] + power[h2, w2]) / power.sum() * power.size / 3)
        )
        ring = _inner_face(orig, target, k, 1.1) & ~_inner_face(orig, target, k, 0.9)
        d = cv2.GaussianBlur(grey[k] - grey_real[k], (0, 0), 1.0)
        gy, gx = np.gradient(d)
        boundary.append(float(np.hypot(gx, gy)[ring].mean()))
    return {
        "fine_noise": float(np.mean(fine) / np.mean(fine_real)),
        "temporal_noise": float(np.median(grey.std(0)[face]) / np.median(grey_real.std(0)[face])),
        "detail": float(np.mean(detail) / np.mean(detail_real)),
        "nyquist": float(np.mean(nyq)),
        "boundary": float(np.mean(boundary)),
    }


# a still head (no shift, zoom, roll or light drift), a face of ~60 px, 8 frames
STILL = {
    **UNIT,
    "width": 128,
    "height": 128,
    "fps": 8,
    "max_shift": 0.0,
    "scale_jitter": 0.0,
    "max_roll_deg": 0.0,
    "light_drift": 0.0,
}


@pytest.fixture(scope="module")
def traces() -> dict[str, dict[str, float]]:
    p, orig, target, donor, real = _scene(STILL, seed=4)
    out = {"real": trace_statistics(real, real, orig, target)}
    for family in FAMILIES:
        fake = render_family(family, np.random.default_rng(5), p, orig, target, donor)
        out[family] = trace_statistics(fake, real, orig, target)
    return out


def test_families_leave_different_traces(traces):
    """Each family's own trace, designed from its method, shows on its statistic."""
    t = traces

    def others(stat: str, family: str) -> list[float]:
        return [t[f][stat] for f in FAMILIES if f != family]

    # NTH: texture frozen from one source frame (no fresh noise, nothing changes)
    assert t["talking_head"]["fine_noise"] < 0.1 and t["talking_head"]["temporal_noise"] < 0.2
    # decoder / generator output has little camera noise; a DF-128 swap keeps the camera's
    for family in ("autoencoder_256", "gan_face"):
        assert t[family]["fine_noise"] < 0.75 * t["face_swap"]["fine_noise"], family
    # DF-256 is the sharper autoencoder: less detail lost than DF-128's
    assert t["autoencoder_256"]["detail"] > 1.3 * t["face_swap"]["detail"]
    # MM/NN: per-frame landmark errors make the face wobble against the still head
    assert (
        t["morphable_mask"]["temporal_noise"]
        > max(others("temporal_noise", "morphable_mask")) + 0.5
    )
    # the transposed convolution's checkerboard: gan_face alone peaks at Nyquist
    assert t["gan_face"]["nyquist"] > 20 * max(others("nyquist", "gan_face"))
    # a hard-edged paste steps at the mask's edge; a gradient-domain blend least of all
    assert t["morphable_mask"]["boundary"] > 2 * t["poisson_blend"]["boundary"]
    assert t["face_swap"]["boundary"] > 3 * t["poisson_blend"]["boundary"]
    assert t["poisson_blend"]["boundary"] == min(t[f]["boundary"] for f in FAMILIES)
    # and on every statistic the families are not all alike
    for stat in t["real"]:
        values = [t[f][stat] for f in FAMILIES]
        assert max(values) - min(values) > 0.3 * max(abs(v) for v in values), stat


@pytest.mark.parametrize(
    ("family", "stat", "grows"),
    [
        ("face_swap", "detail", False),  # more resolution loss and blur
        ("autoencoder_256", "temporal_noise", True),  # more flicker and jitter
        ("morphable_mask", "temporal_noise", True),  # larger landmark errors: more wobble
        ("talking_head", "detail", False),  # more over-smoothing
        ("poisson_blend", "detail", False),  # a lower-resolution reenactment
        ("gan_face", "nyquist", True),  # a stronger checkerboard
    ],
)
def test_each_familys_strength_follows_difficulty(family, stat, grows):
    values = []
    for difficulty in (0.1, 0.9):
        params = {**STILL, "difficulty": difficulty}
        p, orig, target, donor, real = _scene(params, seed=4)
        fake = render_family(family, np.random.default_rng(5), p, orig, target, donor)
        values.append(trace_statistics(fake, real, orig, target)[stat])
    easy, hard = values
    assert (hard > 1.5 * easy) if grows else (hard < easy / 1.5), (family, stat, values)


# ---------------------------------------------------------------------------- drawing


def test_draws_honour_the_shares():
    shares = {**DEFAULT_FAMILIES, "gan_face": 0.0, "face_swap": 0.4}
    n = 20_000
    got = draw_families(np.random.default_rng(0), shares, n)
    for family in FAMILIES:
        share = shares[family]
        sigma = (share * (1 - share) / n) ** 0.5
        assert abs(got.count(family) / n - share) <= 4.5 * sigma + 1e-12, family
    assert "gan_face" not in got
    # reproducible, and the mapping's key order is no part of the draw
    again = draw_families(np.random.default_rng(0), dict(reversed(shares.items())), n)
    assert again == got
    assert draw_families(np.random.default_rng(1), {"talking_head": 1.0}, 5) == ["talking_head"] * 5


def test_distractors_are_given_to_the_share_of_test_videos():
    q = DeepfakeSampleParams().test_distractors
    drawn = draw_distractors(np.random.default_rng(0), 10, q)
    assert sum(d is not None for d in drawn) == 3
    assert draw_distractors(np.random.default_rng(0), 10, q) == drawn
    assert draw_distractors(np.random.default_rng(0), 10, {**dict(q), "share": 0.0}) == [None] * 10
    kinds = [
        d["kind"]
        for d in draw_distractors(np.random.default_rng(1), 3000, {**dict(q), "share": 1.0})
    ]
    for kind in DISTRACTORS:  # kinds' shares honoured too
        share = q.kinds[kind]
        assert abs(kinds.count(kind) / 3000 - share) <= 4.5 * (share * (1 - share) / 3000) ** 0.5


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "reencode", "crf": 38},
        {"kind": "resize", "scale": 0.4},
        {"kind": "frame_rate", "factor": 0.5},
        {"kind": "frame_rate", "factor": 2.0},
        {"kind": "text", "text": "LIVE NEWS", "position": "bottom", "colour": [250, 250, 0]},
        {"kind": "logo", "corner": "top_right", "size": 0.15, "letter": "P", "colour": [200, 0, 0]},
        {"kind": "flower_crown", "flowers": 6, "colour": [240, 80, 160]},
    ],
)
def test_each_distractor_does_what_it_says(spec):
    p, orig, target, donor, real = _scene(UNIT)
    frames, fps, index, crf = apply_distractor(real, 6, orig.boxes, spec)
    if spec["kind"] == "reencode":
        assert crf == 38 and frames is real
        return
    assert crf is None
    if spec["kind"] == "frame_rate":
        assert fps == round(6 * spec["factor"]) and len(frames) == round(6 * spec["factor"])
        assert all(f is real[i] for f, i in zip(frames, index, strict=True))
        assert index == sorted(index)
        return
    assert fps == 6 and index == list(range(6))
    assert all(f.shape == r.shape for f, r in zip(frames, real, strict=True))
    changed = np.mean(
        [np.abs(f.astype(int) - r).sum(2) > 0 for f, r in zip(frames, real, strict=True)]
    )
    assert changed > 0.01, spec


# ---------------------------------------------------------------------------- the generator


@pytest.fixture(scope="module")
def mixed() -> dict[str, bytes]:
    params = {
        **UNIT,
        "n_parts": 1,
        "reals_per_part": 2,
        "fakes_per_real": 6,
        "actors_per_part": 2,
        "n_test_videos": 6,
        "test_actors": 1,
        "families": UNIFORM,
        "test_distractors": {"share": 0.5},
    }
    return generate_deepfake_sample(params, seed=8)


def test_truth_records_families_and_distractors(mixed):
    meta = json.loads(mixed["dfdc_train_part_0/metadata.json"])
    assert all(set(e) == {"label", "split", "original"} for e in meta.values())  # as DFDC's
    doc = json.loads(mixed["dfdc_train_part_0/" + TRUTH_FILE])
    seen = set()
    for name, entry in doc["videos"].items():
        assert "distractor" not in entry  # training videos never get one
        if entry["label"] == "REAL":
            assert entry["family"] is None
            continue
        seen.add(entry["family"])
        assert entry["family"] in FAMILIES
        if entry["family"] == "talking_head":  # the target's own identity, no donor
            assert entry["swap_actor"] is None
        else:
            assert entry["swap_actor"] not in (None, entry["actor"])
        frames = _decode(mixed[f"dfdc_train_part_0/{name}"])
        assert frames.shape == (6, 64, 64, 3)
    assert len(seen) >= 4  # 12 fakes drawn uniformly over 6 families
    test = json.loads(mixed["test_videos/" + TRUTH_FILE])["videos"]
    given = [e["distractor"] for e in test.values() if e["distractor"] is not None]
    assert len(test) == 6 and len(given) == 3
    assert all(e["distractor"]["kind"] in DISTRACTORS for e in test.values() if e["distractor"])
    for name, entry in test.items():
        frames = _decode(mixed[f"test_videos/{name}"])
        assert frames.shape[0] == entry["frames"] == len(entry["boxes"])
        with av.open(io.BytesIO(mixed[f"test_videos/{name}"])) as c:
            assert float(c.streams.video[0].average_rate) == entry["fps"]
        assert (entry["family"] is None) == (entry["label"] == "REAL")


def test_other_families_change_the_fakes_not_the_reals():
    pinned = generate_deepfake_sample({**UNIT, "n_parts": 1, "n_test_videos": 0, **SINGLE}, seed=8)
    mixed = generate_deepfake_sample(
        {**UNIT, "n_parts": 1, "n_test_videos": 0, "families": {"gan_face": 1.0}}, seed=8
    )
    assert pinned.keys() == mixed.keys()
    meta = json.loads(pinned["dfdc_train_part_0/metadata.json"])
    for name, entry in meta.items():
        same = pinned[f"dfdc_train_part_0/{name}"] == mixed[f"dfdc_train_part_0/{name}"]
        assert same == (entry["label"] == "REAL"), name


# ---------------------------------------------------------------------------- bytes


def _normalised(path: str, data: bytes) -> bytes:
    """A file's bytes; a truth sidecar's without the keys families and distractors added."""
    if not path.endswith(TRUTH_FILE):
        return data
    doc = json.loads(data)
    for entry in doc["videos"].values():
        entry.pop("family", None)
        entry.pop("distractor", None)
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(_normalised(path, files[path])).digest())
    return h.hexdigest()


# Recorded from the single-family generator (before families and distractors existed),
# with this environment's PyAV/libx264: with families {face_swap: 1.0} and no distractors
# the generator must still write exactly these files (truth sidecars compared without
# their "family"/"distractor" keys). The defaults with families pinned gave
# 37a5f2904ca2871f912b95ac0862f1f6d16466f99b42f26f614f769359e49793 (not run here: 30 s).
SINGLE_FAMILY_DIGESTS = [
    (  # tests/conftest.py's TINY_SAMPLE["sample_data"]["deepfake"]
        {
            "n_parts": 1,
            "reals_per_part": 2,
            "fakes_per_real": 1,
            "actors_per_part": 2,
            "n_test_videos": 2,
            "test_actors": 1,
            "seconds": 1.0,
            "width": 160,
            "height": 120,
        },
        2026,
        "9dc5f037faa2ca197e29e085545762b0bd08f0904fa2ec4886c26303c86a7e27",
    ),
    (  # test_deepfake_sample.py's TINY
        {
            "n_parts": 2,
            "reals_per_part": 2,
            "fakes_per_real": 2,
            "actors_per_part": 2,
            "cross_folder_actor_share": 0.5,
            "n_test_videos": 3,
            "test_actors": 2,
            "width": 160,
            "height": 120,
            "fps": 10,
            "seconds": 1.0,
        },
        5,
        "a58a555b24445b46c2940098789d3b4e0078c9fa0c91e003d139226d1b066d4a",
    ),
    (
        {
            "n_parts": 1,
            "reals_per_part": 1,
            "fakes_per_real": 2,
            "actors_per_part": 2,
            "n_test_videos": 2,
            "test_actors": 1,
            **UNIT,
        },
        3,
        "832c6264d873e0fbb973cfe33eef02be3358c2a5496083a0627cd68cfa022042",
    ),
]


@pytest.mark.parametrize(("params", "seed", "digest"), SINGLE_FAMILY_DIGESTS)
def test_one_family_gives_the_single_family_generators_bytes(params, seed, digest):
    files = generate_deepfake_sample({**params, **SINGLE}, seed)
    assert _digest(files) == digest
    truth = json.loads(files["dfdc_train_part_0/" + TRUTH_FILE])["videos"]
    assert {e["family"] for e in truth.values()} == {None, "face_swap"}


def test_a_family_left_out_is_a_family_with_share_0():
    params, seed, digest = SINGLE_FAMILY_DIGESTS[-1]
    bare = {**params, "families": {"face_swap": 1.0}, "test_distractors": {"share": 0.0}}
    assert _digest(generate_deepfake_sample(bare, seed)) == digest


# ---------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("given", "path", "told"),
    [
        (
            {"families": {"face_swap": 0.5, "gan_face": 0.4}},
            "sample_data.deepfake.families",
            "must sum to 1, got 0.9",
        ),
        (
            {"families": {"face_swop": 1.0}},
            "sample_data.deepfake.families.face_swop",
            "did you mean 'face_swap'",
        ),
        (
            {"families": {"face_swap": 1.2, "gan_face": -0.2}},
            "sample_data.deepfake.families.gan_face",
            ">= 0",
        ),
        (
            {"test_distractors": {"kinds": {"blur": 1.0}}},
            "sample_data.deepfake.test_distractors.kinds.blur",
            "allowed kind names",
        ),
        (
            {"test_distractors": {"kinds": {"text": 0.5}}},
            "sample_data.deepfake.test_distractors.kinds",
            "must sum to 1",
        ),
        (
            {"test_distractors": {"share": 1.5}},
            "sample_data.deepfake.test_distractors.share",
            "<= 1",
        ),
    ],
)
def test_the_model_refuses_bad_shares(given, path, told):
    with pytest.raises(ParametersInvalid) as caught:
        DeepfakeSampleParams.of(given)
    assert caught.value.parameter == path
    assert told in str(caught.value)
    assert "parameters_sample_data.yml" in str(caught.value)


def test_shares_within_rounding_are_accepted():
    p = DeepfakeSampleParams.of(
        {"families": {"face_swap": 1 / 3, "gan_face": 1 / 3, "talking_head": 1 / 3}}
    )
    assert set(p.families) == {"face_swap", "gan_face", "talking_head"}
    assert abs(sum(DEFAULT_FAMILIES.values()) - 1) < 1e-9 and set(DEFAULT_FAMILIES) == set(FAMILIES)
