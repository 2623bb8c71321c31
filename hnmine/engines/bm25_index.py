"""BM25 indexes that score exactly as rank-bm25's ``BM25Okapi`` does, in two speeds.

rank-bm25 is the project's reference: its scores are what users and papers compare against, so the fast
backend reproduces its formula, quirks included (the ``log(N - n + 0.5) - log(n + 0.5)`` idf, negative idfs
replaced by ``epsilon * average_idf``, a repeated query token counted once per occurrence, unknown tokens
scoring 0). rank-bm25 itself walks every document in Python for every query token (~0.1 s per query at 20k
documents), which is too slow to mine a real corpus; ``SparseBM25Index`` precomputes every (term, doc) weight
once and only touches the documents that contain a query term, and it adds them up in rank-bm25's order so
that its scores are the same floats, not merely close ones.

Both backends share one top-k routine, so their candidate lists can only differ where their scores do: a
switch of backend never changes which negatives are mined.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, count
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

__all__ = ["BACKENDS", "BM25Index", "RankBM25Index", "SparseBM25Index", "TermCounts", "build_bm25_index",
           "collection_idf"]

BACKENDS = ("sparse", "rank-bm25")


@runtime_checkable
class BM25Index(Protocol):
    """What retrieval needs from a BM25 index, whichever backend computes the scores."""

    def top_k(self, queries: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(doc_idx int64 (nq, k), scores float64 (nq, k)), best first, ties to the smaller doc index.

        Rows are padded with -1 / -inf when the corpus has fewer than ``k`` documents.
        """
        ...

    def score_docs(self, query: list[str], doc_idx: np.ndarray) -> np.ndarray:
        """float64 BM25 scores of the given documents for one query."""
        ...

    def score_pairs(self, queries: Mapping[int, list[str]] | Sequence[list[str]], query_idx: np.ndarray,
                    doc_idx: np.ndarray) -> np.ndarray:
        """float64 BM25 scores of pairs: the tokens ``queries[query_idx[i]]`` against document ``doc_idx[i]``."""
        ...


def _top_k_row(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best entries of ``row`` (``0 < k <= len(row)``), ties to the smaller index.

    ``argpartition`` alone picks arbitrarily among documents tied at the k-th score, which would make the
    candidate list depend on numpy's selection algorithm; instead everything strictly above the k-th score
    is kept and the remaining slots go to the tied documents in index order.

    Selecting over the whole row was half of BM25's query time at 100k+ documents, so a threshold is taken
    first from an evenly strided sample (about ``2k`` entries of the row are expected above it) and the
    selection runs on the entries at or above it only. That subset holds the top ``k`` whenever it has at
    least ``k`` entries, ties included (a tie with the k-th score is at or above the threshold too); otherwise
    the whole row is used. The answer is the same either way.
    """
    n = row.shape[0]
    if k >= n:
        return np.argsort(-row, kind="stable")
    stride = n // (8 * k)
    if stride >= 2:
        sample = row[::stride]
        rank = min(sample.shape[0], max(2, (2 * k) // stride))
        threshold = np.partition(sample, sample.shape[0] - rank)[sample.shape[0] - rank]
        candidates = np.flatnonzero(row >= threshold)
        if k <= candidates.shape[0] < n:
            return candidates[_top_k_selected(row[candidates], k)]
    return _top_k_selected(row, k)


def _top_k_selected(row: np.ndarray, k: int) -> np.ndarray:
    """``_top_k_row`` by one selection over the whole row."""
    n = row.shape[0]
    if k >= n:
        return np.argsort(-row, kind="stable")
    kth = np.partition(row, n - k)[n - k]
    above = np.flatnonzero(row > kth)  # fewer than k, in index order
    above = above[np.argsort(-row[above], kind="stable")]
    tied = np.flatnonzero(row == kth)[: k - above.shape[0]]
    return np.concatenate([above, tied])


class _TopK:
    """Shared top-k: a backend only says how to score one query against the whole corpus.

    Queries are answered one at a time, so memory holds one (n_docs,) score row per thread, never a
    (queries x docs) matrix; the per-query Python overhead is microseconds against the milliseconds
    of scoring and selection. ``threads`` threads share the queries: scipy's sparse kernels and numpy's
    selection release the GIL, so the cores of the machine score queries side by side.
    """

    n_docs: int
    threads: int = 1

    def _scores(self, query: list[str]) -> np.ndarray:
        raise NotImplementedError

    def top_k(self, queries: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        nq, k = len(queries), max(int(k), 0)
        doc_idx = np.full((nq, k), -1, dtype=np.int64)
        scores = np.full((nq, k), -np.inf, dtype=np.float64)
        kk = min(k, self.n_docs)
        if kk == 0:
            return doc_idx, scores

        def answer(rows: range) -> None:
            for i in rows:
                row = self._scores(queries[i])
                best = _top_k_row(row, kk)
                doc_idx[i, :kk] = best
                scores[i, :kk] = row[best]

        threads = max(1, min(self.threads, nq // 16))
        if threads == 1:
            answer(range(nq))
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(answer, [range(t, nq, threads) for t in range(threads)]))
        return doc_idx, scores

    def score_docs(self, query: list[str], doc_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_pairs(self, queries: Mapping[int, list[str]] | Sequence[list[str]], query_idx: np.ndarray,
                    doc_idx: np.ndarray) -> np.ndarray:
        """One ``score_docs`` per distinct query of the pairs."""
        query_idx, doc_idx = np.asarray(query_idx), np.asarray(doc_idx, dtype=np.int64)
        out = np.zeros(len(query_idx), dtype=np.float64)
        for q in np.unique(query_idx).tolist():
            rows = np.flatnonzero(query_idx == q)
            out[rows] = self.score_docs(queries[q], doc_idx[rows])
        return out

    def _check_doc_idx(self, doc_idx: np.ndarray) -> np.ndarray:
        """Reject out-of-range ids instead of letting -1 padding wrap around to the last document."""
        doc_idx = np.asarray(doc_idx, dtype=np.int64).reshape(-1)
        if doc_idx.size and (doc_idx.min() < 0 or doc_idx.max() >= self.n_docs):
            raise IndexError(f"doc_idx out of range for a corpus of {self.n_docs} documents")
        return doc_idx


class RankBM25Index(_TopK):
    """rank-bm25's ``BM25Okapi``, unchanged: the reference that ``SparseBM25Index`` is tested against."""

    def __init__(self, corpus_tokens: Sequence[list[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25) -> None:
        from rank_bm25 import BM25Okapi

        self.n_docs = len(corpus_tokens)
        # BM25Okapi divides by zero on a corpus without a single token; such a corpus scores 0 everywhere.
        has_tokens = any(len(doc) for doc in corpus_tokens)
        self._bm25 = BM25Okapi(list(corpus_tokens), k1=k1, b=b, epsilon=epsilon) if has_tokens else None

    def _scores(self, query: list[str]) -> np.ndarray:
        if self._bm25 is None:
            return np.zeros(self.n_docs, dtype=np.float64)
        return np.asarray(self._bm25.get_scores(query), dtype=np.float64)

    def score_docs(self, query: list[str], doc_idx: np.ndarray) -> np.ndarray:
        return self._scores(query)[self._check_doc_idx(doc_idx)]


class TokenStream:
    """Documents tokenized as they are read: a sized iterable, not a list, so one pass holds one document."""

    def __init__(self, texts: Sequence[str], tokenize: Callable[[str], list[str]]) -> None:
        self.texts, self.tokenize = texts, tokenize

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[list[str]]:
        return map(self.tokenize, self.texts)


class SparseBM25Index(_TopK):
    """BM25Okapi's scores from a precomputed sparse (term x doc) weight matrix.

    Every (term, doc) contribution ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` depends on
    the corpus only, so it is computed once, with the same floating-point operations in the same order as
    rank-bm25, and stored as a CSR matrix whose rows are the terms (an inverted index: row ``t`` lists the
    documents containing ``t`` and their weights). A query's score row is then the sum of its tokens' rows,
    added token by token in query order with repetition, exactly as ``BM25Okapi.get_scores`` adds them, so
    the scores equal rank-bm25's bit for bit (documents without the token receive +0.0 there, which changes
    nothing) and the two backends agree on every top-k list, near-ties included. A general sparse product
    ``W @ q`` would sum in column order and drift by an ulp, which reorders near-tied documents.
    """

    def __init__(self, corpus_tokens: Sequence[list[str]] | TokenStream, k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25, processes: int = 1) -> None:
        counts = TermCounts.of(corpus_tokens, processes)
        # This corpus is the whole collection: its own document frequencies and mean length.
        idf = self._idf(counts.doc_freq, counts.n_docs, epsilon) if counts.words else np.zeros(0)
        self._weigh(counts, idf, counts.total_length / max(counts.n_docs, 1), k1, b)

    @classmethod
    def over_part(cls, counts: TermCounts, idf: np.ndarray, avgdl: float, k1: float = 1.5,
                  b: float = 0.75) -> SparseBM25Index:
        """The index of one part (shard) of a larger collection, weighted by the collection's statistics.

        ``idf`` is each of ``counts.words``' idf over the whole collection (``collection_idf``) and ``avgdl``
        its mean document length: the weights are then the very floats one index over the collection holds
        for these documents, so a part's scores and top-k equal the whole index's on the part's rows.
        """
        index = cls.__new__(cls)
        index._weigh(counts, idf, avgdl, k1, b)
        return index

    def _weigh(self, counts: TermCounts, idf: np.ndarray, avgdl: float, k1: float, b: float) -> None:
        self.n_docs, self._vocab = counts.n_docs, counts.vocab  # a plain dict: a query token must not add to it
        tf = counts.tf
        if not counts.words:  # no tokens at all: every score is 0, as RankBM25Index reports
            self._weights = sp.csr_matrix((0, counts.n_docs), dtype=np.float64)
            return
        # Same expression, same evaluation order as BM25Okapi.get_scores, so each weight is bit-identical.
        norm = k1 * (1 - b + b * counts.doc_len / avgdl)
        q_freq = tf.data
        rows = np.repeat(np.arange(len(counts.words)), np.diff(tf.indptr))
        self._weights = sp.csr_matrix((idf[rows] * (q_freq * (k1 + 1) / (q_freq + norm[tf.indices])), tf.indices,
                                       tf.indptr), shape=tf.shape)

    def save(self, path: Path) -> None:
        """The weights and vocabulary, so an unchanged corpus is never tokenized and indexed again."""
        with path.open("wb") as f:
            self.save_to(f)

    def save_to(self, f: IO[bytes]) -> None:
        vocab = np.array(list(self._vocab), dtype=object)
        np.savez(f, data=self._weights.data, indices=self._weights.indices, indptr=self._weights.indptr,
                 shape=np.array(self._weights.shape), n_docs=np.array(self.n_docs),
                 vocab=np.array("\x00".join(vocab.tolist())))

    @classmethod
    def load(cls, path: Path) -> SparseBM25Index:
        with np.load(path) as z:
            index = cls.__new__(cls)
            index.n_docs = int(z["n_docs"])
            words = str(z["vocab"])
            index._vocab = {w: i for i, w in enumerate(words.split("\x00"))} if words else {}
            index._weights = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return index

    @staticmethod
    def _idf(doc_freq: np.ndarray, n_docs: int, epsilon: float) -> np.ndarray:
        """BM25Okapi's idf with its floor, computed with ``math.log`` and summed in its order.

        A vectorised ``np.log`` may differ from ``math.log`` in the last bit, and a pairwise sum differs from
        BM25Okapi's running sum; either would move ``average_idf`` and every floored idf with it.
        """
        idf = [math.log(n_docs - n + 0.5) - math.log(n + 0.5) for n in doc_freq.tolist()]
        idf_sum = 0.0
        for value in idf:
            idf_sum += value
        eps = epsilon * (idf_sum / len(idf))
        return np.array([eps if value < 0 else value for value in idf], dtype=np.float64)

    def _scores(self, query: list[str]) -> np.ndarray:
        rows = [t for t in map(self._vocab.get, query) if t is not None]
        if not rows:
            return np.zeros(self.n_docs, dtype=np.float64)
        # The query's token rows, repeats included, transposed to CSC and multiplied by ones: scipy's
        # csc_matvec then adds each token's weights into a zeroed vector token by token, in query order,
        # which is BM25Okapi's summation order, in one C loop over the postings.
        return self._weights[rows].T @ np.ones(len(rows), dtype=np.float64)

    def score_docs(self, query: list[str], doc_idx: np.ndarray) -> np.ndarray:
        """Scores of a few documents without building the full score row: a binary search per token."""
        doc_idx = self._check_doc_idx(doc_idx)
        out = np.zeros(doc_idx.shape[0], dtype=np.float64)
        w, vocab = self._weights, self._vocab
        for token in query:
            t = vocab.get(token)
            if t is None or doc_idx.size == 0:
                continue
            lo, hi = w.indptr[t], w.indptr[t + 1]
            docs = w.indices[lo:hi]
            pos = np.minimum(np.searchsorted(docs, doc_idx), docs.shape[0] - 1)
            hit = docs[pos] == doc_idx
            out[hit] += w.data[lo:hi][pos[hit]]
        return out


class TermCounts:
    """A tokenized corpus (or one shard of it): the (term x doc) term-frequency matrix, document lengths and the
    vocabulary in order of first appearance. What BM25 needs of the collection beyond this is two numbers per
    term and one in all: document frequencies and the mean length, which shards sum (``collection_idf``)."""

    def __init__(self, term_ids: np.ndarray, doc_len: np.ndarray, vocab: dict[str, int]) -> None:
        self.vocab, self.doc_len, self.n_docs = vocab, doc_len, len(doc_len)
        self.words = list(vocab)
        doc_ids = np.repeat(np.arange(self.n_docs, dtype=np.int32), doc_len)
        tf = sp.csr_matrix((np.ones(term_ids.shape[0], dtype=np.int32), (term_ids, doc_ids)),
                           shape=(len(vocab), self.n_docs))
        del term_ids, doc_ids
        tf.sum_duplicates()  # canonical: one entry per (term, doc), doc ids ascending within each term
        self.tf = tf.astype(np.float64)  # exact: term frequencies are small integers

    @classmethod
    def of(cls, corpus_tokens: Sequence[list[str]] | TokenStream, processes: int = 1) -> TermCounts:
        term_ids, doc_len, vocab = _corpus_term_ids(corpus_tokens, processes)
        return cls(term_ids, doc_len, vocab)

    def save_to(self, f: IO[bytes]) -> None:
        np.savez(f, data=self.tf.data, indices=self.tf.indices, indptr=self.tf.indptr, doc_len=self.doc_len,
                 vocab=np.array("\x00".join(self.words)))  # \w+ tokens never hold a NUL

    @classmethod
    def load(cls, path: Path) -> TermCounts:
        with np.load(path) as z:
            counts = cls.__new__(cls)
            words = str(z["vocab"])
            counts.words = words.split("\x00") if words else []
            counts.vocab = {w: i for i, w in enumerate(counts.words)}
            counts.doc_len = z["doc_len"]
            counts.n_docs = len(counts.doc_len)
            counts.tf = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(len(counts.words), counts.n_docs))
        return counts

    @property
    def doc_freq(self) -> np.ndarray:
        """Documents containing each word of ``words``."""
        return np.diff(self.tf.indptr)

    @property
    def total_length(self) -> int:
        return int(self.doc_len.sum())


def collection_idf(parts: Sequence[tuple[list[str], np.ndarray]], n_docs: int,
                   epsilon: float = 0.25) -> list[np.ndarray]:
    """Each part's words' idf over the whole collection, from each part's (words, document frequencies).

    ``parts`` in corpus order, each part's words in its order of first appearance: merged that way, the words
    are numbered as one pass over the collection numbers them, so the idfs, their floor and the running sum of
    ``average_idf`` are BM25Okapi's own (``SparseBM25Index._idf``). Holds the collection's vocabulary, not its
    documents.
    """
    vocab: dict[str, int] = {}
    ids = [np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))
           for words, _ in parts]
    doc_freq = np.zeros(len(vocab), dtype=np.int64)
    for part_ids, (_, freq) in zip(ids, parts):
        np.add.at(doc_freq, part_ids, np.asarray(freq, dtype=np.int64))
    idf = SparseBM25Index._idf(doc_freq, n_docs, epsilon) if len(vocab) else np.zeros(0)
    return [idf[part_ids] for part_ids in ids]


def _term_ids(docs: Iterable[list[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Local term ids of a run of documents: (words in order of first appearance, ids, document lengths).

    A defaultdict fed by a counter hands out the ids in one pass that stays in C (``map`` over
    ``__getitem__``); a Python loop over the tokens would cost more than rank-bm25's whole build.
    """
    new_id = defaultdict(count().__next__)
    lengths: list[int] = []

    def measured(doc: list[str]) -> list[str]:
        lengths.append(len(doc))
        return doc

    ids = np.fromiter(map(new_id.__getitem__, chain.from_iterable(map(measured, docs))), dtype=np.int32)
    return list(new_id), ids, np.asarray(lengths, dtype=np.int64)


def _tokenized_term_ids(job: tuple[Sequence[str], Callable[[str], list[str]]]) -> tuple[list[str], np.ndarray,
                                                                                         np.ndarray]:
    texts, tokenize = job
    return _term_ids(map(tokenize, texts))


_PARALLEL_CHUNK = 8192


def _corpus_term_ids(corpus_tokens: Sequence[list[str]] | TokenStream,
                     processes: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Global term ids, document lengths and vocabulary, ids in order of first appearance in the corpus.

    That order is the one in which BM25Okapi fills its document-frequency dict, and therefore the order in
    which it sums the idfs into ``average_idf``. One pass over the documents, so ``corpus_tokens`` may be a
    stream that tokenizes on the fly: at a million passages the materialised token lists alone would take
    ~15 GB. A stream of raw texts is tokenized by ``processes`` worker processes in chunks (tokenizing is
    pure-Python regex work, one core each); each chunk comes back with its own first-appearance vocabulary,
    and merging the chunks in corpus order (known words keep their id, new ones are numbered in the chunk's
    order) gives exactly the ids of one sequential pass.
    """
    parallel = (isinstance(corpus_tokens, TokenStream) and processes > 1
                and len(corpus_tokens) >= 4 * _PARALLEL_CHUNK and _picklable(corpus_tokens.tokenize))
    if not parallel:
        words, ids, lengths = _term_ids(corpus_tokens)
        return ids, lengths, {w: i for i, w in enumerate(words)}
    import multiprocessing

    assert isinstance(corpus_tokens, TokenStream)
    texts, tokenize = corpus_tokens.texts, corpus_tokens.tokenize
    jobs = ((texts[s:s + _PARALLEL_CHUNK], tokenize) for s in range(0, len(texts), _PARALLEL_CHUNK))
    vocab: dict[str, int] = {}
    id_parts, length_parts = [], []
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for words, local_ids, lengths in pool.imap(_tokenized_term_ids, jobs):
            local_to_global = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int32,
                                          count=len(words))
            id_parts.append(local_to_global[local_ids])
            length_parts.append(lengths)
    return np.concatenate(id_parts), np.concatenate(length_parts), vocab


def _picklable(obj: object) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


def build_bm25_index(corpus_tokens: Sequence[list[str]] | TokenStream, k1: float = 1.5, b: float = 0.75,
                     epsilon: float = 0.25, backend: str = "sparse", processes: int = 1) -> BM25Index:
    """The index for ``backend``: "sparse" for real corpora, "rank-bm25" to check against the reference.

    ``processes`` > 1 tokenizes a ``TokenStream`` of raw texts in that many worker processes (same index).
    """
    if backend == "sparse":
        return SparseBM25Index(corpus_tokens, k1=k1, b=b, epsilon=epsilon, processes=processes)
    if backend == "rank-bm25":
        return RankBM25Index(list(corpus_tokens), k1=k1, b=b, epsilon=epsilon)
    raise ValueError(f"unknown BM25 backend {backend!r}; expected one of {', '.join(BACKENDS)}")
