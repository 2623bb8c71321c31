"""Semantic candidates: a bi-encoder's nearest neighbours under cosine similarity, found with FAISS.

Dense neighbours are the negatives a dense retriever actually confuses with the positive, which is what
makes them informative for training one. The index is exact (inner product over unit vectors) so that
results do not depend on index parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hnmine import progress
from hnmine.candidates import SCORE, CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.engines.encoder import EncoderSettings, primary_device, resolve_dtype
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage, option, top_k_option
from hnmine.stages.retrieval import topk_to_table

INDEX_KINDS = ("flat", "ivf", "hnsw")
# Neighbours fetched beyond top_k so that a last-bit tie at the cut is decided by the exact score (exact_topk).
EXACT_RESCORE_EXTRA = 8
SEARCH_BACKENDS = ("auto", "faiss", "torch", "faiss-gpu")
# Queries searched at once when the pipeline's chunks walk the queries in order. FAISS's flat search costs about
# the same for 256 queries as for a few thousand (it streams the whole corpus per call): measured at 100k x 384,
# 4,096 queries in chunks of 256 took 4.8x the time of chunks of 1,024. Results do not depend on it (exact_topk).
SEARCH_AHEAD = 4096


def cuda_device(device: str | None) -> str | None:
    """The CUDA device the embeddings are made on (``None`` on CPU): where exact search should run too."""
    if device is None:
        import torch

        return "cuda" if torch.cuda.is_available() else None
    return device if device.startswith("cuda") else None


def faiss_gpus() -> int:
    """GPUs a faiss-gpu build sees (0 for faiss-cpu, which has no ``get_num_gpus``)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def load_embeddings(path: str, ids: list[str], id_column: str, first_row: int = 0,
                    total_rows: int | None = None) -> np.ndarray:
    """Precomputed embeddings, as many teams keep them in a vector store: .npy in input row order, or
    Parquet with an id column and an ``embedding`` list column, aligned by id. Rows are L2-normalised.

    ``ids`` may be one shard of an input of ``total_rows`` rows starting at row ``first_row`` (the Ray engine's
    corpus shards): a .npy then holds every row of the input and only the shard's rows are read from it."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"embeddings file {p}: {'is a directory' if p.is_dir() else 'not found'}")
    if p.suffix == ".npy":
        try:
            emb = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # pickled object arrays, truncated or foreign files
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"embeddings file {p}: not a readable numeric .npy array ({first})") from None
        rows = len(ids) if total_rows is None else total_rows
        if emb.ndim != 2 or emb.shape[0] != rows or emb.shape[1] == 0:
            raise InputError(f"{p}: shape {emb.shape}, expected ({rows}, dim) in input row order")
        emb = emb[first_row:first_row + len(ids)]
        if not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
            raise InputError(f"{p}: dtype {emb.dtype}, expected floating-point embeddings")
    else:
        from hnmine.io.inputs import id_column as read_ids
        from hnmine.io.inputs import read_parquet

        table = read_parquet(p, "embeddings")
        for name in (id_column, "embedding"):
            if name not in table.column_names:
                raise InputError(f"{p}: missing required column '{name}' (columns: {', '.join(table.column_names)})")
        pos = {v: i for i, v in enumerate(read_ids(table, p, id_column))}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise InputError(f"{p}: no embedding for {id_column} {missing[0]!r} ({len(missing)} missing)")
        column = table.column("embedding").combine_chunks()
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
                or pa.types.is_fixed_size_list(column.type)) or not (
                pa.types.is_floating(column.type.value_type) or pa.types.is_integer(column.type.value_type)):
            raise InputError(f"{p}: column 'embedding' has type {column.type}, expected a list of numbers")
        if column.null_count:
            row = column.is_null().to_pylist().index(True)
            raise InputError(f"{p}: column 'embedding' row {row} (0-based) is null")
        lengths = np.asarray(pc.list_value_length(column).to_numpy(zero_copy_only=False))
        if len(lengths) and (lengths.min() != lengths.max() or lengths[0] == 0):
            row = int(np.flatnonzero(lengths != lengths[0])[0]) if lengths.min() != lengths.max() else 0
            raise InputError(f"{p}: column 'embedding' row {row} (0-based) has {lengths[row]} values, row 0 has "
                             f"{lengths[0]}: every embedding needs the same, non-zero dimension")
        flat = column.flatten().to_numpy(zero_copy_only=False)
        emb = flat.reshape(len(column), -1)[[pos[i] for i in ids]]
    emb = np.asarray(emb, dtype=np.float32)
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(f"{p}: the embedding of {id_column} {ids[row]!r} (row {row + first_row}) holds NaN or "
                         f"infinity ({int((~finite).sum())} such rows); nearest neighbours of it would be meaningless")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms == 0, 1, norms)


def stored_vectors(index: Any) -> np.ndarray | None:
    """A zero-copy view of the vectors a flat or HNSW index stores, or None for compressed (IVF) storage.

    Positives and arbitrary pairs are scored from these, so the corpus embeddings need not be kept twice.
    """
    import faiss

    flat = faiss.downcast_index(index.storage if isinstance(index, faiss.IndexHNSW) else index)
    if not isinstance(flat, faiss.IndexFlat) or flat.ntotal == 0:
        return None
    return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)


@dataclass
class DenseRetriever(EncoderSettings, Stage):
    """Top-``top_k`` neighbours by cosine similarity; positives are scored with the same embeddings."""

    kind: ClassVar[str] = "dense"
    summary_label: ClassVar[str] = "retrieved (dense)"
    phase: ClassVar[Phase] = Phase.RETRIEVE
    top_k: int = top_k_option()
    index: str = option("flat", choices=INDEX_KINDS)
    ivf_nlist: int | None = option(None, minimum=1, maximum=1 << 24)
    ivf_nprobe: int = option(16, minimum=1, maximum=1 << 24)
    # FAISS aborts the whole process (not an exception) on M < 2; beyond a few hundred it is only memory.
    hnsw_m: int = option(32, minimum=2, maximum=1024)
    hnsw_ef_search: int = option(128, minimum=1, maximum=1 << 20)
    corpus_embeddings: str | None = None
    query_embeddings: str | None = None
    save_index: str | None = None
    load_index: str | None = None
    # Exact flat search: "auto" runs it where the vectors live (faiss-gpu if installed, else torch blocked
    # products, on a CUDA device; the FAISS flat index on CPU). IVF/HNSW and saved/loaded indexes are FAISS's.
    exact_search: str = option("auto", flag="exact_search", choices=SEARCH_BACKENDS)
    search_dtype: str = "auto"
    _torch_search: Any = field(default=None, init=False, repr=False)
    _data: MiningData | None = field(default=None, init=False, repr=False)
    _doc_emb: np.ndarray | None = field(default=None, init=False, repr=False)
    _query_emb: np.ndarray | None = field(default=None, init=False, repr=False)
    _index: Any = field(default=None, init=False, repr=False)
    _notes: dict = field(default_factory=dict, init=False, repr=False)
    _searcher: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, init=False, repr=False)
    _ahead: tuple[int, int, int, np.ndarray] | None = field(default=None, init=False, repr=False)
    _vector_searcher: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, init=False, repr=False)

    def notes(self) -> dict[str, float | str]:
        """For the run summary: texts the encoder had to truncate, and time spent in the encoder itself."""
        return dict(self._notes)

    def use_results(self, data: MiningData, doc_emb: np.ndarray, query_emb: np.ndarray,
                    searcher: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                    notes: dict | None = None,
                    vector_searcher: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
                    ) -> None:
        """Embeddings and top-k lists an engine computed ahead of the run (``RayEngine.prepare_mine``, with its
        ``encode`` and ``search``); ``prepare`` then does nothing.

        ``searcher(query_idx, k)`` answers like ``search``: ``(doc_idx, scores)``, best first, ``min(k, corpus)``
        wide. Everything downstream (positives' scores, hybrid fusion, clusters) runs unchanged.
        ``vector_searcher(query_emb, k)`` answers ``search_vectors`` where the corpus embeddings are not on the
        driver (the corpus shards' own indexes, ``--ray-corpus workers``).
        """
        self._doc_emb, self._query_emb, self._searcher, self._data = doc_emb, query_emb, searcher, data
        self._vector_searcher = vector_searcher
        self._notes.update(notes or {})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.exact_search in ("torch", "faiss-gpu") and (self.index != "flat" or self.load_index or self.save_index):
            raise InputError(f"exact_search {self.exact_search!r} is exact flat search: it takes no "
                             f"--index {self.index}, --load-index or --save-index")
        for flag, value in (("--corpus-embeddings", self.corpus_embeddings),
                            ("--query-embeddings", self.query_embeddings), ("--load-index", self.load_index)):
            if value and not Path(value).is_file():
                raise InputError(f"{flag} {value}: {'is a directory' if Path(value).is_dir() else 'not found'}")
        if self.save_index:
            from hnmine.io.writers import check_writable_target

            check_writable_target(Path(self.save_index), "--save-index")

    def search_backend(self) -> str:
        """Which code answers ``search``: the FAISS index on CPU, or exact search on the CUDA device."""
        if self.exact_search != "auto":
            return self.exact_search
        if self.index != "flat" or self.load_index or self.save_index:
            return "faiss"
        if cuda_device(primary_device(self.device)) is None:
            return "faiss"
        return "faiss-gpu" if faiss_gpus() else "torch"

    def prepare(self, data: MiningData) -> None:
        if self._data is data:
            return
        encoder = self.encoder()
        query_prompt, corpus_prompt = self.prompts(encoder)
        if self.corpus_embeddings:
            self._doc_emb = load_embeddings(self.corpus_embeddings, data.doc_ids, "doc_id")
        else:
            self._doc_emb = self.engine.encode(encoder, data.doc_texts, corpus_prompt, "encode corpus")
            self._notes["passages truncated by the encoder"] = encoder.truncated
        if self.query_embeddings:
            self._query_emb = load_embeddings(self.query_embeddings, data.query_ids, "query_id")
        else:
            self._query_emb = self.engine.encode(encoder, data.query_texts, query_prompt, "encode queries")
            self._notes["queries truncated by the encoder"] = encoder.truncated
        self._notes["encoder seconds (cache misses only)"] = round(encoder.seconds, 2)
        if not (self.corpus_embeddings and self.query_embeddings):
            self._notes["encoder precision"] = resolve_dtype(self.dtype, primary_device(self.device))
        if self._query_emb.shape[1] != self._doc_emb.shape[1]:
            raise InputError(f"query embeddings have dimension {self._query_emb.shape[1]}, corpus embeddings "
                             f"{self._doc_emb.shape[1]}")
        with progress.phase("index (dense)", total=len(self._doc_emb), unit="vectors"):
            self._build_search()
        self._data, self._ahead = data, None

    def _build_search(self) -> None:
        assert self._doc_emb is not None
        backend = self.search_backend()
        if backend == "torch":
            from hnmine.engines.torch_search import TorchExactSearch

            device = cuda_device(primary_device(self.device)) or "cpu"
            self._torch_search = TorchExactSearch(self._doc_emb, device=device, dtype=self.search_dtype)
            self._notes["exact search"] = (f"torch on {device}, {self._torch_search._torch_dtype} products, "
                                           "float32 re-scoring")
        else:
            self._index = self._build_index(self._doc_emb)
            if backend == "faiss-gpu":
                self._index = self._to_faiss_gpu(self._index)
                self._notes["exact search"] = "faiss-gpu flat index"
            stored = stored_vectors(self._index)
            if stored is not None:
                self._doc_emb = stored  # one copy of the corpus vectors, not two (1.5 GB at 1M x 384)

    def _to_faiss_gpu(self, index: Any) -> Any:
        """The flat index copied to the GPU the encoder used (float32, so still exact)."""
        import faiss

        device = cuda_device(primary_device(self.device)) or "cuda"
        gpu = int(device.split(":", 1)[1]) if ":" in device else 0
        self._faiss_gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._faiss_gpu_resources, gpu, index)

    def _build_index(self, emb: np.ndarray) -> Any:
        """Exact by default; IVF / HNSW trade a little recall for speed on corpora of millions."""
        import faiss

        if self.load_index:
            if not Path(self.load_index).exists():
                raise InputError(f"--load-index {self.load_index}: not found")
            try:
                index = faiss.read_index(self.load_index)
            except RuntimeError as exc:  # FAISS reports any unreadable file as a RuntimeError
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
                raise InputError(f"--load-index {self.load_index}: not a FAISS index written by --save-index "
                                 f"({first[:200]})") from None
            if index.ntotal != len(emb) or index.d != emb.shape[1]:
                raise InputError(f"--load-index {self.load_index}: holds {index.ntotal} vectors of dimension "
                                 f"{index.d}, the corpus has {len(emb)} of dimension {emb.shape[1]}")
        else:
            emb = np.ascontiguousarray(emb, dtype=np.float32)
            d = emb.shape[1]
            if self.index == "flat":
                index = faiss.IndexFlatIP(d)
            elif self.index == "hnsw":
                index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            else:
                nlist = self.ivf_nlist or max(1, min(int(4 * np.sqrt(len(emb))), len(emb) // 39 or 1))
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(emb)
            index.add(emb)
            if self.save_index:
                from hnmine.io.writers import atomic_path

                try:
                    with atomic_path(Path(self.save_index)) as tmp:
                        faiss.write_index(index, str(tmp))
                except RuntimeError as exc:
                    raise InputError(f"--save-index {self.save_index}: could not be written ({exc})") from None
        if self.index == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = self.hnsw_ef_search
        elif self.index == "ivf":
            faiss.extract_index_ivf(index).nprobe = self.ivf_nprobe
        return index

    def score_pairs(self, query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        """Cosine similarity of arbitrary (query, doc) pairs, computed row by row, never as a matrix."""
        assert self._doc_emb is not None and self._query_emb is not None, "prepare() first"
        if len(query_idx) == 0:
            return np.zeros(0, dtype=np.float64)
        q = self._query_emb[query_idx]
        d = self._doc_emb[doc_idx]
        return np.einsum("ij,ij->i", q, d).astype(np.float64)

    def corpus_dimension(self) -> int:
        """The corpus embeddings' dimension (also where they live on the corpus shards)."""
        assert self._doc_emb is not None, "prepare() first"
        return int(self._doc_emb.shape[1])

    def search_vectors(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of query vectors that are not the data's queries (a teacher's labelled queries) over this
        retriever's corpus embeddings: ``(doc_idx, scores)``, best first, as ``Engine.search``.

        Exact search by the engine over the corpus embeddings, or, where these live on the Ray corpus shards, by
        the shards' own indexes (exact for ``--index flat``, merged exactly), as the data's queries were searched:
        one call for a stage, whichever engine holds the corpus.
        """
        if self._vector_searcher is not None:
            return self._vector_searcher(np.asarray(query_emb), k)
        assert self._doc_emb is not None, "prepare() first"
        return self.engine.search(self._doc_emb, query_emb, k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._searcher is not None:
            return self._searcher(np.asarray(queries), k)
        if self._torch_search is not None:
            assert self._query_emb is not None, "prepare() first"
            return self._torch_search.search(self._query_emb[queries], k)
        assert self._index is not None and self._query_emb is not None, "prepare() first"
        import faiss

        # faiss >= 1.15 switches to BLAS only from 128k query x dim products; a 256-query chunk of 384-d
        # vectors stays below that and takes the slower loop (measured 1.9x at 100k passages, same ids).
        faiss.cvar.distance_compute_blas_threshold = 20
        k = min(k, self._index.ntotal)
        scores, idx = self._index.search(np.ascontiguousarray(self._query_emb[queries]), k)
        return idx, scores

    def _search_ahead(self, queries: np.ndarray, k: int) -> np.ndarray:
        """``search``'s ids for a run of consecutive queries, answered from one search of up to SEARCH_AHEAD.

        The pipeline's chunks (256 queries by default) walk the queries in order, and a flat index costs nearly
        as much per call for 256 queries as for thousands; searching ahead keeps the chunk small (for memory and
        checkpoints) without paying the corpus scan per chunk. Other query sets are searched as given.
        """
        n = len(queries)
        if self._searcher is not None or n == 0 or int(queries[-1]) - int(queries[0]) + 1 != n or (
                n > 1 and not bool(np.all(np.diff(queries) == 1))):
            return self.search(queries, k)[0]
        lo, hi = int(queries[0]), int(queries[-1]) + 1
        if self._ahead is None or self._ahead[2] != k or lo < self._ahead[0] or hi > self._ahead[1]:
            assert self._query_emb is not None, "prepare() first"
            end = min(len(self._query_emb), max(hi, lo + SEARCH_AHEAD))
            self._ahead = (lo, end, k, self.search(np.arange(lo, end), k)[0])
        start = self._ahead[0]
        return self._ahead[3][lo - start:hi - start]

    def exact_topk(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``search`` with every score recomputed row by row and the lists re-sorted by it.

        FAISS computes a chunk's scores with BLAS or with its own loop depending on how many queries the chunk
        holds, and the two round differently in the last bit; a row-by-row dot product gives each (query, doc)
        the same float whatever else is in the chunk, so ``--chunk-size`` cannot change the output's bytes. A
        few extra neighbours are fetched so a last-bit tie at the cut is decided by the exact score too.
        """
        idx = self._search_ahead(np.asarray(queries), k + EXACT_RESCORE_EXTRA)
        q = np.repeat(np.asarray(queries, dtype=np.int64), idx.shape[1])
        flat = idx.reshape(-1)
        exact = np.full(flat.shape, -np.inf, dtype=np.float64)
        ok = flat >= 0
        exact[ok] = self.score_pairs(q[ok], flat[ok]).astype(np.float32)
        exact = exact.reshape(idx.shape)
        order = np.lexsort((np.where(idx >= 0, idx, np.iinfo(np.int64).max), -exact), axis=-1) if idx.size else idx
        idx = np.take_along_axis(idx, order, axis=1)[:, :k]
        exact = np.take_along_axis(exact, order, axis=1)[:, :k]
        return idx, exact

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        self.prepare(batch.data)
        idx, scores = self.exact_topk(batch.queries, self.top_k)
        candidates = topk_to_table(batch.queries, idx, scores, self.kind)
        pos = batch.positives
        pos_scores = self.score_pairs(pos.column("query_idx").to_numpy(), pos.column("doc_idx").to_numpy())
        return batch.with_scored(candidates, set_column(pos, SCORE, pos_scores, pa.float32()))
