"""gRPC for member self-service (the portal's sign-in codes, activity, export, erasure requests) and the
privacy office (consent history, erasure receipts).

A mixin of PersonalizationServicer: converts messages and calls the logic, nothing more. The web console
calls with role "web" for the member signed in to it; the privacy office with role "privacy"; the gateway
(role "service") records the receipt of an erasure it carried out.
"""

from __future__ import annotations

import grpc

from retailface.services.personalization import converters_portal
from retailface.services.personalization.service import Personalization
from retailface.services.shared.auth import current_caller
from retailface.v1 import personalization_pb2

_ISSUERS = frozenset({"admin", "privacy", "service"})
_MEMBER_PORTAL = frozenset({"web", "service", "admin"})
_EXPORTERS = frozenset({"web", "privacy", "admin"})
_PRIVACY_OFFICE = frozenset({"privacy", "admin", "service"})

PORTAL_METHOD_ROLES: dict[str, frozenset[str]] = {
    "IssueMemberSignIn": _ISSUERS,
    "RedeemMemberSignIn": _MEMBER_PORTAL,
    "GetMemberActivity": _MEMBER_PORTAL,
    "RequestErasure": _MEMBER_PORTAL,
    "ExportMemberData": _EXPORTERS,
    "ListConsentHistory": _PRIVACY_OFFICE,
    "ListErasureRequests": _PRIVACY_OFFICE,
    "CompleteErasure": _PRIVACY_OFFICE,
}


def _actor(named: str = "") -> str:
    """The audit actor: who the request names, prefixed with the caller's authenticated role."""
    caller = current_caller()
    role = caller.role if caller is not None else ""
    return f"{role}:{named}" if named and role else named or role or "unknown"


class PortalRpcs:
    personalization: Personalization

    def IssueMemberSignIn(
        self, request: personalization_pb2.IssueMemberSignInRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.IssueMemberSignInResponse:
        issued = self.personalization.signin.issue(request.member_id, request.ttl_seconds, actor=_actor(request.actor))
        return converters_portal.issued_code_to_proto(issued)

    def RedeemMemberSignIn(
        self, request: personalization_pb2.RedeemMemberSignInRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.RedeemMemberSignInResponse:
        return converters_portal.signed_in_to_proto(self.personalization.signin.redeem(request.code, actor=_actor()))

    def GetMemberActivity(
        self, request: personalization_pb2.MemberActivityRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.MemberActivity:
        activity = self.personalization.member_data.activity(request.member_id, request.limit, actor=_actor())
        return converters_portal.activity_to_proto(activity)

    def ExportMemberData(
        self, request: personalization_pb2.ExportMemberDataRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ExportMemberDataResponse:
        document = self.personalization.member_data.export(request.member_id, actor=_actor(request.actor))
        return personalization_pb2.ExportMemberDataResponse(json_document=document)

    def RequestErasure(
        self, request: personalization_pb2.RequestErasureRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ErasureRequest:
        record = self.personalization.erasures.request(
            request.member_id, actor=_actor(request.actor), reason=request.reason
        )
        return converters_portal.erasure_to_proto(record)

    def ListConsentHistory(
        self, request: personalization_pb2.ConsentHistoryRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ConsentHistoryResponse:
        changes = self.personalization.members.consent_history(request.member_id, actor=_actor())
        return personalization_pb2.ConsentHistoryResponse(
            changes=[converters_portal.consent_change_to_proto(change) for change in changes]
        )

    def ListErasureRequests(
        self, request: personalization_pb2.ListErasureRequestsRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ListErasureRequestsResponse:
        records = self.personalization.erasures.list(
            converters_portal.erasure_status_from_proto(request.status), request.limit
        )
        return personalization_pb2.ListErasureRequestsResponse(
            requests=[converters_portal.erasure_to_proto(record) for record in records]
        )

    def CompleteErasure(
        self, request: personalization_pb2.CompleteErasureRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ErasureRequest:
        record = self.personalization.erasures.complete(
            request.request_id,
            request.member_id,
            request.templates_removed,
            dict(request.rows_removed),
            actor=_actor(request.actor),
        )
        return converters_portal.erasure_to_proto(record)
