"""Measuring the false-negative catch rate: hide known positives, then see which stages let them through.

A pipeline's denoising can only be judged against false negatives whose truth is known. Hiding a fraction
of the positives of queries that have several makes such cases: to the miner they are ordinary corpus
documents, so every one that survives to the output is a false negative the pipeline failed to catch.
``HiddenPositiveProbe`` stages placed after retrieval, after the rank window and at the end count how many
are still present at each point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hnmine.candidates import CandidateBatch
from hnmine.data import MiningData
from hnmine.stage import Stage


def hide_positives(data: MiningData, fraction: float, seed: int = 0) -> tuple[MiningData, set[tuple[int, int]]]:
    """Remove ``fraction`` of the positives of each query with at least two (at least one stays).

    Returns the reduced data and the hidden (query index, doc index) pairs.
    """
    if not 0 < fraction < 1:
        from hnmine.errors import InputError

        raise InputError(f"--hide-fraction must be in (0, 1), got {fraction}")
    pairs, hidden = [], set()
    for q in range(data.num_queries):
        positives = data.positives_of(q).tolist()
        n_hide = min(round(fraction * len(positives)), len(positives) - 1) if len(positives) > 1 else 0
        rng = np.random.default_rng([seed, q])
        hide = set(rng.choice(positives, size=n_hide, replace=False).tolist()) if n_hide else set()
        hidden.update((q, d) for d in hide)
        pairs.extend((q, d) for d in positives if d not in hide)
    reduced = MiningData.from_pairs(data.query_ids, data.query_texts, data.doc_ids, data.doc_texts, pairs,
                                    data.source)
    reduced.skipped_queries = list(data.skipped_queries)
    return reduced, hidden


@dataclass
class HiddenPositiveProbe(Stage, register=False):
    """Counts hidden positives among the candidates at this point of the pipeline; changes nothing."""

    kind: ClassVar[str] = "hidden_positive_probe"
    label: str = "probe"
    hidden: set = field(default_factory=set, repr=False, metadata={"config": False})
    present: int = field(default=0, init=False)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if self.hidden and batch.num_candidates:
            q = batch.candidates.column("query_idx").to_pylist()
            d = batch.candidates.column("doc_idx").to_pylist()
            self.present += sum((a, b) in self.hidden for a, b in set(zip(q, d)))
        return batch

    def notes(self) -> dict[str, int]:
        return {f"hidden positives present {self.label}": self.present}


def with_probes(stages: list, hidden: set[tuple[int, int]]) -> list:
    """Probe after the retriever, after each filtering stage, and at the end of the pipeline."""
    out = []
    for i, stage in enumerate(stages):
        out.append(stage)
        out.append(HiddenPositiveProbe(label=f"after {i}:{stage.kind}", hidden=hidden))
    return out
