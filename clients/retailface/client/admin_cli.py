"""Admin command line: enroll a member from photos with a consent record, erase a member, list galleries.

retailface-admin enroll --member-id m1 --name "Ada" --photo a.jpg --photo b.jpg --scopes face_identification,...
retailface-admin erase --member-id m1 --reason "member request"
retailface-admin galleries
retailface-admin verify-audit --personalization HOST:PORT   (exit code 1 when the audit chain is broken)
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

import grpc

from retailface.client._cli import add_connection_flags, open_connection
from retailface.client.clients import AdminClient
from retailface.v1 import common_pb2, personalization_pb2

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
    sub.add_parser("galleries", help="list galleries and their sizes")
    verify = sub.add_parser("verify-audit", help="verify the audit log's hash chain (exit code 1 when broken)")
    verify.add_argument(
        "--personalization",
        default=os.environ.get("RETAILFACE_PERSONALIZATION", ""),
        help="the personalization service's address; the gateway does not proxy audit calls "
        "[env RETAILFACE_PERSONALIZATION; default: --gateway]",
    )
    args = parser.parse_args(argv)
    actor = getpass.getuser()
    if args.command == "verify-audit" and args.personalization:
        args.gateway = args.personalization

    with open_connection(args) as connection:
        admin = AdminClient(connection)
        try:
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
                erased = admin.erase(args.member_id, actor, args.reason)
                rows = ", ".join(f"{table} {count}" for table, count in sorted(erased.rows_removed.items()))
                print(f"erased {args.member_id}: {erased.templates_removed} templates; rows: {rows or 'none'}")
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


if __name__ == "__main__":
    sys.exit(main())
