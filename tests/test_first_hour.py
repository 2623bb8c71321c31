"""The small things a new user hits in their first hour (issue #15, item 7), each pinned by a test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def sample_args(sample_dir: Path) -> list[str]:
    return ["--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet")]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_mine_installs_only_what_it_runs(tmp_path):
    """`make mine` installs hnmine and its dependencies, not the dev extra (Ray, pytest, ruff); `make test` does."""

    def recipe(target: str) -> str:
        result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                                text=True, check=True)
        return result.stdout

    mine = recipe("mine")
    installs = [line for line in mine.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs and all(re.search(r"-e \.(\s|$)", line) for line in installs), mine
    assert "[dev]" not in mine and "hnmine mine" in mine
    assert "'.[dev]'" in recipe("test")


def test_license_is_an_spdx_expression():
    """The TOML-table form of `project.license` makes setuptools >= 77 warn on every install; the SPDX string form
    needs setuptools >= 77 to build (checked by hand: setuptools 84 reads the new file without a warning)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    requires = project["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires), requires


def test_plots_are_part_of_eval():
    """matplotlib is a dependency, not an extra: `hnmine eval --report` draws its plots on a plain install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("matplotlib") for d in project["dependencies"])


def test_eval_hint_survives_rich_markup(sample_dir, tmp_path, monkeypatch):
    """Without matplotlib the report says what to install, verbatim (brackets are not taken as markup)."""
    import hnmine.evaluation.metrics as evaluate

    def no_matplotlib(*_args, **_kwargs):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(evaluate, "write_plots", no_matplotlib)
    mined = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", *sample_args(sample_dir), "--retriever", "bm25", "--quiet",
                                 "--output", str(mined)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(mined), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--report", str(tmp_path / "report")], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "pip install 'matplotlib>=3.8'" in result.output
    assert "no plots" in (tmp_path / "report" / "report.md").read_text()


def test_bracketed_note_is_printed_verbatim(sample_dir, tmp_path, monkeypatch):
    """The same path with a note holding brackets: rich must print `hnmine[bench]`, not swallow `[bench]`."""
    import hnmine.evaluation.metrics as evaluate

    real = evaluate.write_report

    def report_with_note(result, out_dir):
        written, _ = real(result, out_dir)
        return written, "pip install 'hnmine[bench]'"

    monkeypatch.setattr(evaluate, "write_report", report_with_note)
    mined = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", *sample_args(sample_dir), "--retriever", "bm25", "--quiet",
                                 "--output", str(mined)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(mined), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--report", str(tmp_path / "report")], terminal_width=400)
    assert "pip install 'hnmine[bench]'" in result.output


def test_config_with_conflicting_flags_is_refused_naming_them(sample_dir, tmp_path):
    config = tmp_path / "pipeline.toml"
    result = runner.invoke(app, ["mine", "--retriever", "bm25", "--print-config"])
    assert result.exit_code == 0, result.output
    config.write_text(result.output)
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["mine", *sample_args(sample_dir), "--config", str(config), "--output", str(out),
                                 "--num-negatives", "3", "--retriever", "bm25", "--no-stopwords", "--quiet"],
                           terminal_width=400)
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line
    for flag in ("--num-negatives", "--retriever", "--stopwords"):
        assert flag in line
    assert not out.exists()
    # the flags that act around the pipeline (and those of input/output) are fine with --config
    result = runner.invoke(app, ["mine", *sample_args(sample_dir), "--config", str(config), "--output", str(out),
                                 "--quiet", "--format", "n-tuple"])
    assert result.exit_code == 0, result.output


def test_default_tiers_are_not_constant(sample_dir, tmp_path):
    """Default tiers cut the ranks selection draws from into thirds; fixed 10/30 bounds made every row 'medium'."""
    for sampling in ("top", "random"):
        out = tmp_path / f"{sampling}.parquet"
        result = runner.invoke(app, ["mine", *sample_args(sample_dir), "--retriever", "bm25", "--sampling", sampling,
                                     "--quiet", "--output", str(out)])
        assert result.exit_code == 0, result.output
        t = pq.read_table(out, columns=["negative_rank", "tier"]).to_pydict()
        counts = Counter(t["tier"])
        assert set(counts) == {"hard", "medium", "easy"}, (sampling, counts)
        ranks = {tier: [r for r, x in zip(t["negative_rank"], t["tier"]) if x == tier] for tier in counts}
        assert max(ranks["hard"]) < min(ranks["medium"]) <= max(ranks["medium"]) < min(ranks["easy"])


def test_window_thirds():
    from hnmine.stages.tiers import window_thirds

    assert window_thirds(10, 50) == (23, 37)
    assert window_thirds(10, 15) == (12, 13)
    assert window_thirds(0, 1) == (0, 1)  # hard < medium always holds


def beir_folder(root: Path, sample_dir: Path) -> Path:
    root.mkdir()
    corpus = pq.read_table(sample_dir / "corpus.parquet").to_pylist()
    queries = pq.read_table(sample_dir / "queries.parquet").to_pylist()
    qrels = pq.read_table(sample_dir / "qrels.parquet").to_pylist()
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": r["doc_id"], "title": r.get("title") or "",
                                                           "text": r["text"]}) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": r["query_id"], "text": r["query"]}) + "\n"
                                                for r in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{r['query_id']}\t{r['doc_id']}\t1\n" for r in qrels))
    return root


def test_beir_inputs_are_hashed_and_wrote_line_names_the_manifest(sample_dir, tmp_path):
    from hnmine.io.manifest import file_sha256

    root = beir_folder(tmp_path / "beir", sample_dir)
    out = tmp_path / "out" / "mined.parquet"
    out.parent.mkdir()
    result = runner.invoke(app, ["mine", "--beir", str(root), "--retriever", "bm25", "--output", str(out)],
                           terminal_width=80)
    assert result.exit_code == 0, result.output
    manifest_file = out.with_name("mined.parquet.manifest.json")
    assert str(manifest_file) in result.output  # the full path, unwrapped, so it can be copied
    inputs = json.loads(manifest_file.read_text())["inputs"]
    hashed = {Path(e["path"]).name: e["sha256"] for e in inputs.values() if "sha256" in e}
    assert hashed == {name: file_sha256(path) for name, path in (
        ("corpus.jsonl", root / "corpus.jsonl"), ("queries.jsonl", root / "queries.jsonl"),
        ("train.tsv", root / "qrels" / "train.tsv"))}


def test_negatives_per_query_plot_is_an_integer_histogram():
    pytest.importorskip("matplotlib")
    from hnmine.evaluation.metrics import counts_figure

    fig = counts_figure({"5": 119}, target=5)
    ax = fig.axes[0]
    assert len(ax.patches) == 6  # one bar per count 0..5, the empty ones included
    assert [p.get_height() for p in ax.patches] == [0, 0, 0, 0, 0, 119]
    xticks = [t for t in ax.get_xticks() if -0.5 <= t <= 5.5]
    assert xticks and all(float(t).is_integer() for t in xticks)
    assert all(float(t).is_integer() for t in ax.get_yticks())

