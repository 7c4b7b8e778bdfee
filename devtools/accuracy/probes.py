"""Every dataset photo and each of its degraded variants through the services' path, cached on disk.

    table = build()            # python -m retailface.devtools.accuracy.probes prints a summary

A `ProbeTable` holds one row per (photo, variant): the labels (dataset, identity, photo, variant), the
measured quality of the largest face found (inter-eye distance, sharpness, brightness, yaw, pitch,
detection score), the gates it fails with the detection service's current defaults (bits of
`QualityGate`), and its embedding; a row without a face has ``found`` False, NaN measures and a zero
embedding. Variants that would enlarge the face are not made (no row).

Cache: one ``.npz`` per (dataset, variant) under ``~/.cache/retailface/accuracy/probes`` (or
``$RETAILFACE_ACCURACY_CACHE``), named by a key over the dataset's digest, both models' SHA-256, the
detection settings and gates, the services' detection/embedding sources, the variant and its seed.
Anything that changes a probe changes its key; re-running the evaluation or the calibration reuses them.
Embeddings are also kept by the SHA-1 of their aligned chip (``embeddings/<embedder sha256>/``), so a
change in detection code that leaves a chip's pixels alone re-runs detection but not the embedder.

ORL photos are tight 92x112 crops: YuNet needs background around a face, so they get a 40 px border
(edge pixels replicated) before anything else; every other set is used as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from retailface.devtools import datasets
from retailface.devtools.accuracy import variants
from retailface.devtools.accuracy.pipeline import FacePipeline, FaceRecord
from retailface.services.shared.model_files import DEFAULT_CACHE

VERSION = 2  # bump when the layout of a cached table changes
DATASETS = ("orl", "radar", "face-recognition-examples")
CAMERA_SEEDS = {"orl": 1, "radar": 3, "face-recognition-examples": 3}
BORDER_PX = {"orl": 40}
CHUNK = 64  # photos rendered and run at a time


def cache_dir() -> Path:
    return Path(os.environ.get("RETAILFACE_ACCURACY_CACHE", DEFAULT_CACHE / "accuracy")).expanduser()


@dataclass
class ProbeTable:
    """Columnar probe records (every field has one entry per row)."""

    dataset: np.ndarray  # str
    identity: np.ndarray  # str, unique across datasets
    image: np.ndarray  # str, the file under the dataset's folder
    photo: np.ndarray  # int, the photo's position among its identity's photos (natural file order)
    variant: np.ndarray  # str, variants.Variant.name
    family: np.ndarray  # str, variants.Variant.family
    eye_target: np.ndarray  # float, the variant's inter-eye distance (NaN: the photo's own)
    native_eye_px: np.ndarray  # float, the face's inter-eye distance in the photo itself
    n_faces: np.ndarray  # int
    box: np.ndarray  # (n, 4)
    landmarks: np.ndarray  # (n, 5, 2)
    score: np.ndarray
    inter_eye_px: np.ndarray
    sharpness: np.ndarray
    brightness: np.ndarray
    yaw_deg: np.ndarray
    pitch_deg: np.ndarray
    outside: np.ndarray  # how far the face leaves the frame (the TRUNCATED gate's measure)
    failed_gates: np.ndarray  # int, bits (1 << QualityGate), with the detection defaults when it was made
    found: np.ndarray  # bool
    embedding: np.ndarray  # (n, dim) float32

    def __len__(self) -> int:
        return int(self.identity.shape[0])

    @property
    def passes_gates(self) -> np.ndarray:
        return self.found & (self.failed_gates == 0)

    def take(self, rows: np.ndarray | Sequence[int]) -> ProbeTable:
        index = np.asarray(rows)
        return ProbeTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(tables: Sequence[ProbeTable]) -> ProbeTable:
        if not tables:
            raise ValueError("nothing to concatenate")
        return ProbeTable(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(ProbeTable)})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez_compressed(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> ProbeTable:
        with np.load(path, allow_pickle=False) as data:
            return ProbeTable(**{f.name: data[f.name] for f in fields(ProbeTable)})

    def rows(self, **where: str) -> np.ndarray:
        """Row indices whose string columns equal the given values, e.g. rows(variant="native")."""
        mask = np.ones(len(self), dtype=bool)
        for column, value in where.items():
            mask &= getattr(self, column) == value
        return np.flatnonzero(mask)


def from_records(
    labels: Sequence[tuple[str, str, str, int]],
    variant: variants.Variant,
    native_eye_px: Sequence[float],
    records: Sequence[FaceRecord],
    dim: int,
) -> ProbeTable:
    """A table of one variant's rows; labels are (dataset, identity, image, photo)."""
    n = len(records)
    embedding = np.zeros((n, dim), dtype=np.float32)
    for row, record in enumerate(records):
        if record.embedding is not None:
            embedding[row] = record.embedding
    return ProbeTable(
        dataset=np.array([label[0] for label in labels], dtype=str).reshape(n),
        identity=np.array([label[1] for label in labels], dtype=str).reshape(n),
        image=np.array([label[2] for label in labels], dtype=str).reshape(n),
        photo=np.array([label[3] for label in labels], dtype=np.int64).reshape(n),
        variant=np.full(n, variant.name),
        family=np.full(n, variant.family),
        eye_target=np.full(n, np.nan if variant.eye_px is None else variant.eye_px),
        native_eye_px=np.asarray(native_eye_px, dtype=np.float64).reshape(n),
        n_faces=np.array([r.n_faces for r in records], dtype=np.int64).reshape(n),
        box=np.array([r.box for r in records], dtype=np.float64).reshape(n, 4),
        landmarks=np.array([r.landmarks for r in records], dtype=np.float64).reshape(n, 5, 2),
        score=np.array([r.score for r in records], dtype=np.float64).reshape(n),
        inter_eye_px=np.array([r.inter_eye_px for r in records], dtype=np.float64).reshape(n),
        sharpness=np.array([r.sharpness for r in records], dtype=np.float64).reshape(n),
        brightness=np.array([r.brightness for r in records], dtype=np.float64).reshape(n),
        yaw_deg=np.array([r.yaw_deg for r in records], dtype=np.float64).reshape(n),
        pitch_deg=np.array([r.pitch_deg for r in records], dtype=np.float64).reshape(n),
        outside=np.array([r.outside for r in records], dtype=np.float64).reshape(n),
        failed_gates=np.array([r.failed_gates for r in records], dtype=np.int64).reshape(n),
        found=np.array([r.found for r in records], dtype=bool).reshape(n),
        embedding=embedding,
    )


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key that orders "2" before "10" and "obama" before "obama2"."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part]


def source_image(dataset: str, item: datasets.LabelledImage) -> np.ndarray:
    """The photo as the harness uses it (ORL's tight crops get a border, see the module docstring)."""
    image = item.bgr()
    border = BORDER_PX.get(dataset, 0)
    if border:
        image = cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_REPLICATE)
    return image


@dataclass(frozen=True)
class Photo:
    dataset: str
    identity: str
    image: str
    photo: int
    item: datasets.LabelledImage

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.image}"

    def label(self) -> tuple[str, str, str, int]:
        return (self.dataset, self.identity, self.image, self.photo)


def photos_of(name: str) -> list[Photo]:
    """A dataset's photos with their position among the identity's photos (natural file-name order)."""
    items = datasets.load(name)
    root = datasets.datasets_dir() / name
    grouped: dict[str, list[tuple[str, datasets.LabelledImage]]] = {}
    for item in items:
        grouped.setdefault(item.identity, []).append((item.path.relative_to(root).as_posix(), item))
    found: list[Photo] = []
    for identity in sorted(grouped):
        ordered = sorted(grouped[identity], key=lambda pair: natural_key(pair[0]))
        found += [Photo(name, identity, image, index, item) for index, (image, item) in enumerate(ordered)]
    return found


def probe_key(dataset: str, variant: variants.Variant, settings_key: str) -> str:
    parts = {
        "probes": VERSION,
        "variants": variants.VERSION,
        "dataset": dataset,
        "digest": datasets.DATASETS[dataset].digest,
        "border": BORDER_PX.get(dataset, 0),
        "settings": settings_key,
        "variant": variant.name,
        "seed": variant.seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_embeddings(path: Path) -> dict[str, np.ndarray]:
    """Embeddings by chip SHA-1 (see `FacePipeline.run`); empty when the file does not exist."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return dict(zip(data["digest"].tolist(), data["embedding"], strict=True))


def save_embeddings(path: Path, known: dict[str, np.ndarray]) -> None:
    if not known:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, digest=np.array(list(known)), embedding=np.stack(list(known.values())))
    tmp.replace(path)


def _run_variant(
    pipeline: FacePipeline,
    photos: Sequence[Photo],
    variant: variants.Variant,
    native: ProbeTable | None,
    known: dict[str, np.ndarray] | None = None,
) -> ProbeTable:
    dim = pipeline.embedder_model.dim
    if native is None:
        chosen = list(photos)
        native_eye = [float("nan")] * len(chosen)
    else:
        eyes = native.inter_eye_px
        keep = [i for i, _ in enumerate(photos) if native.found[i] and variant.applies_to(float(eyes[i]))]
        chosen = [photos[i] for i in keep]
        native_eye = [float(eyes[i]) for i in keep]
        marks = [native.landmarks[i] for i in keep]
    records: list[FaceRecord] = []
    for start in range(0, len(chosen), CHUNK):
        batch = chosen[start : start + CHUNK]
        images = [source_image(p.dataset, p.item) for p in batch]
        if native is not None:
            images = [
                variant.render(image, marks[start + offset], p.key)
                for offset, (image, p) in enumerate(zip(images, batch, strict=True))
            ]
        records += pipeline.run(images, known)
    if native is None:  # the native run measures the photos' own eye distance
        native_eye = [r.inter_eye_px for r in records]
    return from_records([p.label() for p in chosen], variant, native_eye, records, dim)


def build(
    names: Sequence[str] = DATASETS,
    *,
    root: Path | None = None,
    threads: int = 1,
    log: Log = _stderr,
    pipeline: FacePipeline | None = None,
) -> tuple[ProbeTable, list[str]]:
    """The probe table of the named datasets (cached), with the cache keys it was made from."""
    root = (root or cache_dir()) / "probes"
    pipe: FacePipeline | None = pipeline
    settings_key = ""
    tables: list[ProbeTable] = []
    keys: list[str] = []
    started = time.monotonic()
    for name in names:
        photos = photos_of(name)
        native: ProbeTable | None = None
        for variant in variants.catalogue(CAMERA_SEEDS[name]):
            if pipe is None:
                pipe = FacePipeline(threads)
            settings_key = settings_key or pipe.settings_key()
            key = probe_key(name, variant, settings_key)
            path = root / name / f"{variant.name}-{key[:20]}.npz"
            if path.is_file():
                table = ProbeTable.load(path)
            else:
                t0 = time.monotonic()
                store = root.parent / "embeddings" / pipe.embedder_model.sha256[:16] / name / f"{variant.name}.npz"
                known = load_embeddings(store)
                table = _run_variant(pipe, photos, variant, native, known)
                save_embeddings(store, known)
                table.save(path)
                log(
                    f"probes: {name} {variant.name}: {len(table)} images, {int(table.found.sum())} faces, "
                    f"{time.monotonic() - t0:.1f} s (total {time.monotonic() - started:.0f} s)"
                )
            if variant.name == variants.NATIVE:
                native = table
            tables.append(table)
            keys.append(key)
    return ProbeTable.concat(tables), keys


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retailface.devtools.accuracy.probes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per engine")
    args = parser.parse_args()
    table, _ = build(threads=args.threads)
    for name in DATASETS:
        rows = table.dataset == name
        print(f"{name}: {int(rows.sum())} probes, {int((rows & table.found).sum())} with a face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
