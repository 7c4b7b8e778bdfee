from retailface.services.gateway.servicer import build
from retailface.services.shared.server import run

raise SystemExit(run("gateway", build))
