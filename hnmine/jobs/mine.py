"""The mining job: inputs -> pipeline -> one output (file, or a directory of parts), resumable, with its manifest.

This is the one complete way to run a mining pipeline: ``hnmine mine`` parses flags into a :class:`MineJob`
and renders what :func:`mine` returns; a Python caller builds the same job and gets the same bytes. The job owns
the order that makes a run safe: every check that can fail runs before the expensive work, one run holds the
output's lock, chunks are checkpointed (``hnmine.jobs.checkpoint``) so an interrupted run continues where it
stopped, and the output is published with its manifest, never without.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hnmine import __version__, progress
from hnmine.config import load_pipeline
from hnmine.data import MiningData
from hnmine.engines.base import Engine
from hnmine.errors import InputError
from hnmine.io.inputs import InputFiles
from hnmine.io.manifest import build_manifest, input_entry, manifest_path
from hnmine.io.writers import MinedWriter, atomic_path, check_output_path, deferred_signals, write_json_atomic
from hnmine.jobs.checkpoint import ChunkCheckpoint, OutputLock, run_fingerprint
from hnmine.jobs.chunks import run_chunks
from hnmine.jobs.messages import Messages, PythonMessages
from hnmine.pipeline import MiningReport, Pipeline
from hnmine.recipe import MineOptions, build_pipeline
from hnmine.stage import stage_options
from hnmine.stages.ambiguous import parse_zone
from hnmine.stages.cross_encoder import CrossEncoderDenoiser
from hnmine.stages.hidden_positives import hide_positives, with_probes


@dataclass
class MineJob:
    """A mining run: where its pipeline comes from, where its output goes, and how it is written.

    The pipeline is, by precedence, ``pipeline`` (stages built in Python), ``config`` (a pipeline TOML), or
    ``options`` (the flat options of ``hnmine mine``; ``options.zone`` may be given as ``"LOW:HIGH"``).
    ``config_conflicts`` names options the caller set that a ``config`` would silently replace: an error.
    """

    output: Path | None
    options: MineOptions = field(default_factory=MineOptions)
    config: Path | None = None
    pipeline: Pipeline | None = None
    format: str = "triplet"
    prompt: str | None = None
    audit_columns: bool = True
    overwrite: bool = False
    resume: bool = True
    split_tiers: bool = False
    config_conflicts: tuple[str, ...] = ()

    def build(self, max_positives: int = 10) -> Pipeline:
        if self.pipeline is not None:
            return self.pipeline
        if self.config is not None:
            if self.config_conflicts:
                raise InputError(f"--config {self.config} sets the whole pipeline, so "
                                 f"{', '.join(self.config_conflicts)} would be ignored; set them in the file "
                                 "(or drop --config)")
            return load_pipeline(self.config)
        if isinstance(self.options.zone, str):
            self.options.zone = parse_zone(self.options.zone)
        return build_pipeline(self.options, max_positives)

    def check(self, engine: Engine) -> Path:
        """Everything about the output that can be refused before any data is read."""
        if self.output is None:
            raise InputError("missing --output")
        out = engine.check_output(self.output, self.overwrite, self.format)
        if self.split_tiers and self.format == "triplet":
            for target in tier_paths(out):
                check_output_path(target, self.overwrite)
        if self.options.include_positives and self.format != "n-tuple":
            raise InputError("--include-positives needs --format n-tuple: in any other layout a positive would "
                             "be labelled a negative")
        if self.prompt is not None and self.format != "flagembedding":
            raise InputError("--prompt is FlagEmbedding's per-record field; it needs --format flagembedding")
        return out

    def manifest_options(self) -> dict[str, Any]:
        options = {k: v for k, v in vars(self.options).items() if k != "dense"}
        options["dense"] = stage_options(self.options.dense)
        options.update(format=self.format, audit_columns=self.audit_columns,
                       config=str(self.config) if self.config else None, prompt=self.prompt)
        return options


@dataclass
class MineResult:
    output: Path
    report: MiningReport
    manifest: dict[str, Any]
    tier_files: list[Path] = field(default_factory=list)
    resumed_chunks: int = 0


def mine(job: MineJob, inputs: InputFiles | MiningData, engine: Engine | None = None,
         messages: Messages | None = None) -> MineResult:
    """Run ``job`` over ``inputs`` (files, or data already in memory) and publish its output and manifest.

    Bad input raises ``InputError`` before any expensive work and leaves no output behind.
    """
    from hnmine.engines.local import LocalEngine

    engine = engine or LocalEngine()
    try:
        with contextlib.ExitStack() as held:  # the output's lock, held until the run has published or failed
            return _mine(job, inputs, engine, messages or PythonMessages(), held)
    finally:  # also when the run fails: a Ray engine's actors (the corpus shards) must not outlive it
        engine.close()


def read_data(inputs: InputFiles | MiningData, messages: Messages, engine: Engine | None = None) -> MiningData:
    if isinstance(inputs, MiningData):
        return inputs
    with progress.phase("read") as step:
        data = engine.read_inputs(inputs, messages.warn) if engine is not None else inputs.load(messages.warn)
        step.set_note(f"{data.num_queries:,} queries, {data.num_docs:,} documents")
    return data


def _mine(job: MineJob, inputs: InputFiles | MiningData, engine: Engine, messages: Messages,
          held: contextlib.ExitStack) -> MineResult:
    started = time.time()
    out = job.check(engine)
    held.enter_context(OutputLock(out))  # a second run on this output stops here, in one line
    # Options, and what the engine cannot run, are refused before any data is read (or a Ray cluster started)
    engine.check_pipeline(job.build())
    data = read_data(inputs, messages, engine)
    pipeline = job.build(int(data.positive_counts.max()))
    hide_fraction = job.options.hide_fraction
    if hide_fraction is not None:
        data, hidden = hide_positives(data, hide_fraction, job.options.seed)
        pipeline.stages = with_probes(pipeline.stages, hidden)
        messages.notice(f"hid {len(hidden):,} positives of queries with several (--hide-fraction {hide_fraction})")
    for stage in pipeline.stages:
        stage.check_data(data)  # a stage's own input files against the data, before any encoding
    n = pipeline.target_negatives
    if n is not None and data.num_docs - 1 < n:
        raise InputError(f"the corpus has {data.num_docs} documents: too few to mine {n} negatives per query")
    pipeline.use_engine(engine)  # every stage encodes, searches and scores pairs on it
    engine.prepare_mine(pipeline, data)  # a Ray cluster encodes, searches and cross-encodes here
    inputs_read = {k: input_entry(v) for k, v in data.source.items()}  # hashed now, as read, for the manifest
    checkpoint = ChunkCheckpoint(out, run_fingerprint(data, pipeline, {
        "version": __version__, "inputs": inputs_read, "format": job.format, "audit": job.audit_columns,
        "prompt": job.prompt,
    }), enabled=job.resume and hide_fraction is None)
    publishing = held.enter_context(contextlib.ExitStack())
    writer, writing = _write_chunks(job, pipeline, data, engine, checkpoint, out, publishing)
    checkpoint.clear()
    pipeline.collect_notes()
    result = MineResult(out, pipeline.report, {}, resumed_chunks=checkpoint.resumed_chunks)
    result.tier_files = _split_tiers(job, out, messages)
    if checkpoint.resumed_chunks:
        messages.info(f"resumed: {checkpoint.resumed_chunks} finished chunks were read back from the checkpoint")
    report = pipeline.report
    report.rows_written, report.rows_dropped_by_format = writer.rows_written, writer.rows_dropped
    result.manifest = _manifest(job, pipeline, report, inputs_read, out, started, engine)
    write_json_atomic(manifest_path(out), result.manifest)
    publishing.close()
    writing.advance(report.rows_written)
    writing.finish()
    return result


def _write_chunks(job: MineJob, pipeline: Pipeline, data: MiningData, engine: Engine, checkpoint: ChunkCheckpoint,
                  out: Path, publishing: contextlib.ExitStack) -> tuple[MinedWriter, progress.Phase]:
    """The chunk loop into the engine's temporary output, published (renamed) when every chunk is written."""
    pipeline.start(data)
    if not all(checkpoint.finished(i) for i in range(len(pipeline.chunks(data)))):
        pipeline.prepare(data)  # encoding and indexes are phases of their own, before mining starts
    with engine.output(out) as tmp:
        writer = engine.writer(tmp, job.format, pipeline.target_negatives, job.audit_columns, job.prompt)
        with writer:
            with progress.phase("mine", total=data.num_queries, unit="queries") as step:
                for payload, dropped in run_chunks(pipeline, data, writer.format, checkpoint=checkpoint,
                                                   on_chunk=step.advance):
                    writer.write_formatted(payload, dropped)
            writing = progress.begin("write", unit="rows")  # the writer's close writes what it still holds
        # From the rename to the manifest, a signal waits: the output is never left without its manifest.
        publishing.enter_context(deferred_signals(f"{out} and its manifest were written and are complete"))
    return writer, writing


def _split_tiers(job: MineJob, out: Path, messages: Messages) -> list[Path]:
    if not job.split_tiers:
        return []
    if job.format != "triplet":
        messages.warn("--split-tiers needs --format triplet; no tier files written")
        return []
    written = write_tier_files(out, overwrite=job.overwrite)
    messages.info(f"wrote {', '.join(p.name for p in written)}")
    return written


def _manifest(job: MineJob, pipeline: Pipeline, report: MiningReport, inputs: dict[str, Any], out: Path,
              started: float, engine: Engine) -> dict[str, Any]:
    manifest = build_manifest("mine", pipeline, report, job.manifest_options(), inputs, out, started)
    if job.format == "flagembedding":
        manifest["flagembedding"] = flagembedding_manifest(pipeline, report.rows_dropped_by_format)
    if job.format == "tevatron":
        manifest["tevatron"] = {"queries_without_negatives_not_written": report.rows_dropped_by_format}
    manifest["cross_encoder_pairs_scored"] = sum(
        s.pairs_scored for s in pipeline.stages if isinstance(s, CrossEncoderDenoiser))
    describe_engine(engine, manifest)
    return manifest


def describe_engine(engine: Engine, manifest: dict[str, Any]) -> None:
    """The manifest's ``engine`` entry (Ray only). The job releases the engine when the run ends, however it
    ends."""
    described = engine.describe()
    if described is not None:
        manifest["engine"] = described


def flagembedding_manifest(pipeline: Pipeline, unusable: int) -> dict[str, Any]:
    """What a FlagEmbedding user must know: the scale of pos_scores/neg_scores, and the queries left out."""
    retriever = pipeline.stages[0].kind if pipeline.stages else "unknown"
    if any(isinstance(s, CrossEncoderDenoiser) for s in pipeline.stages):
        scale = "cross-encoder score (the --cross-encoder model's own output scale)"
    else:
        scale = {"dense": "cosine similarity of the dense retriever", "bm25": "BM25 score",
                 "hybrid": "reciprocal-rank-fusion score"}.get(retriever, f"{retriever} retriever score")
    return {"scores": scale, "queries_without_negatives_not_written": unusable,
            "note": "records with no negative would crash FlagEmbedding's loader (it divides by len(neg))"}


def tier_paths(path: Path) -> list[Path]:
    """OUTPUT.hard/.medium/.easy(.untiered) beside the output: checked up front, written after."""
    from hnmine.stages.tiers import TIERS, UNTIERED

    return [path.with_name(f"{path.stem}.{tier}{path.suffix}") for tier in (*TIERS, UNTIERED)]


def write_tier_files(path: Path, overwrite: bool, column: str = "tier") -> list[Path]:
    """One triplet file per curriculum tier beside ``path``: NAME.hard/.medium/.easy.parquet."""
    import pyarrow.parquet as pq

    from hnmine.stages.tiers import split_by_tier

    table = pq.read_table(path)
    written = []
    for tier, part in split_by_tier(table, column=column).items():
        target = check_output_path(path.with_name(f"{path.stem}.{tier}{path.suffix}"), overwrite)
        with atomic_path(target) as tmp:
            pq.write_table(part, tmp)
        written.append(target)
    return written
