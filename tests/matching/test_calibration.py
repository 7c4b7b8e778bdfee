"""The calibrated decision: operating points from measured curves, the file's checks, searches by quality."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retailface.services.matching import calibration
from retailface.services.matching.calibration import (
    BELOW_CALIBRATION,
    CalibratedDecision,
    Calibration,
    Curve,
    ProbeQuality,
    QualityBin,
)
from retailface.services.matching.errors import CalibrationError, CalibrationMissingError, InvalidRequestError
from retailface.services.matching.params import DurabilityPolicy, GalleryPolicy
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1.matching_pb2 import DECISION_MATCH, DECISION_NO_MATCH

MODEL = ModelIdentity("sface", "2021dec", 128)
BINS = (QualityBin("14-24px", 14.0, 24.0), QualityBin("24px+", 24.0, math.inf))


def curve(bin_name: str, frames: int, size: int, fpir: tuple[float, ...], fnir: tuple[float, ...]) -> Curve:
    return Curve(bin_name, frames, size, 1000, 2000, (0.3, 0.4, 0.5, 0.6), fpir, fnir)


CALIBRATION = Calibration(
    "test/1",
    MODEL,
    BINS,
    (
        curve("24px+", 1, 1000, (0.1, 0.01, 0.001, 0.0), (0.01, 0.02, 0.05, 0.2)),
        curve("24px+", 1, 10000, (0.5, 0.05, 0.004, 0.0005), (0.01, 0.02, 0.06, 0.25)),
        curve("24px+", 5, 10000, (0.2, 0.01, 0.0, 0.0), (0.0, 0.01, 0.02, 0.1)),
        curve("14-24px", 1, 10000, (0.6, 0.2, 0.05, 0.01), (0.2, 0.3, 0.5, 0.7)),
    ),
)


@pytest.mark.parametrize(
    ("inter_eye", "frames", "size", "target", "expected"),
    [
        (40.0, 1, 800, 1e-3, ("24px+", 0.5, 0.001, 0.05, 1)),  # the smallest measured size >= 800 is 1k
        (40.0, 1, 5000, 1e-3, ("24px+", 0.6, 0.0005, 0.25, 1)),  # 10k curve: 0.5 gives 0.004 > 1e-3
        (40.0, 5, 5000, 1e-3, ("24px+", 0.5, 0.0, 0.02, 5)),  # the fused curve
        (40.0, 3, 5000, 1e-3, ("24px+", 0.6, 0.0005, 0.25, 1)),  # 3 frames: the 1-frame curve (not above 3)
        (40.0, 1, 20000, 1e-3, ("24px+", 0.6, 0.001, 0.25, 1)),  # beyond 10k: target scaled by 10k/20k
        (20.0, 1, 10000, 1e-2, ("14-24px", 0.6, 0.01, 0.7, 1)),
    ],
)
def test_operating_point_is_the_lowest_threshold_holding_the_target(
    inter_eye: float, frames: int, size: int, target: float, expected: tuple[str, float, float, float, int]
) -> None:
    point = CALIBRATION.operating_point(inter_eye, frames, size, target)
    assert (point.quality_bin, point.threshold, point.estimated_fpir, point.estimated_fnir, point.frames) == expected


def test_a_bin_that_cannot_hold_the_target_identifies_nobody() -> None:
    point = CALIBRATION.operating_point(20.0, 1, 10000, 1e-3)  # 14-24px never gets below 0.01
    assert (point.quality_bin, point.identifiable, point.estimated_fnir) == ("14-24px", False, 1.0)


def test_a_face_below_the_lowest_bin_is_never_identified() -> None:
    point = CALIBRATION.operating_point(9.0, 5, 1000, 0.5)
    assert (point.quality_bin, point.identifiable) == (BELOW_CALIBRATION, False)


def test_the_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sface-2021dec.json"
    CALIBRATION.save(path)
    assert calibration.load(path, MODEL) == CALIBRATION


def test_a_calibration_for_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    CALIBRATION.save(path)
    with pytest.raises(CalibrationError) as error:
        calibration.load(path, ModelIdentity("arcface", "r100", 512))
    assert str(error.value) == (
        f"the calibration {path} was measured for sface/2021dec (dim 128), but this service matches "
        "arcface/r100 (dim 512): run `make calibrate` to measure one for this model"
    )


def test_a_missing_calibration_names_make_calibrate(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError) as error:
        calibration.load(tmp_path / "none.json", MODEL)
    assert "no calibration for sface/2021dec (dim 128)" in str(error.value)
    assert str(error.value).endswith("run `make calibrate` to measure one for this model")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=99), "format 99 is not 1"),
        (lambda d: d["curves"][0].update(bin="nowhere"), "curves for unknown bins ['nowhere']"),
        (lambda d: d["curves"][0].update(thresholds=[0.5, 0.4, 0.6, 0.7]), "thresholds must ascend"),
        (lambda d: d.pop("bins"), "is malformed ('bins')"),
    ],
)
def test_a_malformed_calibration_is_refused(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = CALIBRATION.to_json()
    change(data)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=None) as error:
        calibration.load(path, MODEL)
    assert message in str(error.value)


def test_the_shipped_calibration_is_for_the_default_model() -> None:
    shipped = calibration.load(None, MODEL)
    assert (shipped.model.model_id, shipped.model.version) == ("sface", "2021dec")


# ---------------------------------------------------------------- searches by quality through the store


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MatchingStore]:
    opened = MatchingStore(
        tmp_path / "data",
        os.urandom(32),
        [GalleryPolicy("members", 0.48, 0.05)],
        MODEL,
        durability=DurabilityPolicy(1_000_000, 3600, snapshot_on_close=False),
        calibrated=CalibratedDecision(CALIBRATION, 1e-3),
    )
    rng = np.random.default_rng(3)
    gallery = unit(rng.normal(size=(50, 128)))
    for index, vector in enumerate(gallery):
        opened.gallery("members").enroll(f"s{index}", [f"t{index}"], vector[None])
    opened.gallery_vectors = gallery  # type: ignore[attr-defined]
    yield opened
    opened.close()


def probe_at(vector: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `cosine` to `vector`."""
    noise = np.random.default_rng(seed).normal(size=vector.shape)
    noise -= noise.dot(vector) * vector
    noise /= np.linalg.norm(noise)
    return unit(cosine * vector + math.sqrt(1 - cosine**2) * noise)


def test_each_query_is_decided_at_its_own_quality(store: MatchingStore) -> None:
    target = store.gallery_vectors[7]  # type: ignore[attr-defined]
    query = probe_at(target, 0.55, seed=1)
    queries = np.stack([query, query])
    # 50 subjects: the 1k curves; 24px+ needs 0.5 at 1e-3 (0.55 passes), 14-24px cannot hold 1e-3.
    outcome = store.gallery("members").search(queries, top_k=2, probes=[ProbeQuality(40.0), ProbeQuality(20.0)])
    decided = [(r.decision, r.candidates[0].subject_id, r.calibration.quality_bin) for r in outcome.results]
    assert decided == [(DECISION_MATCH, "s7", "24px+"), (DECISION_NO_MATCH, "s7", "14-24px")]


def test_a_calibrated_search_refuses_a_threshold_override(store: MatchingStore) -> None:
    query = store.gallery_vectors[:1]  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="threshold must be 0 when probe qualities are given"):
        store.gallery("members").search(query, threshold=0.4, probes=[ProbeQuality(40.0)])


def test_a_calibrated_search_needs_one_quality_per_query(store: MatchingStore) -> None:
    queries = store.gallery_vectors[:2]  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="1 probe qualities for 2 queries"):
        store.gallery("members").search(queries, probes=[ProbeQuality(40.0)])


def test_a_gallery_without_calibration_refuses_probe_qualities(tmp_path: Path) -> None:
    opened = MatchingStore(tmp_path / "d", os.urandom(32), [GalleryPolicy("members", 0.48, 0.05)], MODEL)
    try:
        with pytest.raises(CalibrationMissingError, match="gallery members has no calibration"):
            opened.gallery("members").search(unit(np.ones((1, 128))), probes=[ProbeQuality(40.0)])
    finally:
        opened.close()
