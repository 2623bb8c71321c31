"""Telling the user what happened: the run summary table and the run manifest.

The manifest sits next to the output so that a training run can be traced back to exactly how its
negatives were mined: inputs (with hashes), every stage option, counts per stage, timings.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hnmine import __version__
from hnmine.pipeline import MiningReport, Pipeline
from hnmine.stage import Phase, stage_kinds, stage_options


def _examples(ids: list[str], n: int = 5) -> str:
    if not ids:
        return ""
    more = f", … (+{len(ids) - n})" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def print_summary(report: MiningReport, console: Console, title: str = "hnmine mine") -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("queries read", f"{report.queries + len(report.queries_skipped):,}")
    if report.queries_skipped:
        table.add_row("queries skipped (no positive)", f"{len(report.queries_skipped):,}")
    table.add_row("documents", f"{report.documents:,}")
    table.add_row("positives", f"{report.positives:,}")
    kinds = stage_kinds()
    for i, stage in enumerate(report.stages):
        kind = stage.kind.split(":", 1)[-1]
        if kind == "hidden_positive_probe":
            continue
        cls = kinds.get(kind)
        label = cls.summary_label if cls is not None and cls.summary_label else kind
        if cls is not None and cls.phase == Phase.RETRIEVE:  # a retriever adds rows: what it found, not dropped
            table.add_row(label, f"{stage.rows_out:,}")
            continue
        if i == 0:  # no retriever (denoise): the candidates came from the input file
            table.add_row("candidate pairs read", f"{stage.rows_in:,}")
        table.add_row(label, f"{stage.dropped:,}")
    table.add_row("negatives emitted", f"{report.negatives_emitted:,}")
    if report.negatives_filled:
        table.add_row("  of which random fill (--fill random)", f"{report.negatives_filled:,}")
    if report.target_negatives is not None:
        table.add_row(f"queries with < {report.target_negatives} negatives", f"{len(report.short_queries):,}")
    table.add_row("queries with no negative", f"{len(report.queries_without_negatives):,}")
    for label, value in report.notes.items():
        table.add_row(label, value if isinstance(value, str) else f"{value:,}")
    table.add_row("rows written", f"{report.rows_written:,}")
    if report.rows_dropped_by_format:
        table.add_row("rows not writable in this format (short)", f"{report.rows_dropped_by_format:,}")
    console.print(table)
    if report.short_queries:
        console.print(f"[yellow]queries short of negatives[/]: {_examples(report.short_queries)} "
                      "(listed in full in the manifest; hnmine never pads with random documents)")
    if report.queries_skipped:
        console.print(f"[yellow]queries skipped, no positive[/]: {_examples(report.queries_skipped)}")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_entry(path: str) -> dict[str, Any]:
    p = Path(path.split(" (")[0])
    if p.is_file():
        return {"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size}
    return {"path": path}


def build_manifest(command: str, pipeline: Pipeline | None, report: MiningReport, options: dict[str, Any],
                   inputs: dict[str, Any], output: Path, started: float) -> dict[str, Any]:
    return {
        "hnmine_version": __version__,
        "command": command,
        "argv": sys.argv,
        "python": platform.python_version(),
        # Entries hashed at the start of the run (dicts) are kept as they are: they describe what was read.
        "inputs": {k: v if isinstance(v, dict) else input_entry(v) for k, v in inputs.items()},
        "output": str(output),
        "options": options,
        "pipeline": ([{"kind": s.kind, **stage_options(s)} for s in pipeline.stages] if pipeline else None),
        "counts": report.as_dict(),
        "seconds": round(time.time() - started, 3),
    }


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + ".manifest.json")
