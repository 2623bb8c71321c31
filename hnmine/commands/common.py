"""What every command shares: the error console, one-line failures, the progress display, and option tables.

A command's options are a dataclass whose fields carry their typer declarations (``Annotated[type,
typer.Option(...)] = default``); :func:`takes` turns the fields into the command's parameters and calls the
command with one instance, so a command function holds only what it does, not 70 declarations. An option
several commands take is declared here once: the input files and columns of the mining commands
(:class:`InputFlags`), and typed aliases (``Quiet``, ``Overwrite``, ``Format``, ``RayAddress``, ``RayWorkers``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer
from rich.console import Console
from rich.markup import escape

from hnmine import progress
from hnmine.errors import InputError, Terminated
from hnmine.io.inputs import ColumnNames, InputFiles
from hnmine.io.writers import FORMATS

err = Console(stderr=True)

T = TypeVar("T")

INPUT = "Input"
COLUMNS = "Input columns"
RETRIEVAL = "Retrieval"
DENSE = "Dense encoder"
DENOISE = "False-negative filtering"
SELECT = "Zone and selection"
OUTPUT = "Output"
STRATEGY = "Strategies (metric learning, curriculum, topics)"
ENGINE = "Engine"

COLUMN_NAMES = ColumnNames()  # the column flags' defaults


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def guarded(fn: Callable[[], T]) -> T:
    """Bad input is one line and a non-zero exit; Ctrl-C and SIGTERM leave no partial output.

    An OSError is the environment (a full disk, a vanished folder), not a bug: one line naming the file.
    """
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return fn()
    except InputError as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        fail(f"{what}; {getattr(exc, 'outcome', 'no output was written')}",
             code=128 + getattr(exc, "signum", signal.SIGINT))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    raise AssertionError("unreachable")


def shown(quiet: bool, fn: Callable[[], T]) -> T:
    """``fn`` under the run's one progress display (bars on a terminal, a line per phase elsewhere), guarded;
    libraries draw none. The display has closed when this returns, so a summary follows its last line."""

    def run() -> T:
        progress.quiet_libraries()
        with progress.use(progress.display_for(err, quiet)):
            return fn()

    return guarded(run)


class CliMessages:
    """A job's messages on stderr: warnings and notices always, the rest unless ``--quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}")

    def notice(self, message: str) -> None:
        err.print(message)

    def info(self, message: str) -> None:
        if not self.quiet:
            err.print(message)


def takes(options: type[T], context: bool = False) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the fields of the dataclass ``options`` as its parameters; it is called with one instance
    (after the ``typer.Context`` when ``context``)."""
    hints = get_type_hints(options, include_extras=True)
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)] \
        if context else []
    for f in dataclasses.fields(options):  # type: ignore[arg-type]
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=hints[f.name]))

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def call(**values: Any) -> None:
            given = [values.pop("ctx")] if context else []
            return command(*given, options(**values))

        del call.__wrapped__  # typer reads the signature below, not the command's own
        call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        call.__annotations__ = {p.name: p.annotation for p in params}
        return call

    return decorate


def flags_given(ctx: typer.Context, panels: tuple[str, ...], extra: tuple[str, ...] = (),
                exclude: tuple[str, ...] = ()) -> list[str]:
    """The options of ``panels`` (and ``extra``) that the command line set, by their flag names."""
    given = []
    for param in ctx.command.params:
        if param.name in exclude or not param.opts:
            continue
        if getattr(param, "rich_help_panel", None) in panels or param.name in extra:
            source = ctx.get_parameter_source(param.name)  # by name: typer may bundle its own click
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                given.append(param.opts[0])
    return given


# Options several commands take, each declared once (with its help text and panel; the default stays beside the
# field that uses it, where tests/test_registry.py reads it).
Quiet = Annotated[bool, typer.Option(help="No progress bars or summary.", rich_help_panel=OUTPUT)]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output file.", rich_help_panel=OUTPUT)]
Format = Annotated[str, typer.Option(help=f"Output layout: {' | '.join(FORMATS)}.", rich_help_panel=OUTPUT)]
RayAddress = Annotated[str | None, typer.Option(
    help="With --engine ray: the cluster to attach to (auto, ray://HOST:10001). Default: none (start a "
         "local Ray, or use the one this process already initialised).", rich_help_panel=ENGINE)]
RayWorkers = Annotated[int | None, typer.Option(
    help="With --engine ray: encoder / cross-encoder actors. Default: one per GPU of the cluster, or one "
         "per CPU where it has none.", rich_help_panel=ENGINE)]


@dataclass
class InputFlags:
    """The input files and column names of the commands that mine (``mine``, ``synth``), declared once."""

    queries: Annotated[Path | None, typer.Option(
        help="Queries file (query_id, query): Parquet, jsonl, json, csv, tsv or a datasets folder (save_to_disk or "
             "Hub layout). Default: none.", rich_help_panel=INPUT)] = None
    corpus: Annotated[Path | None, typer.Option(
        help="Corpus file (doc_id or _id, text, optional title; title is prepended), any format --queries "
             "reads. With --pairs: extra documents. Default: none.",
        rich_help_panel=INPUT)] = None
    qrels: Annotated[Path | None, typer.Option(
        help="Positives file (query_id, doc_id, optional score > 0; BEIR query-id/corpus-id read too). "
             "Default: none.",
                                               rich_help_panel=INPUT)] = None
    pairs: Annotated[Path | None, typer.Option(
        help="One pairs file instead of queries/corpus/qrels: (anchor|query, positive|pos) columns, as "
             "sentence-transformers and FlagEmbedding (pos lists) write them; ids come from the text. "
             "Default: none.",
        rich_help_panel=INPUT)] = None
    beir: Annotated[Path | None, typer.Option(help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels). Default: none.",
                                              rich_help_panel=INPUT)] = None
    split: Annotated[str, typer.Option(help="BEIR qrels split to mine.", rich_help_panel=INPUT)] = "train"
    strict: Annotated[bool, typer.Option(help="Fail, instead of warn and skip, on queries with no positive.",
                                         rich_help_panel=INPUT)] = False
    query_id_column: Annotated[str, typer.Option(help="Query id column (queries and qrels).",
                                                 rich_help_panel=COLUMNS)] = COLUMN_NAMES.query_id
    query_column: Annotated[str, typer.Option(help="Query text column (queries; anchor alias in pairs).",
                                              rich_help_panel=COLUMNS)] = COLUMN_NAMES.query
    doc_id_column: Annotated[str, typer.Option(help="Document id column (corpus and qrels).",
                                               rich_help_panel=COLUMNS)] = COLUMN_NAMES.doc_id
    text_column: Annotated[str, typer.Option(
        help="Document text column.", rich_help_panel=COLUMNS)] = COLUMN_NAMES.text
    title_column: Annotated[str, typer.Option(help="Used if present.", rich_help_panel=COLUMNS)] = COLUMN_NAMES.title
    qrels_score_column: Annotated[str, typer.Option(
        help="Used if present.", rich_help_panel=COLUMNS)] = COLUMN_NAMES.qrels_score
    positive_column: Annotated[str, typer.Option(help="Pairs file positive column.",
                                                 rich_help_panel=COLUMNS)] = COLUMN_NAMES.pairs_positive

    def inputs(self) -> InputFiles:
        """The files and column names these flags name."""
        columns = ColumnNames(
            query_id=self.query_id_column, query=self.query_column, doc_id=self.doc_id_column,
            text=self.text_column, title=self.title_column, qrels_query_id=self.query_id_column,
            qrels_doc_id=self.doc_id_column, qrels_score=self.qrels_score_column,
            pairs_positive=self.positive_column, pairs_anchor=("anchor", self.query_column))
        return InputFiles(self.queries, self.corpus, self.qrels, self.pairs, self.beir, self.split, columns,
                          self.strict)
