"""A command-line camera: streams a video file or a capture device to the gateway.

    retailface-camera --video entrance.mp4 --camera entrance-1 --store s1 --token-file camera.token

Frames carry the video's own timestamps, so tracking and dwell times follow video time
whatever the playback speed (--realtime paces sending at the video's frame rate).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator

from retailface.client._cli import add_connection_flags, open_connection
from retailface.client.clients import CameraClient
from retailface.client.stream import END_OF_STREAM, StreamGap
from retailface.v1 import gateway_pb2, personalization_pb2


def read_batches(
    client: CameraClient, source: str, batch_size: int, every: int, realtime: bool, max_frames: int | None
) -> Iterator[gateway_pb2.FrameBatch]:
    import cv2  # the `camera` extra

    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise SystemExit(f"cannot open video source {source!r}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    start, sent, index, pending = time.time(), 0, 0, []
    try:
        while max_frames is None or sent < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            index += 1
            if (index - 1) % every:
                continue
            video_seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 or index / fps
            pending.append((image, start + video_seconds))
            sent += 1
            if len(pending) == batch_size:
                yield _batch(client, pending)
                pending = []
            if realtime:
                time.sleep(max(0.0, start + video_seconds - time.time()))
        if pending:
            yield _batch(client, pending)
    finally:
        capture.release()


def _paced(batches: Iterator[gateway_pb2.FrameBatch], slots: threading.Semaphore) -> Iterator[gateway_pb2.FrameBatch]:
    for batch in batches:
        slots.acquire()
        yield batch


def _batch(client: CameraClient, frames: list) -> gateway_pb2.FrameBatch:  # type: ignore[type-arg]
    batch = gateway_pb2.FrameBatch()
    for image, at in frames:
        batch.frames.extend(client.frames([image], captured_at=at).frames)
    return batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="retailface-camera", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", required=True, help="video file, or a capture device number")
    parser.add_argument("--camera", required=True, help="camera id, e.g. entrance-1")
    parser.add_argument("--store", required=True, help="store id")
    parser.add_argument("--batch", type=int, default=4, help="frames per batch")
    parser.add_argument("--every", type=int, default=1, help="send every N-th frame")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--realtime", action="store_true", help="pace frames at the video's frame rate")
    add_connection_flags(parser)
    args = parser.parse_args(argv)

    with open_connection(args) as connection:
        client = CameraClient(connection, args.camera, args.store)
        frames = faces = dropped = 0
        identified: set[str] = set()
        started = time.monotonic()
        batches = read_batches(client, args.video, args.batch, args.every, args.realtime, args.max_frames)
        if not args.realtime:
            # A file can be read faster than the gateway serves it: keep two batches in flight instead
            # of letting the gateway's backpressure drop frames. A live camera (--realtime) cannot wait.
            in_flight = threading.Semaphore(2)
            batches = _paced(batches, in_flight)

        def resumed(gap: StreamGap) -> None:
            print(f"\nstream broke ({gap.code}: {gap.details}); resuming, {len(gap.unanswered)} batches unanswered")
            if not args.realtime:
                for _ in gap.unanswered:  # they will not be answered: free their slots
                    in_flight.release()

        for result in client.stream(batches, on_gap=resumed):
            dropped = result.dropped_frames
            final = result.request_id == END_OF_STREAM
            if not final and not args.realtime:
                in_flight.release()
            for frame in result.results:
                frames += 0 if final else 1
                faces += len(frame.faces)
                for face in frame.faces:
                    if face.identity.member_id and face.identity.member_id not in identified:
                        identified.add(face.identity.member_id)
                        name = face.identity.display_name or face.identity.member_id
                        print(
                            f"\nconfirmed {name} on {face.track_id} ({face.identity.agreeing_frames}/"
                            f"{face.identity.window_frames} frames, score {face.identity.score:.2f})"
                        )
                for event in frame.events:
                    kind = personalization_pb2.VisitEventType.Name(event.type).removeprefix("VISIT_EVENT_TYPE_")
                    print(f"\nevent {kind.lower()} track={event.track_id} member={event.member_id or 'anonymous'}")
                for offer in frame.offers_pushed:
                    print(f"\noffer {offer.product_name}: {offer.reason}")
            rate = frames / max(time.monotonic() - started, 1e-9)
            print(
                f"\rframes {frames}  faces {faces}  members {len(identified)}  dropped {dropped}  {rate:.1f} fps",
                end="",
                file=sys.stderr,
                flush=True,
            )
        print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
