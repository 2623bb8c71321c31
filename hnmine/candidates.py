"""The columnar unit every stage takes and returns.

A ``CandidateBatch`` is one chunk of queries with two Arrow tables:

* ``candidates``: one row per (query, candidate document): ``query_idx``, ``doc_idx``, ``rank`` (1-based,
  among the retriever's non-positive candidates once positives are excluded), ``score`` (the retriever's
  similarity, on the retriever's scale), ``retriever``, and whatever later stages add (``ce_score`` ...).
* ``positives``: one row per (query, known positive) with the same score columns, so that every filter can
  compare a candidate with *its own query's* positives on the *same* scale.

With ``--relabel-false-negatives`` a third table, ``relabeled``, holds the candidates a denoiser judged to be
unlabelled positives (RLHN): they leave ``candidates`` like any dropped row, and the output writes them as
extra positives, flagged, after every stage has run (so no later stage mistakes them for known positives).

Stages never see a query x corpus matrix; a batch holds at most ``chunk_size x top_k`` candidate rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hnmine.data import MiningData

# Score columns, named once. ``score`` is the retriever's own; the others are added by the stages that declare
# them in ``adds_columns`` (a cross-encoder, a bi-encoder teacher, hybrid fusion, the label-graph teacher). Each is
# written into every output layout as ``negative_<name>`` / ``positive_<name>``, in this order.
SCORE = "score"
CE_SCORE = "ce_score"
TEACHER_COSINE = "teacher_cosine"
BM25_SCORE = "bm25_score"
RRF_SCORE = "rrf_score"
LABEL_GRAPH_PROBABILITY = "label_graph_probability"  # the label-graph teacher's estimate that a candidate is relevant
ADDED_SCORE_COLUMNS = (CE_SCORE, TEACHER_COSINE, BM25_SCORE, RRF_SCORE, LABEL_GRAPH_PROBABILITY)

CANDIDATE_SCHEMA = pa.schema([
    ("query_idx", pa.int32()),
    ("doc_idx", pa.int32()),
    ("rank", pa.int32()),
    (SCORE, pa.float32()),
    ("retriever", pa.string()),
])
POSITIVE_SCHEMA = pa.schema([("query_idx", pa.int32()), ("doc_idx", pa.int32())])


@dataclass(frozen=True)
class CandidateBatch:
    data: MiningData
    queries: np.ndarray
    candidates: pa.Table
    positives: pa.Table
    relabeled: pa.Table | None = None

    @classmethod
    def start(cls, data: MiningData, queries: np.ndarray) -> CandidateBatch:
        """A chunk before retrieval: no candidates yet, positives listed for the scorers to fill in."""
        queries = np.asarray(queries, dtype=np.int32)
        counts = data.positive_counts[queries]
        q = np.repeat(queries, counts)
        d = (np.concatenate([data.positives_of(int(i)) for i in queries]) if len(queries)
             else np.zeros(0, np.int32))
        positives = pa.table({"query_idx": pa.array(q, pa.int32()), "doc_idx": pa.array(d, pa.int32())})
        return cls(data, queries, CANDIDATE_SCHEMA.empty_table(), positives)

    def with_candidates(self, candidates: pa.Table) -> CandidateBatch:
        return replace(self, candidates=candidates)

    def with_positives(self, positives: pa.Table) -> CandidateBatch:
        return replace(self, positives=positives)

    def with_scored(self, candidates: pa.Table, positives: pa.Table) -> CandidateBatch:
        """New candidate and positive tables (a retriever's or a scorer's), keeping everything else."""
        return replace(self, candidates=candidates, positives=positives)

    def add_relabeled(self, rows: pa.Table) -> CandidateBatch:
        """Keep ``rows`` (candidate rows) as likely positives, to be written as flagged extra positives."""
        if self.relabeled is not None and self.relabeled.num_rows:
            rows = pa.concat_tables([self.relabeled, rows], promote_options="permissive")
        return replace(self, relabeled=rows)

    def without_queries(self, queries: np.ndarray) -> CandidateBatch:
        """Drop every row (candidates, positives, relabeled) of ``queries``: nothing is written for them."""
        def drop(table: pa.Table | None) -> pa.Table | None:
            if table is None or not len(queries):
                return table
            return table.filter(pc.invert(pc.is_in(table.column("query_idx"), pa.array(queries, pa.int32()))))

        return replace(self, candidates=drop(self.candidates), positives=drop(self.positives),
                       relabeled=drop(self.relabeled))

    def keep(self, mask: pa.Array | pa.ChunkedArray | np.ndarray) -> CandidateBatch:
        if not isinstance(mask, (pa.Array, pa.ChunkedArray)):
            mask = pa.array(np.asarray(mask, dtype=bool))
        return replace(self, candidates=self.candidates.filter(mask))

    def score_column(self, preferred: str | None) -> str:
        """``None`` means the best score available: the cross-encoder's if one ran, else the retriever's."""
        if preferred:
            return preferred
        return CE_SCORE if CE_SCORE in self.candidates.column_names else SCORE

    @property
    def num_candidates(self) -> int:
        return self.candidates.num_rows

    def lowest_positive(self, column: str) -> np.ndarray:
        """Each candidate's own query's lowest positive score in ``column`` (NaN where unscored).

        The lowest, because a negative that beats even the weakest positive of its query is the one most
        likely to be an unlabelled positive. Aligned by query index, never by position, so queries with
        1, 2 or 50 positives in one batch cannot shift each other's thresholds.
        """
        lowest = np.full(self.data.num_queries, np.nan, dtype=np.float64)
        if column in self.positives.column_names and self.positives.num_rows:
            q = self.positives.column("query_idx").to_numpy()
            s = self.positives.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
            ok = ~np.isnan(s)
            np.fmin.at(lowest, q[ok], s[ok])
        return lowest[self.candidates.column("query_idx").to_numpy()]

    def highest_positive(self, column: str) -> np.ndarray:
        """Each candidate's own query's highest positive score in ``column`` (NaN where unscored).

        With the lowest, it bounds every positive the candidate will be paired with in the output, so a
        label that holds at both bounds of an interval condition holds for each (query, positive) row.
        """
        highest = np.full(self.data.num_queries, np.nan, dtype=np.float64)
        if column in self.positives.column_names and self.positives.num_rows:
            q = self.positives.column("query_idx").to_numpy()
            s = self.positives.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
            ok = ~np.isnan(s)
            np.fmax.at(highest, q[ok], s[ok])
        return highest[self.candidates.column("query_idx").to_numpy()]

    def scores(self, column: str) -> np.ndarray:
        if column not in self.candidates.column_names:
            raise KeyError(
                f"candidates have no '{column}' column; add a stage that produces it earlier in the pipeline"
            )
        return self.candidates.column(column).to_numpy(zero_copy_only=False).astype(np.float64)


def rank_within_query(query_idx: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """1-based rank of each row among rows of the same query, ordered by ``order_key`` ascending.

    Ties are broken by the row's current position, so re-ranking is stable and deterministic.
    """
    n = len(query_idx)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    order = np.lexsort((np.arange(n), order_key, query_idx))
    sorted_q = query_idx[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_q)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    ranks = np.empty(n, dtype=np.int32)
    ranks[order] = np.arange(n) - group_start + 1
    return ranks


def set_column(table: pa.Table, name: str, values: pa.Array | np.ndarray, type_: pa.DataType) -> pa.Table:
    array = pa.array(values, type_)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def sort_candidates(table: pa.Table) -> pa.Table:
    """Canonical order (query, rank): output and tests never depend on how a stage happened to emit rows."""
    if table.num_rows == 0:
        return table
    return table.take(pc.sort_indices(table, [("query_idx", "ascending"), ("rank", "ascending")]))
