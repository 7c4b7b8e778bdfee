"""What the gallery store answers: search outcomes, enroll outcomes and a gallery's stats.

A decision is a ``retailface.v1.Decision`` value; the native matcher reports the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from retailface.services.matching.calibration import OperatingPoint
from retailface.services.matching.params import IndexParams
from retailface.services.shared.model_identity import ModelIdentity


@dataclass(frozen=True)
class Candidate:
    subject_id: str
    template_id: str
    score: float


@dataclass(frozen=True)
class QueryOutcome:
    decision: int  # retailface.v1.Decision
    candidates: list[Candidate]
    plan: str
    calibration: OperatingPoint | None = None  # the calibrated operating point the decision was made at


@dataclass(frozen=True)
class SearchOutcome:
    threshold: float
    margin: float
    results: list[QueryOutcome]


@dataclass(frozen=True)
class EnrollOutcome:
    added: int
    subject_template_count: int
    sequence: int  # the change's place in the gallery's log


@dataclass(frozen=True)
class GalleryStats:
    name: str
    templates: int
    subjects: int
    threshold: float
    margin: float
    model: ModelIdentity
    memory_bytes: int
    memory_parts: dict[str, int]  # memory_bytes by part (vectors, codes, ids, graph, filters)
    index: IndexParams
    records_since_snapshot: int
    last_snapshot_at: str  # ISO 8601 UTC, empty before the first snapshot
    search_kernel: str  # "avx512" or "x86-64-v3": the native scan's code path on this CPU
    applied_sequence: int = 0  # the last change of the gallery's log this replica holds
