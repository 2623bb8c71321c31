"""Lexical candidates: BM25 over the corpus, scored exactly as rank-bm25's BM25Okapi scores them.

Lexical neighbours are the classic hard negatives (DPR): they share the query's words but not its meaning.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine import progress
from hnmine.candidates import SCORE, CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.engines.bm25_index import BACKENDS, BM25Index, SparseBM25Index, TokenStream, build_bm25_index
from hnmine.engines.encoder import default_cache_dir
from hnmine.engines.tokenize import tokenize, tokenize_many
from hnmine.io.cache_files import read_or_build
from hnmine.stage import Phase, Stage, option, top_k_option
from hnmine.stages.retrieval import topk_to_table

BM25_CACHE_FORMAT = "hnmine-bm25-v2"


def bm25_cache_dir(cache_dir: str | None) -> Path:
    """Where BM25 cache entries live: the whole corpus's weights here, a Ray corpus shard's term counts too."""
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / "bm25"


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class BM25Retriever(Stage):
    """Top-``top_k`` BM25 candidates per query; also scores each query's positives on the same scale."""

    kind: ClassVar[str] = "bm25"
    summary_label: ClassVar[str] = "retrieved (BM25)"
    phase: ClassVar[Phase] = Phase.RETRIEVE
    top_k: int = top_k_option()
    k1: float = option(1.5, flag="--bm25-k1", minimum=0)
    b: float = option(0.75, flag="--bm25-b", minimum=0, maximum=1)
    epsilon: float = option(0.25, flag="bm25 epsilon", minimum=0)
    stopwords: bool = False
    backend: str = option("sparse", flag="--bm25-backend", choices=BACKENDS)
    cache_dir: str | None = None
    use_cache: bool = True
    _index: BM25Index | None = field(default=None, init=False, repr=False)
    _data: MiningData | None = field(default=None, init=False, repr=False)
    _query_tokens: list[list[str]] = field(default_factory=list, init=False, repr=False)
    _searched: Callable[[np.ndarray, np.ndarray], None] | None = field(default=None, init=False, repr=False)

    def prepare(self, data: MiningData) -> None:
        if self._data is data:
            return
        with progress.phase("index (BM25)", total=data.num_docs, unit="docs"):
            self._index = self._cached_index(data)
        if isinstance(self._index, SparseBM25Index):
            self._index.threads = usable_cpus()  # queries are scored on every core the process may use
        self._query_tokens = tokenize_many(data.query_texts, stopwords=self.stopwords)
        self._data = data

    def use_index(self, data: MiningData, index: BM25Index,
                  searched: Callable[[np.ndarray, np.ndarray], None] | None = None) -> None:
        """Search ``index``, built elsewhere over ``data``'s corpus with this stage's settings (the Ray engine's
        corpus shards: ``hnmine.engines.ray_corpus.ShardBM25Index``), instead of building one here.

        ``searched(queries, doc_idx)`` is told each chunk's top-k lists, so the engine can fetch their rows.
        """
        self._index, self._searched = index, searched
        self._query_tokens = tokenize_many(data.query_texts, stopwords=self.stopwords)
        self._data = data

    def _cached_index(self, data: MiningData) -> BM25Index:
        """The sparse index is kept on disk keyed by corpus texts and parameters, like embeddings are."""
        def build() -> BM25Index:
            corpus_tokens = TokenStream(data.doc_texts, partial(tokenize, stopwords=self.stopwords))
            return build_bm25_index(corpus_tokens, k1=self.k1, b=self.b, epsilon=self.epsilon, backend=self.backend,
                                    processes=usable_cpus())

        if self.backend != "sparse" or not self.use_cache:
            return build()
        h = hashlib.sha256(f"hnmine-bm25-v1|{self.k1!r}|{self.b!r}|{self.epsilon!r}|{self.stopwords}|".encode())
        for text in data.doc_texts:
            raw = text.encode("utf-8", "surrogatepass")
            h.update(len(raw).to_bytes(8, "little"))
            h.update(raw)
        def load(path: Path) -> BM25Index:  # size and checksum already match the sidecar (cache_files)
            index = SparseBM25Index.load(path)
            if index.n_docs != data.num_docs:
                raise ValueError(f"{path}: {index.n_docs} documents, expected {data.num_docs}")
            return index

        path = bm25_cache_dir(self.cache_dir) / f"{h.hexdigest()}.npz"
        expect = {"format": BM25_CACHE_FORMAT, "n_docs": data.num_docs}
        return read_or_build(path, expect, load, build, lambda index, f: index.save_to(f))[0]

    def score_pairs(self, query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        """BM25 scores of arbitrary (query, doc) pairs, for positives and for fused candidates."""
        assert self._index is not None, "prepare() first"
        return self._index.score_pairs(self._query_tokens, query_idx, doc_idx)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        self.prepare(batch.data)
        assert self._index is not None
        # Never wider than the corpus: a huge --range-max must not size a (queries x top_k) array.
        k = min(self.top_k, batch.data.num_docs)
        doc_idx, scores = self._index.top_k([self._query_tokens[int(q)] for q in batch.queries], k)
        if self._searched is not None:
            self._searched(batch.queries, doc_idx)
        candidates = topk_to_table(batch.queries, doc_idx, scores, self.kind)
        pos = batch.positives
        pos_scores = self.score_pairs(pos.column("query_idx").to_numpy(), pos.column("doc_idx").to_numpy())
        return batch.with_scored(candidates, set_column(pos, SCORE, pos_scores, pa.float32()))
