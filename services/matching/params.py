"""The policies a gallery runs under: its decision thresholds, its index, its durability, the search limits.

The index defaults are the native matcher's own (``retailface._matcher.DEFAULT_PARAMS``, from
native/include/retailface/gallery_types.hpp): they are defined once, in C++.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from retailface import _matcher
from retailface.services.matching.errors import InvalidRequestError

NATIVE_DEFAULTS: dict[str, Any] = dict(_matcher.DEFAULT_PARAMS)

DEFAULT_TOP_K = 5  # candidates per query when a search does not say
MAX_TOP_K = 100
DEFAULT_NORM_TOLERANCE = 1e-3  # how far from 1 the L2 norm of a vector may be
GALLERY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class IndexParams:
    m: int = NATIVE_DEFAULTS["M"]
    ef_construction: int = NATIVE_DEFAULTS["ef_construction"]
    ef_search: int = NATIVE_DEFAULTS["ef_search"]
    threads: int = NATIVE_DEFAULTS["threads"]
    initial_capacity: int = NATIVE_DEFAULTS["capacity"]
    # Keep an HNSW graph: no plan the service takes walks it, and without it a load copies bytes, no graph inserts.
    hnsw_graph: bool = NATIVE_DEFAULTS["hnsw_graph"]


@dataclass(frozen=True)
class GalleryPolicy:
    name: str
    threshold: float
    margin: float

    def __post_init__(self) -> None:
        if not GALLERY_NAME.match(self.name):
            raise ValueError(f"gallery name {self.name!r} must match {GALLERY_NAME.pattern}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"gallery {self.name}: threshold {self.threshold} must be in (0, 1]")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"gallery {self.name}: margin {self.margin} must be in [0, 1)")


@dataclass(frozen=True)
class DurabilityPolicy:
    snapshot_every_records: int = 10_000  # a snapshot bounds the replay time after a restart
    erase_purge_seconds: float = 60.0  # erased templates leave the log (by a snapshot) within this delay
    snapshot_on_close: bool = True


@dataclass(frozen=True)
class ReplicationPolicy:
    """How a replica follows the others' changes (PostgreSQL journal only)."""

    poll_seconds: float = 1.0  # polling fallback when no notification arrives
    min_sequence_wait_seconds: float = 0.2  # a search needing a newer change waits this long, then UNAVAILABLE


def check_search_options(top_k: int, threshold: float, margin: float) -> None:
    """Raises when a search asks for what no gallery gives; a threshold or margin of 0 keeps the gallery's."""
    if top_k > MAX_TOP_K:
        raise InvalidRequestError(f"top_k {top_k} is above the limit {MAX_TOP_K}")
    if top_k < 1:
        raise InvalidRequestError(f"top_k {top_k} must be at least 1")
    if not 0.0 <= threshold <= 1.0 or not 0.0 <= margin < 1.0:
        raise InvalidRequestError(
            f"threshold {threshold} must be in [0, 1] and margin {margin} in [0, 1) (0 keeps the gallery's)"
        )
