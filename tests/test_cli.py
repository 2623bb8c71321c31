"""The CLI end to end on sample_data/ (real SciFact subset), plus bad input through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app

runner = CliRunner()


def mine(sample_dir: Path, out: Path, *extra: str):
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--quiet", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def qrels(sample_dir):
    t = pq.read_table(sample_dir / "qrels.parquet").to_pydict()
    positives: dict[str, set[str]] = {}
    for q, d in zip(t["query_id"], t["doc_id"]):
        positives.setdefault(q, set()).add(d)
    return positives


def assert_no_positive_emitted(rows: dict, qrels: dict[str, set[str]]):
    for q, n, pos_text, neg_text in zip(rows["query_id"], rows["negative_id"], rows["positive"], rows["negative"]):
        assert n not in qrels[q]
        assert neg_text != pos_text


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_mine_triplets_on_sample(sample_dir, tmp_path, qrels, retriever):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", retriever, "--num-negatives", "3", "--range-min", "2", "--range-max", "20")
    table = pq.read_table(out)
    assert table.column_names[:3] == ["query", "positive", "negative"]
    assert {"query_id", "positive_id", "negative_id", "negative_rank", "negative_score", "positive_score",
            "retriever"} <= set(table.column_names)
    rows = table.to_pydict()
    assert set(rows["retriever"]) == {retriever}
    assert_no_positive_emitted(rows, qrels)
    assert min(rows["negative_rank"]) >= 3 and max(rows["negative_rank"]) <= 20
    per_pair: dict[tuple[str, str], int] = {}
    for q, p in zip(rows["query_id"], rows["positive_id"]):
        per_pair[(q, p)] = per_pair.get((q, p), 0) + 1
    assert max(per_pair.values()) == 3
    assert len(per_pair) == sum(len(v) for v in qrels.values())  # every (query, positive) pair is present
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())
    assert manifest["counts"]["rows_written"] == table.num_rows
    assert manifest["inputs"]["corpus"]["sha256"]


def test_dense_scores_are_cosines_and_ranked(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "dense", "--num-negatives", "5", "--range-min", "0", "--range-max", "5")
    t = pq.read_table(out).to_pydict()
    assert all(-1.0 <= s <= 1.0 for s in t["negative_score"] + t["positive_score"])
    first = [s for q, s, r in zip(t["query_id"], t["negative_score"], t["negative_rank"]) if q == t["query_id"][0]]
    assert first == sorted(first, reverse=True)


def test_same_seed_gives_byte_identical_output(sample_dir, tmp_path):
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    opts = ("--retriever", "bm25", "--sampling", "random", "--seed", "3")
    mine(sample_dir, a, *opts)
    mine(sample_dir, b, *opts, "--chunk-size", "7")
    mine(sample_dir, c, "--retriever", "bm25", "--sampling", "random", "--seed", "4")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("fmt", ["n-tuple", "labeled-pair", "flagembedding"])
def test_other_formats(sample_dir, tmp_path, qrels, fmt):
    out = tmp_path / ("o.jsonl" if fmt == "flagembedding" else "o.parquet")
    mine(sample_dir, out, "--retriever", "bm25", "--format", fmt, "--num-negatives", "4")
    if fmt == "flagembedding":
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(lines) == len(qrels)
        for rec in lines:
            assert set(rec["pos_ids"]) == qrels[rec["query_id"]] and not set(rec["neg_ids"]) & qrels[rec["query_id"]]
            assert len(rec["neg"]) <= 4 and rec["pos"] and rec["query"]
        return
    t = pq.read_table(out)
    if fmt == "n-tuple":
        assert t.column_names[:6] == ["query", "positive", "negative_1", "negative_2", "negative_3", "negative_4"]
        for row in t.to_pylist():
            assert row["positive"] not in [row[f"negative_{i}"] for i in range(1, 5)]
            assert not set(row["negative_ids"]) & qrels[row["query_id"]]
    else:
        rows = t.to_pydict()
        assert t.column_names[:3] == ["query", "passage", "label"]
        for q, pid, label in zip(rows["query_id"], rows["passage_id"], rows["label"]):
            assert (pid in qrels[q]) == (label == 1)


def test_no_audit_columns_gives_trainer_columns_only(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "bm25", "--no-audit-columns")
    assert pq.read_table(out).column_names == ["query", "positive", "negative"]


def test_print_config_round_trips(sample_dir, tmp_path):
    args = ["--retriever", "hybrid", "--num-negatives", "2", "--range-min", "1", "--range-max", "9",
            "--sampling", "simans", "--zone", "0.5:0.1", "--seed", "5", "--top-k", "40"]
    result = runner.invoke(app, ["mine", *args, "--print-config"])
    assert result.exit_code == 0, result.output
    assert 'kind = "hybrid"' in result.output and "[stage.dense]" in result.output
    config = tmp_path / "p.toml"
    config.write_text(result.stdout)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    mine(sample_dir, a, *args)
    mine(sample_dir, b, "--config", str(config))
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.column("negative_id").to_pylist() == tb.column("negative_id").to_pylist()


def test_pairs_input(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", "--pairs", str(sample_dir / "pairs.parquet"), "--corpus",
                                 str(sample_dir / "corpus.parquet"), "--retriever", "bm25", "--output", str(out),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pydict()
    assert rows["negative"] and all(n != p for n, p in zip(rows["negative"], rows["positive"]))


def test_cross_encoder_denoise_drops_at_and_above_threshold(sample_dir, tmp_path, tiny_cross_encoder):
    base = tmp_path / "base.parquet"
    mine(sample_dir, base, "--retriever", "bm25", "--cross-encoder", tiny_cross_encoder, "--max-score", "1.0")
    scores = np.array(pq.read_table(base).column("negative_ce_score").to_pylist(), dtype=np.float32)
    threshold = float(np.median(scores))  # exactly a score some candidate has
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "bm25", "--cross-encoder", tiny_cross_encoder,
         "--max-score", repr(threshold))
    t = pq.read_table(out).to_pydict()
    assert t["negative_ce_score"] and max(t["negative_ce_score"]) < threshold
    assert "positive_ce_score" in t and "negative_score" in t  # both scales are carried


def test_denoise_command_scores_each_pair_once_and_applies_margin(sample_dir, tmp_path, tiny_cross_encoder):
    mined = tmp_path / "m.parquet"
    mine(sample_dir, mined, "--retriever", "bm25")
    out = tmp_path / "d.parquet"
    result = runner.invoke(app, ["denoise", str(mined), "--cross-encoder", tiny_cross_encoder, "--margin", "0.0",
                                 "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    t = pq.read_table(out).to_pydict()
    lowest: dict[str, float] = {}
    for q, s in zip(t["query"], t["positive_ce_score"]):
        lowest[q] = min(lowest.get(q, s), s)
    assert all(s < lowest[q] for q, s in zip(t["query"], t["negative_ce_score"]))
    manifest = json.loads((tmp_path / "d.parquet.manifest.json").read_text())
    src = pq.read_table(mined).to_pydict()
    distinct = set(zip(src["query"], src["negative"])) | set(zip(src["query"], src["positive"]))
    assert manifest["cross_encoder_pairs_scored"] == len(distinct)


def test_bi_encoder_is_refused_as_cross_encoder(sample_dir, tmp_path):
    from hnmine.engines.encoder import bundled_model_path

    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus",
                                 str(sample_dir / "corpus.parquet"), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--retriever", "bm25", "--cross-encoder", bundled_model_path(), "--max-score", "0.5",
                                 "--output", str(out), "--quiet"])
    assert result.exit_code == 2 and "not a cross-encoder" in result.output
    assert not out.exists()


def test_cross_encoder_threshold_outside_sigmoid_range_is_refused(sample_dir, tmp_path, tiny_cross_encoder):
    mined = tmp_path / "m.parquet"
    mine(sample_dir, mined, "--retriever", "bm25")
    result = runner.invoke(app, ["denoise", str(mined), "--cross-encoder", tiny_cross_encoder, "--max-score", "3",
                                 "--output", str(tmp_path / "d.parquet"), "--quiet"])
    assert result.exit_code == 2 and "[0, 1]" in result.output
    assert not (tmp_path / "d.parquet").exists()


@pytest.mark.parametrize("extra,message", [
    (["--range-min", "50", "--range-max", "50"], "fewer than --num-negatives"),
    (["--retriever", "colbert"], "--retriever 'colbert'"),
    (["--model", "/nonexistent/model"], "could not be loaded"),
    (["--cross-encoder", "./no-such-reranker", "--max-score", "0.5"], "path not found"),
    (["--sampling", "best"], "--sampling 'best'"),
    (["--max-score", "1.5"], "lies in [-1, 1]"),
])
def test_bad_options_fail_with_one_line_and_no_output(sample_dir, tmp_path, extra, message):
    out = tmp_path / "t.parquet"
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--quiet", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".t.parquet.*"))


def test_existing_output_is_refused_and_kept(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    out.write_text("precious")
    result = runner.invoke(app, ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus",
                                 str(sample_dir / "corpus.parquet"), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--output", str(out), "--quiet"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert out.read_text() == "precious"


def test_output_in_missing_directory(sample_dir, tmp_path):
    result = runner.invoke(app, ["mine", "--pairs", str(sample_dir / "pairs.parquet"),
                                 "--output", str(tmp_path / "no" / "t.parquet")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_real_process_exit_code_and_single_line_error(tmp_path):
    """Through the installed entry point, as a Make target would run it."""
    proc = subprocess.run([sys.executable, "-m", "hnmine", "mine", "--queries", str(tmp_path / "missing.parquet"),
                           "--corpus", str(tmp_path / "c.parquet"), "--qrels", str(tmp_path / "r.parquet"),
                           "--output", str(tmp_path / "o.parquet")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr


def test_help_documents_every_option_with_defaults():
    result = runner.invoke(app, ["mine", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ["--retriever", "--num-negatives", "--range-min", "--range-max", "--model", "--query-prompt",
                   "--corpus-prompt", "--batch-size", "--device", "--cross-encoder", "--max-score", "--margin",
                   "--max-ratio", "--zone", "--sampling", "--simans-a", "--simans-b", "--format", "--seed",
                   "--overwrite", "--config", "--print-config", "--pairs", "--beir"]:
        assert option in result.output, option
    assert "default: dense" in result.output


def test_interrupted_run_resumes_from_finished_chunks_and_matches_uninterrupted(sample_dir, tmp_path, monkeypatch):
    """Chunk 3 fails once (as a kill would stop it); the rerun reads chunks 0-2 back and recomputes the rest."""
    from hnmine.pipeline import Pipeline

    opts = ("--retriever", "bm25", "--sampling", "random", "--seed", "1", "--chunk-size", "20")
    full = tmp_path / "full.parquet"
    mine(sample_dir, full, *opts)

    out = tmp_path / "t.parquet"
    real = Pipeline.run_chunk
    calls = {"n": 0}

    def flaky(self, data, queries):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, data, queries)

    monkeypatch.setattr(Pipeline, "run_chunk", flaky)
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--quiet", *opts]
    result = runner.invoke(app, args)
    assert result.exit_code == 130 and not out.exists()
    assert len(list((tmp_path / ".t.parquet.partial").glob("chunk-*.json"))) == 3

    calls["n"] = 0
    monkeypatch.setattr(Pipeline, "run_chunk", lambda self, d, q: (calls.__setitem__("n", calls["n"] + 1),
                                                                    real(self, d, q))[1])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls["n"] == 3  # 6 chunks of 20 queries, 3 already done
    assert out.read_bytes() == full.read_bytes()
    assert not (tmp_path / ".t.parquet.partial").exists()
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())
    assert manifest["counts"]["negatives_emitted"] == json.loads(
        (tmp_path / "full.parquet.manifest.json").read_text())["counts"]["negatives_emitted"]


def test_denoise_summary_counts_what_each_stage_dropped():
    """denoise has no retriever: its first stage's row used to show the rows it kept, labelled as excluded."""
    import io

    from rich.console import Console

    from hnmine.io.manifest import print_summary
    from hnmine.pipeline import MiningReport, StageCount

    report = MiningReport(queries=3, documents=10, positives=3,
                          stages=[StageCount("exclude_positives", 600, 595),
                                  StageCount("cross_encoder_denoise", 595, 500)])
    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=200), title="hnmine denoise")
    lines = {" ".join(line.replace("│", " ").split()) for line in buffer.getvalue().splitlines()}
    assert "candidate pairs read 600" in lines
    assert "positives / duplicates / query text excluded 5" in lines
    assert "dropped by cross-encoder denoising 95" in lines
    mined = MiningReport(stages=[StageCount("bm25", 0, 700), StageCount("exclude_positives", 700, 690)])
    buffer = io.StringIO()
    print_summary(mined, Console(file=buffer, width=200))
    lines = {" ".join(line.replace("│", " ").split()) for line in buffer.getvalue().splitlines()}
    assert "retrieved (BM25) 700" in lines and "positives / duplicates / query text excluded 10" in lines
