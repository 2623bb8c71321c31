"""Triplet-margin mining: keep candidates by how they sit against the positive, with a margin.

With ``Δ = p - s`` (``p``: the query's lowest positive score, ``s``: the candidate's score, both in one
score column), the four types of pytorch-metric-learning's ``TripletMarginMiner`` on a similarity:

* ``hard``: ``Δ <= 0``, the candidate scores at or above the positive.
* ``semihard``: ``0 < Δ <= margin``, just below the positive, inside the margin.
* ``easy``: ``Δ > margin``, already separated by more than the margin.
* ``all``: ``Δ <= margin``, hard and semihard together (the triplets a margin loss still learns from).

This is the opposite of the false-negative margin (``false_negative_filter``), which *removes*
``s >= p - m``, the very region ``all`` keeps: that filter distrusts candidates close to the positive as
likely unlabelled positives, this one seeks them out as the most informative. Use this one when the
labels are complete or a cross-encoder has already cleaned them; combining both with the same margin
leaves only ``easy``.

Every output layout pairs a kept negative with *each* of its query's positives (one triplet per positive,
or one n-tuple row per positive), so the type must hold against every positive, not only the weakest: a
negative between two positives' scores is ``hard`` for one and ``semihard`` for the other. Each condition is
an interval in ``p`` for a fixed ``s``, so testing it at the query's lowest and highest positive scores
tests it for all of them. A candidate or query without a score in the column (NaN) is dropped: its place
relative to the margin is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hnmine.candidates import CandidateBatch
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage, option

TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


def triplet_margin_mask(scores: np.ndarray, positive: np.ndarray, triplet_type: str, margin: float) -> np.ndarray:
    """True where a candidate is kept. Pure, so the boundaries are tested exactly."""
    if triplet_type not in TRIPLET_TYPES:
        raise InputError(f"--triplet-type {triplet_type!r}: expected one of {', '.join(TRIPLET_TYPES)}")
    with np.errstate(invalid="ignore"):
        delta = np.asarray(positive, dtype=np.float64) - np.asarray(scores, dtype=np.float64)
        if triplet_type == "easy":
            return delta > margin
        keep = delta <= margin
        if triplet_type == "hard":
            keep &= delta <= 0
        elif triplet_type == "semihard":
            keep &= delta > 0
    return keep


@dataclass
class TripletMarginFilter(Stage):
    """Keeps the ``triplet_type`` candidates of ``score_column`` (default: ``ce_score`` if present, else ``score``)."""

    kind: ClassVar[str] = "triplet_margin"
    summary_label: ClassVar[str] = "outside the triplet-margin region"
    phase: ClassVar[Phase] = Phase.FILTER
    triplet_type: str = option("all", flag="--triplet-type", choices=TRIPLET_TYPES)
    margin: float = option(0.2, flag="--triplet-margin", minimum=0)
    score_column: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.triplet_type == "semihard" and self.margin == 0:
            raise InputError("--triplet-type semihard needs --triplet-margin > 0 (0 < p - s <= 0 is empty)")

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if batch.num_candidates == 0:
            return batch
        column = batch.score_column(self.score_column)
        scores = batch.scores(column)
        keep = triplet_margin_mask(scores, batch.lowest_positive(column), self.triplet_type, self.margin)
        keep &= triplet_margin_mask(scores, batch.highest_positive(column), self.triplet_type, self.margin)
        return batch.keep(keep)
