"""Dense retrieval with precomputed embeddings (no encoder), index kinds, and saved indexes."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hnmine.candidates import CandidateBatch
from hnmine.errors import InputError
from hnmine.stages.dense import DenseRetriever, load_embeddings
from tests.conftest import make_data


@pytest.fixture
def vectors(tmp_path):
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(300, 16)).astype(np.float32)
    queries = docs[:20] + 0.05 * rng.normal(size=(20, 16)).astype(np.float32)  # query i is nearest doc i
    data = make_data({f"q{i}": f"query {i}" for i in range(20)}, {f"d{i}": f"doc {i}" for i in range(300)},
                     {f"q{i}": [f"d{i}"] for i in range(20)})
    np.save(tmp_path / "docs.npy", docs)
    np.save(tmp_path / "queries.npy", queries)
    return data, tmp_path


def retrieve(data, **kwargs):
    r = DenseRetriever(top_k=10, **kwargs)
    return r.apply(CandidateBatch.start(data, np.arange(data.num_queries)))


def test_precomputed_npy_embeddings_are_used_and_positive_is_nearest(vectors):
    data, d = vectors
    out = retrieve(data, corpus_embeddings=str(d / "docs.npy"), query_embeddings=str(d / "queries.npy"))
    top1 = out.candidates.filter(pa.compute.equal(out.candidates.column("rank"), 1))
    assert top1.column("doc_idx").to_pylist() == list(range(20))
    assert np.allclose(out.positives.column("score").to_numpy(), top1.column("score").to_numpy())


def test_parquet_embeddings_are_aligned_by_id_not_by_row(vectors):
    data, d = vectors
    docs = np.load(d / "docs.npy")
    order = np.random.default_rng(1).permutation(300)
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in order],
                             "embedding": pa.array(docs[order].tolist(), pa.list_(pa.float32()))}), d / "docs.parquet")
    a = load_embeddings(str(d / "docs.parquet"), data.doc_ids, "doc_id")
    assert np.allclose(a, docs / np.linalg.norm(docs, axis=1, keepdims=True), atol=1e-6)


def test_missing_embedding_is_named(vectors):
    data, d = vectors
    pq.write_table(pa.table({"doc_id": ["d0"], "embedding": [[1.0, 0.0]]}), d / "few.parquet")
    with pytest.raises(InputError, match="no embedding for doc_id 'd1'"):
        load_embeddings(str(d / "few.parquet"), data.doc_ids, "doc_id")


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact_on_easy_data(vectors, index):
    data, d = vectors
    emb = {"corpus_embeddings": str(d / "docs.npy"), "query_embeddings": str(d / "queries.npy")}
    exact = retrieve(data, **emb).candidates.column("doc_idx").to_numpy().reshape(20, 10)
    approx = retrieve(data, index=index, ivf_nprobe=64, **emb).candidates.column("doc_idx").to_numpy()
    assert (approx.reshape(20, 10)[:, 0] == exact[:, 0]).all()


def test_save_and_load_index_round_trip(vectors):
    data, d = vectors
    emb = {"corpus_embeddings": str(d / "docs.npy"), "query_embeddings": str(d / "queries.npy")}
    a = retrieve(data, save_index=str(d / "i.faiss"), **emb)
    b = retrieve(data, load_index=str(d / "i.faiss"), **emb)
    assert a.candidates.equals(b.candidates)
    with pytest.raises(InputError, match="not found"):
        retrieve(data, load_index=str(d / "nope.faiss"), **emb)


def test_unknown_index_kind_refused():
    with pytest.raises(InputError, match="--index"):
        DenseRetriever(index="annoy")


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_positives_are_scored_from_the_same_vectors_the_index_searches(vectors, index):
    """Flat and HNSW indexes hold the only copy of the corpus vectors; positive scores must still be exact."""
    data, path = vectors
    dense = DenseRetriever(top_k=3, corpus_embeddings=str(path / "docs.npy"),
                           query_embeddings=str(path / "queries.npy"), index=index, ivf_nlist=1)
    dense.prepare(data)
    q = np.arange(data.num_queries)
    d = np.array([data.positives_of(i)[0] for i in q])
    queries = load_embeddings(str(path / "queries.npy"), data.query_ids, "query_id")
    docs = load_embeddings(str(path / "docs.npy"), data.doc_ids, "doc_id")
    assert np.allclose(dense.score_pairs(q, d), np.einsum("ij,ij->i", queries[q], docs[d]), atol=1e-6)
    assert (dense._doc_emb.base is not None) == (index != "ivf")  # a view into the index, not a second copy


def test_encoding_over_several_processes_matches_one_process():
    from hnmine.engines.encoder import Encoder, device_list, primary_device

    texts = [f"passage {i} about topic {i % 3}" for i in range(12)]
    one = Encoder(device="cpu", use_cache=False, show_progress=False).encode(texts)
    two = Encoder(device="cpu,cpu", use_cache=False, show_progress=False).encode(texts)
    assert two.shape == one.shape and np.allclose(one, two, atol=1e-5)
    assert device_list("cuda:0,cuda:1") == ["cuda:0", "cuda:1"] and primary_device("cuda:0,cuda:1") == "cuda:0"
    assert device_list("cuda") is None
    with pytest.raises(InputError, match="comma-separated"):
        device_list("cuda:0,")


def test_chunks_in_order_are_answered_from_one_search_ahead_with_the_same_rows(vectors, monkeypatch):
    """Chunks walking the queries in order share one index search; scattered chunks are searched as given."""
    data, d = vectors
    emb = {"corpus_embeddings": str(d / "docs.npy"), "query_embeddings": str(d / "queries.npy")}
    whole = retrieve(data, **emb).candidates
    dense = DenseRetriever(top_k=10, **emb)
    calls = []
    search = DenseRetriever.search
    monkeypatch.setattr(DenseRetriever, "search", lambda self, q, k: calls.append(len(q)) or search(self, q, k))
    parts = [dense.apply(CandidateBatch.start(data, np.arange(s, min(s + 3, 20)))).candidates for s in range(0, 20, 3)]
    assert pa.concat_tables(parts).equals(whole)
    assert calls == [20]  # one search of every query (fewer than SEARCH_AHEAD), then slices of it
    calls.clear()
    scattered = dense.apply(CandidateBatch.start(data, np.array([5, 2, 9]))).candidates
    assert calls == [3]
    for q in (5, 2, 9):
        def rows(t, q=q):
            return t.filter(pa.compute.equal(t.column("query_idx"), q)).column("doc_idx").to_pylist()
        assert rows(scattered) == rows(whole)
