"""The client package installs on its own with only grpcio and protobuf (no onnxruntime, no compiler)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_package_installs_alone(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "-q", "-c", str(ROOT / "requirements" / "lock.txt"), str(ROOT / "clients")],
        check=True,
        timeout=300,
    )
    installed = subprocess.run([*pip, "list", "--format=freeze"], check=True, capture_output=True, text=True).stdout
    names = {line.split("==")[0].lower() for line in installed.splitlines()}
    assert {"grpcio", "protobuf", "retailface-client"} <= names
    assert not names & {"onnxruntime", "onnxruntime-gpu", "numpy", "opencv-python-headless", "retailface"}, names
    probe = "import retailface.client, retailface.v1.gateway_pb2_grpc; print(retailface.client.CameraClient.__name__)"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "CameraClient"
