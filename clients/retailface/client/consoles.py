"""Typed wrappers for the web consoles: one shared channel per service, one token per person.

A console serves many people over one connection: `open_channel` opens the (m)TLS channel once, and
`as_caller(channel, token)` gives a `Connection` that presents one person's bearer token on that same
channel (no new connection per person). Each client below wraps the calls of one console:

- `StaffConsoleClient`: staff alerts (gateway) and their acknowledgements (personalization);
- `MemberPortalClient`: a member's own data, called by the web with its own token for the member it
  signed in;
- `PrivacyClient`: consent history, erasure requests and erasures (gateway), audit search, access exports;
- `StoreAdminClient`: stores, cameras and the watchlist; `AnalyticsClient`: store aggregates.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from retailface.client.connection import MAX_MESSAGE_BYTES, Connection, MetadataInterceptor
from retailface.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    personalization_pb2,
    personalization_pb2_grpc,
)

DEFAULT_TIMEOUT = 15.0


def open_channel(
    target: str,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    insecure: bool = False,
) -> grpc.Channel:
    """A channel without a token: TLS unless `insecure`, mutual TLS when `cert` and `key` are given."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if insecure:
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    return grpc.secure_channel(target, credentials, options=options)


def as_caller(channel: grpc.Channel, token: str) -> Connection:
    """`channel` presenting `token`; closing the Connection would close the shared channel, so don't."""
    if not token:
        raise ValueError("a bearer token is required")
    return Connection(grpc.intercept_channel(channel, MetadataInterceptor(token, lambda: uuid.uuid4().hex)))


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class StaffConsoleClient:
    """A staff screen: the store's alerts as they are raised, and acknowledging or confirming one."""

    def __init__(self, gateway: Connection, personalization: Connection, store_id: str) -> None:
        self._gateway = gateway_pb2_grpc.GatewayServiceStub(gateway.channel)
        self._personalization = personalization_pb2_grpc.PersonalizationServiceStub(personalization.channel)
        self.store_id = store_id

    def alerts(self, kinds: Sequence[int] = ()) -> Iterator[common_pb2.StaffAlert]:
        """The store's alerts (recent unacknowledged ones first, then live); cancel() the iterator to stop."""
        return self._gateway.StreamStaffAlerts(
            personalization_pb2.StaffAlertsRequest(store_id=self.store_id, kinds=list(kinds))
        )

    def acknowledge(
        self, alert_id: str, staff_id: str, confirmed: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._personalization.AcknowledgeAlert(
            personalization_pb2.AcknowledgeAlertRequest(alert_id=alert_id, staff_id=staff_id, confirmed=confirmed),
            timeout=timeout,
        )


class MemberPortalClient:
    """One member's own data. `member_id` comes from a redeemed sign-in code, never from the browser."""

    def __init__(self, personalization: Connection) -> None:
        self._stub = personalization_pb2_grpc.PersonalizationServiceStub(personalization.channel)

    def redeem(self, code: str, timeout: float = DEFAULT_TIMEOUT) -> personalization_pb2.RedeemMemberSignInResponse:
        return self._stub.RedeemMemberSignIn(personalization_pb2.RedeemMemberSignInRequest(code=code), timeout=timeout)

    def member(self, member_id: str, timeout: float = DEFAULT_TIMEOUT) -> personalization_pb2.Member:
        return self._stub.GetMember(personalization_pb2.GetMemberRequest(member_id=member_id), timeout=timeout)

    def update_preferences(
        self, preferences: personalization_pb2.MemberPreferences, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.MemberPreferences:
        return self._stub.UpdatePreferences(preferences, timeout=timeout)

    def grant(
        self, member_id: str, consent: common_pb2.ConsentRecord, actor: str, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.Member:
        return self._stub.GrantConsent(
            personalization_pb2.GrantConsentRequest(member_id=member_id, consent=consent, actor=actor), timeout=timeout
        )

    def revoke(
        self, member_id: str, scopes: Sequence[int], actor: str, reason: str, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.Member:
        return self._stub.RevokeConsent(
            personalization_pb2.RevokeConsentRequest(
                member_id=member_id, scopes=list(scopes), actor=actor, reason=reason
            ),
            timeout=timeout,
        )

    def unlike(
        self,
        member_id: str,
        offer_id: str = "",
        sku: str = "",
        at: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Never offer this again: the offer's item (`offer_id`), or a product (`sku`)."""
        feedback = personalization_pb2.OfferFeedback(
            feedback_id=uuid.uuid4().hex,
            member_id=member_id,
            offer_id=offer_id,
            sku=sku,
            type=personalization_pb2.FEEDBACK_TYPE_UNLIKED,
        )
        if at is not None:
            feedback.at.CopyFrom(timestamp(at))
        else:
            feedback.at.GetCurrentTime()
        self._stub.Feedback(feedback, timeout=timeout)

    def activity(
        self, member_id: str, limit: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.MemberActivity:
        return self._stub.GetMemberActivity(
            personalization_pb2.MemberActivityRequest(member_id=member_id, limit=limit), timeout=timeout
        )

    def export(self, member_id: str, actor: str = "member", timeout: float = DEFAULT_TIMEOUT) -> bytes:
        response = self._stub.ExportMemberData(
            personalization_pb2.ExportMemberDataRequest(member_id=member_id, actor=actor), timeout=timeout
        )
        return bytes(response.json_document)

    def request_erasure(
        self, member_id: str, reason: str, actor: str = "member", timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.ErasureRequest:
        return self._stub.RequestErasure(
            personalization_pb2.RequestErasureRequest(member_id=member_id, actor=actor, reason=reason), timeout=timeout
        )


class PrivacyClient:
    """The privacy office: consent records and their history, erasures with receipts, audit search, exports."""

    def __init__(self, gateway: Connection, personalization: Connection) -> None:
        self._gateway = gateway_pb2_grpc.GatewayServiceStub(gateway.channel)
        self._stub = personalization_pb2_grpc.PersonalizationServiceStub(personalization.channel)

    def member(self, member_id: str, timeout: float = DEFAULT_TIMEOUT) -> personalization_pb2.Member:
        return self._stub.GetMember(personalization_pb2.GetMemberRequest(member_id=member_id), timeout=timeout)

    def consent_history(
        self, member_id: str, timeout: float = DEFAULT_TIMEOUT
    ) -> Sequence[personalization_pb2.ConsentChange]:
        response = self._stub.ListConsentHistory(
            personalization_pb2.ConsentHistoryRequest(member_id=member_id), timeout=timeout
        )
        return list(response.changes)

    def erasure_requests(
        self, status: int = 0, limit: int = 100, timeout: float = DEFAULT_TIMEOUT
    ) -> Sequence[personalization_pb2.ErasureRequest]:
        response = self._stub.ListErasureRequests(
            personalization_pb2.ListErasureRequestsRequest(status=status, limit=limit), timeout=timeout
        )
        return list(response.requests)

    def erase(
        self, member_id: str, actor: str, reason: str, request_id: str = "", timeout: float = 60.0
    ) -> gateway_pb2.EraseMemberResponse:
        """Face templates and personal data together, through the gateway; the response carries the receipt."""
        return self._gateway.EraseMember(
            gateway_pb2.EraseMemberRequest(member_id=member_id, actor=actor, reason=reason, request_id=request_id),
            timeout=timeout,
        )

    def audit(
        self,
        member_id: str = "",
        actor: str = "",
        action: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Sequence[personalization_pb2.AuditEntry]:
        query = personalization_pb2.AuditQuery(member_id=member_id, actor=actor, action=action, limit=limit)
        if since is not None:
            query.since.CopyFrom(timestamp(since))
        if until is not None:
            query.until.CopyFrom(timestamp(until))
        return list(self._stub.QueryAudit(query, timeout=timeout).entries)

    def export(self, member_id: str, actor: str, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        response = self._stub.ExportMemberData(
            personalization_pb2.ExportMemberDataRequest(member_id=member_id, actor=actor), timeout=timeout
        )
        return bytes(response.json_document)

    def issue_sign_in(
        self, member_id: str, actor: str, ttl_seconds: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.IssueMemberSignInResponse:
        return self._stub.IssueMemberSignIn(
            personalization_pb2.IssueMemberSignInRequest(member_id=member_id, actor=actor, ttl_seconds=ttl_seconds),
            timeout=timeout,
        )

    def watchlist(
        self, include_expired: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> Sequence[personalization_pb2.WatchlistEntry]:
        response = self._stub.ListWatchlist(
            personalization_pb2.ListWatchlistRequest(include_expired=include_expired), timeout=timeout
        )
        return list(response.entries)


class StoreAdminClient:
    """Stores (timezone, watchlist switch), cameras and watchlist entries; every change is audited."""

    def __init__(self, personalization: Connection) -> None:
        self._stub = personalization_pb2_grpc.PersonalizationServiceStub(personalization.channel)

    def upsert_store(
        self,
        store_id: str,
        name: str,
        timezone: str,
        watchlist_enabled: bool,
        actor: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.Store:
        return self._stub.UpsertStore(
            personalization_pb2.Store(
                store_id=store_id, name=name, timezone=timezone, watchlist_enabled=watchlist_enabled, actor=actor
            ),
            timeout=timeout,
        )

    def stores(self, timeout: float = DEFAULT_TIMEOUT) -> Sequence[personalization_pb2.Store]:
        return list(self._stub.ListStores(personalization_pb2.ListStoresRequest(), timeout=timeout).stores)

    def register_camera(
        self,
        camera_id: str,
        store_id: str,
        role: int,
        zone_id: str,
        lane_id: str,
        actor: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.Camera:
        return self._stub.RegisterCamera(
            personalization_pb2.Camera(
                camera_id=camera_id, store_id=store_id, role=role, zone_id=zone_id, lane_id=lane_id, actor=actor
            ),
            timeout=timeout,
        )

    def remove_camera(self, camera_id: str, actor: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._stub.RemoveCamera(
            personalization_pb2.RemoveCameraRequest(camera_id=camera_id, actor=actor), timeout=timeout
        )

    def cameras(self, store_id: str = "", timeout: float = DEFAULT_TIMEOUT) -> Sequence[personalization_pb2.Camera]:
        return list(
            self._stub.ListCameras(personalization_pb2.ListCamerasRequest(store_id=store_id), timeout=timeout).cameras
        )

    def upsert_watchlist_entry(
        self,
        subject_id: str,
        reason: str,
        expires_at: float,
        actor: str,
        confirm: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.WatchlistEntry:
        entry = personalization_pb2.WatchlistEntry(subject_id=subject_id, reason=reason, actor=actor, confirm=confirm)
        if expires_at:
            entry.expires_at.CopyFrom(timestamp(expires_at))
        return self._stub.UpsertWatchlistEntry(entry, timeout=timeout)

    def remove_watchlist_entry(
        self, subject_id: str, actor: str, reason: str, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._stub.RemoveWatchlistEntry(
            personalization_pb2.RemoveWatchlistEntryRequest(subject_id=subject_id, actor=actor, reason=reason),
            timeout=timeout,
        )

    def watchlist(
        self, include_expired: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> Sequence[personalization_pb2.WatchlistEntry]:
        response = self._stub.ListWatchlist(
            personalization_pb2.ListWatchlistRequest(include_expired=include_expired), timeout=timeout
        )
        return list(response.entries)


class AnalyticsClient:
    """A store's aggregates: nothing biometric, nothing per person."""

    def __init__(self, personalization: Connection) -> None:
        self._stub = personalization_pb2_grpc.PersonalizationServiceStub(personalization.channel)

    def store(
        self, store_id: str, since: float, until: float | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.StoreAnalytics:
        request = personalization_pb2.StoreAnalyticsRequest(store_id=store_id, since=timestamp(since))
        if until is not None:
            request.until.CopyFrom(timestamp(until))
        return self._stub.GetStoreAnalytics(request, timeout=timeout)
