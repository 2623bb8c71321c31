"""What a job asks of an engine, so it never asks which engine it has.

``LocalEngine`` runs everything in this process (stages encode, search and score on first use);
``RayEngine`` runs the encoding, search and cross-encoder scoring on a Ray cluster ahead of the chunk loop and
hands the results to the very same stage objects. Both publish the output through a temporary path.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from hnmine.data import MiningData
    from hnmine.io.triplets import TripletFile
    from hnmine.io.writers import MinedWriter
    from hnmine.pipeline import Pipeline


class Engine(Protocol):
    def check_output(self, path: Path, overwrite: bool, fmt: str) -> Path:
        """Refuse an output this engine cannot write, before any work."""
        ...

    def prepare_mine(self, pipeline: Pipeline, data: MiningData) -> None:
        """Compute ahead of the chunk loop (encode distinct texts, search, score pairs) what stages need."""
        ...

    def prepare_denoise(self, pipeline: Pipeline, triplets: TripletFile) -> None:
        """The same for ``hnmine denoise``: the teacher's pairs, ahead of the chunk loop."""
        ...

    def output(self, path: Path) -> AbstractContextManager[Path]:
        """Where to write while the run lasts; published onto ``path`` only if the block succeeds."""
        ...

    def writer(self, tmp: Path, fmt: str, num_negatives: int | None, audit: bool,
               prompt: str | None = None) -> MinedWriter:
        """The writer of the mined layouts, into ``tmp``."""
        ...

    def write_table(self, tmp: Path, table: pa.Table) -> None:
        """A finished table (denoise's kept rows), into ``tmp``."""
        ...

    def describe(self) -> dict[str, Any] | None:
        """The manifest's ``engine`` entry (None: nothing worth recording)."""
        ...

    def close(self) -> None:
        """Release what the engine started."""
        ...


def engine_for(name: str, address: str | None = None, workers: int | None = None,
               shards: int | None = None) -> Engine:
    """``--engine local|ray``. Ray is imported only when asked for, so it stays an optional dependency."""
    from hnmine.errors import InputError

    if name == "local":
        given = [n for n, v in (("--ray-address", address), ("--ray-workers", workers), ("--ray-shards", shards))
                 if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} needs --engine ray")
        from hnmine.engines.local import LocalEngine

        return LocalEngine()
    if name != "ray":
        raise InputError(f"--engine {name!r}: expected local or ray")
    from hnmine.engines.ray import RayEngine

    return RayEngine(address=address, workers=workers, shards=shards)
