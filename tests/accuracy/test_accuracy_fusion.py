"""Fused sequences: which frames make them, and that they are fused exactly as the gateway fuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from retailface.devtools.accuracy import fusion_eval, protocol
from retailface.devtools.accuracy.probes import ProbeTable
from retailface.services.gateway import fusion


def test_windows_are_cyclic_and_need_enough_photos() -> None:
    assert fusion_eval.windows([1, 2, 3, 4]) == []
    assert fusion_eval.windows([1, 2, 3, 4, 5]) == [(1, 2, 3, 4, 5)]
    got = fusion_eval.windows(list(range(7)), 5)
    assert len(got) == 7 and got[0] == (0, 1, 2, 3, 4) and got[6] == (6, 0, 1, 2, 3)
    assert all(len(set(w)) == 5 for w in got)


def sequence_table(table_of: Callable[..., ProbeTable], row: Any) -> ProbeTable:
    rng = np.random.default_rng(4)
    rows = []
    for person in ("p1", "p2"):  # 7 photos: photo sequences
        for photo in range(7):
            rows.append(row(person, photo, "native", rng.standard_normal(8)))
            rows.append(row(person, photo, "camera18-s0", rng.standard_normal(8), inter_eye_px=18.0))
    for variant in ("eye18", "walk18", "camera18-s0", "camera18-s1", "camera18-s2"):  # a portrait: variant sequences
        rows.append(row("r1", 0, variant, rng.standard_normal(8), inter_eye_px=18.0))
    rows.append(row("r1", 0, "native", rng.standard_normal(8), inter_eye_px=80.0))
    rows.append(row("r2", 0, "native", rng.standard_normal(8), inter_eye_px=80.0))
    return table_of(rows, 8)


def test_sequences_of_photos_and_of_variants(table_of: Callable[..., ProbeTable], row: Any) -> None:
    table = sequence_table(table_of, row)
    folds = protocol.make_folds(table, folds=2)
    sequences = fusion_eval.build_sequences(table, folds)
    for fold in folds:
        mine = sequences.fold == fold.index
        (enrolled,) = fold.enrolled
        mated = mine & sequences.mated
        # 6 other photos -> 6 windows, for each of the two photo families that exist (native, camera18)
        assert mated.sum() == 12 and set(sequences.identity[mated].tolist()) == {enrolled}
        enrolled_photo = table.photo[fold.enrolled[enrolled]]
        assert (table.photo[sequences.rows[mated]] != enrolled_photo).all()
        nonmated = mine & ~sequences.mated
        assert not set(sequences.identity[nonmated].tolist()) & set(fold.enrolled)
        for q in np.flatnonzero(mine):
            frames = sequences.rows[q]
            assert (table.identity[frames] == sequences.identity[q]).all()
            if sequences.kind[q] == "photos":
                assert len(set(table.photo[frames].tolist())) == 5 and len(set(table.variant[frames].tolist())) == 1
            else:
                assert len(set(table.photo[frames].tolist())) == 1 and len(set(table.variant[frames].tolist())) == 5
    variant_seqs = sequences.kind == "variants"
    assert set(sequences.identity[variant_seqs].tolist()) == {"r1"}  # r2 has no five variants
    assert set(sequences.family[variant_seqs].tolist()) == {"camera18"}


def test_fused_probes_are_the_gateways_fusion(table_of: Callable[..., ProbeTable], row: Any) -> None:
    rng = np.random.default_rng(8)
    rows = [
        row("a", i, "native", rng.standard_normal(8), inter_eye_px=10.0 + 5 * i, score=0.7 + 0.05 * i) for i in range(4)
    ]
    rows.append(row("a", 4, "native", None))
    table = table_of(rows, 8)
    fused, frames, eye = fusion_eval.fuse_rows(table, [0, 1, 2, 3, 4])
    weights = [fusion.frame_weight(10.0 + 5 * i, 0.7 + 0.05 * i) for i in range(4)]
    expected = fusion.fuse([table.embedding[i] for i in range(4)], weights)
    assert fused is not None and np.array_equal(fused, expected)
    assert frames == 4  # the frame without a face is left out
    assert eye == fusion.fused_inter_eye_px([10.0, 15.0, 20.0, 25.0], weights)
    nothing, none, no_eye = fusion_eval.fuse_rows(table, [4])
    assert nothing is None and none == 0 and np.isnan(no_eye)


def test_fused_searches_and_their_single_frames(table_of: Callable[..., ProbeTable], row: Any) -> None:
    table = sequence_table(table_of, row)
    folds = protocol.make_folds(table, folds=2)
    galleries = [protocol.fold_gallery(table, fold, (10, 30)) for fold in folds]
    sequences = fusion_eval.build_sequences(table, folds)
    fused = fusion_eval.fused_searches(sequences, fusion_eval.fuse_sequences(table, sequences), galleries, (10, 30))
    assert len(fused) == len(sequences)
    assert np.array_equal(fused.mated, sequences.mated[fused.probe])
    assert (fused.frames == 5).all()
    single = protocol.single_frame_searches(table, galleries, (10, 30))
    frames = fusion_eval.frames_of(sequences, single, len(table))
    used = {(int(f), int(r)) for f, rows in zip(sequences.fold, sequences.rows, strict=True) for r in rows}
    assert {(int(f), int(p)) for f, p in zip(single.fold[frames], single.probe[frames], strict=True)} == used
