"""A teacher learned from dense labels without training a model: the graph of which documents a *labelled*
set of queries marks relevant.

Why: a bi-encoder or cross-encoder judges a candidate only by its text against the query's text, and on short
topical queries (NFCorpus) neither separates an unlabelled relevant document from a true negative well. A set
of queries with dense labels over the same corpus (NFCorpus train; a team's own judged queries) carries a
different kind of evidence: documents that the same labelled queries keep marking relevant together are about
the same thing. A candidate that the labelled queries closest to *this* query mark relevant, or that is
co-relevant with this query's known positive, is likely a hidden positive. RocketQA's denoiser learns the same
evidence into a cross-encoder's weights; here it is read off the graph directly, in seconds on a CPU.

``LabelGraph.signals`` gives one row of signals per (query, candidate, known positive); each names what it
measures. They are inputs to a learned combination (``benchmarks/teacher_denoise.py --label-graph``), not
thresholds on their own scale. Documents in no labelled query's list get neutral values (0, or -1 for the
cosine maximum), so a corpus only partly covered by labels still works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

SIGNALS = ("co_share", "co_jaccard", "vote_max", "vote_mix", "positive_vote", "label_cosine",
           "label_centrality", "label_degree")


@dataclass
class LabelGraph:
    """``relevance`` is documents x labelled queries (1 where the query's labels mark the document relevant);
    ``query_emb`` holds the labelled queries' normalised embeddings (the mining model's), one row per column."""

    relevance: sparse.csr_matrix
    query_emb: np.ndarray
    temperature: float = 0.05
    label_dim: int = 64

    @classmethod
    def from_pairs(cls, doc_idx: np.ndarray, query_idx: np.ndarray, num_docs: int, query_emb: np.ndarray,
                   **kw: float) -> LabelGraph:
        """One (document, labelled query) pair per positive judgment; duplicates count once."""
        m = sparse.csr_matrix((np.ones(len(doc_idx)), (np.asarray(doc_idx), np.asarray(query_idx))),
                              shape=(num_docs, len(query_emb)))
        m.data[:] = 1.0
        return cls(m, np.asarray(query_emb, dtype=np.float32), **kw)

    def label_embeddings(self) -> np.ndarray:
        """Each document's row of the idf-weighted relevance matrix, reduced by a truncated SVD and normalised:
        documents relevant to the same labelled queries point the same way. Deterministic (fixed start vector);
        computed once per graph (``signals`` asks for it on every call)."""
        cached = self.__dict__.get("_label_emb")
        if cached is not None:
            return cached
        m = self.relevance.astype(np.float64)
        per_query = np.asarray(m.sum(axis=0)).ravel()
        idf = np.log(m.shape[0] / np.maximum(per_query, 1.0))
        weighted = m @ sparse.diags(idf)
        k = max(1, min(self.label_dim, min(m.shape) - 1))  # svds needs k < the smaller side; both paths keep it
        if min(m.shape) <= 4 * self.label_dim:
            u, s = _small_svd(weighted, k)
        else:
            u, s, _ = svds(weighted, k=k, v0=np.ones(min(m.shape)) / np.sqrt(min(m.shape)))
        # Directions of (near) zero singular value are arbitrary, not the data's; kept, they would be noise that
        # normalising blows up.
        kept = s > max(s.max(initial=0.0), 1e-300) * 1e-8
        emb = u[:, kept] * s[kept]
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = np.where(norms > 1e-9, emb / np.maximum(norms, 1e-300), 0.0)
        self.__dict__["_label_emb"] = emb
        return emb

    def signals(self, query_emb: np.ndarray, q: np.ndarray, d: np.ndarray, known: np.ndarray,
                rank: np.ndarray) -> np.ndarray:
        """One row per candidate ``(q[i], d[i])`` of query ``q[i]`` whose known positive is ``known[q[i]]``;
        columns in ``SIGNALS`` order:

        * ``co_share``: the share of the labelled queries listing the positive that also list the candidate;
        * ``co_jaccard``: Jaccard overlap of the two documents' labelled-query sets;
        * ``vote_max``: the highest cosine between this query and a labelled query listing the candidate;
        * ``vote_mix``: the candidate's relevance under a softmax(cosine / temperature) mix of the labelled
          queries (this query's nearest labelled queries vote);
        * ``positive_vote``: ``co_share`` with each labelled query weighted by that softmax weight;
        * ``label_cosine``: cosine of the candidate's and the positive's label embeddings;
        * ``label_centrality``: cosine of the candidate's label embedding to the mean of those of the query's
          ten best-ranked candidates (the query's topic in label space);
        * ``label_degree``: log(1 + how many labelled queries list the candidate).
        """
        q, d, rank = np.asarray(q), np.asarray(d), np.asarray(rank)
        p = np.asarray(known)[q]
        rel = self.relevance
        sims = np.asarray(query_emb, dtype=np.float32) @ self.query_emb.T       # queries x labelled queries
        weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / self.temperature)
        weights /= weights.sum(axis=1, keepdims=True)
        rc, rp = rel[d], rel[p]
        deg_c = np.asarray(rc.sum(axis=1)).ravel()
        deg_p = np.asarray(rp.sum(axis=1)).ravel()
        inter = np.asarray(rc.multiply(rp).sum(axis=1)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(deg_p > 0, inter / deg_p, 0.0)
            jaccard = np.where(deg_p + deg_c - inter > 0, inter / (deg_p + deg_c - inter), 0.0)
        vote_max = _row_reduce(rc, sims, q, np.maximum, -1.0)
        vote_mix = _row_reduce(rc, weights, q, np.add, 0.0)
        wp = _row_weighted(rp, weights, q)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.asarray(wp.sum(axis=1)).ravel()
            positive_vote = np.where(total > 0, np.asarray(wp.multiply(rc).sum(axis=1)).ravel() / total, 0.0)
        emb = self.label_embeddings()
        label_cosine = np.einsum("ij,ij->i", emb[d], emb[p])
        centrality = np.zeros(len(q))
        order = np.lexsort((rank, q))
        starts = np.flatnonzero(np.r_[True, q[order][1:] != q[order][:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(order)]):
            rows = order[lo:hi]
            centre = emb[d[rows[:10]]].mean(axis=0)
            centrality[rows] = emb[d[rows]] @ centre
        return np.stack([share, jaccard, vote_max, vote_mix, positive_vote, label_cosine, centrality,
                         np.log1p(deg_c)], axis=1)


def _small_svd(m: sparse.spmatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` left singular vectors and values of a matrix with a small side, from a dense eigensolver
    on that side's Gram matrix. ARPACK asked for nearly as many vectors as that side has gives different
    vectors from run to run (its restarts); LAPACK's symmetric solver gives the same ones."""
    if m.shape[1] <= m.shape[0]:
        values, vectors = np.linalg.eigh((m.T @ m).toarray())
        top = np.argsort(values)[::-1][:k]
        s = np.sqrt(np.maximum(values[top], 0.0))
        us = np.asarray(m @ vectors[:, top])  # = u * s
        return us / np.where(s > 0, s, 1.0), s
    values, vectors = np.linalg.eigh((m @ m.T).toarray())
    top = np.argsort(values)[::-1][:k]
    return vectors[:, top], np.sqrt(np.maximum(values[top], 0.0))


def _row_reduce(rows: sparse.csr_matrix, table: np.ndarray, q: np.ndarray, op: np.ufunc,
                empty: float) -> np.ndarray:
    """For each sparse row i: ``op``-reduce ``table[q[i], j]`` over its non-zero columns j (``empty`` if none)."""
    rows = rows.tocsr()
    counts = np.diff(rows.indptr)
    values = table[np.repeat(q, counts), rows.indices]
    out = np.full(rows.shape[0], empty, dtype=np.float64)
    nonempty = counts > 0
    if values.size:
        out[nonempty] = op.reduceat(values, rows.indptr[:-1][nonempty])
    return out


def _row_weighted(rows: sparse.csr_matrix, table: np.ndarray, q: np.ndarray) -> sparse.csr_matrix:
    """The same sparsity as ``rows``, each entry replaced by ``table[q[i], j]``."""
    rows = rows.tocsr().copy()
    rows.data = table[np.repeat(q, np.diff(rows.indptr)), rows.indices].astype(np.float64)
    return rows
