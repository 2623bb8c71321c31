"""``hnmine eval``: audit a mined file against labels; the figures come from ``hnmine.evaluation.metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hnmine.commands import common
from hnmine.commands.common import guarded, takes
from hnmine.errors import InputError
from hnmine.io.writers import check_output_path, write_json_atomic


@dataclass
class EvalFlags:
    mined: Annotated[Path, typer.Argument(help="Mined triplet file (needs query_id, negative_id).")]
    qrels: Annotated[Path | None, typer.Option(
        "--qrels", help="Labels file (query_id, doc_id, optional score > 0 = relevant; BEIR's query-id/corpus-id "
                        "also read), typically fuller or held-out judgements. Give this or --beir. Default: none.")] = (
        None)
    beir: Annotated[Path | None, typer.Option(
        "--beir", help="Labels from a BEIR folder's qrels of --split instead of --qrels. Default: none.")] = None
    split: Annotated[str, typer.Option(help="BEIR qrels split with --beir.")] = "train"
    before: Annotated[Path | None, typer.Option(
        "--before", help="The same run without the filter being judged (e.g. without --cross-encoder or "
                         "--sibling-percentile), both mined with --num-negatives at least the rank window's width "
                         "so every candidate is written: adds the filter's catch rate (share of labelled-relevant "
                         "candidates it removed) and false-alarm rate (share of the others it removed). "
                         "Default: none.")] = None
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="Write report.md, metrics.json and PNG plots into this folder (created if missing). "
                         "Default: print a summary only.")] = None
    num_negatives: Annotated[int | None, typer.Option(
        help="Count queries with fewer negatives than this. Default: the most any query has.")] = None
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write metrics.json here.")] = None


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.2f}%"


def _num(value: Any) -> str:
    return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else f"{value:,}")


def _false_negative_rows(table: Table, m: dict[str, Any]) -> None:
    fn, cov = m["false_negatives"], m["coverage"]
    table.add_row("queries", _num(cov["queries"]))
    table.add_row("distinct (query, negative) pairs", _num(fn["negatives"]))
    table.add_row("false negatives (relevant in labels)", f"{fn['false_negatives']:,} ({_pct(fn['rate'])})")
    for key, label in (("by_retriever", "retriever"), ("by_tier", "tier")):
        for name, g in fn.get(key, {}).items():
            table.add_row(f"  {label} {name}", f"{g['false_negatives']:,} / {g['negatives']:,} ({_pct(g['rate'])})")
    if fn["queries_without_labels"]:
        table.add_row("queries with no label (undetectable)", _num(fn["queries_without_labels"]))
    for scale, entry in m["hardness"].items():
        if scale != "rank":
            table.add_row(f"median {scale.replace('_', '-')} score / gap",
                          f"{_num(entry['negative_score']['median'])} / {_num(entry['gap']['median'])}")


def _synthetic_rows(table: Table, syn: dict[str, Any] | None) -> None:
    if syn is None:
        return
    table.add_row("synthetic / mined negatives", f"{syn['negatives']['synthetic']:,} / "
                                                  f"{syn['negatives']['mined']:,}")
    for check, count in (syn["checks"] or {}).items():
        table.add_row(f"  synthetic {check.replace('_', ' ')}", _num(count))
    for scale, groups in syn["by_scale"].items():
        table.add_row(f"  median {scale.replace('_', '-')} score mined / synthetic",
                      f"{_num(groups['mined']['negative_score']['median'])} / "
                      f"{_num(groups['synthetic']['negative_score']['median'])}")


def _filter_rows(table: Table, m: dict[str, Any], mined: Path, before: Path | None) -> None:
    if "filter" not in m:
        return
    f = m["filter"]
    table.add_row("filter catch rate (relevant candidates removed)",
                  f"{f['caught']:,} / {f['relevant_before']:,} ({_pct(f['catch_rate'])})")
    table.add_row("filter false-alarm rate (other candidates removed)",
                  f"{f['false_alarms']:,} / {f['candidates_before'] - f['relevant_before']:,} "
                  f"({_pct(f['false_alarm_rate'])})")
    if f["after_not_in_before"]:
        common.err.print(f"[yellow]warning:[/] {f['after_not_in_before']:,} pairs of {mined} are not in {before}: "
                         "the two runs did not share candidates", highlight=False)


def render(m: dict[str, Any], mined: Path, labels_path: Path, before: Path | None) -> None:
    """The metrics as one table on stdout, and the worst queries on stderr."""
    table = Table(title=f"hnmine eval {mined.name} vs {Path(labels_path).name}")
    table.add_column("")
    table.add_column("value", justify="right")
    _false_negative_rows(table, m)
    _synthetic_rows(table, m.get("synthetic"))
    cov, dup = m["coverage"], m["duplicates"]
    table.add_row(f"queries with < {cov['target_negatives']} negatives", _num(cov["short_queries"]))
    _filter_rows(table, m, mined, before)
    table.add_row("repeated (query, positive, negative) rows", _num(dup["repeated_rows"]))
    table.add_row("negative text = a positive's", _num(dup["negative_equals_positive"]))
    table.add_row("negative text = the query", _num(dup["negative_equals_query"]))
    Console().print(table)
    worst_queries = m["false_negatives"]["worst_queries"]
    if worst_queries:
        worst = ", ".join(f"{w['query_id']} ({w['false_negatives']})" for w in worst_queries[:5])
        common.err.print(f"[yellow]most false negatives[/]: {worst}", highlight=False)


@takes(EvalFlags)
def eval_mined(flags: EvalFlags) -> None:
    """Audit a mined file: false-negative rate against LABELS, hardness (scores, gaps), coverage, duplicates."""

    def run() -> None:
        from hnmine.evaluation.metrics import evaluate, write_report
        from hnmine.io.inputs import read_beir_qrels
        from hnmine.io.readers import read_table

        json_path = check_output_path(flags.json_out, overwrite=True) if flags.json_out is not None else None
        if (flags.qrels is None) == (flags.beir is None):
            raise InputError("give exactly one of --qrels LABELS and --beir DIR")
        if flags.beir is not None:
            labels, labels_path = read_beir_qrels(flags.beir, flags.split)
        else:
            assert flags.qrels is not None
            labels, labels_path = read_table(flags.qrels, "labels"), flags.qrels
        before = read_table(flags.before, "before") if flags.before is not None else None
        result = evaluate(read_table(flags.mined, "mined"), labels, flags.num_negatives, mined_path=flags.mined,
                          labels_path=labels_path, before=before, before_path=flags.before)
        render(result.metrics, flags.mined, labels_path, flags.before)
        if flags.report_dir is not None:
            written, note = write_report(result, flags.report_dir)
            if note:
                common.err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
            common.err.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
        if json_path is not None:
            write_json_atomic(json_path, result.metrics)
            common.err.print(f"wrote {json_path}", highlight=False)

    guarded(run)
