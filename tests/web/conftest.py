"""The web consoles against a real personalization server in this process (SQLite), through the FastAPI test
client: sessions, CSRF, roles and store scopes, member codes, and each console's calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from in_process import start_personalization
from store_scenario import consenting_member
from web_helpers import MEMBER, OTHER_STORE, SCOPED, STORE, TOKENS, Clock, make_consoles

from retailface.services.shared.server import RunningServer
from retailface.services.web.app import create_app
from retailface.services.web.pages import Consoles
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

# role -> tokens file entries; the staff and manager tokens act for STORE only
TOKEN_ENTRIES: dict[str, list[object]] = {
    role: [{"token": token, "stores": [STORE]}] if role in SCOPED else [token] for role, token in TOKENS.items()
}


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-secrets") / "tokens.json"
    path.write_text(json.dumps(TOKEN_ENTRIES))
    return path


@pytest.fixture(scope="module")
def personalization(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("web-personalization")
    running = start_personalization(data_dir, TOKEN_ENTRIES, {"RETAILFACE_PERSONALIZATION_DATA_DIR": str(data_dir)})
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
        admin = (("authorization", f"Bearer {TOKENS['admin']}"),)
        for store_id in (STORE, OTHER_STORE):
            store = personalization_pb2.Store(store_id=store_id, name=store_id, timezone="UTC")
            stub.UpsertStore(store, metadata=admin, timeout=10)
        stub.UpsertMember(consenting_member(MEMBER, "Lena", STORE), metadata=admin, timeout=10)
    yield running
    running.shutdown(grace=1)


@pytest.fixture(scope="module")
def stub(personalization: RunningServer) -> Iterator[personalization_pb2_grpc.PersonalizationServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{personalization.port}") as channel:
        yield personalization_pb2_grpc.PersonalizationServiceStub(channel)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def consoles(personalization: RunningServer, tokens_file: Path, clock: Clock) -> Consoles:
    return make_consoles(personalization, tokens_file, clock)


@pytest.fixture
def client(consoles: Consoles) -> Iterator[TestClient]:
    with TestClient(create_app(consoles), follow_redirects=False) as test_client:
        yield test_client
