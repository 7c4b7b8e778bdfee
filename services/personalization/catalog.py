"""The catalog as the back office writes it: products, stock per store, and campaigns.

Every write is audited and then refreshes the in-memory copy (catalog_cache.py) that the offer
path reads, after its transaction commits; the other replicas refresh theirs when it commits
(changes.py).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace

from sqlalchemy import select

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, known_skus, require_skus, require_store, write_audit
from retailface.services.personalization.catalog_cache import campaign_to_row
from retailface.services.personalization.domain import Campaign, InventoryItem, Product
from retailface.services.shared.errors import InvalidArgument, NotFound

MAX_CAMPAIGN_DISCOUNT = 90.0


def _check_product(product: Product) -> None:
    if not product.sku or not product.name or not product.category:
        raise InvalidArgument(f"product {product.sku!r}: sku, name and category are required")
    if product.price < 0 or not math.isfinite(product.price):
        raise InvalidArgument(f"product {product.sku!r}: price must be a finite number >= 0")


def _check_campaign(campaign: Campaign) -> None:
    if not campaign.name:
        raise InvalidArgument("campaign name is required")
    if not 0 < campaign.discount_percent <= MAX_CAMPAIGN_DISCOUNT:
        raise InvalidArgument(f"discount_percent must be in (0, {MAX_CAMPAIGN_DISCOUNT:g}]")
    if not campaign.skus and not campaign.categories:
        raise InvalidArgument("a campaign needs skus or categories")
    if campaign.valid_from and campaign.valid_until and campaign.valid_until <= campaign.valid_from:
        raise InvalidArgument("valid_until must be after valid_from")


class Catalog(Component):
    def sensitive_categories(self) -> frozenset[str]:
        """Categories holding any sensitive product (never named to staff)."""
        return self.catalog_cache.snapshot.sensitive_categories

    def upsert_products(self, products: Sequence[Product], actor: str = "") -> int:
        for product in products:
            _check_product(product)
        if not products:
            return 0
        now = time.time()
        rows = [{**asdict(product), "updated_at": now} for product in products]
        with db.write(self.engine) as conn:
            conn.execute(db.upsert(self.engine, db.products), rows)
            write_audit(conn, actor, "update", "catalog", "products", count=len(products))
            self.changes.catalog_changed(conn)
        self.catalog_cache.reload()
        return len(products)

    def set_inventory(self, items: Sequence[InventoryItem], actor: str = "") -> int:
        if not items:
            return 0
        now = time.time()
        with db.write(self.engine) as conn:
            wanted = {i.store_id for i in items}
            stores = set(conn.execute(select(db.stores.c.store_id).where(db.stores.c.store_id.in_(wanted))).scalars())
            skus = known_skus(conn, (i.sku for i in items))
            for item in items:
                if item.store_id not in stores:
                    raise NotFound(f"unknown store {item.store_id!r}")
                if item.sku not in skus:
                    raise NotFound(f"unknown sku {item.sku!r}")
                if item.on_hand < 0:
                    raise InvalidArgument(f"sku {item.sku!r}: on_hand must be >= 0")
            conn.execute(db.upsert(self.engine, db.inventory), [{**asdict(item), "updated_at": now} for item in items])
            write_audit(conn, actor, "update", "inventory", "set", count=len(items))
            self.changes.catalog_changed(conn)
        self.catalog_cache.reload()
        return len(items)

    def upsert_campaign(self, campaign: Campaign, actor: str = "") -> Campaign:
        _check_campaign(campaign)
        campaign = replace(campaign, campaign_id=campaign.campaign_id or f"cmp-{uuid.uuid4().hex[:12]}")
        with db.write(self.engine) as conn:
            if campaign.skus:
                require_skus(conn, campaign.skus)
            for store_id in campaign.store_ids:
                require_store(conn, store_id)
            row = {**campaign_to_row(campaign), "updated_at": time.time()}
            conn.execute(db.upsert(self.engine, db.campaigns).values(**row))
            write_audit(conn, actor, "update", f"campaign:{campaign.campaign_id}", campaign.name)
            self.changes.catalog_changed(conn)
        self.catalog_cache.reload()
        return campaign
