"""``--engine ray --ray-corpus workers``: the corpus read, embedded and indexed by shard actors, never by the driver.

Equality with the local engine is exact here (every column, floats included) wherever the embeddings are the
same floats: with precomputed embeddings both engines score each (query, passage) by the same row-by-row dot
product (``DenseRetriever.exact_topk``), and the shards' top-k lists merge exactly. Where the shards encode
the corpus themselves, a transformer's float32 output moves in the last bits with the batch a text is padded
in, so scores are compared to 1e-5, as in ``test_ray_engine.py``.

The memory test runs a driver in a subprocess whose data segment is capped (``resource.RLIMIT_DATA``) below what
the local engine needs for the corpus: the local engine fails under the cap, the Ray engine with the corpus
on its workers mines it, and its output equals the local engine's uncapped one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
WORKERS = ("--engine", "ray", "--ray-corpus", "workers", "--ray-workers", "2")

_spec = importlib.util.spec_from_file_location("ray_scale_bench", REPO / "benchmarks" / "ray_scale.py")
ray_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ray_scale)


@pytest.fixture(scope="module")
def sample_embeddings(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Seeded random unit embeddings of sample_data/ (.npy, input row order): same floats for both engines."""
    root = tmp_path_factory.mktemp("sample-emb")
    rng = np.random.default_rng(3)
    paths = []
    for name in ("corpus", "queries"):
        rows = pq.read_metadata(sample_dir / f"{name}.parquet").num_rows
        path = root / f"{name}.npy"
        np.save(path, rng.standard_normal((rows, 32)).astype(np.float32))
        paths.append(str(path))
    return paths[0], paths[1]


def mine(sample_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess | None:
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--quiet", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return None


def precomputed(embeddings: tuple[str, str]) -> tuple[str, ...]:
    return ("--corpus-embeddings", embeddings[0], "--query-embeddings", embeddings[1])


def manifests(local: Path, ray_out: Path) -> tuple[dict, dict]:
    return tuple(json.loads(p.with_name(p.name + ".manifest.json").read_text()) for p in (local, ray_out))


def assert_same_counts(local: dict, ray_out: dict) -> None:
    assert local["counts"]["rows_written"] == ray_out["counts"]["rows_written"] > 0
    assert [(s["kind"], s["rows_in"], s["rows_out"]) for s in local["counts"]["stages"]] == \
        [(s["kind"], s["rows_in"], s["rows_out"]) for s in ray_out["counts"]["stages"]]
    assert local["counts"]["documents"] == ray_out["counts"]["documents"]


def test_dense_with_precomputed_embeddings_equals_local_exactly(ray_local, sample_dir: Path, tmp_path: Path,
                                                                sample_embeddings: tuple[str, str]) -> None:
    """Three shards on two workers; every column, floats included, equals the local run's."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = ("--sampling", "random", "--seed", "7", "--top-k", "20", *precomputed(sample_embeddings))
    mine(sample_dir, local, *options)
    mine(sample_dir, ray_out, *options, *WORKERS, "--ray-shards", "3")
    assert pq.read_table(ray_out).equals(pq.read_table(local))
    a, b = manifests(local, ray_out)
    assert_same_counts(a, b)
    engine = b["engine"]
    assert engine["corpus_on"] == "workers" and engine["corpus_shards"] == 3


@pytest.mark.parametrize("options", [
    ("--retriever", "bm25"),
    ("--retriever", "hybrid", "--sampling", "random", "--seed", "3"),
    ("--lexical-top", "40", "--sibling-percentile", "80"),
], ids=["bm25", "hybrid", "lexical-top"])
def test_bm25_on_the_shards_equals_local(ray_local, sample_dir: Path, tmp_path: Path,
                                         sample_embeddings: tuple[str, str], options: tuple[str, ...]) -> None:
    """Each shard weighs its own BM25 index by the collection's idf and mean length (summed by the driver from
    the shards' counts): BM25, hybrid and the sibling filter's lexical agreement give the local run's bytes."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = (*options, "--top-k", "30", "--no-cache", *precomputed(sample_embeddings))
    mine(sample_dir, local, *options)
    mine(sample_dir, ray_out, *options, *WORKERS, "--ray-shards", "3")
    assert pq.read_table(ray_out).equals(pq.read_table(local))
    a, b = manifests(local, ray_out)
    assert_same_counts(a, b)
    assert b["engine"]["corpus_shards"] == 3 and b["engine"]["BM25 index seconds on Ray"] >= 0


def test_shards_keep_their_bm25_counts_in_the_cache(ray_local, sample_dir: Path, tmp_path: Path) -> None:
    """A re-run (another window) reads every shard's term counts from the BM25 cache instead of tokenizing,
    and writes the rows an uncached run writes."""
    options = ("--retriever", "bm25", "--top-k", "30", *WORKERS, "--ray-shards", "3")
    cached = ("--cache-dir", str(tmp_path / "cache"))
    first, second, uncached = tmp_path / "first.parquet", tmp_path / "second.parquet", tmp_path / "uncached.parquet"
    mine(sample_dir, first, *options, *cached)
    mine(sample_dir, second, *options, *cached, "--range-max", "20")
    mine(sample_dir, uncached, *options, "--no-cache", "--range-max", "20")
    engines = [json.loads(p.with_name(p.name + ".manifest.json").read_text())["engine"]
               for p in (first, second, uncached)]
    assert [e["BM25 shards read from the cache"] for e in engines] == [0, 3, 0]
    assert pq.read_table(second).equals(pq.read_table(uncached))


def test_a_positive_copied_into_the_corpus_is_no_negative(ray_local, sample_dir: Path, tmp_path: Path,
                                                          sample_embeddings: tuple[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Exclusion by text with the corpus on the workers: a positive's text copied under another id (other case
    and spacing, the positive's own embedding, so it ranks first) is excluded as locally, from fingerprints of
    the fetched rows; the driver never allocates MiningData's fingerprint slot per passage."""
    from hnmine.data import MiningData

    root = tmp_path / "data"
    root.mkdir()
    corpus, qrels = pq.read_table(sample_dir / "corpus.parquet"), pq.read_table(sample_dir / "qrels.parquet")
    ids, texts = corpus.column("doc_id").to_pylist(), corpus.column("text").to_pylist()
    positive = ids.index(qrels.column("doc_id")[0].as_py())
    copy = next(i for i, d in enumerate(ids) if d not in set(qrels.column("doc_id").to_pylist()))
    texts[copy] = "  " + texts[positive].upper().replace(" ", "   ") + " "
    titles = corpus.column("title").to_pylist()
    titles[copy] = titles[positive]  # a passage's text is its title and text
    corpus = corpus.set_column(corpus.column_names.index("text"), "text", pa.array(texts))
    pq.write_table(corpus.set_column(corpus.column_names.index("title"), "title", pa.array(titles)),
                   root / "corpus.parquet")
    for name in ("queries", "qrels"):
        pq.write_table(pq.read_table(sample_dir / f"{name}.parquet"), root / f"{name}.parquet")
    query = qrels.column("query_id")[0].as_py()
    emb, query_emb = np.load(sample_embeddings[0]), np.load(sample_embeddings[1])
    emb[copy] = emb[positive]  # the positive and its copy are the query's nearest passages
    query_emb[pq.read_table(sample_dir / "queries.parquet").column("query_id").to_pylist().index(query)] = emb[copy]
    np.save(root / "corpus.npy", emb)
    np.save(root / "queries.npy", query_emb)
    options = ("--range-min", "0", "--top-k", "20", "--corpus-embeddings", str(root / "corpus.npy"),
               "--query-embeddings", str(root / "queries.npy"))  # ranks from 1: the copy would be the first negative
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    mine(root, local, *options)

    def no_slot_per_passage(self):
        raise AssertionError("a fingerprint slot per passage on the driver")

    monkeypatch.setattr(MiningData, "_doc_key_cache", property(no_slot_per_passage))
    mine(root, ray_out, *options, *WORKERS, "--ray-shards", "3")
    assert pq.read_table(ray_out).equals(pq.read_table(local))
    rows = pq.read_table(local).to_pylist()
    assert any(r["query_id"] == query for r in rows)
    assert ids[copy] not in {r["negative_id"] for r in rows if r["query_id"] == query}
    assert_same_counts(*manifests(local, ray_out))


def test_shard_actors_end_with_the_run(ray_local, sample_dir: Path, tmp_path: Path,
                                       sample_embeddings: tuple[str, str]) -> None:
    """On a Ray that stays up (attached, or this process's own), the shards do not outlive the run."""
    from hnmine.engines.base import engine_for
    from hnmine.io.inputs import InputFiles
    from hnmine.jobs.mine import MineJob
    from hnmine.jobs.mine import mine as run_mine
    from hnmine.recipe import MineOptions
    from hnmine.stages.dense import DenseRetriever

    engine = engine_for("ray", None, 2, 2, "workers")
    dense = DenseRetriever(corpus_embeddings=sample_embeddings[0], query_embeddings=sample_embeddings[1])
    inputs = InputFiles(queries=sample_dir / "queries.parquet", corpus=sample_dir / "corpus.parquet",
                        qrels=sample_dir / "qrels.parquet")
    def alive() -> int:
        from ray._private.state import actors

        return sum(a["ActorClassName"] == "CorpusShard" and a["State"] == "ALIVE" for a in actors().values())

    before = alive()
    run_mine(MineJob(output=tmp_path / "out.parquet", options=MineOptions(dense=dense)), inputs, engine)
    assert engine.describe()["corpus_shards"] == 2 and ray_local.is_initialized()
    for _ in range(100):  # ray.kill is asynchronous: the actor table follows within moments
        if alive() == before:
            break
        time.sleep(0.1)
    assert alive() == before


def test_cross_encoder_recipe_equals_local(ray_local, sample_dir: Path, tmp_path: Path,
                                           sample_embeddings: tuple[str, str], tiny_cross_encoder: str) -> None:
    """The cross-encoder scores, on its Ray actors, exactly the pairs a local run scores: the rank-order
    denoiser asks for each query's candidates best rank first and stops at the last needed survivor on both
    engines (their passages fetched from the shards), and the rows are the same bytes. More workers than the
    cluster can place do not leave scoring waiting for an actor that never starts."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    # a threshold inside the tiny model's scores: about half the candidates dropped, so queries need several
    # rank-order rounds, and most stop before the end of their window
    options = ("--cross-encoder", tiny_cross_encoder, "--max-score", "0.498633", "--range-max", "30",
               *precomputed(sample_embeddings))
    mine(sample_dir, local, *options)
    # 3 workers asked of a 2-CPU Ray: 3 shards, and as many cross-encoder actors as it can place (2)
    mine(sample_dir, ray_out, *options, "--engine", "ray", "--ray-corpus", "workers", "--ray-workers", "3")
    assert "negative_ce_score" in pq.read_table(local).column_names
    assert pq.read_table(ray_out).equals(pq.read_table(local))
    a, b = manifests(local, ray_out)
    assert_same_counts(a, b)
    denoised = next(s for s in a["counts"]["stages"] if s["kind"].endswith("cross_encoder_denoise"))
    assert 0 < denoised["rows_out"] < denoised["rows_in"] / 2
    unscored = "candidates left unscored (ranked below the last needed survivor)"
    assert a["counts"]["notes"][unscored] == b["counts"]["notes"][unscored] > 0  # the lazy path ran, and stopped
    pairs = a["cross_encoder_pairs_scored"]
    assert b["cross_encoder_pairs_scored"] == b["engine"]["cross-encoder pairs scored on Ray"] == pairs > 0


@pytest.fixture(scope="module")
def small_sample(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data/ with its corpus cut to the positives and 40 other passages: the default model encodes it
    in seconds (a random-weight tiny model would not do: its embeddings are near-ties that float rounding
    reorders)."""
    import shutil

    root = tmp_path_factory.mktemp("small-sample")
    corpus = pq.read_table(sample_dir / "corpus.parquet")
    positives = set(pq.read_table(sample_dir / "qrels.parquet").column("doc_id").to_pylist())
    keep = [i for i, d in enumerate(corpus.column("doc_id").to_pylist()) if d in positives or i < 40]
    pq.write_table(corpus.take(keep), root / "corpus.parquet")
    for name in ("queries", "qrels"):
        shutil.copy(sample_dir / f"{name}.parquet", root / f"{name}.parquet")
    return root


def test_shards_encode_with_the_encoder_and_its_cache(ray_local, small_sample: Path, tmp_path: Path) -> None:
    """Without precomputed embeddings each shard encodes its rows with the same Encoder; a re-run with another
    filter reads every shard from the embedding cache instead of encoding again."""
    local, first, second = tmp_path / "local.parquet", tmp_path / "first.parquet", tmp_path / "second.parquet"
    options = ("--dtype", "float32", "--top-k", "20", "--cache-dir", str(tmp_path / "cache"))
    mine(small_sample, local, *options)
    mine(small_sample, first, *options, *WORKERS)
    local_rows, ray_rows = pq.read_table(local), pq.read_table(first)
    for name in local_rows.column_names:
        a, b = local_rows.column(name), ray_rows.column(name)
        if pa.types.is_floating(a.type):
            assert np.allclose(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False), atol=1e-5), name
        else:
            assert a.to_pylist() == b.to_pylist(), name
    passages = pq.read_metadata(small_sample / "corpus.parquet").num_rows
    engine = manifests(local, first)[1]["engine"]
    assert engine["texts encoded on Ray"] == passages  # by the shards; the queries came from the local run's cache
    mine(small_sample, second, *options, *WORKERS, "--range-max", "15")
    engine = manifests(local, second)[1]["engine"]
    assert engine["texts read from the embedding cache"] >= passages and "texts encoded on Ray" not in engine


def test_hnsw_per_shard(ray_local, sample_dir: Path, tmp_path: Path, sample_embeddings: tuple[str, str]) -> None:
    """Approximate indexes are built per shard (the retriever's own index code); at this size HNSW is exact."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = ("--index", "hnsw", "--top-k", "20", *precomputed(sample_embeddings))
    mine(sample_dir, local, *options)
    mine(sample_dir, ray_out, *options, *WORKERS)
    assert pq.read_table(ray_out).equals(pq.read_table(local))


def test_shard_indexes_are_saved_and_loaded(ray_local, sample_dir: Path, tmp_path: Path,
                                            sample_embeddings: tuple[str, str]) -> None:
    """--save-index FILE: each shard writes FILE.shard-I-of-N, then FILE names them (rows, corpus digest, index
    kind); --load-index FILE reads them back (a missing shard file is the shard's error, so the shards really
    read them) and gives the same rows. A FILE of another cut, corpus or index kind is refused in one line."""
    index = tmp_path / "idx" / "corpus.hnsw"
    index.parent.mkdir()
    options = ("--index", "hnsw", "--top-k", "20", *precomputed(sample_embeddings), *WORKERS)
    saved, loaded = tmp_path / "saved.parquet", tmp_path / "loaded.parquet"
    mine(sample_dir, saved, *options, "--ray-shards", "3", "--save-index", str(index))
    assert sorted(p.name for p in index.parent.iterdir()) == ["corpus.hnsw", *(
        f"corpus.hnsw.shard-0000{i}-of-00003" for i in range(3))]
    mine(sample_dir, loaded, *options, "--ray-shards", "3", "--load-index", str(index))
    assert pq.read_table(loaded).equals(pq.read_table(saved))
    corpus = pq.read_table(sample_dir / "corpus.parquet")
    other = tmp_path / "other" / "corpus.parquet"
    other.parent.mkdir()
    (tmp_path / "refused").mkdir()
    pq.write_table(corpus.set_column(2, "text", pa.array([t + "." for t in corpus.column("text").to_pylist()])),
                   other)
    for corpus_path, extra, message in (
            (None, ("--ray-shards", "2"), "saved from 3 shards, this run cuts the corpus into 2; pass --ray-shards 3"),
            (other, ("--ray-shards", "3"), "saved from another corpus"),
            (None, ("--ray-shards", "3", "--index", "flat"), "saved with --index hnsw; pass --index hnsw")):
        out = _fail(sample_dir, tmp_path / "refused", corpus_path, *options, *extra, "--load-index", str(index))
        assert f"--load-index {index}: {message}" in out
    (index.parent / "corpus.hnsw.shard-00001-of-00003").unlink()
    out = _fail(sample_dir, tmp_path / "refused", None, *options, "--ray-shards", "3", "--load-index", str(index))
    assert f"--load-index {index}.shard-00001-of-00003: not found" in out


def _fail(sample_dir: Path, tmp_path: Path, corpus: Path | None, *extra: str) -> str:
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(corpus or sample_dir /
                                                                                      "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(tmp_path / "out.parquet"), "--quiet", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.parquet").exists()
    return " ".join(result.output.split())


@pytest.mark.parametrize(("extra", "message"), [
    (("--ray-corpus", "nowhere"), "--ray-corpus 'nowhere': expected driver or workers"),
])
def test_what_needs_the_corpus_on_the_driver_is_refused(ray_local, sample_dir: Path, tmp_path: Path,
                                                        extra: tuple[str, ...], message: str) -> None:
    assert message in _fail(sample_dir, tmp_path, None, *WORKERS, *extra)


@pytest.mark.parametrize(("extra", "message"), [
    (("--retriever", "bm25", "--bm25-backend", "rank-bm25"), "--ray-corpus workers: --bm25-backend rank-bm25 "),
    (("--ray-corpus", "driver", "--save-index", "index.faiss"), "--save-index/--load-index need --ray-corpus workers"),
])
def test_refused_before_ray_starts_or_a_shard_reads(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    extra: tuple[str, ...], message: str) -> None:
    """What workers mode cannot run is refused in one line from the options alone: no Ray started, no shard
    actor created, no corpus read, nothing written (each of those raises here if it is reached)."""
    from hnmine.engines.ray import RayEngine
    from hnmine.engines.ray_corpus import ShardedCorpus

    def reached(what: str):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} before the refusal")
        return fail

    monkeypatch.setattr(RayEngine, "start", reached("Ray started"))
    monkeypatch.setattr(ShardedCorpus, "__call__", reached("the corpus was read"))
    out = _fail(sample_dir, tmp_path, None, *WORKERS, *extra)
    assert message in out and "before the refusal" not in out
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_ends_its_actors(ray_local, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      sample_embeddings: tuple[str, str], tiny_cross_encoder: str) -> None:
    """A stage raising mid-run, in a Python process that keeps its Ray: the shard and cross-encoder actors the
    run started end with it, and no output is left."""
    from hnmine.engines.base import engine_for
    from hnmine.io.inputs import InputFiles
    from hnmine.jobs.mine import MineJob
    from hnmine.jobs.mine import mine as run_mine
    from hnmine.recipe import MineOptions
    from hnmine.stages.dense import DenseRetriever
    from hnmine.stages.selection import NegativeSelector

    calls = []

    def fail_on_the_second_chunk(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a stage failed")
        return original(self, batch)

    original = NegativeSelector.apply
    monkeypatch.setattr(NegativeSelector, "apply", fail_on_the_second_chunk)
    engine = engine_for("ray", None, 2, 2, "workers")
    dense = DenseRetriever(corpus_embeddings=sample_embeddings[0], query_embeddings=sample_embeddings[1])
    inputs = InputFiles(queries=sample_dir / "queries.parquet", corpus=sample_dir / "corpus.parquet",
                        qrels=sample_dir / "qrels.parquet")
    options = MineOptions(dense=dense, cross_encoder=tiny_cross_encoder, margin=0.0, range_max=30, chunk_size=64)
    before = live_actors()
    with pytest.raises(RuntimeError, match="a stage failed"):
        run_mine(MineJob(output=tmp_path / "out.parquet", options=options), inputs, engine)
    assert len(calls) == 2 and engine.describe()["corpus_shards"] == 2 and ray_local.is_initialized()
    for _ in range(100):  # ray.kill is asynchronous: the actor table follows within moments
        if live_actors() == before:
            break
        time.sleep(0.1)
    assert live_actors() == before
    assert not (tmp_path / "out.parquet").exists()


def live_actors() -> dict[str, int]:
    """Live CorpusShard and cross-encoder actors on this process's Ray, by class."""
    from ray._private.state import actors

    alive = [a["ActorClassName"] for a in actors().values() if a["State"] == "ALIVE"]
    return {name: alive.count(name) for name in ("CorpusShard", "CrossEncoderActor")}


def test_ray_corpus_needs_the_ray_engine(sample_dir: Path, tmp_path: Path) -> None:
    assert "--ray-corpus needs --engine ray" in _fail(sample_dir, tmp_path, None, "--ray-corpus", "workers")


def test_shard_errors_name_the_file_row(ray_local, sample_dir: Path, tmp_path: Path) -> None:
    """A shard checks its rows as a local read would and names the row of the file, not of the shard; an id
    repeated in two shards is found too."""
    corpus = pq.read_table(sample_dir / "corpus.parquet")
    texts = corpus.column("text").to_pylist()
    texts[400] = "  "
    empty = tmp_path / "empty.parquet"
    pq.write_table(corpus.set_column(corpus.column_names.index("text"), "text", pa.array(texts)), empty)
    out = _fail(sample_dir, tmp_path, empty, *WORKERS, "--ray-shards", "3")
    assert f"{empty}: column 'text' row 400 (0-based)" in out and "is empty" in out
    ids = corpus.column("doc_id").to_pylist()
    ids[450] = ids[10]
    repeated = tmp_path / "repeated.parquet"
    pq.write_table(corpus.set_column(corpus.column_names.index("doc_id"), "doc_id", pa.array(ids)), repeated)
    out = _fail(sample_dir, tmp_path, repeated, *WORKERS, "--ray-shards", "3")
    assert f"duplicate doc_id {ids[10]!r} in rows 10 and 450" in out


DRIVER = """
import os, resource, sys, traceback
import faiss, numpy, pyarrow.parquet, ray, torch  # what any run imports, before the cap
from hnmine.engines.base import engine_for
from hnmine.io.inputs import InputFiles
from hnmine.jobs.mine import MineJob, mine
from hnmine.recipe import MineOptions
from hnmine.stages.dense import DenseRetriever
files, out, engine_name, address, headroom = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
engine = engine_for("ray", address, 2, None, "workers") if engine_name == "ray" else engine_for("local")
if engine_name == "ray":
    engine.start()  # attach before the cap: the connection's own threads are not the corpus
used = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmData")) * 1024
resource.setrlimit(resource.RLIMIT_DATA, (used + headroom, used + headroom))
dense = DenseRetriever(corpus_embeddings=files + "/corpus_emb.npy", query_embeddings=files + "/query_emb.npy")
job = MineJob(output=out, options=MineOptions(dense=dense, top_k=20))
inputs = InputFiles(queries=files + "/queries.parquet", corpus=files + "/corpus.parquet",
                    qrels=files + "/qrels.parquet")
try:
    mine(job, inputs, engine)
except MemoryError:
    traceback.print_exc()
    sys.exit(3)
"""


def test_driver_under_a_memory_cap_mines_a_corpus_it_could_not_hold(ray_local, tmp_path: Path) -> None:
    """60,000 passages (~25 MB of text, 23 MB of embeddings), a driver allowed 60 MB more than it holds after
    its imports: the local engine runs out of memory reading the corpus, the Ray engine with the corpus on
    its workers mines it, and its rows equal the local engine's (run here, uncapped)."""
    files = tmp_path / "data"
    ray_scale.write_synthetic_corpus(files, passages=60_000, queries=40, dim=96, words=60, seed=1)
    address = ray_local.get_runtime_context().gcs_address
    headroom = str(60 * 2**20)
    # one thread pool and two malloc arenas: threads started after the cap would count against it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2", "TOKENIZERS_PARALLELISM": "false"}
    capped = {name: subprocess.run([sys.executable, "-c", DRIVER, str(files), str(tmp_path / f"{name}.parquet"),
                                    name, address, headroom], capture_output=True, text=True, cwd=REPO, env=env,
                                   timeout=600)
              for name in ("local", "ray")}
    assert capped["local"].returncode != 0 and "MemoryError" in capped["local"].stderr, capped["local"].stderr[-2000:]
    assert capped["ray"].returncode == 0, capped["ray"].stderr[-3000:]
    reference = tmp_path / "reference.parquet"
    mine_args = ray_scale.mine_args({p.name: p for p in files.iterdir()}, reference)
    result = runner.invoke(app, [*mine_args, "--top-k", "20"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "ray.parquet").equals(pq.read_table(reference))
    engine = json.loads((tmp_path / "ray.parquet.manifest.json").read_text())["engine"]
    assert engine["rows fetched to the driver"] <= 40 * (20 + 8) + 40  # candidates searched, and positives
