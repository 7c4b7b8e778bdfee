"""The open-set 1:N protocol of NIST FRVT on the probe table: folds, galleries, mated and non-mated searches.

Identities with several photos (ORL's 40 people, obama) can be enrolled; identities with one photo
(radar's 609 portraits, biden) can only be distractors or strangers. Both kinds are split in halves
(alternately, in sorted order), and in fold f:

- the gallery holds one template per enrollable identity of half f, made from its first photo (in
  file order) at native resolution that has a face passing the current gates, plus the native
  template of every one-photo identity of half f (real distractors), then synthetic templates up to
  N (`distractors.GaussianDistractors`, fitted on that fold's real templates);
- mated searches: every other photo of an enrolled identity, with all its degraded variants (never
  a variant of the enrolled photo itself);
- non-mated searches: every photo and variant of every identity of the other half, of both kinds.

With two folds the halves swap, so each identity is enrolled (or a distractor) once and a stranger
once; the folds' searches are pooled. The galleries of each fold are nested: 1k inside 10k inside 100k.

A probe in which no face was found is still a search: a mated one misses at every threshold (FRVT
counts failures to make a template as misses); a non-mated one cannot name anyone, and is left out
of the FPIR denominators (`Searches.found`), the conservative choice for FPIR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from retailface.devtools.accuracy import variants
from retailface.devtools.accuracy.distractors import GaussianDistractors
from retailface.devtools.accuracy.probes import ProbeTable
from retailface.devtools.accuracy.search import nested_search

VERSION = 1  # part of the search cache key
SIZES = (1_000, 10_000, 100_000)
FOLDS = 2
SYNTHETIC_SEED = 14


@dataclass(frozen=True)
class Fold:
    index: int
    enrolled: dict[str, int]  # identity -> table row of its gallery template
    distractors: tuple[int, ...]  # table rows of real distractor templates
    mated_rows: np.ndarray  # table rows searched as mated
    nonmated_rows: np.ndarray  # table rows searched as non-mated

    @property
    def gallery_rows(self) -> np.ndarray:
        return np.array([*self.enrolled.values(), *self.distractors], dtype=np.int64)


def halves(identities: Sequence[str], folds: int) -> list[list[str]]:
    ordered = sorted(set(identities))
    return [ordered[k::folds] for k in range(folds)]


def enrollment_row(table: ProbeTable, identity: str) -> int | None:
    """The identity's first native photo with a face passing the gates (else with a face at all)."""
    rows = table.rows(identity=identity, variant=variants.NATIVE)
    rows = rows[np.argsort(table.photo[rows], kind="stable")]
    for candidates in (rows[table.passes_gates[rows]], rows[table.found[rows]]):
        if candidates.size:
            return int(candidates[0])
    return None


def make_folds(table: ProbeTable, folds: int = FOLDS) -> list[Fold]:
    photos_per_identity: dict[str, set[int]] = {}
    for identity, photo in zip(table.identity.tolist(), table.photo.tolist(), strict=True):
        photos_per_identity.setdefault(identity, set()).add(photo)
    multi = halves([i for i, p in photos_per_identity.items() if len(p) > 1], folds)
    single = halves([i for i, p in photos_per_identity.items() if len(p) == 1], folds)
    result: list[Fold] = []
    for f in range(folds):
        enrolled: dict[str, int] = {}
        for identity in multi[f]:
            row = enrollment_row(table, identity)
            if row is not None:
                enrolled[identity] = row
        distractors = tuple(int(row) for identity in single[f] if (row := enrollment_row(table, identity)) is not None)
        strangers = {i for k in range(folds) if k != f for i in (*multi[k], *single[k])}
        is_enrolled = np.isin(table.identity, list(enrolled))
        enrolled_photo = np.full(len(table), -1)
        for identity, row in enrolled.items():
            enrolled_photo[table.identity == identity] = table.photo[row]
        mated = np.flatnonzero(is_enrolled & (table.photo != enrolled_photo))
        nonmated = np.flatnonzero(np.isin(table.identity, list(strangers)))
        result.append(Fold(f, enrolled, distractors, mated, nonmated))
    return result


@dataclass(frozen=True)
class FoldGallery:
    fold: Fold
    real: np.ndarray  # (R, dim) the real templates
    labels: np.ndarray  # (R,) their identities
    synthetic: np.ndarray  # (max(SIZES) - R, dim)
    generator: GaussianDistractors


def fold_gallery(
    table: ProbeTable, fold: Fold, sizes: Sequence[int] = SIZES, seed: int = SYNTHETIC_SEED
) -> FoldGallery:
    rows = fold.gallery_rows
    real = table.embedding[rows]
    generator = GaussianDistractors.fit(real)
    rng = np.random.default_rng([seed, fold.index])
    synthetic = generator.sample(max(sizes) - rows.size, rng)
    return FoldGallery(fold, real, table.identity[rows], synthetic, generator)


@dataclass
class Searches:
    """Pooled searches; per-size arrays have the gallery sizes on their first axis."""

    sizes: np.ndarray  # (S,)
    probe: np.ndarray  # (P,) the probe's index (a probe-table row, or a sequence's index)
    fold: np.ndarray  # (P,)
    mated: np.ndarray  # (P,) bool
    found: np.ndarray  # (P,) bool: a face, hence a template, was made
    inter_eye_px: np.ndarray  # (P,) the probe's measured quality (NaN without a face)
    frames: np.ndarray  # (P,) frames fused into the probe (1: single frame)
    mate: np.ndarray  # (P,) mate score; -inf for non-mated probes and probes without a face
    rank: np.ndarray  # (S, P) the mate's rank (0 for non-mated probes)
    top1: np.ndarray  # (S, P) best non-mate score (-inf without a face)
    top2: np.ndarray  # (S, P) second-best non-mate score

    def __len__(self) -> int:
        return int(self.probe.shape[0])

    def take(self, mask: np.ndarray) -> Searches:
        keep = np.asarray(mask)
        values = {}
        for f in fields(self):
            array = getattr(self, f.name)
            values[f.name] = array if f.name == "sizes" else (array[:, keep] if array.ndim == 2 else array[keep])
        return Searches(**values)

    def gated(self, searched: np.ndarray) -> Searches:
        """The same searches when only those where `searched` is True are made (the others as without a face)."""
        keep = np.asarray(searched, dtype=bool) & self.found
        dropped = self.found & ~keep
        rank = self.rank.copy()
        rank[:, dropped & self.mated] = self.sizes[:, None] + 1
        top1, top2 = self.top1.copy(), self.top2.copy()
        top1[:, dropped], top2[:, dropped] = -np.inf, -np.inf
        mate = np.where(dropped, -np.inf, self.mate).astype(self.mate.dtype)
        return Searches(
            self.sizes, self.probe, self.fold, self.mated, keep, self.inter_eye_px, self.frames, mate, rank, top1, top2
        )

    def level(self, gallery_size: int) -> int:
        matches = np.flatnonzero(self.sizes == gallery_size)
        if not matches.size:
            raise KeyError(f"no searches against a gallery of {gallery_size}; sizes: {self.sizes.tolist()}")
        return int(matches[0])

    @staticmethod
    def concat(parts: Sequence[Searches]) -> Searches:
        values = {}
        for f in fields(Searches):
            arrays = [getattr(p, f.name) for p in parts]
            values[f.name] = arrays[0] if f.name == "sizes" else np.concatenate(arrays, axis=arrays[0].ndim - 1)
        return Searches(**values)

    def save(self, path: str) -> None:
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @staticmethod
    def load(path: str) -> Searches:
        with np.load(path, allow_pickle=False) as data:
            return Searches(**{f.name: data[f.name] for f in fields(Searches)})


def search(
    gallery: FoldGallery,
    sizes: Sequence[int],
    embeddings: np.ndarray,
    labels: np.ndarray,
    found: np.ndarray,
    mated: np.ndarray,
    probe: np.ndarray,
    inter_eye_px: np.ndarray,
    frames: np.ndarray,
) -> Searches:
    """Searches of one fold's probes (mated must say whether each probe's identity is enrolled)."""
    count = labels.shape[0]
    levels = len(sizes)
    mate = np.full(count, -np.inf, dtype=np.float32)
    rank = np.zeros((levels, count), dtype=np.int64)
    rank[:, mated] = np.asarray(sizes)[:, None] + 1  # a mated probe without a face: missed at every rank
    top1 = np.full((levels, count), -np.inf, dtype=np.float32)
    top2 = np.full((levels, count), -np.inf, dtype=np.float32)
    rows = np.flatnonzero(found)
    if rows.size:
        result = nested_search(gallery.real, gallery.labels, gallery.synthetic, sizes, embeddings[rows], labels[rows])
        if not np.array_equal(result.mated, mated[rows]):
            raise AssertionError("a probe's mated status disagrees with the gallery's identities")
        mate[rows] = result.mate
        rank[:, rows] = result.rank
        top1[:, rows] = result.top1
        top2[:, rows] = result.top2
    return Searches(
        sizes=np.asarray(sizes, dtype=np.int64),
        probe=np.asarray(probe, dtype=np.int64),
        fold=np.full(count, gallery.fold.index, dtype=np.int64),
        mated=np.asarray(mated, dtype=bool),
        found=np.asarray(found, dtype=bool),
        inter_eye_px=np.asarray(inter_eye_px, dtype=np.float64),
        frames=np.asarray(frames, dtype=np.int64),
        mate=mate,
        rank=rank,
        top1=top1,
        top2=top2,
    )


def single_frame_searches(
    table: ProbeTable, galleries: Sequence[FoldGallery], sizes: Sequence[int] = SIZES
) -> Searches:
    """Every fold's mated and non-mated single-frame searches, pooled."""
    parts = []
    for gallery in galleries:
        fold = gallery.fold
        rows = np.concatenate([fold.mated_rows, fold.nonmated_rows])
        mated = np.concatenate([np.ones(fold.mated_rows.size, bool), np.zeros(fold.nonmated_rows.size, bool)])
        parts.append(
            search(
                gallery,
                sizes,
                table.embedding[rows],
                table.identity[rows],
                table.found[rows],
                mated,
                rows,
                table.inter_eye_px[rows],
                np.ones(rows.size, dtype=np.int64),
            )
        )
    return Searches.concat(parts)
