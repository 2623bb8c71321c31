"""Rank window: keep candidates ranked in (range_min, range_max].

Skipping the very top ranks is the oldest false-negative guard: the closest non-positive documents are the
ones most likely to be unlabelled positives. Ranks count non-positive candidates only (positives are
excluded and the rest re-ranked first), so ``range_min=10`` skips ten real candidates, not ten minus
however many positives happened to rank high.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow.compute as pc

from hnmine.candidates import CandidateBatch
from hnmine.errors import MAX_RANK, InputError
from hnmine.stage import Phase, Stage, option


@dataclass
class RankWindow(Stage):
    kind: ClassVar[str] = "rank_window"
    summary_label: ClassVar[str] = "outside the rank window"
    phase: ClassVar[Phase] = Phase.FILTER
    range_min: int = option(0, minimum=0, maximum=MAX_RANK)
    range_max: int | None = option(None, minimum=1, maximum=MAX_RANK)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.range_max is not None and self.range_max <= self.range_min:
            raise InputError(
                f"--range-min ({self.range_min}) must be smaller than --range-max ({self.range_max})"
            )

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        rank = batch.candidates.column("rank")
        mask = pc.greater(rank, self.range_min)
        if self.range_max is not None:
            mask = pc.and_(mask, pc.less_equal(rank, self.range_max))
        return batch.keep(mask)
