"""``--ray-corpus workers``: the corpus lives on the Ray workers, and the driver holds only query-side state.

With ``--ray-corpus driver`` (the default) the driver reads every passage and every corpus embedding, so the
largest corpus it can mine is bounded by one machine's memory. Here each ``CorpusShard`` actor reads its own
row range of the corpus Parquet file (any path ``pyarrow.fs`` opens: local, NFS, ``s3://``, ``gs://``,
``hdfs://``), validates it with the same ``corpus_rows`` a local run reads the whole file with, embeds it with
the same ``Encoder`` (and its embedding cache, keyed as locally, per shard) or takes its rows of the
precomputed embeddings, and builds its own FAISS index with the retriever's own ``_build_index`` (flat, IVF
or HNSW). BM25 runs on the shards too: each tokenizes its rows and reports its words' document frequencies
and its total length, the driver sums them into the collection's idf and mean length and sends each shard its
words' idf back, and each shard weighs its own sparse index with them (``SparseBM25Index.over_part``), so its
scores are the floats one index over the whole corpus holds. The driver sends the query embeddings (or
tokens), merges the shards' top-k exactly
(``hnmine.engines.sharded_search``), and fetches from the shards only the rows the stages and the writer
touch, one chunk of queries at a time: its candidates and positives (id, text, embedding). ``ShardedCorpus``
hands those to the unchanged ``MiningData`` as sequences of corpus length that fetch on demand, so every stage
and writer runs as in a local run.

What the driver holds grows with the queries (their embeddings and top-k lists) and the chunk size (one
chunk's rows), not with the corpus; only, while they are computed, the shards' 8-byte id fingerprints (to find
an id repeated across shards) and, with BM25, the collection's vocabulary.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from hnmine.engines.bm25_index import SparseBM25Index, TermCounts, TokenStream, collection_idf
from hnmine.engines.sharded_search import TopKMerger, search_index, shard_bounds
from hnmine.engines.tokenize import tokenize
from hnmine.errors import InputError
from hnmine.io.inputs import ColumnNames, corpus_rows

if TYPE_CHECKING:
    from hnmine.engines.ray import RayEngine
    from hnmine.stages.bm25 import BM25Retriever
    from hnmine.stages.dense import DenseRetriever

QUERIES_PER_SEARCH = 8192  # query embeddings searched per shard call: bounds what one answer holds
BM25_COUNTS_FORMAT = "hnmine-bm25-shard-counts-v1"  # a shard's BM25 term counts in the cache
SHARD_INDEXES_FORMAT = "hnmine-ray-shard-indexes-v1"  # --save-index FILE: what the shards' FILE.shard-* hold


def shard_index_path(path: str | None, shard: int, shards: int) -> str | None:
    """Shard ``shard``'s own FAISS index file beside ``--save-index/--load-index FILE``."""
    return f"{path}.shard-{shard:05d}-of-{shards:05d}" if path else None


def _filesystem(path: str) -> tuple[Any, str]:
    """The ``pyarrow.fs`` filesystem of a path or URI, and the path within it."""
    import pyarrow.fs

    # A URI that went through pathlib.Path (the CLI's --corpus) has lost a slash: s3:/bucket/key
    path = re.sub(r"^file:/+", "/", path)
    path = re.sub(r"^([A-Za-z][\w+.-]+):/(?!/)", r"\1://", path)
    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def _parquet_file(path: str) -> Any:
    import pyarrow.parquet as pq

    try:
        fs, inner = _filesystem(path)
        return pq.ParquetFile(inner, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--corpus {path}: --ray-corpus workers reads the corpus as Parquet row ranges, and this "
                         f"is not a readable Parquet file ({first}); convert it to Parquet first") from None


def parquet_rows(path: str, start: int, end: int) -> pa.Table:
    """Rows ``[start, end)`` of a Parquet file, reading only the row groups that hold them."""
    file = _parquet_file(path)
    meta, groups, first, row = file.metadata, [], None, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if row < end and row + n > start:
            groups.append(g)
            first = row if first is None else first
        row += n
    if not groups:
        return file.schema_arrow.empty_table()
    return file.read_row_groups(groups).slice(start - first, end - start)


def _id_keys(ids: list[str]) -> np.ndarray:
    """64-bit fingerprints of ids: the driver finds an id repeated across shards from 8 bytes per passage."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                       "little") for i in ids), dtype=np.uint64, count=len(ids))


class CorpusShard:
    """One Ray actor: rows ``[start, end)`` of the corpus, their embeddings and their own FAISS index."""

    def __init__(self, path: str, start: int, end: int, columns: ColumnNames) -> None:
        self.path, self.start, self.end, self.columns = path, start, end, columns
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.emb: np.ndarray | None = None
        self.index: Any = None
        self.bm25: dict[tuple, SparseBM25Index | TermCounts] = {}  # per BM25 setting: counted, then indexed

    def load(self) -> tuple[int, str, np.ndarray]:
        """Read and check the shard; (rows, content digest, id fingerprints) for the driver."""
        from hnmine.jobs.checkpoint import update_texts

        table = parquet_rows(self.path, self.start, self.end)
        self.ids, self.texts = corpus_rows(table, self.path, self.columns, first_row=self.start)
        h = hashlib.sha256(b"hnmine-corpus-shard-v1")
        update_texts(h, self.ids)
        update_texts(h, self.texts)
        return len(self.ids), h.hexdigest(), _id_keys(self.ids)

    def rows_of(self, keys: np.ndarray) -> list[tuple[int, str]]:
        """(row, id) of the ids whose fingerprints are ``keys``: to name a repeated id in the error."""
        mine = _id_keys(self.ids)
        return [(self.start + int(i), self.ids[int(i)]) for i in np.flatnonzero(np.isin(mine, keys))]

    def locate(self, wanted: set[str]) -> dict[str, int]:
        """Global row of each wanted id this shard holds: positives are resolved by id here, not on the driver."""
        return {d: self.start + i for i, d in enumerate(self.ids) if d in wanted}

    def embed(self, dense: DenseRetriever, total_rows: int, threads: int | None, save_index: str | None = None,
              load_index: str | None = None) -> dict[str, float]:
        """Embeddings of the shard (the encoder and its cache, or precomputed rows) and its index, built, or
        read from this shard's ``load_index`` file, and written to its ``save_index`` file if given."""
        from hnmine.stages.dense import load_embeddings, stored_vectors

        dense.save_index, dense.load_index = save_index, load_index  # this shard's own files, not the run's
        notes: dict[str, float] = {}
        if dense.corpus_embeddings:
            self.emb = load_embeddings(dense.corpus_embeddings, self.ids, "doc_id", self.start, total_rows)
        else:
            if threads:
                import torch

                torch.set_num_threads(threads)
            encoder = dense.encoder()
            encoder.show_progress = False
            start = time.perf_counter()
            self.emb = encoder.encode(self.texts, prompt=dense.prompts(encoder)[1], label="encode corpus shard")
            notes.update({"passages truncated by the encoder": encoder.truncated,
                          "texts read from the embedding cache": encoder.texts_from_cache,
                          "texts encoded on Ray": len(self.texts) - encoder.texts_from_cache,
                          "encode seconds on Ray": round(time.perf_counter() - start, 2)})
        start = time.perf_counter()
        self.index = dense._build_index(self.emb)  # the local engine's flat / IVF / HNSW, over this shard
        stored = stored_vectors(self.index)
        if stored is not None:
            self.emb = stored  # one copy of the vectors, as locally
        notes["index seconds on Ray"] = round(time.perf_counter() - start, 2)
        notes["dimension"] = int(self.emb.shape[1])
        return notes

    def search(self, query_emb: np.ndarray, lo: int, hi: int, k: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Top-``k`` of queries ``[lo, hi)`` in this shard, as global rows (-1, -inf where IVF found fewer)."""
        assert self.index is not None, "embed() first"
        scores, rows = search_index(self.index, query_emb[lo:hi], k)
        found = rows >= 0
        return (lo, np.where(found, rows + self.start, -1).astype(np.int64),
                np.where(found, scores, -np.inf).astype(np.float32))

    def bm25_counts(self, key: tuple, stopwords: bool, cache_dir: str | None,
                    use_cache: bool) -> tuple[list[str], np.ndarray, int, bool]:
        """Tokenize the shard: its words (in order of first appearance), their document frequencies, and its
        total length, what the driver sums into the collection's statistics; and whether the counts came from
        the BM25 cache (keyed by the shard's texts and the tokenizer's option, so a re-run skips tokenizing)."""
        from hnmine.io.cache_files import read_or_build
        from hnmine.jobs.checkpoint import update_texts
        from hnmine.stages.bm25 import bm25_cache_dir

        def build() -> TermCounts:
            return TermCounts.of(TokenStream(self.texts, partial(tokenize, stopwords=stopwords)))

        cached = False
        if use_cache:
            h = hashlib.sha256(f"{BM25_COUNTS_FORMAT}|{stopwords}|".encode())
            update_texts(h, self.texts)
            counts, cached = read_or_build(bm25_cache_dir(cache_dir) / f"counts-{h.hexdigest()}.npz", {
                "format": BM25_COUNTS_FORMAT, "n_docs": len(self.texts)}, TermCounts.load, build, TermCounts.save_to)
        else:
            counts = build()
        self.bm25[key] = counts
        return counts.words, counts.doc_freq, counts.total_length, cached

    def bm25_index(self, key: tuple, idf: np.ndarray, avgdl: float, k1: float, b: float) -> None:
        """Weigh the shard's counts with the collection's idf and mean length (``bm25_counts`` first)."""
        counts = self.bm25[key]
        assert isinstance(counts, TermCounts), "bm25_counts() first"
        self.bm25[key] = SparseBM25Index.over_part(counts, idf, avgdl, k1, b)

    def bm25_search(self, key: tuple, queries: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top-``k`` of each tokenized query in this shard, as global rows (-1 padding, as the index's)."""
        ids, scores = self.bm25[key].top_k(queries, k)
        return np.where(ids >= 0, ids + self.start, -1), scores

    def bm25_score(self, key: tuple, queries: dict[int, list[str]], query_idx: np.ndarray,
                   doc_idx: np.ndarray) -> np.ndarray:
        """BM25 scores of (query, global row) pairs whose rows are in this shard."""
        return self.bm25[key].score_pairs(queries, query_idx, np.asarray(doc_idx, dtype=np.int64) - self.start)

    def rows(self, doc_idx: np.ndarray, embeddings: bool) -> tuple[list[str], list[str], np.ndarray | None]:
        """Ids, texts and (with ``embeddings``) unit vectors of global rows ``doc_idx``, all in this shard."""
        local = np.asarray(doc_idx, dtype=np.int64) - self.start
        emb = np.asarray(self.emb[local]) if embeddings and self.emb is not None else None
        return [self.ids[i] for i in local.tolist()], [self.texts[i] for i in local.tolist()], emb


def ray_get(refs: Any) -> Any:
    """``ray.get``, with an ``InputError`` raised on a worker re-raised here as the one-line error it is."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, InputError):
            raise InputError(str(cause)) from None
        raise


class ShardColumn(Sequence):
    """Corpus ids or texts as the driver sees them: corpus-long, each row fetched from its shard on first use."""

    def __init__(self, corpus: ShardedCorpus, field: int) -> None:
        self.corpus, self.field = corpus, field

    @property
    def content_digest(self) -> str:
        """What ``jobs.checkpoint.data_digest`` hashes instead of the texts: the shards' own digests."""
        return self.corpus.digest

    def __len__(self) -> int:
        return self.corpus.total

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            raise TypeError("the corpus lives on the Ray workers (--ray-corpus workers): no slices on the driver")
        i = int(i)
        if not 0 <= i < self.corpus.total:
            raise IndexError(i)
        return self.corpus.row(i)[self.field]

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the corpus lives on the Ray workers (--ray-corpus workers): it is not iterated on the "
                        "driver")

    def locate(self, wanted: set[str]) -> Mapping[str, int]:
        """``MiningData.doc_positions``: the rows of these ids, looked up by the shards in their own rows."""
        return self.corpus.locate(wanted)

    def keys_of(self, doc_idx: np.ndarray) -> np.ndarray:
        """``MiningData.doc_keys_of`` for rows on the shards: the text fingerprints of these rows, computed from
        the rows the driver fetches (one chunk's, mostly already there), not kept per passage."""
        from hnmine.data import text_key

        flat = np.asarray(doc_idx, dtype=np.int64).reshape(-1)
        self.corpus.fetch(flat)
        return np.fromiter((text_key(self.corpus.row(i)[1]) for i in flat.tolist()), dtype=np.int64,
                           count=len(flat)).reshape(np.shape(doc_idx))


class ShardEmbeddings:
    """Corpus embeddings indexed like the driver's matrix (``emb[doc_idx]``), fetched from the shards."""

    def __init__(self, corpus: ShardedCorpus) -> None:
        self.corpus = corpus

    def __len__(self) -> int:
        return self.corpus.total

    @property
    def shape(self) -> tuple[int, int]:
        return self.corpus.total, self.corpus.dim

    def __getitem__(self, doc_idx: Any) -> np.ndarray:
        return self.corpus.embeddings(np.asarray(doc_idx, dtype=np.int64))


class ShardedCorpus:
    """The driver's side of ``--ray-corpus workers``: the shard actors, and the rows fetched from them.

    Called as a ``CorpusReader`` (``InputFiles.corpus_reader``), it starts one actor per shard, each reading
    its own rows, and returns corpus-long sequences (``ShardColumn``) plus a positive look-up run on the shards.
    """

    def __init__(self, engine: RayEngine) -> None:
        self.engine = engine
        self.shards: list[Any] = []
        self.starts = np.zeros(1, dtype=np.int64)
        self.total = 0
        self.digest = ""
        self.stats: dict[str, float] = {}
        self._rows: dict[int, tuple[str, str, np.ndarray | None]] = {}  # global row -> (id, text, unit vector)
        self._window_queries = b""  # the chunk whose rows _rows holds
        self._embedded = False
        self.dim = 0

    # -- reading -------------------------------------------------------------------------------------------

    def __call__(self, path: str | Path, columns: ColumnNames) -> tuple[Sequence[str], Sequence[str], Any]:
        import ray

        path = str(path)
        self.total = _parquet_file(path).metadata.num_rows
        if self.total == 0:
            raise InputError(f"{path}: the corpus is empty")
        self.engine.start()
        workers = self.engine._pool("cpu")["concurrency"]
        bounds = shard_bounds(self.total, self.engine.shards or workers)
        # The actors hold memory for the whole run, not CPUs: reserving a CPU each would leave none to the
        # query encoders and cross-encoders that run while they live (a local 2-CPU Ray would wait forever).
        # SPREAD places them over the cluster's nodes, whose memory is what they use.
        actor = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(CorpusShard)
        self.shards = [actor.remote(path, a, b, columns) for a, b in bounds]
        self.starts = np.array([a for a, _ in bounds], dtype=np.int64)
        start = time.perf_counter()
        loaded = ray_get([s.load.remote() for s in self.shards])
        self._check_unique_ids(path, [keys for _, _, keys in loaded])
        self.digest = hashlib.sha256("|".join(d for _, d, _ in loaded).encode()).hexdigest()
        self.stats.update({"corpus_on": "workers", "corpus_shards": len(bounds),
                           "read seconds on Ray": round(time.perf_counter() - start, 2)})
        return ShardColumn(self, 0), ShardColumn(self, 1), self.locate

    def _check_unique_ids(self, path: str, keys: list[np.ndarray]) -> None:
        """An id in two shards is found from 8-byte fingerprints (each shard checked its own rows)."""
        every = np.concatenate(keys)
        values, counts = np.unique(every, return_counts=True)
        repeated = values[counts > 1]
        del every, values, counts
        if not len(repeated):
            return
        rows = sorted(r for found in ray_get([s.rows_of.remote(repeated[:1]) for s in self.shards]) for r in found)
        if len(rows) > 1 and rows[0][1] == rows[1][1]:
            raise InputError(f"{path}: duplicate doc_id {rows[0][1]!r} in rows {rows[0][0]} and {rows[1][0]} "
                             "(0-based)")

    def locate(self, wanted: set[str]) -> Mapping[str, int]:
        """Global rows of the wanted ids (the qrels' doc ids), looked up by each shard in its own rows."""
        found: dict[str, int] = {}
        for part in ray_get([s.locate.remote(wanted) for s in self.shards]):
            found.update(part)
        return found

    def close(self) -> None:
        """End the shard actors (their memory is the corpus); the rows fetched so far stay readable."""
        import ray

        for shard in self.shards:
            ray.kill(shard)
        self.shards = []

    # -- rows on demand ------------------------------------------------------------------------------------

    def _shard_of(self, doc_idx: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, doc_idx, side="right") - 1

    def window(self, doc_idx: np.ndarray, queries: np.ndarray) -> None:
        """The rows the chunk of ``queries`` needs (its candidates and positives), fetched in one call per shard;
        rows of earlier chunks are dropped, so the driver holds one chunk's rows, whatever the query count (a
        second retriever of the same chunk, a hybrid's, adds its rows to the window)."""
        doc_idx = np.unique(np.asarray(doc_idx, dtype=np.int64))
        chunk = np.asarray(queries, dtype=np.int64).tobytes()
        if chunk != self._window_queries:
            self._rows = {i: self._rows[i] for i in doc_idx.tolist() if i in self._rows}
            self._window_queries = chunk
        self.fetch(doc_idx)
        self.stats["largest chunk of rows held by the driver"] = max(
            len(self._rows), self.stats.get("largest chunk of rows held by the driver", 0))

    def fetch(self, doc_idx: np.ndarray) -> None:
        """Bring the ids, texts (and embeddings, once embedded) of these rows to the driver, one call per shard."""
        doc_idx = np.unique(np.asarray(doc_idx, dtype=np.int64))
        missing = np.array([i for i in doc_idx[doc_idx >= 0].tolist() if i not in self._rows or (
            self._embedded and self._rows[i][2] is None)], dtype=np.int64)
        if not len(missing):
            return
        shard = self._shard_of(missing)
        calls = [(missing[shard == s], self.shards[s].rows.remote(missing[shard == s], self._embedded))
                 for s in np.unique(shard).tolist()]
        for rows, (ids, texts, emb) in zip((r for r, _ in calls), ray_get([c for _, c in calls])):
            # Each vector copied out on its own: a view would pin the whole answer in Ray's object store (mapped
            # into this process) for as long as one of its rows stays in the window, and the pinned answers of
            # every chunk would add up.
            vectors = [row.copy() for row in emb] if emb is not None else [None] * len(ids)
            for i, d, t, v in zip(rows.tolist(), ids, texts, vectors):
                self._rows[i] = (d, t, v)
        self.stats["rows fetched to the driver"] = self.stats.get("rows fetched to the driver", 0) + len(missing)

    def row(self, i: int) -> tuple[str, str]:
        if i not in self._rows:
            self.fetch(np.array([i]))
        return self._rows[i][:2]

    def embeddings(self, doc_idx: np.ndarray) -> np.ndarray:
        flat = doc_idx.reshape(-1).tolist()
        if any(i not in self._rows or self._rows[i][2] is None for i in flat):
            self.fetch(np.asarray(flat, dtype=np.int64))
        if not flat:
            return np.zeros((*doc_idx.shape, self.dim), np.float32)
        return np.stack([self._rows[i][2] for i in flat]).reshape(*doc_idx.shape, -1)

    # -- dense retrieval on the shards ---------------------------------------------------------------------

    def embed(self, dense: DenseRetriever, dtype: str | None, threads: int | None) -> dict[str, float]:
        """Every shard embeds its rows and builds its index; summed notes (truncations, cache hits, seconds)."""
        # a fresh copy: the options only, without the engine the job gave the stage (not for the workers)
        worker_dense = replace(dense, dtype=dtype or dense.dtype)
        n, bounds = len(self.shards), self._bounds()
        if dense.load_index:
            self._check_saved_indexes(dense.load_index, dense.index, bounds)
        start = time.perf_counter()
        notes: dict[str, float] = {}
        for part in ray_get([s.embed.remote(worker_dense, self.total, threads, shard_index_path(dense.save_index, i, n),
                                            shard_index_path(dense.load_index, i, n))
                             for i, s in enumerate(self.shards)]):
            for key, value in part.items():
                notes[key] = value if key == "dimension" else notes.get(key, 0) + value
        self._embedded, self.dim = True, int(notes["dimension"])
        self.stats["embed and index seconds on Ray"] = round(time.perf_counter() - start, 2)
        if dense.save_index:  # written last: FILE names shard files that are all complete
            from hnmine.io.writers import write_json_atomic

            write_json_atomic(Path(dense.save_index), {
                "format": SHARD_INDEXES_FORMAT, "index": dense.index, "rows": self.total,
                "corpus_digest": self.digest, "shards": [
                    {"rows": rows, "file": Path(str(shard_index_path(dense.save_index, i, n))).name}
                    for i, rows in enumerate(bounds)]})
        return notes

    def _bounds(self) -> list[list[int]]:
        return [[int(a), int(b)] for a, b in zip(self.starts.tolist(), [*self.starts[1:].tolist(), self.total])]

    def _check_saved_indexes(self, path: str, kind: str, bounds: list[list[int]]) -> None:
        """``--load-index FILE`` must come from ``--save-index`` of this corpus, cut into the same shards."""
        import json

        try:
            saved = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != SHARD_INDEXES_FORMAT:
            raise InputError(f"--load-index {path}: not the shard indexes that --save-index writes with "
                             "--ray-corpus workers")
        if saved.get("index") != kind:
            raise InputError(f"--load-index {path}: saved with --index {saved.get('index')}; pass --index "
                             f"{saved.get('index')}")
        shards = [s.get("rows") for s in saved.get("shards", [])]
        if shards != bounds:
            raise InputError(f"--load-index {path}: saved from {len(shards)} shards, this run cuts the corpus into "
                             f"{len(bounds)}; pass --ray-shards {len(shards)}")
        if saved.get("corpus_digest") != self.digest:  # the shards' digests: compared once the cut is the same
            raise InputError(f"--load-index {path}: saved from another corpus (its ids or texts differ)")

    def search(self, query_emb: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """Every query's top-``k`` over all shards, merged exactly; the driver sends each shard the queries once."""
        import ray

        start = time.perf_counter()
        merger = TopKMerger(len(query_emb), k)
        queries = ray.put(np.ascontiguousarray(query_emb, dtype=np.float32))
        pending = [s.search.remote(queries, lo, min(lo + QUERIES_PER_SEARCH, len(query_emb)), k)
                   for lo in range(0, len(query_emb), QUERIES_PER_SEARCH) for s in self.shards]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            lo, ids, scores = ray_get(done[0])
            merger.add(np.arange(lo, lo + len(ids)), ids, scores)
        self.stats["search seconds on Ray"] = round(self.stats.get("search seconds on Ray", 0)
                                                    + time.perf_counter() - start, 2)
        if exact:
            return merger.result(self.total)
        width = min(k, self.total)  # IVF/HNSW may find fewer than k in a shard: -1 rows, as a local index's
        return merger.ids[:, :width], merger.scores[:, :width]

    # -- BM25 on the shards --------------------------------------------------------------------------------

    def bm25(self, retriever: BM25Retriever) -> ShardBM25Index:
        """Each shard's BM25 index, weighted by the collection's statistics summed here from the shards' counts."""
        key = (retriever.k1, retriever.b, retriever.epsilon, retriever.stopwords)
        start = time.perf_counter()
        counts = ray_get([s.bm25_counts.remote(key, retriever.stopwords, retriever.cache_dir, retriever.use_cache)
                          for s in self.shards])
        idf = collection_idf([(words, freq) for words, freq, *_ in counts], self.total, retriever.epsilon)
        avgdl = sum(length for *_, length, _ in counts) / self.total
        self.stats["BM25 shards read from the cache"] = sum(cached for *_, cached in counts)
        del counts
        ray_get([s.bm25_index.remote(key, part, avgdl, retriever.k1, retriever.b)
                 for s, part in zip(self.shards, idf)])
        self.stats["BM25 index seconds on Ray"] = round(time.perf_counter() - start, 2)
        return ShardBM25Index(self, key)


class ShardBM25Index:
    """A ``BM25Index`` whose documents are the corpus shards' rows: the stages use it as their own index.

    Top-k lists are merged exactly on float64 scores (BM25's near-ties differ in the last bits of a double),
    ties to the smaller row, as one index over the corpus orders them.
    """

    def __init__(self, corpus: ShardedCorpus, key: tuple) -> None:
        self.corpus, self.key, self.n_docs = corpus, key, corpus.total

    def top_k(self, queries: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        merger = TopKMerger(len(queries), k, dtype=np.float64)
        every = np.arange(len(queries))
        for ids, scores in ray_get([s.bm25_search.remote(self.key, queries, k) for s in self.corpus.shards]):
            merger.add(every, ids, scores)
        return merger.ids, merger.scores

    def score_docs(self, query: list[str], doc_idx: np.ndarray) -> np.ndarray:
        return self.score_pairs([query], np.zeros(len(doc_idx), dtype=np.int64), doc_idx)

    def score_pairs(self, queries: Mapping[int, list[str]] | Sequence[list[str]], query_idx: np.ndarray,
                    doc_idx: np.ndarray) -> np.ndarray:
        """One call per shard holding any of the rows, with the tokens of its pairs' queries only."""
        query_idx, doc_idx = np.asarray(query_idx, dtype=np.int64), np.asarray(doc_idx, dtype=np.int64)
        out = np.zeros(len(doc_idx), dtype=np.float64)
        if not len(doc_idx):
            return out
        if doc_idx.min() < 0 or doc_idx.max() >= self.n_docs:
            raise IndexError(f"doc_idx out of range for a corpus of {self.n_docs} documents")
        shard = self.corpus._shard_of(doc_idx)
        calls = []
        for s in np.unique(shard).tolist():
            rows = np.flatnonzero(shard == s)
            tokens = {q: queries[q] for q in np.unique(query_idx[rows]).tolist()}
            calls.append((rows, self.corpus.shards[s].bm25_score.remote(self.key, tokens, query_idx[rows],
                                                                        doc_idx[rows])))
        for (rows, _), scores in zip(calls, ray_get([c for _, c in calls])):
            out[rows] = scores
        return out
