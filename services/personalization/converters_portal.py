"""Proto <-> domain conversions of the member portal and privacy office RPCs (servicer_portal.py)."""

from __future__ import annotations

from retailface.services.personalization.activity import Activity
from retailface.services.personalization.converters import SCOPES, time_to_proto
from retailface.services.personalization.domain import ConsentChange
from retailface.services.personalization.erasure import COMPLETED, PENDING, ErasureRecord
from retailface.services.personalization.signin import IssuedCode, SignedIn
from retailface.v1 import personalization_pb2

ERASURE_STATUSES = {
    personalization_pb2.ERASURE_STATUS_PENDING: PENDING,
    personalization_pb2.ERASURE_STATUS_COMPLETED: COMPLETED,
}
_ERASURE_STATUS_ENUMS = {name: value for value, name in ERASURE_STATUSES.items()}
_SCOPE_ENUMS = {name: value for value, name in SCOPES.items()}


def erasure_status_from_proto(value: int) -> str:
    """The status name; empty for unspecified (every status); an unknown number passes on as its digits."""
    if value == personalization_pb2.ERASURE_STATUS_UNSPECIFIED:
        return ""
    return ERASURE_STATUSES.get(value, str(value))


def issued_code_to_proto(issued: IssuedCode) -> personalization_pb2.IssueMemberSignInResponse:
    return personalization_pb2.IssueMemberSignInResponse(code=issued.code, expires_at=time_to_proto(issued.expires_at))


def signed_in_to_proto(signed_in: SignedIn) -> personalization_pb2.RedeemMemberSignInResponse:
    return personalization_pb2.RedeemMemberSignInResponse(
        member_id=signed_in.member_id, expires_at=time_to_proto(signed_in.session_expires_at)
    )


def activity_to_proto(activity: Activity) -> personalization_pb2.MemberActivity:
    return personalization_pb2.MemberActivity(
        visits=[
            personalization_pb2.MemberVisit(
                visit_id=visit.visit_id,
                store_id=visit.store_id,
                started_at=time_to_proto(visit.started_at),
                ended_at=time_to_proto(visit.ended_at),
                zones=visit.zones,
            )
            for visit in activity.visits
        ],
        offers=[
            personalization_pb2.PushedOffer(
                offer_id=offer.offer_id,
                sku=offer.sku,
                product_name=offer.product_name,
                store_id=offer.store_id,
                pushed_at=time_to_proto(offer.pushed_at),
                feedback=offer.feedback,
            )
            for offer in activity.offers
        ],
        unliked_skus=activity.unliked_skus,
        unliked_categories=activity.unliked_categories,
    )


def erasure_to_proto(record: ErasureRecord) -> personalization_pb2.ErasureRequest:
    return personalization_pb2.ErasureRequest(
        request_id=record.request_id,
        member_ref=record.member_ref,
        member_id=record.member_id,
        requested_by=record.requested_by,
        requested_at=time_to_proto(record.requested_at),
        status=_ERASURE_STATUS_ENUMS.get(record.status, personalization_pb2.ERASURE_STATUS_UNSPECIFIED),
        completed_at=time_to_proto(record.completed_at),
        completed_by=record.completed_by,
        templates_removed=record.templates_removed,
        rows_removed=record.rows_removed,
    )


def consent_change_to_proto(change: ConsentChange) -> personalization_pb2.ConsentChange:
    return personalization_pb2.ConsentChange(
        at=time_to_proto(change.at),
        action=change.action,
        scopes=[_SCOPE_ENUMS[scope] for scope in change.scopes if scope in _SCOPE_ENUMS],
        policy_version=change.policy_version,
        source=change.source,
        actor=change.actor,
        reason=change.reason,
    )
