"""Recommendation models trained from the purchase history with the `implicit` library.

- Item-item (implicit's BM25 nearest neighbours) over the member x product purchase matrix: what is
  bought together, for a member's history and for a basket at the till; its similarity matrix also
  says which of the member's own items explains a recommendation, for a readable reason.
- ALS (implicit's CPU alternating least squares): what similar shoppers buy, for members with
  little history.
- Popularity per store: the fallback for members without any history.

A `ModelHolder` keeps the current model; training happens at start-up and in a background thread,
never on the request path, and the new model replaces the old one atomically.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import structlog
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import BM25Recommender
from implicit.utils import ParameterWarning
from sqlalchemy import Engine, func, select
from threadpoolctl import threadpool_limits

from retailface.services.personalization import db
from retailface.services.shared.periodic import PeriodicWorker

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Candidate:
    sku: str
    score: float
    because_sku: str = ""  # the member's or basket's item that explains it


@dataclass
class TrainedModel:
    skus: list[str]
    sku_index: dict[str, int]
    member_index: dict[str, int]
    user_items: sp.csr_matrix  # members x products, purchase counts
    item_model: BM25Recommender | None
    als: AlternatingLeastSquares | None
    popular_by_store: dict[str, list[str]]
    popular_overall: list[str]
    similarity_by_target: sp.csr_matrix | None = None  # transposed item-item similarity, for explanations
    trained_at: float = field(default_factory=time.time)
    interactions: int = 0

    def distinct_items(self, member_id: str) -> int:
        row = self.member_index.get(member_id)
        return 0 if row is None else int(self.user_items.indptr[row + 1] - self.user_items.indptr[row])

    def bought_together_candidates(self, member_id: str, count: int) -> list[Candidate]:
        """Items bought together with what the member buys (item-item), not already bought by them."""
        row = self.member_index.get(member_id)
        if row is None or self.item_model is None or self.distinct_items(member_id) == 0:
            return []
        history = self.user_items[row]
        ids, scores = self.item_model.recommend(row, history, N=count, filter_already_liked_items=True)
        return [Candidate(self.skus[item], float(score)) for item, score in zip(ids, scores, strict=True) if score > 0]

    def regular_purchases(self, member_id: str, count: int) -> list[Candidate]:
        """The member's own most bought items."""
        row = self.member_index.get(member_id)
        if row is None:
            return []
        start, end = self.user_items.indptr[row], self.user_items.indptr[row + 1]
        items, counts = self.user_items.indices[start:end], self.user_items.data[start:end]
        order = np.argsort(-counts, kind="stable")[:count]
        return [
            Candidate(self.skus[int(items[i])], float(counts[i]), self.skus[int(items[i])])
            for i in order
            if counts[i] >= 2
        ]

    def similar_shopper_candidates(self, member_id: str, count: int) -> list[Candidate]:
        """What shoppers with similar purchases buy (ALS), excluding what the member already buys."""
        row = self.member_index.get(member_id)
        if row is None or self.als is None or self.distinct_items(member_id) == 0:
            return []
        ids, scores = self.als.recommend(row, self.user_items[row], N=count, filter_already_liked_items=True)
        return [Candidate(self.skus[item], float(score)) for item, score in zip(ids, scores, strict=True)]

    def basket_completions(self, basket_skus: Sequence[str], count: int) -> list[Candidate]:
        """Items bought together with the basket, not already in it."""
        columns = sorted({self.sku_index[sku] for sku in basket_skus if sku in self.sku_index})
        if not columns or self.item_model is None:
            return []
        basket = sp.csr_matrix(
            (
                np.ones(len(columns), dtype=np.float32),
                np.asarray(columns, dtype=np.int32),
                np.asarray([0, len(columns)], dtype=np.int32),
            ),
            shape=(1, len(self.skus)),
        )
        ids, scores = self.item_model.recommend(
            0, basket, N=count, filter_already_liked_items=True, recalculate_user=True
        )
        return [Candidate(self.skus[item], float(score)) for item, score in zip(ids, scores, strict=True) if score > 0]

    def explain_for_member(self, sku: str, member_id: str) -> str:
        """The member's purchased item that contributes most to recommending `sku` ("" if none)."""
        row = self.member_index.get(member_id)
        if row is None or sku not in self.sku_index:
            return ""
        start, end = self.user_items.indptr[row], self.user_items.indptr[row + 1]
        return self._explain(self.sku_index[sku], self.user_items.indices[start:end])

    def explain_for_items(self, sku: str, skus: Sequence[str]) -> str:
        """The item of `skus` (a basket) most similar to `sku` ("" if none)."""
        columns = np.asarray(sorted({self.sku_index[s] for s in skus if s in self.sku_index}), dtype=np.int32)
        return self._explain(self.sku_index[sku], columns) if sku in self.sku_index and columns.size else ""

    def popular_in_store(self, store_id: str, count: int) -> list[Candidate]:
        ranked = self.popular_by_store.get(store_id) or self.popular_overall
        return [Candidate(sku, 1.0 - rank / (len(ranked) + 1)) for rank, sku in enumerate(ranked[:count])]

    def _explain(self, item: int, member_items: np.ndarray) -> str:
        """The member's item that contributes most to `item`'s score (sim[i, item] over their items i)."""
        if self.similarity_by_target is None:
            return ""
        start, end = self.similarity_by_target.indptr[item], self.similarity_by_target.indptr[item + 1]
        sources = self.similarity_by_target.indices[start:end]
        weights = self.similarity_by_target.data[start:end]
        mask = np.isin(sources, member_items, assume_unique=True)
        if not mask.any():
            return ""
        best = int(np.argmax(np.where(mask, weights, -np.inf)))
        return self.skus[int(sources[best])]


def train(engine: Engine, factors: int = 32, iterations: int = 12, seed: int = 7, popular: int = 50) -> TrainedModel:
    """Reads purchases (in store and online) and fits the item-item and ALS models."""
    started = time.perf_counter()
    with db.read(engine) as conn:
        skus = conn.execute(select(db.products.c.sku).order_by(db.products.c.sku)).scalars().all()
        member_ids = conn.execute(select(db.members.c.member_id).order_by(db.members.c.member_id)).scalars().all()
        quantity = func.sum(db.transaction_lines.c.quantity)
        in_store = conn.execute(
            select(db.transactions.c.member_id, db.transaction_lines.c.sku, quantity)
            .join(db.transaction_lines, db.transaction_lines.c.transaction_id == db.transactions.c.transaction_id)
            .where(db.transactions.c.member_id.is_not(None))
            .group_by(db.transactions.c.member_id, db.transaction_lines.c.sku)
        ).all()
        online = conn.execute(
            select(db.online_events.c.member_id, db.online_events.c.sku, func.count())
            .where(db.online_events.c.type == "purchased_online", db.online_events.c.sku.is_not(None))
            .group_by(db.online_events.c.member_id, db.online_events.c.sku)
        ).all()
        store_sales = conn.execute(
            select(db.transactions.c.store_id, db.transaction_lines.c.sku, quantity.label("sold"))
            .join(db.transaction_lines, db.transaction_lines.c.transaction_id == db.transactions.c.transaction_id)
            .group_by(db.transactions.c.store_id, db.transaction_lines.c.sku)
        ).all()
    sku_index = {sku: index for index, sku in enumerate(skus)}
    member_index = {member_id: index for index, member_id in enumerate(member_ids)}
    rows, cols, values = [], [], []
    for member_id, sku, count in (*in_store, *online):
        if member_id in member_index and sku in sku_index:
            rows.append(member_index[member_id])
            cols.append(sku_index[sku])
            values.append(float(count))
    user_items = sp.csr_matrix(
        (np.asarray(values, dtype=np.float32), (rows, cols)), shape=(len(member_ids), len(skus)), dtype=np.float32
    )
    user_items.sum_duplicates()

    item_model: BM25Recommender | None = None
    als: AlternatingLeastSquares | None = None
    if user_items.nnz:
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=ParameterWarning)
            item_model = BM25Recommender(K=50, num_threads=1)
            item_model.fit(user_items, show_progress=False)
            als = AlternatingLeastSquares(
                factors=factors, iterations=iterations, regularization=0.05, random_state=seed, num_threads=1
            )
            # Confidence weighting (1 + alpha * count), as in Hu, Koren & Volinsky.
            als.fit((user_items * 10.0).tocsr(), show_progress=False)

    by_store: dict[str, list[tuple[float, str]]] = {}
    overall: dict[str, float] = {}
    for store_id, sku, sold in store_sales:
        by_store.setdefault(store_id, []).append((float(sold), sku))
        overall[sku] = overall.get(sku, 0.0) + float(sold)
    popular_by_store = {
        store_id: [sku for _, sku in sorted(sales, reverse=True)[:popular]] for store_id, sales in by_store.items()
    }
    popular_overall = [sku for sku, _ in sorted(overall.items(), key=lambda kv: -kv[1])[:popular]]
    model = TrainedModel(
        skus=list(skus),
        sku_index=sku_index,
        member_index=member_index,
        user_items=user_items,
        item_model=item_model,
        als=als,
        popular_by_store=popular_by_store,
        popular_overall=popular_overall,
        interactions=int(user_items.nnz),
        similarity_by_target=item_model.similarity.T.tocsr() if item_model is not None else None,
    )
    log.info(
        "model_trained",
        members=len(member_ids),
        products=len(skus),
        interactions=model.interactions,
        seconds=round(time.perf_counter() - started, 2),
    )
    return model


class ModelHolder:
    """The current model; with `refresh_seconds` > 0, `start()` retrains it in the background.

    Readers never wait for training; a failed refresh keeps the previous model.
    """

    def __init__(
        self, trainer: Callable[[], TrainedModel], refresh_seconds: float, initial: TrainedModel | None = None
    ) -> None:
        self._trainer = trainer
        self._model: TrainedModel | None = initial
        self._train_lock = threading.Lock()
        self._refresher = (
            PeriodicWorker("personalization-model-refresh", refresh_seconds, self.refresh)
            if refresh_seconds > 0
            else None
        )

    @property
    def model(self) -> TrainedModel | None:
        return self._model

    def refresh(self) -> TrainedModel:
        """Trains now (on the caller's thread) and swaps the model in."""
        with self._train_lock:
            model = self._trainer()
            self._model = model
            return model

    def start(self) -> None:
        if self._refresher is not None:
            self._refresher.start()

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.stop(timeout=30)
