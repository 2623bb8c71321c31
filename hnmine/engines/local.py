"""The local engine: everything runs in this process, and the output is one file, written beside its target
and renamed onto it only when the run succeeds.

Its encode / search / score_pairs are the library code itself (``Encoder.encode``, the exact FAISS search the
Ray shards run, a cross-encoder's ``predict``): an engine adds no second copy of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hnmine.data import MiningData
from hnmine.engines.encoder import Encoder
from hnmine.engines.sharded_search import sharded_search
from hnmine.io.inputs import InputFiles
from hnmine.io.manifest import manifest_path
from hnmine.io.triplets import TripletFile
from hnmine.io.writers import MinedWriter, atomic_path, check_output_path
from hnmine.pipeline import Pipeline

if TYPE_CHECKING:
    from hnmine.stages.cross_encoder import CrossEncoderScorer


class LocalEngine:
    """Stages compute their results when they need them (``prepare`` / ``apply``), asking this engine to encode
    and score pairs in this process: nothing to do ahead of the run."""

    def check_output(self, path: Path, overwrite: bool, fmt: str) -> Path:
        return check_output_path(path, overwrite, (manifest_path(Path(path)),))

    def check_pipeline(self, pipeline: Pipeline) -> None:
        """Every stage runs here."""

    def read_inputs(self, inputs: InputFiles, warn: Callable[[str], None] | None = None) -> MiningData:
        return inputs.load(warn)

    def prepare_mine(self, pipeline: Pipeline, data: MiningData) -> None:
        """Nothing ahead of the chunks: each stage prepares itself."""

    def prepare_denoise(self, pipeline: Pipeline, triplets: TripletFile) -> None:
        """Nothing ahead of the chunks: the teacher scores each chunk's pairs as it comes."""

    def encode(self, encoder: Encoder, texts: list[str], prompt: str = "", label: str = "encode") -> np.ndarray:
        return encoder.encode(texts, prompt=prompt, label=label)

    def search(self, doc_emb: np.ndarray, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One exact FAISS index over the whole corpus: what each Ray shard runs, as one shard."""
        return sharded_search(doc_emb, query_emb, k, num_shards=1)

    def score_pairs(self, scorer: CrossEncoderScorer, pairs: list[tuple[str, str]]) -> np.ndarray:
        from hnmine.stages.cross_encoder import load_cross_encoder, predict

        return predict(load_cross_encoder(scorer.model, scorer.device, scorer.max_length), pairs, scorer.batch_size)

    @contextmanager
    def output(self, path: Path) -> Iterator[Path]:
        with atomic_path(path) as tmp:
            yield tmp

    def writer(self, tmp: Path, fmt: str, num_negatives: int | None, audit: bool,
               prompt: str | None = None) -> MinedWriter:
        return MinedWriter(tmp, fmt, num_negatives, audit, prompt)

    def write_table(self, tmp: Path, table: pa.Table) -> None:
        pq.write_table(table, tmp)

    def describe(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        """Nothing to release."""
