"""Exact top-k over a corpus split into shards: one FAISS index per shard, lists merged per query.

A corpus of tens of millions of passages does not fit one worker, but exact inner-product search
decomposes: the global top-k of a query is contained in the union of each shard's top-k, so merging the
per-shard lists and keeping the k best is the same answer as one index over everything. This module is
the pure part of that (numpy and FAISS only, no Ray), so the merge is tested without a cluster;
``hnmine.engines.ray`` runs ``search_shard`` on workers and feeds their lists to ``TopKMerger``.

Ties are broken by the smaller global document index, so the merged list does not depend on how the
corpus was cut or in which order the shards' answers arrive.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def shard_bounds(num_rows: int, num_shards: int) -> list[tuple[int, int]]:
    """``num_shards`` contiguous ``[start, end)`` ranges of nearly equal size (no empty shard)."""
    num_shards = max(1, min(num_shards, num_rows)) if num_rows else 1
    edges = np.linspace(0, num_rows, num_shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def search_index(index: Any, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` of a built FAISS index's top-``min(k, ntotal)`` per query, rows local to the index
    (-1 where an IVF/HNSW index found fewer): the one search call of a shard, flat here or prebuilt on a Ray
    corpus shard (``hnmine.engines.ray_corpus``)."""
    import faiss

    # As in DenseRetriever.search: use BLAS for every query block, the faster path at these sizes.
    faiss.cvar.distance_compute_blas_threshold = 20
    return index.search(np.ascontiguousarray(query_emb, dtype=np.float32), min(k, index.ntotal))


def search_shard(doc_emb: np.ndarray, doc_ids: np.ndarray, query_emb: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` of every query within one shard, as global ids.

    ``doc_ids`` maps the shard's rows to global document indices. Returns ``(ids, scores)`` of shape
    ``(num_queries, min(k, shard size))``, best first.
    """
    import faiss

    doc_emb = np.ascontiguousarray(doc_emb, dtype=np.float32)
    if min(k, len(doc_emb)) == 0 or len(query_emb) == 0:
        return np.zeros((len(query_emb), 0), np.int64), np.zeros((len(query_emb), 0), np.float32)
    index = faiss.IndexFlatIP(doc_emb.shape[1])
    index.add(doc_emb)
    scores, rows = search_index(index, query_emb, k)
    return np.asarray(doc_ids, dtype=np.int64)[rows], scores.astype(np.float32, copy=False)


def merge_topk(ids: list[np.ndarray], scores: list[np.ndarray], k: int,
               dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of several ``(num_queries, k_i)`` lists per query: higher score first, then smaller id.

    Exact: nothing is approximated or re-scored, each list's own scores are compared (as ``dtype``: float64
    for BM25's scores, which near-ties separate only in the last bits of a double).
    """
    all_ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids], axis=1)
    all_scores = np.concatenate([np.asarray(s, dtype=dtype) for s in scores], axis=1)
    # Padding (id -1, score -inf) from a merger not yet full sorts last.
    order = np.lexsort((np.where(all_ids < 0, np.iinfo(np.int64).max, all_ids), -all_scores.astype(np.float64)),
                       axis=1)[:, :k]
    return np.take_along_axis(all_ids, order, axis=1), np.take_along_axis(all_scores, order, axis=1)


class TopKMerger:
    """A running exact top-k per query, fed shard answers in any order and any grouping of queries.

    Holds ``num_queries x k`` ids and scores, never the shards' lists, so memory does not grow with the
    number of shards.
    """

    def __init__(self, num_queries: int, k: int, dtype: type = np.float32) -> None:
        self.k, self.dtype = k, dtype
        self.ids = np.full((num_queries, k), -1, dtype=np.int64)
        self.scores = np.full((num_queries, k), -np.inf, dtype=dtype)

    def add(self, query_idx: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        """Merge one shard's lists for the given queries (rows of ``ids``/``scores`` follow ``query_idx``)."""
        query_idx = np.asarray(query_idx, dtype=np.int64)
        if len(query_idx) == 0:
            return
        merged_ids, merged_scores = merge_topk([self.ids[query_idx], ids], [self.scores[query_idx], scores], self.k,
                                                 self.dtype)
        self.ids[query_idx], self.scores[query_idx] = merged_ids, merged_scores

    def result(self, num_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)`` of shape ``(num_queries, min(k, num_docs))``, as one exact index would return."""
        k = min(self.k, num_docs)
        if k and (self.ids[:, :k] < 0).any():
            raise RuntimeError("sharded search: some shard answers are missing (a query has fewer than k results)")
        return self.ids[:, :k], self.scores[:, :k]


def sharded_search(doc_emb: np.ndarray, query_emb: np.ndarray, k: int,
                   num_shards: int) -> tuple[np.ndarray, np.ndarray]:
    """Single-process reference of what the Ray engine does: search each shard, merge. For tests and benchmarks."""
    merger = TopKMerger(len(query_emb), k)
    queries = np.arange(len(query_emb))
    for start, end in shard_bounds(len(doc_emb), num_shards):
        ids, scores = search_shard(doc_emb[start:end], np.arange(start, end), query_emb, k)
        merger.add(queries, ids, scores)
    return merger.result(len(doc_emb))
