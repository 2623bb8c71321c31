"""Random fill: top up queries left short of negatives with random corpus documents. Opt-in only.

FlagEmbedding's ``hn_mine`` silently pads every short query with random passages. That hides retrieval
failures: a query whose candidates were all filtered out as false negatives looks as healthy as one with
ten real hard negatives, and the training set quietly fills with easy negatives. hnmine therefore never
fills unless asked (``--fill random``), and marks every added row with ``filled = True`` (real candidates
get ``False``) so the output says which negatives are random.

A filled document is never a positive of its query by id, never a document whose normalised text equals a
positive's or the query's, and never a document already among the query's candidates. It *can* be a
candidate an earlier stage dropped as a likely false negative (the batch no longer knows those); at random
that is rare, about one in ``corpus size / dropped`` draws. Filled rows continue the query's ranks after
its last one and have no score (NaN), so score-based stages placed after this one drop or ignore them.

Randomness comes from a generator seeded by (seed, query index): a query's fill does not depend on chunk
size or on which other queries are in the run. When the corpus cannot supply enough eligible documents,
what exists is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch, set_column, sort_candidates
from hnmine.data import MiningData
from hnmine.stage import Phase, Stage, num_negatives_option, seed_option

FILL_RETRIEVER = "random"


def draw_fill(rng: np.random.Generator, data: MiningData, query_idx: int, taken: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct random eligible document indices, uniformly among the eligible ones.

    A random sample a little larger than needed is drawn and filtered, so a million-document corpus is not
    scanned per query; only when that falls short (a tiny or heavily excluded corpus) is the whole corpus
    permuted.
    """
    num_docs = data.corpus_size  # never a generated passage: fill draws from the corpus
    if n <= 0 or num_docs == 0:
        return np.zeros(0, dtype=np.int64)
    positives = data.positives_of(query_idx)
    banned_ids = set(np.asarray(taken, dtype=np.int64).tolist()) | set(positives.tolist())
    banned_keys = set(data.doc_keys_of(positives).tolist()) | {int(data.query_keys[query_idx])}

    def eligible(draw: np.ndarray) -> np.ndarray:
        keys = data.doc_keys_of(draw).tolist()
        ok = [d not in banned_ids and k not in banned_keys for d, k in zip(draw.tolist(), keys)]
        return draw[np.asarray(ok, dtype=bool)]

    size = min(num_docs, 2 * (n + len(banned_ids)) + 16)
    chosen = eligible(rng.choice(num_docs, size=size, replace=False))
    if len(chosen) < n and size < num_docs:
        chosen = eligible(rng.permutation(num_docs))
    return chosen[:n].astype(np.int64)


@dataclass
class RandomFill(Stage):
    """Tops each query of the batch up to ``num_negatives`` candidates; adds a boolean column ``filled``."""

    kind: ClassVar[str] = "fill_random"
    summary_label: ClassVar[str] = "added by random fill"
    phase: ClassVar[Phase] = Phase.FILL
    needs: ClassVar[tuple[str, ...]] = ("select",)  # it tops queries up to the select stage's count
    num_negatives: int = num_negatives_option()
    seed: int = seed_option()

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        table = batch.candidates
        if "filled" not in table.column_names:
            table = set_column(table, "filled", np.zeros(table.num_rows, dtype=bool), pa.bool_())
        q = table.column("query_idx").to_numpy()
        d = table.column("doc_idx").to_numpy()
        rank = table.column("rank").to_numpy()
        add_q: list[np.ndarray] = []
        add_d: list[np.ndarray] = []
        add_rank: list[np.ndarray] = []
        for query in np.unique(np.asarray(batch.queries, dtype=np.int64)).tolist():
            rows = np.flatnonzero(q == query)
            need = self.num_negatives - len(rows)
            if need <= 0:
                continue
            rng = np.random.default_rng([self.seed, query])
            docs = draw_fill(rng, batch.data, query, d[rows], need)
            last = int(rank[rows].max()) if len(rows) else 0
            add_q.append(np.full(len(docs), query, dtype=np.int64))
            add_d.append(docs)
            add_rank.append(last + 1 + np.arange(len(docs)))
        if not add_q or not sum(len(a) for a in add_q):
            return batch.with_candidates(table)
        n = sum(len(a) for a in add_q)
        added = {}
        for f in table.schema:
            if f.name == "query_idx":
                values = pa.array(np.concatenate(add_q), f.type)
            elif f.name == "doc_idx":
                values = pa.array(np.concatenate(add_d), f.type)
            elif f.name == "rank":
                values = pa.array(np.concatenate(add_rank), f.type)
            elif f.name == "retriever":
                values = pa.array([FILL_RETRIEVER] * n, f.type)
            elif f.name == "filled":
                values = pa.array(np.ones(n, dtype=bool), f.type)
            elif pa.types.is_floating(f.type):
                values = pa.array(np.full(n, np.nan), f.type)
            else:
                values = pa.nulls(n, f.type)
            added[f.name] = values
        filled = pa.table(added, schema=table.schema)
        return batch.with_candidates(sort_candidates(pa.concat_tables([table, filled])))
