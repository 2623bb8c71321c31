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
