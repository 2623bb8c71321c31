"""The local engine: everything runs in this process, and the output is one file, written beside its target
and renamed onto it only when the run succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hnmine.data import MiningData
from hnmine.io.manifest import manifest_path
from hnmine.io.triplets import TripletFile
from hnmine.io.writers import MinedWriter, atomic_path, check_output_path
from hnmine.pipeline import Pipeline


class LocalEngine:
    """Stages compute their own results when asked (``prepare`` / ``apply``): nothing to do ahead of the run."""

    def check_output(self, path: Path, overwrite: bool, fmt: str) -> Path:
        return check_output_path(path, overwrite, (manifest_path(Path(path)),))

    def prepare_mine(self, pipeline: Pipeline, data: MiningData) -> None:
        """Nothing ahead of the chunks: each stage prepares itself."""

    def prepare_denoise(self, pipeline: Pipeline, triplets: TripletFile) -> None:
        """Nothing ahead of the chunks: the teacher scores each chunk's pairs as it comes."""

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
