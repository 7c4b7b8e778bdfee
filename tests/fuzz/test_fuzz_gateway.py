"""The gateway against hostile requests, in front of the whole stack: every service in-process on real gRPC.

Detection and embedding run their real models, matching a real store, personalization a seeded SQLite
database, and the gateway calls them as it does in a store. Every gateway RPC gets a status, never
INTERNAL or UNKNOWN, within its deadline; hostile frames (random bytes, truncated and bit-flipped
photos, bombs, inconsistent raw frames) each get their own OK or INVALID_ARGUMENT while the batch is
answered; a stream survives them; every server stays SERVING.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import cv2
import grpc
import pytest
from fuzz_servers import (
    DEADLINE,
    TOKENS,
    FuzzServer,
    start_detection,
    start_embedding,
    start_gateway,
    start_matching,
    start_personalization,
    unary_methods,
)
from fuzz_support import NEVER, FuzzCases, bearer, fuzz_settings, messages, outcome_of, serving
from hypothesis import given
from hypothesis import strategies as st

from retailface.devtools.models import testdata_path
from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2

TARGET = "gateway RPCs"
SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
CAMERA = "fuzz-door"
FRAME_CODES = frozenset({grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FuzzServer]]:
    """Detection, embedding, matching, personalization and, in front of them, the gateway."""
    directory = tmp_path_factory.mktemp("gateway-fuzz")
    servers: dict[str, FuzzServer] = {}
    try:
        servers["detection"] = start_detection(directory / "detection")
        servers["embedding"] = start_embedding(directory / "embedding")
        servers["matching"] = start_matching(directory / "matching")
        servers["personalization"] = start_personalization(
            directory / "personalization", f"sqlite:///{directory / 'personalization.sqlite3'}"
        )
        camera = personalization_pb2.Camera(
            camera_id=CAMERA, store_id="store-01", role=personalization_pb2.CAMERA_ROLE_ENTRANCE, zone_id="entrance"
        )
        servers["personalization"].invoke("RegisterCamera", camera)
        servers["gateway"] = start_gateway(directory / "gateway", servers)
        yield servers
    finally:
        for server in reversed(servers.values()):
            server.stop()


@pytest.fixture(scope="module")
def gateway(stack: dict[str, FuzzServer]) -> FuzzServer:
    return stack["gateway"]


def photo() -> bytes:
    image = cv2.imread(str(testdata_path("insightface/t1.jpg")), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", cv2.resize(image, (320, 240)))[1].tobytes()


PHOTO = photo()


@st.composite
def hostile_frames(draw: st.DrawFn) -> common_pb2.Frame:
    kind = draw(st.sampled_from(["photo", "random", "truncated", "flipped", "bomb", "raw"]))
    frame = common_pb2.Frame(camera_id=CAMERA, store_id="store-01", sequence=draw(st.integers(0, 2**64 - 1)))
    if kind == "photo":
        frame.encoded = PHOTO
    elif kind == "random":
        frame.encoded = draw(st.binary(max_size=512))
    elif kind == "truncated":
        frame.encoded = PHOTO[: draw(st.integers(0, len(PHOTO) - 1))]
    elif kind == "flipped":
        data = bytearray(PHOTO)
        for position in draw(st.lists(st.integers(0, len(PHOTO) - 1), min_size=1, max_size=6)):
            data[position] ^= 0xFF
        frame.encoded = bytes(data)
    elif kind == "bomb":
        data = bytearray(PHOTO)
        sof = data.index(b"\xff\xc0")
        struct.pack_into(">HH", data, sof + 5, 65535, 65535)
        frame.encoded = bytes(data)
    else:
        frame.raw.width = draw(st.sampled_from([0, 1, 64, 2**32 - 1]))
        frame.raw.height = draw(st.sampled_from([0, 1, 48, 2**32 - 1]))
        frame.raw.stride = draw(st.sampled_from([0, 1, 192, 2**32 - 1]))
        frame.raw.format = draw(st.sampled_from([0, 1, 2, 3, 99]))
        frame.raw.pixels = bytes(draw(st.sampled_from([0, 1, 64 * 48 * 3, 64 * 48])))
    return frame


def check(outcome_code: grpc.StatusCode, seconds: float, what: str) -> None:
    assert outcome_code not in NEVER, what
    assert outcome_code != grpc.StatusCode.DEADLINE_EXCEEDED, what
    assert seconds < DEADLINE


@pytest.mark.parametrize(("method", "request_type"), unary_methods(SERVICE), ids=lambda v: getattr(v, "name", v))
def test_every_method_answers_hostile_fields_with_a_status(
    gateway: FuzzServer, method: str, request_type: object, fuzz_cases: FuzzCases
) -> None:
    @fuzz_settings(20)
    @given(request=messages(request_type))  # type: ignore[arg-type]
    def run(request: object) -> None:
        with fuzz_cases.case(TARGET):
            outcome = gateway.call(method, request)
            check(outcome.code, outcome.seconds, f"{method}: {outcome.code.name} {outcome.details}")

    run()


@fuzz_settings(50)
@given(frames=st.lists(hostile_frames(), min_size=1, max_size=4))
def test_each_hostile_frame_gets_its_own_status_and_the_batch_an_answer(
    gateway: FuzzServer, frames: list[common_pb2.Frame], fuzz_cases: FuzzCases
) -> None:
    with fuzz_cases.case(TARGET):
        result = gateway.invoke("ProcessFrames", gateway_pb2.FrameBatch(frames=frames), role="camera")
        assert len(result.results) == len(frames)
        assert {frame.status.code for frame in result.results} <= FRAME_CODES


@fuzz_settings(15)
@given(batches=st.lists(st.lists(hostile_frames(), min_size=1, max_size=3), min_size=1, max_size=4))
def test_a_stream_of_hostile_frames_answers_every_batch(
    gateway: FuzzServer, batches: list[list[common_pb2.Frame]], fuzz_cases: FuzzCases
) -> None:
    requests = [gateway_pb2.FrameBatch(frames=frames) for frames in batches]
    with fuzz_cases.case(TARGET):
        replies = list(gateway.stub.StreamFrames(iter(requests), metadata=bearer(TOKENS["camera"]), timeout=DEADLINE))
        # One reply per batch, in order (the stream's end may add one with the events of the camera's end).
        assert [len(reply.results) for reply in replies[: len(batches)]] == [len(frames) for frames in batches]


def test_a_stream_message_that_does_not_parse_ends_the_stream_with_invalid_argument(
    gateway: FuzzServer, fuzz_cases: FuzzCases
) -> None:
    # Regression: grpc answered INTERNAL "Exception deserializing request!".
    valid = gateway_pb2.FrameBatch(frames=[common_pb2.Frame(encoded=PHOTO, camera_id=CAMERA)]).SerializeToString()
    stream = gateway.channel.stream_stream("/retailface.v1.GatewayService/StreamFrames")
    with fuzz_cases.case(TARGET):
        outcome = outcome_of(
            lambda: list(
                stream(iter([valid, b"\x12\x03\xff\xff"]), metadata=bearer(TOKENS["camera"]), timeout=DEADLINE)
            )
        )
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("name", ["detection", "embedding", "matching", "personalization", "gateway"])
def test_every_server_is_still_serving(stack: dict[str, FuzzServer], name: str) -> None:
    assert serving(stack[name].channel, stack[name].service_name) == "SERVING"
