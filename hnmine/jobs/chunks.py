"""The one chunk loop: every run (mine, denoise, ``Pipeline.run``, the Ray engine's pre-pass) goes through it.

Chunks bound memory (``chunk_size x top_k`` candidate rows whatever the corpus size) and are the unit of
resuming: a chunk an earlier run finished is read back from the checkpoint instead of being mined again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hnmine.candidates import CandidateBatch
    from hnmine.data import MiningData
    from hnmine.jobs.checkpoint import ChunkCheckpoint
    from hnmine.pipeline import Pipeline

Format = Callable[["CandidateBatch"], tuple[Any, int]]


def as_is(batch: CandidateBatch) -> tuple[CandidateBatch, int]:
    """The finished batch itself, nothing dropped (for callers that want batches, not a written layout)."""
    return batch, 0


def run_chunks(pipeline: Pipeline, data: MiningData, format: Format = as_is, *,
               start: Callable[[np.ndarray], CandidateBatch] | None = None,
               checkpoint: ChunkCheckpoint | None = None,
               on_chunk: Callable[[int], None] | None = None) -> Iterator[tuple[Any, int]]:
    """Yield ``format(batch)`` = (payload, rows dropped) for each chunk of queries, in query order.

    ``start`` builds a chunk's first batch (``hnmine denoise`` starts from a file's candidates; by default the
    first stage retrieves them). A chunk ``checkpoint`` holds is read back, with its counts, instead of run; a
    chunk that is run is saved to it once formatted.
    """
    for i, queries in enumerate(pipeline.chunks(data)):
        done = checkpoint.load(i) if checkpoint is not None else None
        if done is not None:
            payload, dropped, counts = done
            pipeline.report.add_chunk(counts)
        else:
            batch, counts = pipeline.run_chunk(data, queries) if start is None else \
                pipeline.run_candidates(start(queries))
            payload, dropped = format(batch)
            if checkpoint is not None:
                checkpoint.save(i, payload, dropped, counts)
        yield payload, dropped
        if on_chunk is not None:
            on_chunk(len(queries))
