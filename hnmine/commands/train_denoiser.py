"""``hnmine train-denoiser``: fine-tune a cross-encoder teacher (the work is in ``hnmine.jobs.train_denoiser``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from hnmine.commands import common
from hnmine.commands.common import guarded, takes
from hnmine.errors import InputError
from hnmine.io.inputs import InputFiles
from hnmine.io.writers import atomic_dir
from hnmine.jobs.train_denoiser import DenoiserTraining
from hnmine.stages.window import RankWindow

# Each option's default is the dataclass field it sets, defined there once (tests/test_registry.py checks them).
TRAINING = DenoiserTraining()


@dataclass
class TrainDenoiserFlags:
    output: Annotated[Path, typer.Option(help="Folder to save the cross-encoder in (must not exist).")]
    queries: Annotated[Path | None, typer.Option(help="Training queries Parquet. Default: none.")] = None
    corpus: Annotated[Path | None, typer.Option(help="Corpus Parquet. Default: none.")] = None
    qrels: Annotated[Path | None, typer.Option(help="Training positives Parquet. Default: none.")] = None
    pairs: Annotated[Path | None, typer.Option(help="Or a pairs file (anchor, positive). Default: none.")] = None
    beir: Annotated[Path | None, typer.Option(help="Or a BEIR folder. Default: none.")] = None
    split: Annotated[str, typer.Option(help="BEIR split: use the training split only.")] = "train"
    base_model: Annotated[str, typer.Option(help="Checkpoint to start from (bundled by default).")] = (
        TRAINING.base_model)
    negatives_per_positive: Annotated[int, typer.Option(
        help="BM25 negatives per query.")] = TRAINING.negatives_per_positive
    range_min: Annotated[int, typer.Option(help="Skip the top N BM25 candidates as negatives.")] = TRAINING.range_min
    range_max: Annotated[int, typer.Option(help="Draw negatives up to this BM25 rank.")] = TRAINING.range_max
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = TRAINING.epochs
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = TRAINING.batch_size
    learning_rate: Annotated[float, typer.Option(help="Learning rate.")] = TRAINING.learning_rate
    max_length: Annotated[int, typer.Option(help="Max tokens per (query, passage) pair.")] = TRAINING.max_length
    max_queries: Annotated[int | None, typer.Option(help="Train on a seeded sample of queries. Default: all.")] = None
    seed: Annotated[int, typer.Option(help="Seed for negatives, shuffling and initialisation.")] = TRAINING.seed
    max_positives_per_query: Annotated[int | None, typer.Option(
        help="Train on a seeded sample of at most N positives per query (dense labels). Default: all.")] = None
    negatives_from: Annotated[str, typer.Option(
        help="Retriever the negatives come from: bm25, or dense (the bundled bi-encoder's neighbours).")] = (
        TRAINING.negatives_from)


@takes(TrainDenoiserFlags)
def train_denoiser_command(flags: TrainDenoiserFlags) -> None:
    """Fine-tune a cross-encoder for denoising on your training split (positives vs BM25 negatives, RocketQA)."""

    def run() -> None:
        import shutil

        from hnmine.jobs.train_denoiser import train_denoiser

        output = flags.output
        if output.exists():
            raise InputError(f"output {output}: already exists")
        if not output.parent.exists():
            raise InputError(f"output {output}: directory {output.parent} does not exist")
        cfg = DenoiserTraining(
            base_model=flags.base_model, negatives_per_positive=flags.negatives_per_positive,
            range_min=flags.range_min, range_max=flags.range_max, epochs=flags.epochs, batch_size=flags.batch_size,
            learning_rate=flags.learning_rate, max_length=flags.max_length, seed=flags.seed,
            max_queries=flags.max_queries, max_positives_per_query=flags.max_positives_per_query,
            negatives_from=flags.negatives_from)
        RankWindow(flags.range_min, flags.range_max)  # validates the window before any work
        data = InputFiles(flags.queries, flags.corpus, flags.qrels, flags.pairs, flags.beir, flags.split).load(
            lambda message: common.err.print(f"[yellow]warning:[/] {message}"))
        with atomic_dir(output) as tmp:
            info = train_denoiser(data, tmp, cfg)
            shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        common.err.print(f"trained on {info['pairs']:,} pairs ({info['positives']:,} positive) from "
                         f"{info['queries']:,} queries; saved {output} (use: --cross-encoder {output})")

    guarded(run)
