"""python -m retailface.services.matching: serves MatchingService over the durable galleries."""

from retailface.services.matching.servicer import build
from retailface.services.shared.server import run

raise SystemExit(run("matching", build))
