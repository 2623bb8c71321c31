"""Ambiguous-zone filtering (SimANS, Zhou et al., EMNLP 2022).

Negatives far below the positive teach nothing (easy); negatives at or above it are often false
negatives. SimANS keeps the band around the positive's score, relative to *that query's* lowest positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hnmine.candidates import CandidateBatch
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage


def parse_zone(text: str) -> tuple[float, float]:
    """``LOW:HIGH`` as given on the command line, e.g. ``0.3:0.05``."""
    try:
        low, high = (float(x) for x in text.split(":"))
    except ValueError:
        raise InputError(f"--zone {text!r}: expected LOW:HIGH, two numbers such as 0.3:0.05") from None
    return low, high


@dataclass
class AmbiguousZoneFilter(Stage):
    """Keep candidates with ``p - low <= s <= p + high`` (``p``: the query's lowest positive score)."""

    kind: ClassVar[str] = "ambiguous_zone"
    summary_label: ClassVar[str] = "outside the ambiguous zone"
    phase: ClassVar[Phase] = Phase.FILTER
    low: float = 0.3
    high: float = 0.0
    score_column: str | None = None

    def __post_init__(self) -> None:
        if math.isnan(self.low) or math.isnan(self.high):
            raise InputError(f"--zone {self.low}:{self.high}: NaN is not a bound")
        if self.low < 0:
            raise InputError(f"--zone {self.low}:{self.high}: LOW is a distance below p and must be >= 0")
        if self.high < -self.low:
            raise InputError(f"--zone {self.low}:{self.high}: the zone [p-{self.low}, p{self.high:+}] is empty")

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if batch.num_candidates == 0:
            return batch
        column = batch.score_column(self.score_column)
        s = batch.scores(column)
        p = batch.lowest_positive(column)
        with np.errstate(invalid="ignore"):
            keep = (s >= p - self.low) & (s <= p + self.high)
        return batch.keep(keep)
