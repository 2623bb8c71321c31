"""Positives per query: cap how many of a query's positives go into the output.

Output rows are multiplied by a query's positives: a triplet file holds every negative once per positive,
so one query with fifty positives outweighs fifty queries with one, and its negatives are repeated fifty
times. This stage keeps at most ``max_positives`` positives per query (a seeded random sample, in their
original order); candidates are untouched.

Every threshold (margin, ratio, zone, SimANS, gap tiers) reads the lowest positive of ``batch.positives``,
so a stage after this one sees only the kept positives, and the weakest one may have been dropped. Run it
after the filters (the standard pipeline places it just before selection), so margins still use all of a
query's positives. Positive exclusion always checks all of the data's positives, wherever this runs.

Randomness comes from a generator seeded by (seed, query index), independent of chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch
from hnmine.errors import MAX_RANK
from hnmine.stage import Phase, Stage, option, seed_option


@dataclass
class PositivesPerQuery(Stage):
    """Keeps at most ``max_positives`` rows per query in ``batch.positives``."""

    kind: ClassVar[str] = "positives_per_query"
    summary_label: ClassVar[str] = "(positives capped; candidates unchanged)"
    phase: ClassVar[Phase] = Phase.FILTER
    max_positives: int = option(1, flag="--positives-per-query", minimum=1, maximum=MAX_RANK)
    seed: int = seed_option()

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        positives = batch.positives
        if positives.num_rows == 0:
            return batch
        q = positives.column("query_idx").to_numpy()
        keep = np.ones(len(q), dtype=bool)
        queries, counts = np.unique(q, return_counts=True)
        for query in queries[counts > self.max_positives].tolist():
            rows = np.flatnonzero(q == query)
            rng = np.random.default_rng([self.seed, query])
            chosen = rng.choice(len(rows), size=self.max_positives, replace=False)
            keep[rows] = False
            keep[rows[chosen]] = True
        if keep.all():
            return batch
        return batch.with_positives(positives.filter(pa.array(keep)))
