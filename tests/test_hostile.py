"""A hostile-input matrix: bad options, bad files, damaged caches and checkpoints, hostile output paths.

Grouped like issue #19: first the cases that used to exit 0 with wrong output or lost data, then the ones that
used to end in a traceback or a permanent failure. Every case runs on tiny data, and none loads a bi-encoder:
dense retrieval reads precomputed embeddings, so the matrix stays fast enough for CI.
"""

from __future__ import annotations

import errno
import json
import os
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


def run_config(inputs, out: Path, config: Path):
    """``--config`` sets the whole pipeline, so no pipeline flags go with it."""
    q, c, r = inputs
    return runner.invoke(app, ["mine", "--queries", str(q), "--corpus", str(c), "--qrels", str(r),
                               "--config", str(config), "--output", str(out), "--quiet"])


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
    assert_failed_cleanly(run_config(inputs, out, config), out, message)


def test_every_stage_kind_has_a_place_in_the_order():
    """A stage kind without a phase could not be placed in the pipeline order; the registry refuses one."""
    from hnmine.stage import Phase, stage_kinds

    kinds = stage_kinds()
    assert len(kinds) >= 18
    lacking = sorted(kind for kind, cls in kinds.items() if not isinstance(getattr(cls, "phase", None), Phase))
    assert not lacking, lacking


def test_a_legal_pipeline_file_still_runs(inputs, tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE_HEAD + EXCLUDE + '[[stage]]\nkind = "rank_window"\nrange_max = 10\n' + SELECT)
    out = tmp_path / "t.parquet"
    result = run_config(inputs, out, config)
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 6


def test_pipeline_file_that_is_a_directory(inputs, tmp_path):
    out = tmp_path / "t.parquet"
    assert_failed_cleanly(run_config(inputs, out, tmp_path), out, "is a directory")


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

    from hnmine.engines.encoder import bundled_model_path

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
    from hnmine.errors import InputError
    from hnmine.stages.cross_encoder import load_cross_encoder

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
    import hnmine.io.writers

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp_path))

    monkeypatch.setattr(hnmine.io.writers.MinedWriter, "write_formatted", no_space)
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


# Resume, checkpoints and concurrent runs ------------------------------------------------------------------


def interrupt_after_first_chunk(monkeypatch) -> None:
    """The next run stops (Ctrl-C) right after checkpointing its first chunk."""
    import hnmine.jobs.checkpoint

    save = hnmine.jobs.checkpoint.ChunkCheckpoint.save

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        monkeypatch.setattr(hnmine.jobs.checkpoint.ChunkCheckpoint, "save", save)
        raise KeyboardInterrupt

    monkeypatch.setattr(hnmine.jobs.checkpoint.ChunkCheckpoint, "save", save_then_stop)


def resumed_equals_fresh(monkeypatch, tmp_path, first: list[str], second: list[str], change=None) -> None:
    """Interrupt a run of ``first`` after one chunk, optionally ``change()`` something, finish ``second`` on the
    same output, and compare with ``second`` run from scratch: a stale chunk would make them differ."""
    out = tmp_path / "t.parquet"
    interrupt_after_first_chunk(monkeypatch)
    result = runner.invoke(app, [*first, "--output", str(out), "--chunk-size", "1"])
    assert result.exit_code == 130, result.output
    assert list((tmp_path / ".t.parquet.partial").glob("chunk-*.json")), "no chunk was checkpointed"
    if change is not None:
        change()
    resumed = runner.invoke(app, [*second, "--output", str(out), "--chunk-size", "1"])
    assert resumed.exit_code == 0, resumed.output
    fresh = tmp_path / "fresh.parquet"
    assert runner.invoke(app, [*second, "--output", str(fresh), "--chunk-size", "1", "--no-resume"]).exit_code == 0
    assert out.read_bytes() == fresh.read_bytes()


def no_output(inputs, *extra: str) -> list[str]:
    """``mine_args`` without ``--output``, which ``resumed_equals_fresh`` adds."""
    return [*mine_args(inputs, Path("unused"))[:-3], "--quiet", *extra]


def test_resume_fingerprint_covers_column_options(monkeypatch, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    q = write(folder / "q.parquet", query_id=["q1", "q2", "q3"], query=["rain clouds", "iron magnets", "lava rock"])
    c = write(folder / "c.parquet", doc_id=[f"d{i}" for i in range(12)],
              text=[f"passage {i} about {['rain', 'iron', 'lava'][i % 3]}" for i in range(12)],
              title=[f"title {i}" for i in range(12)], heading=[["lava", "rain", "iron"][i % 3] * 3 for i in range(12)])
    r = write(folder / "r.parquet", query_id=["q1", "q2", "q3"], doc_id=["d0", "d1", "d2"])
    args = no_output((q, c, r))
    resumed_equals_fresh(monkeypatch, tmp_path, args, [*args, "--title-column", "heading"])


def test_resume_fingerprint_covers_embedding_file_contents(monkeypatch, tmp_path):
    inputs = make_inputs(tmp_path / "in")
    args = no_output(inputs, *dense(inputs, tmp_path))
    rng = np.random.default_rng(9)
    resumed_equals_fresh(monkeypatch, tmp_path, args, args,
                         change=lambda: np.save(tmp_path / "docs.npy", rng.standard_normal((30, 8)).astype(np.float32)))


def test_resume_fingerprint_covers_beir_folder_files(monkeypatch, tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    docs = [f'{{"_id": "d{i}", "title": "", "text": "passage {i} on {["rain", "iron", "lava"][i % 3]} words"}}'
            for i in range(15)]
    (root / "corpus.jsonl").write_text("\n".join(docs) + "\n")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "rain"}\n{"_id": "q2", "text": "iron"}\n'
                                        '{"_id": "q3", "text": "lava"}\n')
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td1\t1\nq3\td2\t1\n")
    args = ["mine", "--beir", str(root), "--retriever", "bm25", "--range-min", "0", "--range-max", "8",
            "--num-negatives", "3", "--quiet"]

    def rewrite_corpus() -> None:
        (root / "corpus.jsonl").write_text("\n".join(d.replace("words", "rain iron lava") for d in docs) + "\n")

    resumed_equals_fresh(monkeypatch, tmp_path, args, args, change=rewrite_corpus)


def test_fingerprint_covers_a_model_folders_files(tmp_path):
    from hnmine.jobs.checkpoint import path_digest

    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"1234")
    before = path_digest(str(model))
    (model / "weights.bin").write_bytes(b"12345")
    assert path_digest(str(model)) != before
    assert path_digest("all-MiniLM-L6-v2") is not None  # the bundled model is fingerprinted by its files


@pytest.mark.parametrize("damage", ["state-json", "missing-chunk", "flipped-bytes", "counts-json", "plain-file",
                                    "empty-chunk"])
def test_damaged_checkpoint_folder_is_repaired_not_fatal(monkeypatch, tmp_path, damage):
    inputs = make_inputs(tmp_path / "in")
    args = no_output(inputs)
    partial = tmp_path / ".t.parquet.partial"

    def spoil() -> None:
        chunk = sorted(partial.glob("chunk-*.parquet"))[0]
        if damage == "state-json":
            (partial / "state.json").write_text("{not json")
        elif damage == "missing-chunk":
            chunk.unlink()
        elif damage == "flipped-bytes":
            raw = bytearray(chunk.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            chunk.write_bytes(bytes(raw))
        elif damage == "counts-json":
            chunk.with_suffix(".json").write_text("[1, 2")
        elif damage == "empty-chunk":
            chunk.write_bytes(b"")
        else:
            shutil.rmtree(partial)
            partial.write_text("not a folder")

    resumed_equals_fresh(monkeypatch, tmp_path, args, args, change=spoil)
    assert leftovers(tmp_path / "t.parquet") == []


def test_second_run_on_the_same_output_is_refused_in_one_line(inputs, tmp_path):
    from hnmine.jobs.checkpoint import OutputLock

    out = tmp_path / "t.parquet"
    with OutputLock(out):
        result = run(inputs, out)
        one_error_line(result, "another hnmine run")
        assert not out.exists() and leftovers(out) == [".t.parquet.lock"]
    assert run(inputs, out).exit_code == 0
    assert leftovers(out) == []


# ``python -m hnmine`` whose first chunk waits until $RELEASE exists: the run certainly holds its output while
# the test starts a second one, however slow the machine.
HELD_HNMINE = """
import os, time
from pathlib import Path
import hnmine.pipeline
run_chunk = hnmine.pipeline.Pipeline.run_chunk
def held_run_chunk(self, *args, **kwargs):
    while not Path(os.environ["RELEASE"]).exists():
        time.sleep(0.02)
    return run_chunk(self, *args, **kwargs)
hnmine.pipeline.Pipeline.run_chunk = held_run_chunk
from hnmine.cli import main
main()
"""


def test_concurrent_processes_on_one_output_one_wins_one_is_refused(tmp_path):
    """Two real processes on the same --output: one writes it, the other stops with one line (no mix of seeds)."""
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    q, c, r = make_inputs(tmp_path / "in")
    out, release = tmp_path / "t.parquet", tmp_path / "release"

    def cmd(seed: str) -> list[str]:
        return [sys.executable, "-c", HELD_HNMINE, *mine_args((q, c, r), out), "--overwrite",
                "--sampling", "random", "--seed", seed, "--chunk-size", "1"]

    env = {**os.environ, "RELEASE": str(release)}
    first = subprocess.Popen(cmd("1"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and not list(tmp_path.glob(".t.parquet.*.tmp")):
            time.sleep(0.01)
        assert first.poll() is None, first.communicate()[1]
        second = subprocess.run(cmd("2"), cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
        release.touch()
        _, first_err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and "another hnmine run" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr and second.stderr.strip().count("\n") == 0
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())
    assert manifest["options"]["seed"] == 1
    reference = tmp_path / "ref.parquet"
    assert runner.invoke(app, [*mine_args((q, c, r), reference), "--sampling", "random", "--seed", "1"]).exit_code == 0
    assert out.read_bytes() == reference.read_bytes()
    assert leftovers(out) == []


def test_ctrl_c_while_publishing_finishes_publishing_and_says_so(inputs, tmp_path, monkeypatch):
    import os
    import signal

    import hnmine.jobs.mine

    write_json = hnmine.jobs.mine.write_json_atomic

    def interrupted_write(path, payload):
        os.kill(os.getpid(), signal.SIGINT)  # lands between the output's rename and its manifest
        write_json(path, payload)

    monkeypatch.setattr(hnmine.jobs.mine, "write_json_atomic", interrupted_write)
    out = tmp_path / "t.parquet"
    result = run(inputs, out)
    one_error_line(result, "t.parquet and its manifest were written and are complete", code=130)
    assert out.exists() and (tmp_path / "t.parquet.manifest.json").exists()
    assert leftovers(out) == []


def test_inputs_are_hashed_as_read_not_at_the_end(inputs, tmp_path, monkeypatch):
    import hashlib

    import hnmine.pipeline

    q, _, _ = inputs
    original = hashlib.sha256(q.read_bytes()).hexdigest()
    run_chunk = hnmine.pipeline.Pipeline.run_chunk

    def rewrite_queries_mid_run(self, *args, **kwargs):
        write(q, query_id=["q1", "q2", "q3"], query=["changed", "after", "reading"])
        return run_chunk(self, *args, **kwargs)

    monkeypatch.setattr(hnmine.pipeline.Pipeline, "run_chunk", rewrite_queries_mid_run)
    out = tmp_path / "t.parquet"
    assert run(inputs, out).exit_code == 0
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())
    assert manifest["inputs"]["queries"]["sha256"] == original


def test_sigterm_mid_run_cleans_up_like_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO
    from tests.test_reliability import SLOW_CHUNKS_HNMINE

    q, c, r = make_inputs(tmp_path / "in")
    out = tmp_path / "t.parquet"
    cmd = [sys.executable, "-c", SLOW_CHUNKS_HNMINE, *mine_args((q, c, r), out), "--chunk-size", "1", "--no-resume"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SLOW_CHUNK_S": "0.5"})
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not list(tmp_path.glob(".t.parquet.*.tmp")):
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be terminated"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM); no output was written" in stderr and "Traceback" not in stderr
    assert not out.exists() and leftovers(out) == []


# Caches: verified on read, repaired on mismatch ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["zeroed", "nan", "truncated", "empty", "wrong-dim", "no-sidecar",
                                    "bad-sidecar"])
def test_damaged_embedding_cache_entry_is_a_miss_and_is_removed(tmp_path, damage):
    from hnmine.engines.encoder import Encoder
    from hnmine.io.cache_files import sidecar

    encoder = Encoder(cache_dir=str(tmp_path))
    entry = tmp_path / "embeddings" / "e.npy"
    emb = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    encoder.truncated = 2
    encoder.write_cache(entry, emb)
    fresh = Encoder(cache_dir=str(tmp_path))
    assert np.array_equal(fresh.read_cache(entry, 5), emb) and fresh.truncated == 2
    size = entry.stat().st_size
    if damage == "zeroed":
        entry.write_bytes(bytes(size))
    elif damage == "nan":
        raw = entry.read_bytes()
        entry.write_bytes(raw[:-16] + np.full(4, np.nan, np.float32).tobytes())
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: size // 2])
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "wrong-dim":
        np.save(entry, np.zeros((5, 3), np.float32))
    elif damage == "no-sidecar":
        sidecar(entry).unlink()
    else:
        sidecar(entry).write_text("{")
    assert Encoder(cache_dir=str(tmp_path)).read_cache(entry, 5) is None
    assert not entry.exists() and not sidecar(entry).exists()  # removed: the next write heals it
    encoder.write_cache(entry, emb)
    assert np.array_equal(Encoder(cache_dir=str(tmp_path)).read_cache(entry, 5), emb)


def test_cache_entry_of_other_row_count_is_not_served(tmp_path):
    from hnmine.engines.encoder import Encoder

    entry = tmp_path / "e.npy"
    Encoder().write_cache(entry, np.ones((5, 4), np.float32))
    assert Encoder().read_cache(entry, 6) is None


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "flipped"])
def test_damaged_bm25_cache_entry_is_rebuilt_and_results_unchanged(inputs, tmp_path, damage):
    from hnmine.io.cache_files import file_sha256, sidecar

    cache = tmp_path / "cache"
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run(inputs, first, "--cache-dir", str(cache)).exit_code == 0
    (entry,) = (cache / "bm25").glob("*.npz")
    raw = entry.read_bytes()
    if damage == "zeroed":
        entry.write_bytes(bytes(len(raw)))
    elif damage == "truncated":
        entry.write_bytes(raw[: len(raw) // 3])
    else:
        entry.write_bytes(raw[:-40] + bytes(b ^ 0x55 for b in raw[-40:]))
    assert run(inputs, second, "--cache-dir", str(cache)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    assert json.loads(sidecar(entry).read_text())["sha256"] == file_sha256(entry)  # healed


def test_quiet_shows_no_model_loading_bars(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    q, c, r = make_inputs(tmp_path / "in")
    out = tmp_path / "t.parquet"
    args = mine_args((q, c, r), out)
    args[args.index("bm25")] = "dense"
    done = subprocess.run([sys.executable, "-m", "hnmine", *args, "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and done.stderr.strip() == "", done.stderr


@pytest.mark.parametrize("encoding", ["dictionary", "string_view"])
def test_categorical_and_string_view_text_columns_are_read_as_strings(tmp_path, encoding):
    import pyarrow as pa

    q, c, r = make_inputs(tmp_path / "in")
    table = pq.read_table(c)
    text = table.column("text")
    text = text.dictionary_encode() if encoding == "dictionary" else text.cast(pa.string_view())
    ids = table.column("doc_id").dictionary_encode()
    pq.write_table(pa.table({"doc_id": ids, "text": text}), tmp_path / "c2.parquet")
    plain, other = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run((q, c, r), plain).exit_code == 0
    result = run((q, tmp_path / "c2.parquet", r), other)
    assert result.exit_code == 0, result.output
    assert plain.read_bytes() == other.read_bytes()


def test_sigterm_stops_the_multi_process_encoding_pool(tmp_path, tiny_sentence_transformer):
    """SIGTERM to a ``--device cpu,cpu`` run stops the pool's worker processes too (they held 1.5 GB when left)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from tests.conftest import REPO

    q, c, r = make_inputs(tmp_path / "in")
    out = tmp_path / "t.parquet"
    args = mine_args((q, c, r), out, "--no-resume", "--device", "cpu,cpu", "--model", tiny_sentence_transformer,
                     "--cache-dir", str(tmp_path / "cache"))
    args[args.index("bm25")] = "dense"
    proc = subprocess.Popen([sys.executable, "-m", "hnmine", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and len(workers) < 2:
            with __import__("contextlib").suppress(psutil.NoSuchProcess):
                workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                           if "resource_tracker" not in " ".join(p.cmdline())]
            time.sleep(0.01)
        assert proc.poll() is None and len(workers) >= 2, (
            f"the pool's workers never showed up while the run lasted (exit {proc.poll()}, {len(workers)} children)")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(workers, timeout=30)
        for worker in alive:  # a failing run must not leave its workers (0.5 GB each) on the test machine
            worker.kill()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert alive == [], f"pool workers still running after SIGTERM: {[p.pid for p in alive]}"
    assert not out.exists() and leftovers(out) == []
