"""python -m retailface.services.web: serves the consoles' HTML, with grpc.health.v1 and metrics like every service."""

from retailface.services.shared.server import run
from retailface.services.web.app import build
from retailface.services.web.settings import SETTINGS

raise SystemExit(run("web", build, settings=SETTINGS))
