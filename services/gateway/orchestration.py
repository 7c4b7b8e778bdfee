"""Operations on one member across the backends: identify from one frame, enroll photos, erase.

Each is a short sequence of calls to detection, embedding, matching and personalization; a
failed call ends it with a `ServiceError` that names the step (`errors.calling`).
"""

from __future__ import annotations

import hashlib

import grpc
import structlog

from retailface.services.gateway.backends import Backends
from retailface.services.gateway.enrollment import DEFAULT_POLICY, EnrollmentPolicy, decide
from retailface.services.gateway.members import MemberCache, audit_identified
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument, ServiceError, calling
from retailface.services.shared.galleries import MEMBERS_GALLERY
from retailface.services.shared.identifiers import check_id
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    embedding_pb2,
    gateway_pb2,
    matching_pb2,
    personalization_pb2,
)

audit = structlog.get_logger("audit")

DEFAULT_IDENTIFY_CONTEXT = "kiosk"
ENROLLMENT_CAMERA = "enrollment"  # camera id of enrollment photos sent to detection
ENROLLMENT_TAGS = ("consent:face_identification",)


class MemberOperations:
    def __init__(
        self,
        backends: Backends,
        members: MemberCache,
        deadline: float,
        enrollment_policy: EnrollmentPolicy = DEFAULT_POLICY,
    ) -> None:
        self.backends = backends
        self.members = members
        self.deadline = deadline
        self.enrollment_policy = enrollment_policy

    def identify_once(self, request: gateway_pb2.IdentifyOnceRequest) -> gateway_pb2.IdentifyOnceResponse:
        """The largest face of one frame, searched at once (no K-of-N: a kiosk or POS asks once)."""
        face = self._largest_face(request.frame)
        response = gateway_pb2.IdentifyOnceResponse(decision=matching_pb2.DECISION_NO_MATCH)
        if not face.quality.passes:
            response.notes.append("the face does not pass the quality gates: " + failed_gates(face.quality))
            return response
        with calling("embedding"):
            embedded = self.backends.embedding.Embed(
                embedding_pb2.EmbedRequest(chips=[face.chip]), timeout=self.deadline
            )
        with calling("matching"):
            found = self.backends.matching.Search(
                matching_pb2.SearchRequest(
                    gallery=MEMBERS_GALLERY,
                    queries=[embedded.results[0].embedding],
                    top_k=2,
                    probe_qualities=[matching_pb2.ProbeQuality(inter_eye_px=face.quality.inter_eye_px, frames=1)],
                    min_sequence=self.backends.seen.newest(MEMBERS_GALLERY),
                ),
                timeout=self.deadline,
            ).results[0]
        response.decision = found.decision
        if found.decision != matching_pb2.DECISION_MATCH:
            return response
        candidate = found.candidates[0]
        member = self.members.identifiable(candidate.subject_id)
        if member is None:
            response.decision = matching_pb2.DECISION_NO_MATCH
            response.notes.append("no active consent for face identification")
            return response
        context = request.context or DEFAULT_IDENTIFY_CONTEXT
        identity = member.identity(candidate.score, 1, 1, found.calibration)
        audit_identified(identity, context=context, store_id=request.store_id, method="IdentifyOnce")
        response.identity.CopyFrom(identity)
        try:
            offers = self.backends.personalization.GetOffers(
                personalization_pb2.GetOffersRequest(
                    member_id=member.member_id, store_id=request.store_id, context=context
                ),
                timeout=self.deadline,
            )
        except grpc.RpcError as error:  # identified without offers rather than not at all
            response.notes.append(f"offers unavailable: {error.code().name}")
        else:
            response.offers.extend(offers.offers)
            response.notes.extend(offers.notes)
        return response

    def enroll(self, request: gateway_pb2.EnrollMemberRequest) -> gateway_pb2.EnrollMemberResponse:
        """One template per usable photo: its only face, or the face clearly in front, meeting the enrollment standard.

        Each photo's status tells the clerk what was done ("the face in front was enrolled, 2 other faces
        ignored") or what to fix ("photo 1: move closer (the face is too small)"); see `enrollment`.
        """
        member = request.member
        check_id(member.member_id, "member.member_id")
        if common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION not in member.consent.scopes:
            raise FailedPrecondition("the consent record must include the face_identification scope to enroll photos")
        if not request.photos:
            raise InvalidArgument("no photos: send one or more photos with one face each")
        frames = [common_pb2.Frame(encoded=photo, camera_id=ENROLLMENT_CAMERA) for photo in request.photos]
        with calling("detection"):
            detected = self.backends.detection.Detect(
                detection_pb2.DetectRequest(frames=frames, include_chips=True), timeout=self.deadline
            )
        outcomes = [
            _photo_outcome(index, photo, faces, member.member_id, self.enrollment_policy)
            for index, (photo, faces) in enumerate(zip(request.photos, detected.results, strict=True))
        ]
        response = gateway_pb2.EnrollMemberResponse(
            member_id=member.member_id, photos=[outcome for outcome, _ in outcomes]
        )
        usable = [(outcome, chip) for outcome, chip in outcomes if chip is not None]
        if not usable:
            problems = "; ".join(photo.status.message for photo in response.photos)
            raise InvalidArgument(f"no usable photo: {problems}")
        with calling("enrollment"):
            embedded = self.backends.embedding.Embed(
                embedding_pb2.EmbedRequest(chips=[chip for _, chip in usable]), timeout=self.deadline
            )
            self.backends.personalization.UpsertMember(member, timeout=self.deadline)
            templates = [
                matching_pb2.Template(template_id=outcome.template_id, embedding=result.embedding)
                for (outcome, _), result in zip(usable, embedded.results, strict=True)
            ]
            enrolled = self.backends.matching.Enroll(
                matching_pb2.EnrollRequest(
                    gallery=MEMBERS_GALLERY, subject_id=member.member_id, templates=templates, tags=ENROLLMENT_TAGS
                ),
                timeout=self.deadline,
            )
        self.backends.seen.saw({MEMBERS_GALLERY: enrolled.sequence})
        self.members.forget(member.member_id)
        response.templates_added = enrolled.added
        audit.info("enrolled", member_id=member.member_id, templates=enrolled.added, actor=request.actor)
        return response

    def erase(self, request: gateway_pb2.EraseMemberRequest) -> gateway_pb2.EraseMemberResponse:
        """Templates first: from the next frame on, the person cannot be matched any more. Then the personal
        data, then the receipt: personalization records what was removed against the erasure request."""
        if not request.member_id:
            raise InvalidArgument("member_id is required")
        if request.request_id:
            check_id(request.request_id, "request_id")
        with calling("erasure"):
            erased = self.backends.matching.EraseSubject(
                matching_pb2.EraseSubjectRequest(gallery="", subject_id=request.member_id), timeout=self.deadline
            )
            self.backends.seen.saw(erased.sequences)
            self.members.forget(request.member_id)
            removed = self.backends.personalization.EraseMember(
                personalization_pb2.EraseMemberDataRequest(
                    member_id=request.member_id, actor=request.actor, reason=request.reason
                ),
                timeout=self.deadline,
            )
        self.members.forget(request.member_id)
        audit.info(
            "erased",
            member_id=request.member_id,
            actor=request.actor,
            reason=request.reason,
            templates=erased.templates_removed,
        )
        receipt = self._record_receipt(request, erased.templates_removed, dict(removed.rows_removed))
        return gateway_pb2.EraseMemberResponse(
            templates_removed=erased.templates_removed, rows_removed=dict(removed.rows_removed), receipt=receipt
        )

    def _record_receipt(
        self, request: gateway_pb2.EraseMemberRequest, templates_removed: int, rows_removed: dict[str, int]
    ) -> personalization_pb2.ErasureRequest:
        """The erasure request, completed with what was removed (one is recorded when request_id is empty)."""
        try:
            with calling("personalization"):
                return self.backends.personalization.CompleteErasure(
                    personalization_pb2.CompleteErasureRequest(
                        request_id=request.request_id,
                        member_id=request.member_id,
                        actor=request.actor,
                        templates_removed=templates_removed,
                        rows_removed=rows_removed,
                    ),
                    timeout=self.deadline,
                )
        except ServiceError as error:
            rows = sum(rows_removed.values())
            raise ServiceError(
                f"member {request.member_id!r} was erased ({templates_removed} templates, {rows} rows), but the "
                f"receipt was not recorded: {error.message}; record it with personalization's CompleteErasure",
                error.code,
            ) from error

    def _largest_face(self, frame: common_pb2.Frame) -> common_pb2.Face:
        with calling("detection"):
            result = self.backends.detection.Detect(
                detection_pb2.DetectRequest(frames=[frame], include_chips=True), timeout=self.deadline
            ).results[0]
        if result.status.code != 0:
            raise InvalidArgument(result.status.message)
        if not result.faces:
            raise InvalidArgument("no face found in the frame")
        return max(result.faces, key=lambda face: face.box.width * face.box.height)


def _photo_outcome(
    index: int, photo: bytes, detected: detection_pb2.FrameFaces, member_id: str, policy: EnrollmentPolicy
) -> tuple[gateway_pb2.PhotoResult, common_pb2.AlignedChip | None]:
    """What became of one enrollment photo, and its face chip when it makes a template.

    `quality` holds the judged face's measures with `passes`/`failed_gates` by the enrollment
    standard, not identification's gates.
    """
    outcome = gateway_pb2.PhotoResult(index=index)
    if detected.status.code != 0:
        outcome.status.CopyFrom(detected.status)
        return outcome, None
    decision = decide(detected.faces, detected.width, detected.height, policy)
    if decision.face is not None:
        outcome.quality.CopyFrom(decision.face.quality)
        del outcome.quality.failed_gates[:]
        outcome.quality.failed_gates.extend(decision.failed_gates)
        outcome.quality.passes = not decision.failed_gates
    if not decision.accepted or decision.face is None:
        outcome.status.CopyFrom(_invalid(decision.message(index)))
        return outcome, None
    outcome.status.message = decision.message(index)
    outcome.template_id = f"{member_id}:{hashlib.sha256(photo).hexdigest()[:16]}"
    return outcome, decision.face.chip


def _invalid(message: str) -> common_pb2.ItemStatus:
    return common_pb2.ItemStatus(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=message)


def failed_gates(quality: common_pb2.FaceQuality) -> str:
    names = [common_pb2.QualityGate.Name(gate).removeprefix("QUALITY_GATE_").lower() for gate in quality.failed_gates]
    return ", ".join(names) or "unknown"
