"""Deterministic synthetic retail data: members, catalog, stores, inventory, purchases, online sessions.

    python -m retailface.devtools.synthetic --db sqlite:///data.db --seed 7 --scale full

The same seed and end date give the same data. Purchases have learnable structure: each member
shops a few "missions" (weekly groceries, breakfast, barbecue, baby, pets, fashion, home & tech,
health, gifting) with their own staples, and every product has a couple of complements from
categories that go with it (coffee and milk, burgers and buns), so "bought together" is in the data
for a recommender to find. Some categories are sensitive (pharmacy, intimate health, gifts).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import itertools
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, func, select

from retailface.services.personalization import db, migrations

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Scale:
    members: int
    products: int
    stores: int
    transaction_lines: int
    online_member_share: float


SCALES = {
    "full": Scale(members=10_000, products=2_000, stores=5, transaction_lines=500_000, online_member_share=0.5),
    "small": Scale(members=400, products=300, stores=5, transaction_lines=20_000, online_member_share=0.6),
}


@dataclass(frozen=True)
class Category:
    name: str
    label: str
    sensitive: bool
    price_range: tuple[float, float]
    nouns: tuple[str, ...]
    weight: float  # share of the catalog


CATEGORIES: tuple[Category, ...] = (
    Category(
        "produce",
        "Fresh Produce",
        False,
        (0.5, 6),
        ("Apples", "Bananas", "Avocados", "Tomatoes", "Spinach", "Carrots", "Onions", "Lemons", "Berries", "Peppers"),
        1.4,
    ),
    Category(
        "dairy",
        "Dairy & Eggs",
        False,
        (0.9, 8),
        (
            "Whole Milk",
            "Oat Milk",
            "Greek Yogurt",
            "Cheddar",
            "Butter",
            "Free-Range Eggs",
            "Mozzarella",
            "Cream Cheese",
        ),
        1.2,
    ),
    Category(
        "bakery",
        "Bakery",
        False,
        (1, 7),
        ("Sourdough Loaf", "Burger Buns", "Croissants", "Bagels", "Baguette", "Muffins", "Tortillas"),
        0.8,
    ),
    Category(
        "meat",
        "Meat & Poultry",
        False,
        (3, 25),
        ("Chicken Breast", "Beef Burgers", "Sausages", "Steak", "Ground Beef", "Pork Ribs", "Turkey Slices"),
        1.0,
    ),
    Category("seafood", "Seafood", False, (5, 30), ("Salmon Fillet", "Shrimp", "Cod", "Tuna Steak"), 0.5),
    Category("frozen", "Frozen", False, (2, 12), ("Pizza", "Ice Cream", "Peas", "Fries", "Dumplings"), 0.8),
    Category(
        "snacks",
        "Snacks",
        False,
        (1, 6),
        ("Potato Chips", "Tortilla Chips", "Salsa", "Pretzels", "Chocolate Bar", "Mixed Nuts", "Popcorn"),
        1.1,
    ),
    Category(
        "beverages",
        "Beverages",
        False,
        (0.8, 15),
        ("Sparkling Water", "Cola", "Orange Juice", "Lager 6-pack", "Red Wine", "Iced Tea", "Lemonade"),
        1.1,
    ),
    Category(
        "coffee_tea",
        "Coffee & Tea",
        False,
        (3, 18),
        ("Espresso Beans", "Ground Coffee", "Green Tea", "Coffee Filters", "Chai", "Decaf Pods"),
        0.6,
    ),
    Category(
        "breakfast",
        "Breakfast & Cereal",
        False,
        (2, 8),
        ("Granola", "Oats", "Corn Flakes", "Pancake Mix", "Maple Syrup", "Jam"),
        0.6,
    ),
    Category(
        "pantry",
        "Pantry",
        False,
        (0.8, 10),
        ("Pasta", "Rice", "Olive Oil", "Tomato Sauce", "Beans", "Flour", "Spices", "Ketchup", "BBQ Sauce"),
        1.2,
    ),
    Category(
        "household",
        "Household",
        False,
        (2, 20),
        ("Paper Towels", "Dish Soap", "Laundry Detergent", "Trash Bags", "Paper Plates", "Sponges", "Charcoal"),
        0.8,
    ),
    Category(
        "personal_care",
        "Personal Care",
        False,
        (2, 15),
        ("Shampoo", "Toothpaste", "Body Wash", "Deodorant", "Sunscreen", "Hand Cream"),
        0.8,
    ),
    Category(
        "baby",
        "Baby",
        False,
        (3, 35),
        ("Diapers", "Baby Wipes", "Infant Formula", "Baby Food Pouch", "Baby Shampoo"),
        0.5,
    ),
    Category("pet", "Pet", False, (2, 40), ("Dog Food", "Cat Food", "Cat Litter", "Dog Treats", "Chew Toy"), 0.5),
    Category(
        "apparel",
        "Apparel",
        False,
        (10, 80),
        ("Wool Sweater", "Denim Jeans", "Rain Jacket", "T-Shirt", "Socks 3-pack", "Scarf", "Sneakers"),
        0.9,
    ),
    Category(
        "home",
        "Home & Kitchen",
        False,
        (5, 60),
        ("Mug", "Frying Pan", "Towel Set", "Candle", "Storage Box", "Cutting Board"),
        0.6,
    ),
    Category(
        "electronics",
        "Electronics",
        False,
        (8, 150),
        ("Headphones", "Phone Charger", "USB Cable", "Power Bank", "Bluetooth Speaker", "AA Batteries"),
        0.5,
    ),
    Category("toys", "Toys", False, (5, 50), ("Building Blocks", "Puzzle", "Plush Bear", "Board Game", "Toy Car"), 0.4),
    Category(
        "pharmacy",
        "Pharmacy",
        True,
        (3, 30),
        ("Pain Relief", "Allergy Tablets", "Cold & Flu", "Antacid", "Vitamins", "Pregnancy Test"),
        0.5,
    ),
    Category(
        "intimate_health",
        "Intimate Health",
        True,
        (4, 25),
        ("Condoms", "Lubricant", "Incontinence Pads", "Feminine Care"),
        0.25,
    ),
    Category(
        "gifts",
        "Gifts",
        True,
        (5, 60),
        ("Gift Card", "Flowers", "Greeting Card", "Gift Box Chocolates", "Gift Wrap"),
        0.35,
    ),
)

CATEGORY_BY_NAME = {category.name: category for category in CATEGORIES}

# Shopping missions: category -> weight within the mission.
MISSIONS: dict[str, dict[str, float]] = {
    "weekly_groceries": {
        "produce": 3,
        "dairy": 3,
        "bakery": 2,
        "meat": 2,
        "pantry": 2,
        "frozen": 1.5,
        "beverages": 1.5,
        "snacks": 1,
        "household": 1,
    },
    "breakfast": {"dairy": 3, "bakery": 3, "coffee_tea": 3, "breakfast": 3, "produce": 1},
    "barbecue": {"meat": 4, "bakery": 2, "beverages": 3, "snacks": 2, "pantry": 1, "household": 1, "produce": 1},
    "baby": {"baby": 5, "personal_care": 2, "household": 1, "dairy": 1, "toys": 1},
    "pets": {"pet": 6, "household": 1},
    "fashion": {"apparel": 6, "personal_care": 1},
    "home_tech": {"electronics": 4, "home": 4, "household": 1},
    "health": {"pharmacy": 4, "personal_care": 3, "intimate_health": 1},
    "gifting": {"gifts": 4, "toys": 2, "snacks": 1, "beverages": 1},
    "seafood_dinner": {"seafood": 4, "produce": 2, "beverages": 2, "pantry": 1},
}

STORES: tuple[tuple[str, str, str], ...] = (
    ("store-01", "Downtown", "America/New_York"),
    ("store-02", "Riverside", "America/Chicago"),
    ("store-03", "Harbor", "America/Los_Angeles"),
    ("store-04", "Hillcrest", "America/Denver"),
    ("store-05", "Lakeside", "America/New_York"),
    ("store-06", "Midtown", "America/New_York"),
)

BRANDS = (
    "Northfield",
    "Blue Harbor",
    "Green Valley",
    "Maple & Co",
    "Sunrise",
    "Urban Pantry",
    "Everyday",
    "Summit",
    "Coastline",
    "Oakridge",
    "Brightside",
    "Willow",
)
ADJECTIVES = ("Organic", "Classic", "Premium", "Family Size", "Light", "Original", "Select", "Fresh", "Value")
FIRST_NAMES = (
    "Ava",
    "Liam",
    "Mia",
    "Noah",
    "Emma",
    "Lucas",
    "Sofia",
    "Ethan",
    "Chloe",
    "Mateo",
    "Zoe",
    "Omar",
    "Priya",
    "Kenji",
    "Fatima",
    "Diego",
    "Hannah",
    "Tariq",
    "Grace",
    "Ivan",
    "Leila",
    "Sam",
    "Nora",
    "Wei",
)
LAST_NAMES = (
    "Smith",
    "Garcia",
    "Chen",
    "Okafor",
    "Müller",
    "Rossi",
    "Kim",
    "Patel",
    "Nguyen",
    "Johnson",
    "Silva",
    "Haddad",
    "Kowalski",
    "Brown",
    "Tanaka",
    "Martin",
    "Ahmed",
    "Lopez",
)
LANES = tuple(f"lane-{n}" for n in range(1, 7))
DAY = 86_400.0
HISTORY_DAYS = 180
ONLINE_DAYS = 21


@dataclass
class Catalog:
    skus: list[str]
    category_of: list[str]
    price_of: list[float]
    by_category: dict[str, list[int]]
    cumulative_popularity: dict[str, list[float]]
    complements: list[list[int]]

    def popular_in(self, category: str, rng: random.Random) -> int:
        cumulative = self.cumulative_popularity[category]
        index = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
        return self.by_category[category][min(index, len(cumulative) - 1)]


def _weighted_choice(weights: dict[str, float], rng: random.Random) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _build_catalog(scale: Scale, rng: random.Random) -> tuple[Catalog, list[dict[str, object]]]:
    total_weight = sum(category.weight for category in CATEGORIES)
    counts = [max(3, round(scale.products * category.weight / total_weight)) for category in CATEGORIES]
    counts[0] += scale.products - sum(counts)  # exact total
    skus: list[str] = []
    category_of: list[str] = []
    price_of: list[float] = []
    rows: list[dict[str, object]] = []
    by_category: dict[str, list[int]] = {}
    cumulative: dict[str, list[float]] = {}
    names_used: set[str] = set()
    for category, count in zip(CATEGORIES, counts, strict=True):
        indices = []
        for rank in range(count):
            index = len(skus)
            sku = f"SKU-{index + 1:05d}"
            for attempt in itertools.count():
                name = f"{rng.choice(BRANDS)} {rng.choice(ADJECTIVES)} {rng.choice(category.nouns)}"
                if attempt > 5:
                    name = f"{name} #{rank + 1}"
                if name not in names_used:
                    break
            names_used.add(name)
            low, high = category.price_range
            price = round(low + (high - low) * rng.random() ** 2, 2)
            skus.append(sku)
            category_of.append(category.name)
            price_of.append(price)
            indices.append(index)
            rows.append(
                {"sku": sku, "name": name, "category": category.name, "sensitive": category.sensitive, "price": price}
            )
        by_category[category.name] = indices
        # Zipf-like popularity inside a category: a few best sellers, a long tail.
        cumulative[category.name] = list(itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(count)))
        rng.shuffle(by_category[category.name])
    catalog = Catalog(skus, category_of, price_of, by_category, cumulative, [])
    # Complements: two partners per product from categories that share a mission with it.
    partners: dict[str, dict[str, float]] = {category.name: {} for category in CATEGORIES}
    for weights in MISSIONS.values():
        for first, second in itertools.permutations(weights, 2):
            partners[first][second] = partners[first].get(second, 0.0) + weights[second]
    for index in range(len(skus)):
        options = partners[category_of[index]] or {category_of[index]: 1.0}
        catalog.complements.append([catalog.popular_in(_weighted_choice(options, rng), rng) for _ in range(2)])
    return catalog, rows


def _member_rows(
    scale: Scale, rng: random.Random, store_ids: Sequence[str], timezone_of: dict[str, str], now: float
) -> list[dict[str, object]]:
    rows = []
    mission_categories = sorted({c for weights in MISSIONS.values() for c in weights})
    for number in range(1, scale.members + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        home = rng.choice(store_ids)
        scopes = [
            scope
            for scope, share in (
                ("face_identification", 0.75),
                ("personalized_offers", 0.8),
                ("staff_greeting", 0.5),
                ("analytics", 0.7),
            )
            if rng.random() < share
        ]
        channels = [{"kind": "log", "address": f"device-{number:05d}"}]
        if rng.random() < 0.3:
            channels.append({"kind": "webhook", "address": f"push-token-{rng.getrandbits(64):016x}"})
        quiet = rng.random() < 0.4
        excluded = [rng.choice(mission_categories)] if rng.random() < 0.1 else []
        created = now - rng.uniform(HISTORY_DAYS, 3 * 365) * DAY
        rows.append(
            {
                "member_id": f"m{number:05d}",
                "loyalty_number": f"LOY{number * 7919 % 100_000_000:08d}",
                "display_name": f"{first} {last}",
                "home_store_id": home,
                "created_at": created,
                "updated_at": created,
                "consent_policy_version": "2026-01",
                "consent_scopes": ",".join(scopes),
                "consent_granted_at": created if scopes else None,
                "consent_revoked_at": None,
                "consent_source": rng.choice(("kiosk", "app", "store-desk")),
                "allow_greeting": "staff_greeting" in scopes and rng.random() < 0.9,
                "preferred_name": first,
                "excluded_categories": json.dumps(excluded),
                "favourite_categories": "[]",
                "quiet_start_minute": 21 * 60 if quiet else None,
                "quiet_end_minute": 8 * 60 if quiet else None,
                "timezone": timezone_of[home],
                "channels": json.dumps(channels),
                "max_offers_per_visit": 0,
            }
        )
    return rows


@dataclass
class Taste:
    missions: dict[str, float]
    staples: list[int]


def _taste(catalog: Catalog, rng: random.Random) -> Taste:
    names = list(MISSIONS)
    # Dirichlet-like mixture: most shoppers have one or two dominant missions.
    raw = {name: rng.gammavariate(0.35, 1.0) for name in names}
    total = sum(raw.values()) or 1.0
    missions = {name: value / total + 1e-6 for name, value in raw.items()}
    staples = []
    for _ in range(rng.randint(6, 18)):
        category = _weighted_choice(MISSIONS[_weighted_choice(missions, rng)], rng)
        staples.append(catalog.popular_in(category, rng))
    return Taste(missions, staples)


def _basket(catalog: Catalog, taste: Taste | None, rng: random.Random) -> list[int]:
    mission = _weighted_choice(taste.missions, rng) if taste else rng.choice(list(MISSIONS))
    size = min(25, max(1, int(rng.lognormvariate(1.45, 0.55))))
    items: list[int] = []
    while len(items) < size:
        draw = rng.random()
        if taste and draw < 0.35:
            item = rng.choice(taste.staples)
        elif items and draw < 0.65:
            item = rng.choice(catalog.complements[rng.choice(items)])
        else:
            item = catalog.popular_in(_weighted_choice(MISSIONS[mission], rng), rng)
        if item not in items:
            items.append(item)
        elif rng.random() < 0.3:
            break
    return items


class DatabaseNotEmptyError(ValueError):
    """Synthetic data goes into an empty database only."""


def generate(engine: Engine, seed: int = 7, scale_name: str = "small", end: dt.date | None = None) -> dict[str, int]:
    """Fills an empty database; returns row counts. Deterministic for (seed, scale, end)."""
    scale = SCALES[scale_name]
    migrations.migrate(engine)
    with db.read(engine) as conn:
        if conn.execute(select(func.count()).select_from(db.members)).scalar_one():
            raise DatabaseNotEmptyError("the database already has members; generate into an empty database")
    started = time.perf_counter()
    end_date = end or dt.datetime.now(dt.UTC).date()
    now = dt.datetime.combine(end_date, dt.time(), tzinfo=dt.UTC).timestamp()
    rng = random.Random(seed)

    store_rows = [
        {"store_id": store_id, "name": f"RetailFace {name}", "timezone": tz}
        for store_id, name, tz in STORES[: scale.stores]
    ]
    store_ids = [row["store_id"] for row in store_rows]
    timezone_of = {row["store_id"]: row["timezone"] for row in store_rows}

    catalog, product_rows = _build_catalog(scale, rng)
    for row in product_rows:
        row["updated_at"] = now

    inventory_rows = []
    for store_id in store_ids:
        aisle_numbers = list(range(1, len(CATEGORIES) + 1))
        rng.shuffle(aisle_numbers)
        aisle_of = {category.name: str(number) for category, number in zip(CATEGORIES, aisle_numbers, strict=True)}
        for index, sku in enumerate(catalog.skus):
            if rng.random() < 0.08:  # not carried here
                continue
            on_hand = 0 if rng.random() < 0.08 else rng.randint(1, 60)
            inventory_rows.append(
                {
                    "store_id": store_id,
                    "sku": sku,
                    "on_hand": on_hand,
                    "aisle": aisle_of[catalog.category_of[index]],
                    "shelf": f"{'ABCDEF'[rng.randrange(6)]}{rng.randint(1, 5)}",
                    "updated_at": now,
                }
            )

    member_rows = _member_rows(scale, rng, store_ids, timezone_of, now)
    tastes = [_taste(catalog, rng) for _ in member_rows]
    # Heavy-tailed activity: many occasional shoppers, some regulars, a few with almost no history.
    activity = [rng.lognormvariate(0.0, 1.0) for _ in member_rows]
    activity_total = sum(activity)
    cumulative_activity = list(itertools.accumulate(activity))

    transaction_rows: list[dict[str, object]] = []
    line_rows: list[dict[str, object]] = []
    for number in itertools.count(1):
        if len(line_rows) >= scale.transaction_lines:
            break
        anonymous = rng.random() < 0.12
        member_index = None if anonymous else bisect.bisect_left(cumulative_activity, rng.random() * activity_total)
        if member_index is not None:
            member_index = min(member_index, len(member_rows) - 1)
        taste = tastes[member_index] if member_index is not None else None
        items = _basket(catalog, taste, rng)[: scale.transaction_lines - len(line_rows)]
        home = str(member_rows[member_index]["home_store_id"]) if member_index is not None else ""
        store_id = home if home and rng.random() < 0.8 else rng.choice(store_ids)
        at = now - rng.random() * HISTORY_DAYS * DAY
        transaction_id = f"t{seed}-{number:07d}"
        total = 0.0
        for item in items:
            quantity = 1 if rng.random() < 0.8 else rng.randint(2, 4)
            total += quantity * catalog.price_of[item]
            line_rows.append(
                {
                    "transaction_id": transaction_id,
                    "sku": catalog.skus[item],
                    "quantity": quantity,
                    "unit_price": catalog.price_of[item],
                }
            )
        transaction_rows.append(
            {
                "transaction_id": transaction_id,
                "store_id": store_id,
                "lane_id": rng.choice(LANES),
                "at": at,
                "total": round(total, 2),
                "member_id": member_rows[member_index]["member_id"] if member_index is not None else None,
            }
        )

    online_rows: list[dict[str, object]] = []
    event_numbers = itertools.count(1)
    for member_index, member in enumerate(member_rows):
        if rng.random() >= scale.online_member_share:
            continue
        for session_number in range(rng.randint(1, 4)):
            session_id = f"s-{member['member_id']}-{session_number}"
            at = now - rng.random() * ONLINE_DAYS * DAY
            mission = _weighted_choice(tastes[member_index].missions, rng)
            category = _weighted_choice(MISSIONS[mission], rng)

            def add(
                kind: str,
                sku: str | None,
                query: str = "",
                *,
                _session: str = session_id,
                _member: object = member["member_id"],
            ) -> None:
                nonlocal at
                at += rng.uniform(5, 120)
                online_rows.append(
                    {
                        "event_id": f"oe{seed}-{next(event_numbers):08d}",
                        "member_id": _member,
                        "type": kind,
                        "sku": sku,
                        "query": query,
                        "session_id": _session,
                        "at": at,
                    }
                )

            if rng.random() < 0.4:
                add("searched", None, rng.choice(CATEGORY_BY_NAME[category].nouns).lower())
            viewed = list(dict.fromkeys(catalog.popular_in(category, rng) for _ in range(rng.randint(2, 6))))
            for item in viewed:
                add("viewed", catalog.skus[item])
            if rng.random() < 0.45:
                carted = viewed[: rng.randint(1, min(2, len(viewed)))]
                for item in carted:
                    add("added_to_cart", catalog.skus[item])
                outcome = "abandoned_cart" if rng.random() < 0.65 else "purchased_online"
                for item in carted:
                    add(outcome, catalog.skus[item])

    campaign_rows = [
        {
            "campaign_id": "cmp-coffee-week",
            "name": "Coffee week",
            "skus": "[]",
            "categories": '["coffee_tea"]',
            "discount_percent": 15.0,
            "valid_from": now - 3 * DAY,
            "valid_until": now + 30 * DAY,
            "priority": 5,
            "frequency_cap_per_day": 1,
            "store_ids": "[]",
            "updated_at": now,
        },
        {
            "campaign_id": "cmp-fresh",
            "name": "Fresh picks",
            "skus": "[]",
            "categories": '["produce"]',
            "discount_percent": 10.0,
            "valid_from": now - 3 * DAY,
            "valid_until": now + 30 * DAY,
            "priority": 3,
            "frequency_cap_per_day": 2,
            "store_ids": json.dumps(store_ids[:2]),
            "updated_at": now,
        },
    ]

    with db.write(engine) as conn:
        conn.execute(db.stores.insert(), store_rows)
        conn.execute(db.products.insert(), product_rows)
        conn.execute(db.inventory.insert(), inventory_rows)
        conn.execute(db.members.insert(), member_rows)
        conn.execute(db.transactions.insert(), transaction_rows)
        conn.execute(db.transaction_lines.insert(), line_rows)
        conn.execute(db.online_events.insert(), online_rows)
        conn.execute(db.campaigns.insert(), campaign_rows)
    counts = {
        "stores": len(store_rows),
        "products": len(product_rows),
        "inventory": len(inventory_rows),
        "members": len(member_rows),
        "transactions": len(transaction_rows),
        "transaction_lines": len(line_rows),
        "online_events": len(online_rows),
        "campaigns": len(campaign_rows),
    }
    log.info(
        "synthetic_data_generated",
        seed=seed,
        scale=scale_name,
        seconds=round(time.perf_counter() - started, 2),
        **counts,
    )
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate deterministic synthetic retail data.")
    parser.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///data/personalization.sqlite3")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument(
        "--end", type=dt.date.fromisoformat, default=None, help="last day of history, YYYY-MM-DD (default: today, UTC)"
    )
    args = parser.parse_args(argv)
    engine = db.open_engine(args.db)
    try:
        counts = generate(engine, args.seed, args.scale, args.end)
    except ValueError as error:
        print(f"synthetic: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
