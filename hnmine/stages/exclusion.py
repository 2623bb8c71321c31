"""Positive exclusion: a known positive must never come back as a negative.

Matching by id alone is not enough: corpora hold near-copies (the same abstract twice, a positive pasted
in with other whitespace), and pairs files give positives no id at all. So a candidate is dropped when its
id is a positive of that query (or of another query with the same text), when its normalised text equals a
positive's, or when it is the query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch, rank_within_query, set_column
from hnmine.stage import Phase, Stage


@dataclass
class PositiveExcluder(Stage):
    """Drops positives (by id and by normalised text) and the query's own text; re-ranks the rest 1..n."""

    kind: ClassVar[str] = "exclude_positives"
    summary_label: ClassVar[str] = "positives / duplicates / query text excluded"
    phase: ClassVar[Phase] = Phase.EXCLUDE
    by_text: bool = True

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        table = batch.candidates
        if table.num_rows == 0:
            return batch
        data = batch.data
        q = table.column("query_idx").to_numpy()
        d = table.column("doc_idx").to_numpy()
        pq = batch.positives.column("query_idx").to_numpy()
        pd = batch.positives.column("doc_idx").to_numpy()
        # Compare against the data's positives, not the batch's: a stage may have sampled the batch's down.
        all_pos = {(int(qi), int(di)) for qi in np.unique(q) for di in data.pooled_positives_of(int(qi))}
        all_pos.update(zip(pq.tolist(), pd.tolist()))
        drop = np.fromiter(((a, b) in all_pos for a, b in zip(q.tolist(), d.tolist())), bool, count=len(q))
        if self.by_text:
            pos_pairs = list(all_pos)
            pos_keys = data.doc_keys_of(np.array([b for _, b in pos_pairs], dtype=np.int64))
            banned = {(a, int(k)) for (a, _), k in zip(pos_pairs, pos_keys.tolist())}
            banned.update((int(qi), int(data.query_keys[qi])) for qi in np.unique(q))
            cand_keys = data.doc_keys_of(d)
            drop |= np.fromiter(((a, int(k)) in banned for a, k in zip(q.tolist(), cand_keys.tolist())),
                                bool, count=len(q))
        kept = table.filter(pa.array(~drop))
        new_rank = rank_within_query(kept.column("query_idx").to_numpy(), kept.column("rank").to_numpy())
        return batch.with_candidates(set_column(kept, "rank", new_rank, pa.int32()))
