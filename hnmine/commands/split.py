"""``hnmine split``: one file per curriculum tier of a mined file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hnmine.commands import common
from hnmine.commands.common import guarded
from hnmine.jobs.mine import write_tier_files


def split(
    input: Annotated[Path, typer.Argument(help="Mined triplet Parquet with a 'tier' column.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing tier files.")] = False,
) -> None:
    """Write one file per curriculum tier (INPUT.hard/.medium/.easy.parquet) for easy -> hard training."""

    def run() -> None:
        from hnmine.io.inputs import read_parquet

        read_parquet(input, "mined")
        for path in write_tier_files(input, overwrite):
            common.err.print(f"wrote {path}")

    guarded(run)
