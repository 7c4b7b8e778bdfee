"""An in-memory copy of the catalog, stock and campaigns, for the offer path.

Offers need the product, its stock at the store and the active campaigns for every candidate;
reading them from the database on each request costs more than the rest of the request. This
service is the writer of the catalog (UpsertProducts, SetInventory, RecordPurchase), so it updates
the copy in the same call, after its transaction commits. Other replicas apply the change when they
hear of it (`apply_change`, called by changes.py's listener on PostgreSQL), and a background reload
(every `reload_seconds`) picks up anything written by other means or missed. Readers get an
immutable snapshot.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from retailface.services.personalization import db
from retailface.services.personalization.domain import Campaign, Location, Product
from retailface.services.shared.periodic import PeriodicWorker


@dataclass(frozen=True)
class CatalogSnapshot:
    products: dict[str, Product] = field(default_factory=dict)
    stock: dict[tuple[str, str], Location] = field(default_factory=dict)  # (store_id, sku) -> location
    campaigns: tuple[Campaign, ...] = ()
    sensitive_categories: frozenset[str] = frozenset()
    loaded_at: float = 0.0

    def active_campaigns(self, store_id: str, now: float) -> list[Campaign]:
        return [c for c in self.campaigns if c.active(store_id, now)]


_CAMPAIGN_LISTS = ("skus", "categories", "store_ids")  # stored as JSON


def campaign_to_row(campaign: Campaign) -> dict[str, Any]:
    """The campaigns-table values of a campaign (but `updated_at`)."""
    row = asdict(campaign)
    return {**row, **{name: json.dumps(row[name]) for name in _CAMPAIGN_LISTS}}


def campaign_from_row(row: Any) -> Campaign:
    values = {name: getattr(row, name) for name in Campaign.__dataclass_fields__}
    return Campaign(**{**values, **{name: json.loads(values[name]) for name in _CAMPAIGN_LISTS}})


class CatalogCache:
    """The current snapshot; with `reload_seconds` > 0, `start()` reloads it in the background."""

    def __init__(self, engine: Engine, reload_seconds: float = 60.0) -> None:
        self._engine = engine
        self._snapshot = CatalogSnapshot()
        self._lock = threading.Lock()
        self._reloader = (
            PeriodicWorker("personalization-catalog", reload_seconds, self.reload) if reload_seconds > 0 else None
        )

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
                        (campaign_from_row(r) for r in conn.execute(select(db.campaigns))),
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

    def apply_change(self, change: Mapping[str, Any]) -> None:
        """Applies a change another replica announced (changes.py): some items' stock, else everything."""
        skus = change.get("skus")
        if change.get("store_id") and isinstance(skus, list):
            self.refresh_stock(str(change["store_id"]), (str(sku) for sku in skus))
        else:
            self.reload()

    def start(self) -> None:
        if self._reloader is not None:
            self._reloader.start()

    def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.stop()
