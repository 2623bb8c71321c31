"""Query clusters: label each candidate with the k-means cluster of its query's embedding.

Batches drawn from one topic cluster make in-batch negatives hard (TAS-Balanced, Hofstätter et al., 2021),
and a per-cluster count shows which topics mining left short. Both need the cluster beside each row, so
this stage adds an ``int32`` column ``cluster_id`` and drops nothing.

Clustering runs once over *all* queries in ``prepare``, never per chunk, so a query's cluster does not
depend on chunk size. Cluster ids are arbitrary labels (0..k-1), stable for a given seed and input.
Embeddings come from, in order of preference: ``embeddings`` (a precomputed ``(num_queries, dim)`` array),
``embedder`` (a callable from the list of query texts to such an array), or the ``dense`` retriever's
query embeddings. Passing the pipeline's own ``DenseRetriever`` as ``dense`` reuses its embeddings; a
separate one encodes (and indexes) the corpus again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage, option, seed_option
from hnmine.stages.dense import DenseRetriever

KMEANS_NITER = 20


def kmeans_assign(emb: np.ndarray, num_clusters: int, seed: int = 0, niter: int = KMEANS_NITER) -> np.ndarray:
    """The k-means cluster of each row, with ``k`` clamped to the number of rows. Pure, for tests."""
    import faiss

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(emb)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    k = max(1, min(num_clusters, n))
    # min_points_per_centroid=1: a small query set is not an error, only a coarse clustering.
    # FAISS takes a C int seed; larger --seed values fold into its range, still deterministic.
    kmeans = faiss.Kmeans(emb.shape[1], k, niter=niter, seed=seed % 2**31, min_points_per_centroid=1)
    kmeans.train(emb)
    _, assign = kmeans.index.search(emb, 1)
    return assign[:, 0].astype(np.int32)


@dataclass
class QueryClusters(Stage):
    """Adds ``cluster_id`` (int32): the k-means cluster of the candidate's query, from ``num_clusters``."""

    kind: ClassVar[str] = "query_clusters"
    summary_label: ClassVar[str] = "(cluster ids added)"
    phase: ClassVar[Phase] = Phase.LABEL
    num_clusters: int = option(8, flag="--query-clusters", minimum=1, maximum=1_000_000)
    seed: int = seed_option()
    niter: int = option(KMEANS_NITER, flag="kmeans niter", minimum=1, maximum=100_000)
    dense: DenseRetriever = field(default_factory=DenseRetriever)
    embedder: Callable[[list[str]], np.ndarray] | None = field(default=None, repr=False)
    embeddings: np.ndarray | None = field(default=None, repr=False)
    _data: MiningData | None = field(default=None, init=False, repr=False)
    _assign: np.ndarray | None = field(default=None, init=False, repr=False)

    def query_embeddings(self, data: MiningData) -> np.ndarray:
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
        elif self.embedder is not None:
            emb = np.asarray(self.embedder(data.query_texts), dtype=np.float32)
        else:
            self.dense.prepare(data)
            assert self.dense._query_emb is not None
            emb = self.dense._query_emb
        if emb.ndim != 2 or emb.shape[0] != data.num_queries:
            raise InputError(f"query embeddings for clustering: shape {emb.shape}, expected "
                             f"({data.num_queries}, dim), one row per query in input order")
        return emb

    def prepare(self, data: MiningData) -> None:
        if self._data is data:
            return
        self._assign = kmeans_assign(self.query_embeddings(data), self.num_clusters, self.seed, self.niter)
        self._data = data

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        self.prepare(batch.data)
        assert self._assign is not None
        q = batch.candidates.column("query_idx").to_numpy()
        return batch.with_candidates(set_column(batch.candidates, "cluster_id", self._assign[q], pa.int32()))
