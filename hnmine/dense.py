"""Semantic candidates: a bi-encoder's nearest neighbours under cosine similarity, found with FAISS.

Dense neighbours are the negatives a dense retriever actually confuses with the positive, which is what
makes them informative for training one. The index is exact (inner product over unit vectors) so that
results do not depend on index parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.encoder import Encoder
from hnmine.retrieval import topk_to_table


@dataclass
class DenseRetriever:
    """Top-``top_k`` neighbours by cosine similarity; positives are scored with the same embeddings."""

    kind: ClassVar[str] = "dense"
    model: str = "all-MiniLM-L6-v2"
    top_k: int = 100
    query_prompt: str = ""
    corpus_prompt: str = ""
    batch_size: int = 32
    device: str | None = None
    dtype: str = "float32"
    cache_dir: str | None = None
    use_cache: bool = True
    _data: MiningData | None = field(default=None, init=False, repr=False)
    _doc_emb: np.ndarray | None = field(default=None, init=False, repr=False)
    _query_emb: np.ndarray | None = field(default=None, init=False, repr=False)
    _index: Any = field(default=None, init=False, repr=False)

    def encoder(self) -> Encoder:
        return Encoder(model=self.model, device=self.device, batch_size=self.batch_size, dtype=self.dtype,
                       cache_dir=self.cache_dir, use_cache=self.use_cache)

    def prepare(self, data: MiningData) -> None:
        if self._data is data:
            return
        import faiss

        encoder = self.encoder()
        self._doc_emb = encoder.encode(data.doc_texts, prompt=self.corpus_prompt)
        self._query_emb = encoder.encode(data.query_texts, prompt=self.query_prompt)
        index = faiss.IndexFlatIP(self._doc_emb.shape[1])
        index.add(np.ascontiguousarray(self._doc_emb, dtype=np.float32))
        self._index = index
        self._data = data

    def score_pairs(self, query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        """Cosine similarity of arbitrary (query, doc) pairs, computed row by row, never as a matrix."""
        assert self._doc_emb is not None and self._query_emb is not None, "prepare() first"
        if len(query_idx) == 0:
            return np.zeros(0, dtype=np.float64)
        q = self._query_emb[query_idx]
        d = self._doc_emb[doc_idx]
        return np.einsum("ij,ij->i", q, d).astype(np.float64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None and self._query_emb is not None, "prepare() first"
        k = min(k, self._index.ntotal)
        scores, idx = self._index.search(np.ascontiguousarray(self._query_emb[queries]), k)
        return idx, scores

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        self.prepare(batch.data)
        idx, scores = self.search(batch.queries, self.top_k)
        candidates = topk_to_table(batch.queries, idx, scores, self.kind)
        pos = batch.positives
        pos_scores = self.score_pairs(pos.column("query_idx").to_numpy(), pos.column("doc_idx").to_numpy())
        return CandidateBatch(batch.data, batch.queries, candidates,
                              set_column(pos, "score", pos_scores, pa.float32()))
