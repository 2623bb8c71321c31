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

from hnmine.candidates import CANDIDATE_SCHEMA, CE_SCORE, SCORE, CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.errors import InputError
from hnmine.io.inputs import text_column
from hnmine.io.readers import pick_column, read_table


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


def _long_rows(table: pa.Table, path: str | Path, columns: TripletColumns) -> tuple[pa.Table, str, str, str]:
    """The file as one row per (query, positive, negative), whatever layout it came in.

    Recognised by column names: triplets (hnmine's ``query/positive/negative``, sentence-transformers'
    ``anchor/positive/negative``), n-tuples (``negative_1..n``) and FlagEmbedding records (``query``, ``pos``
    and ``neg`` lists). Triplets keep every column they came with; n-tuples and FlagEmbedding records are
    exploded into triplets, since dropping one negative from a fixed-width row has no honest representation.
    """
    defaults = TripletColumns()
    query = pick_column(table, path, columns.query, defaults.query, ("anchor", "question"))
    positive = pick_column(table, path, columns.positive, defaults.positive, ("pos",))
    if columns.negative in table.column_names:
        negative = columns.negative
    elif columns.negative != defaults.negative:
        raise_missing(path, columns.negative, table)
    else:
        numbered = sorted((c for c in table.column_names if c.startswith("negative_") and c[9:].isdigit()),
                          key=lambda c: int(c[9:]))
        negative = "neg" if "neg" in table.column_names else None
        if not numbered and negative is None:
            have = ", ".join(table.column_names)
            raise InputError(f"{path}: no negatives: expected a 'negative' column, negative_1..negative_n, or a "
                             f"FlagEmbedding 'neg' list (columns present: {have})")
        lists = {positive: table.column(positive).to_pylist()} if _is_list(table, positive) else {}
        queries = text_column(table, path, query)
        positives = lists.get(positive) or [[p] for p in text_column(table, path, positive)]
        if numbered:
            negs = list(zip(*(text_column(table, path, c) for c in numbered)))
        else:
            if not _is_list(table, "neg"):
                raise InputError(f"{path}: column 'neg' has type {table.schema.field('neg').type}, expected a list")
            negs = table.column("neg").to_pylist()
        rows: dict[str, list[str]] = {"query": [], "positive": [], "negative": []}
        for row, (q, ps, ns) in enumerate(zip(queries, positives, negs)):
            for what, values in (("positive", ps), ("negative", ns)):
                if any(v is None or not v.strip() for v in values or []):
                    raise InputError(f"{path}: row {row} (0-based) holds a null or empty {what}")
            for p in ps or []:
                for n in ns or []:
                    rows["query"].append(q)
                    rows["positive"].append(p)
                    rows["negative"].append(n)
        return pa.table(rows), "query", "positive", "negative"
    return table, query, positive, negative


def _is_list(table: pa.Table, name: str) -> bool:
    kind = table.schema.field(name).type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def read_triplets(path: str | Path, columns: TripletColumns = TripletColumns()) -> TripletFile:
    table, qcol, pcol, ncol = _long_rows(read_table(path, "triplets"), path, columns)
    queries = text_column(table, path, qcol)
    positives = text_column(table, path, pcol)
    negatives = text_column(table, path, ncol)
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
        SCORE: pa.array(np.full(len(pairs), np.nan), pa.float32()),
        "retriever": pa.array(["input"] * len(pairs), pa.string()),
    }, schema=CANDIDATE_SCHEMA)
    return CandidateBatch.start(triplets.data, queries).with_candidates(candidates)


class TeacherScores:
    """What a denoising pass keeps: each surviving (query, negative) pair's teacher score, and the positives'.

    ``chunk_scores`` is the chunk loop's format step (``hnmine.jobs.chunks.run_chunks``): a chunk's scored pairs
    as a table, which the loop checkpoints, so a resumed run reads them back; ``add`` takes each chunk's table,
    resumed or scored, and ``kept_rows`` then selects the file's rows. ``score_column`` is ``ce_score`` for a
    cross-encoder, ``teacher_cosine`` for a bi-encoder teacher, so a reader never mistakes one scale for the other.
    """

    def __init__(self, score_column: str = CE_SCORE) -> None:
        self.score_column = score_column
        self.negatives: dict[tuple[int, int], float] = {}
        self.positives: dict[tuple[int, int], float] = {}

    def chunk_scores(self, batch: CandidateBatch) -> tuple[pa.Table, int]:
        """The surviving negatives' and the positives' (query_idx, doc_idx, score), in batch order."""
        parts = []
        for table, positive in ((batch.candidates, False), (batch.positives, True)):
            n = table.num_rows if self.score_column in table.column_names else 0
            parts.append(pa.table({
                "positive": pa.array(np.full(n, positive), pa.bool_()),
                "query_idx": table.column("query_idx").slice(0, n).cast(pa.int64()),
                "doc_idx": table.column("doc_idx").slice(0, n).cast(pa.int64()),
                "score": table.column(self.score_column).cast(pa.float32()) if n else pa.array([], pa.float32()),
            }))
        return pa.concat_tables(parts), 0

    def add(self, scores: pa.Table) -> None:
        """One chunk's ``chunk_scores`` table."""
        cols = scores.to_pydict()
        for positive, q, d, score in zip(cols["positive"], cols["query_idx"], cols["doc_idx"], cols["score"]):
            (self.positives if positive else self.negatives)[(q, d)] = score

    def kept_rows(self, triplets: TripletFile) -> tuple[pa.Table, int]:
        """The file's rows whose (query, negative) pair survived, with ``positive_<score_column>`` and
        ``negative_<score_column>`` added (or replaced); every column they came with is kept. Returns the table
        and the number of distinct (query, negative) pairs kept."""
        rq_all, rn_all = triplets.row_query.tolist(), triplets.row_negative.tolist()
        rows = np.flatnonzero(np.fromiter(((q, d) in self.negatives for q, d in zip(rq_all, rn_all)), bool,
                                          count=len(rq_all)))
        table = triplets.table.take(rows)
        rq, rp, rn = (a[rows].tolist() for a in (triplets.row_query, triplets.row_positive, triplets.row_negative))
        column = self.score_column
        table = set_column(table, f"positive_{column}", [self.positives.get(k) for k in zip(rq, rp)], pa.float32())
        table = set_column(table, f"negative_{column}", [self.negatives[k] for k in zip(rq, rn)], pa.float32())
        return table, len(self.negatives)
