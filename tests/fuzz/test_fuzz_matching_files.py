"""Matching's log and snapshot, truncated and bit-flipped: each damage is detected, no wrong data is served.

A real store writes six changes (enrolls, a tag change, an erase, a re-enroll) and is closed. Each
example copies its data dir, damages one file, and reopens it. The store either refuses to open
with a StoreCorruptedError that says what to do, or opens holding exactly the changes acknowledged
before the damage. The log's design (recordlog.py) allows one case of the latter: a torn last
record, cut off on open, as a crash in the middle of an append leaves it; any other damage is refused.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from fuzz_support import FuzzCases, fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st

from retailface.services.matching.crypto import scan_frames
from retailface.services.matching.errors import StoreCorruptedError
from retailface.services.matching.params import DurabilityPolicy, GalleryPolicy, IndexParams
from retailface.services.matching.recordlog import segment_name
from retailface.services.matching.snapshots import SNAPSHOT_FILE
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.model_identity import ModelIdentity

LOG_TARGET = "matching log"
SNAPSHOT_TARGET = "matching snapshot"
KEY = bytes(range(32))
MODEL = ModelIdentity("sface", "2021dec", 128)
MANUAL = DurabilityPolicy(snapshot_every_records=1_000_000, erase_purge_seconds=3600, snapshot_on_close=False)
TEMPLATES = ("a0", "a1", "b0", "c0", "a2")
State = dict[str, str]  # template id -> subject id, as searches return them


def vector(template_id: str) -> np.ndarray:
    seeded = np.random.default_rng(zlib.crc32(template_id.encode())).standard_normal(MODEL.dim)
    return (seeded / np.linalg.norm(seeded)).astype(np.float32)


def open_store(data_dir: Path) -> MatchingStore:
    return MatchingStore(
        data_dir, KEY, [GalleryPolicy("members", 0.48, 0.05)], MODEL, IndexParams(initial_capacity=16), MANUAL
    )


# The changes, in log order, and what the gallery holds after each.
CHANGES: list[Callable[[MatchingStore], object]] = [
    lambda s: s.gallery("members").enroll("a", ["a0", "a1"], np.stack([vector("a0"), vector("a1")])),
    lambda s: s.gallery("members").enroll("b", ["b0"], vector("b0")[None]),
    lambda s: s.gallery("members").set_tags("b", ["consent:face"]),
    lambda s: s.gallery("members").erase_subject("a"),
    lambda s: s.gallery("members").enroll("c", ["c0"], vector("c0")[None]),
    lambda s: s.gallery("members").enroll("a", ["a2"], vector("a2")[None]),
]
STATES: list[State] = [
    {},
    {"a0": "a", "a1": "a"},
    {"a0": "a", "a1": "a", "b0": "b"},
    {"a0": "a", "a1": "a", "b0": "b"},
    {"b0": "b"},
    {"b0": "b", "c0": "c"},
    {"b0": "b", "c0": "c", "a2": "a"},
]


def served(store: MatchingStore) -> State:
    """What searches for each template's own vector return: template id -> subject, for matches."""
    gallery = store.gallery("members")
    outcome = gallery.search(np.stack([vector(t) for t in TEMPLATES]), top_k=1)
    return {
        result.candidates[0].template_id: result.candidates[0].subject_id
        for result in outcome.results
        if result.candidates and result.candidates[0].score > 0.99
    }


@dataclass(frozen=True)
class Written:
    directory: Path  # the pristine data dir, never opened again
    segment: str  # the gallery's log segment that the examples damage
    first_state: int  # the state index the segment's first record leads to (1: no snapshot before it)
    frame_ends: tuple[int, ...]  # byte offset after each record of the segment


@cache
def written(snapshot_after: int) -> Written:
    """A closed data dir holding the six changes, with a snapshot after the first `snapshot_after` (0: none)."""
    directory = Path(tempfile.mkdtemp(prefix=f"matching-fuzz-{snapshot_after}-"))
    store = open_store(directory)
    for index, change in enumerate(CHANGES):
        change(store)
        if index + 1 == snapshot_after:
            store.snapshot("members")
    assert served(store) == STATES[-1]
    store.close()
    segment = segment_name(snapshot_after + 1)
    scan = scan_frames((directory / "members" / segment).read_bytes())
    return Written(directory, segment, snapshot_after + 1, tuple(frame.end for frame in scan.frames))


@pytest.fixture(scope="module")
def damaged_copy() -> Iterator[Callable[[Written], Path]]:
    """Copies of written data dirs; each example makes its own, removed with the module."""
    made: list[Path] = []

    def copy(source: Written) -> Path:
        target = Path(tempfile.mkdtemp(prefix="matching-damaged-")) / "data"
        shutil.copytree(source.directory, target)
        made.append(target.parent)
        return target

    yield copy
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def reopened(data_dir: Path) -> State | StoreCorruptedError:
    """The state a reopened store serves, or the error that refused to open it."""
    try:
        store = open_store(data_dir)
    except StoreCorruptedError as error:
        return error
    try:
        return served(store)
    finally:
        store.close()


def flip(path: Path, flips: list[tuple[float, int]]) -> int:
    """Flips the given bits (position as a share of the file, bit); returns the first byte changed (-1: none)."""
    original = path.read_bytes()
    data = bytearray(original)
    for where, bit in flips:
        data[int(len(data) * where)] ^= 1 << bit
    path.write_bytes(bytes(data))
    changed = [index for index, (old, new) in enumerate(zip(original, data, strict=True)) if old != new]
    return changed[0] if changed else -1


flips_strategy = st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=3)


# ---------------------------------------------------------------- the log


@fuzz_settings(150)
@given(snapshot_after=st.sampled_from([0, 3]), cut=st.floats(0.0, 1.0))
def test_a_truncated_log_serves_exactly_the_records_before_the_cut(
    snapshot_after: int, cut: float, damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    source = written(snapshot_after)
    data_dir = damaged_copy(source)
    segment = data_dir / "members" / source.segment
    size = int(source.frame_ends[-1] * cut)
    segment.write_bytes(segment.read_bytes()[:size])
    whole_records = sum(1 for end in source.frame_ends if end <= size)
    with fuzz_cases.case(LOG_TARGET):
        assert reopened(data_dir) == STATES[source.first_state - 1 + whole_records]


def reopened_after_flips(
    snapshot_after: int, flips: list[tuple[float, int]], damaged_copy: Callable[[Written], Path]
) -> tuple[State | StoreCorruptedError, int, Written]:
    """Flips bits in the log of a copy and reopens it: (the outcome, the records before the damage, the source)."""
    source = written(snapshot_after)
    data_dir = damaged_copy(source)
    first_changed = flip(data_dir / "members" / source.segment, flips)
    records = len(source.frame_ends)
    intact = records if first_changed < 0 else sum(1 for end in source.frame_ends if end <= first_changed)
    return reopened(data_dir), intact, source


@fuzz_settings(150)
@given(snapshot_after=st.sampled_from([0, 3]), where=st.floats(0.0, 1.0, exclude_max=True), bit=st.integers(0, 7))
def test_one_flipped_bit_in_the_log_is_refused_or_loses_only_the_torn_last_record(
    snapshot_after: int, where: float, bit: int, damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    with fuzz_cases.case(LOG_TARGET):
        result, intact, source = reopened_after_flips(snapshot_after, [(where, bit)], damaged_copy)
        if isinstance(result, StoreCorruptedError):
            assert "members" in str(result)  # the message names the damaged gallery's file or record
        else:
            # Opened: only the last record may have been cut, as a torn append.
            assert (intact, result) == (
                len(source.frame_ends) - 1,
                STATES[source.first_state - 2 + len(source.frame_ends)],
            )


@fuzz_settings(150)
@given(snapshot_after=st.sampled_from([0, 3]), flips=flips_strategy)
def test_flipped_bits_in_the_log_are_refused_or_serve_exactly_what_came_before_the_damage(
    snapshot_after: int, flips: list[tuple[float, int]], damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    # With two damages (the length of a middle record, and a later record) the tail looks torn: the store opens
    # with the records before the first damage. What it serves is still exactly what was acknowledged then.
    with fuzz_cases.case(LOG_TARGET):
        result, intact, source = reopened_after_flips(snapshot_after, flips, damaged_copy)
        if isinstance(result, StoreCorruptedError):
            assert "members" in str(result)
        else:
            assert result == STATES[source.first_state - 1 + intact]


def test_a_length_running_past_the_end_with_records_after_it_is_refused(
    damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    # Regression: a bit flip that made a middle record's length run past the end of the file looked like a
    # torn append, so the log was cut there and every later record lost, the erase of "a" among them: "a"
    # was served again.
    source = written(0)
    data_dir = damaged_copy(source)
    segment = data_dir / "members" / source.segment
    data = bytearray(segment.read_bytes())
    data[source.frame_ends[1] + 2] ^= 0x40  # record 3's length, third byte: + 4 MiB
    segment.write_bytes(bytes(data))
    with fuzz_cases.case(LOG_TARGET):
        result = reopened(data_dir)
        assert isinstance(result, StoreCorruptedError)


# ---------------------------------------------------------------- the snapshot


@fuzz_settings(120)
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
@example(cut=0.0)
def test_a_truncated_snapshot_is_refused(
    cut: float, damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    data_dir = damaged_copy(written(3))
    snapshot = data_dir / "members" / SNAPSHOT_FILE
    data = snapshot.read_bytes()
    snapshot.write_bytes(data[: int(len(data) * cut)])
    with fuzz_cases.case(SNAPSHOT_TARGET):
        result = reopened(data_dir)
        assert isinstance(result, StoreCorruptedError)


@fuzz_settings(200)
@given(flips=flips_strategy)
def test_a_bit_flipped_snapshot_is_refused(
    flips: list[tuple[float, int]], damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    data_dir = damaged_copy(written(3))
    changed = flip(data_dir / "members" / SNAPSHOT_FILE, flips) >= 0
    with fuzz_cases.case(SNAPSHOT_TARGET):
        result = reopened(data_dir)
        assert isinstance(result, StoreCorruptedError) if changed else result == STATES[-1]


def test_a_snapshot_cut_at_a_record_boundary_is_refused(
    damaged_copy: Callable[[Written], Path], fuzz_cases: FuzzCases
) -> None:
    # A cut exactly after a whole record leaves no torn bytes: the missing end marker must still be seen.
    data_dir = damaged_copy(written(3))
    snapshot = data_dir / "members" / SNAPSHOT_FILE
    data = snapshot.read_bytes()
    ends = [frame.end for frame in scan_frames(data).frames]
    snapshot.write_bytes(data[: ends[-2]])
    # Regression: the last whole record, a template chunk, was decoded as the end marker's JSON and the
    # store failed to open with orjson's JSONDecodeError instead of saying the snapshot is incomplete.
    with fuzz_cases.case(SNAPSHOT_TARGET):
        result = reopened(data_dir)
        assert isinstance(result, StoreCorruptedError)
