"""Everything the evaluation and the calibration are computed from, made once and cached.

`measure()` builds (or loads) the probe table, the folds and their galleries, the pooled single-frame
searches, the 5-frame sequences and their fused searches. The identification gates now in the tree
(`QualityGates()`) are applied where the service applies them: to the searches the calibrated decision
makes (`single_gated`) and to the frames a track fuses. The searches are cached next to the probes,
keyed by the probes' cache keys, the protocol, the gallery sizes, the synthetic seed and the fusion code.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retailface.devtools.accuracy import fusion_eval, gates, protocol
from retailface.devtools.accuracy.fusion_eval import Sequences
from retailface.devtools.accuracy.pipeline import FacePipeline
from retailface.devtools.accuracy.probes import ProbeTable, build, cache_dir
from retailface.devtools.accuracy.protocol import Fold, FoldGallery, Searches
from retailface.services.detection.quality import QualityGates
from retailface.services.gateway import fusion
from retailface.services.shared.model_identity import ModelIdentity

VERSION = 1


@dataclass
class Measurements:
    table: ProbeTable
    probe_keys: list[str]
    folds: list[Fold]
    galleries: list[FoldGallery]
    single: Searches  # every search, as the embedder and detector allow (no gates)
    single_gated: Searches  # the same, searched only where the face passes the identification gates
    sequences: Sequences
    fused: Searches  # fused from the frames passing the identification gates
    identification_gates: QualityGates
    passes_gates: np.ndarray  # per probe-table row: a face passing identification_gates
    digest: str  # over everything the searches depend on
    pipeline: FacePipeline
    seconds: float

    @property
    def embedder(self) -> ModelIdentity:
        return self.pipeline.embedder_model


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(threads: int = 1, root: Path | None = None) -> Measurements:
    started = time.monotonic()
    root = root or cache_dir()
    pipeline = FacePipeline(threads)
    table, keys = build(root=root, pipeline=pipeline)
    _log(f"probes: {len(table)} rows, {int(table.found.sum())} with a face ({time.monotonic() - started:.0f} s)")
    identification_gates = QualityGates()
    passing = gates.passes(table, identification_gates)
    folds = protocol.make_folds(table)
    galleries = [protocol.fold_gallery(table, fold) for fold in folds]
    sequences = fusion_eval.build_sequences(table, folds)
    parts = {
        "measure": VERSION,
        "protocol": protocol.VERSION,
        "sizes": protocol.SIZES,
        "seed": protocol.SYNTHETIC_SEED,
        "probes": keys,
        "fusion": hashlib.sha256(Path(fusion.__file__).read_bytes()).hexdigest(),
        "sequences": hashlib.sha256(sequences.rows.tobytes() + sequences.fold.tobytes()).hexdigest(),
        "gates": repr(identification_gates),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    folder = root / "searches"
    single_path, fused_path = folder / f"single-{digest[:20]}.npz", folder / f"fused-{digest[:20]}.npz"
    if single_path.is_file() and fused_path.is_file():
        single, fused = Searches.load(str(single_path)), Searches.load(str(fused_path))
    else:
        t0 = time.monotonic()
        single = protocol.single_frame_searches(table, galleries)
        _log(f"searches: {len(single)} single-frame searches, {time.monotonic() - t0:.0f} s")
        fused_probes = fusion_eval.fuse_sequences(table, sequences, passing)
        fused = fusion_eval.fused_searches(sequences, fused_probes, galleries, protocol.SIZES)
        _log(f"searches: {len(fused)} fused searches, {time.monotonic() - t0:.0f} s")
        folder.mkdir(parents=True, exist_ok=True)
        single.save(str(single_path))
        fused.save(str(fused_path))
    return Measurements(
        table=table,
        probe_keys=keys,
        folds=folds,
        galleries=galleries,
        single=single,
        single_gated=single.gated(passing[single.probe]),
        sequences=sequences,
        fused=fused,
        identification_gates=identification_gates,
        passes_gates=passing,
        digest=digest,
        pipeline=pipeline,
        seconds=time.monotonic() - started,
    )
