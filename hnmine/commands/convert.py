"""``hnmine convert``: a BEIR folder as hnmine's Parquet inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hnmine.commands import common
from hnmine.commands.common import guarded
from hnmine.io.writers import atomic_path, check_output_path


def convert(
    beir: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for queries/corpus/qrels .parquet.")],
    split: Annotated[str, typer.Option(help="Qrels split to convert.")] = "train",
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Convert a BEIR folder to hnmine's Parquet inputs (queries of the split only)."""

    def run() -> None:
        import pyarrow.parquet as pq

        from hnmine.io.inputs import read_beir

        tables = read_beir(beir, split)
        if not out_dir.exists():
            os.makedirs(out_dir)
        names = ("queries.parquet", "corpus.parquet", "qrels.parquet")
        targets = [check_output_path(out_dir / n, overwrite) for n in names]
        for table, target in zip(tables, targets):
            with atomic_path(target) as tmp:
                pq.write_table(table, tmp)
        common.err.print(f"wrote {', '.join(str(t) for t in targets)} "
                         f"({tables[0].num_rows:,} queries, {tables[1].num_rows:,} docs, {tables[2].num_rows:,} qrels)")

    guarded(run)
