"""gRPC PersonalizationService: converts messages (converters.py) and calls the logic (service.py).

No validation and no error handling here: the logic validates once and raises ServiceErrors, which
the bootstrap turns into statuses. Who may call what is METHOD_ROLES.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import structlog

from retailface.services.personalization import converters
from retailface.services.personalization.converters import (
    ALERT_KINDS,
    FEEDBACK_TYPES,
    IDENTIFIED_BY,
    SCOPES,
    name_from_proto,
    names_from_proto,
    time_from_proto,
)
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.servicer_admin import (
    ADMIN_METHOD_ROLES,
    AdminRpcs,
    require_store_access,
    scoped_stores,
)
from retailface.services.personalization.servicer_portal import PORTAL_METHOD_ROLES, PortalRpcs
from retailface.services.shared.metrics import stage_timer
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

SERVICE = "personalization"

# The gateway calls with role "service" on behalf of cameras, POS systems, staff devices and
# enrollment desks, so "service" may call everything it proxies; admin may call everything.
ROLES_POS = frozenset({"pos", "service", "admin"})
ROLES_STAFF = frozenset({"staff", "service", "admin"})
ROLES_SERVICE = frozenset({"service", "admin"})
ROLES_ADMIN = frozenset({"admin"})
# The web console acts for the member signed in to it (role "web"); the privacy office has role "privacy".
ROLES_MEMBER = frozenset({"web", "service", "admin"})
METHOD_ROLES: dict[str, frozenset[str]] = {
    "RecordVisitEvent": ROLES_SERVICE,
    "GetOffers": ROLES_SERVICE,
    "GetCheckoutOffers": ROLES_POS,
    "RecordPurchase": ROLES_POS,
    "IngestOnlineEvents": ROLES_SERVICE,
    "Feedback": ROLES_MEMBER,
    "GetPreferences": ROLES_MEMBER,
    "UpdatePreferences": ROLES_MEMBER,
    "UpsertMember": ROLES_SERVICE,  # the gateway's EnrollMember
    "GetMember": frozenset({"web", "privacy", "service", "admin"}),
    "GrantConsent": ROLES_MEMBER,
    "RevokeConsent": ROLES_MEMBER,
    "EraseMember": ROLES_SERVICE,  # the gateway's EraseMember (face templates and personal data together)
    "UpsertProducts": ROLES_ADMIN,
    "SetInventory": ROLES_ADMIN,
    "UpsertCampaign": ROLES_ADMIN,
    "StreamStaffAlerts": ROLES_STAFF,
    "AcknowledgeAlert": ROLES_STAFF,
    "QueryAudit": frozenset({"privacy", "admin"}),
    "VerifyAuditChain": ROLES_ADMIN,
    **ADMIN_METHOD_ROLES,
    **PORTAL_METHOD_ROLES,
}


def _caller(actor: str = "") -> str:
    """The audit actor: who the request names, else the caller's authenticated role."""
    role = structlog.contextvars.get_contextvars().get("role")
    return f"{role}:{actor}" if actor and role else actor or str(role or "unknown")


class PersonalizationServicer(AdminRpcs, PortalRpcs, personalization_pb2_grpc.PersonalizationServiceServicer):
    def __init__(self, personalization: Personalization, poll_seconds: float = 0.5) -> None:
        self.personalization = personalization
        self._poll_seconds = poll_seconds

    def RecordVisitEvent(
        self, request: personalization_pb2.VisitEvent, context: grpc.ServicerContext
    ) -> personalization_pb2.VisitEventResult:
        event = converters.visit_event_from_proto(request)
        with stage_timer(SERVICE, "record_visit_event"):
            result = self.personalization.visits.record(event, actor=_caller())
        return converters.visit_result_to_proto(result)

    def GetOffers(
        self, request: personalization_pb2.GetOffersRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.GetOffersResponse:
        with stage_timer(SERVICE, "get_offers"):
            result = self.personalization.offers.get(
                request.member_id, request.store_id, request.context, request.limit, actor=_caller()
            )
        return converters.offers_result_to_proto(result)

    def GetCheckoutOffers(
        self, request: personalization_pb2.CheckoutOffersRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.CheckoutOffersResponse:
        with stage_timer(SERVICE, "get_checkout_offers"):
            result = self.personalization.checkout.offers(
                request.store_id,
                request.lane_id,
                converters.basket_from_proto(request.basket),
                member_id=request.member_id,
                loyalty_number=request.loyalty_number,
                identified_by=name_from_proto(IDENTIFIED_BY, request.identified_by),
                limit=request.limit,
                actor=_caller(),
            )
        return converters.checkout_result_to_proto(result)

    def RecordPurchase(
        self, request: personalization_pb2.Purchase, context: grpc.ServicerContext
    ) -> personalization_pb2.RecordPurchaseResponse:
        purchase = converters.purchase_from_proto(request)
        duplicate = self.personalization.purchases.record(purchase, actor=_caller())
        return personalization_pb2.RecordPurchaseResponse(duplicate=duplicate)

    def IngestOnlineEvents(
        self, request: personalization_pb2.IngestOnlineEventsRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.IngestOnlineEventsResponse:
        now = time.time()
        events = [converters.online_event_from_proto(e, now) for e in request.events]
        with stage_timer(SERVICE, "ingest_online_events"):
            outcomes = self.personalization.purchases.ingest_online_events(events)
        return converters.outcomes_to_proto(outcomes)

    def Feedback(
        self, request: personalization_pb2.OfferFeedback, context: grpc.ServicerContext
    ) -> personalization_pb2.FeedbackResponse:
        self.personalization.purchases.feedback(
            request.feedback_id,
            request.member_id,
            request.offer_id,
            name_from_proto(FEEDBACK_TYPES, request.type),
            time_from_proto(request.at, None),
            actor=_caller(),
            sku=request.sku,
        )
        return personalization_pb2.FeedbackResponse()

    def GetPreferences(
        self, request: personalization_pb2.GetPreferencesRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.MemberPreferences:
        preferences = self.personalization.members.preferences(request.member_id, actor=_caller())
        return converters.preferences_to_proto(preferences)

    def UpdatePreferences(
        self, request: personalization_pb2.MemberPreferences, context: grpc.ServicerContext
    ) -> personalization_pb2.MemberPreferences:
        preferences = converters.preferences_from_proto(request)
        return converters.preferences_to_proto(
            self.personalization.members.update_preferences(preferences, actor=_caller())
        )

    def UpsertMember(
        self, request: personalization_pb2.Member, context: grpc.ServicerContext
    ) -> personalization_pb2.Member:
        member = converters.member_from_proto(request)
        return converters.member_to_proto(self.personalization.members.upsert(member, actor=_caller()))

    def GetMember(
        self, request: personalization_pb2.GetMemberRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.Member:
        member = self.personalization.members.get(request.member_id, request.loyalty_number, actor=_caller())
        return converters.member_to_proto(member)

    def GrantConsent(
        self, request: personalization_pb2.GrantConsentRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.Member:
        consent = converters.consent_from_proto(request.consent)
        member = self.personalization.members.grant_consent(request.member_id, consent, actor=_caller(request.actor))
        return converters.member_to_proto(member)

    def RevokeConsent(
        self, request: personalization_pb2.RevokeConsentRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.Member:
        member = self.personalization.members.revoke_consent(
            request.member_id,
            names_from_proto(SCOPES, request.scopes),
            actor=_caller(request.actor),
            reason=request.reason,
        )
        return converters.member_to_proto(member)

    def EraseMember(
        self, request: personalization_pb2.EraseMemberDataRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.EraseMemberDataResponse:
        counts = self.personalization.members.erase(
            request.member_id, actor=_caller(request.actor), reason=request.reason
        )
        return personalization_pb2.EraseMemberDataResponse(rows_removed=counts)

    def UpsertProducts(
        self, request: personalization_pb2.UpsertProductsRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.UpsertProductsResponse:
        products = [converters.product_from_proto(p) for p in request.products]
        count = self.personalization.catalog.upsert_products(products, actor=_caller())
        return personalization_pb2.UpsertProductsResponse(upserted=count)

    def SetInventory(
        self, request: personalization_pb2.SetInventoryRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.SetInventoryResponse:
        items = [converters.inventory_item_from_proto(i) for i in request.items]
        count = self.personalization.catalog.set_inventory(items, actor=_caller())
        return personalization_pb2.SetInventoryResponse(updated=count)

    def UpsertCampaign(
        self, request: personalization_pb2.Campaign, context: grpc.ServicerContext
    ) -> personalization_pb2.Campaign:
        campaign = converters.campaign_from_proto(request)
        stored = self.personalization.catalog.upsert_campaign(campaign, actor=_caller())
        response = personalization_pb2.Campaign()
        response.CopyFrom(request)
        response.campaign_id = stored.campaign_id
        return response

    def StreamStaffAlerts(
        self, request: personalization_pb2.StaffAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.StaffAlert]:
        kinds = names_from_proto(ALERT_KINDS, request.kinds)
        require_store_access(request.store_id)  # staff of one store see that store's alerts only
        # Subscribe before the catch-up read so that nothing raised in between is missed.
        subscription = self.personalization.bus.subscribe(request.store_id, kinds)
        try:
            sent: set[str] = set()
            for alert in self.personalization.alerts.recent(request.store_id, kinds):
                sent.add(alert.alert_id)
                yield converters.alert_to_proto(alert)
            while context.is_active() and not subscription.closed:
                live = subscription.get(self._poll_seconds)
                if live is not None and live.alert_id not in sent:
                    sent.add(live.alert_id)
                    yield converters.alert_to_proto(live)
        finally:
            subscription.close()

    def AcknowledgeAlert(
        self, request: personalization_pb2.AcknowledgeAlertRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.AcknowledgeAlertResponse:
        self.personalization.alerts.acknowledge(
            request.alert_id,
            request.staff_id,
            request.confirmed,
            actor=_caller(request.staff_id),
            stores=scoped_stores(),
        )
        return personalization_pb2.AcknowledgeAlertResponse()

    def QueryAudit(
        self, request: personalization_pb2.AuditQuery, context: grpc.ServicerContext
    ) -> personalization_pb2.AuditQueryResponse:
        entries = self.personalization.audit.query(
            request.member_id,
            time_from_proto(request.since, None),
            request.limit,
            actor=_caller(),
            performed_by=request.actor,
            action=request.action,
            until=time_from_proto(request.until, None),
        )
        return personalization_pb2.AuditQueryResponse(entries=[converters.audit_entry_to_proto(e) for e in entries])

    def VerifyAuditChain(
        self, request: personalization_pb2.VerifyAuditChainRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.VerifyAuditChainResponse:
        return converters.chain_report_to_proto(self.personalization.audit.verify(actor=_caller()))
