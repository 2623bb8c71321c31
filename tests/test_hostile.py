"""A hostile-input matrix: bad options, bad files, damaged caches and checkpoints, hostile output paths.

Grouped like issue #19: first the cases that used to exit 0 with wrong output or lost data, then the ones that
used to end in a traceback or a permanent failure. Every case runs on tiny data, and none loads a bi-encoder:
dense retrieval reads precomputed embeddings, so the matrix stays fast enough for CI.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from tests.test_reliability import assert_failed_cleanly, leftovers, make_inputs, write

runner = CliRunner()


@pytest.fixture()
def inputs(tmp_path) -> tuple[Path, Path, Path]:
    return make_inputs(tmp_path / "in")


def mine_args(inputs: tuple[Path, Path, Path], out: Path, *extra: str) -> list[str]:
    q, c, r = inputs
    return ["mine", "--queries", str(q), "--corpus", str(c), "--qrels", str(r), "--retriever", "bm25",
            "--range-min", "0", "--range-max", "10", "--num-negatives", "3", "--output", str(out), "--quiet", *extra]


def run(inputs, out: Path, *extra: str):
    return runner.invoke(app, mine_args(inputs, out, *extra))


def one_error_line(result, message: str, code: int = 2) -> None:
    """Exit ``code``, exactly one ``error:`` line holding ``message``, and no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def embeddings_for(inputs, folder: Path, doc_vectors: np.ndarray | None = None,
                   query_vectors: np.ndarray | None = None) -> tuple[Path, Path]:
    """Precomputed .npy embeddings in input row order (random unless given), so dense runs load no model."""
    q, c, _ = inputs
    rng = np.random.default_rng(0)
    n_docs, n_queries = pq.read_table(c).num_rows, pq.read_table(q).num_rows
    docs = doc_vectors if doc_vectors is not None else rng.standard_normal((n_docs, 8)).astype(np.float32)
    queries = query_vectors if query_vectors is not None else rng.standard_normal((n_queries, 8)).astype(np.float32)
    np.save(folder / "docs.npy", docs)
    np.save(folder / "queries.npy", queries)
    return folder / "docs.npy", folder / "queries.npy"


def dense(inputs, folder: Path, **vectors) -> list[str]:
    d, q = embeddings_for(inputs, folder, **vectors)
    return ["--retriever", "dense", "--corpus-embeddings", str(d), "--query-embeddings", str(q)]


# 1. Exit 0 with wrong output or lost data ----------------------------------------------------------------


@pytest.mark.parametrize("option,value,message", [
    ("--top-k", "-5", "--top-k must be >= 1"),
    ("--top-k", "0", "--top-k must be >= 1"),
    ("--simans-a", "nan", "--simans-a must be a finite number"),
    ("--simans-b", "inf", "--simans-b must be a finite number"),
    ("--rrf-k", "-1", "--rrf-k must be >= 0"),
    ("--rrf-k", "nan", "--rrf-k must be a finite number"),
    ("--positives-per-query", "0", "--positives-per-query must be >= 1"),
    ("--query-clusters", "0", "--query-clusters must be >= 1"),
    ("--ce-max-length", "0", "--ce-max-length must be >= 1"),
    ("--triplet-margin", "nan", "--triplet-margin must be a finite number"),
    ("--tier-hard", "nan", "--tier-hard must be a finite number"),
    ("--seed", "-1", "--seed must be >= 0"),
    ("--bm25-k1", "nan", "--bm25-k1 must be a finite number"),
    ("--bm25-b", "2", "--bm25-b must be <= 1"),
    ("--hnsw-m", "0", "--hnsw-m must be >= 2"),
    ("--hnsw-m", "1", "--hnsw-m must be >= 2"),
    ("--hnsw-ef-search", "0", "--hnsw-ef-search must be >= 1"),
    ("--ivf-nlist", "0", "--ivf-nlist must be >= 1"),
    ("--ivf-nprobe", "-3", "--ivf-nprobe must be >= 1"),
    ("--range-max", "99999999999", "--range-max must be <="),
    ("--chunk-size", "0", "--chunk-size must be >= 1"),
    ("--batch-size", "0", "--batch-size must be >= 1"),
    ("--ce-batch-size", "0", "--ce-batch-size must be >= 1"),
    ("--num-negatives", "0", "--num-negatives must be >= 1"),
    ("--max-score", "nan", "must be finite numbers"),
    ("--device", "cuda:7", "--device 'cuda:7'"),
    ("--device", "gpu", "is not a device"),
    ("--device", "cpu,", "--device 'cpu,'"),
    ("--dtype", "int8", "--dtype 'int8'"),
])
def test_nonsense_option_values_are_refused(inputs, tmp_path, option, value, message):
    out = tmp_path / "t.parquet"
    assert_failed_cleanly(run(inputs, out, option, value), out, message)


def test_split_tiers_keeps_existing_tier_files_without_overwrite(inputs, tmp_path):
    out = tmp_path / "t.parquet"
    hard = tmp_path / "t.hard.parquet"
    hard.write_bytes(b"precious")
    result = run(inputs, out, "--split-tiers")
    one_error_line(result, "t.hard.parquet: already exists")
    assert hard.read_bytes() == b"precious" and not out.exists()
    assert run(inputs, out, "--split-tiers", "--overwrite").exit_code == 0
    assert pq.read_table(hard).num_rows >= 0 and hard.read_bytes() != b"precious"


@pytest.mark.parametrize("target", ["docs", "queries"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_precomputed_embeddings_is_refused(inputs, tmp_path, target, bad):
    rng = np.random.default_rng(1)
    docs, queries = rng.standard_normal((30, 8)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    (docs if target == "docs" else queries)[2, 5] = bad
    out = tmp_path / "t.parquet"
    result = run(inputs, out, *dense(inputs, tmp_path, doc_vectors=docs, query_vectors=queries))
    assert_failed_cleanly(result, out, "holds NaN or infinity")
    assert "(row 2)" in result.output


def test_nan_in_parquet_embeddings_is_refused(inputs, tmp_path):
    write(tmp_path / "emb.parquet", doc_id=[f"d{i}" for i in range(30)],
          embedding=[[float("nan") if i == 4 else 1.0, 0.5] for i in range(30)])
    out = tmp_path / "t.parquet"
    _, q = embeddings_for(inputs, tmp_path, query_vectors=np.ones((3, 2), np.float32))
    result = run(inputs, out, "--retriever", "dense", "--corpus-embeddings", str(tmp_path / "emb.parquet"),
                 "--query-embeddings", str(q))
    assert_failed_cleanly(result, out, "doc_id 'd4'")


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_nan_qrels_score_is_refused_not_dropped(tmp_path, score):
    inputs = make_inputs(tmp_path / "in", scores=[1, score, 1])
    out = tmp_path / "t.parquet"
    assert_failed_cleanly(run(inputs, out), out, "row 1 (0-based) is")


def test_beir_qrels_with_infinite_score_is_one_line(tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "a b"}\n')
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n')
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tinf\n")
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", "--beir", str(root), "--retriever", "bm25", "--output", str(out)])
    one_error_line(result, "is not a number")


PIPELINE_HEAD = 'chunk_size = 4\n[[stage]]\nkind = "bm25"\ntop_k = 20\n'
EXCLUDE = '[[stage]]\nkind = "exclude_positives"\n'
SELECT = '[[stage]]\nkind = "select"\nnum_negatives = 2\n'


@pytest.mark.parametrize("toml,message", [
    (PIPELINE_HEAD + SELECT, "no exclude_positives stage"),
    (EXCLUDE + SELECT, "first stage must be a retriever"),
    (PIPELINE_HEAD + SELECT + EXCLUDE, "comes after 'select'"),
    (PIPELINE_HEAD + EXCLUDE + SELECT + '[[stage]]\nkind = "rank_window"\nrange_min = 1\n', "comes after 'select'"),
    (PIPELINE_HEAD + EXCLUDE + '[[stage]]\nkind = "tiers"\n' + SELECT, "comes after 'tiers'"),
    (PIPELINE_HEAD + PIPELINE_HEAD.split("\n", 1)[1] + EXCLUDE + SELECT, "2 stages of a retriever"),
    (PIPELINE_HEAD + EXCLUDE + EXCLUDE + SELECT, "2 stages of exclude_positives"),
    (PIPELINE_HEAD + EXCLUDE + '[[stage]]\nkind = "fill_random"\n', "add a select stage"),
    (PIPELINE_HEAD + EXCLUDE + '[[stage]]\nkind = "triplet_margin"\nscore_column = "ce_score"\n' + SELECT,
     "reads score_column 'ce_score'"),
    (PIPELINE_HEAD.replace("top_k = 20", 'top_k = "many"') + EXCLUDE + SELECT, "top_k = 'many': expected int"),
    (PIPELINE_HEAD.replace("top_k = 20", "top_k = 2.5") + EXCLUDE + SELECT, "expected int"),
    (PIPELINE_HEAD.replace("top_k = 20", "k1 = true") + EXCLUDE + SELECT, "k1 = True: expected float"),
    (PIPELINE_HEAD.replace("top_k = 20", "top_k = -1") + EXCLUDE + SELECT, "--top-k must be >= 1"),
    (PIPELINE_HEAD.replace("chunk_size = 4", "chunk_size = 0") + EXCLUDE + SELECT, "chunk_size must be >= 1"),
    (PIPELINE_HEAD.replace("chunk_size = 4", 'chunk_size = "4"') + EXCLUDE + SELECT, "chunk_size must be an integer"),
    ("chunksize = 4\n" + PIPELINE_HEAD + EXCLUDE + SELECT, "unknown top-level key chunksize"),
    ("stage = 3\n", "needs at least one [[stage]] table"),
])
def test_pipeline_file_composition_and_types_are_validated(inputs, tmp_path, toml, message):
    config = tmp_path / "p.toml"
    config.write_text(toml)
    out = tmp_path / "t.parquet"
    assert_failed_cleanly(run(inputs, out, "--config", str(config)), out, message)


def test_a_legal_pipeline_file_still_runs(inputs, tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE_HEAD + EXCLUDE + '[[stage]]\nkind = "rank_window"\nrange_max = 10\n' + SELECT)
    out = tmp_path / "t.parquet"
    result = run(inputs, out, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 6


def test_pipeline_file_that_is_a_directory(inputs, tmp_path):
    out = tmp_path / "t.parquet"
    assert_failed_cleanly(run(inputs, out, "--config", str(tmp_path)), out, "is a directory")


def two_positive_inputs(tmp_path: Path):
    """One query, two positives scoring 0.9 and 0.3, candidates spread from 0.95 down to -0.2 (cosine)."""
    cosines = [0.9, 0.3, 0.95, 0.6, 0.5, 0.25, 0.2, 0.1, 0.0, -0.2, 0.75, 0.35]
    folder = tmp_path / "in"
    folder.mkdir()
    q = write(folder / "queries.parquet", query_id=["q1"], query=["the query"])
    c = write(folder / "corpus.parquet", doc_id=[f"d{i}" for i in range(len(cosines))],
              text=[f"document number {i}" for i in range(len(cosines))])
    r = write(folder / "qrels.parquet", query_id=["q1", "q1"], doc_id=["d0", "d1"])
    angles = np.arccos(np.array(cosines))
    docs = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return (q, c, r), docs, np.array([[1.0, 0.0]], np.float32)


@pytest.mark.parametrize("kind,margin", [("hard", "0.2"), ("semihard", "0.7"), ("easy", "0.1"), ("all", "0.2")])
def test_triplet_type_holds_for_every_row_with_several_positives(tmp_path, kind, margin):
    inputs, docs, queries = two_positive_inputs(tmp_path)
    out = tmp_path / "t.parquet"
    result = run(inputs, out, *dense(inputs, tmp_path, doc_vectors=docs, query_vectors=queries),
                 "--triplet-type", kind, "--triplet-margin", margin, "--num-negatives", "10", "--tiers", "none")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pydict()
    assert rows["positive_id"], "no rows: the case tests nothing"
    m = float(margin)
    for p, s in zip(rows["positive_score"], rows["negative_score"]):
        delta = p - s
        holds = {"hard": delta <= 0, "semihard": 0 < delta <= m, "easy": delta > m, "all": delta <= m}[kind]
        assert holds, (kind, p, s)


def test_chunk_size_does_not_change_dense_output_bytes(tmp_path):
    """FAISS rounds a chunk's scores differently by chunk size; the output must not show it."""
    _, c, _ = make_inputs(tmp_path / "in", n_docs=300)
    queries = write(tmp_path / "q.parquet", query_id=[f"q{i}" for i in range(40)],
                    query=[f"query {i}" for i in range(40)])
    qrels = write(tmp_path / "r.parquet", query_id=[f"q{i}" for i in range(40)], doc_id=[f"d{i}" for i in range(40)])
    rng = np.random.default_rng(3)
    docs, qv = rng.standard_normal((300, 64)).astype(np.float32), rng.standard_normal((40, 64)).astype(np.float32)
    args = dense((queries, c, qrels), tmp_path, doc_vectors=docs, query_vectors=qv)
    outs = []
    for size in ("1", "8", "256"):
        out = tmp_path / f"t{size}.parquet"
        assert run((queries, c, qrels), out, *args, "--chunk-size", size).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def bert_checkpoint(path: Path, head: bool, architectures: bool = True) -> str:
    """A tiny BERT saved with or without a relevance head; optionally with ``architectures`` removed."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    from hnmine.encoder import bundled_model_path

    path.mkdir()
    shutil.copy(Path(bundled_model_path()) / "vocab.txt", path / "vocab.txt")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), model_max_length=64)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1)
    torch.manual_seed(0)
    (BertForSequenceClassification if head else BertModel)(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    if not architectures:
        doc = json.loads((path / "config.json").read_text())
        doc.pop("architectures", None)
        (path / "config.json").write_text(json.dumps(doc))
    return str(path)


def test_model_without_architectures_or_head_is_refused_as_cross_encoder(tmp_path):
    from hnmine.cross_encoder import load_cross_encoder
    from hnmine.errors import InputError

    bare = bert_checkpoint(tmp_path / "bare", head=False, architectures=False)
    with pytest.raises(InputError, match=r"lacks weights the model needs .*classifier"):
        load_cross_encoder(bare)
    trained = bert_checkpoint(tmp_path / "trained", head=True, architectures=False)
    assert load_cross_encoder(trained) is not None  # a real head without 'architectures' still loads


def test_denoise_refuses_a_headless_cross_encoder_in_one_line(tmp_path):
    bare = bert_checkpoint(tmp_path / "bare", head=False, architectures=False)
    triplets = write(tmp_path / "t.parquet", query=["a q"], positive=["a p"], negative=["a n"])
    out = tmp_path / "o.parquet"
    result = runner.invoke(app, ["denoise", str(triplets), "--output", str(out), "--cross-encoder", bare,
                                 "--max-score", "0.5", "--quiet"])
    assert_failed_cleanly(result, out, "not a trained cross-encoder")


# 2. Tracebacks or permanent failure instead of one clear line ---------------------------------------------


def test_missing_cross_encoder_is_reported_before_any_input_is_read(tmp_path):
    missing_inputs = (tmp_path / "nope-q.parquet", tmp_path / "nope-c.parquet", tmp_path / "nope-r.parquet")
    out = tmp_path / "t.parquet"
    result = run(missing_inputs, out, "--cross-encoder", str(tmp_path / "no-such-model"))
    assert_failed_cleanly(result, out, "cross-encoder")
    assert "path not found" in result.output


@pytest.mark.parametrize("where,message", [
    ("/proc/hnmine-out.parquet", "cannot create files in /proc"),
    ("FILE/t.parquet", "is not a directory"),
    ("x" * 240 + ".parquet", "the file name is too long"),
    ("missing-dir/t.parquet", "does not exist"),
])
def test_hostile_output_paths_fail_before_any_work(inputs, tmp_path, where, message):
    (tmp_path / "FILE").write_text("a file, not a folder")
    out = Path(where) if where.startswith("/") else tmp_path / where
    result = run(inputs, out)
    one_error_line(result, message)
    assert not out.exists()


def test_manifest_path_that_is_a_directory_is_refused_before_publishing(inputs, tmp_path):
    out = tmp_path / "t.parquet"
    (tmp_path / "t.parquet.manifest.json").mkdir()
    assert_failed_cleanly(run(inputs, out), out, "is a directory, so it could not be written")


def test_full_disk_is_one_line_and_leaves_no_temp_file(inputs, tmp_path, monkeypatch):
    import hnmine.output

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp_path))

    monkeypatch.setattr(hnmine.output.MinedWriter, "write_formatted", no_space)
    out = tmp_path / "t.parquet"
    result = run(inputs, out, "--no-resume")
    one_error_line(result, "No space left on device")
    assert not out.exists() and leftovers(out) == []


@pytest.mark.parametrize("content,message", [
    (b"not a faiss index at all", "not a FAISS index"),
    (b"", "not a FAISS index"),
])
def test_garbage_load_index_is_one_line(inputs, tmp_path, content, message):
    index = tmp_path / "garbage.faiss"
    index.write_bytes(content)
    out = tmp_path / "t.parquet"
    assert_failed_cleanly(run(inputs, out, *dense(inputs, tmp_path), "--load-index", str(index)), out, message)


@pytest.mark.parametrize("target,message", [("/proc/x.faiss", "cannot create files"),
                                            ("nodir/x.faiss", "does not exist")])
def test_unwritable_save_index_is_refused_up_front(inputs, tmp_path, target, message):
    out = tmp_path / "t.parquet"
    path = target if target.startswith("/") else str(tmp_path / target)
    assert_failed_cleanly(run(inputs, out, *dense(inputs, tmp_path), "--save-index", path), out, message)


def test_save_then_load_index_round_trips(inputs, tmp_path):
    args = dense(inputs, tmp_path)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run(inputs, a, *args, "--save-index", str(tmp_path / "i.faiss")).exit_code == 0
    assert run(inputs, b, *args, "--load-index", str(tmp_path / "i.faiss")).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def bad_embedding_file(folder: Path, kind: str) -> Path:
    path = folder / ("emb.parquet" if kind.startswith("parquet") else "emb.npy")
    if kind == "pickled":
        np.save(path, np.array([{"a": 1}] * 30, dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(path, np.ones((30, 8), np.float32))
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "text":
        path.write_text("hello")
    elif kind == "strings":
        np.save(path, np.array([["a"] * 8] * 30))
    elif kind == "one-dim":
        np.save(path, np.ones(30, np.float32))
    elif kind == "parquet-ragged":
        write(path, doc_id=[f"d{i}" for i in range(30)], embedding=[[1.0] * (2 if i == 7 else 3) for i in range(30)])
    elif kind == "parquet-strings":
        write(path, doc_id=[f"d{i}" for i in range(30)], embedding=["x"] * 30)
    elif kind == "parquet-null":
        write(path, doc_id=[f"d{i}" for i in range(30)], embedding=[None if i == 3 else [1.0, 2.0] for i in range(30)])
    return path


@pytest.mark.parametrize("kind,message", [
    ("pickled", "not a readable numeric .npy array"),
    ("truncated", "not a readable numeric .npy array"),
    ("text", "not a readable numeric .npy array"),
    ("strings", "expected floating-point embeddings"),
    ("one-dim", "expected (30, dim)"),
    ("parquet-ragged", "row 7 (0-based) has 2 values"),
    ("parquet-strings", "expected a list of numbers"),
    ("parquet-null", "row 3 (0-based) is null"),
])
def test_bad_embedding_files_are_one_line(inputs, tmp_path, kind, message):
    path = bad_embedding_file(tmp_path, kind)
    _, q = embeddings_for(inputs, tmp_path)
    out = tmp_path / "t.parquet"
    result = run(inputs, out, "--retriever", "dense", "--corpus-embeddings", str(path), "--query-embeddings", str(q))
    assert_failed_cleanly(result, out, message)


def test_embeddings_path_that_is_a_directory(inputs, tmp_path):
    out = tmp_path / "t.parquet"
    _, q = embeddings_for(inputs, tmp_path)
    result = run(inputs, out, "--retriever", "dense", "--corpus-embeddings", str(tmp_path),
                 "--query-embeddings", str(q))
    assert_failed_cleanly(result, out, "is a directory")


def test_denoise_manifest_path_that_is_a_directory(tmp_path):
    triplets = write(tmp_path / "t.parquet", query=["a q"], positive=["a p"], negative=["a n"])
    out = tmp_path / "o.parquet"
    (tmp_path / "o.parquet.manifest.json").mkdir()
    result = runner.invoke(app, ["denoise", str(triplets), "--output", str(out), "--cross-encoder", "x",
                                 "--max-score", "0.5"])
    one_error_line(result, "is a directory, so it could not be written")
