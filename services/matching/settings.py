"""The matching service's settings, and the store they configure.

Probes that come with their quality (the gateway's, always) are decided by the calibration
(calibration.py): the threshold that holds RETAILFACE_MATCHING_TARGET_FPIR for probes of that
quality at the gallery's size, measured by `make calibrate` on real labelled faces
(docs/ACCURACY.md). The service refuses to start without a calibration made for its model.

The galleries' own thresholds (cosine similarities of L2-normalised SFace embeddings) decide
searches that come without quality, such as an administrator's: members 0.48 / margin 0.05,
watchlist 0.55 / margin 0.08. The margin guards calibrated decisions too (two members close
together are AMBIGUOUS, never a name).
"""

from __future__ import annotations

from pathlib import Path

from retailface.services.matching import calibration
from retailface.services.matching.crypto import load_key
from retailface.services.matching.errors import ModelMismatchError, StartupError
from retailface.services.matching.params import (
    DEFAULT_NORM_TOLERANCE,
    DurabilityPolicy,
    GalleryPolicy,
    IndexParams,
    ReplicationPolicy,
)
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.config import (
    ConfigError,
    ServiceConfig,
    Setting,
    parse_bool,
    parse_non_negative_float,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    parse_unit_float,
)
from retailface.services.shared.galleries import MEMBERS_GALLERY, WATCHLIST_GALLERY
from retailface.services.shared.model_identity import ModelIdentity

_INDEX = IndexParams()  # the native matcher's defaults
_DURABILITY = DurabilityPolicy()

SETTINGS: list[Setting] = [
    Setting(
        "RETAILFACE_MATCHING_DATA_DIR",
        parse_path,
        Path("~/.local/share/retailface/matching"),
        "directory of the galleries' encrypted snapshots and logs (one service per directory)",
    ),
    Setting(
        "RETAILFACE_MATCHING_DB_URL",
        str,
        "",
        "PostgreSQL URL of the galleries' change log and snapshots, shared by every matching replica "
        "(e.g. postgresql://matching@db/retailface?sslmode=verify-full); empty: the file log in the data dir, "
        "one replica",
        secret=True,
    ),
    Setting(
        "RETAILFACE_MATCHING_FOLLOW_POLL_SECONDS",
        parse_positive_float,
        1.0,
        "with PostgreSQL: how often a replica polls the log for other replicas' changes when no notification "
        "arrives (LISTEN/NOTIFY brings them at once)",
    ),
    Setting(
        "RETAILFACE_MATCHING_MIN_SEQUENCE_WAIT_MS",
        parse_non_negative_float,
        200.0,
        "how long a search that needs a newer change (SearchRequest.min_sequence) waits for this replica to "
        "catch up before it answers UNAVAILABLE, so that the client retries another replica",
    ),
    Setting(
        "RETAILFACE_MATCHING_KEY_FILE",
        parse_path,
        None,
        "file with the 32-byte AES-256-GCM key of the templates at rest, raw or base64; create one with "
        "`python -m retailface.services.matching.keygen PATH`",
        required=True,
    ),
    Setting("RETAILFACE_MATCHING_MODEL_ID", str, "sface", "embedding model the galleries hold; others are refused"),
    Setting("RETAILFACE_MATCHING_MODEL_VERSION", str, "2021dec", "version of that embedding model"),
    Setting(
        "RETAILFACE_MATCHING_CALIBRATION_FILE",
        parse_path,
        None,
        "calibration of that model, made by `make calibrate` (unset: the one shipped for it, "
        "services/matching/calibrations/<model id>-<version>.json); the service refuses to start without one",
    ),
    Setting(
        "RETAILFACE_MATCHING_TARGET_FPIR",
        parse_unit_float,
        1e-3,
        "false positive identification rate per probe that calibrated decisions hold at the gallery's size "
        "(probes whose quality bin cannot hold it are counted, never identified)",
    ),
    Setting("RETAILFACE_MATCHING_DIM", parse_positive_int, 128, "embedding dimension of that model"),
    Setting(
        "RETAILFACE_MATCHING_MEMBERS_THRESHOLD",
        parse_unit_float,
        0.48,
        "members gallery: cosine at or above which the best subject is a match",
    ),
    Setting(
        "RETAILFACE_MATCHING_MEMBERS_MARGIN",
        parse_unit_float,
        0.05,
        "members gallery: lead over the second subject a match needs (closer: ambiguous)",
    ),
    Setting(
        "RETAILFACE_MATCHING_WATCHLIST_THRESHOLD",
        parse_unit_float,
        0.55,
        "watchlist gallery: cosine at or above which the best subject is a match",
    ),
    Setting(
        "RETAILFACE_MATCHING_WATCHLIST_MARGIN",
        parse_unit_float,
        0.08,
        "watchlist gallery: lead over the second subject a match needs",
    ),
    Setting(
        "RETAILFACE_MATCHING_HNSW_GRAPH",
        parse_bool,
        _INDEX.hnsw_graph,
        "keep an HNSW graph over each gallery (costs build time and memory; the search plans do not need it)",
    ),
    Setting("RETAILFACE_MATCHING_HNSW_M", parse_positive_int, _INDEX.m, "HNSW graph degree"),
    Setting(
        "RETAILFACE_MATCHING_HNSW_EF_CONSTRUCTION", parse_positive_int, _INDEX.ef_construction, "HNSW build beam width"
    ),
    Setting("RETAILFACE_MATCHING_HNSW_EF_SEARCH", parse_positive_int, _INDEX.ef_search, "HNSW search beam width"),
    Setting(
        "RETAILFACE_MATCHING_SEARCH_THREADS", parse_positive_int, _INDEX.threads, "threads one batch search runs on"
    ),
    Setting(
        "RETAILFACE_MATCHING_INITIAL_CAPACITY",
        parse_positive_int,
        _INDEX.initial_capacity,
        "templates the index reserves at start (it grows beyond)",
    ),
    Setting(
        "RETAILFACE_MATCHING_SNAPSHOT_EVERY",
        parse_positive_int,
        _DURABILITY.snapshot_every_records,
        "log records after which a gallery is snapshotted and its log truncated (bounds restart time)",
    ),
    Setting(
        "RETAILFACE_MATCHING_ERASE_PURGE_SECONDS",
        parse_non_negative_float,
        _DURABILITY.erase_purge_seconds,
        "after an erase, a snapshot removes the erased templates from the log within this many seconds",
    ),
    Setting(
        "RETAILFACE_MATCHING_SNAPSHOT_ON_STOP",
        parse_bool,
        _DURABILITY.snapshot_on_close,
        "write a snapshot on graceful shutdown so the next start replays no log",
    ),
    Setting(
        "RETAILFACE_MATCHING_NORM_TOLERANCE",
        parse_positive_float,
        DEFAULT_NORM_TOLERANCE,
        "refuse vectors whose L2 norm differs from 1 by more than this",
    ),
]


def open_store(config: ServiceConfig) -> MatchingStore:
    """The store configured by the matching settings; startup problems become ConfigError with the fix."""
    get = config.get
    model = ModelIdentity(
        get("RETAILFACE_MATCHING_MODEL_ID"),
        get("RETAILFACE_MATCHING_MODEL_VERSION"),
        int(get("RETAILFACE_MATCHING_DIM")),
    )
    try:
        calibrated = calibration.CalibratedDecision(
            calibration.load(get("RETAILFACE_MATCHING_CALIBRATION_FILE"), model),
            float(get("RETAILFACE_MATCHING_TARGET_FPIR")),
        )
        policies = [
            GalleryPolicy(
                MEMBERS_GALLERY,
                get("RETAILFACE_MATCHING_MEMBERS_THRESHOLD"),
                get("RETAILFACE_MATCHING_MEMBERS_MARGIN"),
            ),
            GalleryPolicy(
                WATCHLIST_GALLERY,
                get("RETAILFACE_MATCHING_WATCHLIST_THRESHOLD"),
                get("RETAILFACE_MATCHING_WATCHLIST_MARGIN"),
            ),
        ]
        return MatchingStore(
            Path(get("RETAILFACE_MATCHING_DATA_DIR")).expanduser(),
            load_key(get("RETAILFACE_MATCHING_KEY_FILE")),
            policies,
            model,
            IndexParams(
                m=get("RETAILFACE_MATCHING_HNSW_M"),
                ef_construction=get("RETAILFACE_MATCHING_HNSW_EF_CONSTRUCTION"),
                ef_search=get("RETAILFACE_MATCHING_HNSW_EF_SEARCH"),
                threads=get("RETAILFACE_MATCHING_SEARCH_THREADS"),
                initial_capacity=get("RETAILFACE_MATCHING_INITIAL_CAPACITY"),
                hnsw_graph=get("RETAILFACE_MATCHING_HNSW_GRAPH"),
            ),
            DurabilityPolicy(
                snapshot_every_records=get("RETAILFACE_MATCHING_SNAPSHOT_EVERY"),
                erase_purge_seconds=get("RETAILFACE_MATCHING_ERASE_PURGE_SECONDS"),
                snapshot_on_close=get("RETAILFACE_MATCHING_SNAPSHOT_ON_STOP"),
            ),
            norm_tolerance=get("RETAILFACE_MATCHING_NORM_TOLERANCE"),
            calibrated=calibrated,
            database_url=get("RETAILFACE_MATCHING_DB_URL"),
            replication=ReplicationPolicy(
                poll_seconds=get("RETAILFACE_MATCHING_FOLLOW_POLL_SECONDS"),
                min_sequence_wait_seconds=get("RETAILFACE_MATCHING_MIN_SEQUENCE_WAIT_MS") / 1000.0,
            ),
        )
    except (StartupError, ModelMismatchError, ValueError) as error:
        raise ConfigError(str(error)) from error
