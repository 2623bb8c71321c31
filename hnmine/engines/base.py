"""What a job asks of an engine, so it never asks which engine it has.

An engine is where the heavy work of a run happens: encoding distinct texts, exact search, cross-encoder
scoring of text pairs, and writing the output. ``LocalEngine`` does it in this process; ``RayEngine`` does it on
a Ray cluster, most of it ahead of the chunk loop (``prepare_mine``), and answers the stages from those
results. The job gives the engine to every stage (``Pipeline.use_engine`` -> ``Stage.use_backend``), and a
stage that encodes or scores pairs asks ``stage.engine`` to do it, so the same stage objects run on either
engine. Both engines publish the output through a temporary path.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from hnmine.data import MiningData
    from hnmine.engines.encoder import Encoder
    from hnmine.io.inputs import InputFiles
    from hnmine.io.triplets import TripletFile
    from hnmine.io.writers import MinedWriter
    from hnmine.pipeline import Pipeline
    from hnmine.stages.cross_encoder import CrossEncoderScorer


class Engine(Protocol):
    def check_output(self, path: Path, overwrite: bool, fmt: str) -> Path:
        """Refuse an output this engine cannot write, before any work."""
        ...

    def check_pipeline(self, pipeline: Pipeline) -> None:
        """Refuse, in one line, what this engine cannot run, before any data is read or any work started."""
        ...

    def read_inputs(self, inputs: InputFiles, warn: Callable[[str], None] | None = None) -> MiningData:
        """The mining input (the Ray engine with ``--ray-corpus workers`` leaves the corpus on its workers)."""
        ...

    def prepare_mine(self, pipeline: Pipeline, data: MiningData) -> None:
        """Compute ahead of the chunk loop (encode distinct texts, search, score pairs) what stages need.

        Called after the pipeline's stages were given this engine (``Pipeline.use_engine``)."""
        ...

    def prepare_denoise(self, pipeline: Pipeline, triplets: TripletFile) -> None:
        """The same for ``hnmine denoise``: the teacher's pairs, ahead of the chunk loop."""
        ...

    def encode(self, encoder: Encoder, texts: list[str], prompt: str = "", label: str = "encode") -> np.ndarray:
        """Unit embeddings of ``texts`` (one row per text) by ``encoder``'s model and settings.

        Each distinct text is embedded once, through ``encoder``'s embedding cache (the same key on every
        engine); ``encoder.truncated`` counts the texts the model truncated. ``label`` names the progress step.
        """
        ...

    def search(self, doc_emb: np.ndarray, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product top-``k`` of every query over the corpus: ``(doc_idx, scores)``, best first,
        ``min(k, corpus size)`` wide; equal scores in the list are in document order. Which of several equal
        scores at the cut is kept is FAISS's choice: a caller that needs it decided asks for a few more
        (``DenseRetriever.exact_topk``)."""
        ...

    def score_pairs(self, scorer: CrossEncoderScorer, pairs: list[tuple[str, str]]) -> np.ndarray:
        """``scorer``'s cross-encoder score (float64) of each (query text, passage text) pair, in order."""
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
               shards: int | None = None, corpus: str | None = None) -> Engine:
    """``--engine local|ray``. Ray is imported only when asked for, so it stays an optional dependency."""
    from hnmine.errors import InputError

    if name == "local":
        given = [n for n, v in (("--ray-address", address), ("--ray-workers", workers), ("--ray-shards", shards),
                                ("--ray-corpus", corpus)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} needs --engine ray")
        from hnmine.engines.local import LocalEngine

        return LocalEngine()
    if name != "ray":
        raise InputError(f"--engine {name!r}: expected local or ray")
    from hnmine.engines.ray import RayEngine

    return RayEngine(address=address, workers=workers, shards=shards, corpus=corpus or "driver")
