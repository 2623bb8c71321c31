"""Difficulty tiers: label each candidate hard, medium or easy instead of choosing one difficulty.

Curriculum training starts on easy negatives and moves to hard ones, and ablations compare tiers; both
need the tier written beside each negative (or one file per tier), not a second mining run per
difficulty. This stage only labels: it drops nothing, so it can sit anywhere after the stage that
produces the column it reads.

* ``by="rank"``: ``rank <= hard`` is hard, ``rank <= medium`` is medium, the rest easy. ``hnmine mine`` defaults
  the bounds to thirds of the ranks the selection draws from (``window_thirds``): the window (range_min, range_max]
  for random and SimANS sampling (11-23 / 24-37 / 38-50 for (10, 50]), its first num_negatives ranks for top
  sampling (11-12 / 13 / 14+ for the default 5 of (10, 50]). Fixed bounds such as 10 and 30 put every negative
  of the default run in one tier, and a constant column is no curriculum. A stage built without bounds (Python
  API) uses 10 and 30.
* ``by="gap"``: with ``gap = p - s`` (``p``: the query's lowest positive score, ``s``: the candidate's),
  ``gap <= hard`` is hard, ``gap <= medium`` is medium, the rest easy (defaults 0.1, 0.2). A candidate
  scored above the positive has a negative gap and is hard. Where either score is missing (NaN) the tier
  is null: a guess would mislabel it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hnmine.candidates import CandidateBatch, set_column
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage, option

TIER_MODES = ("rank", "gap")
TIERS = ("hard", "medium", "easy")
UNTIERED = "untiered"
DEFAULT_BOUNDS = {"rank": (10, 30), "gap": (0.1, 0.2)}


def window_thirds(range_min: int, range_max: int) -> tuple[int, int]:
    """Rank bounds that cut the window ``(range_min, range_max]`` into three tiers of (nearly) equal width."""
    width = range_max - range_min
    hard = range_min + round(width / 3)
    return hard, max(hard + 1, range_min + round(2 * width / 3))


def tier_labels(values: np.ndarray, hard: float, medium: float) -> list[str | None]:
    """``values <= hard`` -> hard, ``<= medium`` -> medium, else easy; NaN -> None. Pure, for exact tests."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.where(values <= hard, 0, np.where(values <= medium, 1, 2))
    return [None if np.isnan(v) else TIERS[i] for v, i in zip(values.tolist(), idx.tolist())]


@dataclass
class DifficultyTiers(Stage):
    """Adds a string column ``tier`` to the candidates; ``None`` bounds take the defaults of ``by``."""

    kind: ClassVar[str] = "tiers"
    summary_label: ClassVar[str] = "(tier labels added)"
    phase: ClassVar[Phase] = Phase.LABEL
    by: str = option("rank", flag="--tiers", choices=TIER_MODES)
    hard: float | None = option(None, flag="--tier-hard")
    medium: float | None = option(None, flag="--tier-medium")
    score_column: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        default_hard, default_medium = DEFAULT_BOUNDS[self.by]
        if self.hard is None:
            self.hard = default_hard
        if self.medium is None:
            self.medium = default_medium
        if not self.hard < self.medium:
            raise InputError(f"tier bounds: hard ({self.hard}) must be smaller than medium ({self.medium})")

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        table = batch.candidates
        assert self.hard is not None and self.medium is not None
        if self.by == "rank":
            values = table.column("rank").to_numpy().astype(np.float64)
        else:
            column = batch.score_column(self.score_column)
            values = batch.lowest_positive(column) - batch.scores(column) if table.num_rows else np.zeros(0)
        labels = tier_labels(values, self.hard, self.medium)
        return batch.with_candidates(set_column(table, "tier", labels, pa.string()))


def split_by_tier(table: pa.Table, column: str = "tier") -> dict[str, pa.Table]:
    """One table per tier, rows in their original order, for writing one file per tier.

    Always holds ``hard``, ``medium`` and ``easy`` (empty where no row has that tier), so a run always
    produces the same set of files; rows whose tier is null come under ``untiered``, never dropped.
    """
    if column not in table.column_names:
        raise InputError(f"no '{column}' column to split by; add a 'tiers' stage to the pipeline")
    values = table.column(column)
    present = [v for v in pc.unique(values).to_pylist() if v is not None]
    out = {name: table.filter(pc.fill_null(pc.equal(values, name), False)) for name in TIERS}
    for name in sorted(set(present) - set(TIERS)):
        out[name] = table.filter(pc.fill_null(pc.equal(values, name), False))
    nulls = pc.is_null(values)
    if pc.any(nulls).as_py():
        out[UNTIERED] = table.filter(nulls)
    return out
