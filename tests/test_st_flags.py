"""The CLI options sentence-transformers users look for: --min-score, prompt names, --include-positives,
--max-seq-length."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from hnmine.engines.encoder import Encoder
from hnmine.errors import InputError
from hnmine.stages.dense import DenseRetriever
from tests.conftest import make_data

runner = CliRunner()


def _mine(sample_dir, out, *extra):
    return runner.invoke(app, ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus",
                               str(sample_dir / "corpus.parquet"), "--qrels", str(sample_dir / "qrels.parquet"),
                               "--retriever", "bm25", "--output", str(out), "--quiet", *extra])


def test_min_score_drops_easy_candidates_on_the_retriever_scale(sample_dir, tmp_path):
    base, floor = tmp_path / "base.parquet", tmp_path / "floor.parquet"
    assert _mine(sample_dir, base).exit_code == 0
    scores = pq.read_table(base).column("negative_score").to_numpy()
    threshold = float(np.median(scores))
    result = _mine(sample_dir, floor, "--min-score", str(threshold))
    assert result.exit_code == 0, result.output
    kept = pq.read_table(floor).column("negative_score").to_numpy()
    assert len(kept) and kept.min() >= threshold and len(kept) < len(scores)
    manifest = json.loads((tmp_path / "floor.parquet.manifest.json").read_text())
    assert manifest["options"]["min_score"] == threshold


def test_min_score_on_cosine_must_be_a_cosine(sample_dir, tmp_path):
    result = _mine(sample_dir, tmp_path / "o.parquet", "--retriever", "dense", "--min-score", "3")
    assert result.exit_code == 2 and "--min-score 3.0 applies to cosine similarity" in result.output


def test_include_positives_keeps_positives_in_the_ntuple_ranking(sample_dir, tmp_path):
    out = tmp_path / "o.parquet"
    result = _mine(sample_dir, out, "--include-positives", "--format", "n-tuple", "--range-min", "0",
                   "--range-max", "5", "--num-negatives", "5")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert any(r["positive"] in [r[f"negative_{i}"] for i in range(1, 6)] for r in rows)
    result = _mine(sample_dir, tmp_path / "t.parquet", "--include-positives")
    assert result.exit_code == 2 and "--include-positives needs --format n-tuple" in result.output


@pytest.fixture(scope="module")
def prompted_model(tiny_bi_encoder, tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    path = tmp_path_factory.mktemp("prompted")
    SentenceTransformer(tiny_bi_encoder, device="cpu", prompts={"query": "query: ", "document": "passage: "}).save(
        str(path))
    return str(path)


def test_prompt_names_resolve_through_the_models_prompts(prompted_model, tmp_path):
    data = make_data({"q": "what is rain"}, {"a": "rain falls", "b": "snow melts", "c": "sun shines"}, {"q": ["a"]})
    by_name = DenseRetriever(model=prompted_model, query_prompt_name="query", corpus_prompt_name="document",
                             dtype="float32", cache_dir=str(tmp_path))
    by_text = DenseRetriever(model=prompted_model, query_prompt="query: ", corpus_prompt="passage: ",
                             dtype="float32", cache_dir=str(tmp_path))
    plain = DenseRetriever(model=prompted_model, dtype="float32", cache_dir=str(tmp_path))
    for r in (by_name, by_text, plain):
        r.prepare(data)
    assert np.array_equal(by_name._query_emb, by_text._query_emb)
    assert not np.array_equal(by_name._query_emb, plain._query_emb)
    with pytest.raises(InputError, match=r"--query-prompt-name 'nope': model .* has no such prompt \(its prompts: "
                                         r"document, query\)"):
        DenseRetriever(model=prompted_model, query_prompt_name="nope", dtype="float32").prepare(data)


def test_max_seq_length_truncates_and_keys_the_cache(tiny_bi_encoder, tmp_path):
    long_text = ["rain " * 60]
    full = Encoder(model=tiny_bi_encoder, dtype="float32", cache_dir=str(tmp_path))
    short = Encoder(model=tiny_bi_encoder, dtype="float32", cache_dir=str(tmp_path), max_seq_length_override=8)
    a = full.encode(long_text)
    b = short.encode(long_text)
    assert short.truncated == 1 and not np.allclose(a, b)
    assert np.array_equal(full.encode(long_text), a)  # the shared model got its own limit back
    assert full.cache_file(long_text, "", "float32") != short.cache_file(long_text, "", "float32")


def test_cli_max_seq_length_and_prompt_name_reach_the_encoder(sample_dir, prompted_model, tmp_path):
    out = tmp_path / "o.parquet"
    result = _mine(sample_dir, out, "--retriever", "dense", "--model", prompted_model, "--query-prompt-name",
                   "query", "--max-seq-length", "16", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    dense = json.loads((tmp_path / "o.parquet.manifest.json").read_text())["options"]["dense"]
    assert dense["query_prompt_name"] == "query" and dense["max_seq_length"] == 16
    result = _mine(sample_dir, out, "--retriever", "dense", "--model", prompted_model, "--query-prompt-name",
                   "query", "--query-prompt", "q: ", "--overwrite")
    assert result.exit_code == 2 and "give --query-prompt or --query-prompt-name, not both" in result.output


def test_min_score_drops_easy_candidates_without_relabelling_them():
    """Too easy is not a false negative: with RLHN relabelling on, only the rule's removals become positives."""
    from hnmine.stages.false_negatives import FalseNegativeFilter
    from tests.test_relabel import scored_batch

    out = FalseNegativeFilter(max_score=0.65, min_score=0.25, relabel=True).apply(scored_batch())
    pairs = lambda t: list(zip(*(t.column(c).to_pylist() for c in ("query_idx", "doc_idx"))))  # noqa: E731
    assert pairs(out.candidates) == [(0, 4), (1, 8)]          # 0.2 and 0.1 dropped as too easy
    assert pairs(out.relabeled) == [(0, 2), (0, 3), (1, 6), (1, 7)]  # only the >= 0.65 ones relabelled
