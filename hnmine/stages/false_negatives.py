"""Thresholds that drop likely false negatives: candidates scored too close to, or above, the positive.

Three rules, each on one named score column (``ce_score`` from a cross-encoder, or ``score`` from the
retriever; they live on different scales, so a threshold is meaningful only with its column):

* ``max_score``: drop ``s >= max_score`` (absolute, like NV-Retriever's TopK-Abs).
* ``margin``: drop ``s >= p - margin`` where ``p`` is the query's lowest positive score
  (sentence-transformers' ``absolute_margin``; NV-Retriever's TopK-MarginPos).
* ``max_ratio``: drop ``s > p - |p| * (1 - max_ratio)``, which is ``s > max_ratio * p`` for ``p >= 0``
  (NV-Retriever's TopK-PercPos, 0.95 in their paper) and stays sign-safe for logits below zero.

Two more rules are **per query**, read off the query's own candidate scores, so that one setting means the
same thing for every query and every model (a cross-encoder's logits, a cosine, a BM25 score): both compare
differences of scores and divide by the query's own spread, so shifting or rescaling a model's scores leaves
the decision unchanged, and negative scores are no special case.

* ``max_z``: drop ``(s - mean_q) / sd_q >= max_z``: an outlier above the query's own candidates.
* ``spread_margin``: drop ``s >= p - spread_margin * sd_q``: within ``spread_margin`` of the query's
  candidate spreads below its lowest positive (a margin in the query's own units rather than the model's).

``mean_q`` and ``sd_q`` are the mean and (population) standard deviation of the scores of the query's
candidates that reach the filter; a query whose candidates all score alike (``sd_q = 0``) loses nothing to
these two rules.

What happens to a likely false negative (RLHN, castorini/rlhn): it is dropped from the candidates; with
``relabel`` it is also kept as a flagged extra positive of its query (``CandidateBatch.relabeled``), and with
``max_false_negatives K`` a query with more than K likely false negatives among the candidates reaching the
filter is dropped whole (its candidate list is mostly relevant: no negative of it can be trusted).

A fourth, ``min_score``, drops ``s < min_score`` (sentence-transformers' ``min_score``): not a false-negative
rule but a floor for negatives too easy to teach anything, on the same named scale. What
it drops is only dropped, never relabelled a positive.

This removes the region *near and above* the positive. It is the opposite of a triplet-margin miner,
which keeps exactly that region on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage


def query_spread(scores: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's query mean and population standard deviation of ``scores`` (NaN scores ignored)."""
    scores = np.asarray(scores, dtype=np.float64)
    _, inverse = np.unique(np.asarray(query), return_inverse=True)
    ok = ~np.isnan(scores)
    n = np.bincount(inverse[ok], minlength=inverse.max(initial=-1) + 1).astype(np.float64)
    total = np.bincount(inverse[ok], weights=scores[ok], minlength=len(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        dev = scores - mean[inverse]
        var = np.bincount(inverse[ok], weights=dev[ok] ** 2, minlength=len(n)) / n
    return mean[inverse], np.sqrt(var)[inverse]


def false_negative_mask(scores: np.ndarray, lowest_positive: np.ndarray, max_score: float | None = None,
                        margin: float | None = None, max_ratio: float | None = None,
                        query: np.ndarray | None = None, max_z: float | None = None,
                        spread_margin: float | None = None, min_score: float | None = None) -> np.ndarray:
    """True where a candidate is a likely false negative (or, with ``min_score``, too easy). Pure, so boundaries
    are tested exactly.

    ``query`` (each row's query id) is needed by the per-query rules ``max_z`` and ``spread_margin``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    drop = np.zeros(len(scores), dtype=bool)
    if max_score is not None:
        drop |= scores >= max_score
    if min_score is not None:
        drop |= scores < min_score
    with np.errstate(invalid="ignore"):
        if margin is not None:
            drop |= scores >= lowest_positive - margin
        if max_ratio is not None:
            drop |= scores > lowest_positive - np.abs(lowest_positive) * (1.0 - max_ratio)
        if (max_z is not None or spread_margin is not None) and len(scores):
            if query is None:
                raise ValueError("max_z and spread_margin need each row's query")
            mean, sd = query_spread(scores, query)
            spread = sd > 0
            if max_z is not None:
                drop |= spread & (scores - mean >= max_z * sd)
            if spread_margin is not None:
                drop |= spread & (scores >= lowest_positive - spread_margin * sd)
    return drop


# The options of the rules above (and of what becomes of their catches), which each teacher stage declares too.
RULE_OPTIONS = ("max_score", "margin", "max_ratio", "max_z", "spread_margin", "relabel", "max_false_negatives",
                "min_score")


@dataclass
class TeacherRules:
    """A teacher stage's model and rule options, declared once for every teacher (fields in this order)."""

    model: str = ""
    max_score: float | None = None
    margin: float | None = None
    max_ratio: float | None = None
    max_z: float | None = None
    spread_margin: float | None = None
    relabel: bool = False
    max_false_negatives: int | None = None


@dataclass
class FalseNegativeFilter(Stage):
    """Applies the rules above to ``score_column`` (default: ``ce_score`` if present, else ``score``)."""

    kind: ClassVar[str] = "false_negative_filter"
    summary_label: ClassVar[str] = "dropped as likely false negatives"
    phase: ClassVar[Phase] = Phase.FILTER
    max_score: float | None = None
    margin: float | None = None
    max_ratio: float | None = None
    score_column: str | None = None
    max_z: float | None = None
    spread_margin: float | None = None
    relabel: bool = False
    max_false_negatives: int | None = None
    _relabeled: int = field(default=0, init=False, repr=False)
    _queries_dropped: int = field(default=0, init=False, repr=False)
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.max_false_negatives is not None and self.max_false_negatives < 0:
            raise InputError(f"--max-false-negatives must be >= 0, got {self.max_false_negatives}")
        if any(v is not None and not math.isfinite(v) for v in
               (self.max_score, self.margin, self.max_ratio, self.max_z, self.spread_margin, self.min_score)):
            raise InputError("--max-score, --min-score, --margin, --max-ratio, --max-z and --spread-margin must be "
                             "finite numbers")
        if self.min_score is not None and self.max_score is not None and self.min_score >= self.max_score:
            raise InputError(f"--min-score {self.min_score} must be below --max-score {self.max_score}")
        if self.margin is not None and self.margin < 0:
            raise InputError(f"--margin must be >= 0, got {self.margin}")
        if self.max_ratio is not None and not 0 < self.max_ratio <= 1:
            raise InputError(f"--max-ratio must be in (0, 1], got {self.max_ratio}")

    @classmethod
    def for_teacher(cls, teacher: Any, column: str) -> FalseNegativeFilter:
        """The rules a teacher stage declares (the same option names), on the score column the teacher adds."""
        return cls(**{name: getattr(teacher, name) for name in RULE_OPTIONS}, score_column=column)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_score, self.margin, self.max_ratio, self.max_z,
                                           self.spread_margin, self.min_score))

    @property
    def per_query(self) -> bool:
        """True when a rule or an action reads the query's whole candidate list, so every candidate must be
        scored (relabeling and query dropping count the likely positives, which lazy scoring would miss)."""
        return (self.max_z is not None or self.spread_margin is not None or self.relabel
                or self.max_false_negatives is not None)

    def notes(self) -> dict[str, int]:
        notes = {}
        if self.relabel:
            notes["likely false negatives written as extra positives (relabeled)"] = self._relabeled
        if self.max_false_negatives is not None:
            notes[f"queries dropped: more than {self.max_false_negatives} likely false negatives"] = \
                self._queries_dropped
        return notes

    def settle(self, batch: CandidateBatch, drop: np.ndarray) -> CandidateBatch:
        """Remove the ``drop`` rows; relabel them and drop over-full queries when asked to."""
        dropped = batch.candidates.filter(pa.array(drop))
        out = batch.keep(~drop)
        if self.relabel and dropped.num_rows:
            out = out.add_relabeled(dropped)
            self._relabeled += dropped.num_rows
        if self.max_false_negatives is not None and dropped.num_rows:
            q, counts = np.unique(dropped.column("query_idx").to_numpy(), return_counts=True)
            over = q[counts > self.max_false_negatives]
            if len(over):
                if self.relabel:
                    self._relabeled -= int(counts[counts > self.max_false_negatives].sum())
                self._queries_dropped += len(over)
                out = out.without_queries(over)
        return out

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if not self.active or batch.num_candidates == 0:
            # the flag column of every output layout depends on the option, never on a chunk's data
            return batch.add_relabeled(batch.candidates.slice(0, 0)) if self.relabel else batch
        column = batch.score_column(self.score_column)
        drop = false_negative_mask(batch.scores(column), batch.lowest_positive(column),
                                   self.max_score, self.margin, self.max_ratio,
                                   query=batch.candidates.column("query_idx").to_numpy(),
                                   max_z=self.max_z, spread_margin=self.spread_margin)
        if self.min_score is not None:  # too easy: dropped, and never relabelled a positive
            easy = (batch.scores(column) < self.min_score) & ~drop
            batch, drop = batch.keep(~easy), drop[~easy]
        return self.settle(batch, drop)
