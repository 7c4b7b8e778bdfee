"""Connection flags shared by the command-line tools."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from retailface.client.connection import DEFAULT_TARGET, Connection, connect


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--gateway", default=os.environ.get("RETAILFACE_GATEWAY", DEFAULT_TARGET))
    group.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get("RETAILFACE_TOKEN_FILE"),
        help="file holding this caller's bearer token [env RETAILFACE_TOKEN_FILE]",
    )
    group.add_argument("--token", default=os.environ.get("RETAILFACE_TOKEN"), help="[env RETAILFACE_TOKEN]")
    group.add_argument("--ca", type=Path, help="CA bundle that signs the gateway's certificate")
    group.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    group.add_argument("--key", type=Path, help="client key (mutual TLS)")
    group.add_argument("--insecure", action="store_true", help="plain text (local development only)")


def open_connection(args: argparse.Namespace) -> Connection:
    return connect(
        args.gateway,
        token=args.token,
        token_file=args.token_file,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        insecure=args.insecure,
    )
