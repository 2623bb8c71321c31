"""Choosing the final ``num_negatives`` per query: top, uniform random, or SimANS sampling.

Randomness is drawn from a generator seeded by (seed, query index), so a query's negatives do not depend
on chunk size, on which other queries are in the run, or on the order stages ran in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hnmine.candidates import CandidateBatch
from hnmine.stage import Phase, Stage, num_negatives_option, option, seed_option

STRATEGIES = ("top", "random", "simans")
SIMANS_A, SIMANS_B = 0.5, 0.0  # the SimANS paper's defaults


def simans_weights(scores: np.ndarray, positive: float, a: float = SIMANS_A, b: float = SIMANS_B) -> np.ndarray:
    """Unnormalised SimANS probabilities ``exp(-a * (s_neg - s_pos - b)^2)``.

    The paper's sign of ``b``: ``b > 0`` centres the sampling *above* the positive. (The authors' code
    computes ``(s_neg - s_pos + b)``, the opposite sign; with the default ``b = 0`` the two agree.)
    """
    return np.exp(-a * (scores - positive - b) ** 2)


def sample_without_replacement(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` draws, probability proportional to ``weights`` (Gumbel top-k; exact, one pass)."""
    if n >= len(weights):
        return np.arange(len(weights))
    with np.errstate(divide="ignore"):
        keys = np.log(weights) + rng.gumbel(size=len(weights))
    return np.argsort(-keys, kind="stable")[:n]


@dataclass
class NegativeSelector(Stage):
    kind: ClassVar[str] = "select"
    summary_label: ClassVar[str] = "not selected"
    phase: ClassVar[Phase] = Phase.SELECT
    num_negatives: int = num_negatives_option()
    strategy: str = option("top", flag="--sampling", choices=STRATEGIES)
    seed: int = seed_option()
    simans_a: float = option(SIMANS_A, flag="--simans-a", minimum=0)
    simans_b: float = option(SIMANS_B, flag="--simans-b")
    score_column: str | None = None

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        table = batch.candidates
        if table.num_rows == 0:
            return batch
        q = table.column("query_idx").to_numpy()
        rank = table.column("rank").to_numpy()
        order = np.lexsort((rank, q))
        starts = np.r_[0, np.flatnonzero(np.diff(q[order])) + 1, len(order)]
        if self.strategy == "simans":
            column = batch.score_column(self.score_column)
            scores = batch.scores(column)
            positive = batch.lowest_positive(column)
        keep = np.zeros(len(q), dtype=bool)
        for lo, hi in itertools.pairwise(starts):
            rows = order[lo:hi]
            n = self.num_negatives
            if self.strategy == "top" or len(rows) <= n:
                chosen = rows[:n]
            else:
                rng = np.random.default_rng([self.seed, int(q[rows[0]])])
                if self.strategy == "random":
                    chosen = rows[rng.choice(len(rows), size=n, replace=False)]
                else:
                    w = simans_weights(scores[rows], positive[rows[0]], self.simans_a, self.simans_b)
                    chosen = rows[sample_without_replacement(rng, w, n)]
            keep[chosen] = True
        return batch.keep(keep)
