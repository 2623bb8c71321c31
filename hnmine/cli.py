"""The command line: one typer app assembled from the command modules in ``hnmine/commands/``.

Each command parses its options, builds a job's inputs and renders the result; the work happens in
``hnmine/jobs/`` (mining, denoising), the stages and the engines, which run the same way from Python.
"""

from __future__ import annotations

import sys

import typer

from hnmine.commands.convert import convert
from hnmine.commands.denoise import denoise
from hnmine.commands.diff import diff
from hnmine.commands.eval import eval_mined
from hnmine.commands.mine import mine
from hnmine.commands.split import split
from hnmine.commands.synth import synth
from hnmine.commands.train_denoiser import train_denoiser_command

app = typer.Typer(
    name="hnmine",
    help="Offline hard-negative mining for retrieval and embedding models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(mine)
app.command()(denoise)
app.command()(split)
app.command()(diff)
app.command()(convert)
app.command("eval")(eval_mined)
app.command("train-denoiser")(train_denoiser_command)
app.command("synth")(synth)


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="hnmine")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
