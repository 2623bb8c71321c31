"""BM25 indexes against known answers and against rank-bm25's BM25Okapi, the reference implementation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from hnmine.engines.bm25_index import (
    BM25Index,
    RankBM25Index,
    SparseBM25Index,
    _top_k_row,
    build_bm25_index,
)
from hnmine.engines.tokenize import ENGLISH_STOPWORDS, tokenize, tokenize_many

BACKENDS = ["sparse", "rank-bm25"]
TINY = [["a", "b", "c"], ["a", "a", "d"], ["e"]]


Tokens = list[list[str]]


def random_corpus(seed: int, n_docs: int = 300, n_words: int = 400) -> tuple[Tokens, Tokens]:
    """Zipf-distributed synthetic docs (some empty) and queries with repeats, unknown tokens, an empty one."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(n_words)])
    p = 1.0 / np.arange(1, n_words + 1)
    p /= p.sum()
    docs = [list(rng.choice(words, size=int(rng.integers(0, 60)), p=p)) for _ in range(n_docs)]
    queries = [list(rng.choice(words, size=int(rng.integers(1, 8)), p=p)) for _ in range(60)]
    queries[1] = queries[1] + queries[1][:1]  # repeated token
    queries[2] = [*queries[2], "never-seen"]
    queries[3] = []
    return docs, queries


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_corpus_matches_hand_computed_formula(backend: str) -> None:
    index = build_bm25_index(TINY, backend=backend)
    assert isinstance(index, BM25Index)
    n_docs, k1, b, eps_factor = 3, 1.5, 0.75, 0.25
    avgdl = 7 / 3
    idf_rare = math.log(n_docs - 1 + 0.5) - math.log(1 + 0.5)  # b, c, d, e: in one doc
    idf_a = math.log(n_docs - 2 + 0.5) - math.log(2 + 0.5)  # in two of three docs: negative
    assert idf_a < 0
    floor = eps_factor * (idf_a + 4 * idf_rare) / 5

    def term(idf: float, tf: int, dl: int) -> float:
        return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    expected_b = [term(idf_rare, 1, 3), 0.0, 0.0]
    expected_a = [term(floor, 1, 3), term(floor, 2, 3), 0.0]
    np.testing.assert_allclose(index.score_docs(["b"], np.arange(3)), expected_b, rtol=1e-12)
    np.testing.assert_allclose(index.score_docs(["a"], np.arange(3)), expected_a, rtol=1e-12)
    np.testing.assert_allclose(index.score_docs(["a", "b", "zzz"], np.array([0, 1])),
                               [expected_a[0] + expected_b[0], expected_a[1]], rtol=1e-12)
    doc_idx, scores = index.top_k([["a"], ["e"]], 2)
    assert doc_idx.tolist() == [[1, 0], [2, 0]]  # "e" ties docs 0 and 1 at 0: smaller index wins
    np.testing.assert_allclose(scores, [[expected_a[1], expected_a[0]], [term(idf_rare, 1, 1), 0.0]])


@pytest.mark.parametrize(("k1", "b", "epsilon"), [(1.5, 0.75, 0.25), (0.9, 0.4, 0.1)])
def test_sparse_scores_equal_rank_bm25(k1: float, b: float, epsilon: float) -> None:
    docs, queries = random_corpus(seed=7)
    reference = BM25Okapi(docs, k1=k1, b=b, epsilon=epsilon)
    sparse = SparseBM25Index(docs, k1=k1, b=b, epsilon=epsilon)
    all_docs = np.arange(len(docs))
    for query in queries:
        expected = reference.get_scores(query)
        got = sparse.score_docs(query, all_docs)
        assert np.allclose(got, expected, rtol=1e-9, atol=1e-9), query
        # Stronger than the contract, and what makes top-k agree on near-ties: the same floats.
        assert np.array_equal(got, expected), query
    assert np.count_nonzero(reference.get_scores(queries[0])) > 0  # the comparison is not all zeros


def test_sparse_top_k_identical_to_rank_bm25() -> None:
    docs, queries = random_corpus(seed=3)
    sparse_idx, sparse_scores = build_bm25_index(docs, backend="sparse").top_k(queries, 25)
    rank_idx, rank_scores = build_bm25_index(docs, backend="rank-bm25").top_k(queries, 25)
    assert sparse_idx.dtype == np.int64 and sparse_scores.dtype == np.float64
    assert sparse_idx.shape == (len(queries), 25)
    np.testing.assert_array_equal(sparse_idx, rank_idx)
    assert np.allclose(sparse_scores, rank_scores, rtol=1e-9, atol=1e-9)
    # Against an independent ranking of BM25Okapi's own scores: descending score, then doc index.
    reference = BM25Okapi(docs)
    for query, row in zip(queries, sparse_idx, strict=True):
        scores = reference.get_scores(query)
        assert row.tolist() == sorted(range(len(docs)), key=lambda d: (-scores[d], d))[:25]
    assert (np.diff(sparse_scores, axis=1) <= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_are_ordered_by_doc_index(backend: str) -> None:
    docs = [["z", "w"], ["x", "y"], ["z"], ["x", "y"], ["x", "y"], ["w"], ["v"], ["u"]]
    index = build_bm25_index(docs, backend=backend)
    doc_idx, scores = index.top_k([["x"], ["y", "x"]], 5)
    assert doc_idx.tolist() == [[1, 3, 4, 0, 2], [1, 3, 4, 0, 2]]
    assert scores[0, 0] == scores[0, 1] == scores[0, 2] > 0
    assert (scores[:, 3:] == 0).all()
    assert index.top_k([["x"]], 2)[0].tolist() == [[1, 3]]  # the cut falls inside the tie


def test_top_k_row_breaks_ties_at_the_cut_by_index() -> None:
    row = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.0, 2.0])
    assert _top_k_row(row, 2).tolist() == [1, 2]
    assert _top_k_row(row, 4).tolist() == [1, 2, 4, 3]
    assert _top_k_row(row, 7).tolist() == [1, 2, 4, 3, 6, 0, 5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_query_token_counts_each_time(backend: str) -> None:
    index = build_bm25_index(TINY, backend=backend)
    once = index.score_docs(["b"], np.arange(3))
    twice = index.score_docs(["b", "b"], np.arange(3))
    assert once[0] > 0
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_tokens_and_empty_query_score_zero(backend: str) -> None:
    index = build_bm25_index(TINY, backend=backend)
    for query in (["nope", "nada"], []):
        np.testing.assert_array_equal(index.score_docs(query, np.arange(3)), np.zeros(3))
    doc_idx, scores = index.top_k([[], ["nope"]], 2)
    assert doc_idx.tolist() == [[0, 1], [0, 1]]
    np.testing.assert_array_equal(scores, np.zeros((2, 2)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_corpus_is_padded(backend: str) -> None:
    index = build_bm25_index(TINY, backend=backend)
    doc_idx, scores = index.top_k([["a"], ["c", "e"]], 5)
    assert doc_idx.shape == scores.shape == (2, 5)
    assert doc_idx[:, 3:].tolist() == [[-1, -1], [-1, -1]]
    assert np.isneginf(scores[:, 3:]).all() and np.isfinite(scores[:, :3]).all()
    assert sorted(doc_idx[0, :3].tolist()) == [0, 1, 2]
    assert index.top_k([["a"]], 0)[0].shape == (1, 0)
    assert index.top_k([], 3)[0].shape == (0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_documents_and_degenerate_corpora(backend: str) -> None:
    index = build_bm25_index([["a", "b"], [], ["b", "c"], ["d"], ["e"]], backend=backend)
    assert index.score_docs(["a", "b", "c"], np.array([1]))[0] == 0.0
    assert index.top_k([["b"]], 4)[0].tolist() == [[0, 2, 1, 3]]  # [0, 2] tie; the zeros by index

    no_tokens = build_bm25_index([[], []], backend=backend)
    np.testing.assert_array_equal(no_tokens.score_docs(["a"], np.array([0, 1])), [0.0, 0.0])
    assert no_tokens.top_k([["a"]], 3)[0].tolist() == [[0, 1, -1]]

    no_docs = build_bm25_index([], backend=backend)
    doc_idx, scores = no_docs.top_k([["a"]], 2)
    assert doc_idx.tolist() == [[-1, -1]] and np.isneginf(scores).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_docs_agrees_with_top_k_and_rejects_bad_ids(backend: str) -> None:
    docs, queries = random_corpus(seed=11, n_docs=80)
    index = build_bm25_index(docs, backend=backend)
    doc_idx, scores = index.top_k(queries[:5], 10)
    for query, ids, row in zip(queries[:5], doc_idx, scores, strict=True):
        np.testing.assert_array_equal(index.score_docs(query, ids), row)
        dup = np.array([ids[0], ids[0]])
        np.testing.assert_array_equal(index.score_docs(query, dup), [row[0], row[0]])
    with pytest.raises(IndexError):
        index.score_docs(queries[0], np.array([-1]))
    with pytest.raises(IndexError):
        index.score_docs(queries[0], np.array([80]))


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown BM25 backend"):
        build_bm25_index(TINY, backend="bm25s")
    assert isinstance(build_bm25_index(TINY, backend="rank-bm25"), RankBM25Index)
    assert isinstance(build_bm25_index(TINY), SparseBM25Index)


def test_tokenize_lowercases_unicode_words() -> None:
    assert tokenize("Café déjà-vu") == ["café", "déjà", "vu"]
    assert tokenize("IL-6 levels, p<0.05!") == ["il", "6", "levels", "p", "0", "05"]
    assert tokenize("Straße ÜBER naïve 東京") == ["straße", "über", "naïve", "東京"]
    assert tokenize("  ") == []


def test_tokenize_stopword_removal() -> None:
    text = "The cells of the mouse weren't dividing because they were in a dish"
    assert tokenize(text) == ["the", "cells", "of", "the", "mouse", "weren", "t", "dividing", "because",
                              "they", "were", "in", "a", "dish"]
    assert tokenize(text, stopwords=True) == ["cells", "mouse", "dividing", "dish"]
    assert {"the", "a", "of", "is", "don", "t"} <= ENGLISH_STOPWORDS
    assert "cells" not in ENGLISH_STOPWORDS
    assert tokenize_many(["The Cat", "a DOG"], stopwords=True) == [["cat"], ["dog"]]
    assert tokenize_many(["The Cat"]) == [["the", "cat"]]


def test_streamed_tokens_build_the_same_index_as_token_lists():
    from hnmine.engines.bm25_index import SparseBM25Index, TokenStream
    from hnmine.engines.tokenize import tokenize

    texts = ["the cat sat", "a dog and a cat", "", "dogs dogs dogs", "Café déjà-vu"]
    listed = SparseBM25Index([tokenize(t) for t in texts])
    streamed = SparseBM25Index(TokenStream(texts, tokenize))
    q = [["cat"], ["dogs", "dog"], ["café"]]
    for a, b in zip(listed.top_k(q, 5), streamed.top_k(q, 5)):
        assert np.array_equal(a, b)


def test_bm25_index_is_cached_on_disk_and_reloaded_identically(tmp_path, monkeypatch):
    import hnmine.stages.bm25 as bm25_mod
    from hnmine.candidates import CandidateBatch
    from hnmine.stages.bm25 import BM25Retriever
    from tests.conftest import make_data

    data = make_data({"q": "cat dog"}, {f"d{i}": f"cat {'dog ' * i} bird {i}" for i in range(30)}, {"q": ["d0"]})
    batch = CandidateBatch.start(data, np.array([0]))
    first = BM25Retriever(top_k=10, cache_dir=str(tmp_path)).apply(batch)
    assert len(list((tmp_path / "bm25").glob("*.npz"))) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the cached index should have been used")

    monkeypatch.setattr(bm25_mod, "build_bm25_index", no_build)
    second = BM25Retriever(top_k=10, cache_dir=str(tmp_path)).apply(batch)
    assert first.candidates.equals(second.candidates) and first.positives.equals(second.positives)
    with pytest.raises(AssertionError, match="cached index"):  # other parameters: another entry
        BM25Retriever(top_k=10, k1=1.2, cache_dir=str(tmp_path)).apply(batch)


def test_top_k_row_threshold_path_equals_a_stable_full_sort() -> None:
    """Rows long enough for the sampled threshold, with many ties: same answer as a stable full sort."""
    from hnmine.engines.bm25_index import _top_k_row

    rng = np.random.default_rng(0)
    for n, k, levels in [(5000, 10, 50), (20000, 100, 7), (3000, 5, 3000), (4000, 37, 2), (800, 1, 1)]:
        row = rng.integers(0, levels, size=n).astype(np.float64)
        expected = np.argsort(-row, kind="stable")[:k]
        np.testing.assert_array_equal(_top_k_row(row, k), expected)


def test_parallel_tokenizing_builds_the_identical_index(monkeypatch) -> None:
    import hnmine.engines.bm25_index as bm25_index
    from hnmine.engines.bm25_index import SparseBM25Index, TokenStream
    from hnmine.engines.tokenize import tokenize

    monkeypatch.setattr(bm25_index, "_PARALLEL_CHUNK", 40)  # many chunks, new words in each
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(words[: 20 + i], size=int(rng.integers(0, 30)))) for i in range(380)]
    sequential = SparseBM25Index(TokenStream(texts, tokenize))
    parallel = SparseBM25Index(TokenStream(texts, tokenize), processes=2)
    assert list(parallel._vocab.items()) == list(sequential._vocab.items())
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(parallel._weights, name), getattr(sequential._weights, name))


def test_threads_answer_like_one_thread() -> None:
    from hnmine.engines.bm25_index import SparseBM25Index

    rng = np.random.default_rng(2)
    docs = [list(rng.choice(list("abcdefghij"), size=int(rng.integers(1, 12)))) for _ in range(300)]
    queries = [list(rng.choice(list("abcdefghijk"), size=3)) for _ in range(100)]
    index = SparseBM25Index(docs)
    one = index.top_k(queries, 20)
    index.threads = 2
    two = index.top_k(queries, 20)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("cuts", [(0, 300), (0, 1, 150, 300), (0, 97, 98, 220, 300)])
def test_parts_weighted_by_collection_statistics_equal_one_index(cuts: tuple[int, ...]) -> None:
    """A corpus cut into parts (Ray corpus shards), each indexed with the collection's idf and mean length:
    every part's scores are the whole index's floats on its rows, and the parts' top-k merged by (score, index)
    is the whole index's top-k, ties included."""
    from hnmine.engines.bm25_index import TermCounts, collection_idf
    from hnmine.engines.sharded_search import TopKMerger

    docs, queries = random_corpus(5)
    docs[40] = list(docs[41])  # tied documents across a cut
    whole = SparseBM25Index(docs, k1=1.2, b=0.7, epsilon=0.3)
    bounds = list(itertools.pairwise(cuts))
    counts = [TermCounts.of(docs[a:b]) for a, b in bounds]
    idf = collection_idf([(c.words, c.doc_freq) for c in counts], len(docs), epsilon=0.3)
    avgdl = sum(c.total_length for c in counts) / len(docs)
    parts = [SparseBM25Index.over_part(c, i, avgdl, k1=1.2, b=0.7) for c, i in zip(counts, idf)]
    k = 25
    merger = TopKMerger(len(queries), k, dtype=np.float64)
    for (a, _), part in zip(bounds, parts):
        ids, scores = part.top_k(queries, k)
        merger.add(np.arange(len(queries)), np.where(ids >= 0, ids + a, -1), scores)
    expected_ids, expected_scores = whole.top_k(queries, k)
    ids, scores = merger.result(len(docs))
    assert np.array_equal(ids, expected_ids) and np.array_equal(scores, expected_scores)
    query_idx = np.repeat(np.arange(len(queries)), 5)
    doc_idx = np.random.default_rng(0).integers(0, len(docs), len(query_idx))
    expected = whole.score_pairs(queries, query_idx, doc_idx)
    for (a, b), part in zip(bounds, parts):
        mine = (doc_idx >= a) & (doc_idx < b)
        assert np.array_equal(part.score_pairs(queries, query_idx[mine], doc_idx[mine] - a), expected[mine])
