"""Sharded exact search: per-shard FAISS top-k lists merged per query equal one index over the corpus."""

from __future__ import annotations

import sys

import faiss
import numpy as np
import pytest

from hnmine.engines.sharded_search import TopKMerger, merge_topk, search_shard, shard_bounds, sharded_search


def _single_index(doc: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatIP(doc.shape[1])
    index.add(np.ascontiguousarray(doc, dtype=np.float32))
    scores, ids = index.search(np.ascontiguousarray(query, dtype=np.float32), k)
    return ids, scores


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7, 50])
def test_sharded_search_equals_one_exact_index(num_shards: int) -> None:
    """Integer-valued vectors make every dot product exact in float32, so scores cannot depend on how BLAS
    blocks the product: the comparison is bit for bit, ids and scores."""
    rng = np.random.default_rng(num_shards)
    doc = rng.integers(-1000, 1000, size=(997, 8)).astype(np.float32)
    query = rng.integers(-1000, 1000, size=(64, 8)).astype(np.float32)
    ids, scores = sharded_search(doc, query, 20, num_shards)
    ref_ids, ref_scores = _single_index(doc, query, 20)
    assert np.array_equal(scores, ref_scores)
    assert np.array_equal(ids, ref_ids)


def test_sharded_search_on_unit_vectors_matches_to_float_rounding() -> None:
    """Real embeddings: the same neighbours; scores differ at most by float32 rounding of the dot product.

    Float32 scores do tie exactly now and then (two of 6,100 here); FAISS orders a tie as its heap happens
    to, the merge by the smaller index, so the reference is put in that canonical order before comparing.
    """
    rng = np.random.default_rng(0)
    doc = rng.standard_normal((3000, 64)).astype(np.float32)
    doc /= np.linalg.norm(doc, axis=1, keepdims=True)
    query = rng.standard_normal((100, 64)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    ids, scores = sharded_search(doc, query, 61, 4)
    ref_ids, ref_scores = _single_index(doc, query, 61)
    order = np.lexsort((ref_ids, -ref_scores.astype(np.float64)), axis=1)
    assert np.array_equal(ids, np.take_along_axis(ref_ids, order, axis=1))
    assert np.allclose(scores, ref_scores, atol=1e-6)


def test_merge_order_and_query_grouping_do_not_matter() -> None:
    rng = np.random.default_rng(1)
    doc = rng.integers(-50, 50, size=(400, 4)).astype(np.float32)
    query = rng.integers(-50, 50, size=(30, 4)).astype(np.float32)
    answers = [(search_shard(doc[a:b], np.arange(a, b), query, 10)) for a, b in shard_bounds(len(doc), 5)]
    first = TopKMerger(len(query), 10)
    for ids, scores in answers:
        first.add(np.arange(len(query)), ids, scores)
    second = TopKMerger(len(query), 10)
    for ids, scores in reversed(answers):
        for group in np.array_split(rng.permutation(len(query)), 3):
            second.add(group, ids[group], scores[group])
    assert np.array_equal(first.result(len(doc))[0], second.result(len(doc))[0])
    assert np.array_equal(first.result(len(doc))[1], second.result(len(doc))[1])


def test_ties_break_by_smaller_document_index_across_shards() -> None:
    vec = np.array([[1.0, 0.0]], dtype=np.float32)
    doc = np.concatenate([np.zeros((5, 2), np.float32), vec, np.zeros((5, 2), np.float32), vec, vec])
    ids, scores = sharded_search(doc, vec, 3, 3)
    assert ids[0].tolist() == [5, 11, 12]
    assert scores[0].tolist() == [1.0, 1.0, 1.0]


def test_k_larger_than_the_corpus_and_tiny_shards() -> None:
    doc = np.eye(3, dtype=np.float32)
    ids, _scores = sharded_search(doc, doc, 10, 3)
    assert ids.shape == (3, 3)
    assert ids[:, 0].tolist() == [0, 1, 2]


def test_merge_topk_pads_last() -> None:
    ids, _scores = merge_topk([np.array([[-1, -1]]), np.array([[4]])],
                             [np.array([[-np.inf, -np.inf]], np.float32), np.array([[0.5]], np.float32)], 2)
    assert ids.tolist() == [[4, -1]]


@pytest.mark.parametrize(("rows", "shards"), [(10, 3), (3, 10), (0, 4), (100, 1)])
def test_shard_bounds_cover_every_row_once(rows: int, shards: int) -> None:
    bounds = shard_bounds(rows, shards)
    covered = [i for a, b in bounds for i in range(a, b)]
    assert covered == list(range(rows))
    assert all(b > a for a, b in bounds) or rows == 0


def test_sharded_search_does_not_need_ray() -> None:
    assert "hnmine.engines.sharded_search" in sys.modules
    import hnmine.engines.sharded_search as module

    assert "ray" not in module.__dict__
