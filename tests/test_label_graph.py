"""LabelGraph signals: known answers on a five-document graph worked out by hand."""

import numpy as np
import pytest

from hnmine.evaluation.label_graph import SIGNALS, LabelGraph

# labelled queries: L0 lists docs {0, 1}, L1 lists {0, 1, 2}, L2 lists {3}; doc 4 is in no list
PAIRS = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1), (3, 2), (3, 2)]  # (doc, labelled query); one duplicate
LABELLED = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)


def graph() -> LabelGraph:
    docs, queries = zip(*PAIRS)
    return LabelGraph.from_pairs(np.array(docs), np.array(queries), 5, LABELLED)


def signals(order: list[int] | None = None) -> dict[str, np.ndarray]:
    """Query 0 (embedding [1, 0], known positive doc 0) with candidates docs 1..4 at ranks 1..4."""
    q, d, rank = np.zeros(4, dtype=int), np.array([1, 2, 3, 4]), np.array([1, 2, 3, 4])
    if order is not None:
        q, d, rank = q[order], d[order], rank[order]
    out = graph().signals(np.array([[1.0, 0.0]]), q, d, np.array([0]), rank)
    assert out.shape == (4, len(SIGNALS))
    if order is not None:
        out = out[np.argsort(order)]
    return dict(zip(SIGNALS, out.T))


def test_co_relevance_with_the_known_positive():
    s = signals()
    np.testing.assert_allclose(s["co_share"], [1.0, 0.5, 0.0, 0.0])     # of {L0, L1}: both, L1, none, none
    np.testing.assert_allclose(s["co_jaccard"], [1.0, 0.5, 0.0, 0.0])   # {L0,L1} vs {L0,L1} / {L1} / {L2} / {}
    np.testing.assert_allclose(s["label_degree"], np.log1p([2, 1, 1, 0]))  # the duplicate judgment counts once


def test_votes_of_the_nearest_labelled_queries():
    s = signals()
    np.testing.assert_allclose(s["vote_max"], [1.0, 0.0, -1.0, -1.0])   # best cosine of a query listing it
    # softmax(cos / 0.05) over the labelled queries' cosines [1, 0, -1]
    z = 1 + np.exp(-20.0) + np.exp(-40.0)
    w0, w1, w2 = 1 / z, np.exp(-20.0) / z, np.exp(-40.0) / z
    np.testing.assert_allclose(s["vote_mix"], [w0 + w1, w1, w2, 0.0], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(s["positive_vote"], [1.0, w1 / (w0 + w1), 0.0, 0.0], rtol=1e-6, atol=1e-30)


def test_label_embeddings_put_co_listed_documents_together():
    s = signals()
    assert s["label_cosine"][0] == pytest.approx(1.0)    # doc 1 is listed exactly where doc 0 is
    assert s["label_cosine"][2] == pytest.approx(0.0, abs=1e-9)   # doc 3 shares no labelled query with doc 0
    assert s["label_cosine"][3] == 0.0                   # doc 4 has no labels: neutral
    # three labelled queries allow two dimensions (svds needs k < 3): the {L0, L1} block and L2; doc 2 ({L1})
    # falls on the block's direction, so it reads as close to doc 0 as doc 1 does
    assert s["label_cosine"][1] == pytest.approx(1.0)


def test_row_order_does_not_change_any_signal():
    np.testing.assert_allclose(np.stack(list(signals([2, 0, 3, 1]).values())),
                               np.stack(list(signals().values())), atol=1e-12)


TEXTS = ["vitamin bones", "statins heart", "arsenic rice"]


def signals_with_texts(query_text: str | None) -> dict[str, np.ndarray]:
    docs, queries = zip(*PAIRS)
    g = LabelGraph.from_pairs(np.array(docs), np.array(queries), 5, LABELLED, TEXTS)
    q, d, rank = np.zeros(4, dtype=int), np.array([1, 2, 3, 4]), np.array([1, 2, 3, 4])
    texts = None if query_text is None else [query_text]
    return dict(zip(SIGNALS, g.signals(np.array([[1.0, 0.0]]), q, d, np.array([0]), rank, texts).T))


def test_nearest_labelled_queries_vote_by_share():
    s = signals()
    # nearest labelled queries of [1, 0]: L0 (cos 1), L1 (0), L2 (-1); only three exist, so k = 5 and 20 use all
    np.testing.assert_allclose(s["vote_nearest_1"], [1.0, 0.0, 0.0, 0.0])      # L0 lists doc 1 only
    np.testing.assert_allclose(s["vote_nearest_5"], [2 / 3, 1 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(s["vote_nearest_20"], s["vote_nearest_5"])
    np.testing.assert_allclose(s["positive_nearest_1"], [1.0] * 4)              # doc 0: L0 and L1
    np.testing.assert_allclose(s["positive_nearest_5"], [2 / 3] * 4)
    # the same mix at a sharper temperature (0.02): doc 1 gets L0's and L1's weight
    z = 1 + np.exp(-50.0) + np.exp(-100.0)
    np.testing.assert_allclose(s["vote_mix_sharp"], [(1 + np.exp(-50.0)) / z, np.exp(-50.0) / z,
                                                     np.exp(-100.0) / z, 0.0], rtol=1e-6, atol=1e-30)


def test_centroids_of_the_labelled_queries_listing_a_document():
    s = signals()
    h = np.sqrt(0.5)
    # doc 1: mean of L0, L1 = [h, h]; doc 2: L1; doc 3: L2; doc 4: none (neutral 0); positive doc 0: [h, h]
    np.testing.assert_allclose(s["query_centroid_cosine"], [h, 0.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(s["positive_centroid_cosine"], [1.0, h, -h, 0.0], atol=1e-6)


def test_word_votes_rank_labelled_queries_by_shared_words():
    s = signals_with_texts("vitamin levels")       # shares "vitamin" with L0 only
    assert s["word_vote_max"][0] > 0                 # doc 1 is listed by L0
    np.testing.assert_allclose(s["word_vote_max"][1:], [0.0, 0.0, -1.0])   # L1 / L2 share no word; doc 4 unlisted
    np.testing.assert_allclose(s["word_vote_nearest_1"], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(s["word_positive_nearest_1"], [1.0] * 4)
    assert s["word_vote_mix"][0] > 0.99 and s["word_vote_mix"][3] == 0.0
    # without the query's text (or the labelled texts) every word signal is neutral
    for name, values in signals_with_texts(None).items():
        if name.startswith("word_"):
            np.testing.assert_array_equal(values, -1.0 if name == "word_vote_max" else 0.0)
    dense = signals()
    for name in SIGNALS:
        if not name.startswith("word_"):
            np.testing.assert_allclose(signals_with_texts("vitamin levels")[name], dense[name], atol=1e-12)


def test_sparse_nearest_shares_match_a_dense_count():
    rng = np.random.default_rng(0)
    docs, labelled, k = 30, 25, 5
    rel = rng.random((docs, labelled)) < 0.2
    d_idx, q_idx = np.nonzero(rel)
    emb = rng.normal(size=(labelled, 4)).astype(np.float32)
    emb = np.round(emb, 1)                           # ties in cosine, broken by the lower column
    g = LabelGraph.from_pairs(d_idx, q_idx, docs, emb)
    mined = np.round(rng.normal(size=(3, 4)), 1).astype(np.float32)
    q = np.repeat(np.arange(3), 10)
    d = rng.integers(0, docs, size=30)
    known = np.array([0, 1, 2])
    s = dict(zip(SIGNALS, g.signals(mined, q, d, known, np.tile(np.arange(1, 11), 3)).T))
    sims = mined @ emb.T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    np.testing.assert_allclose(s[f"vote_nearest_{k}"], rel[d[:, None], nearest[q]].sum(axis=1) / k)
    np.testing.assert_allclose(s[f"positive_nearest_{k}"], rel[known[q][:, None], nearest[q]].sum(axis=1) / k)


def test_blocks_of_queries_give_the_same_signals(monkeypatch):
    """A labelled set too large for one dense table is handled a block of queries at a time, with equal results."""
    import hnmine.evaluation.label_graph as module

    rng = np.random.default_rng(1)
    docs, labelled = 40, 30
    rel = rng.random((docs, labelled)) < 0.15
    d_idx, q_idx = np.nonzero(rel)
    words = ["vitamin", "statins", "arsenic", "rice", "heart", "bones", "milk", "soy"]
    texts = [" ".join(rng.choice(words, 3)) for _ in range(labelled)]
    g = LabelGraph.from_pairs(d_idx, q_idx, docs, rng.normal(size=(labelled, 4)).astype(np.float32), texts)
    mined = rng.normal(size=(7, 4)).astype(np.float32)
    q = np.repeat(np.arange(7), 12)
    d = rng.integers(0, docs, size=len(q))
    rank = np.tile(np.arange(1, 13), 7)
    known = rng.integers(0, docs, size=7)
    mined_texts = [" ".join(rng.choice(words, 2)) for _ in range(7)]
    whole = g.signals(mined, q, d, known, rank, mined_texts)
    monkeypatch.setattr(module, "BLOCK_ENTRIES", 2 * labelled)        # blocks of two queries
    order = rng.permutation(len(q))                                   # rows in any order
    blocked = g.signals(mined, q[order], d[order], known, rank[order], mined_texts)
    np.testing.assert_allclose(blocked, whole[order], rtol=1e-5, atol=1e-6)   # float32 products by block shape
