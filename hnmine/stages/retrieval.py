"""Shared plumbing for retrievers: turning per-query top-k arrays into a candidate table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from hnmine.candidates import CANDIDATE_SCHEMA


def topk_to_table(queries: np.ndarray, doc_idx: np.ndarray, scores: np.ndarray, retriever: str) -> pa.Table:
    """Flatten (n_queries, k) arrays, dropping the -1 padding a small corpus leaves, ranks 1-based."""
    k = doc_idx.shape[1] if doc_idx.ndim == 2 else 0
    q = np.repeat(np.asarray(queries, dtype=np.int32), k)
    rank = np.tile(np.arange(1, k + 1, dtype=np.int32), len(queries))
    d = doc_idx.reshape(-1)
    s = scores.reshape(-1)
    ok = d >= 0
    return pa.table(
        {
            "query_idx": pa.array(q[ok], pa.int32()),
            "doc_idx": pa.array(d[ok].astype(np.int32), pa.int32()),
            "rank": pa.array(rank[ok], pa.int32()),
            "score": pa.array(s[ok].astype(np.float32), pa.float32()),
            "retriever": pa.array([retriever] * int(ok.sum()), pa.string()),
        },
        schema=CANDIDATE_SCHEMA,
    )
