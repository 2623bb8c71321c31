"""Hybrid candidates: BM25 and dense lists fused by reciprocal rank fusion (Cormack et al., 2009).

RRF needs no score calibration between BM25's unbounded scores and cosine similarity, which is why it is
the usual way to combine them. Both retrievers' scores are kept on every fused candidate, and ``score``
is the cosine similarity, so margins and zones stay on a bounded scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import BM25_SCORE, CANDIDATE_SCHEMA, RRF_SCORE, SCORE, CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.stage import Phase, Stage, option, top_k_option
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.dense import DenseRetriever

RRF_K = 60.0  # Cormack et al.'s constant in 1 / (k + rank)


def reciprocal_rank_fusion(query_idx: np.ndarray, doc_idx: np.ndarray, rank: np.ndarray,
                           k: float = RRF_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of 1 / (k + rank) over the lists a (query, doc) pair appears in.

    Returns unique (query, doc) pairs and their fused score. Pure, so it is tested on its own.
    """
    pairs = np.stack([query_idx.astype(np.int64), doc_idx.astype(np.int64)], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    fused = np.zeros(len(uniq), dtype=np.float64)
    np.add.at(fused, inverse.reshape(-1), 1.0 / (k + rank.astype(np.float64)))
    return uniq[:, 0], uniq[:, 1], fused


@dataclass
class HybridRetriever(Stage):
    """Union of both candidate lists, ranked by RRF, cut to ``top_k``."""

    kind: ClassVar[str] = "hybrid"
    summary_label: ClassVar[str] = "retrieved (hybrid RRF)"
    phase: ClassVar[Phase] = Phase.RETRIEVE
    adds_columns: ClassVar[tuple[str, ...]] = (BM25_SCORE, RRF_SCORE)
    top_k: int = top_k_option()
    rrf_k: float = option(RRF_K, flag="--rrf-k", minimum=0)
    bm25: BM25Retriever = field(default_factory=BM25Retriever)
    dense: DenseRetriever = field(default_factory=DenseRetriever)

    def prepare(self, data: MiningData) -> None:
        self.bm25.prepare(data)
        self.dense.prepare(data)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        self.prepare(batch.data)
        lists = [r.apply(batch).candidates for r in (self.bm25, self.dense)]
        q = np.concatenate([t.column("query_idx").to_numpy() for t in lists])
        d = np.concatenate([t.column("doc_idx").to_numpy() for t in lists])
        r = np.concatenate([t.column("rank").to_numpy() for t in lists])
        uq, ud, fused = reciprocal_rank_fusion(q, d, r, self.rrf_k)
        order = np.lexsort((ud, -fused, uq))
        uq, ud, fused = uq[order], ud[order], fused[order]
        starts = np.r_[0, np.flatnonzero(np.diff(uq)) + 1]
        rank = np.arange(len(uq)) - np.repeat(starts, np.diff(np.r_[starts, len(uq)])) + 1
        keep = rank <= self.top_k
        uq, ud, fused, rank = uq[keep], ud[keep], fused[keep], rank[keep]
        cosine = self.dense.score_pairs(uq, ud)
        candidates = pa.table({
            "query_idx": pa.array(uq, pa.int32()),
            "doc_idx": pa.array(ud, pa.int32()),
            "rank": pa.array(rank, pa.int32()),
            SCORE: pa.array(cosine, pa.float32()),
            "retriever": pa.array([self.kind] * len(uq), pa.string()),
        }, schema=CANDIDATE_SCHEMA)
        candidates = set_column(candidates, BM25_SCORE, self.bm25.score_pairs(uq, ud), pa.float32())
        candidates = set_column(candidates, RRF_SCORE, fused, pa.float32())
        pos = batch.positives
        pq, pd = pos.column("query_idx").to_numpy(), pos.column("doc_idx").to_numpy()
        pos = set_column(pos, SCORE, self.dense.score_pairs(pq, pd), pa.float32())
        pos = set_column(pos, BM25_SCORE, self.bm25.score_pairs(pq, pd), pa.float32())
        return batch.with_scored(candidates, pos)
