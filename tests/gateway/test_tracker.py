"""Tracking and identity confirmation: k of n agreeing quality frames, never a single-frame hit."""

from __future__ import annotations

import numpy as np

from retailface.services.gateway.tracker import (
    CameraTracker,
    Observation,
    Track,
    TrackerConfig,
    TrackState,
    Vote,
    iou_matrix,
)


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _obs(x: float, seed: int = 1, passes: bool = True) -> Observation:
    return Observation(
        box=(x, 100.0, 80.0, 100.0), quality_passes=passes, embedding=_unit(seed) if passes else None, inter_eye_px=40.0
    )


def _frame(
    tracker: CameraTracker, x: float, member: str | None, timestamp: float, passes: bool = True, score: float = 0.7
) -> Track:
    """One frame with one face, and matching's answer for the track's probe as the pipeline gives it."""
    track = tracker.update([_obs(x, passes=passes)], timestamp).assigned[0]
    if passes:
        tracker.vote(track, Vote(member, score if member else 0.0))
    return track


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], dtype=np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0], atol=1e-6)


def test_identity_needs_k_of_n_agreeing_frames() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=3, identity_n=5))
    identities = []
    for frame, member in enumerate(["m1", None, "m1", "m2", "m1", "m1"]):
        track = _frame(tracker, 100 + frame * 3, member, timestamp=frame * 0.1)
        identities.append(track.identity)
    assert identities == [None, None, None, None, "m1", "m1"]
    assert track.state is TrackState.CONFIRMED and track.identity_agreeing == 3


def test_single_frame_hit_never_identifies() -> None:
    tracker = CameraTracker("cam")
    track = _frame(tracker, 100, "m1", timestamp=0.0)
    for frame in range(1, 8):
        track = _frame(tracker, 100 + frame, None, timestamp=frame * 0.1)
    assert track.identity is None


def test_poor_quality_frames_do_not_vote() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=2, identity_n=3))
    for frame in range(5):
        track = _frame(tracker, 100 + frame, "m1", timestamp=frame * 0.1, passes=False)
    assert track.identity is None and len(track.votes) == 0 and track.fused_probe() is None


def test_conflicting_window_withdraws_identity() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=2, identity_n=3))
    for frame, member in enumerate(["m1", "m1", "m2", "m2"]):
        track = _frame(tracker, 100 + frame, member, timestamp=frame * 0.1)
    assert track.identity is None


def test_two_people_keep_their_tracks_and_lost_tracks_drop_embeddings() -> None:
    tracker = CameraTracker("cam", TrackerConfig(max_missed_frames=2))
    first = tracker.update([_obs(0, seed=1), _obs(400, seed=2)], timestamp=0.0).assigned
    second = tracker.update([_obs(405, seed=2), _obs(4, seed=1)], timestamp=0.1).assigned
    assert [t.track_id for t in second] == [first[1].track_id, first[0].track_id]
    ended = []
    for frame in range(2, 6):
        ended += tracker.update([_obs(8, seed=1)], timestamp=frame * 0.1).ended
    assert [t.track_id for t in ended] == [first[1].track_id]
    assert (ended[0].state, ended[0].embedding, len(ended[0].frames)) == (TrackState.LOST, None, 0)


def test_appearance_reassociates_after_a_jump() -> None:
    tracker = CameraTracker("cam")
    track = tracker.update([_obs(0, seed=5)], timestamp=0.0).assigned[0]
    jumped = tracker.update([_obs(600, seed=5)], timestamp=0.1).assigned[0]
    stranger = tracker.update([_obs(1200, seed=9)], timestamp=0.2).assigned[0]
    assert jumped.track_id == track.track_id and stranger.track_id != track.track_id


def test_the_fused_probe_is_the_weighted_mean_of_the_last_frames() -> None:
    tracker = CameraTracker("cam", TrackerConfig(fused_frames=2))
    sizes = [(10.0, 1), (24.0, 2), (48.0, 3)]  # inter-eye px, embedding seed
    for frame, (inter_eye, seed) in enumerate(sizes):
        observation = Observation((100.0 + frame, 100.0, 80.0, 100.0), True, _unit(seed), inter_eye_px=inter_eye)
        track = tracker.update([observation], timestamp=frame * 0.1).assigned[0]
    probe = track.fused_probe()
    assert probe is not None
    expected = 0.5 * _unit(2) + 1.0 * _unit(3)  # weights 24/48 and 48/48; the first frame left the window
    np.testing.assert_allclose(probe.vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert (probe.frames, round(probe.inter_eye_px, 3)) == (2, round((0.5 * 24 + 48) / 1.5, 3))


def test_a_vote_carries_its_calibration_into_the_identity() -> None:
    tracker = CameraTracker("cam", TrackerConfig(identity_k=2, identity_n=3))
    newly = []
    for frame in range(3):
        track = tracker.update([_obs(100 + frame)], timestamp=frame * 0.1).assigned[0]
        newly.append(tracker.vote(track, Vote("m1", 0.6, calibration=f"bin-{frame}"), fused_frames=frame + 1))
    assert newly == [False, True, False]
    assert (track.identity, track.identity_calibration, track.identity_fused_frames) == ("m1", "bin-2", 3)
