"""An in-memory copy of the catalog, stock and campaigns, for the offer path.

Offers need the product, its stock at the store and the active campaigns for every candidate;
reading them from the database on each request costs more than the rest of the request. This
service is the writer of the catalog (UpsertProducts, SetInventory, RecordPurchase), so it updates
the copy in the same call, after its transaction commits; a background reload (every
`reload_seconds`) picks up anything written by other means. Readers get an immutable snapshot.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine, select

from retailface.services.personalization import db
from retailface.services.personalization.domain import Campaign, Location, Product

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CatalogSnapshot:
    products: dict[str, Product] = field(default_factory=dict)
    stock: dict[tuple[str, str], Location] = field(default_factory=dict)  # (store_id, sku) -> location
    campaigns: tuple[Campaign, ...] = ()
    sensitive_categories: frozenset[str] = frozenset()
    loaded_at: float = 0.0

    def active_campaigns(self, store_id: str, now: float) -> list[Campaign]:
        return [c for c in self.campaigns if c.active(store_id, now)]


def _campaign(row: Any) -> Campaign:
    return Campaign(
        campaign_id=row.campaign_id,
        name=row.name,
        discount_percent=row.discount_percent,
        skus=json.loads(row.skus),
        categories=json.loads(row.categories),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        priority=row.priority,
        frequency_cap_per_day=row.frequency_cap_per_day,
        store_ids=json.loads(row.store_ids),
    )


class CatalogCache:
    def __init__(self, engine: Engine, reload_seconds: float = 60.0) -> None:
        self._engine = engine
        self._reload_seconds = reload_seconds
        self._snapshot = CatalogSnapshot()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> CatalogSnapshot:
        return self._snapshot

    def reload(self) -> CatalogSnapshot:
        with self._lock:
            with db.read(self._engine) as conn:
                products = {
                    r.sku: Product(r.sku, r.name, r.category, r.price, bool(r.sensitive))
                    for r in conn.execute(select(db.products))
                }
                stock = {
                    (r.store_id, r.sku): Location(r.store_id, r.aisle, r.shelf, r.on_hand)
                    for r in conn.execute(
                        select(
                            db.inventory.c.store_id,
                            db.inventory.c.sku,
                            db.inventory.c.aisle,
                            db.inventory.c.shelf,
                            db.inventory.c.on_hand,
                        )
                    )
                }
                campaigns = tuple(
                    sorted(
                        (_campaign(r) for r in conn.execute(select(db.campaigns))),
                        key=lambda c: (-c.priority, c.campaign_id),
                    )
                )
            sensitive = frozenset(p.category for p in products.values() if p.sensitive)
            self._snapshot = CatalogSnapshot(products, stock, campaigns, sensitive, time.time())
            return self._snapshot

    def refresh_stock(self, store_id: str, skus: Iterable[str]) -> None:
        """Re-reads just-committed stock of some items (copy-on-write: readers keep their snapshot)."""
        skus = sorted(set(skus))
        with self._lock:
            with db.read(self._engine) as conn:
                rows = conn.execute(
                    select(
                        db.inventory.c.sku, db.inventory.c.aisle, db.inventory.c.shelf, db.inventory.c.on_hand
                    ).where(db.inventory.c.store_id == store_id, db.inventory.c.sku.in_(skus))
                ).all()
            old = self._snapshot
            stock = dict(old.stock)
            for sku in skus:
                stock.pop((store_id, sku), None)
            for row in rows:
                stock[(store_id, row.sku)] = Location(store_id, row.aisle, row.shelf, row.on_hand)
            self._snapshot = CatalogSnapshot(
                old.products, stock, old.campaigns, old.sensitive_categories, old.loaded_at
            )

    def start(self) -> None:
        if self._thread is None and self._reload_seconds > 0:
            self._thread = threading.Thread(target=self._loop, name="personalization-catalog", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._reload_seconds):
            try:
                self.reload()
            except Exception:
                log.exception("catalog_reload_failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
