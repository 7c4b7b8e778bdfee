"""retailface-admin commands for stores, cameras and the watchlist (personalization's admin RPCs).

retailface-admin store --store-id s1 --name "Lyon" --timezone Europe/Paris [--watchlist-enabled]
retailface-admin stores
retailface-admin camera --camera-id s1-lane-1 --store-id s1 --role lane --zone-id checkout --lane-id 1
retailface-admin remove-camera --camera-id s1-lane-1
retailface-admin cameras [--store-id s1]
retailface-admin import-cameras cameras.json   (one-shot import of a camera map: {"id": {"store_id", "role", ...}})
retailface-admin watchlist [--include-expired]
retailface-admin watchlist-add --subject-id w1 --reason "..." --days 30
retailface-admin watchlist-confirm --subject-id w1   (a second person: not who added it)
retailface-admin watchlist-remove --subject-id w1 --reason "..."

They call personalization itself (--personalization HOST:PORT; the gateway does not proxy them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from retailface.client.clients import CAMERA_ROLES, AdminClient
from retailface.v1 import personalization_pb2

COMMANDS = (
    "store",
    "stores",
    "camera",
    "remove-camera",
    "cameras",
    "import-cameras",
    "watchlist",
    "watchlist-add",
    "watchlist-confirm",
    "watchlist-remove",
)
ROLE_NAMES = {value: name for name, value in CAMERA_ROLES.items()}


def add_commands(sub: Any) -> None:
    """Adds the commands to the admin command line's subparsers."""
    parsers = {}
    store = parsers["store"] = sub.add_parser("store", help="create or update a store")
    store.add_argument("--store-id", required=True)
    store.add_argument("--name", required=True)
    store.add_argument("--timezone", default="UTC", help="IANA name, e.g. Europe/Paris")
    store.add_argument("--watchlist-enabled", action="store_true", help="raise watchlist alerts in this store")
    parsers["stores"] = sub.add_parser("stores", help="list the stores")
    camera = parsers["camera"] = sub.add_parser("camera", help="register (or move) a camera")
    camera.add_argument("--camera-id", required=True)
    camera.add_argument("--store-id", required=True)
    camera.add_argument("--role", required=True, choices=sorted(CAMERA_ROLES))
    camera.add_argument("--zone-id", default="")
    camera.add_argument("--lane-id", default="", help="lane cameras only")
    remove = parsers["remove-camera"] = sub.add_parser("remove-camera", help="remove a camera from the registry")
    remove.add_argument("--camera-id", required=True)
    cameras = parsers["cameras"] = sub.add_parser("cameras", help="list the registered cameras")
    cameras.add_argument("--store-id", default="")
    load = parsers["import-cameras"] = sub.add_parser("import-cameras", help="register every camera of a JSON map")
    load.add_argument("file", type=Path, help='{"entrance-1": {"store_id": "s1", "role": "entrance", "zone_id": ...}}')
    listing = parsers["watchlist"] = sub.add_parser("watchlist", help="list the watchlist")
    listing.add_argument("--include-expired", action="store_true")
    add = parsers["watchlist-add"] = sub.add_parser("watchlist-add", help="add or change a watchlist entry")
    add.add_argument("--subject-id", required=True, help="the watchlist gallery's subject id")
    add.add_argument("--reason", required=True)
    add.add_argument("--days", type=float, required=True, help="the entry expires after this many days")
    confirm = parsers["watchlist-confirm"] = sub.add_parser("watchlist-confirm", help="confirm an entry (4 eyes)")
    confirm.add_argument("--subject-id", required=True)
    drop = parsers["watchlist-remove"] = sub.add_parser("watchlist-remove", help="remove a watchlist entry")
    drop.add_argument("--subject-id", required=True)
    drop.add_argument("--reason", default="")
    for parser in parsers.values():
        parser.add_argument(
            "--personalization",
            default=os.environ.get("RETAILFACE_PERSONALIZATION", ""),
            help="the personalization service's address; the gateway does not proxy this call "
            "[env RETAILFACE_PERSONALIZATION; default: --gateway]",
        )


def _when(stamp: Any) -> str:
    return stamp.ToDatetime(dt.UTC).isoformat(timespec="seconds") if stamp.seconds else "-"


def _camera_line(camera: personalization_pb2.Camera) -> str:
    lane = f" lane {camera.lane_id}" if camera.lane_id else ""
    return f"{camera.camera_id:24s} store {camera.store_id:12s} {ROLE_NAMES.get(camera.role, '?'):8s} " + (
        f"zone {camera.zone_id or '-'}{lane}"
    )


def import_cameras(admin: AdminClient, path: Path, actor: str) -> list[personalization_pb2.Camera]:
    """Registers each camera of a JSON camera map (the format of the former static cameras file)."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected {{"camera-id": {{"store_id": ..., "role": ...}}}}')
    registered = []
    for camera_id, info in data.items():
        registered.append(
            admin.register_camera(
                camera_id,
                info.get("store_id", ""),
                info.get("role", "aisle"),
                info.get("zone_id", ""),
                info.get("lane_id", ""),
                actor=actor,
            )
        )
    return registered


def run(args: argparse.Namespace, admin: AdminClient, actor: str) -> int:
    """Runs one of COMMANDS; returns the exit code."""
    if args.command == "store":
        store = admin.upsert_store(args.store_id, args.name, args.timezone, args.watchlist_enabled, actor)
        print(f"store {store.store_id}: {store.name} ({store.timezone}), watchlist {_on(store.watchlist_enabled)}")
    elif args.command == "stores":
        for store in admin.stores():
            print(
                f"{store.store_id:12s} {store.name:24s} {store.timezone:20s} watchlist {_on(store.watchlist_enabled)}"
            )
    elif args.command == "camera":
        print("registered " + _camera_line(admin.register_camera(**_camera_args(args), actor=actor)))
    elif args.command == "remove-camera":
        admin.remove_camera(args.camera_id, actor)
        print(f"removed camera {args.camera_id}")
    elif args.command == "cameras":
        listed = admin.cameras(args.store_id)
        for camera in listed.cameras:
            print(_camera_line(camera))
        print(f"{len(listed.cameras)} cameras, registry version {listed.version}")
    elif args.command == "import-cameras":
        for camera in import_cameras(admin, args.file, actor):
            print("registered " + _camera_line(camera))
    elif args.command == "watchlist":
        for entry in admin.watchlist(args.include_expired):
            confirmed = f"confirmed by {entry.confirmed_by}" if entry.confirmed_by else "NOT CONFIRMED"
            print(
                f"{entry.subject_id:16s} expires {_when(entry.expires_at)} added by {entry.added_by} "
                f"{confirmed}: {entry.reason}"
            )
    elif args.command == "watchlist-add":
        entry = admin.upsert_watchlist_entry(args.subject_id, args.reason, time.time() + args.days * 86_400, actor)
        print(f"{entry.subject_id}: on the watchlist until {_when(entry.expires_at)}; a second person must confirm it")
    elif args.command == "watchlist-confirm":
        entry = admin.confirm_watchlist_entry(args.subject_id, actor)
        print(f"{entry.subject_id}: confirmed by {entry.confirmed_by}")
    else:
        admin.remove_watchlist_entry(args.subject_id, actor, args.reason)
        print(f"{args.subject_id}: removed from the watchlist")
    return 0


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _camera_args(args: argparse.Namespace) -> dict[str, str]:
    return {
        "camera_id": args.camera_id,
        "store_id": args.store_id,
        "role": args.role,
        "zone_id": args.zone_id,
        "lane_id": args.lane_id,
    }
