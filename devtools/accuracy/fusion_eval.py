"""Multi-frame fusion measured on sequences of 5 frames built from the labelled photos.

A sequence imitates one track of the gateway: 5 frames of one person seen the same way. The fused
probe is made with the gateway's own functions (`retailface.services.gateway.fusion`: `frame_weight`,
`fuse`, `fused_inter_eye_px`) from the frames in which a face was found that pass the identification
gates, and searched like a single frame against the same fold galleries.

Two kinds of sequence, and how honest each is:

- ``photos``: 5 different photos of one ORL person (mated when enrolled, non-mated otherwise), all
  degraded by the same variant (``native``, or ``camera<d>-s0``: shrunk to d px with walking blur,
  noise and JPEG). Different photos differ in pose, expression and lighting more than the frames of
  one real track, so their errors are less correlated than a track's: the fusion gain they show is an
  upper bound.
- ``variants``: 5 differently degraded variants of one photo (radar, biden, and obama's two mated
  photos, who have too few photos): for ``camera<d>``, ``eye<d>``, ``walk<d>`` and ``camera<d>`` with
  3 seeds; for ``native``, the photo with 4 native-size degradations. Same pose and expression in
  every frame, only blur and noise differ: their errors are more correlated than a track's, so the
  gain they show is a lower bound. Most non-mated sequences are of this kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retailface.devtools import degrade
from retailface.devtools.accuracy import variants
from retailface.devtools.accuracy.probes import ProbeTable
from retailface.devtools.accuracy.protocol import Fold, FoldGallery, Searches, search
from retailface.services.gateway.fusion import DEFAULT_FUSED_FRAMES, frame_weight, fuse, fused_inter_eye_px

LENGTH = DEFAULT_FUSED_FRAMES
PHOTO_FAMILIES: dict[str, str] = {
    variants.NATIVE: variants.NATIVE,
    **{f"camera{d}": f"camera{d}-s0" for d in degrade.EYE_DISTANCES_PX},
}
VARIANT_FAMILIES: dict[str, tuple[str, ...]] = {
    variants.NATIVE: (variants.NATIVE, "motion-3px", "defocus-r1", "jpeg-q30", "under-2ev"),
    **{
        f"camera{d}": (f"eye{d}", f"walk{d}", f"camera{d}-s0", f"camera{d}-s1", f"camera{d}-s2")
        for d in degrade.EYE_DISTANCES_PX
    },
}


@dataclass
class Sequences:
    fold: np.ndarray  # (Q,)
    mated: np.ndarray  # (Q,) bool
    identity: np.ndarray  # (Q,) str
    family: np.ndarray  # (Q,) str: "native" or "camera<d>"
    kind: np.ndarray  # (Q,) str: "photos" or "variants"
    rows: np.ndarray  # (Q, length) probe-table rows of the frames

    def __len__(self) -> int:
        return int(self.fold.shape[0])


def windows(photos: Sequence[int], length: int = LENGTH) -> list[tuple[int, ...]]:
    """Cyclic windows of `length` consecutive photos: one per starting photo (one in all when there are
    exactly `length`; none when fewer)."""
    if len(photos) < length:
        return []
    starts = range(len(photos)) if len(photos) > length else range(1)
    return [tuple(photos[(start + j) % len(photos)] for j in range(length)) for start in starts]


def build_sequences(table: ProbeTable, folds: Sequence[Fold], length: int = LENGTH) -> Sequences:
    """Every fold's mated and non-mated sequences; a sequence is made only where all its variants exist."""
    lookup = {
        (identity, photo, variant): row
        for row, (identity, photo, variant) in enumerate(
            zip(table.identity.tolist(), table.photo.tolist(), table.variant.tolist(), strict=True)
        )
    }
    photos_of: dict[str, list[int]] = {}
    for identity, photo in sorted(set(zip(table.identity.tolist(), table.photo.tolist(), strict=True))):
        photos_of.setdefault(identity, []).append(photo)
    found: list[tuple[int, bool, str, str, str, list[int]]] = []

    def add(fold: int, mated: bool, identity: str, photos: list[int]) -> None:
        if len(photos) >= length:
            for family, variant in PHOTO_FAMILIES.items():
                for window in windows(photos, length):
                    rows = [lookup.get((identity, photo, variant), -1) for photo in window]
                    if min(rows) >= 0:
                        found.append((fold, mated, identity, family, "photos", rows))
            return
        for photo in photos:
            for family, names in VARIANT_FAMILIES.items():
                rows = [lookup.get((identity, photo, name), -1) for name in names[:length]]
                if len(rows) == length and min(rows) >= 0:
                    found.append((fold, mated, identity, family, "variants", rows))

    for fold in folds:
        for identity, row in fold.enrolled.items():
            add(fold.index, True, identity, [p for p in photos_of[identity] if p != table.photo[row]])
        for identity in sorted(set(table.identity[fold.nonmated_rows].tolist())):
            add(fold.index, False, identity, photos_of[identity])
    if not found:
        return Sequences(
            np.zeros(0, int),
            np.zeros(0, bool),
            np.zeros(0, str),
            np.zeros(0, str),
            np.zeros(0, str),
            np.zeros((0, length), int),
        )
    return Sequences(
        fold=np.array([s[0] for s in found], dtype=np.int64),
        mated=np.array([s[1] for s in found], dtype=bool),
        identity=np.array([s[2] for s in found]),
        family=np.array([s[3] for s in found]),
        kind=np.array([s[4] for s in found]),
        rows=np.array([s[5] for s in found], dtype=np.int64),
    )


@dataclass(frozen=True)
class FusedProbes:
    embedding: np.ndarray  # (Q, dim) float32; zeros where no frame had a face
    found: np.ndarray  # (Q,) bool
    frames: np.ndarray  # (Q,) frames with a face, fused
    inter_eye_px: np.ndarray  # (Q,) fused_inter_eye_px of those frames (NaN without any)


def fuse_rows(
    table: ProbeTable, rows: Sequence[int], usable_rows: np.ndarray | None = None
) -> tuple[np.ndarray | None, int, float]:
    """The gateway's fused probe of these probe-table rows' faces: (embedding, frames used, inter-eye px).

    Only frames with a face (and, when `usable_rows` is given, where it is True: the gateway fuses the
    frames that pass the identification gates) are fused."""
    allowed = table.found if usable_rows is None else table.found & usable_rows
    usable = [r for r in rows if allowed[r]]
    if not usable:
        return None, 0, float("nan")
    eyes = [float(table.inter_eye_px[r]) for r in usable]
    weights = [frame_weight(eye, float(table.score[r])) for eye, r in zip(eyes, usable, strict=True)]
    fused = fuse([table.embedding[r] for r in usable], weights)
    return fused, len(usable), fused_inter_eye_px(eyes, weights)


def fuse_sequences(table: ProbeTable, sequences: Sequences, usable_rows: np.ndarray | None = None) -> FusedProbes:
    count, dim = len(sequences), table.embedding.shape[1]
    embedding = np.zeros((count, dim), dtype=np.float32)
    found = np.zeros(count, dtype=bool)
    frames = np.zeros(count, dtype=np.int64)
    eyes = np.full(count, np.nan)
    for q in range(count):
        fused, used, eye = fuse_rows(table, sequences.rows[q].tolist(), usable_rows)
        if fused is not None:
            embedding[q], found[q], frames[q], eyes[q] = fused, True, used, eye
    return FusedProbes(embedding, found, frames, eyes)


def fused_searches(
    sequences: Sequences, fused: FusedProbes, galleries: Sequence[FoldGallery], sizes: Sequence[int]
) -> Searches:
    """The fused probes searched against their fold's galleries (`Searches.probe` indexes the sequences)."""
    parts = []
    for gallery in galleries:
        q = np.flatnonzero(sequences.fold == gallery.fold.index)
        parts.append(
            search(
                gallery,
                sizes,
                fused.embedding[q],
                sequences.identity[q],
                fused.found[q],
                sequences.mated[q],
                q,
                fused.inter_eye_px[q],
                fused.frames[q],
            )
        )
    return Searches.concat(parts)


def frames_of(sequences: Sequences, single: Searches, table_size: int) -> np.ndarray:
    """Mask over `single` of the single-frame searches that are frames of the sequences (same fold)."""
    wanted = np.unique(sequences.fold[:, None] * table_size + sequences.rows)
    return np.isin(single.fold * table_size + single.probe, wanted)
