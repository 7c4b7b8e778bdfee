"""python -m retailface.services.detection: serves DetectionService (YuNet on onnxruntime)."""

from retailface.services.detection.servicer import build
from retailface.services.shared.server import run

raise SystemExit(run("detection", build))
