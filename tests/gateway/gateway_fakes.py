"""In-process stand-ins for the four backends, for the gateway's unit tests.

Each fake answers like its service for the few cases the tests set up and records the
requests it got; `error` makes every later call fail with that status.
"""

from __future__ import annotations

import grpc
import numpy as np

from retailface.services.gateway.backends import Backends
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    embedding_pb2,
    matching_pb2,
    personalization_pb2,
)

# 128-d like SFace: random faces are then nearly orthogonal, as different people are.
MODEL = common_pb2.ModelInfo(model_id="fake-embedder", version="v3", dim=128)
REJECTED_BATCH = b"reject-the-batch"  # detection refuses the whole batch when a frame holds these bytes


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def face(x: float, chip: bytes = b"", passes: bool = True, width: float = 60) -> common_pb2.Face:
    """A detected face at `x`; `chip` (bytes standing for the pixels) is what embedding sees."""
    detected = common_pb2.Face(box=common_pb2.Box(x=x, y=20, width=width, height=80), detection_score=0.9)
    detected.quality.passes = passes
    if not passes:
        detected.quality.failed_gates.append(common_pb2.QUALITY_GATE_BLURRY)
    if chip:
        detected.chip.size = 112
        detected.chip.bgr = chip
    return detected


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=MODEL.dim)
    return [float(v) for v in vector / np.linalg.norm(vector)]


def member(
    member_id: str, may_identify: bool, may_greet: bool = False, greeting_name: str = ""
) -> personalization_pb2.Member:
    """A member record as personalization returns it; its consent and preferences say yes to all.

    Only `recognition` decides: the gateway must not re-derive the answer from the rest.
    """
    record = personalization_pb2.Member(member_id=member_id, display_name=f"Full Name {member_id}")
    record.consent.policy_version = "2026-01"
    record.consent.scopes.extend(
        [common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION, common_pb2.CONSENT_SCOPE_STAFF_GREETING]
    )
    record.preferences.allow_greeting = True
    record.preferences.preferred_name = f"Preferred {member_id}"
    record.recognition.may_identify = may_identify
    record.recognition.may_greet = may_greet
    record.recognition.greeting_name = greeting_name
    return record


class _Fake:
    def __init__(self) -> None:
        self.error: grpc.RpcError | None = None

    def _fail_if_asked(self) -> None:
        if self.error is not None:
            raise self.error


class FakeDetection(_Fake):
    """Answers each frame with the faces listed for its bytes; other bytes cannot be decoded."""

    def __init__(self, faces: dict[bytes, list[common_pb2.Face]]) -> None:
        super().__init__()
        self.faces = faces
        self.calls: list[detection_pb2.DetectRequest] = []

    def Detect(
        self, request: detection_pb2.DetectRequest, timeout: float | None = None
    ) -> detection_pb2.DetectResponse:
        self.calls.append(request)
        self._fail_if_asked()
        if any(frame.encoded == REJECTED_BATCH for frame in request.frames):
            raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "frame 0 is larger than the limit")
        response = detection_pb2.DetectResponse()
        for index, frame in enumerate(request.frames):
            if frame.encoded in self.faces:
                response.results.add(faces=self.faces[frame.encoded], decode_ms=1.0, detect_ms=2.0)
            else:
                status = common_pb2.ItemStatus(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=f"frame {index}: cannot decode"
                )
                response.results.add(status=status)
        return response


class FakeEmbedding(_Fake):
    """Embeds each chip to the vector listed for its bytes."""

    def __init__(self, vectors: dict[bytes, list[float]]) -> None:
        super().__init__()
        self.vectors = vectors
        self.calls: list[embedding_pb2.EmbedRequest] = []

    def Embed(self, request: embedding_pb2.EmbedRequest, timeout: float | None = None) -> embedding_pb2.EmbedResponse:
        self.calls.append(request)
        self._fail_if_asked()
        response = embedding_pb2.EmbedResponse(model=MODEL, embed_ms=4.0)
        for chip in request.chips:
            item = response.results.add()
            item.embedding.values.extend(self.vectors[chip.bgr])
            item.embedding.model_id = MODEL.model_id
            item.embedding.model_version = MODEL.version
        return response


class FakeMatching(_Fake):
    """A members gallery: a query equal to a subject's vector matches that subject."""

    def __init__(self, subjects: dict[str, list[float]]) -> None:
        super().__init__()
        self.subjects = subjects
        self.searches: list[matching_pb2.SearchRequest] = []
        self.enrolled: list[matching_pb2.EnrollRequest] = []
        self.erased: list[matching_pb2.EraseSubjectRequest] = []
        self.sequence = 40  # the members gallery's last change

    def Search(self, request: matching_pb2.SearchRequest, timeout: float | None = None) -> matching_pb2.SearchResponse:
        self.searches.append(request)
        self._fail_if_asked()
        response = matching_pb2.SearchResponse()
        for index, query in enumerate(request.queries):
            found = [s for s, vector in self.subjects.items() if np.allclose(vector, query.values, atol=1e-6)]
            if found:
                result = response.results.add(
                    decision=matching_pb2.DECISION_MATCH,
                    candidates=[matching_pb2.SubjectScore(subject_id=found[0], score=0.8)],
                )
            else:
                result = response.results.add(decision=matching_pb2.DECISION_NO_MATCH)
            if request.probe_qualities:  # a calibrated decision says which operating point it used
                probe = request.probe_qualities[index]
                result.calibration.quality_bin = f"{probe.inter_eye_px:.0f}px"
                result.calibration.frames = probe.frames
                result.calibration.estimated_fpir = 1e-3
        return response

    def Enroll(self, request: matching_pb2.EnrollRequest, timeout: float | None = None) -> matching_pb2.EnrollResponse:
        self.enrolled.append(request)
        self._fail_if_asked()
        self.sequence += 1
        return matching_pb2.EnrollResponse(added=len(request.templates), sequence=self.sequence)

    def EraseSubject(
        self, request: matching_pb2.EraseSubjectRequest, timeout: float | None = None
    ) -> matching_pb2.EraseSubjectResponse:
        self.erased.append(request)
        self._fail_if_asked()
        self.sequence += 1
        return matching_pb2.EraseSubjectResponse(
            templates_removed=2, sequences={"members": self.sequence, "watchlist": 3}
        )


class FakePersonalization(_Fake):
    """Members by id, the registered cameras, and the visit events, offers asked, members written and camera
    lists asked for (`camera_lists`)."""

    def __init__(
        self,
        members: dict[str, personalization_pb2.Member],
        cameras: list[personalization_pb2.Camera] | None = None,
    ) -> None:
        super().__init__()
        self.members = members
        self.cameras = list(cameras or [])
        self.camera_version = 1
        self.camera_lists = 0
        self.events: list[personalization_pb2.VisitEvent] = []
        self.upserted: list[personalization_pb2.Member] = []
        self.erasure_requests: dict[str, str] = {}  # pending erasure request id -> who asked
        self.receipts_asked: list[personalization_pb2.CompleteErasureRequest] = []

    def register(self, camera: personalization_pb2.Camera) -> None:
        """As RegisterCamera: the camera is added and the registry's version changes."""
        self.cameras.append(camera)
        self.camera_version += 1

    def ListCameras(
        self, request: personalization_pb2.ListCamerasRequest, timeout: float | None = None
    ) -> personalization_pb2.ListCamerasResponse:
        self.camera_lists += 1
        self._fail_if_asked()
        return personalization_pb2.ListCamerasResponse(cameras=self.cameras, version=self.camera_version)

    def GetMember(
        self, request: personalization_pb2.GetMemberRequest, timeout: float | None = None
    ) -> personalization_pb2.Member:
        self._fail_if_asked()
        if request.member_id not in self.members:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no member {request.member_id}")
        return self.members[request.member_id]

    def RecordVisitEvent(
        self, event: personalization_pb2.VisitEvent, timeout: float | None = None
    ) -> personalization_pb2.VisitEventResult:
        self._fail_if_asked()
        self.events.append(event)
        return personalization_pb2.VisitEventResult()

    def GetOffers(
        self, request: personalization_pb2.GetOffersRequest, timeout: float | None = None
    ) -> personalization_pb2.GetOffersResponse:
        self._fail_if_asked()
        offer = common_pb2.Offer(sku=f"offer-for-{request.member_id}")
        return personalization_pb2.GetOffersResponse(offers=[offer], notes=[f"context {request.context}"])

    def UpsertMember(
        self, record: personalization_pb2.Member, timeout: float | None = None
    ) -> personalization_pb2.Member:
        self._fail_if_asked()
        self.upserted.append(record)
        return record

    def EraseMember(
        self, request: personalization_pb2.EraseMemberDataRequest, timeout: float | None = None
    ) -> personalization_pb2.EraseMemberDataResponse:
        self._fail_if_asked()
        return personalization_pb2.EraseMemberDataResponse(rows_removed={"members": 1})

    def CompleteErasure(
        self, request: personalization_pb2.CompleteErasureRequest, timeout: float | None = None
    ) -> personalization_pb2.ErasureRequest:
        """The receipt as personalization records it; an unknown request id is NOT_FOUND."""
        self._fail_if_asked()
        self.receipts_asked.append(request)
        if request.request_id and request.request_id not in self.erasure_requests:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"unknown erasure request {request.request_id!r}")
        return personalization_pb2.ErasureRequest(
            request_id=request.request_id or "recorded-on-completion",
            member_ref=f"ref-of-{request.member_id}",
            requested_by=self.erasure_requests.get(request.request_id, request.actor),
            status=personalization_pb2.ERASURE_STATUS_COMPLETED,
            completed_by=request.actor,
            templates_removed=request.templates_removed,
            rows_removed=dict(request.rows_removed),
        )


def backends(
    detection: FakeDetection, embedding: FakeEmbedding, matching: FakeMatching, personalization: FakePersonalization
) -> Backends:
    return Backends(detection, embedding, matching, personalization, channels=())  # type: ignore[arg-type]
