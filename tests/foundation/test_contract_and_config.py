"""The contract is generated from protos/, configuration fails fast, models fail with the fix."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from retailface.devtools import models as fetching
from retailface.services.shared import config
from retailface.services.shared import model_files as models
from retailface.services.shared.config import ConfigError, Setting, parse_port
from retailface.services.shared.hashing import sha256_file

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = ROOT / "clients" / "retailface" / "v1"
    fresh = tmp_path / "retailface" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"})
    stale = [name for name in names if not filecmp.cmp(fresh / name, committed / name, shallow=False)]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"


def _load(argv: list[str], env: dict[str, str], extra: tuple[Setting, ...] = ()) -> config.ServiceConfig:
    return config.load("gateway", extra, argv=argv, environ=env)


def test_flags_override_environment_and_defaults_apply(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{}")
    env = {"RETAILFACE_INSECURE": "true", "RETAILFACE_AUTH_TOKENS_FILE": str(tokens), "RETAILFACE_PORT": "6000"}
    cfg = _load(["--port", "6001"], env)
    assert cfg.port == 6001
    assert cfg.metrics_port == config.SERVICE_PORTS["gateway"][1]
    assert cfg.get("RETAILFACE_GRACE_SECONDS") == 10.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RETAILFACE_PORT": "http"}, "RETAILFACE_PORT='http' is invalid"),
        ({"RETAILFACE_PORT": "70000"}, "outside 0..65535"),
        ({"RETAILFACE_LOG_LEVEL": "loud"}, "is not one of debug, info, warning, error"),
        ({"RETAILFACE_INSECURE": "maybe"}, "expected true/false"),
        ({"RETAILFACE_INSECURE": "false"}, "TLS is required"),
        ({"RETAILFACE_TLS_CERT": "/nonexistent.crt"}, "RETAILFACE_TLS_CERT=/nonexistent.crt does not exist"),
        ({"RETAILFACE_GRACE_SECONDS": "-1"}, "expected a positive number"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(tmp_path: Path, env: dict[str, str], message: str) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{}")
    base = {"RETAILFACE_INSECURE": "true", "RETAILFACE_AUTH_TOKENS_FILE": str(tokens)}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _load([], base | env)


def test_missing_tokens_file_is_required() -> None:
    with pytest.raises(ConfigError, match="RETAILFACE_AUTH_TOKENS_FILE is required"):
        _load([], {"RETAILFACE_INSECURE": "true"})


def test_service_settings_are_validated(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{}")
    extra = (Setting("RETAILFACE_GATEWAY_TEST_PORT", parse_port, 1, "a test setting"),)
    env = {"RETAILFACE_INSECURE": "true", "RETAILFACE_AUTH_TOKENS_FILE": str(tokens)}
    assert _load(["--gateway-test-port", "7"], env, extra).get("RETAILFACE_GATEWAY_TEST_PORT") == 7
    with pytest.raises(ConfigError, match="--gateway-test-port='x' is invalid"):
        _load(["--gateway-test-port", "x"], env, extra)


def test_process_exits_2_with_one_clear_line_on_bad_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "retailface.services.gateway", "--port", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("gateway: configuration error: --port='nope' is invalid")


def test_configuration_doc_is_current() -> None:
    from retailface.services.shared.settings_catalog import configuration_markdown

    doc = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    assert doc == configuration_markdown(), "docs/CONFIGURATION.md is stale: run `make docs`"


def test_missing_model_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(models.ModelMissingError) as error:
        models.model_path("yunet", tmp_path)
    text = str(error.value)
    assert "\n" not in text
    assert str(tmp_path / "face_detection_yunet_2023mar.onnx") in text and "make models" in text


def test_corrupt_model_names_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "face_recognition_sface_2021dec.onnx").write_bytes(b"not a model")
    with pytest.raises(models.ModelMissingError) as error:
        models.model_path("sface", tmp_path, verify=True)
    text = str(error.value)
    assert "\n" not in text and "corrupt" in text and "make models" in text


@pytest.mark.parametrize("asset", fetching.MODEL_ASSETS, ids=lambda asset: asset.key)
def test_cached_model_is_the_vetted_file(asset: fetching.Asset) -> None:
    assert sha256_file(models.model_path(asset.key, verify=True)) == asset.sha256


@pytest.mark.parametrize("service", ["detection", "embedding"])
def test_service_without_its_model_says_which_file_and_how_to_fetch_it(service: str, tmp_path: Path) -> None:
    from retailface.devtools.localstack import Runtime, free_port, service_environment

    runtime = Runtime(tmp_path / "runtime")
    runtime.prepare()
    env = service_environment(service, runtime, {service: free_port(), f"{service}-metrics": free_port()})
    env |= {"RETAILFACE_MODELS_DIR": str(tmp_path / "no-models"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", f"retailface.services.{service}"], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert str(tmp_path / "no-models") in last and "is missing" in last and "make models" in last, last


def test_matching_refuses_to_start_without_a_calibration_for_its_model(tmp_path: Path) -> None:
    from retailface.devtools.localstack import Runtime, free_port, service_environment

    runtime = Runtime(tmp_path / "runtime")
    runtime.prepare()
    env = service_environment("matching", runtime, {"matching": free_port(), "matching-metrics": free_port()})
    env |= {"RETAILFACE_MATCHING_MODEL_VERSION": "2099jan", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "retailface.services.matching"], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "no calibration for sface/2099jan" in last and "run `make calibrate`" in last, last
