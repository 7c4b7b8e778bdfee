"""A service started in the test's own process, on free loopback ports, without TLS, with the role tokens given:
the one home for that configuration (each suite passes only what it varies)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from retailface.services.personalization import app as personalization_app
from retailface.services.personalization import settings as personalization_settings
from retailface.services.shared import config as config_module
from retailface.services.shared.config import ServiceConfig, Setting
from retailface.services.shared.server import RunningServer, start


def insecure_config(
    service: str,
    settings: list[Setting],
    directory: Path,
    tokens: Mapping[str, list[object]],
    environ: Mapping[str, str],
) -> ServiceConfig:
    """`service`'s config: port 0, metrics port 0, no TLS, `tokens` (role -> entries) in directory/tokens.json."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens_file = directory / "tokens.json"
    tokens_file.write_text(json.dumps(dict(tokens)))
    return config_module.load(
        service,
        settings,
        argv=[],
        environ={
            "RETAILFACE_INSECURE": "true",
            "RETAILFACE_PORT": "0",
            "RETAILFACE_METRICS_PORT": "0",
            "RETAILFACE_AUTH_TOKENS_FILE": str(tokens_file),
            **environ,
        },
    )


def start_personalization(
    directory: Path, tokens: Mapping[str, list[object]], environ: Mapping[str, str]
) -> RunningServer:
    """Personalization serving in this process (no model refresh), with `environ` naming its database."""
    environ = {"RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0", **environ}
    cfg = insecure_config("personalization", personalization_settings.SETTINGS, directory, tokens, environ)
    return start("personalization", personalization_app.build(cfg), cfg)
