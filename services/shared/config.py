"""Configuration from environment variables and command-line flags, declared once.

Every setting is declared as a `Setting` (common ones here, service-specific ones in each
service's `SETTINGS`). The same declarations produce the flags, the validation at start-up
(fail fast with a message that names the variable and what is wrong), and the table in
docs/CONFIGURATION.md, so that code, docs and the Kubernetes manifests cannot drift apart.
A flag overrides its environment variable: RETAILFACE_PORT=50051 is the same as --port 50051.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "RETAILFACE_"

# (gRPC port, metrics port) per service. One table so the local stack, the tests and the
# Kubernetes manifests agree.
SERVICE_PORTS: dict[str, tuple[int, int]] = {
    "gateway": (50050, 9450),
    "detection": (50051, 9451),
    "embedding": (50052, 9452),
    "matching": (50053, 9453),
    "personalization": (50054, 9454),
}
SERVICES: tuple[str, ...] = tuple(SERVICE_PORTS)
# The web consoles (services/web): gRPC (health only) and metrics ports; their HTML has a port of its own
# (RETAILFACE_WEB_HTTP_PORT). Apart from SERVICES, which lists the gRPC services of the chain.
CONSOLE_PORTS: dict[str, tuple[int, int]] = {"web": (50055, 9455)}
# Everything that runs on the shared bootstrap and reads settings: the services and the consoles.
COMPONENTS: tuple[str, ...] = (*SERVICES, *CONSOLE_PORTS)


class ConfigError(ValueError):
    """A bad or missing setting; the message names the variable and the fix."""


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def parse_port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    return port


def parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {value}")
    return value


def number_in(low: float, high: float, what: str, type_name: str, *, low_open: bool = False) -> Callable[[str], float]:
    """A parser of a float within [low, high] ((low, high] with `low_open`); `what` names it in the error."""

    def parse(raw: str) -> float:
        value = float(raw)
        above_low = value > low if low_open else value >= low
        if not (above_low and value <= high):
            raise ValueError(f"expected {what}, got {raw}")
        return value

    parse.type_name = type_name  # type: ignore[attr-defined]  # the docs' name for the setting's type
    return parse


parse_positive_float = number_in(0.0, math.inf, "a positive number", "number > 0", low_open=True)
parse_unit_float = number_in(0.0, 1.0, "a number in [0, 1]", "number in [0, 1]")
parse_non_negative_float = number_in(0.0, math.inf, "a number >= 0", "number >= 0")


def parse_thread_count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"expected 0 (one per core) or a positive count, got {value}")
    return value


def parse_path(raw: str) -> Path:
    return Path(raw).expanduser()


_TYPE_NAMES: dict[Callable[[str], Any], str] = {
    str: "string",
    int: "integer",
    float: "number",
    parse_bool: "bool",
    parse_port: "port",
    parse_positive_int: "integer > 0",
    parse_thread_count: "thread count",
    parse_path: "path",
}


@dataclass(frozen=True)
class Setting:
    """One configuration value: environment variable, flag, parser, default and help."""

    name: str
    parse: Callable[[str], Any] = str
    default: Any = None
    help: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    secret: bool = False  # never logged

    def __post_init__(self) -> None:
        if not self.name.startswith(ENV_PREFIX):
            raise ValueError(f"setting {self.name} must start with {ENV_PREFIX}")

    @property
    def flag(self) -> str:
        return "--" + self.name.removeprefix(ENV_PREFIX).lower().replace("_", "-")

    @property
    def type_name(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.parse in _TYPE_NAMES:
            return _TYPE_NAMES[self.parse]
        if hasattr(self.parse, "type_name"):
            return str(self.parse.type_name)
        return getattr(self.parse, "__name__", "value").removeprefix("parse_").replace("_", " ")

    def convert(self, raw: str, origin: str) -> Any:
        if self.choices and raw not in self.choices:
            raise ConfigError(f"{origin}={raw!r} is not one of {', '.join(self.choices)} ({self.help})")
        try:
            return self.parse(raw)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{origin}={raw!r} is invalid: {error} ({self.help})") from None


COMMON_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "RETAILFACE_HOST", str, "127.0.0.1", "address to bind the gRPC and metrics servers (0.0.0.0 in containers)"
    ),
    Setting("RETAILFACE_PORT", parse_port, None, "gRPC port (default: per service, see the ports table)"),
    Setting("RETAILFACE_METRICS_PORT", parse_port, None, "Prometheus /metrics port (default: per service; 0 disables)"),
    Setting(
        "RETAILFACE_HEALTH_PORT",
        parse_port,
        0,
        "plaintext port serving only grpc.health.v1, for Kubernetes' native gRPC probes, which cannot speak TLS "
        "(0 disables it)",
    ),
    Setting("RETAILFACE_LOG_LEVEL", str, "info", "log level", choices=("debug", "info", "warning", "error")),
    Setting(
        "RETAILFACE_LOG_FORMAT",
        str,
        "json",
        "log format (json for machines, console for people)",
        choices=("json", "console"),
    ),
    Setting(
        "RETAILFACE_INSECURE", parse_bool, False, "serve without TLS (local development only; must be set explicitly)"
    ),
    Setting("RETAILFACE_TLS_CERT", parse_path, None, "PEM certificate chain of this service (server and client)"),
    Setting("RETAILFACE_TLS_KEY", parse_path, None, "PEM private key of RETAILFACE_TLS_CERT", secret=True),
    Setting("RETAILFACE_TLS_CA", parse_path, None, "PEM CA bundle that signs peers (verifies servers we call)"),
    Setting(
        "RETAILFACE_TLS_REQUIRE_CLIENT_CERT",
        parse_bool,
        False,
        "mutual TLS: require client certificates signed by RETAILFACE_TLS_CA",
    ),
    Setting(
        "RETAILFACE_AUTH_TOKENS_FILE",
        parse_path,
        None,
        'JSON file mapping caller role to accepted bearer tokens: {"camera": ["..."], "service": ["..."]}',
        required=True,
    ),
    Setting(
        "RETAILFACE_TOKEN_ROTATION_OVERLAP_SECONDS",
        parse_non_negative_float,
        300.0,
        "after the tokens file changes, how long the tokens it no longer lists are still accepted (callers move "
        "to their new token meanwhile); then they are refused",
    ),
    Setting(
        "RETAILFACE_CREDENTIALS_POLL_SECONDS",
        parse_positive_float,
        5.0,
        "how often the tokens file and the TLS certificate, key and CA are checked for changes; a change is "
        "loaded without a restart (new connections get the new certificate), a bad file keeps the old values",
    ),
    Setting(
        "RETAILFACE_AUTH_MAX_FAILURES",
        parse_positive_int,
        10,
        "calls with a missing or unknown token from one address (IP, without the port) within "
        "RETAILFACE_AUTH_FAILURE_WINDOW_SECONDS that lock it out (RESOURCE_EXHAUSTED); raise it for callers "
        "that share an address behind a proxy or NAT",
    ),
    Setting(
        "RETAILFACE_AUTH_FAILURE_WINDOW_SECONDS",
        parse_positive_float,
        60.0,
        "sliding window of RETAILFACE_AUTH_MAX_FAILURES; an address is forgiven after this long without a failure "
        "once its lockout has ended",
    ),
    Setting(
        "RETAILFACE_AUTH_LOCKOUT_SECONDS",
        parse_positive_float,
        1.0,
        "first lockout of an address; each further failure before it is forgiven locks it again for twice as long",
    ),
    Setting(
        "RETAILFACE_AUTH_LOCKOUT_MAX_SECONDS",
        parse_positive_float,
        300.0,
        "longest lockout of an address (the doubling stops here); at least RETAILFACE_AUTH_LOCKOUT_SECONDS",
    ),
    Setting(
        "RETAILFACE_SERVICE_TOKEN_FILE",
        parse_path,
        None,
        "file with the bearer token this service presents to the services it calls",
        secret=True,
    ),
    Setting(
        "RETAILFACE_GRACE_SECONDS",
        parse_positive_float,
        10.0,
        "on SIGTERM, how long in-flight RPCs may run before the server exits",
    ),
    Setting("RETAILFACE_MAX_WORKERS", parse_positive_int, 16, "gRPC handler threads"),
    Setting(
        "RETAILFACE_MAX_CONCURRENT_RPCS", parse_positive_int, 256, "RPCs accepted at once; more get RESOURCE_EXHAUSTED"
    ),
    Setting("RETAILFACE_MAX_MESSAGE_MB", parse_positive_int, 64, "largest request or response message, MiB"),
    Setting(
        "RETAILFACE_MAX_CONNECTION_AGE_SECONDS",
        parse_positive_float,
        300.0,
        "a client connection is asked to reconnect after this long (so that round_robin clients pick up new "
        "replicas); calls in progress go on (RETAILFACE_MAX_CONNECTION_AGE_GRACE_SECONDS)",
    ),
    Setting(
        "RETAILFACE_MAX_CONNECTION_AGE_GRACE_SECONDS",
        parse_positive_float,
        57_600.0,
        "how long a call in progress on an aged connection may go on: a camera's frame stream lasts the store's "
        "day (16 h), unary calls end long before",
    ),
    Setting(
        "RETAILFACE_MODELS_DIR",
        parse_path,
        None,
        "models directory (default ~/.cache/retailface/models; `make models` fills it)",
    ),
)


@dataclass
class ServiceConfig:
    """The validated configuration of one service process."""

    service: str
    values: dict[str, Any]
    settings: dict[str, Setting] = field(repr=False)

    def get(self, name: str) -> Any:
        if name not in self.values:
            raise KeyError(f"{name} is not a setting of the {self.service} service")
        return self.values[name]

    @property
    def port(self) -> int:
        return int(self.values["RETAILFACE_PORT"])

    @property
    def metrics_port(self) -> int:
        return int(self.values["RETAILFACE_METRICS_PORT"])

    def public_values(self) -> dict[str, Any]:
        """Values safe to log (secrets masked)."""
        masked: dict[str, Any] = {}
        for name, value in self.values.items():
            if self.settings[name].secret and value is not None:
                masked[name] = "***"
            else:
                masked[name] = str(value) if isinstance(value, Path) else value
        return masked


def all_settings(service_settings: Iterable[Setting]) -> dict[str, Setting]:
    merged: dict[str, Setting] = {}
    for setting in (*COMMON_SETTINGS, *service_settings):
        if setting.name in merged:
            raise ValueError(f"setting {setting.name} declared twice")
        merged[setting.name] = setting
    return merged


def load(
    service: str,
    service_settings: Iterable[Setting] = (),
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    """Reads flags over environment over defaults; raises ConfigError on a bad value."""
    known_ports = SERVICE_PORTS | CONSOLE_PORTS
    if service not in known_ports:
        raise ConfigError(f"unknown service {service!r}; expected one of {', '.join(known_ports)}")
    environ = os.environ if environ is None else environ
    settings = all_settings(service_settings)
    parser = argparse.ArgumentParser(
        prog=f"python -m retailface.services.{service}",
        description=f"RetailFace {service} service. Every flag can also be set by its environment variable.",
    )
    for setting in settings.values():
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            metavar=setting.type_name.upper(),
            help=f"{setting.help} [env {setting.name}]",
        )
    args = parser.parse_args(list(argv) if argv is not None else None)

    values: dict[str, Any] = {}
    for name, setting in settings.items():
        flag_value = getattr(args, name)
        if flag_value is not None:
            values[name] = setting.convert(flag_value, setting.flag)
        elif environ.get(name, "") != "":
            values[name] = setting.convert(environ[name], name)
        else:
            values[name] = setting.default
    grpc_port, metrics_port = known_ports[service]
    if values["RETAILFACE_PORT"] is None:
        values["RETAILFACE_PORT"] = grpc_port
    if values["RETAILFACE_METRICS_PORT"] is None:
        values["RETAILFACE_METRICS_PORT"] = metrics_port
    _validate(values, settings)
    return ServiceConfig(service=service, values=values, settings=settings)


def _validate(values: dict[str, Any], settings: dict[str, Setting]) -> None:
    for name, setting in settings.items():
        if setting.required and values[name] is None:
            raise ConfigError(f"{name} is required: {setting.help} (flag {setting.flag})")
    for name in (
        "RETAILFACE_TLS_CERT",
        "RETAILFACE_TLS_KEY",
        "RETAILFACE_TLS_CA",
        "RETAILFACE_AUTH_TOKENS_FILE",
        "RETAILFACE_SERVICE_TOKEN_FILE",
    ):
        path = values.get(name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}={path} does not exist or is not a file")
    cert, key = values["RETAILFACE_TLS_CERT"], values["RETAILFACE_TLS_KEY"]
    if (cert is None) != (key is None):
        raise ConfigError("RETAILFACE_TLS_CERT and RETAILFACE_TLS_KEY must be set together")
    if cert is None and not values["RETAILFACE_INSECURE"]:
        raise ConfigError(
            "TLS is required: set RETAILFACE_TLS_CERT and RETAILFACE_TLS_KEY, "
            "or RETAILFACE_INSECURE=true for local development"
        )
    if values["RETAILFACE_TLS_REQUIRE_CLIENT_CERT"] and values["RETAILFACE_TLS_CA"] is None:
        raise ConfigError(
            "RETAILFACE_TLS_REQUIRE_CLIENT_CERT=true needs RETAILFACE_TLS_CA to verify client certificates"
        )


def markdown_table(settings: Iterable[Setting]) -> str:
    rows = ["| Variable | Flag | Type | Default | Meaning |", "|---|---|---|---|---|"]
    for setting in settings:
        default = "(required)" if setting.required else ("" if setting.default is None else f"`{setting.default}`")
        meaning = setting.help.replace("|", "/")
        rows.append(f"| `{setting.name}` | `{setting.flag}` | {setting.type_name} | {default} | {meaning} |")
    return "\n".join(rows)
