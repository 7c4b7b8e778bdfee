"""`make bench-matcher`: identification parity and latency of gallery search on face-like data.

Synthetic gallery that behaves like SFace templates rather than like ANN benchmark data:
identities are Gaussian in 128-d with per-axis standard deviation (i+1)^-a, `a` solved so that the
participation ratio of the spectrum is 60, L2-normalised. A genuine query is a new capture of an
enrolled identity (noise from the same spectrum, cosine to the template uniform in [0.5, 0.8]);
an impostor query is a fresh identity.

Identification parity: each method's threshold lets 1e-3 of the impostor queries through (from its
own scores); parity is the fraction of brute force's correct identifications of the genuine
queries that the method also makes. Reported with single-query p50/p99 on one thread, batch
queries/s on two threads, build time and bytes per template, for our matcher and, in the same
run, hnswlib's Python binding, faiss IndexHNSWFlat and numpy brute force. Also the speed-up of two
Python threads searching at once over one thread doing the same work (`python_threads_speedup`):
the binding releases the GIL while it searches, so on two cores it should be well above 1 (it was
claimed at > 1.3). The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DIM = 128
GENUINE, IMPOSTORS = 5000, 10000
FALSE_ACCEPT = 1e-3


def solve_exponent(target_pr: float = 60.0, dim: int = DIM) -> float:
    def participation(a: float) -> float:
        variances = (np.arange(1, dim + 1, dtype=np.float64)) ** (-2 * a)
        return float(variances.sum() ** 2 / (variances**2).sum())

    low, high = 0.0, 3.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if participation(mid) > target_pr else (low, mid)
    return (low + high) / 2


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    gallery = np.empty((n, DIM), dtype=np.float32)  # in float32 chunks: 10M x 128 is 5 GB, not 10 GB of float64
    scale = spectrum().astype(np.float32)
    for start in range(0, n, 1_000_000):
        chunk = rng.standard_normal(size=(min(1_000_000, n - start), DIM), dtype=np.float32) * scale
        gallery[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    truth = rng.choice(n, size=GENUINE, replace=False)
    genuine = captures(gallery[truth], rng)
    impostors = normalise(rng.normal(size=(IMPOSTORS, DIM)) * spectrum())
    return {"gallery": gallery, "truth": truth, "genuine": genuine, "impostors": impostors}


@functools.cache
def spectrum() -> np.ndarray:
    return (np.arange(1, DIM + 1, dtype=np.float64)) ** (-solve_exponent())


def captures(templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New captures of enrolled identities: noise from the same spectrum, cosine to the template in [0.5, 0.8]."""
    noise = rng.normal(size=templates.shape) * spectrum()
    templates = templates.astype(np.float64)
    noise -= (noise * templates).sum(1, keepdims=True) * templates  # orthogonal to the template
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cosine = rng.uniform(0.5, 0.8, size=(len(templates), 1))
    return normalise(cosine * templates + np.sqrt(1 - cosine**2) * noise)


def filter_sweep(ours: Any, data: dict[str, np.ndarray], seed: int, queries: int = 1000) -> list[dict[str, Any]]:
    """Filters from 1% to 50% of the gallery, each plan forced in turn: top-1 against brute force over the
    allowed subjects, for captures of allowed members and for impostors, and single-query latency."""
    from retailface._matcher import Plan

    gallery, n = data["gallery"], len(data["gallery"])
    rng = np.random.default_rng(seed + 2)
    default_share = ours.params["filtered_scan_share"]
    plans = {  # name -> (filtered_scan_share, graph_for_global)
        "default": (default_share, False),
        "exact int8 scan": (1, False),
        "filtered code scan": (10**9, False),
        "filtered graph": (10**9, True),  # the graph where allowed^2 > ef * M * size
    }
    rows = []
    ours.set_threads(1)
    for share in (0.01, 0.05, 0.1, 0.25, 0.5):
        allowed = np.sort(rng.choice(n, size=int(n * share), replace=False)).astype(np.int64)
        members = captures(gallery[rng.choice(allowed, size=queries, replace=False)], rng)
        batch = np.concatenate([members, data["impostors"][:queries]])
        exact = allowed[brute_force(gallery[allowed], batch)[0]]
        for name, (scan_share, graph) in plans.items():
            ours.set_filtered_scan_share(scan_share)
            ours.set_graph_for_global(graph)
            start = time.perf_counter()
            ours.search(batch[:1], top_k=1, allowed_subjects=allowed)
            first = (time.perf_counter() - start) * 1000
            found = ours.search(batch, top_k=1, allowed_subjects=allowed)
            p50, p99 = latency(
                lambda q, allowed=allowed: ours.search(q, top_k=1, allowed_subjects=allowed),
                batch,
                count=1000,
                rounds=1,
            )
            hit = found.subjects[:, 0] == exact
            row = {
                "share": share,
                "allowed": len(allowed),
                "plan": name,
                "chosen": sorted({Plan(int(p)).name for p in found.plans}),
                "exact_members": round(float(hit[:queries].mean()), 4),
                "exact_impostors": round(float(hit[queries:].mean()), 4),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "first_call_ms": round(first, 1),
            }
            print(f"  filter {share:.0%} {name}: {row}", file=sys.stderr, flush=True)
            rows.append(row)
    ours.set_filtered_scan_share(default_share)
    ours.set_graph_for_global(False)
    return rows


def brute_force(gallery: np.ndarray, queries: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-1 (float32 BLAS), in blocks of `chunk` queries x 1M templates so that 10M fits in memory."""
    ids, scores = [], []
    for start in range(0, len(queries), chunk):
        batch = queries[start : start + chunk]
        best_ids = np.zeros(len(batch), dtype=np.int64)
        best_scores = np.full(len(batch), -np.inf, dtype=np.float32)
        for first in range(0, len(gallery), 1_000_000):
            block = batch @ gallery[first : first + 1_000_000].T
            best = block.argmax(1)
            score = block[np.arange(len(best)), best]
            better = score > best_scores
            best_ids[better], best_scores[better] = best[better] + first, score[better]
        ids.append(best_ids)
        scores.append(best_scores)
    return np.concatenate(ids), np.concatenate(scores)


def parity(
    data: dict[str, np.ndarray], bf: dict[str, Any], ids: np.ndarray, scores: np.ndarray, impostor_scores: np.ndarray
) -> float:
    threshold = float(np.quantile(impostor_scores, 1 - FALSE_ACCEPT))
    ours = (ids == data["truth"]) & (scores >= threshold)
    return float((ours & bf["correct"]).sum() / max(1, bf["correct"].sum()))


def latency(
    search_one: Callable[[np.ndarray], object], queries: np.ndarray, count: int = 2000, rounds: int = 3
) -> tuple[float, float]:
    """Single-query p50/p99 in ms: a short warm-up, then `rounds` passes over the same queries, median of each
    round's percentiles, so that one pause of the shared machine does not stand in for a method's tail."""
    for query in queries[:20]:
        search_one(query[None])
    p50s, p99s = [], []
    for _ in range(rounds):
        times = []
        for query in queries[:count]:
            start = time.perf_counter()
            search_one(query[None])
            times.append((time.perf_counter() - start) * 1000)
        p50s.append(np.percentile(times, 50))
        p99s.append(np.percentile(times, 99))
    return float(np.median(p50s)), float(np.median(p99s))


def throughput(search_batch: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    start = time.perf_counter()
    search_batch(queries)
    return len(queries) / (time.perf_counter() - start)


def python_threads_speedup(
    search_batch: Callable[[np.ndarray], object], queries: np.ndarray, batches: int = 8
) -> float:
    """Time of `batches` searches on one Python thread over the time of the same searches split over two
    threads (the gallery on one native thread each), best of three rounds: above 1 only if the GIL is released."""
    import threading

    def work(count: int) -> None:
        for _ in range(count):
            search_batch(queries)

    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        work(batches)
        serial = time.perf_counter() - start
        threads = [threading.Thread(target=work, args=(batches // 2,)) for _ in range(2)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        best = max(best, serial / (time.perf_counter() - start))
    return best


def run_size(
    n: int, seed: int, efs: list[int], limits: argparse.Namespace, smaller: dict[str, Any] | None
) -> dict[str, Any]:
    from retailface._matcher import DEFAULT_PARAMS, ISA, Gallery

    print(f"[N={n}] generating data", file=sys.stderr, flush=True)
    data = make_data(n, seed)
    gallery = data["gallery"]
    print(f"[N={n}] numpy brute force (ground truth)", file=sys.stderr, flush=True)
    start = time.perf_counter()  # the ground truth doubles as numpy's batch throughput (BLAS on two threads)
    bf_ids, bf_scores = brute_force(gallery, data["genuine"])
    _, bf_imp = brute_force(gallery, data["impostors"])
    numpy_qps = (GENUINE + IMPOSTORS) / (time.perf_counter() - start)
    bf_threshold = float(np.quantile(bf_imp, 1 - FALSE_ACCEPT))
    bf = {"correct": (bf_ids == data["truth"]) & (bf_scores >= bf_threshold)}
    queries = np.concatenate([data["genuine"], data["impostors"]])
    result: dict[str, Any] = {
        "n": n,
        "dim": DIM,
        "isa": ISA,
        "brute_force_correct": int(bf["correct"].sum()),
        "brute_force_threshold": round(bf_threshold, 4),
    }
    p50, p99 = latency(lambda q: q @ gallery.T, queries, count=max(50, min(2000, 200_000_000 // n)))
    result |= {"numpy_p50_ms": round(p50, 3), "numpy_p99_ms": round(p99, 3), "numpy_batch_qps": round(numpy_qps, 1)}
    curves: dict[str, list[tuple[float, float]]] = {"numpy brute force": [(round(p99, 3), 1.0)]}

    # Ours, unfiltered: exact scan below `exact_below` (0 here), then the code scan or the hnswlib graph.
    print(f"[N={n}] building our gallery", file=sys.stderr, flush=True)
    start = time.perf_counter()
    ours = Gallery(dim=DIM, capacity=n, threads=2, exact_below=0)  # the default M, ef and code scan otherwise
    # (two passes: the first halves of every code, the second halves of the nearest 1/128; then the 1/4000 nearest
    # in Hamming distance are re-ranked on their int8 rows)
    ours.add(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), gallery)
    result["build_s"] = round(time.perf_counter() - start, 1)
    result["bytes_per_template"] = round(ours.memory_bytes / n, 1)
    result["memory_parts_bytes_per_template"] = {part: round(size / n, 1) for part, size in ours.memory_parts.items()}
    result |= load_from_snapshot(ours, n)
    latency_count = max(200, min(2000, 1_000_000_000 // n))

    def measure(label: str, sharded: bool = False) -> dict[str, float]:
        """Parity (two threads), batch q/s (two threads) and single-query latency (one thread; with `sharded`,
        also with the one query's pass split over the two threads) as set now."""
        ours.set_threads(2)
        found = ours.search(queries, top_k=1, threshold=0.0, margin=0.0)
        par = parity(data, bf, found.subjects[:GENUINE, 0], found.scores[:GENUINE, 0], found.scores[GENUINE:, 0])
        qps = throughput(lambda q: ours.search(q, top_k=1), queries)
        point = {"parity": round(par, 4), "batch_qps": round(qps, 1)}
        if sharded:
            p50, p99 = latency(lambda q: ours.search(q, top_k=1), queries, count=latency_count)
            point |= {"p50_ms_2_threads": round(p50, 3), "p99_ms_2_threads": round(p99, 3)}
        ours.set_threads(1)
        p50, p99 = latency(lambda q: ours.search(q, top_k=1), queries, count=latency_count)
        point |= {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}
        print(f"  ours {label}: {point}", file=sys.stderr, flush=True)
        return point

    # Our default plan for a large unfiltered gallery: a scan of 256-bit sign codes in two passes, re-rank on the rows.
    ours.set_graph_for_global(False)
    default = measure("code scan", sharded=True)
    result |= default | {
        "plan": "code-scan",
        "build_threads": 2,
        "candidate_divisor": ours.params["candidate_divisor"],
        "first_pass_share": ours.params["first_pass_share"],
    }
    # The code scan's curve: more templates re-ranked (the default is one point of it).
    curves["ours (code scan)"] = [(default["p99_ms"], default["parity"])]
    for divisor in (2000, 400):
        ours.set_candidates(256, divisor)
        point = measure(f"code scan 1/{divisor} re-ranked")
        curves["ours (code scan)"].append((point["p99_ms"], point["parity"]))
        result[f"ours_code_scan_div{divisor}"] = point
    ours.set_candidates(DEFAULT_PARAMS["min_candidates"], DEFAULT_PARAMS["candidate_divisor"])
    curves["ours (code scan)"].sort()
    # The first pass letting through a larger or smaller share of the gallery (at least 32x the re-ranked).
    for share in (64, 256):
        ours.set_first_pass(DEFAULT_PARAMS["first_pass_divisor"], share)
        point = measure(f"code scan, first pass keeps 1/{share}")
        curves["ours (code scan)"].append((point["p99_ms"], point["parity"]))
        result[f"ours_two_pass_share{share}"] = point
    curves["ours (code scan)"].sort()
    # One pass over whole codes (the default before issue #16's follow-up; 1/400 re-ranked was its default).
    ours.set_first_pass(1, 1)
    curves["ours (one-pass code scan)"] = []
    for divisor in (4000, 400):
        ours.set_candidates(256, divisor)
        point = measure(f"one-pass code scan, 1/{divisor} re-ranked", sharded=True)
        curves["ours (one-pass code scan)"].append((point["p99_ms"], point["parity"]))
        result[f"ours_one_pass_div{divisor}"] = point
    ours.set_first_pass(DEFAULT_PARAMS["first_pass_divisor"], DEFAULT_PARAMS["first_pass_share"])
    ours.set_candidates(DEFAULT_PARAMS["min_candidates"], DEFAULT_PARAMS["candidate_divisor"])
    curves["ours (one-pass code scan)"].sort()
    ours.set_threads(1)
    speedup = python_threads_speedup(lambda q: ours.search(q, top_k=1), queries[:200])
    result["python_threads_speedup"] = round(speedup, 2)
    print(f"  ours: two Python threads {speedup:.2f}x one (GIL released during search)", file=sys.stderr, flush=True)
    if n <= limits.graph_max_n:  # asking for the graph builds it (minutes at 1M)
        ours.set_graph_for_global(True)
        result["ours_graph_build_s"] = round(ours.graph_build_seconds, 1)
        curves["ours (graph)"] = []
        for ef in efs:
            ours.set_ef(ef)
            point = measure(f"graph ef={ef}")
            curves["ours (graph)"].append((point["p99_ms"], point["parity"]))
            result[f"ours_graph_ef{ef}"] = point
        ours.set_graph_for_global(False)

    result |= store_scoped(ours, data, queries, seed)
    if n <= limits.peers_max_n:
        result |= peers(data, bf, queries, efs, limits.peer_ms, curves)
    else:
        result["peers"] = ruled_out(n, smaller)
    if n <= limits.sweep_max_n:
        print(f"[N={n}] filter widths: each plan forced in turn", file=sys.stderr, flush=True)
        result["filter_sweep"] = filter_sweep(ours, data, seed)
    result["_curves"] = curves
    return result


def peers(
    data: dict[str, np.ndarray],
    bf: dict[str, Any],
    queries: np.ndarray,
    efs: list[int],
    ms: list[int],
    curves: dict[str, list[tuple[float, float]]],
) -> dict[str, Any]:
    """hnswlib (each M in `ms`, every ef) and faiss IndexHNSWFlat (M 32, the largest ef), on the same data."""
    import faiss
    import hnswlib

    gallery = data["gallery"]
    n = len(gallery)
    result: dict[str, Any] = {}
    for m in ms:
        print(f"[N={n}] building hnswlib M={m}", file=sys.stderr, flush=True)
        index = hnswlib.Index(space="ip", dim=DIM)
        start = time.perf_counter()
        index.init_index(max_elements=n, M=m, ef_construction=200)
        index.add_items(gallery, np.arange(n), num_threads=2)
        build = time.perf_counter() - start
        result[f"hnswlib_m{m}_bytes_per_template"] = round(index.index_file_size() / n, 1)
        curves[f"hnswlib M{m}"] = []
        for ef in efs:
            index.set_ef(ef)
            labels, distances = index.knn_query(queries, k=1, num_threads=2)
            scores = 1 - distances[:, 0]
            par = parity(data, bf, labels[:GENUINE, 0], scores[:GENUINE], scores[GENUINE:])
            qps = throughput(lambda q, index=index: index.knn_query(q, k=1, num_threads=2), queries)
            _, p99 = latency(lambda q, index=index: index.knn_query(q, k=1, num_threads=1), queries)
            curves[f"hnswlib M{m}"].append((p99, par))
            print(
                f"  hnswlib M{m} ef={ef}: parity {par:.4f} p99 {p99:.3f} ms qps {qps:.0f}", file=sys.stderr, flush=True
            )
            key = f"hnswlib_m{m}_ef{ef}"
            result[key] = {
                "parity": round(par, 4),
                "p99_ms": round(p99, 3),
                "batch_qps": round(qps, 1),
                "build_s": round(build, 1),
            }
    candidates = [v for k, v in result.items() if k.startswith("hnswlib_m") and isinstance(v, dict)]
    reaching = [c for c in candidates if c["parity"] >= 0.99] or [max(candidates, key=lambda c: c["parity"])]
    chosen = min(reaching, key=lambda c: c["p99_ms"])
    result |= {
        "hnswlib_parity": chosen["parity"],
        "hnswlib_p99_ms": chosen["p99_ms"],
        "hnswlib_batch_qps": chosen["batch_qps"],
    }

    print(f"[N={n}] building faiss IndexHNSWFlat M=32", file=sys.stderr, flush=True)
    faiss.omp_set_num_threads(2)
    flat = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    flat.hnsw.efConstruction = 200
    start = time.perf_counter()
    flat.add(gallery)
    result["faiss_build_s"] = round(time.perf_counter() - start, 1)
    flat.hnsw.efSearch = max(efs)
    scores, labels = flat.search(queries, 1)
    result["faiss_parity"] = round(parity(data, bf, labels[:GENUINE, 0], scores[:GENUINE, 0], scores[GENUINE:, 0]), 4)
    result["faiss_batch_qps"] = round(throughput(lambda q: flat.search(q, 1), queries), 1)
    return result


def ruled_out(n: int, smaller: dict[str, Any] | None) -> dict[str, Any]:
    """Why the graph peers are not built at this N: their 1M build time and size in this run, scaled linearly
    (a lower bound: an HNSW insert costs more as the graph grows)."""
    if smaller is None or "hnswlib_m32_ef64" not in smaller:
        return {"skipped": f"no smaller N with the peers in this run to scale from (N = {n:,})"}
    scale = n / smaller["n"]
    build = smaller["hnswlib_m32_ef64"]["build_s"] * scale
    faiss_build = smaller.get("faiss_build_s", 0) * scale
    gigabytes = smaller["hnswlib_m32_bytes_per_template"] * n / 1e9
    return {
        "skipped": "hnswlib and faiss HNSW are compared at the smaller N instead",
        "hnswlib_m32_build_s_at_least": round(build, 1),
        "faiss_build_s_at_least": round(faiss_build, 1),
        "hnswlib_m32_index_gb": round(gigabytes, 2),
        "scaled_from_n": smaller["n"],
    }


def store_scoped(ours: Any, data: dict[str, np.ndarray], queries: np.ndarray, seed: int) -> dict[str, Any]:
    """A filter selecting one store's members, exact: 1% of the gallery, and (from 1M up) a 10,000-template
    store, the size of a large store whatever the chain's size."""
    from retailface._matcher import Plan

    gallery, n = data["gallery"], len(data["gallery"])
    rng = np.random.default_rng(seed + 1)
    store_queries = np.concatenate([queries[:1000], queries[GENUINE : GENUINE + 1000]])
    result: dict[str, Any] = {}
    sizes = {"store_scoped": max(1, n // 100)}
    if n >= 1_000_000:
        sizes["store_10k"] = 10_000
    ours.set_threads(1)
    for prefix, size in sizes.items():
        allowed = np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
        exact_ids = allowed[brute_force(gallery[allowed], store_queries)[0]]
        # The first search with a filter resolves its subjects to slots and packs their rows; later ones with the
        # same filter (a store's cameras, until the gallery changes) reuse them.
        start = time.perf_counter()
        ours.search(store_queries[:1], top_k=1, allowed_subjects=allowed)
        cold = (time.perf_counter() - start) * 1000
        found = ours.search(store_queries, top_k=1, allowed_subjects=allowed)
        p50, p99 = latency(lambda q, allowed=allowed: ours.search(q, top_k=1, allowed_subjects=allowed), store_queries)
        result |= {
            f"{prefix}_templates": len(allowed),
            f"{prefix}_plan": sorted({Plan(int(p)).name for p in found.plans}),
            f"{prefix}_exact": float((found.subjects[:, 0] == exact_ids).mean()),
            f"{prefix}_p50_ms": round(p50, 3),
            f"{prefix}_p99_ms": round(p99, 3),
            f"{prefix}_first_call_ms": round(cold, 3),
        }
        print(f"  {prefix}: {size} templates, p99 {p99:.3f} ms", file=sys.stderr, flush=True)
    return result


def packed_ids(prefix: str, keys: np.ndarray) -> Any:
    """The ids prefix + key, packed as the service's snapshots and id table take them (no str kept per id)."""
    from retailface.services.matching.snapshots import PackedIds

    digits = np.ones(len(keys), dtype=np.uint64)
    rest = keys.copy()
    while (rest >= 10).any():
        digits += rest >= 10
        rest //= 10
    offsets = np.zeros(len(keys) + 1, dtype=np.uint64)
    np.cumsum(digits + np.uint64(len(prefix.encode())), out=offsets[1:])
    return PackedIds(offsets, "".join(f"{prefix}{key}" for key in keys.tolist()).encode())


def load_from_snapshot(ours: Any, n: int) -> dict[str, Any]:
    """Writes the gallery as the matching service snapshots it (encrypted records of its stored form and its ids:
    subject s<key> and template t<key> for each template), then loads it in a fresh process as a replica does:
    seconds from reading the file to the first answered search, and that process's memory."""
    import os
    import subprocess
    import tempfile

    from retailface.services.matching.crypto import RecordCipher
    from retailface.services.matching.snapshots import (
        PackedSubjects,
        SnapshotMeta,
        SubjectChunk,
        TemplateChunk,
        write_snapshot,
    )

    stored = ours.stored()
    keys = stored["template_ids"]
    subject_keys = stored["subject_ids"]
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as directory:
        path, key = Path(directory) / "snapshot.bin", os.urandom(32)
        owners = np.unique(subject_keys)
        subjects = SubjectChunk(packed_ids("s", owners), owners, np.zeros(len(owners), dtype=np.uint32))
        meta = SnapshotMeta(
            gallery="members",
            model=["bench", "1", DIM],
            sequence=1,
            templates=len(keys),
            subjects=PackedSubjects([[]], [subjects]),
            next_subject_key=int(keys.max()) + 1,
            next_template_key=int(keys.max()) + 1,
            created_at="2026-12-02T00:00:00+00:00",
        )
        chunk = TemplateChunk(
            packed_ids("t", keys),
            keys,
            subject_keys,
            scales=stored["scales"],
            rows=stored["rows"],
            codes=stored["codes"],
        )
        start = time.perf_counter()
        write_snapshot(path, RecordCipher(key), meta, chunk)
        write_s = time.perf_counter() - start
        del stored, meta, chunk, subjects
        (Path(directory) / "key").write_bytes(key)
        print(f"[N={n}] loading the snapshot in a fresh process", file=sys.stderr, flush=True)
        output = subprocess.run(
            [sys.executable, __file__, "--load-snapshot", directory],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        loaded = json.loads(output.strip().splitlines()[-1])
        snapshot_mb = path.stat().st_size / 1e6
    return loaded | {"snapshot_write_s": round(write_s, 1), "snapshot_mb": round(snapshot_mb, 1)}


def load_snapshot(directory: Path) -> dict[str, Any]:
    """The replica's start: read and decrypt the snapshot, load it into the service's gallery index (ids and
    native stored form), answer one search. Runs in its own process (`--load-snapshot`). `rss_mb` is the
    process's resident memory once the snapshot's decrypted records are dropped, as a serving replica holds it;
    `peak_rss_mb` the most it held while loading."""
    import gc

    from retailface.services.matching.crypto import RecordCipher
    from retailface.services.matching.gallery_index import GalleryIndex
    from retailface.services.matching.params import IndexParams
    from retailface.services.matching.snapshots import read_snapshot
    from retailface.services.shared.model_identity import ModelIdentity

    def status_mb(field: str) -> float:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

    base_mb = status_mb("VmRSS")
    start = time.perf_counter()
    cipher = RecordCipher((directory / "key").read_bytes())
    path = directory / "snapshot.bin"
    meta, chunks = read_snapshot(path, cipher, "members", DIM)
    index = GalleryIndex.from_snapshot(
        meta, chunks, "members", ModelIdentity("bench", "1", DIM), IndexParams(), str(path)
    )
    query = normalise(np.random.default_rng(0).standard_normal((1, DIM)).astype(np.float32))
    index.search(query, top_k=1, threshold=0.5, margin=0.05, subject_ids=[], required_tags=[])
    load_s = time.perf_counter() - start
    templates = meta.templates
    del meta, chunks
    gc.collect()
    rss_mb = status_mb("VmRSS")
    return {
        "load_s": round(load_s, 2),
        "rss_mb": round(rss_mb, 1),
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
        "index_bytes_per_template": round(index.memory_bytes / templates, 1),
        "id_table_bytes_per_template": round(index.ids.memory_bytes / templates, 1),
        # What the process holds besides the index (the interpreter, freed but unreturned memory), per template.
        "rss_besides_index_bytes_per_template": round(((rss_mb - base_mb) * 2**20 - index.memory_bytes) / templates, 1),
    }


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for axis, (label, result) in zip(axes[0], results.items(), strict=True):
        for name, points in result["_curves"].items():
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", label=name)
        axis.axhline(0.99, color="grey", linestyle="--", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("single-query p99 latency, ms (1 thread)")
        axis.set_ylabel("identification parity")
        axis.set_title(f"N = {int(label):,}: parity at FAR 1e-3 vs single-query p99")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def load_only(sizes: list[int], seed: int) -> int:
    """`--load-only`: the replica's start alone at each size, from a gallery of random unit vectors."""
    from retailface._matcher import Gallery

    report: dict[str, Any] = {}
    for n in sizes:
        print(f"[N={n}] building a gallery of random unit vectors", file=sys.stderr, flush=True)
        rng = np.random.default_rng(seed)
        ours = Gallery(dim=DIM, capacity=n, threads=2)
        for start in range(0, n, 1 << 20):
            stop = min(n, start + (1 << 20))
            keys = np.arange(start, stop, dtype=np.int64)
            ours.add(keys, keys, normalise(rng.standard_normal((stop - start, DIM)).astype(np.float32)))
        report[str(n)] = load_from_snapshot(ours, n)
        del ours
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated gallery sizes, e.g. 100000,1000000")
    parser.add_argument("--efs", default="64,128,256,512,1024")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plot", type=Path, default=Path("docs/matcher_parity_latency.png"))
    parser.add_argument("--peer-ms", default="32", help="hnswlib M values to compare against (16 never reaches 0.99)")
    parser.add_argument("--peers-max-n", type=int, default=1_000_000, help="largest N to build the HNSW peers at")
    parser.add_argument("--graph-max-n", type=int, default=100_000, help="largest N to build our optional graph at")
    parser.add_argument("--sweep-max-n", type=int, default=100_000, help="largest N for the filter-width sweep")
    parser.add_argument("--load-snapshot", type=Path, help=argparse.SUPPRESS)  # the fresh process of load_s
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="per size: build the gallery and measure only the snapshot load (load_s, rss_mb), minutes not an hour",
    )
    args = parser.parse_args(argv)
    if args.load_snapshot is not None:
        print(json.dumps(load_snapshot(args.load_snapshot)))
        return 0
    if args.load_only:
        return load_only([int(size) for size in args.sizes.split(",")], args.seed)
    args.peer_ms = [int(value) for value in args.peer_ms.split(",")]
    efs = [int(value) for value in args.efs.split(",")]
    results: dict[str, dict[str, Any]] = {}
    for size in sorted(args.sizes.split(","), key=int):
        below = [results[s] for s in results if "hnswlib_m32_ef64" in results[s]]
        results[size] = run_size(int(size), args.seed, efs, args, below[-1] if below else None)
    plot(results, args.plot)
    for result in results.values():  # the plotted points stay in the report: (p99 ms, parity) per method
        result["curves"] = result.pop("_curves")
    largest = results[max(results, key=int)]
    report = {key: value for key, value in largest.items() if not isinstance(value, dict)}
    report["per_n"] = results
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
