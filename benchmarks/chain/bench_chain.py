"""`make bench-chain`: the chain deployment on PostgreSQL; the last output line is one JSON object.

One durable PostgreSQL server (fsync on, Debian's binaries, loopback, devtools/pgserver.py) and matching
as 3 replicas (processes started like their containers, devtools/localstack.py) sharing its log:

1. `enroll_per_s`: Enroll calls (one subject, two templates each) from 4 client threads through a
   round_robin channel over the 3 replicas, as the gateway's.
2. `erase_visible_all_replicas_ms_p50/p99`: from sending an EraseSubject to one replica until a search of
   the erased subject's own template on every replica (each polled on its own port, without
   min_sequence) no longer returns the subject.
3. `search_p99_ms_during_replica_kill`: single-query searches through the round_robin channel (the
   gateway's retry policy) while one replica is SIGKILLed and restarted; every failed search is counted
   (`searches_failed_during_replica_kill`).
4. `replica_cold_start_s_100k`, `replica_cold_start_s_1m`: a gallery of that many templates (half a
   million subjects at 1M) written as the service snapshots it, plus a log of 1,000 enrolls after the
   snapshot; seconds from starting a matching process to its health check answering SERVING.
5. `pg_get_offers_p99_ms`, `pg_record_visit_p99_ms`: bench-offers' workload and data, on PostgreSQL,
   served by 2 personalization processes that a round_robin channel spreads the calls over
   (benchmarks/offers/bench_offers.py --db-url URL --replicas 2); `sqlite_*`: the same workload on
   SQLite's one in-process service, right after, as the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from retailface import _matcher
from retailface.devtools.localstack import LocalStack, Runtime, client_channel
from retailface.devtools.pgserver import PostgresServer
from retailface.services.matching.crypto import load_key
from retailface.services.matching.params import DurabilityPolicy, GalleryPolicy, IndexParams
from retailface.services.matching.snapshots import SnapshotMeta, TemplateChunk
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.channels import RETRY_SERVICE_CONFIG
from retailface.services.shared.galleries import MEMBERS_GALLERY, WATCHLIST_GALLERY
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1 import common_pb2, matching_pb2, matching_pb2_grpc

DIM = 128
MODEL = ModelIdentity("sface", "2021dec", DIM)
REPLICAS = 3
PERSONALIZATION_REPLICAS = 2
OFFERS = Path(__file__).resolve().parents[1] / "offers" / "bench_offers.py"


def progress(message: str) -> None:
    print(f"[bench-chain] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples), q)), 3)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def embedding(vector: np.ndarray) -> common_pb2.Embedding:
    return common_pb2.Embedding(values=vector.tolist(), model_id=MODEL.model_id, model_version=MODEL.version)


class Client:
    """A matching stub with the service token, on one replica's port or round_robin over all of them."""

    def __init__(self, stack: LocalStack, target: str) -> None:
        options = [("grpc.enable_retries", 1), ("grpc.service_config", RETRY_SERVICE_CONFIG)]
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = matching_pb2_grpc.MatchingServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {stack.runtime.tokens['service']}"),)

    def call(self, method: str, request: Any, timeout: float = 10.0) -> Any:
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)

    def close(self) -> None:
        self.channel.close()


def chain_stack(runtime: Runtime, url: str, replicas: int = REPLICAS) -> LocalStack:
    env = {
        "RETAILFACE_MATCHING_DB_URL": url,
        "RETAILFACE_MATCHING_SEARCH_THREADS": "1",
        "RETAILFACE_MATCHING_SNAPSHOT_ON_STOP": "false",
    }
    return LocalStack(runtime, extra_env={"matching": env}, replicas={"matching": replicas})


def round_robin_target(stack: LocalStack) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{stack.ports[name]}" for name in stack.instances("matching"))


# ---------------------------------------------------------------- 1-3: three replicas


def measure_enrolls(client: Client, rng: np.random.Generator, count: int, threads: int = 4) -> tuple[float, list]:
    vectors = unit(rng, count * 2).reshape(count, 2, DIM)
    done: list[int] = []
    errors: list[str] = []

    def work(worker: int) -> None:
        for s in range(worker, count, threads):
            request = matching_pb2.EnrollRequest(
                gallery=MEMBERS_GALLERY,
                subject_id=f"e{s}",
                templates=[
                    matching_pb2.Template(template_id=f"e{s}-{t}", embedding=embedding(vectors[s, t])) for t in range(2)
                ],
                tags=["consent:face"],
            )
            try:
                done.append(client.call("Enroll", request).sequence)
            except grpc.RpcError as error:
                errors.append(error.code().name)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} enrolls failed: {sorted(set(errors))}")
    return len(done) / elapsed, vectors


def search_request(vector: np.ndarray) -> matching_pb2.SearchRequest:
    return matching_pb2.SearchRequest(gallery=MEMBERS_GALLERY, queries=[embedding(vector)], top_k=1)


def measure_erase_visibility(client: Client, replicas: list[Client], vectors: np.ndarray, count: int) -> list[float]:
    """Milliseconds from sending an erase until no replica returns the subject any more."""
    visible_ms: list[float] = []
    for s in range(count):
        probe = search_request(vectors[s, 0])
        subject = f"e{s}"
        for replica in replicas:  # every replica holds the subject before the erase
            found = replica.call("Search", probe).results[0].candidates
            if not found or found[0].subject_id != subject:
                raise RuntimeError(f"replica does not hold {subject} before its erase")
        gone = [threading.Event() for _ in replicas]
        sent = threading.Event()

        def watch(
            replica: Client,
            event: threading.Event,
            sent: threading.Event = sent,
            probe: matching_pb2.SearchRequest = probe,
            subject: str = subject,
        ) -> None:
            sent.wait()
            while True:
                found = replica.call("Search", probe).results[0].candidates
                if not found or found[0].subject_id != subject:
                    event.set()
                    return

        watchers = [threading.Thread(target=watch, args=(r, e)) for r, e in zip(replicas, gone, strict=True)]
        for watcher in watchers:
            watcher.start()
        started = time.perf_counter()
        sent.set()
        replicas[s % len(replicas)].call(
            "EraseSubject", matching_pb2.EraseSubjectRequest(gallery=MEMBERS_GALLERY, subject_id=subject)
        )
        for watcher in watchers:
            watcher.join(30)
        visible_ms.append((time.perf_counter() - started) * 1000.0)
    return visible_ms


def measure_search_during_kill(
    stack: LocalStack, client: Client, vectors: np.ndarray, seconds: float
) -> dict[str, Any]:
    """Searches in a loop through the round_robin channel; one replica is SIGKILLed a third of the way in
    and restarted; returns latency percentiles and the failures."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            request = search_request(vectors[n % len(vectors), 0])
            started = time.perf_counter()
            try:
                client.call("Search", request, timeout=5.0)
                latencies.append((time.perf_counter() - started) * 1000.0)
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
            n += 1

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(seconds / 3)
    victim = stack.instances("matching")[0]
    progress(f"SIGKILL {victim}")
    stack.processes[victim].process.kill()
    stack.processes[victim].process.wait()
    time.sleep(seconds / 3)
    restarted = time.perf_counter()
    stack.start(victim)
    stack.wait_serving(victim, timeout=120)
    restart_s = time.perf_counter() - restarted
    time.sleep(seconds / 3)
    stop.set()
    worker.join()
    return {
        "search_p50_ms_during_replica_kill": percentile(latencies, 50),
        "search_p99_ms_during_replica_kill": percentile(latencies, 99),
        "searches_during_replica_kill": len(latencies) + len(failures),
        "searches_failed_during_replica_kill": len(failures),
        "killed_replica_back_serving_s": round(restart_s, 2),
        "search_failures_sample": failures[:3],
    }


def three_replicas(server: PostgresServer, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    url = server.libpq_url(server.create_database("chain_replicas"))
    runtime = Runtime(root / "replicas")
    runtime.prepare()
    stack = chain_stack(runtime, url)
    rng = np.random.default_rng(args.seed)
    result: dict[str, Any] = {}
    try:
        progress(f"starting {REPLICAS} matching replicas on PostgreSQL")
        stack.start_all(("matching",))
        client = Client(stack, round_robin_target(stack))
        replicas = [Client(stack, stack.processes[name].target) for name in stack.instances("matching")]
        progress(f"enrolling {args.enrolls} subjects from 4 threads")
        enroll_rate, vectors = measure_enrolls(client, rng, args.enrolls)
        result["enroll_per_s"] = round(enroll_rate, 1)
        progress(f"{args.erases} erases, each until no replica returns the subject")
        visible = measure_erase_visibility(client, replicas, vectors, args.erases)
        result |= {
            "erases": len(visible),
            "erase_visible_all_replicas_ms_p50": percentile(visible, 50),
            "erase_visible_all_replicas_ms_p99": percentile(visible, 99),
            "erase_visible_all_replicas_ms_max": round(max(visible), 3),
        }
        progress(f"searching for {args.kill_seconds:.0f}s while one replica is killed and restarted")
        result |= measure_search_during_kill(stack, client, vectors[args.erases :], args.kill_seconds)
        applied = {
            name: Client(stack, stack.processes[name].target)
            .call("GetStats", matching_pb2.GalleryStatsRequest(gallery=MEMBERS_GALLERY))
            .applied_sequence
            for name in stack.instances("matching")
        }
        result["replicas_agree_after_kill"] = len(set(applied.values())) == 1
        for replica in [client, *replicas]:
            replica.close()
    finally:
        stack.stop_all()
    return result


# ---------------------------------------------------------------- 4: cold start


def write_gallery(url: str, key: bytes, templates: int, tail: int, seed: int) -> None:
    """The gallery a chain would hold: a snapshot of `templates` (two per subject), then `tail` enrolls in
    the log. The snapshot is written through the service's own PostgreSQL journal."""
    rng = np.random.default_rng(seed)
    subjects = templates // 2
    native = _matcher.Gallery(dim=DIM, capacity=templates, threads=2)
    for start in range(0, templates, 262_144):
        stop = min(templates, start + 262_144)
        keys = np.arange(start, stop, dtype=np.int64)
        native.add(keys, keys // 2, unit(rng, stop - start))
    stored = native.stored()
    meta = SnapshotMeta(
        gallery=MEMBERS_GALLERY,
        model=[MODEL.model_id, MODEL.version, DIM],
        sequence=1,
        templates=templates,
        subjects=[[f"s{k}", k, ["consent:face"]] for k in range(subjects)],
        next_subject_key=subjects,
        next_template_key=templates,
        created_at="2026-12-02T00:00:00+00:00",
    )
    chunk = TemplateChunk(
        [f"s{k // 2}-{k % 2}" for k in stored["template_ids"].tolist()],
        stored["template_ids"],
        stored["subject_ids"],
        scales=stored["scales"],
        rows=stored["rows"],
        codes=stored["codes"],
    )
    del native
    policies = [GalleryPolicy(MEMBERS_GALLERY, 0.48, 0.05), GalleryPolicy(WATCHLIST_GALLERY, 0.55, 0.08)]
    manual = DurabilityPolicy(snapshot_every_records=10**9, erase_purge_seconds=10**9, snapshot_on_close=False)
    store = MatchingStore(Path(tempfile.mkdtemp()), key, policies, MODEL, IndexParams(), manual, database_url=url)
    try:
        journal = store.gallery(MEMBERS_GALLERY)._journal
        with journal._connection("writing the benchmark gallery") as conn:  # the head the snapshot holds
            conn.execute("UPDATE matching_heads SET sequence = 1 WHERE gallery = %s", (MEMBERS_GALLERY,))
        if not journal.write_snapshot(meta, chunk):
            raise RuntimeError("the benchmark snapshot was not written")
    finally:
        store.close()
    del stored, chunk, meta
    store = MatchingStore(Path(tempfile.mkdtemp()), key, policies, MODEL, IndexParams(), manual, database_url=url)
    try:
        members = store.gallery(MEMBERS_GALLERY)
        for s in range(tail):
            members.enroll(f"tail{s}", [f"tail{s}-0", f"tail{s}-1"], unit(rng, 2), tags=["consent:face"])
        if members.stats().templates != templates + 2 * tail:
            raise RuntimeError(f"the gallery holds {members.stats().templates} templates")
    finally:
        store.close()


def cold_start(server: PostgresServer, root: Path, templates: int, tail: int, seed: int) -> dict[str, Any]:
    label = f"{templates // 1000}k" if templates < 1_000_000 else f"{templates // 1_000_000}m"
    url = server.libpq_url(server.create_database(f"chain_cold_{label}"))
    runtime = Runtime(root / f"cold-{label}")
    runtime.prepare()
    key = load_key(runtime.root / "secrets" / "matching-template-key")
    progress(f"writing a {templates:,}-template gallery and {tail} log records to PostgreSQL")
    started = time.perf_counter()
    write_gallery(url, key, templates, tail, seed)
    progress(f"written in {time.perf_counter() - started:.0f}s; starting a replica")
    stack = chain_stack(runtime, url, replicas=1)
    try:
        started = time.perf_counter()
        stack.start("matching")
        stack.wait_serving("matching", timeout=600)
        seconds = time.perf_counter() - started
        with client_channel(stack.processes["matching"].target, runtime) as channel:
            stats = matching_pb2_grpc.MatchingServiceStub(channel).GetStats(
                matching_pb2.GalleryStatsRequest(gallery=MEMBERS_GALLERY),
                metadata=(("authorization", f"Bearer {runtime.tokens['service']}"),),
                timeout=10,
            )
        rss_mb = rss_of(stack.processes["matching"].process.pid)
    finally:
        stack.stop_all()
        server.drop_database(url.rsplit("/", 1)[1])
    if stats.info.templates != templates + 2 * tail:
        raise RuntimeError(f"the replica serves {stats.info.templates} templates")
    progress(f"{label}: SERVING after {seconds:.1f}s, RSS {rss_mb:.0f} MB")
    return {
        f"replica_cold_start_s_{label}": round(seconds, 2),
        f"replica_rss_mb_{label}": round(rss_mb, 1),
        f"replica_applied_sequence_{label}": stats.applied_sequence,
    }


def rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- 5: offers on PostgreSQL


def run_offers(args: argparse.Namespace, db_url: str = "", replicas: int = 0) -> dict[str, Any]:
    command = [sys.executable, str(OFFERS), "--offers", str(args.offers), "--replicas", str(replicas)]
    command += ["--db-url", db_url] if db_url else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_offers failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def offers_on_postgres(server: PostgresServer, args: argparse.Namespace) -> dict[str, Any]:
    """bench-offers on PostgreSQL through 2 service replicas, then on SQLite's one in-process service in the same
    run (the peer, on the same host state)."""
    name = server.create_database("chain_offers")
    progress(f"bench-offers' workload on PostgreSQL, {PERSONALIZATION_REPLICAS} replicas (full data set first)")
    measured = run_offers(args, server.url(name), PERSONALIZATION_REPLICAS)
    progress("the same on SQLite, side by side")
    sqlite = run_offers(args)
    return {
        "pg_get_offers_p50_ms": measured["get_offers_p50_ms"],
        "pg_get_offers_p99_ms": measured["get_offers_p99_ms"],
        "pg_record_visit_p50_ms": measured["record_visit_p50_ms"],
        "pg_record_visit_p99_ms": measured["record_visit_p99_ms"],
        "pg_ingest_events_per_s": measured["ingest_events_per_s"],
        "pg_offers_pushed": measured["record_visit_offers_pushed"],
        "pg_alerts_raised": measured["record_visit_alerts_raised"],
        "sqlite_get_offers_p50_ms": sqlite["get_offers_p50_ms"],
        "sqlite_get_offers_p99_ms": sqlite["get_offers_p99_ms"],
        "sqlite_record_visit_p50_ms": sqlite["record_visit_p50_ms"],
        "sqlite_record_visit_p99_ms": sqlite["record_visit_p99_ms"],
    }


def timed(label: str, step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    result = step()
    progress(f"{label} done in {time.perf_counter() - started:.0f}s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--enrolls", type=int, default=2000, help="subjects enrolled for enroll_per_s")
    parser.add_argument("--erases", type=int, default=200, help="erases timed until all replicas hold them")
    parser.add_argument("--kill-seconds", type=float, default=15.0, help="search load around the replica kill")
    parser.add_argument("--cold-sizes", default="100000,1000000", help="templates of the cold-start galleries")
    parser.add_argument("--tail", type=int, default=1000, help="log records after the cold-start snapshot")
    parser.add_argument("--offers", type=int, default=3000, help="GetOffers calls on PostgreSQL")
    parser.add_argument(
        "--parts", default="replicas,cold,offers", help="which parts to run (comma-separated): replicas, cold, offers"
    )
    args = parser.parse_args(argv)
    server = PostgresServer(durable=True)
    server.start()
    result: dict[str, Any] = {
        "replicas": REPLICAS,
        "personalization_replicas": PERSONALIZATION_REPLICAS,
        "postgresql": "durable (fsync on)",
        "cpus": os.cpu_count(),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
            root = Path(tmp)
            parts = set(args.parts.split(","))
            if "replicas" in parts:
                result |= timed("replicas", lambda: three_replicas(server, root, args))
            for size in (int(text) for text in args.cold_sizes.split(",") if text and "cold" in parts):
                result |= timed(f"cold start {size}", partial(cold_start, server, root, size, args.tail, args.seed))
            if "offers" in parts:
                result |= timed("offers", lambda: offers_on_postgres(server, args))
    finally:
        server.remove()
    result["targets"] = {
        "pg_get_offers_p99_ms<=10": result.get("pg_get_offers_p99_ms", 1e9) <= 10,
        "pg_record_visit_p99_ms<=15": result.get("pg_record_visit_p99_ms", 1e9) <= 15,
        "erase_visible_all_replicas_ms_p99<=250": result.get("erase_visible_all_replicas_ms_p99", 1e9) <= 250,
        "replica_cold_start_s_1m<=60": result.get("replica_cold_start_s_1m", 1e9) <= 60,
        "searches_failed_during_replica_kill==0": result.get("searches_failed_during_replica_kill", 1) == 0,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
