"""RetailFace client library: cameras, POS systems, staff devices and admin tools.

Needs only grpcio and protobuf; sending numpy frames or reading videos needs the `camera` extra.
"""

from retailface.client.clients import AdminClient, CameraClient, PosClient, StaffClient
from retailface.client.connection import Connection, connect

__all__ = ["AdminClient", "CameraClient", "Connection", "PosClient", "StaffClient", "connect"]
