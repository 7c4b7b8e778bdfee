"""python -m retailface.services.personalization: serves PersonalizationService."""

from retailface.services.personalization.servicer import build
from retailface.services.shared.server import run

raise SystemExit(run("personalization", build))
