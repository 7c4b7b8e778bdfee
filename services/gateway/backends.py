"""The backend services the gateway calls: one stub each, on channels opened from the settings."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

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


class SeenChanges:
    """The newest change of each matching gallery this gateway made (enroll, erase): every search asks for a
    replica that holds it (SearchRequest.min_sequence), so an erasure holds from the next frame on, whichever
    matching replica answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[str, int] = {}

    def saw(self, sequences: Mapping[str, int]) -> None:
        with self._lock:
            for gallery, sequence in sequences.items():
                self._newest[gallery] = max(self._newest.get(gallery, 0), int(sequence))

    def newest(self, gallery: str) -> int:
        with self._lock:
            return self._newest.get(gallery, 0)


@dataclass
class Backends:
    detection: detection_pb2_grpc.DetectionServiceStub
    embedding: embedding_pb2_grpc.EmbeddingServiceStub
    matching: matching_pb2_grpc.MatchingServiceStub
    personalization: personalization_pb2_grpc.PersonalizationServiceStub
    channels: tuple[grpc.Channel, ...]
    seen: SeenChanges = field(default_factory=SeenChanges)

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
