"""What the gateway knows of a member: personalization's recognition answer, cached briefly.

Personalization is the one home of the rule "who may be identified and greeted, and by what
name" (`Member.recognition`); the gateway only reads that answer and acts on it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import grpc
import structlog

from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2, personalization_pb2_grpc

log = structlog.get_logger(__name__)
audit = structlog.get_logger("audit")


@dataclass(frozen=True)
class MemberView:
    """Personalization's answer for one member: may the gateway name them, and greet them as whom."""

    member_id: str
    may_identify: bool
    may_greet: bool
    greeting_name: str

    @classmethod
    def of(cls, member: personalization_pb2.Member) -> MemberView:
        recognition = member.recognition
        return cls(member.member_id, recognition.may_identify, recognition.may_greet, recognition.greeting_name)

    def identity(
        self,
        score: float,
        agreeing_frames: int,
        window_frames: int,
        calibration: common_pb2.Calibration | None = None,
        fused_frames: int = 1,
    ) -> gateway_pb2.Identity:
        """The identity a client sees; it carries a name only for members who may be greeted, and the
        measured error rates of the decision that named the member."""
        identity = gateway_pb2.Identity(
            member_id=self.member_id,
            score=score,
            agreeing_frames=agreeing_frames,
            window_frames=window_frames,
            fused_frames=fused_frames,
        )
        if calibration is not None:
            identity.calibration.CopyFrom(calibration)
        if self.may_greet:
            identity.display_name = self.greeting_name
        return identity


def audit_identified(identity: gateway_pb2.Identity, **where: object) -> None:
    """The audit record of one identification: who, how sure, at which measured error rates, and where."""
    calibration = identity.calibration
    audit.info(
        "identified",
        member_id=identity.member_id,
        score=round(identity.score, 4),
        agreeing_frames=identity.agreeing_frames,
        fused_frames=identity.fused_frames,
        quality_bin=calibration.quality_bin,
        threshold=round(calibration.threshold, 4),
        estimated_fpir=calibration.estimated_fpir,
        estimated_fnir=calibration.estimated_fnir,
        calibration_id=calibration.calibration_id,
        **where,
    )


class MemberCache:
    """Members' recognition answers, refreshed often.

    Consent changes (revocations above all) must take effect at once, so entries live only
    `ttl` seconds; when personalization is unreachable the last known state is used rather
    than stopping identification, and a member never seen before is not identified.
    """

    def __init__(self, stub: personalization_pb2_grpc.PersonalizationServiceStub, ttl: float, deadline: float):
        self._stub = stub
        self._ttl = ttl
        self._deadline = deadline
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, MemberView | None]] = {}

    def get(self, member_id: str) -> MemberView | None:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(member_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            member = self._stub.GetMember(
                personalization_pb2.GetMemberRequest(member_id=member_id), timeout=self._deadline
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                view = None
            elif cached is not None:
                log.warning("member_cache_stale", member_id=member_id, code=error.code().name)
                return cached[1]
            else:
                log.warning("member_unknown_personalization_down", member_id=member_id, code=error.code().name)
                return None
        else:
            view = MemberView.of(member)
        with self._lock:
            self._entries[member_id] = (now, view)
        return view

    def identifiable(self, member_id: str) -> MemberView | None:
        """The member, when they may be identified; None for anyone to be treated as anonymous."""
        member = self.get(member_id)
        return member if member is not None and member.may_identify else None

    def forget(self, member_id: str) -> None:
        with self._lock:
            self._entries.pop(member_id, None)
