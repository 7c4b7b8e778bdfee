"""Admin command line: enroll a member from photos with a consent record, erase a member, list galleries.

retailface-admin enroll --member-id m1 --name "Ada" --photo a.jpg --photo b.jpg --scopes face_identification,...
retailface-admin erase --member-id m1 --reason "member request"
retailface-admin galleries
retailface-admin verify-audit --personalization HOST:PORT   (exit code 1 when the audit chain is broken)
retailface-admin sign-in-code --member-id m1 --personalization HOST:PORT   (a single-use member portal code)
retailface-admin erasure-requests [--status pending|completed] --personalization HOST:PORT
retailface-admin store|stores|camera|remove-camera|cameras|import-cameras|watchlist|watchlist-add|...
    stores, cameras and the watchlist (admin_stores_cli.py; --personalization HOST:PORT)
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from pathlib import Path

import grpc

from retailface.client import admin_stores_cli
from retailface.client._cli import add_connection_flags, open_connection
from retailface.client.clients import AdminClient
from retailface.v1 import common_pb2, personalization_pb2

ERASURE_STATUSES = {
    "pending": personalization_pb2.ERASURE_STATUS_PENDING,
    "completed": personalization_pb2.ERASURE_STATUS_COMPLETED,
}
# The commands that call personalization itself (the gateway does not proxy them): --personalization.
PERSONALIZATION_COMMANDS = ("verify-audit", "sign-in-code", "erasure-requests", *admin_stores_cli.COMMANDS)

SCOPES = {
    name.removeprefix("CONSENT_SCOPE_").lower(): value for name, value in common_pb2.ConsentScope.items() if value
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="retailface-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_connection_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    enroll = sub.add_parser("enroll", help="enroll a member with a consent record from photos")
    enroll.add_argument("--member-id", required=True)
    enroll.add_argument("--name", required=True, help="display name")
    enroll.add_argument("--photo", type=Path, action="append", required=True)
    enroll.add_argument(
        "--scopes", default="face_identification", help=f"comma-separated consent scopes: {', '.join(SCOPES)}"
    )
    enroll.add_argument("--policy-version", default="2026-01")
    enroll.add_argument("--allow-greeting", action="store_true")
    enroll.add_argument("--home-store", default="")
    erase = sub.add_parser("erase", help="erase a member's templates and personal data")
    erase.add_argument("--member-id", required=True)
    erase.add_argument("--reason", required=True)
    erase.add_argument("--request-id", default="", help="the erasure request this carries out (its receipt)")
    sub.add_parser("galleries", help="list galleries and their sizes")
    verify = sub.add_parser("verify-audit", help="verify the audit log's hash chain (exit code 1 when broken)")
    sign_in = sub.add_parser("sign-in-code", help="issue a single-use sign-in code for the member portal")
    sign_in.add_argument("--member-id", required=True)
    sign_in.add_argument("--ttl-seconds", type=int, default=0, help="validity (0: the service's default; capped)")
    erasures = sub.add_parser("erasure-requests", help="list erasure requests and their receipts, newest first")
    erasures.add_argument("--status", choices=sorted(ERASURE_STATUSES), help="only this status (default: every one)")
    erasures.add_argument("--limit", type=int, default=100)
    for command in (verify, sign_in, erasures):
        command.add_argument(
            "--personalization",
            default=os.environ.get("RETAILFACE_PERSONALIZATION", ""),
            help="the personalization service's address; the gateway does not proxy this call "
            "[env RETAILFACE_PERSONALIZATION; default: --gateway]",
        )
    admin_stores_cli.add_commands(sub)
    args = parser.parse_args(argv)
    actor = getpass.getuser()
    if args.command in PERSONALIZATION_COMMANDS and args.personalization:
        args.gateway = args.personalization

    with open_connection(args) as connection:
        admin = AdminClient(connection)
        try:
            if args.command in admin_stores_cli.COMMANDS:
                return admin_stores_cli.run(args, admin, actor)
            if args.command == "enroll":
                unknown = [s for s in args.scopes.split(",") if s not in SCOPES]
                if unknown:
                    parser.error(f"unknown scopes {unknown}; choose from {', '.join(SCOPES)}")
                member = personalization_pb2.Member(
                    member_id=args.member_id, display_name=args.name, home_store_id=args.home_store
                )
                member.consent.policy_version = args.policy_version
                member.consent.scopes.extend(SCOPES[s] for s in args.scopes.split(","))
                member.consent.granted_at.GetCurrentTime()
                member.consent.source = "admin-cli"
                member.preferences.allow_greeting = args.allow_greeting
                response = admin.enroll(member, [p.read_bytes() for p in args.photo], actor)
                for photo in response.photos:
                    verdict = photo.status.message or "ok"
                    print(f"{args.photo[photo.index]}: {verdict}")
                print(f"enrolled {response.member_id}: {response.templates_added} templates")
            elif args.command == "erase":
                erased = admin.erase(args.member_id, actor, args.reason, request_id=args.request_id)
                rows = ", ".join(f"{table} {count}" for table, count in sorted(erased.rows_removed.items()))
                print(f"erased {args.member_id}: {erased.templates_removed} templates; rows: {rows or 'none'}")
                if erased.receipt.request_id:
                    print(
                        f"receipt: erasure request {erased.receipt.request_id} (member ref {erased.receipt.member_ref})"
                    )
            elif args.command == "sign-in-code":
                issued = admin.issue_sign_in(args.member_id, actor, args.ttl_seconds)
                expires = issued.expires_at.ToDatetime(dt.UTC).isoformat(timespec="seconds")
                print(f"sign-in code for {args.member_id} (single use, expires {expires}): {issued.code}")
            elif args.command == "erasure-requests":
                for request in admin.erasure_requests(ERASURE_STATUSES.get(args.status or "", 0), args.limit):
                    print(_erasure_line(request))
            elif args.command == "verify-audit":
                report = admin.verify_audit_chain()
                if not report.intact:
                    print(f"audit chain broken at row {report.first_broken_id}: {report.reason}")
                    return 1
                print(f"audit chain intact: {report.rows_checked} rows")
            else:
                for gallery in admin.galleries().galleries:
                    print(
                        f"{gallery.name:12s} {gallery.templates:8d} templates {gallery.subjects:8d} subjects "
                        f"threshold {gallery.threshold:.2f} model {gallery.model.model_id}/{gallery.model.version}"
                    )
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


def _erasure_line(request: personalization_pb2.ErasureRequest) -> str:
    """One erasure request as a line: id, status, who asked when, and its receipt once completed."""
    status = personalization_pb2.ErasureStatus.Name(request.status).removeprefix("ERASURE_STATUS_").lower()
    asked = request.requested_at.ToDatetime(dt.UTC).isoformat(timespec="seconds")
    line = f"{request.request_id} {status:9s} requested {asked} by {request.requested_by}"
    if request.status == personalization_pb2.ERASURE_STATUS_PENDING:
        return f"{line} member {request.member_id}"
    done = request.completed_at.ToDatetime(dt.UTC).isoformat(timespec="seconds")
    rows = sum(request.rows_removed.values())
    return (
        f"{line}; completed {done} by {request.completed_by}: {request.templates_removed} templates, {rows} rows "
        f"(member ref {request.member_ref[:16]})"
    )


if __name__ == "__main__":
    sys.exit(main())
