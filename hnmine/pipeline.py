"""Composition: run stages in order over chunks of queries, and count what each one removed.

Chunking bounds memory by ``chunk_size x top_k`` candidate rows whatever the corpus size, and lets the
output be written as the run goes. The report is how a user sees *why* a query ended up short of
negatives instead of finding rows silently missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch, sort_candidates
from hnmine.data import MiningData
from hnmine.stage import Check, Stage
from hnmine.stages.selection import NegativeSelector

if TYPE_CHECKING:
    from hnmine.engines.base import Engine

# Queries per chunk, and its valid range, for every way a run is configured (CLI, pipeline file, Python).
CHUNK_SIZE = 256
CHUNK_SIZE_CHECK = Check(minimum=1, maximum=1 << 24)


@dataclass
class StageCount:
    kind: str
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows_out


@dataclass
class MiningReport:
    """Counts a run accumulates; the CLI prints them and writes them into the run manifest."""

    queries: int = 0
    queries_skipped: list[str] = field(default_factory=list)
    documents: int = 0
    positives: int = 0
    stages: list[StageCount] = field(default_factory=list)
    prepare_seconds: float = 0.0
    negatives_emitted: int = 0
    negatives_filled: int = 0
    target_negatives: int | None = None
    short_queries: list[str] = field(default_factory=list)
    queries_without_negatives: list[str] = field(default_factory=list)
    rows_written: int = 0
    rows_dropped_by_format: int = 0
    notes: dict[str, float | str] = field(default_factory=dict)

    def add_chunk(self, counts: dict) -> None:
        """Merge one chunk's counts (live, or read back from a checkpoint of an interrupted run)."""
        by_kind = {c.kind: c for c in self.stages}
        for kind, rows_in, rows_out, seconds in counts.get("stages", []):
            if kind not in by_kind:
                by_kind[kind] = StageCount(kind)
                self.stages.append(by_kind[kind])
            count = by_kind[kind]
            count.rows_in += rows_in
            count.rows_out += rows_out
            count.seconds += seconds
        for label, value in counts.get("counters", {}).items():  # stage counts that outlive a resumed chunk
            self.notes[label] = self.notes.get(label, 0) + value
        self.negatives_emitted += counts.get("negatives", 0) + counts.get("filled", 0)
        self.negatives_filled += counts.get("filled", 0)
        self.queries_without_negatives.extend(counts.get("without", []))
        self.short_queries.extend(counts.get("short", []))

    def as_dict(self) -> dict:
        return {
            "queries": self.queries,
            "queries_skipped_no_positive": self.queries_skipped,
            "documents": self.documents,
            "positives": self.positives,
            "stages": [{"kind": s.kind, "rows_in": s.rows_in, "rows_out": s.rows_out, "dropped": s.dropped,
                        "seconds": round(s.seconds, 3)} for s in self.stages],
            "prepare_seconds": round(self.prepare_seconds, 3),
            "negatives_emitted": self.negatives_emitted,
            "negatives_filled_at_random": self.negatives_filled,
            "target_negatives_per_query": self.target_negatives,
            "queries_short_of_negatives": self.short_queries,
            "queries_without_negatives": self.queries_without_negatives,
            "rows_written": self.rows_written,
            "rows_dropped_by_format": self.rows_dropped_by_format,
            "notes": self.notes,
        }


class Pipeline:
    """An ordered list of stages; the first is normally a retriever, the last a ``NegativeSelector``."""

    def __init__(self, stages: list[Stage], chunk_size: int = CHUNK_SIZE) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        CHUNK_SIZE_CHECK("chunk_size", chunk_size, int)
        for stage in stages:
            if not isinstance(stage, Stage):
                raise TypeError(f"{stage!r} is not a stage: subclass hnmine.stage.Stage (a dataclass with kind, "
                                "phase and apply)")
        self.stages = list(stages)
        self.chunk_size = chunk_size
        self.report = MiningReport()

    @property
    def target_negatives(self) -> int | None:
        selectors = [s for s in self.stages if isinstance(s, NegativeSelector)]
        return selectors[-1].num_negatives if selectors else None

    def use_engine(self, engine: Engine) -> None:
        """Give every stage the engine its encoding, search and pair scoring run on (``Stage.use_backend``)."""
        for stage in self.stages:
            stage.use_backend(engine)

    def prepare(self, data: MiningData) -> None:
        start = time.perf_counter()
        for stage in self.stages:
            stage.prepare(data)
        self.report.prepare_seconds += time.perf_counter() - start

    def run_batch(self, batch: CandidateBatch) -> CandidateBatch:
        return self.run_candidates(batch)[0]

    def collect_notes(self) -> None:
        """Stage-level counts that are not rows (truncated texts, pairs scored), for summary and manifest."""
        for stage in self.stages:
            for nested in [stage, *stage.parts()]:
                self.report.notes.update(nested.notes())

    def _run_stages(self, batch: CandidateBatch) -> tuple[CandidateBatch, dict]:
        stage_counts = []
        counters: dict[str, int] = {}
        for i, stage in enumerate(self.stages):
            start = time.perf_counter()
            rows_in = batch.num_candidates
            batch = stage.apply(batch)
            counters.update(stage.take_chunk_counters())
            # A retriever creates candidates; count what it produced, not zero-in.
            stage_counts.append([f"{i}:{stage.kind}", rows_in if i else batch.num_candidates, batch.num_candidates,
                                 time.perf_counter() - start])
        counts: dict = {"stages": stage_counts}
        if counters:
            counts["counters"] = counters
        return batch.with_candidates(sort_candidates(batch.candidates)), counts

    def start(self, data: MiningData) -> None:
        """Record what the run is over; stages prepare lazily, so a resumed run that needs no chunk skips it."""
        self.report.queries = data.num_queries
        self.report.queries_skipped = list(data.skipped_queries)
        self.report.documents = data.num_docs
        self.report.positives = int(data.positive_counts.sum())
        self.report.target_negatives = self.target_negatives

    def chunks(self, data: MiningData) -> list[np.ndarray]:
        return [np.arange(s, min(s + self.chunk_size, data.num_queries), dtype=np.int32)
                for s in range(0, data.num_queries, self.chunk_size)]

    def run_chunk(self, data: MiningData, queries: np.ndarray) -> tuple[CandidateBatch, dict]:
        """One chunk through every stage; returns the batch and its counts (already added to the report)."""
        batch, counts = self._run_stages(CandidateBatch.start(data, queries))
        counts.update(self._outcome(batch))
        self.report.add_chunk(counts)
        return batch, counts

    def run_candidates(self, batch: CandidateBatch) -> tuple[CandidateBatch, dict]:
        """Given candidates (a triplet file being denoised) through every stage, counts added to the report.

        Such a pass filters given negatives towards no per-query target, so it counts no short or empty queries.
        """
        batch, counts = self._run_stages(batch)
        self.report.add_chunk(counts)
        return batch, counts

    def run(self, data: MiningData, on_chunk: Callable[[int], None] | None = None) -> Iterator[CandidateBatch]:
        """Yield one finished batch per chunk of queries, in query order (the job layer's chunk loop)."""
        from hnmine.jobs.chunks import run_chunks

        self.start(data)
        self.prepare(data)
        for batch, _ in run_chunks(self, data, on_chunk=on_chunk):
            yield batch

    def triplets(self, data: MiningData, audit: bool = True) -> pa.Table:
        """The whole run as one triplet table, for mining inside a training script."""
        from hnmine.io.writers import triplet_table

        tables = [triplet_table(batch, audit) for batch in self.run(data)]
        return pa.concat_tables(tables)

    def _outcome(self, batch: CandidateBatch) -> dict:
        """Short queries are judged on mined negatives only: a random fill must not hide them."""
        q = batch.candidates.column("query_idx").to_numpy()
        filled = 0
        if "filled" in batch.candidates.column_names:
            is_filled = batch.candidates.column("filled").to_numpy(zero_copy_only=False).astype(bool)
            filled = int(is_filled.sum())
            q = q[~is_filled]
        per_query = np.bincount(q - batch.queries[0], minlength=len(batch.queries)) if len(q) else (
            np.zeros(len(batch.queries), dtype=np.int64))
        target = self.target_negatives
        ids = batch.data.query_ids
        pairs = list(zip(batch.queries.tolist(), per_query.tolist()))
        return {
            "negatives": int(per_query.sum()),
            "without": [ids[qi] for qi, n in pairs if n == 0],
            "short": [ids[qi] for qi, n in pairs if target is not None and n < target],
            "filled": filled,
        }
