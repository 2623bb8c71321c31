"""``--engine ray``: the same pipeline, with its embarrassingly parallel work run on a Ray cluster.

Encoding the corpus and the queries, dense search, and cross-encoder scoring are the GPU hours of a mining
run; everything else (exclusion, window, filters, selection, tiers, writing) is cheap columnar work. So the
split is: Ray Data ``map_batches`` stages over Arrow shards do the encoding (an actor pool, one actor per GPU
where the cluster has GPUs, CPU actors otherwise) and the search (one exact FAISS index per corpus shard,
merged exactly by ``hnmine.engines.sharded_search``), cross-encoder actors kept for the run score pairs, and the
driver runs the very same ``Pipeline.run_chunk`` over the same stage objects: the job gives every stage this
engine (``Stage.use_backend``), dense retrievers take the embeddings and top-k lists computed here
(``DenseRetriever.use_results``), and cross-encoders ask this engine's ``score_pairs`` when a local run would
ask the local engine, so the same pairs are scored. No stage is forked, so the rows equal a local run's
(scores up to float rounding: see ``tests/test_ray_engine.py``).

Ray is imported only here, and this module only when ``--engine ray`` is asked for: the local engine never
needs it installed (``pip install hnmine[ray]`` adds it).

Output is a directory of Parquet parts (``part-00000.parquet`` ...) holding exactly the rows, in the same
order, of the single file a local run writes, published by renaming a temporary directory; the manifest
beside it is the local one plus an ``engine`` entry.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hnmine.data import MiningData
from hnmine.engines.encoder import Encoder, resolve_dtype
from hnmine.engines.ray_corpus import ShardedCorpus, ShardEmbeddings, ray_get
from hnmine.engines.sharded_search import TopKMerger, search_shard, shard_bounds
from hnmine.errors import InputError
from hnmine.io.inputs import InputFiles
from hnmine.io.triplets import TripletFile
from hnmine.io.writers import ROW_GROUP_ROWS, MinedWriter, atomic_dir
from hnmine.pipeline import Pipeline
from hnmine.stages.bi_encoder_denoise import BiEncoderDenoiser
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.cross_encoder import CrossEncoderScorer, predict
from hnmine.stages.dense import EXACT_RESCORE_EXTRA, DenseRetriever
from hnmine.stages.hybrid import HybridRetriever
from hnmine.stages.synthetic import SyntheticNegatives

S = TypeVar("S")
ROWS_PER_SHARD = 50_000  # corpus rows per encoding/search shard unless --ray-shards says otherwise
PAIRS_PER_BATCH = 4_096  # cross-encoder pairs handed to an actor at a time
ROWS_PER_PART = 8 * ROW_GROUP_ROWS  # output rows per Parquet part
CORPUS_PLACES = ("driver", "workers")  # --ray-corpus


def _matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list column as a 2-D float32 array (one row per list)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)


def _list_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


class EncodeActor:
    """One encoder per actor (per GPU on a GPU cluster), loaded once, encoding whole shards."""

    def __init__(self, model: str, device: str | None, dtype: str, batch_size: int, prompt: str,
                 threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.prompt = prompt
        self.encoder = Encoder(model=model, device=device, batch_size=batch_size, dtype=dtype, use_cache=False,
                               show_progress=False)

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        emb = self.encoder.encode(texts, prompt=self.prompt)
        truncated = np.zeros(len(texts), dtype=np.int64)
        if len(texts):
            truncated[0] = self.encoder.truncated
        return pa.table({"row": batch.column("row"), "embedding": _list_column(emb), "truncated": truncated})


class CrossEncoderActor:
    """One cross-encoder per actor (per GPU on a GPU cluster), loaded once and kept for the run.

    A plain actor, not a Ray Data stage: the chunk loop asks for scores as a local run does, a chunk's pairs at a
    time and, for a rank-order denoiser, block by block until enough negatives survive; one Ray Data job per
    such call would cost more than the scoring.
    """

    def __init__(self, model: str, device: str | None, max_length: int | None, batch_size: int,
                 threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from hnmine.stages.cross_encoder import load_cross_encoder

        self.model = load_cross_encoder(model, device, max_length)
        self.batch_size = batch_size

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return predict(self.model, pairs, self.batch_size)


def search_shard_batch(batch: pa.Table, query_emb: np.ndarray, k: int) -> pa.Table:
    """A Ray Data task: one exact FAISS index over this corpus shard, every query's top-k in it."""
    ids, scores = search_shard(_matrix(batch.column("embedding")), batch.column("doc_idx").to_numpy(), query_emb, k)
    return pa.table({"query_idx": np.arange(len(query_emb), dtype=np.int64), "ids": _list_column(ids),
                     "scores": _list_column(scores)}) if ids.shape[1] else pa.table({
                         "query_idx": np.zeros(0, np.int64)})


@dataclass
class RayEngine:
    """Where and how wide the Ray stages run; ``prepare_*`` hand their results to a pipeline's stages.

    Cross-encoder pairs are scored when a stage asks (``score_pairs``), on actors kept for the run, so a Ray
    run scores exactly the pairs a local run scores: a rank-order denoiser stops as early on both.
    """

    address: str | None = None
    workers: int | None = None
    shards: int | None = None
    cpus_per_worker: float = 1.0
    corpus: str = "driver"  # --ray-corpus: where the corpus lives (driver | workers: hnmine.engines.ray_corpus)
    _sharded: ShardedCorpus | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)
    _stats: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _scorers: tuple[tuple, list[Any]] | None = field(default=None, init=False, repr=False)  # settings, actors

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--ray-workers must be >= 1, got {self.workers}")
        if self.shards is not None and self.shards < 1:
            raise InputError(f"--ray-shards must be >= 1, got {self.shards}")
        if self.corpus not in CORPUS_PLACES:
            raise InputError(f"--ray-corpus {self.corpus!r}: expected driver or workers")

    def read_inputs(self, inputs: InputFiles, warn: Callable[[str], None] | None = None) -> MiningData:
        """The mining input. With ``--ray-corpus workers`` the corpus is read by shard actors, not here."""
        if self.corpus == "driver":
            return inputs.load(warn)
        if inputs.pairs is not None or inputs.beir is not None:
            raise InputError("--ray-corpus workers reads --queries, --corpus (Parquet) and --qrels; a pairs file "
                             "or a BEIR folder brings its corpus to the driver (use --ray-corpus driver)")
        self._sharded = ShardedCorpus(self)
        return replace(inputs, corpus_reader=self._sharded).load(warn)

    # -- cluster -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Attach to ``address`` (``auto``, ``ray://host:10001``), or to the Ray already initialised in this
        process, or start a local one."""
        try:
            import ray
        except ImportError:
            raise InputError("--engine ray needs Ray: pip install 'hnmine[ray]'") from None
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
            except ConnectionError as exc:
                raise InputError(f"--ray-address {self.address}: {str(exc).splitlines()[0]}") from None
            self._started = True
        import logging

        import ray.data

        for name in ("ray", "ray.data"):  # execution plans and "finished in" lines on every stage
            logging.getLogger(name).setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        resources = ray.cluster_resources()
        self._stats.update(address=self.address or "local", cluster_cpus=resources.get("CPU", 0),
                           cluster_gpus=resources.get("GPU", 0))

    def close(self) -> None:
        """Shut down only a Ray this engine started; an attached cluster or a caller's ``ray.init`` stays up.

        The corpus shard and cross-encoder actors are ended either way: on a Ray that stays up they would hold
        the corpus and the models for as long as this process lives."""
        self._release_scorers()
        if self._sharded is not None:
            self._sharded.close()
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _gpus(self) -> int:
        return int(self._stats.get("cluster_gpus", 0))

    def _pool(self, device: str | None) -> dict[str, Any]:
        """Actor pool size and resources: one actor per GPU on a GPU cluster, else ``workers`` CPU actors."""
        if self._gpus() and (device is None or device.startswith("cuda")):
            return {"concurrency": self.workers or self._gpus(), "num_gpus": 1, "threads": None}
        cpus = max(1.0, float(self.cpus_per_worker))
        default = max(1, int(self._stats.get("cluster_cpus", 1) // cpus))
        return {"concurrency": self.workers or default, "num_cpus": cpus, "threads": int(cpus)}

    def _worker_dtype(self, dtype: str, pool: dict[str, Any]) -> str | None:
        """``auto`` resolved once, on the driver, and sent to every worker as is.

        One precision for the whole corpus, and a cache key known before anything is encoded, so a re-run with
        the default precision reads the cache like a local run. CPU workers get what the driver's CPU computes
        natively (a worker without native bfloat16 is slower, not wrong). A GPU pool seen from a driver
        without CUDA cannot be resolved here: the workers resolve it, and that run skips the cache (None).
        """
        if dtype != "auto":
            return dtype
        if pool.get("num_gpus"):
            import torch

            return resolve_dtype("auto", "cuda") if torch.cuda.is_available() else None
        return resolve_dtype("auto", "cpu")

    def _num_shards(self, rows: int, workers: int) -> int:
        return self.shards or max(workers, math.ceil(rows / ROWS_PER_SHARD))

    def _map(self, tables: list[pa.Table], fn: Any, pool: dict[str, Any], **kwargs: Any) -> Iterator[pa.Table]:
        """Run ``fn`` over each table as one Ray Data block; an actor class becomes an actor pool."""
        import ray.data

        self._release_scorers()  # a pool needs the CPUs / GPUs that cross-encoder actors hold
        resources = {k: v for k, v in pool.items() if k in ("num_cpus", "num_gpus")}
        compute = (ray.data.ActorPoolStrategy(size=pool["concurrency"]) if isinstance(fn, type)
                   else ray.data.TaskPoolStrategy(size=pool["concurrency"]))
        ds = ray.data.from_arrow(tables).map_batches(fn, batch_size=None, batch_format="pyarrow", compute=compute,
                                                     **resources, **kwargs)
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")

    # -- Ray stages ----------------------------------------------------------------------------------------

    def encode(self, encoder: Encoder, texts: list[str], prompt: str = "", label: str = "encode") -> np.ndarray:
        """Unit embeddings of ``texts``: the driver's ``Encoder`` (de-duplication, embedding cache, the same key
        a local run uses) with an encoder actor pool as its backend for the distinct texts it must compute."""
        pool = self._pool(encoder.device)
        dtype = self._worker_dtype(encoder.dtype, pool)
        # dtype None: a GPU pool this driver cannot resolve "auto" for; its workers do, and the cache is skipped
        on_ray = dataclasses.replace(encoder, dtype=dtype or "float32", texts_from_cache=0,
                                     use_cache=encoder.use_cache and dtype is not None)
        on_ray.distinct_backend = partial(self._encode_distinct, encoder, pool, dtype or "auto")
        emb = on_ray.encode(texts, prompt=prompt, label=label)
        if on_ray.texts_from_cache:
            self._count("texts read from the embedding cache", on_ray.texts_from_cache)
        encoder.truncated = on_ray.truncated
        encoder.texts_from_cache += on_ray.texts_from_cache
        return emb

    def _encode_distinct(self, encoder: Encoder, pool: dict[str, Any], dtype: str, distinct: list[str],
                         prompt: str) -> tuple[np.ndarray, int]:
        table = pa.table({"row": np.arange(len(distinct), dtype=np.int64), "text": pa.array(distinct, pa.string())})
        tables = [table.slice(a, b - a) for a, b in shard_bounds(len(distinct), self._num_shards(len(distinct),
                                                                                                 pool["concurrency"]))]
        start = time.perf_counter()
        emb: np.ndarray | None = None
        truncated = 0
        for part in self._map(tables, EncodeActor, pool, fn_constructor_kwargs={
                "model": encoder.model, "device": encoder.device, "dtype": dtype, "batch_size": encoder.batch_size,
                "prompt": prompt, "threads": pool["threads"]}):
            if part.num_rows == 0:
                continue
            vectors = _matrix(part.column("embedding"))
            if emb is None:
                emb = np.empty((len(distinct), vectors.shape[1]), dtype=np.float32)
            emb[part.column("row").to_numpy()] = vectors
            truncated += int(part.column("truncated").to_numpy().sum())
        if emb is None:
            raise InputError("nothing to encode")
        self._count("texts encoded on Ray", len(distinct))
        self._count("encode seconds on Ray", round(time.perf_counter() - start, 2))
        return emb, truncated

    def search(self, doc_emb: np.ndarray, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of every query: one FAISS index per corpus shard (Ray tasks), lists merged exactly."""
        pool = self._pool("cpu")
        bounds = shard_bounds(len(doc_emb), self._num_shards(len(doc_emb), pool["concurrency"]))
        tables = [pa.table({"doc_idx": np.arange(a, b, dtype=np.int64), "embedding": _list_column(doc_emb[a:b])})
                  for a, b in bounds]
        merger = TopKMerger(len(query_emb), k)
        start = time.perf_counter()
        for part in self._map(tables, search_shard_batch, {"concurrency": pool["concurrency"], "num_cpus": 1},
                              fn_kwargs={"query_emb": query_emb, "k": k}):
            if part.num_rows and "ids" in part.column_names:
                merger.add(part.column("query_idx").to_numpy(), _matrix(part.column("ids")).astype(np.int64),
                           _matrix(part.column("scores")))
        self._count("search seconds on Ray", round(time.perf_counter() - start, 2))
        self._stats["corpus_shards"] = len(bounds)
        return merger.result(len(doc_emb))

    def score_pairs(self, scorer: CrossEncoderScorer, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Cross-encoder scores of text pairs, in the order given, from this scorer's actors: the pairs split
        into blocks over the actors, each block scored by the same ``predict`` a local run calls."""
        if not pairs:
            return np.zeros(0, dtype=np.float64)
        actors = self._scorer_actors(scorer)
        blocks = shard_bounds(len(pairs), max(len(actors), math.ceil(len(pairs) / PAIRS_PER_BATCH)))
        start = time.perf_counter()
        scores = np.concatenate(ray_get([actors[i % len(actors)].score.remote(pairs[a:b])
                                         for i, (a, b) in enumerate(blocks)]))
        self._count("cross-encoder pairs scored on Ray", len(pairs))
        self._count("cross-encoder seconds on Ray", round(time.perf_counter() - start, 2))
        return scores

    def _scorer_actors(self, scorer: CrossEncoderScorer) -> list[Any]:
        """The cross-encoder actors of ``scorer``'s settings, started on first use and kept until another model
        or a Ray Data stage needs their CPUs / GPUs (one pool at a time, so a small cluster never waits)."""
        import ray

        settings = (scorer.model, scorer.device, scorer.max_length, scorer.batch_size)
        if self._scorers is not None and self._scorers[0] == settings:
            return self._scorers[1]
        self._release_scorers()
        self.start()
        pool = self._pool(scorer.device)
        # No more actors than the cluster can place (--ray-workers may ask for more): the blocks handed to an
        # actor that never starts would wait forever.
        room = self._gpus() if pool.get("num_gpus") else int(self._stats.get("cluster_cpus", 1) // pool["num_cpus"])
        actor = ray.remote(**{k: v for k, v in pool.items() if k in ("num_cpus", "num_gpus")})(CrossEncoderActor)
        self._scorers = settings, [actor.remote(scorer.model, scorer.device, scorer.max_length, scorer.batch_size,
                                                pool["threads"]) for _ in range(max(1, min(pool["concurrency"], room)))]
        return self._scorers[1]

    def _release_scorers(self) -> None:
        if self._scorers is not None:
            import ray

            for actor in self._scorers[1]:
                ray.kill(actor)
            self._scorers = None

    def _count(self, key: str, value: float) -> None:
        self._stats[key] = self._stats.get(key, 0) + value

    # -- wiring into a pipeline ----------------------------------------------------------------------------

    def check_pipeline(self, pipeline: Pipeline) -> None:
        """Refuse, in one line, what the Ray engine does not distribute, before any work starts."""
        if self.corpus == "workers":
            self._check_corpus_on_workers(pipeline)
        for dense in _dense_retrievers(pipeline):
            if dense.index != "flat" and self.corpus == "driver":
                raise InputError(f"--engine ray: --index {dense.index} is not supported (the Ray engine searches "
                                 "exact per-shard indexes; use --index flat)")
            if (dense.save_index or dense.load_index) and self.corpus == "driver":
                raise InputError("--engine ray: --save-index/--load-index need --ray-corpus workers (each corpus "
                                 "shard saves and loads its own index there)")
            if dense.device and "," in dense.device:
                raise InputError("--engine ray: give one --device (or none); Ray spreads encoding over its "
                                 "workers (--ray-workers)")
        if self.corpus == "workers" and any(isinstance(s, BiEncoderDenoiser) for s in pipeline.stages):
            raise InputError("--ray-corpus workers: a bi-encoder teacher embeds the whole corpus on the driver; use "
                             "--ray-corpus driver")

    def _check_corpus_on_workers(self, pipeline: Pipeline) -> None:
        """What needs the whole corpus on the driver is refused with ``--ray-corpus workers``."""
        for stage in pipeline.stages:
            if stage.kind == "label_graph" and not _searched(pipeline, stage.dense):
                raise InputError("--ray-corpus workers: the label-graph teacher's dense retriever must be the one "
                                 "that searches the corpus shards (it searches its labelled queries with it)")
            if isinstance(stage, SyntheticNegatives):
                raise InputError(f"--ray-corpus workers: the {stage.kind} stage needs the whole corpus on the "
                                 "driver; use --ray-corpus driver")
        for bm25 in _bm25_retrievers(pipeline):
            if bm25.backend != "sparse":
                raise InputError(f"--ray-corpus workers: --bm25-backend {bm25.backend} scores one index over the "
                                 "whole corpus; the shards run the sparse backend (the same scores): use "
                                 "--bm25-backend sparse")
        searched = [d for d in _dense_retrievers(pipeline) if _searched(pipeline, d)]
        if len(searched) > 1:
            raise InputError("--ray-corpus workers: one dense retriever searches the corpus shards; this pipeline "
                             f"has {len(searched)}")

    def prepare_mine(self, pipeline: Pipeline, data: MiningData) -> None:
        """Encode, search and cross-encode on Ray, and give the results to the pipeline's stages."""
        self.check_pipeline(pipeline)
        self.start()
        for dense in _dense_retrievers(pipeline):
            # as deep as the local search: DenseRetriever.exact_topk re-scores a few beyond top_k
            depth = dense.top_k + EXACT_RESCORE_EXTRA if _searched(pipeline, dense) else 0
            self._prepare_dense(dense, data, depth)
        if self._sharded is not None:  # BM25 on the shards (a driver-held corpus is indexed by the stage itself)
            for bm25 in _bm25_retrievers(pipeline):
                self._prepare_bm25(bm25, data)

    def _prepare_bm25(self, bm25: BM25Retriever, data: MiningData) -> None:
        """The retriever searches the shards' BM25 indexes; each chunk's lists are fetched like dense ones."""
        assert self._sharded is not None
        corpus = self._sharded

        def searched(queries: np.ndarray, ids: np.ndarray) -> None:  # this chunk's candidates and positives
            corpus.window(np.concatenate([ids.reshape(-1), *(data.pooled_positives_of(int(q)) for q in queries)]),
                          queries)

        bm25.use_index(data, corpus.bm25(bm25), searched)

    def prepare_denoise(self, pipeline: Pipeline, triplets: TripletFile) -> None:
        """For ``hnmine denoise``: the teacher's pairs are scored on Ray as each chunk asks (``score_pairs``)."""
        self.check_pipeline(pipeline)
        self.start()

    def _prepare_dense(self, dense: DenseRetriever, data: MiningData, k: int) -> None:
        from hnmine.stages.dense import load_embeddings

        notes: dict[str, float] = {}
        unsupported = [flag for flag, v in (("--query-prompt-name", dense.query_prompt_name),
                                            ("--corpus-prompt-name", dense.corpus_prompt_name),
                                            ("--max-seq-length", dense.max_seq_length)) if v]
        if unsupported:
            raise InputError(f"{', '.join(unsupported)} is not available with --engine ray yet (its workers load "
                             "the model themselves); give the prompt text with --query-prompt/--corpus-prompt")
        if self._sharded is not None:
            doc_emb = None
        elif dense.corpus_embeddings:
            doc_emb = load_embeddings(dense.corpus_embeddings, data.doc_ids, "doc_id")
        else:
            doc_emb = self.encode(encoder := dense.encoder(), data.doc_texts, dense.corpus_prompt, "encode corpus")
            notes["passages truncated by the encoder"] = encoder.truncated
        if dense.query_embeddings:
            query_emb = load_embeddings(dense.query_embeddings, data.query_ids, "query_id")
        else:
            query_emb = self.encode(encoder := dense.encoder(), data.query_texts, dense.query_prompt,
                                    "encode queries")
            notes["queries truncated by the encoder"] = encoder.truncated
        if doc_emb is None:
            doc_emb, ids, scores = self._search_shards(dense, data, query_emb, k, notes)
        else:
            if query_emb.shape[1] != doc_emb.shape[1]:
                raise InputError(f"query embeddings have dimension {query_emb.shape[1]}, corpus embeddings "
                                 f"{doc_emb.shape[1]}")
            if k:
                ids, scores = self.search(doc_emb, query_emb, k)
            else:  # nothing searches with it: no Ray search job
                ids, scores = np.zeros((len(query_emb), 0), np.int64), np.zeros((len(query_emb), 0), np.float32)

        def searcher(queries: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
            if want > ids.shape[1] and ids.shape[1] < len(doc_emb):
                raise RuntimeError(f"Ray search ran with k={ids.shape[1]}, a stage asked for {want}")
            want = min(want, ids.shape[1])
            if self._sharded is not None and ids.shape[1]:  # this chunk's candidates and positives, at once
                self._sharded.window(np.concatenate([ids[queries].reshape(-1), *(
                    data.pooled_positives_of(int(q)) for q in queries)]), queries)
            return ids[queries, :want], scores[queries, :want]

        # Other query vectors (the label-graph teacher's labelled queries) are searched by the shards too, the way
        # the data's queries were; with the corpus on the driver the stage asks this engine's ``search``.
        vectors = None
        if self._sharded is not None and k:
            vectors = partial(self._sharded.search, exact=dense.index == "flat")
        dense.use_results(data, doc_emb, query_emb, searcher, notes, vectors)

    def _search_shards(self, dense: DenseRetriever, data: MiningData, query_emb: np.ndarray, k: int,
                       notes: dict[str, float]) -> tuple[ShardEmbeddings, np.ndarray, np.ndarray]:
        """``--ray-corpus workers``: the shards embed and index their rows and answer the queries' top-k; the
        candidates' and positives' rows (ids, texts, embeddings) are then fetched to the driver in one pass."""
        assert self._sharded is not None
        corpus = self._sharded
        empty = np.zeros((len(query_emb), 0), np.int64), np.zeros((len(query_emb), 0), np.float32)
        if not k:  # the query clusters' own retriever: queries only, nothing on the shards
            return ShardEmbeddings(corpus), *empty
        pool = self._pool(dense.device)
        shard_notes = corpus.embed(dense, self._worker_dtype(dense.dtype, pool), pool["threads"])
        dim = int(shard_notes.pop("dimension"))
        if query_emb.shape[1] != dim:
            raise InputError(f"query embeddings have dimension {query_emb.shape[1]}, corpus embeddings {dim}")
        for key in ("texts encoded on Ray", "encode seconds on Ray", "texts read from the embedding cache"):
            value = shard_notes.pop(key, 0)
            if value:  # the manifest's engine entry, as for texts encoded by the driver's pool
                self._count(key, value)
        notes.update(shard_notes)
        ids, scores = corpus.search(query_emb, k, exact=dense.index == "flat")
        return ShardEmbeddings(corpus), ids, scores

    def describe(self) -> dict[str, Any]:
        """The ``engine`` entry of the run manifest."""
        sharded = self._sharded.stats if self._sharded is not None else {}
        return {"kind": "ray", "workers": self.workers, "shards": self.shards, **self._stats, **sharded}

    # -- output --------------------------------------------------------------------------------------------

    @staticmethod
    def check_output(path: str | Path | None, overwrite: bool, fmt: str) -> Path:
        """The output is a directory of Parquet parts; fail before any work, as the local engine does."""
        if path is None:
            raise InputError("missing --output")
        if fmt in ("flagembedding", "tevatron"):
            raise InputError(f"--engine ray writes a partitioned Parquet dataset; --format {fmt} (jsonl) "
                             "needs --engine local")
        path = Path(path)
        if not path.parent.exists():
            raise InputError(f"output {path}: directory {path.parent} does not exist")
        if path.exists() and not overwrite:
            raise InputError(f"output {path}: already exists (pass --overwrite to replace it)")
        return path

    @staticmethod
    @contextmanager
    def output(path: Path) -> Iterator[Path]:
        """A temporary directory beside ``path``, renamed onto it only if the block succeeds."""
        with atomic_dir(path) as tmp:
            yield tmp

    @staticmethod
    def writer(directory: Path, fmt: str, num_negatives: int | None, audit: bool,
               prompt: str | None = None) -> PartitionedWriter:
        return PartitionedWriter(directory, fmt, num_negatives, audit)

    def write_table(self, directory: Path, table: pa.Table) -> None:
        with self.writer(directory, "triplet", None, True) as parts:
            parts.write_formatted(table)


class PartitionedWriter(MinedWriter):
    """``MinedWriter``'s layouts, written as ``part-NNNNN.parquet`` files of a fixed number of rows.

    Fixed-size parts (and row groups), like the local file's row groups, so the dataset's bytes do not
    depend on chunking; read in name order, the parts are exactly the local file's rows.
    """

    def __init__(self, directory: Path, fmt: str, num_negatives: int | None = None, audit: bool = True,
                 rows_per_part: int = ROWS_PER_PART) -> None:
        super().__init__(directory / "part-00000.parquet", fmt, num_negatives, audit)
        self.directory, self.rows_per_part, self.parts = directory, rows_per_part, 0

    def write_formatted(self, payload: pa.Table | list[str], dropped: int = 0) -> None:
        assert not isinstance(payload, list), "the Ray engine writes Parquet layouts only"
        self.rows_dropped += dropped
        if self._schema is None:
            self._schema = payload.schema
        if payload.num_rows:
            self._pending.append(payload.cast(self._schema))
            self._pending_rows += payload.num_rows
            self.rows_written += payload.num_rows
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        while self._pending_rows >= self.rows_per_part or (final and self._pending_rows):
            table = pa.concat_tables(self._pending)
            head, rest = table.slice(0, self.rows_per_part), table.slice(self.rows_per_part)
            pq.write_table(head, self.directory / f"part-{self.parts:05d}.parquet", row_group_size=ROW_GROUP_ROWS)
            self.parts += 1
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def close(self) -> None:
        self._flush(final=True)
        if self.parts == 0 and self._schema is not None:  # no rows: one empty part keeps the schema
            pq.write_table(self._schema.empty_table(), self.directory / "part-00000.parquet")
            self.parts = 1


def _held(pipeline: Pipeline, kind: type[S]) -> list[S]:
    """Every stage of type ``kind`` the pipeline holds, as a stage or a part of one (a hybrid's retrievers, the
    sibling filter's, the query clusters'), each once."""
    found: dict[int, S] = {}
    for stage in pipeline.stages:
        for candidate in (stage, *stage.parts()):
            if isinstance(candidate, kind):
                found.setdefault(id(candidate), candidate)
    return list(found.values())


def _dense_retrievers(pipeline: Pipeline) -> list[DenseRetriever]:
    return _held(pipeline, DenseRetriever)


def _bm25_retrievers(pipeline: Pipeline) -> list[BM25Retriever]:
    return _held(pipeline, BM25Retriever)


def _searched(pipeline: Pipeline, dense: DenseRetriever) -> bool:
    """Whether any stage searches with this retriever (the query clusters' own one only embeds queries)."""
    return any(s is dense or (isinstance(s, HybridRetriever) and s.dense is dense) for s in pipeline.stages)
