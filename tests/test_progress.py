"""One coherent progress display (issue #15, item 3): a phase per step, each with its own count and rate, nothing
drawn by the libraries underneath; bars on a terminal, one plain line per phase elsewhere."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import hnmine.cli as cli
from hnmine import progress
from hnmine.commands import common

runner = CliRunner()
PHASES = ["read", "index (BM25)", "encode corpus", "encode queries", "index (dense)", "mine", "write"]
# What sentence-transformers' / transformers' tqdm bars print: "Batches: 100%|###| 4/4 [00:01<00:00, 3.1it/s]"
TQDM = re.compile(r"\d+%\||it/s\]|s/it\]|Batches|Encoding:|Loading")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def tiny_model(tiny_sentence_transformer: str) -> str:
    """A 1-layer BERT sentence-transformer: encoding the sample takes a second, cold."""
    return tiny_sentence_transformer


def mine_args(sample_dir: Path, tmp_path: Path, model: str) -> list[str]:
    """Hybrid retrieval, so every phase occurs; a fresh cache, so encoding really runs (batch 16 < 119 texts)."""
    return ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(tmp_path / "out.parquet"),
            "--retriever", "hybrid", "--model", model, "--batch-size", "16", "--cache-dir", str(tmp_path / "cache")]


def test_plain_output_is_one_line_per_phase(sample_dir, tmp_path, tiny_model):
    result = runner.invoke(cli.app, mine_args(sample_dir, tmp_path, tiny_model))
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and not TQDM.search(result.output), result.output
    lines = result.output.splitlines()
    # one line as each phase ends; a long phase also logs "... after N s" lines (every 30 s) before it
    phase_lines = [line for line in lines if re.match(r"^[a-z][a-z ()A-Z0-9]*: .* in [\d.]+ s", line)]
    assert [line.split(":")[0] for line in phase_lines] == PHASES, result.output
    running = [line for line in lines if re.match(r"^[a-z][a-z ()A-Z0-9]*: .* after [\d.]+ s", line)]
    assert len(running) + len(phase_lines) == next(i for i, x in enumerate(lines) if "hnmine mine" in x)
    by_name = {line.split(":")[0]: line for line in phase_lines}
    assert "119 queries, 482 documents" in by_name["read"]
    assert re.search(r"482/482 texts in [\d.]+ s \([\d,.]+ texts/s\)", by_name["encode corpus"])
    assert re.search(r"119/119 queries in [\d.]+ s", by_name["mine"])
    assert re.search(r"\d[\d,]* rows in", by_name["write"])
    # the summary and the "wrote" line come after the last phase
    assert lines.index(by_name["write"]) < next(i for i, line in enumerate(lines) if line.startswith("wrote "))


def test_terminal_gets_one_live_display(sample_dir, tmp_path, tiny_model, monkeypatch):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    monkeypatch.setattr(common, "err", console)  # the commands' one stderr console
    shown: list[progress.RichDisplay] = []
    real = progress.display_for

    def recording(con, quiet):
        display = real(con, quiet)
        shown.append(display)
        return display

    monkeypatch.setattr(progress, "display_for", recording)
    result = runner.invoke(cli.app, mine_args(sample_dir, tmp_path, tiny_model))
    assert result.exit_code == 0, result.output
    assert len(shown) == 1 and isinstance(shown[0], progress.RichDisplay)
    tasks = shown[0].progress.tasks
    assert [t.description for t in tasks] == PHASES
    assert all(t.finished for t in tasks)
    assert {t.description: t.total for t in tasks}["mine"] == 119
    raw = buffer.getvalue()
    text = ANSI.sub("", raw)
    assert "\x1b[" in raw, "rendered as a terminal"
    assert not TQDM.search(text) and not TQDM.search(result.output)
    for name in PHASES:
        assert name in text
    assert "wrote " in text and "hnmine mine" in text


def test_quiet_shows_nothing(sample_dir, tmp_path, tiny_model):
    result = runner.invoke(cli.app, [*mine_args(sample_dir, tmp_path, tiny_model), "--retriever", "bm25", "--quiet"])
    assert result.exit_code == 0 and result.output == ""


def test_phases_without_a_display_are_silent(capsys):
    with progress.phase("encode corpus", total=3, unit="texts") as step:
        step.advance(2)
    assert step.done == 3 and capsys.readouterr() == ("", "")


def test_line_display_reports_long_phases_periodically():
    buffer = io.StringIO()
    display = progress.LineDisplay(Console(file=buffer, width=200), interval=0.0)
    with progress.use(display), progress.phase("encode corpus", total=4, unit="texts") as step:
        step.advance(1)
        step.advance(1)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("encode corpus: 1/4 texts after") and lines[-1].startswith("encode corpus: 4/4 texts in")
