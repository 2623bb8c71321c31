"""``hnmine denoise``: flags -> a :class:`~hnmine.jobs.denoise.DenoiseJob` -> :func:`hnmine.jobs.denoise.denoise`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from hnmine.commands import common
from hnmine.commands.common import ENGINE, OUTPUT, Overwrite, Quiet, RayAddress, RayWorkers, shown, takes
from hnmine.engines.base import engine_for
from hnmine.io.manifest import manifest_path, print_summary
from hnmine.io.triplets import TripletColumns
from hnmine.jobs.denoise import DenoiseJob, DenoiseResult, teacher_spec
from hnmine.jobs.denoise import denoise as run_denoise
from hnmine.recipe import MineOptions
from hnmine.stages.cross_encoder import CrossEncoderScorer

# Each option's default is the dataclass field it sets, defined there once (tests/test_registry.py checks them).
MINE = MineOptions()
ENCODER = MINE.dense
TRIPLET_COLUMNS = TripletColumns()
TEACHER = CrossEncoderScorer()


@dataclass
class DenoiseFlags:
    input: Annotated[Path, typer.Argument(
        help="Triplets in any input format: query|anchor / positive / negative columns (hnmine, "
             "sentence-transformers), negative_1..n n-tuples or FlagEmbedding query/pos/neg records (both "
             "written back as one row per negative).")]
    output: Annotated[Path, typer.Option(help="Where to write the kept rows (Parquet).")]
    cross_encoder: Annotated[str | None, typer.Option(
        help="CrossEncoder name or local path; the same as --scorer cross-encoder:NAME.")] = None
    scorer: Annotated[str | None, typer.Option(
        help="The teacher: cross-encoder:NAME (scores in *_ce_score) or bi-encoder:NAME, any "
             "SentenceTransformer (cosine similarity in *_teacher_cosine; cheaper, weaker). "
             "Give this or --cross-encoder.")] = None
    max_score: Annotated[float | None, typer.Option(
        help="Drop rows whose negative's teacher score >= T (the teacher's scale). Default: off.")] = None
    margin: Annotated[float | None, typer.Option(
        help="Drop rows whose negative scores >= the query's lowest positive score - M. Default: off.")] = None
    max_ratio: Annotated[float | None, typer.Option(
        help="Drop rows whose negative scores > R x the query's lowest positive score. Default: off.")] = None
    max_z: Annotated[float | None, typer.Option(
        help="Per query: drop rows whose negative scores >= Z standard deviations above the mean of the query's "
             "distinct negatives (scale-free). Default: off.")] = None
    spread_margin: Annotated[float | None, typer.Option(
        help="Per query: drop rows whose negative scores >= the query's lowest positive score - K x the standard "
             "deviation of the query's negative scores. Default: off.")] = None
    min_score: Annotated[float | None, typer.Option(
        help="Drop rows whose negative's teacher score < T: too easy (the teacher's scale). Default: off.")] = None
    query_column: Annotated[str, typer.Option(help="Query text column.")] = TRIPLET_COLUMNS.query
    positive_column: Annotated[str, typer.Option(help="Positive text column.")] = TRIPLET_COLUMNS.positive
    negative_column: Annotated[str, typer.Option(help="Negative text column.")] = TRIPLET_COLUMNS.negative
    batch_size: Annotated[int, typer.Option(help="Teacher batch size.")] = TEACHER.batch_size
    max_length: Annotated[int | None, typer.Option(help="Cross-encoder max tokens. Default: the model's.")] = None
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... Default: best available.")] = None
    dtype: Annotated[str, typer.Option(help="Bi-encoder teacher precision: auto|float32|bfloat16|float16 (see "
                                            "`mine --help`). Default: auto.")] = ENCODER.dtype
    chunk_size: Annotated[int, typer.Option(help="Queries scored per chunk.")] = MINE.chunk_size
    overwrite: Overwrite = False
    quiet: Quiet = False
    resume: Annotated[bool, typer.Option(
        help="Keep finished chunks' teacher scores in .OUTPUT.partial/ so an interrupted run continues where it "
             "stopped (same input and options); --no-resume starts over.", rich_help_panel=OUTPUT)] = True
    engine: Annotated[str, typer.Option(
        help="local (this process) | ray: cross-encoder scoring runs as a Ray Data "
             "stage (pip install 'hnmine\\[ray]'); the output is then a directory of Parquet parts.",
        rich_help_panel=ENGINE)] = "local"
    ray_address: RayAddress = None
    ray_workers: RayWorkers = None

    def job(self) -> DenoiseJob:
        return DenoiseJob(
            input=self.input, output=self.output, teacher=teacher_spec(self.cross_encoder, self.scorer),
            max_score=self.max_score, margin=self.margin, max_ratio=self.max_ratio, max_z=self.max_z,
            spread_margin=self.spread_margin, min_score=self.min_score,
            columns=TripletColumns(self.query_column, self.positive_column, self.negative_column),
            batch_size=self.batch_size, max_length=self.max_length, device=self.device, dtype=self.dtype,
            chunk_size=self.chunk_size, overwrite=self.overwrite, resume=self.resume)


@takes(DenoiseFlags)
def denoise(flags: DenoiseFlags) -> None:
    """Clean an existing triplet file with a teacher model: drop rows whose negative is a likely positive.

    The teacher is a cross-encoder (best) or any SentenceTransformer (--scorer bi-encoder:NAME). Rows whose
    negative equals the query or one of the query's positives (by normalised text) are always dropped.
    Each distinct (query, passage) pair is scored once.
    """

    def run() -> DenoiseResult:
        engine = engine_for(flags.engine, flags.ray_address, flags.ray_workers)
        return run_denoise(flags.job(), engine)

    result = shown(flags.quiet, run)
    if not flags.quiet:  # after the display has closed, so the summary follows its last line
        print_summary(result.report, common.err, title="hnmine denoise")
        scored = f"{result.pairs_scored:,} cross-encoder pair evaluations; " if result.pairs_scored is not None \
            else ""
        common.err.print(f"kept {result.rows_kept:,} of {result.rows_in:,} rows; {scored}wrote {result.output} and "
                         f"{manifest_path(result.output)}", highlight=False, soft_wrap=True)
