"""The personalization service's settings: the variables it reads (SETTINGS) and the tunables of its logic.

`SETTINGS` declares every RETAILFACE_PERSONALIZATION_* variable (flags, validation, docs);
`Settings` is what the logic reads, and `settings_from` fills it from a loaded configuration.
The database, the channels and the background intervals are read by the wiring (app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    number_in,
    parse_bool,
    parse_non_negative_float,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    parse_unit_float,
)

P = "RETAILFACE_PERSONALIZATION_"


parse_percent = number_in(0.0, 90.0, "a discount percent in [0, 90]", "percent")


SETTINGS: list[Setting] = [
    Setting(
        f"{P}DATA_DIR",
        parse_path,
        Path("~/.local/share/retailface/personalization"),
        "directory of the default SQLite database (personalization.sqlite3)",
    ),
    Setting(
        f"{P}DB_URL",
        str,
        None,
        "SQLAlchemy database URL (default: SQLite in the data dir; e.g. postgresql+psycopg://user@host/db)",
        secret=True,
    ),
    Setting(
        f"{P}SQLITE_CHECKPOINT_SECONDS",
        parse_non_negative_float,
        1.0,
        "SQLite: checkpoint the WAL in the background this often (0: inside commits, SQLite's default)",
    ),
    Setting(
        f"{P}WEBHOOK_URL",
        str,
        None,
        "URL that receives member notifications as JSON POSTs with an Idempotency-Key header (unset: log only)",
    ),
    Setting(f"{P}WEBHOOK_TIMEOUT_SECONDS", parse_positive_float, 5.0, "timeout of one webhook POST"),
    Setting(f"{P}OUTBOX_POLL_SECONDS", parse_positive_float, 1.0, "how often the outbox worker looks for due items"),
    Setting(
        f"{P}OUTBOX_LEASE_SECONDS",
        parse_positive_float,
        60.0,
        "how long a replica holds a notification it is sending; one it claimed and never finished (it died) "
        "is sent by another replica after this. Keep it above the webhook timeout",
    ),
    Setting(
        f"{P}OUTBOX_RETRY_BASE_SECONDS",
        parse_positive_float,
        2.0,
        "first retry delay of a failed notification (doubles per attempt)",
    ),
    Setting(f"{P}OUTBOX_RETRY_MAX_SECONDS", parse_positive_float, 600.0, "longest retry delay"),
    Setting(
        f"{P}OUTBOX_MAX_ATTEMPTS",
        parse_positive_int,
        30,
        "attempts before a notification is parked as dead (kept for an operator, never dropped)",
    ),
    Setting(
        f"{P}MODEL_REFRESH_SECONDS",
        parse_non_negative_float,
        900.0,
        "retrain the recommender in the background this often (0: only at start-up)",
    ),
    Setting(
        f"{P}CATALOG_RELOAD_SECONDS",
        parse_non_negative_float,
        60.0,
        "reload the in-memory catalog, stock and campaigns this often (0: only on writes through this service; "
        "on PostgreSQL every replica also reloads at once on another replica's write, by LISTEN/NOTIFY)",
    ),
    Setting(f"{P}OFFERS_PER_VISIT", parse_positive_int, 3, "offers per visit or request when the member set none"),
    Setting(
        f"{P}FREQUENCY_CAP_PER_DAY",
        parse_positive_int,
        2,
        "times one item may be offered to one member in 24 hours (campaigns may set their own cap)",
    ),
    Setting(f"{P}INTENT_WINDOW_DAYS", parse_positive_float, 21.0, "online views and carts younger than this count"),
    Setting(f"{P}INTENT_DISCOUNT_PERCENT", parse_percent, 20.0, "discount on items seen or carted online"),
    Setting(
        f"{P}DEFAULT_DISCOUNT_PERCENT",
        parse_percent,
        10.0,
        "discount of history, similar-shopper and basket offers outside campaigns",
    ),
    Setting(
        f"{P}DISSATISFACTION_NEGATIVE_FRACTION",
        parse_unit_float,
        0.6,
        "share of negative-expression frames at a lane that raises a dissatisfaction alert",
    ),
    Setting(
        f"{P}DISSATISFACTION_SECONDS",
        parse_non_negative_float,
        5.0,
        "how long the negative expression must have been observed",
    ),
    Setting(
        f"{P}ALERT_COOLDOWN_SECONDS",
        parse_non_negative_float,
        300.0,
        "at most one dissatisfaction alert per shopper within this time",
    ),
    Setting(
        f"{P}ALERT_CATCHUP_SECONDS",
        parse_non_negative_float,
        900.0,
        "unacknowledged alerts this recent are replayed to a staff screen that connects",
    ),
    Setting(
        f"{P}WATCHLIST_ENABLED",
        parse_bool,
        True,
        "kill switch of watchlist alerts: false turns them off in every store. Each store decides with its own "
        "watchlist_enabled flag (UpsertStore; off by default); alerts always need a person to confirm them",
    ),
    Setting(
        f"{P}ANALYTICS_MIN_BUCKET",
        parse_positive_int,
        3,
        "store analytics leave out buckets (age band and gender, zone, lane) with fewer shoppers or events than "
        "this, so that no single shopper can be singled out",
    ),
    Setting(
        f"{P}MEMBER_SIGNIN_TTL_SECONDS",
        number_in(60.0, 86_400.0, "seconds in [60, 86400]", "seconds"),
        900.0,
        "how long a member portal sign-in code stays valid when the issuer asks for no other time",
    ),
    Setting(
        f"{P}MEMBER_SIGNIN_MAX_TTL_SECONDS",
        number_in(60.0, 7 * 86_400.0, "seconds in [60, 604800]", "seconds"),
        86_400.0,
        "the longest validity an issuer may ask for; longer requests are cut to this",
    ),
    Setting(
        f"{P}MEMBER_SESSION_SECONDS",
        number_in(60.0, 86_400.0, "seconds in [60, 86400]", "seconds"),
        3600.0,
        "the longest a member portal session opened by a sign-in code may last",
    ),
    Setting(
        f"{P}MEMBER_REF_KEY",
        str,
        None,
        "key of the keyed hash that names an erased member in erasure receipts (unset: a random key made once "
        "and kept in the database); keep it stable, or receipts no longer match their members",
        secret=True,
    ),
]


@dataclass
class Settings:
    """The tunables of the personalization logic (defaults for tests; the service fills them from SETTINGS)."""

    offers_per_visit: int = 3
    frequency_cap_per_day: int = 2
    intent_window_days: float = 21.0
    intent_discount_percent: float = 20.0
    history_discount_percent: float = 10.0
    similar_discount_percent: float = 10.0
    basket_discount_percent: float = 10.0
    little_history_items: int = 5
    offer_validity_hours: float = 24.0
    dissatisfaction_negative_fraction: float = 0.6
    dissatisfaction_min_seconds: float = 5.0
    alert_cooldown_seconds: float = 300.0
    alert_catchup_seconds: float = 900.0
    watchlist_enabled: bool = True  # the kill switch; each store enables the watchlist itself
    analytics_min_bucket: int = 3
    trailing_spend_days: float = 365.0
    visit_timeout_hours: float = 12.0
    member_signin_ttl_seconds: float = 900.0
    member_signin_max_ttl_seconds: float = 86_400.0
    member_session_seconds: float = 3600.0
    member_ref_key: str = ""  # empty: a random key kept in the database (erasure.py)


def settings_from(config: ServiceConfig) -> Settings:
    default_discount = float(config.get(f"{P}DEFAULT_DISCOUNT_PERCENT"))
    return Settings(
        offers_per_visit=int(config.get(f"{P}OFFERS_PER_VISIT")),
        frequency_cap_per_day=int(config.get(f"{P}FREQUENCY_CAP_PER_DAY")),
        intent_window_days=float(config.get(f"{P}INTENT_WINDOW_DAYS")),
        intent_discount_percent=float(config.get(f"{P}INTENT_DISCOUNT_PERCENT")),
        history_discount_percent=default_discount,
        similar_discount_percent=default_discount,
        basket_discount_percent=default_discount,
        dissatisfaction_negative_fraction=float(config.get(f"{P}DISSATISFACTION_NEGATIVE_FRACTION")),
        dissatisfaction_min_seconds=float(config.get(f"{P}DISSATISFACTION_SECONDS")),
        alert_cooldown_seconds=float(config.get(f"{P}ALERT_COOLDOWN_SECONDS")),
        alert_catchup_seconds=float(config.get(f"{P}ALERT_CATCHUP_SECONDS")),
        watchlist_enabled=bool(config.get(f"{P}WATCHLIST_ENABLED")),
        analytics_min_bucket=int(config.get(f"{P}ANALYTICS_MIN_BUCKET")),
        member_signin_ttl_seconds=float(config.get(f"{P}MEMBER_SIGNIN_TTL_SECONDS")),
        member_signin_max_ttl_seconds=float(config.get(f"{P}MEMBER_SIGNIN_MAX_TTL_SECONDS")),
        member_session_seconds=float(config.get(f"{P}MEMBER_SESSION_SECONDS")),
        member_ref_key=str(config.get(f"{P}MEMBER_REF_KEY") or ""),
    )
