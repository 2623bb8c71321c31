"""Sibling filter: drop candidates that look like relatives of the known positive, without any teacher.

With one known positive per query, the unlabelled positives among the top candidates are mostly *siblings*
of that positive: documents about the same finding, cited by the same page, near-copies. Two cheap signals
find them, and both are relative to the query, so one setting holds across queries and models:

* **Similarity to the positive itself** (document-document cosine under the mining model), compared with
  the query's own candidate pool: a candidate is dropped when its cosine to the nearest known positive is at
  or above the ``percentile``-th percentile of that cosine over the query's top-``pool`` candidates. A
  global threshold would cut nothing on a diffuse query and everything on a narrow one.
* **Agreement between retrievers**: a candidate that BM25 also ranks in its top ``lexical_top`` for the
  query shares the query's words *and* its meaning, which on NFCorpus dev makes it relevant 3 to 4 times
  as often as a dense-only candidate (18-22 % vs 4.5-5 % in the dense top 100).

Measured on NFCorpus dev with one known positive per query (``benchmarks/false_negatives.py``): dense ranks
1-100 through this filter (percentile 60, pool 100, lexical top 100), then the top 5, emit 6 % false negatives
at mean rank 13, where the dense window 11-50 emits 13 % at the same mean rank.

The stage runs before the rank window, so the pool is the retriever's own top list, and ranks stay those
of the retriever: hardness is still read off the same scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.errors import MAX_RANK, InputError
from hnmine.stage import Phase, Stage, option
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.dense import DenseRetriever

SIBLING_COLUMN = "positive_cosine"


def nearest_positive_cosine(doc_emb: np.ndarray, query_idx: np.ndarray, doc_idx: np.ndarray,
                            pos_query: np.ndarray, pos_doc: np.ndarray) -> np.ndarray:
    """Each candidate's cosine to the closest known positive of *its own* query (NaN when it has none)."""
    out = np.full(len(query_idx), np.nan, dtype=np.float64)
    for q in np.unique(query_idx):
        positives = pos_doc[pos_query == q]
        if len(positives) == 0:
            continue
        rows = np.flatnonzero(query_idx == q)
        sims = doc_emb[doc_idx[rows]] @ doc_emb[positives].T
        out[rows] = sims.max(axis=1)
    return out


def sibling_mask(query_idx: np.ndarray, rank: np.ndarray, positive_cosine: np.ndarray, percentile: float | None,
                 pool: int, lexical_hit: np.ndarray | None = None) -> np.ndarray:
    """True where a candidate is a likely sibling of its query's positive. Pure, so it is tested exactly.

    The threshold of each query is the ``percentile`` of ``positive_cosine`` over that query's candidates of
    rank <= ``pool`` (linear interpolation, numpy's default); candidates at or above it are siblings.
    """
    drop = np.zeros(len(query_idx), dtype=bool) if lexical_hit is None else lexical_hit.astype(bool).copy()
    if percentile is None or len(query_idx) == 0:
        return drop
    for q in np.unique(query_idx):
        rows = np.flatnonzero(query_idx == q)
        in_pool = rows[(rank[rows] <= pool) & ~np.isnan(positive_cosine[rows])]
        if len(in_pool) == 0:
            continue
        threshold = np.percentile(positive_cosine[in_pool], percentile)
        with np.errstate(invalid="ignore"):
            drop[rows] |= positive_cosine[rows] >= threshold
    return drop


@dataclass
class SiblingFilter(Stage):
    """Drops candidates close to the query's known positive (per-query percentile) or in BM25's top list.

    ``dense`` and ``bm25`` are the pipeline's own retrievers when it has them, so nothing is encoded or
    indexed twice; with a BM25 retriever, ``lexical_top`` compares against BM25's ranking of the full corpus.
    """

    kind: ClassVar[str] = "sibling_filter"
    phase: ClassVar[Phase] = Phase.FILTER
    percentile: float | None = 60.0
    pool: int = option(100, flag="--sibling-pool", minimum=1, maximum=MAX_RANK)
    lexical_top: int | None = option(100, flag="--lexical-top", minimum=1, maximum=MAX_RANK)
    dense: DenseRetriever = field(default_factory=DenseRetriever)
    bm25: BM25Retriever = field(default_factory=BM25Retriever)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.percentile is not None and (math.isnan(self.percentile) or not 0 < self.percentile <= 100):
            raise InputError(f"--sibling-percentile must be in (0, 100], got {self.percentile}")

    def prepare(self, data: MiningData) -> None:
        if self.percentile is not None:
            self.dense.prepare(data)
        if self.lexical_top is not None:
            self.bm25.prepare(data)

    def _lexical_hits(self, batch: CandidateBatch, q: np.ndarray, d: np.ndarray) -> np.ndarray:
        assert self.lexical_top is not None and self.bm25._index is not None
        tokens = [self.bm25._query_tokens[int(i)] for i in batch.queries]
        top, _ = self.bm25._index.top_k(tokens, self.lexical_top)
        pairs = {(int(qi), int(di)) for qi, row in zip(batch.queries.tolist(), top) for di in row.tolist()}
        return np.fromiter(((a, b) in pairs for a, b in zip(q.tolist(), d.tolist())), bool, count=len(q))

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if batch.num_candidates == 0 or (self.percentile is None and self.lexical_top is None):
            return batch
        self.prepare(batch.data)
        cand = batch.candidates
        q = cand.column("query_idx").to_numpy()
        d = cand.column("doc_idx").to_numpy()
        cosine = np.full(len(q), np.nan)
        if self.percentile is not None:
            assert self.dense._doc_emb is not None
            cosine = nearest_positive_cosine(self.dense._doc_emb, q, d,
                                             batch.positives.column("query_idx").to_numpy(),
                                             batch.positives.column("doc_idx").to_numpy())
            cand = set_column(cand, SIBLING_COLUMN, cosine, pa.float32())
        lexical = self._lexical_hits(batch, q, d) if self.lexical_top is not None else None
        drop = sibling_mask(q, cand.column("rank").to_numpy(), cosine, self.percentile, self.pool, lexical)
        return batch.with_candidates(cand).keep(~drop)
