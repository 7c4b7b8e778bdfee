"""`Personalization`: the personalization logic, one component per responsibility, over shared resources.

    offers     ranking offers for a member at a store (offers.py)
    checkout   basket completions and member offers at the till (checkout.py)
    visits     camera events, the alerts they raise and the offers they push (visits.py)
    alerts     staff alerts: catch-up, acknowledgement, watchlist (alerts.py)
    purchases  purchases, online behaviour, feedback on offers (purchases.py)
    members    enrollment, preferences, consent, erasure (members.py; the consent rules in consent.py)
    catalog    products, stock and campaigns (catalog.py)
    audit      the audit log (audit.py)
    stores     stores and the camera registry the gateway reads (stores.py)
    watchlist  the security watchlist: expiry, four-eyes confirmation (watchlist.py)
    analytics  store aggregates for managers, nothing per person (analytics.py)
    signin     the member portal's single-use sign-in codes (signin.py)
    member_data  what the store holds about a member: activity and the access export (activity.py)
    erasures   erasure requests and their receipts (erasure.py)

Plain Python over the database (db.py), the recommender, the outbox, the alert bus and the change
feed between replicas (changes.py); the gRPC servicer only converts messages and calls these.
Privacy rules live with the module they govern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from retailface.services.personalization.activity import MemberData
from retailface.services.personalization.alert_bus import AlertBus
from retailface.services.personalization.alerts import StaffAlerts
from retailface.services.personalization.analytics import Analytics
from retailface.services.personalization.audit import AuditLog
from retailface.services.personalization.base import Component, Resources
from retailface.services.personalization.catalog import Catalog
from retailface.services.personalization.catalog_cache import CatalogCache
from retailface.services.personalization.changes import ALERTS, CATALOG, ChangeFeed
from retailface.services.personalization.checkout import Checkout
from retailface.services.personalization.erasure import ErasureRequests
from retailface.services.personalization.members import Members
from retailface.services.personalization.offers import Offers
from retailface.services.personalization.outbox import OutboxWorker
from retailface.services.personalization.purchases import Purchases
from retailface.services.personalization.recommender import ModelHolder
from retailface.services.personalization.settings import Settings
from retailface.services.personalization.signin import MemberSignIn
from retailface.services.personalization.stores import Stores
from retailface.services.personalization.visits import Visits
from retailface.services.personalization.watchlist import Watchlist


class Personalization(Component):
    def __init__(
        self,
        engine: Engine,
        models: ModelHolder,
        settings: Settings | None = None,
        bus: AlertBus | None = None,
        worker: OutboxWorker | None = None,
        catalog: CatalogCache | None = None,
        changes: ChangeFeed | None = None,
    ) -> None:
        cache = catalog or CatalogCache(engine, reload_seconds=0)
        if not cache.snapshot.loaded_at:
            cache.reload()
        feed = changes or ChangeFeed(engine)
        super().__init__(Resources(engine, models, settings or Settings(), cache, bus or AlertBus(), feed, worker))
        self.offers = Offers(self.resources)
        self.checkout = Checkout(self.resources, self.offers)
        self.alerts = StaffAlerts(self.resources)
        self.visits = Visits(self.resources, self.offers, self.alerts)
        self.purchases = Purchases(self.resources)
        self.members = Members(self.resources)
        self.catalog = Catalog(self.resources)
        self.audit = AuditLog(self.resources)
        self.stores = Stores(self.resources)
        self.watchlist = Watchlist(self.resources)
        self.analytics = Analytics(self.resources)
        self.signin = MemberSignIn(self.resources)
        self.member_data = MemberData(self.resources)
        self.erasures = ErasureRequests(self.resources)
        # What other replicas change (PostgreSQL; the wiring, app.py, starts the listener): their
        # catalog writes, and the alerts they raise, for the staff screens connected here.
        feed.on(CATALOG, cache.apply_change)
        feed.on(ALERTS, self._publish_alerts_of_other_replicas)
        feed.on_reconnect(cache.reload)

    def _publish_alerts_of_other_replicas(self, change: Mapping[str, Any]) -> None:
        self.bus.publish(self.alerts.by_ids(change["alert_ids"]))

    def close(self) -> None:
        """Ends the staff alert streams and stops listening to other replicas (server shutdown)."""
        self.bus.close()
        self.changes.stop()
