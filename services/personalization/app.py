"""The wiring of the personalization service: database, catalog copy, model, outbox, background work.

`build(config)` opens and migrates the database, loads the catalog, trains the model, starts the
background workers and hands the servicer to the bootstrap; `on_stop` undoes it in reverse.
The service never creates data: an empty database stays empty until fed (the demo seeds it first).
"""

from __future__ import annotations

import structlog
from sqlalchemy import Engine

from retailface.services.personalization import db, migrations
from retailface.services.personalization.alert_bus import AlertBus
from retailface.services.personalization.catalog_cache import CatalogCache
from retailface.services.personalization.changes import ChangeFeed
from retailface.services.personalization.outbox import (
    LogChannel,
    NotificationChannel,
    OutboxWorker,
    RetryPolicy,
    WebhookChannel,
)
from retailface.services.personalization.recommender import ModelHolder, train
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.servicer import METHOD_ROLES, PersonalizationServicer
from retailface.services.personalization.settings import P, settings_from
from retailface.services.shared.config import ServiceConfig
from retailface.services.shared.server import Registration
from retailface.v1 import personalization_pb2_grpc

log = structlog.get_logger(__name__)


def _outbox_worker(config: ServiceConfig, engine: Engine) -> OutboxWorker:
    channels: dict[str, NotificationChannel] = {"log": LogChannel()}
    webhook_url = config.get(f"{P}WEBHOOK_URL")
    if webhook_url:
        channels["webhook"] = WebhookChannel(webhook_url, float(config.get(f"{P}WEBHOOK_TIMEOUT_SECONDS")))
    retry = RetryPolicy(
        float(config.get(f"{P}OUTBOX_RETRY_BASE_SECONDS")),
        float(config.get(f"{P}OUTBOX_RETRY_MAX_SECONDS")),
        int(config.get(f"{P}OUTBOX_MAX_ATTEMPTS")),
    )
    return OutboxWorker(
        engine,
        channels,
        retry,
        poll_seconds=float(config.get(f"{P}OUTBOX_POLL_SECONDS")),
        lease_seconds=float(config.get(f"{P}OUTBOX_LEASE_SECONDS")),
    )


def build(config: ServiceConfig) -> Registration:
    url = config.get(f"{P}DB_URL") or db.default_url(config.get(f"{P}DATA_DIR"))
    checkpoint_seconds = float(config.get(f"{P}SQLITE_CHECKPOINT_SECONDS"))
    engine = db.open_engine(url, auto_checkpoint=checkpoint_seconds == 0)
    checkpointer = db.Checkpointer(engine, checkpoint_seconds)
    version = migrations.migrate(engine)
    catalog = CatalogCache(engine, float(config.get(f"{P}CATALOG_RELOAD_SECONDS")))
    catalog.reload()
    models = ModelHolder(lambda: train(engine), float(config.get(f"{P}MODEL_REFRESH_SECONDS")))
    models.refresh()
    worker = _outbox_worker(config, engine)
    changes = ChangeFeed(engine)  # PostgreSQL: what the other replicas change (changes.py)
    personalization = Personalization(engine, models, settings_from(config), AlertBus(), worker, catalog, changes)
    background = (checkpointer, catalog, changes, models, worker)  # stopped in reverse
    for part in background:
        part.start()
    log.info(
        "personalization_ready",
        schema_version=version,
        dialect=engine.dialect.name,
        listening_to_replicas=changes.enabled,
        webhook="webhook" in worker.channel_kinds,
        watchlist=personalization.settings.watchlist_enabled,
    )

    def on_stop() -> None:
        personalization.close()
        for part in reversed(background):
            part.stop()
        engine.dispose()

    return Registration(
        servicer=PersonalizationServicer(personalization),
        add_to_server=personalization_pb2_grpc.add_PersonalizationServiceServicer_to_server,
        service_name="retailface.v1.PersonalizationService",
        method_roles=METHOD_ROLES,
        on_stop=on_stop,
    )
