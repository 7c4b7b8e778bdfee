"""The backend services the gateway calls: one stub each, on channels opened from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from retailface.services.shared.channels import open_channel
from retailface.services.shared.config import ServiceConfig
from retailface.services.shared.errors import OUTAGE_CODES
from retailface.v1 import (
    detection_pb2_grpc,
    embedding_pb2_grpc,
    matching_pb2_grpc,
    personalization_pb2_grpc,
)

# A backend that is out or overloaded: the gateway answers without it (degrades) instead of failing.
DEGRADED_CODES = OUTAGE_CODES | {grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass
class Backends:
    detection: detection_pb2_grpc.DetectionServiceStub
    embedding: embedding_pb2_grpc.EmbeddingServiceStub
    matching: matching_pb2_grpc.MatchingServiceStub
    personalization: personalization_pb2_grpc.PersonalizationServiceStub
    channels: tuple[grpc.Channel, ...]

    @classmethod
    def connect(cls, cfg: ServiceConfig) -> Backends:
        channels = tuple(
            open_channel(cfg.get(f"RETAILFACE_GATEWAY_{name}_ADDR"), cfg)
            for name in ("DETECTION", "EMBEDDING", "MATCHING", "PERSONALIZATION")
        )
        return cls(
            detection_pb2_grpc.DetectionServiceStub(channels[0]),
            embedding_pb2_grpc.EmbeddingServiceStub(channels[1]),
            matching_pb2_grpc.MatchingServiceStub(channels[2]),
            personalization_pb2_grpc.PersonalizationServiceStub(channels[3]),
            channels,
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
