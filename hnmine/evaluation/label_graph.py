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
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

BLOCK_ENTRIES = 1 << 23  # entries of one dense queries x labelled-queries table (64 MiB in float64)
NEAREST = (1, 5, 20)  # how many of this query's nearest labelled queries the k-nearest votes count
SIGNALS = ("co_share", "co_jaccard", "vote_max", "vote_mix", "positive_vote", "label_cosine",
           "label_centrality", "label_degree",
           "vote_mix_sharp", "vote_mix_soft", "query_centroid_cosine", "positive_centroid_cosine",
           *(f"vote_nearest_{k}" for k in NEAREST), *(f"positive_nearest_{k}" for k in NEAREST),
           "word_vote_max", "word_vote_mix",
           *(f"word_vote_nearest_{k}" for k in NEAREST), *(f"word_positive_nearest_{k}" for k in NEAREST))


@dataclass
class LabelGraph:
    """``relevance`` is documents x labelled queries (1 where the query's labels mark the document relevant);
    ``query_emb`` holds the labelled queries' normalised embeddings (the mining model's), one row per column."""

    relevance: sparse.csr_matrix
    query_emb: np.ndarray
    query_texts: list[str] | None = None
    temperature: float = 0.05
    label_dim: int = 64

    @classmethod
    def from_pairs(cls, doc_idx: np.ndarray, query_idx: np.ndarray, num_docs: int, query_emb: np.ndarray,
                   query_texts: list[str] | None = None, **kw: float) -> LabelGraph:
        """One (document, labelled query) pair per positive judgment; duplicates count once. Without the labelled
        queries' texts the word-overlap signals are neutral."""
        m = sparse.csr_matrix((np.ones(len(doc_idx)), (np.asarray(doc_idx), np.asarray(query_idx))),
                              shape=(num_docs, len(query_emb)))
        m.data[:] = 1.0
        return cls(m, np.asarray(query_emb, dtype=np.float32), query_texts, **kw)

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

    def word_vectors(self) -> Any:
        """A tf-idf model of the labelled queries' words, and their normalised vectors (None without texts).

        Why words as well as the mining model's cosine: on short topical queries two queries that share a rare
        term ("arsenic", "statins") are usually about the same documents, and a small bi-encoder blurs exactly
        those terms. On NFCorpus dev the word votes alone added 1.3 points of catch at 10 % false alarms (scratch
        runs over 3 seeds), the most of any of the 18 signals added with them (+1.6 together)."""
        if self.query_texts is None:
            return None
        if "_words" not in self.__dict__:
            from sklearn.feature_extraction.text import TfidfVectorizer

            model = TfidfVectorizer(sublinear_tf=True)
            try:
                self.__dict__["_words"] = (model, model.fit_transform(self.query_texts).tocsr())
            except ValueError:  # no word in any labelled query: nothing to compare
                self.__dict__["_words"] = None
        return self.__dict__["_words"]

    def signals(self, query_emb: np.ndarray, q: np.ndarray, d: np.ndarray, known: np.ndarray,
                rank: np.ndarray, query_texts: list[str] | None = None) -> np.ndarray:
        """One row per candidate ``(q[i], d[i])`` of query ``q[i]`` (text ``query_texts[q[i]]``, optional) whose
        known positive is ``known[q[i]]``; columns in ``SIGNALS`` order:

        * ``co_share``: the share of the labelled queries listing the positive that also list the candidate;
        * ``co_jaccard``: Jaccard overlap of the two documents' labelled-query sets;
        * ``vote_max``: the highest cosine between this query and a labelled query listing the candidate;
        * ``vote_mix``: the candidate's relevance under a softmax(cosine / temperature) mix of the labelled
          queries (this query's nearest labelled queries vote); ``vote_mix_sharp`` and ``vote_mix_soft`` at
          0.4 and 2 times the temperature;
        * ``positive_vote``: ``co_share`` with each labelled query weighted by that softmax weight;
        * ``label_cosine``: cosine of the candidate's and the positive's label embeddings;
        * ``label_centrality``: cosine of the candidate's label embedding to the mean of those of the query's
          ten best-ranked candidates (the query's topic in label space);
        * ``label_degree``: log(1 + how many labelled queries list the candidate);
        * ``query_centroid_cosine``: cosine of this query to the mean embedding of the labelled queries listing
          the candidate; ``positive_centroid_cosine``: of that mean to the positive's (0 for unlisted documents);
        * ``vote_nearest_k`` / ``positive_nearest_k``: the share of this query's k nearest labelled queries that
          list the candidate / the known positive (the latter says how well the labels cover this query);
        * ``word_*``: ``vote_max``, ``vote_mix`` and the nearest-k shares with the labelled queries ranked by
          tf-idf cosine of their words instead of the mining model's cosine (0, or -1 for the maximum, without
          texts).
        """
        q, d, rank = np.asarray(q), np.asarray(d), np.asarray(rank)
        query_emb, known = np.asarray(query_emb, dtype=np.float32), np.asarray(known)
        block = max(1, BLOCK_ENTRIES // max(len(self.query_emb), 1))
        if len(query_emb) <= block:
            return self._block_signals(query_emb, q, d, known, rank, query_texts)
        # Several dense (queries x labelled queries) tables are built per call: a block of queries at a time keeps
        # them near BLOCK_ENTRIES entries each, whatever the number of labelled queries. Every signal is per query,
        # so blocks change nothing in the result.
        out = np.zeros((len(q), len(SIGNALS)))
        for start in range(0, len(query_emb), block):
            rows = (q >= start) & (q < start + block)
            if rows.any():
                texts = None if query_texts is None else list(query_texts[start:start + block])
                out[rows] = self._block_signals(query_emb[start:start + block], q[rows] - start, d[rows],
                                                known[start:start + block], rank[rows], texts)
        return out

    def _block_signals(self, query_emb: np.ndarray, q: np.ndarray, d: np.ndarray, known: np.ndarray,
                       rank: np.ndarray, query_texts: list[str] | None) -> np.ndarray:
        """``signals`` for a block of queries small enough for its dense tables."""
        p = known[q]
        sims = query_emb @ self.query_emb.T       # queries x labelled queries
        rc, rp = self.relevance[d], self.relevance[p]
        graph = self._graph_signals(sims, q, d, p, rank, rc, rp)
        mixes = [_row_reduce(rc, self._softmax(sims, t), q, np.add, 0.0) for t in (0.4, 2.0)]
        centroid = self._centroid_signals(query_emb, q, rc, rp)
        nearest = _nearest_shares(sims, q, rc, rp)
        words = self.word_vectors()
        if words is not None and query_texts is not None:
            lexical = (words[0].transform(list(query_texts)) @ words[1].T).toarray()
            word = [_row_reduce(rc, lexical, q, np.maximum, -1.0), _row_reduce(rc, self._softmax(lexical, 1.0), q,
                                                                                 np.add, 0.0),
                    *_nearest_shares(lexical, q, rc, rp)]
        else:
            word = [np.full(len(q), -1.0)] + [np.zeros(len(q))] * (1 + 2 * len(NEAREST))
        return np.stack([*graph, *mixes, *centroid, *nearest, *word], axis=1)

    def _softmax(self, sims: np.ndarray, scale: float) -> np.ndarray:
        """Row-wise softmax(sims / (temperature * scale))."""
        weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / (self.temperature * scale))
        return weights / weights.sum(axis=1, keepdims=True)

    def _graph_signals(self, sims: np.ndarray, q: np.ndarray, d: np.ndarray, p: np.ndarray, rank: np.ndarray,
                       rc: sparse.csr_matrix, rp: sparse.csr_matrix) -> list[np.ndarray]:
        """The first eight ``SIGNALS``: co-relevance, cosine votes, label embeddings and degree."""
        weights = self._softmax(sims, 1.0)
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
        return [share, jaccard, vote_max, vote_mix, positive_vote, label_cosine, centrality, np.log1p(deg_c)]

    def _centroid_signals(self, query_emb: np.ndarray, q: np.ndarray, rc: sparse.csr_matrix,
                          rp: sparse.csr_matrix) -> list[np.ndarray]:
        """Cosine of the query, and of the positive's centroid, to the centroid of the labelled queries listing
        the candidate (a document described by the queries that judged it relevant)."""
        cand, pos = _normalised(rc @ self.query_emb), _normalised(rp @ self.query_emb)
        return [np.einsum("ij,ij->i", cand, query_emb[q]), np.einsum("ij,ij->i", cand, pos)]


def _normalised(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows (documents no labelled query lists) stay zero."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norms > 1e-12, rows / np.maximum(norms, 1e-300), 0.0)


def _nearest_shares(sims: np.ndarray, q: np.ndarray, rc: sparse.csr_matrix,
                    rp: sparse.csr_matrix) -> list[np.ndarray]:
    """For each k in ``NEAREST``: the share of query ``q[i]``'s k most similar labelled queries (ties: lower
    column first; all of them when there are fewer than k) that list the candidate, then the same for the known
    positive. Sparse throughout: the candidates x labelled queries matrix is never built densely."""
    kmax = min(max(NEAREST), sims.shape[1])
    if kmax == 0:
        return [np.zeros(len(q))] * (2 * len(NEAREST))
    part = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax] if kmax < sims.shape[1] else \
        np.tile(np.arange(sims.shape[1]), (len(sims), 1))
    # order the kept columns by (similarity descending, column ascending), so ties do not depend on argpartition
    within = np.lexsort((part, -np.take_along_axis(sims, part, axis=1)), axis=1)
    nearest = np.take_along_axis(part, within, axis=1)
    position = sparse.csr_matrix((np.tile(np.arange(1, kmax + 1, dtype=np.float64), len(sims)),
                                  nearest.ravel(), np.arange(0, len(sims) * kmax + 1, kmax)), shape=sims.shape)
    position.sort_indices()
    out = []
    for rows in (rc, rp):
        hit = rows.multiply(position[q]).tocsr()   # the neighbour's position where the row lists it
        for k in NEAREST:
            counted = hit.copy()
            counted.data = (counted.data <= k).astype(np.float64)
            out.append(np.asarray(counted.sum(axis=1)).ravel() / min(k, kmax))
    return out[:len(NEAREST)] + out[len(NEAREST):]


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
