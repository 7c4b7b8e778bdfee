"""Tracking and identity confirmation: k of n agreeing quality frames, never a single-frame hit."""

from __future__ import annotations

import numpy as np

from retailface.services.gateway.tracker import CameraTracker, Observation, TrackerConfig, TrackState, iou_matrix


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _obs(x: float, member: str | None, seed: int = 1, passes: bool = True, score: float = 0.7) -> Observation:
    return Observation(
        box=(x, 100.0, 80.0, 100.0),
        quality_passes=passes,
        embedding=_unit(seed) if passes else None,
        match_member=member,
        match_score=score if member else 0.0,
    )


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], dtype=np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0], atol=1e-6)


def test_identity_needs_k_of_n_agreeing_frames() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=3, identity_n=5))
    identities = []
    for frame, member in enumerate(["m1", None, "m1", "m2", "m1", "m1"]):
        track = tracker.update([_obs(100 + frame * 3, member)], timestamp=frame * 0.1).assigned[0]
        identities.append(track.identity)
    assert identities == [None, None, None, None, "m1", "m1"]
    assert track.state is TrackState.CONFIRMED and track.identity_agreeing == 3


def test_single_frame_hit_never_identifies() -> None:
    tracker = CameraTracker("cam")
    track = tracker.update([_obs(100, "m1")], timestamp=0.0).assigned[0]
    for frame in range(1, 8):
        track = tracker.update([_obs(100 + frame, None)], timestamp=frame * 0.1).assigned[0]
    assert track.identity is None


def test_poor_quality_frames_do_not_vote() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=2, identity_n=3))
    for frame in range(5):
        track = tracker.update([_obs(100 + frame, "m1", passes=False)], timestamp=frame * 0.1).assigned[0]
    assert track.identity is None and len(track.votes) == 0


def test_conflicting_window_withdraws_identity() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=2, identity_n=3))
    for frame, member in enumerate(["m1", "m1", "m2", "m2"]):
        track = tracker.update([_obs(100 + frame, member)], timestamp=frame * 0.1).assigned[0]
    assert track.identity is None


def test_two_people_keep_their_tracks_and_lost_tracks_drop_embeddings() -> None:
    tracker = CameraTracker("cam", TrackerConfig(max_missed_frames=2))
    first = tracker.update([_obs(0, None, seed=1), _obs(400, None, seed=2)], timestamp=0.0).assigned
    second = tracker.update([_obs(405, None, seed=2), _obs(4, None, seed=1)], timestamp=0.1).assigned
    assert [t.track_id for t in second] == [first[1].track_id, first[0].track_id]
    ended = []
    for frame in range(2, 6):
        ended += tracker.update([_obs(8, None, seed=1)], timestamp=frame * 0.1).ended
    assert [t.track_id for t in ended] == [first[1].track_id]
    assert ended[0].state is TrackState.LOST and ended[0].embedding is None


def test_appearance_reassociates_after_a_jump() -> None:
    tracker = CameraTracker("cam")
    track = tracker.update([_obs(0, None, seed=5)], timestamp=0.0).assigned[0]
    jumped = tracker.update([_obs(600, None, seed=5)], timestamp=0.1).assigned[0]
    stranger = tracker.update([_obs(1200, None, seed=9)], timestamp=0.2).assigned[0]
    assert jumped.track_id == track.track_id and stranger.track_id != track.track_id
