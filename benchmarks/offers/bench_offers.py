"""Offer-path benchmark (`make bench-offers`); the last output line is one JSON object.

1. Generates the full synthetic data set (10,000 members, 2,000 products, 5 stores, 500,000
   transaction lines, online sessions) into a fresh SQLite database (or the empty database of
   --db-url: `make bench-chain` runs this same workload on PostgreSQL).
2. Starts PersonalizationService with the shared bootstrap (auth interceptor, metrics, outbox worker
   with the log channel, model trained at start-up) on a loopback port, and calls it over gRPC
   from the same process (client and server share the 2 cores and the GIL: a conservative setup).
   With --replicas N it starts N service processes on the database instead (as the local stack and
   the containers run them) and spreads the calls over them with gRPC's round_robin, as the gateway
   does: `make bench-chain` measures PostgreSQL this way, with 2 replicas.
3. Measures, sequentially with one client:
   - GetOffers latency (random members and stores, contexts app/kiosk/entrance),
   - RecordVisitEvent latency (entries that push offers, raise greetings and queue notifications;
     zone dwells; checkouts with expression summaries that raise dissatisfaction alerts),
   - IngestOnlineEvents throughput (batches of 500 new events).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
from sqlalchemy import select

from retailface.devtools import synthetic
from retailface.devtools.localstack import LocalStack, Runtime, free_port
from retailface.services.personalization import app, db, settings
from retailface.services.shared import config as config_module
from retailface.services.shared import logging as logging_module
from retailface.services.shared.server import start
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

TOKEN = "bench-service-token-0123456789"


def progress(message: str) -> None:
    print(f"[bench-offers] {message}", flush=True)


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples) * 1000.0, q)), 3)


@contextmanager
def serving(args: argparse.Namespace, url: str, workdir: Path) -> Iterator[tuple[str, str, float]]:
    """The service on `url`, in this process or as --replicas processes: (gRPC target, token, startup s)."""
    started = time.perf_counter()
    if args.replicas:
        runtime = Runtime(workdir / "stack")
        runtime.prepare()
        instances = [f"personalization-{n}" for n in range(1, args.replicas + 1)]
        ports = {name: free_port() for name in ("personalization", "personalization-metrics")}
        ports |= {name: free_port() for instance in instances for name in (instance, f"{instance}-metrics")}
        env = {
            "RETAILFACE_PERSONALIZATION_DB_URL": url,
            "RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0",
            "RETAILFACE_LOG_LEVEL": "warning",
        }
        stack = LocalStack(runtime, ports, {"personalization": env}, {"personalization": args.replicas})
        try:
            stack.start_all(("personalization",))
            progress(f"{args.replicas} replicas serving after {time.perf_counter() - started:.1f}s")
            target = "ipv4:" + ",".join(f"127.0.0.1:{stack.ports[name]}" for name in stack.instances("personalization"))
            yield target, runtime.tokens["service"], time.perf_counter() - started
        finally:
            stack.stop_all()
        return
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps({"service": [TOKEN]}))
    cfg = config_module.load(
        "personalization",
        settings.SETTINGS,
        argv=[],
        environ={
            "RETAILFACE_INSECURE": "true",
            "RETAILFACE_PORT": "0",
            "RETAILFACE_METRICS_PORT": "0",
            "RETAILFACE_AUTH_TOKENS_FILE": str(tokens),
            "RETAILFACE_PERSONALIZATION_DB_URL": url,
            "RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0",
        },
    )
    running = start("personalization", app.build(cfg), cfg)
    progress(f"serving on port {running.port} after {time.perf_counter() - started:.1f}s")
    try:
        yield f"127.0.0.1:{running.port}", TOKEN, time.perf_counter() - started
    finally:
        running.shutdown(grace=2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(synthetic.SCALES), default="full")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--offers", type=int, default=3000, help="GetOffers calls measured")
    parser.add_argument("--visits", type=int, default=3000, help="RecordVisitEvent calls measured")
    parser.add_argument("--ingest-events", type=int, default=100_000, help="online events ingested")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the database here (default: temporary)")
    parser.add_argument(
        "--db-url", default="", help="an empty database to use instead of SQLite (bench-chain: PostgreSQL)"
    )
    parser.add_argument(
        "--replicas", type=int, default=0, help="serve from this many service processes (0: one, in this process)"
    )
    args = parser.parse_args()
    logging_module.configure("personalization", "warning", "console")

    with tempfile.TemporaryDirectory(prefix="bench-offers-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        database = workdir / "bench-offers.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        url = args.db_url or f"sqlite:///{database}"

        progress(f"generating {args.scale} synthetic data (seed {args.seed})")
        started = time.perf_counter()
        engine = db.open_engine(url)
        counts = synthetic.generate(engine, args.seed, args.scale)
        if engine.dialect.name == "postgresql":
            # After a bulk load, as PostgreSQL's documentation advises: the planner's statistics, and no
            # autovacuum of the fresh tables competing with the measurement (a chain's database is not new).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE)")
                conn.exec_driver_sql("CHECKPOINT")
        engine.dispose()
        generate_seconds = time.perf_counter() - started
        progress(f"generated in {generate_seconds:.1f}s: {json.dumps(counts)}")

        progress("starting the service (migrations, catalog, model training)")
        rng = random.Random(args.seed)
        members = [f"m{n:05d}" for n in range(1, counts["members"] + 1)]
        stores = [f"store-{n:02d}" for n in range(1, counts["stores"] + 1)]
        engine = db.open_engine(url)
        with db.read(engine) as conn:
            skus = list(conn.execute(select(db.products.c.sku).where(db.products.c.sensitive.is_(False))).scalars())
        engine.dispose()

        with serving(args, url, workdir) as (target, token, startup_seconds):
            metadata = (("authorization", f"Bearer {token}"),)
            options = [("grpc.lb_policy_name", "round_robin")]
            with grpc.insecure_channel(target, options=options) as channel:
                stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)

                progress("warming up")
                for _ in range(200):
                    stub.GetOffers(
                        personalization_pb2.GetOffersRequest(
                            member_id=rng.choice(members), store_id=rng.choice(stores), context="app"
                        ),
                        metadata=metadata,
                        timeout=10,
                    )

                progress(f"GetOffers x{args.offers}")
                offer_latency: list[float] = []
                offers_returned = 0
                for _ in range(args.offers):
                    request = personalization_pb2.GetOffersRequest(
                        member_id=rng.choice(members),
                        store_id=rng.choice(stores),
                        context=rng.choice(("app", "kiosk", "entrance")),
                    )
                    t0 = time.perf_counter()
                    response = stub.GetOffers(request, metadata=metadata, timeout=10)
                    offer_latency.append(time.perf_counter() - t0)
                    offers_returned += len(response.offers)

                progress(f"RecordVisitEvent x{args.visits}")
                visit_latency: list[float] = []
                pushed = alerts = 0
                for number in range(args.visits):
                    kind = rng.random()
                    event = personalization_pb2.VisitEvent(
                        event_id=f"bench-visit-{number}",
                        store_id=rng.choice(stores),
                        camera_id="cam-1",
                        track_id=f"track-{number}",
                        member_id=rng.choice(members) if rng.random() < 0.7 else "",
                    )
                    if kind < 0.5:
                        event.type = personalization_pb2.VISIT_EVENT_TYPE_ENTERED
                        event.zone_id = "entrance"
                    elif kind < 0.8:
                        event.type = personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL
                        event.zone_id = f"aisle-{rng.randint(1, 22)}"
                        event.dwell_seconds = rng.uniform(5, 120)
                    else:
                        event.type = personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT
                        event.lane_id = f"lane-{rng.randint(1, 6)}"
                        event.emotion.CopyFrom(
                            personalization_pb2.EmotionSummary(
                                dominant=common_pb2.EMOTION_ANGRY,
                                negative_fraction=rng.random(),
                                seconds=rng.uniform(0, 20),
                            )
                        )
                    t0 = time.perf_counter()
                    result = stub.RecordVisitEvent(event, metadata=metadata, timeout=10)
                    visit_latency.append(time.perf_counter() - t0)
                    pushed += len(result.offers_pushed)
                    alerts += len(result.alerts_raised)

                progress(f"IngestOnlineEvents x{args.ingest_events} in batches of 500")
                kinds = (
                    personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
                    personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
                    personalization_pb2.ONLINE_EVENT_TYPE_ADDED_TO_CART,
                    personalization_pb2.ONLINE_EVENT_TYPE_ABANDONED_CART,
                )
                batches = []
                for start_index in range(0, args.ingest_events, 500):
                    batches.append(
                        personalization_pb2.IngestOnlineEventsRequest(
                            events=[
                                personalization_pb2.OnlineEvent(
                                    event_id=f"bench-online-{i}",
                                    member_id=rng.choice(members),
                                    sku=rng.choice(skus),
                                    type=rng.choice(kinds),
                                    session_id=f"bench-s-{i // 8}",
                                )
                                for i in range(start_index, min(start_index + 500, args.ingest_events))
                            ]
                        )
                    )
                accepted = 0
                t0 = time.perf_counter()
                for batch in batches:
                    accepted += stub.IngestOnlineEvents(batch, metadata=metadata, timeout=60).accepted
                ingest_seconds = time.perf_counter() - t0

    result = {
        "database": url.split(":", 1)[0],
        "service_processes": args.replicas or "in-process",
        "members": counts["members"],
        "products": counts["products"],
        "transaction_lines": counts["transaction_lines"],
        "online_events_generated": counts["online_events"],
        "generate_seconds": round(generate_seconds, 2),
        "startup_seconds": round(startup_seconds, 2),
        "get_offers_calls": len(offer_latency),
        "get_offers_mean_offers": round(offers_returned / max(1, len(offer_latency)), 2),
        "get_offers_p50_ms": percentile_ms(offer_latency, 50),
        "get_offers_p99_ms": percentile_ms(offer_latency, 99),
        "record_visit_calls": len(visit_latency),
        "record_visit_p50_ms": percentile_ms(visit_latency, 50),
        "record_visit_p99_ms": percentile_ms(visit_latency, 99),
        "record_visit_offers_pushed": pushed,
        "record_visit_alerts_raised": alerts,
        "ingest_events": accepted,
        "ingest_events_per_s": round(accepted / ingest_seconds, 1),
        "targets_met": percentile_ms(offer_latency, 99) <= 10 and percentile_ms(visit_latency, 99) <= 15,
    }
    print(json.dumps(result), flush=True)
    return 0 if accepted == args.ingest_events else 1


if __name__ == "__main__":
    sys.exit(main())
