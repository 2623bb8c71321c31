"""Existing triplet files (from hnmine or any other miner) as mining input, for ``hnmine denoise``.

A triplet file is turned back into queries, documents and candidates keyed by text, so the same exclusion
and cross-encoder stages that ``mine`` uses clean it: each distinct (query, passage) pair is scored once
however many rows repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from hnmine.candidates import CANDIDATE_SCHEMA, CandidateBatch
from hnmine.data import MiningData
from hnmine.io import read_parquet, text_column


@dataclass(frozen=True)
class TripletColumns:
    query: str = "query"
    positive: str = "positive"
    negative: str = "negative"


@dataclass
class TripletFile:
    table: pa.Table
    data: MiningData
    row_query: np.ndarray
    row_positive: np.ndarray
    row_negative: np.ndarray


def read_triplets(path: str | Path, columns: TripletColumns = TripletColumns()) -> TripletFile:
    table = read_parquet(path, "triplets")
    for name in (columns.query, columns.positive, columns.negative):
        if name not in table.column_names:
            raise_missing(path, name, table)
    queries = text_column(table, path, columns.query)
    positives = text_column(table, path, columns.positive)
    negatives = text_column(table, path, columns.negative)
    qidx: dict[str, int] = {}
    didx: dict[str, int] = {}
    rq = np.fromiter((qidx.setdefault(t, len(qidx)) for t in queries), np.int64, count=len(queries))
    rp = np.fromiter((didx.setdefault(t, len(didx)) for t in positives), np.int64, count=len(positives))
    rn = np.fromiter((didx.setdefault(t, len(didx)) for t in negatives), np.int64, count=len(negatives))
    qtexts, dtexts = list(qidx), list(didx)
    data = MiningData.from_pairs(
        [f"q{i}" for i in range(len(qtexts))], qtexts, [f"d{i}" for i in range(len(dtexts))], dtexts,
        list(zip(rq.tolist(), rp.tolist())), source={"triplets": str(path)},
    )
    return TripletFile(table, data, rq, rp, rn)


def raise_missing(path: str | Path, name: str, table: pa.Table) -> None:
    from hnmine.errors import InputError

    raise InputError(f"{path}: missing required column '{name}' (columns present: {', '.join(table.column_names)})")


def candidate_batch(triplets: TripletFile, queries: np.ndarray) -> CandidateBatch:
    """Distinct (query, negative) pairs of the given queries, ranked in file order."""
    in_chunk = np.isin(triplets.row_query, queries)
    pairs = np.unique(np.stack([triplets.row_query[in_chunk], triplets.row_negative[in_chunk]], 1), axis=0)
    first_row = {}
    for row in np.flatnonzero(in_chunk).tolist():
        first_row.setdefault((int(triplets.row_query[row]), int(triplets.row_negative[row])), row)
    order_key = np.array([first_row[(int(q), int(d))] for q, d in pairs], dtype=np.int64)
    order = np.lexsort((order_key, pairs[:, 0])) if len(pairs) else np.zeros(0, np.int64)
    pairs = pairs[order]
    rank = np.zeros(len(pairs), dtype=np.int32)
    if len(pairs):
        starts = np.r_[0, np.flatnonzero(np.diff(pairs[:, 0])) + 1]
        rank = (np.arange(len(pairs)) - np.repeat(starts, np.diff(np.r_[starts, len(pairs)])) + 1).astype(np.int32)
    candidates = pa.table({
        "query_idx": pa.array(pairs[:, 0] if len(pairs) else [], pa.int32()),
        "doc_idx": pa.array(pairs[:, 1] if len(pairs) else [], pa.int32()),
        "rank": pa.array(rank, pa.int32()),
        "score": pa.array(np.full(len(pairs), np.nan), pa.float32()),
        "retriever": pa.array(["input"] * len(pairs), pa.string()),
    }, schema=CANDIDATE_SCHEMA)
    return CandidateBatch.start(triplets.data, queries).with_candidates(candidates)
