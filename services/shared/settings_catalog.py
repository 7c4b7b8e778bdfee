"""Every service's settings in one place: the source of docs/CONFIGURATION.md and of the
checks that keep the Kubernetes manifests and the local stack in line with the code."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from retailface.services.shared.config import (
    COMMON_SETTINGS,
    COMPONENTS,
    CONSOLE_PORTS,
    SERVICE_PORTS,
    Setting,
    markdown_table,
)


def service_settings(service: str) -> list[Setting]:
    """The service-specific settings (SETTINGS of retailface.services.<service>.settings, else of its servicer)."""
    package = f"retailface.services.{service}"
    home = "settings" if importlib.util.find_spec(f"{package}.settings") is not None else "servicer"
    module = importlib.import_module(f"{package}.{home}")
    return list(getattr(module, "SETTINGS", []))


def configuration_markdown() -> str:
    parts = [
        "# Configuration",
        "",
        "Generated from the settings declared in the code (`make docs`); a test fails when it is stale.",
        "Every variable can also be given as the flag shown: flags override the environment. A bad value",
        "stops the service at start-up with one line naming the variable and what is wrong (exit code 2).",
        "",
        "## Ports",
        "",
        "| Service | gRPC | Prometheus metrics | Command |",
        "|---|---|---|---|",
        *[
            f"| {name} | {grpc_port} | {metrics_port} | `python -m retailface.services.{name}` |"
            for name, (grpc_port, metrics_port) in (SERVICE_PORTS | CONSOLE_PORTS).items()
        ],
        "",
        "The web consoles' gRPC port serves health only; their HTML has a port of its own (RETAILFACE_WEB_HTTP_PORT).",
        "",
        "## Every service",
        "",
        markdown_table(COMMON_SETTINGS),
        "",
    ]
    for service in COMPONENTS:
        settings = service_settings(service)
        parts += [f"## {service}", "", markdown_table(settings) if settings else "No service-specific settings.", ""]
    return "\n".join(parts)


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/CONFIGURATION.md")
    target.write_text(configuration_markdown())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
