"""The denoising job: an existing triplet file -> its rows whose negative a teacher does not take for a
positive, with the teacher's scores, and a manifest. ``hnmine denoise`` is a thin layer over :func:`denoise`.

Like mining, it holds the output's lock for the whole run and checkpoints each chunk's teacher scores
(``hnmine.jobs.checkpoint``), so an interrupted run continues where it stopped and writes the same bytes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hnmine import __version__, progress
from hnmine.engines.base import Engine
from hnmine.errors import InputError
from hnmine.io.manifest import build_manifest, manifest_path
from hnmine.io.triplets import TeacherScores, TripletColumns, TripletFile, candidate_batch, read_triplets
from hnmine.io.writers import write_json_atomic
from hnmine.jobs.checkpoint import ChunkCheckpoint, OutputLock, run_fingerprint
from hnmine.jobs.chunks import run_chunks
from hnmine.jobs.mine import describe_engine
from hnmine.pipeline import CHUNK_SIZE, MiningReport, Pipeline
from hnmine.recipe import build_denoiser
from hnmine.stages.cross_encoder import CrossEncoderScorer
from hnmine.stages.exclusion import PositiveExcluder


@dataclass
class DenoiseJob:
    """Which teacher, which thresholds (on the teacher's scale), and where the kept rows go."""

    input: Path
    output: Path
    teacher: str  # cross-encoder:NAME or bi-encoder:NAME
    max_score: float | None = None
    margin: float | None = None
    max_ratio: float | None = None
    max_z: float | None = None
    spread_margin: float | None = None
    min_score: float | None = None
    columns: TripletColumns = field(default_factory=TripletColumns)
    batch_size: int = CrossEncoderScorer.batch_size
    max_length: int | None = None
    device: str | None = None
    dtype: str = "auto"
    chunk_size: int = CHUNK_SIZE
    overwrite: bool = False
    resume: bool = True

    def manifest_options(self, score_column: str) -> dict[str, Any]:
        return {"scorer": self.teacher, "score_column": score_column, "max_score": self.max_score,
                "min_score": self.min_score, "margin": self.margin, "max_ratio": self.max_ratio,
                "max_z": self.max_z, "spread_margin": self.spread_margin, "batch_size": self.batch_size,
                "max_length": self.max_length}


@dataclass
class DenoiseResult:
    output: Path
    report: MiningReport
    manifest: dict[str, Any]
    rows_in: int
    rows_kept: int
    pairs_scored: int | None


def teacher_spec(cross_encoder: str | None, scorer: str | None) -> str:
    """``--cross-encoder NAME`` is shorthand for ``--scorer cross-encoder:NAME``; exactly one is needed."""
    if (cross_encoder is None) == (scorer is None):
        raise InputError("give exactly one of --cross-encoder NAME and --scorer KIND:NAME")
    return scorer if scorer is not None else f"cross-encoder:{cross_encoder}"


def denoise(job: DenoiseJob, engine: Engine | None = None) -> DenoiseResult:
    """Score each distinct (query, passage) pair of ``job.input`` once and write the rows the rules keep."""
    from hnmine.engines.local import LocalEngine

    engine = engine or LocalEngine()
    try:
        out = engine.check_output(job.output, job.overwrite, "triplet")
        with OutputLock(out):  # a second run on this output stops here, in one line
            return _denoise(job, engine, out)
    finally:  # also when the run fails: nothing a Ray engine started outlives it
        engine.close()


def triplets_digest(triplets: TripletFile) -> str:
    """The file's rows as (query, positive, negative) indexes: with the data's digest, every candidate the run
    sees (the data alone does not say which negatives each query brings)."""
    h = hashlib.sha256(b"hnmine-triplets-v1")
    for rows in (triplets.row_query, triplets.row_positive, triplets.row_negative):
        h.update(rows.astype("<i8").tobytes())
    return h.hexdigest()


def _denoise(job: DenoiseJob, engine: Engine, out: Path) -> DenoiseResult:
    started = time.time()
    denoiser = build_denoiser(job.teacher, job.max_score, job.margin, job.max_ratio, batch_size=job.batch_size,
                              device=job.device, max_length=job.max_length, dtype=job.dtype, max_z=job.max_z,
                              spread_margin=job.spread_margin, min_score=job.min_score)
    pipeline = Pipeline([PositiveExcluder(), denoiser], chunk_size=job.chunk_size)
    engine.check_pipeline(pipeline)  # what the engine cannot run is refused before the file is read
    with progress.phase("read") as step:
        triplets = read_triplets(job.input, job.columns)
        step.set_note(f"{triplets.table.num_rows:,} rows, {triplets.data.num_queries:,} queries")
    data = triplets.data
    pipeline.use_engine(engine)  # the teacher encodes or scores pairs on it
    engine.prepare_denoise(pipeline, triplets)  # a Ray engine attaches to its cluster here
    report = pipeline.report
    report.queries, report.documents = data.num_queries, data.num_docs
    report.positives = int(data.positive_counts.sum())
    pipeline.prepare(data)  # a bi-encoder teacher encodes here, as phases of its own
    checkpoint = ChunkCheckpoint(out, run_fingerprint(data, pipeline, {
        "version": __version__, "command": "denoise", "triplets": triplets_digest(triplets),
        "score_column": denoiser.score_column}), enabled=job.resume)
    scores = TeacherScores(denoiser.score_column)
    with progress.phase("denoise", total=data.num_queries, unit="queries") as step:
        for chunk_scores, _ in run_chunks(pipeline, data, scores.chunk_scores, start=partial(candidate_batch, triplets),
                                          checkpoint=checkpoint, on_chunk=step.advance):
            scores.add(chunk_scores)
    table, kept_pairs = scores.kept_rows(triplets)
    writing = progress.begin("write", unit="rows")
    with engine.output(out) as tmp:
        engine.write_table(tmp, table)
    checkpoint.clear()
    report.rows_written = table.num_rows
    report.negatives_emitted = kept_pairs
    manifest = build_manifest("denoise", pipeline, report, job.manifest_options(denoiser.score_column),
                              {"triplets": str(job.input)}, out, started)
    manifest["rows_in"] = triplets.table.num_rows
    pairs_scored = denoiser.pairs_scored
    if pairs_scored is not None:
        manifest["cross_encoder_pairs_scored"] = pairs_scored
    describe_engine(engine, manifest)
    write_json_atomic(manifest_path(out), manifest)
    writing.advance(table.num_rows)
    writing.finish()
    return DenoiseResult(out, report, manifest, triplets.table.num_rows, table.num_rows, pairs_scored)
