"""What members do: purchases at the till, online behaviour (views, carts, searches) and feedback on offers.

Every feed is idempotent by its id: a transaction, an online event or a feedback id seen before
changes nothing. A purchase takes the stock off the shelf; an unlike is remembered for good.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, select, update

from retailface.services.personalization import db, dialects
from retailface.services.personalization.base import (
    Component,
    find_member,
    known_skus,
    load_member,
    require_skus,
    require_store,
    write_audit,
)
from retailface.services.personalization.domain import (
    FEEDBACK_TYPES,
    ONLINE_EVENT_TYPES,
    ItemOutcome,
    OnlineEvent,
    Purchase,
)
from retailface.services.shared.errors import InvalidArgument, NotFound

# Feedback that the member never wants an item (or its category) again.
DISLIKE_KIND = {"unliked": "sku", "unliked_category": "category"}


class Purchases(Component):
    def record(self, purchase: Purchase, actor: str = "") -> bool:
        """Stores a POS transaction; returns True when it was a duplicate (nothing changed)."""
        if not purchase.transaction_id:
            raise InvalidArgument("transaction_id is required (it is the idempotency key)")
        if not purchase.lines:
            raise InvalidArgument("a purchase needs at least one line")
        for line in purchase.lines:
            if line.quantity <= 0 or line.unit_price < 0:
                raise InvalidArgument(f"line {line.sku!r}: quantity must be > 0 and unit_price >= 0")
        transactions = db.transactions
        with db.write(self.engine) as conn:
            dialects.lock_key(conn, "transaction", purchase.transaction_id)  # one replica records it
            seen = select(transactions.c.transaction_id).where(transactions.c.transaction_id == purchase.transaction_id)
            if conn.execute(seen).first() is not None:
                return True
            require_store(conn, purchase.store_id)
            member_id = None
            if purchase.member_id or purchase.loyalty_number:
                member_id = find_member(conn, purchase.member_id, purchase.loyalty_number).member_id
            skus = [line.sku for line in purchase.lines]
            require_skus(conn, skus)
            total = sum(line.quantity * line.unit_price for line in purchase.lines)
            conn.execute(
                transactions.insert().values(
                    transaction_id=purchase.transaction_id,
                    store_id=purchase.store_id,
                    lane_id=purchase.lane_id,
                    member_id=member_id,
                    at=purchase.at,
                    total=round(total, 2),
                )
            )
            conn.execute(
                db.transaction_lines.insert(),
                [
                    {
                        "transaction_id": purchase.transaction_id,
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "unit_price": line.unit_price,
                    }
                    for line in purchase.lines
                ],
            )
            self._take_off_the_shelf(conn, purchase)
            self.changes.stock_changed(conn, purchase.store_id, skus)
            if member_id and purchase.redeemed_offer_ids:
                conn.execute(
                    update(db.offer_deliveries)
                    .where(
                        db.offer_deliveries.c.offer_id.in_(purchase.redeemed_offer_ids),
                        db.offer_deliveries.c.member_id == member_id,
                    )
                    .values(redeemed_at=purchase.at)
                )
            if member_id:
                write_audit(
                    conn,
                    actor,
                    "update",
                    member_id,
                    "purchase",
                    transaction_id=purchase.transaction_id,
                    store_id=purchase.store_id,
                    lines=len(purchase.lines),
                )
        self.catalog_cache.refresh_stock(purchase.store_id, skus)
        return False

    def _take_off_the_shelf(self, conn: Connection, purchase: Purchase) -> None:
        greatest = dialects.greatest(self.engine)
        for line in purchase.lines:
            conn.execute(
                update(db.inventory)
                .where(db.inventory.c.store_id == purchase.store_id, db.inventory.c.sku == line.sku)
                .values(on_hand=greatest(db.inventory.c.on_hand - line.quantity, 0))
            )

    def ingest_online_events(self, events: Sequence[OnlineEvent]) -> list[ItemOutcome]:
        """Stores web/app events; per event: OK, ALREADY_EXISTS (duplicate), NOT_FOUND or INVALID_ARGUMENT."""
        outcomes: list[ItemOutcome] = []
        with db.write(self.engine) as conn:
            ids = [event.event_id for event in events if event.event_id]
            online = db.online_events
            existing = (
                set(conn.execute(select(online.c.event_id).where(online.c.event_id.in_(ids))).scalars())
                if ids
                else set()
            )
            member_ids = {event.member_id for event in events}
            members = set(
                conn.execute(select(db.members.c.member_id).where(db.members.c.member_id.in_(member_ids))).scalars()
            )
            skus = known_skus(conn, (event.sku for event in events if event.sku))
            rows = []
            seen: set[str] = set()
            for event in events:
                if not event.event_id:
                    outcomes.append(ItemOutcome("INVALID_ARGUMENT", "event_id is required"))
                elif event.event_id in existing or event.event_id in seen:
                    outcomes.append(ItemOutcome("ALREADY_EXISTS", "duplicate event id; nothing changed"))
                elif event.type not in ONLINE_EVENT_TYPES:
                    message = f"type must be one of {', '.join(ONLINE_EVENT_TYPES)}"
                    outcomes.append(ItemOutcome("INVALID_ARGUMENT", message))
                elif event.member_id not in members:
                    outcomes.append(ItemOutcome("NOT_FOUND", f"unknown member {event.member_id!r}"))
                elif (event.type != "searched" or event.sku) and event.sku not in skus:  # a search's sku is optional
                    outcomes.append(ItemOutcome("NOT_FOUND", f"unknown sku {event.sku!r}"))
                else:
                    seen.add(event.event_id)
                    rows.append(
                        {
                            "event_id": event.event_id,
                            "member_id": event.member_id,
                            "type": event.type,
                            "sku": event.sku or None,
                            "query": event.query[:200],
                            "session_id": event.session_id,
                            "at": event.at,
                        }
                    )
                    outcomes.append(ItemOutcome("OK"))
            if rows:
                conn.execute(db.insert_ignoring_duplicates(self.engine, online), rows)
        return outcomes

    def feedback(
        self,
        feedback_id: str,
        member_id: str,
        offer_id: str,
        kind: str,
        at: float | None = None,
        actor: str = "",
        sku: str = "",
    ) -> bool:
        """Records feedback on an offer; returns True for a duplicate feedback id.

        "unliked" with a sku and no offer unlikes that product (the portal's unlike button on a product).
        """
        at = time.time() if at is None else at
        if kind not in FEEDBACK_TYPES:
            raise InvalidArgument(f"feedback type must be one of {', '.join(FEEDBACK_TYPES)}")
        if not offer_id and sku:
            return self._unlike_product(member_id, sku, kind, at, actor)
        feedback_id = feedback_id or uuid.uuid5(uuid.NAMESPACE_OID, f"{member_id}:{offer_id}:{kind}").hex
        deliveries = db.offer_deliveries
        with db.write(self.engine) as conn:
            load_member(conn, member_id)
            delivery = conn.execute(
                select(deliveries.c.sku, deliveries.c.category).where(
                    deliveries.c.offer_id == offer_id, deliveries.c.member_id == member_id
                )
            ).first()
            if delivery is None:
                raise NotFound(f"unknown offer {offer_id!r} for member {member_id!r}")
            # RETURNING says whether a row went in, on both dialects (psycopg reports rowcount -1 for this insert).
            inserted = conn.execute(
                db.insert_ignoring_duplicates(self.engine, db.offer_feedback)
                .values(feedback_id=feedback_id, member_id=member_id, offer_id=offer_id, type=kind, at=at)
                .returning(db.offer_feedback.c.feedback_id)
            ).first()
            if inserted is None:
                return True
            if kind in DISLIKE_KIND:
                value = delivery.sku if DISLIKE_KIND[kind] == "sku" else delivery.category
                conn.execute(
                    db.insert_ignoring_duplicates(self.engine, db.member_dislikes).values(
                        member_id=member_id, kind=DISLIKE_KIND[kind], value=value, at=at
                    )
                )
            if kind == "redeemed":
                conn.execute(update(deliveries).where(deliveries.c.offer_id == offer_id).values(redeemed_at=at))
            write_audit(conn, actor, "update", member_id, f"feedback {kind}", offer_id=offer_id)
        return False

    def _unlike_product(self, member_id: str, sku: str, kind: str, at: float, actor: str) -> bool:
        """The member never wants `sku` offered again; True when it was unliked already."""
        if kind != "unliked":
            raise InvalidArgument("a sku without an offer_id takes feedback type unliked only; send an offer_id")
        with db.write(self.engine) as conn:
            load_member(conn, member_id)
            require_skus(conn, [sku])
            inserted = conn.execute(
                db.insert_ignoring_duplicates(self.engine, db.member_dislikes)
                .values(member_id=member_id, kind="sku", value=sku, at=at)
                .returning(db.member_dislikes.c.value)
            ).first()
            if inserted is not None:
                write_audit(conn, actor, "update", member_id, "feedback unliked", sku=sku)
        return inserted is None
