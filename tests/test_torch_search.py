"""Exact search as blocked torch products (the GPU path), run on CPU against the FAISS flat index.

The code is the one a CUDA device runs; only the device string differs. float16 and bfloat16 storage are
checked too: their products only select candidates, which are re-scored in float32, so the answer must still
be FAISS's up to float32 rounding of near-ties.
"""

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

from hnmine.candidates import CandidateBatch
from hnmine.engines.torch_search import TorchExactSearch, score_error_bound
from hnmine.stages.dense import DenseRetriever
from tests.conftest import make_data


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_flat(docs: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    scores, ids = index.search(queries, min(k, len(docs)))
    return ids, scores


def assert_same_up_to_ties(ids, scores, ref_ids, ref_scores, tol=2e-6):
    """Same scores rank by rank; the same documents wherever a score is not tied (within ``tol``) with another."""
    assert ids.shape == ref_ids.shape
    np.testing.assert_allclose(scores, ref_scores, atol=tol, rtol=0)
    for row in range(ids.shape[0]):
        s = ref_scores[row]
        gap_before = np.r_[np.inf, s[:-1] - s[1:]]
        gap_after = np.r_[s[:-1] - s[1:], np.inf]
        clear = (gap_before > tol) & (gap_after > tol)
        clear[-1] = False  # the last rank may be tied with a document outside the list
        assert (ids[row][clear] == ref_ids[row][clear]).all(), f"query {row}"
        assert set(ids[row][:-1][clear[:-1]]) <= set(ref_ids[row])


def clustered(n_docs: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Documents in tight clusters, queries near them: many scores within float16 rounding of each other."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    docs = centres[rng.integers(0, 8, n_docs)] + 0.02 * rng.normal(size=(n_docs, dim))
    queries = centres[rng.integers(0, 8, n_queries)] + 0.02 * rng.normal(size=(n_queries, dim))
    return unit(docs), unit(queries)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_random_vectors_match_faiss_flat(dtype):
    rng = np.random.default_rng(0)
    docs, queries = unit(rng.normal(size=(3000, 48))), unit(rng.normal(size=(70, 48)))
    search = TorchExactSearch(docs, dtype=dtype, query_block=16, tile_bytes=16 * 700 * 2)  # many tiles and blocks
    ids, scores = search.search(queries, 25)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert_same_up_to_ties(ids, scores, *faiss_flat(docs, queries, 25))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_crowded_scores_are_searched_again_until_certified(dtype):
    docs, queries = clustered(2000, 40, 32, seed=1)
    search = TorchExactSearch(docs, dtype=dtype, extra_candidates=0, query_block=7)
    ids, scores = search.search(queries, 30)
    assert search.retries > 0  # half precision alone could not separate the 30th from the 31st
    assert_same_up_to_ties(ids, scores, *faiss_flat(docs, queries, 30))


def test_streamed_corpus_blocks_give_the_same_answer():
    docs, queries = clustered(1500, 30, 24, seed=2)
    resident = TorchExactSearch(docs, dtype="float16").search(queries, 12)
    streamed_search = TorchExactSearch(docs, dtype="float16", memory_bytes=0, tile_bytes=30 * 100 * 2)
    assert streamed_search._resident is None
    streamed = streamed_search.search(queries, 12)
    np.testing.assert_array_equal(resident[0], streamed[0])
    np.testing.assert_array_equal(resident[1], streamed[1])


def test_exact_ties_go_to_the_smaller_index_and_k_beyond_the_corpus_returns_it_all():
    rng = np.random.default_rng(3)
    base = unit(rng.normal(size=(5, 16)))
    docs = np.repeat(base, 4, axis=0)[rng.permutation(20)]  # every vector four times, shuffled
    queries = unit(base[:3] + 0.01 * rng.normal(size=(3, 16)))
    for dtype in ("float32", "float16"):
        ids, scores = TorchExactSearch(docs, dtype=dtype).search(queries, 6)
        for row in range(3):
            top = np.flatnonzero(np.isclose(docs @ queries[row], scores[row, 0], atol=1e-6))
            assert list(ids[row, :4]) == sorted(top)  # the four copies, smallest index first
            assert sorted(ids[row, 4:]) == list(ids[row, 4:])  # the next tie group cut at k: smallest indices
        ids, scores = TorchExactSearch(docs, dtype=dtype).search(queries, 50)
        assert ids.shape == (3, 20) and sorted(ids[0]) == list(range(20))
        _ref_ids, ref_scores = faiss_flat(docs, queries, 50)
        np.testing.assert_allclose(scores, ref_scores, atol=2e-6)
        assert (np.diff(scores, axis=1) <= 0).all()


def test_empty_inputs():
    docs = unit(np.random.default_rng(4).normal(size=(10, 8)))
    ids, _ = TorchExactSearch(docs).search(np.zeros((0, 8), np.float32), 5)
    assert ids.shape == (0, 5)
    ids, _ = TorchExactSearch(docs).search(docs[:2], 0)
    assert ids.shape == (2, 0)


def test_error_bound_is_above_the_observed_half_precision_error():
    import torch

    docs, queries = clustered(500, 50, 384, seed=5)
    exact = queries @ docs.T
    for dtype in (torch.float16, torch.bfloat16):
        approx = (torch.from_numpy(queries).to(dtype) @ torch.from_numpy(docs).to(dtype).T).float().numpy()
        assert np.abs(approx - exact).max() < score_error_bound(dtype, "cpu", 384)


def test_real_embeddings_match_faiss_flat(sample_dir):
    from hnmine.engines.encoder import Encoder

    docs = pq.read_table(sample_dir / "corpus.parquet")
    queries = pq.read_table(sample_dir / "queries.parquet").column("query").to_pylist()
    encoder = Encoder(dtype="float32", show_progress=False)
    # The first 250 passages cut to 200 characters: real sentence embeddings (clustered, many near-ties) at a
    # cost CI can afford.
    texts = [f"{t} {x}"[:200] for t, x in zip(docs.column("title").to_pylist(), docs.column("text").to_pylist())]
    doc_emb = encoder.encode(texts[:250])
    query_emb = encoder.encode(queries)
    ref = faiss_flat(doc_emb, query_emb, 100)
    for dtype in ("float32", "float16", "bfloat16"):
        assert_same_up_to_ties(*TorchExactSearch(doc_emb, dtype=dtype, query_block=32).search(query_emb, 100), *ref)


def test_dense_retriever_torch_search_equals_faiss_through_the_pipeline_stage(tmp_path):
    rng = np.random.default_rng(6)
    docs, queries = clustered(400, 25, 16, seed=6)
    np.save(tmp_path / "docs.npy", docs)
    np.save(tmp_path / "queries.npy", queries)
    data = make_data({f"q{i}": f"query {i}" for i in range(25)}, {f"d{i}": f"doc {i}" for i in range(400)},
                     {f"q{i}": [f"d{int(rng.integers(400))}"] for i in range(25)})
    out = {}
    for search in ("faiss", "torch"):
        r = DenseRetriever(top_k=40, corpus_embeddings=str(tmp_path / "docs.npy"),
                           query_embeddings=str(tmp_path / "queries.npy"), exact_search=search, search_dtype="float16")
        out[search] = r.apply(CandidateBatch.start(data, np.arange(25)))
        assert r.search_backend() == search
    f, t = out["faiss"], out["torch"]
    ids = [c.candidates.column("doc_idx").to_numpy().reshape(25, 40) for c in (t, f)]
    scores = [c.candidates.column("score").to_numpy().reshape(25, 40) for c in (t, f)]
    assert_same_up_to_ties(ids[0], scores[0], ids[1], scores[1])
    np.testing.assert_allclose(t.positives.column("score").to_numpy(), f.positives.column("score").to_numpy())


def test_auto_search_follows_the_device(monkeypatch):
    import hnmine.stages.dense as dense

    monkeypatch.setattr(dense, "faiss_gpus", lambda: 0)
    assert DenseRetriever(device="cpu").search_backend() == "faiss"
    assert DenseRetriever(device="cuda:1").search_backend() == "torch"
    assert DenseRetriever(device="cuda:0,cuda:1").search_backend() == "torch"
    assert DenseRetriever(device="cuda", index="hnsw").search_backend() == "faiss"
    monkeypatch.setattr(dense, "faiss_gpus", lambda: 2)
    assert DenseRetriever(device="cuda").search_backend() == "faiss-gpu"


def test_torch_search_rejects_approximate_index_options():
    from hnmine.errors import InputError

    with pytest.raises(InputError, match="exact flat search"):
        DenseRetriever(exact_search="torch", index="ivf")
    with pytest.raises(InputError, match="expected one of"):
        DenseRetriever(exact_search="gpu")
