"""Thresholds that drop likely false negatives: candidates scored too close to, or above, the positive.

Three rules, each on one named score column (``ce_score`` from a cross-encoder, or ``score`` from the
retriever; they live on different scales, so a threshold is meaningful only with its column):

* ``max_score``: drop ``s >= max_score`` (absolute, like NV-Retriever's TopK-Abs).
* ``margin``: drop ``s >= p - margin`` where ``p`` is the query's lowest positive score
  (sentence-transformers' ``absolute_margin``; NV-Retriever's TopK-MarginPos).
* ``max_ratio``: drop ``s > p - |p| * (1 - max_ratio)``, which is ``s > max_ratio * p`` for ``p >= 0``
  (NV-Retriever's TopK-PercPos, 0.95 in their paper) and stays sign-safe for logits below zero.

This removes the region *near and above* the positive. It is the opposite of a triplet-margin miner,
which keeps exactly that region on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hnmine.candidates import CandidateBatch
from hnmine.errors import InputError


def false_negative_mask(scores: np.ndarray, lowest_positive: np.ndarray, max_score: float | None = None,
                        margin: float | None = None, max_ratio: float | None = None) -> np.ndarray:
    """True where a candidate is a likely false negative. Pure, so boundaries are tested exactly."""
    drop = np.zeros(len(scores), dtype=bool)
    if max_score is not None:
        drop |= scores >= max_score
    with np.errstate(invalid="ignore"):
        if margin is not None:
            drop |= scores >= lowest_positive - margin
        if max_ratio is not None:
            drop |= scores > lowest_positive - np.abs(lowest_positive) * (1.0 - max_ratio)
    return drop


@dataclass
class FalseNegativeFilter:
    """Applies the rules above to ``score_column`` (default: ``ce_score`` if present, else ``score``)."""

    kind: ClassVar[str] = "false_negative_filter"
    max_score: float | None = None
    margin: float | None = None
    max_ratio: float | None = None
    score_column: str | None = None

    def __post_init__(self) -> None:
        if any(v is not None and math.isnan(v) for v in (self.max_score, self.margin, self.max_ratio)):
            raise InputError("--max-score, --margin and --max-ratio must be numbers, not NaN")
        if self.margin is not None and self.margin < 0:
            raise InputError(f"--margin must be >= 0, got {self.margin}")
        if self.max_ratio is not None and not 0 < self.max_ratio <= 1:
            raise InputError(f"--max-ratio must be in (0, 1], got {self.max_ratio}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_score, self.margin, self.max_ratio))

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if not self.active or batch.num_candidates == 0:
            return batch
        column = batch.score_column(self.score_column)
        drop = false_negative_mask(batch.scores(column), batch.lowest_positive(column),
                                   self.max_score, self.margin, self.max_ratio)
        return batch.keep(~drop)
