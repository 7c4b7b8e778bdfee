"""python -m retailface.services.personalization: serves PersonalizationService."""

from retailface.services.personalization.app import build
from retailface.services.personalization.settings import SETTINGS
from retailface.services.shared.server import run

raise SystemExit(run("personalization", build, settings=SETTINGS))
