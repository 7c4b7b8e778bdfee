"""Gateway servicer: the front door for cameras, kiosks, POS systems, staff devices and admin tools.

The orchestration (detection -> embedding -> matching -> tracking -> personalization) is the
gateway issue's work; until it lands every method answers UNIMPLEMENTED (gRPC's default),
never a fake answer. Roles per method are part of the contract and enforced already.
"""

from __future__ import annotations

from retailface.services.shared.config import ServiceConfig, Setting
from retailface.services.shared.server import Registration
from retailface.v1 import gateway_pb2_grpc

SETTINGS: list[Setting] = []

METHOD_ROLES: dict[str, frozenset[str]] = {
    "ProcessFrames": frozenset({"camera"}),
    "StreamFrames": frozenset({"camera"}),
    "IdentifyOnce": frozenset({"camera", "pos"}),
    "EnrollMember": frozenset({"admin"}),
    "EraseMember": frozenset({"admin"}),
    "ListGalleries": frozenset({"admin"}),
    "GetCheckoutOffers": frozenset({"pos"}),
    "RecordPurchase": frozenset({"pos"}),
    "StreamStaffAlerts": frozenset({"staff"}),
}


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """Inherits UNIMPLEMENTED for every method until the gateway issue implements them."""


def build(config: ServiceConfig) -> Registration:
    return Registration(
        servicer=GatewayServicer(),
        add_to_server=gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
        service_name="retailface.v1.GatewayService",
        method_roles=METHOD_ROLES,
    )
