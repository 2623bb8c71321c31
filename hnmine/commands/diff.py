"""``hnmine diff``: what changed between two mining rounds (``hnmine.evaluation.diff``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hnmine.commands.common import guarded
from hnmine.io.writers import write_json_atomic


def diff(
    old: Annotated[Path, typer.Argument(help="Earlier mined triplet Parquet (needs query_id, negative_id).")],
    new: Annotated[Path, typer.Argument(help="Newer mined triplet Parquet, e.g. from a newer checkpoint.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
) -> None:
    """How many negatives changed between two mining rounds, and how their scores moved (ANCE-style refresh)."""

    def run() -> None:
        from rich.table import Table

        from hnmine.evaluation.diff import diff_mined
        from hnmine.io.inputs import read_parquet

        result = diff_mined(read_parquet(old, "old mined"), read_parquet(new, "new mined"))
        table = Table(title=f"hnmine diff {old.name} -> {new.name}")
        table.add_column("")
        table.add_column("value", justify="right")
        for key, value in result.items():
            table.add_row(key.replace("_", " "), "-" if value is None else
                          (f"{value:.4f}" if isinstance(value, float) else f"{value:,}"))
        Console().print(table)
        if json_out is not None:
            write_json_atomic(json_out, result)

    guarded(run)
